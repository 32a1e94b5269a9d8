#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root):
# build dependencies, a real qemu-guest-agent, and the extra parts that the
# consumer and libvirt-lab tests install through their own scripts.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

need=()
for pkg in libvirt-dev pkg-config qemu-guest-agent iproute2 iputils-ping python3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    # No systemd here: keep maintainer scripts from starting daemons.
    created_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
# qemu-ga must not be running in the root namespace: tests start their own.
for extra in "$here"/tests/consumers/install.sh "$here"/tests/lab/install.sh; do
    if [ -f "$extra" ]; then bash "$extra"; fi
done
exit 0
