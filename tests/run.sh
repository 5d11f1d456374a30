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
command -v ping >/dev/null || need+=(iputils-ping)
command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null && command -v sftp >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The web console's browser test: headless Chromium driven through
# WebDriver (tests/src/browser.rs starts chromedriver itself).
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# Remote desktops (tests/src/rdp.rs): an Xvfb display painted with
# xsetroot, freerdp-shadow-cli with NLA and a SAM file (winpr-hash) as the
# target, xfreerdp as the vendor's client, xev to see the browser
# desktop's input reach the target's display, xdotool to type and click
# in xfreerdp (the recording's input track), ffmpeg to write and read back
# an RDP recording's video.
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xev >/dev/null || need+=(x11-utils)
command -v xsetroot >/dev/null || need+=(x11-xserver-utils)
command -v freerdp-shadow-cli >/dev/null || need+=(freerdp2-shadow-x11)
command -v winpr-hash >/dev/null || need+=(winpr-utils)
command -v xfreerdp >/dev/null || need+=(freerdp2-x11)
command -v xdotool >/dev/null || need+=(xdotool)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
# Session recordings are played back by stock asciinema (under `script`
# from bsdutils, which gives it a terminal).
command -v asciinema >/dev/null || need+=(asciinema)
command -v script >/dev/null || need+=(bsdutils)
# IP Connect (tests/ipconnect_e2e.rs): stock curl against python3's
# http.server in the customer namespaces; unshare/mount (util-linux) give
# the clients the test's hosts file.
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v unshare >/dev/null || need+=(util-linux)
# The C ABI tests (tests/c_abi.rs) compile examples/c/ with cc under
# AddressSanitizer and UndefinedBehaviorSanitizer (gcc's libasan/libubsan).
command -v cc >/dev/null && echo 'int main(void){return 0;}' | cc -x c -fsanitize=address,undefined -o /dev/null - 2>/dev/null || need+=(build-essential)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing test peers: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Python bindings (cpam-py): a virtual environment at target/py-venv with
# maturin and pytest, and the `cpam` wheel built from this tree installed
# into it. `cargo test` runs the pytest suite with it (tests/python_e2e.rs).
py_need=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || py_need+=(python3 python3-venv python3-pip)
python3 -c 'import os, sys, sysconfig as s; sys.exit(not os.path.exists(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("LDLIBRARY"))))' \
    >/dev/null 2>&1 || py_need+=(python3-dev)
if [ ${#py_need[@]} -gt 0 ]; then
    echo "installing Python: ${py_need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${py_need[@]}"
fi
[ -x target/py-venv/bin/python ] || python3 -m venv target/py-venv
target/py-venv/bin/pip install -q --disable-pip-version-check "maturin==1.16.*" pytest mypy
# `--profile dev` reuses the debug build of cpam-core the rest of the suite
# needs anyway (about 30 s here); `--release` would compile every dependency
# a second time (several minutes on two cores). Release wheels: `maturin build --release`.
rm -rf target/py-wheels
target/py-venv/bin/maturin build --profile dev -q -m cpam-py/Cargo.toml --out target/py-wheels
target/py-venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps target/py-wheels/cpam-*.whl

# Recordings on an object store (tests/s3_store_e2e.rs): moto's S3 server
# and boto3 in their own virtual environment, made when missing; the tests
# start and stop the server themselves.
if [ ! -x target/moto-venv/bin/moto_server ] || [ ! -x target/moto-venv/bin/python ]; then
    rm -rf target/moto-venv
    python3 -m venv target/moto-venv
    target/moto-venv/bin/pip install -q --disable-pip-version-check "moto[server]==5.*" boto3
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
