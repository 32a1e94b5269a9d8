#!/usr/bin/env bash
# The README's test command: sets up everything on a fresh Debian 12 machine
# (as root) and runs every test, real parts included: qemu-ga in network
# namespaces, the monitoring consumers, and libvirt guests.
#   sudo bash tests/run-all.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash tests/setup.sh

# Real-part tests fail instead of skipping when something is missing.
export VMNETPROBE_REAL_TESTS=1 VMNETPROBE_LAB=1

echo "== build without libvirt (socket transport only)"
cargo build --locked --no-default-features
cargo test --locked --no-default-features --lib

echo "== all tests"
cargo test --locked --all-targets
cargo test --locked --doc
