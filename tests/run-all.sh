#!/usr/bin/env bash
# The README's test command: sets up everything on a fresh Debian 12 machine
# (as root) and runs every test, real parts included: qemu-ga in network
# namespaces, the monitoring consumers, and libvirt guests (tests/lab).
#   bash tests/run-all.sh      (as root)
# A failing test binary does not stop the run (--no-fail-fast): every failure
# is listed at the end, and the exit status is non-zero if there was one.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

bash tests/setup.sh || exit 1

# Real-part tests fail instead of skipping when something is missing.
export VMNETPROBE_REAL_TESTS=1 VMNETPROBE_LAB=1

log=$(mktemp /tmp/vmnetprobe-tests.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0

echo "== build and unit tests without libvirt (socket transport only)"
cargo build --locked --no-default-features || status=1
cargo test --locked --no-default-features --no-fail-fast --lib 2>&1 | tee -a "$log" || status=1

echo "== all tests: unit, golden, real qemu-ga, consumers, hostile agents, libvirt lab"
cargo test --locked --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=1

# Every failed test by name, then one closing line for the whole run.
failed=$(awk '/^test .* \.\.\. FAILED$/ { print "  " $2 }' "$log")
if [ -n "$failed" ]; then
    echo "== failed tests"
    echo "$failed"
fi
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
