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

ensure_cargo_deb setup
# qemu-ga must not be running in the root namespace: tests start their own.
exit 0
