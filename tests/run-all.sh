#!/usr/bin/env bash
# The README's test command: sets up everything on a fresh Debian 12 machine
# (as root) and runs every test, real parts included: qemu-ga in network
# namespaces, the monitoring consumers, and libvirt guests (tests/lab).
#   bash tests/run-all.sh      (as root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash tests/setup.sh

# Real-part tests fail instead of skipping when something is missing.
export VMNETPROBE_REAL_TESTS=1 VMNETPROBE_LAB=1

log=$(mktemp /tmp/vmnetprobe-tests.XXXXXX)
trap 'rm -f "$log"' EXIT

echo "== build and unit tests without libvirt (socket transport only)"
cargo build --locked --no-default-features
cargo test --locked --no-default-features --lib 2>&1 | tee -a "$log"

echo "== all tests: unit, golden, real qemu-ga, consumers, hostile agents, libvirt lab"
cargo test --locked --all-targets 2>&1 | tee -a "$log"

# One closing line for the whole run.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
