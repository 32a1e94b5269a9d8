#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root): build
# dependencies, a real qemu-guest-agent, the monitoring consumers and the
# libvirt lab's parts, in one apt transaction so that packages that must match
# come from one release. Then checks every binary (tests/lib/needs/*.txt) and
# fails with one line naming what is missing. Idempotent: a second run only
# checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/packages.sh
. "$here/tests/lib/packages.sh"
ensure_binaries_from setup "$here"/tests/lib/needs/*.txt

# cargo-deb builds the Debian package (README "Install"); the consumer tests
# install it. Not in Debian 12: from crates.io, pinned.
cargo_deb_version=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
    echo "setup: missing cargo-deb - cargo install cargo-deb@$cargo_deb_version --locked"
    if ! env -u CARGO_TARGET_DIR cargo install "cargo-deb@$cargo_deb_version" --locked \
        >>"$packages_log" 2>&1; then
        tail -n 15 "$packages_log" >&2
        echo "setup: cargo install cargo-deb failed (log: $packages_log)" >&2
        exit 1
    fi
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "setup: missing after install: cargo-deb (cargo install cargo-deb --locked)" >&2
    exit 1
fi
echo "setup: cargo-deb present"
# qemu-ga must not be running in the root namespace: tests start their own.
exit 0
