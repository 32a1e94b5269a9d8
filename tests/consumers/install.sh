#!/bin/sh
# Installs the real monitoring consumers that tests/consumers.rs starts on loopback
# (tests/lib/needs/consumers.txt) and what building and installing the package takes
# (package.txt, cargo-deb), and checks their binaries. Debian 12, as root.
# Idempotent. tests/setup.sh installs these together with everything else.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/lib/packages.sh"
ensure_binaries_from consumers "$here/tests/lib/needs/consumers.txt" \
    "$here/tests/lib/needs/package.txt"
ensure_cargo_deb consumers
