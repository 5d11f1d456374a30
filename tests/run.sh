#!/usr/bin/env bash
# Runs the end-to-end tests: installs the real peers they drive if missing,
# builds the workspace binaries, then runs the cpam-tests package.
# Needs root (the tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "error: the e2e tests create network namespaces and must run as root" >&2
    exit 1
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update && apt-get install -y --no-install-recommends "${need[@]}"
fi
cargo build --workspace
cargo test -p cpam-tests "$@"
