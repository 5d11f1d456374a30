#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real peers the tests drive
# when they are missing, then checks formatting and lints, builds the
# binaries the end-to-end tests start, and runs every test.
#
# Needs root: the end-to-end tests create network namespaces, and missing
# peers are installed with apt-get. The PostgreSQL store tests start their
# own PostgreSQL server (as the `postgres` user) on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "error: run as root: the end-to-end tests create network namespaces" >&2
    exit 1
fi

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v sshpass >/dev/null || need+=(sshpass)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The web console's browser test: headless Chromium driven through
# WebDriver (tests/src/browser.rs starts chromedriver itself).
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# The C ABI tests (tests/c_abi.rs) compile examples/c/ with cc under
# AddressSanitizer and UndefinedBehaviorSanitizer (gcc's libasan/libubsan).
command -v cc >/dev/null && echo 'int main(void){return 0;}' | cc -x c -fsanitize=address,undefined -o /dev/null - 2>/dev/null || need+=(build-essential)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing test peers: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
