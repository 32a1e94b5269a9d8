#!/usr/bin/env bash
# vmnetprobe demo: a real qemu-guest-agent on a unix socket inside a network
# namespace (no VM needed), probed in every output mode. Run as root on
# Debian 12:   bash examples/demo.sh
#
# The "guest" namespace gets 192.0.2.10/24 with a default route via a
# "router" namespace (192.0.2.1) that also holds the "internet" host
# 198.51.100.1. 203.0.113.1 is routed but never answers. No packet leaves
# these namespaces. Everything is removed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "demo: needs root (network namespaces, qemu-ga)" >&2
    exit 1
fi
if [ ! -x /usr/sbin/qemu-ga ] || ! command -v ip >/dev/null; then
    echo "demo: installing qemu-guest-agent and iproute2" >&2
    apt-get update -q >/dev/null
    # Keep the package from starting its own agent.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-guest-agent iproute2 iputils-ping >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
bin=${VMNETPROBE_BIN:-}
if [ -z "$bin" ]; then
    if ! command -v cargo >/dev/null; then
        echo "demo: needs cargo to build vmnetprobe (or set VMNETPROBE_BIN)" >&2
        exit 1
    fi
    (cd "$here" && cargo build --release --quiet --no-default-features)
    bin=$here/target/release/vmnetprobe
fi

id=$$
g=vmnp-demo-g-$id
r=vmnp-demo-r-$id
dir=$(mktemp -d /tmp/vmnp-demo.XXXXXX)
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    ip netns del "$g" 2>/dev/null || true
    ip netns del "$r" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$g"
ip netns add "$r"
ip -n "$g" link add eth0 type veth peer name up0 netns "$r"
ip -n "$g" link set lo up
ip -n "$g" addr add 192.0.2.10/24 dev eth0
ip -n "$g" link set eth0 up
ip -n "$g" route add default via 192.0.2.1
ip -n "$r" link set lo up
ip -n "$r" addr add 192.0.2.1/24 dev up0
ip -n "$r" addr add 198.51.100.1/32 dev lo
ip -n "$r" link set up0 up

ip netns exec "$g" /usr/sbin/qemu-ga -m unix-listen -p "$dir/web01.sock" -t "$dir" -f "$dir/qga.pid" 2>"$dir/qga.log" &
agent_pid=$!
for _ in $(seq 100); do [ -S "$dir/web01.sock" ] && break; sleep 0.05; done

target=(--socket "web01=$dir/web01.sock" --external 198.51.100.1)
show() {
    echo
    echo "\$ vmnetprobe $*"
    set +e
    "$bin" "$@"
    echo "(exit $?)"
    set -e
}
show status "${target[@]}"
show nagios "${target[@]}" -w 100 -c 500
show discover vms "${target[@]}"
show discover nics "${target[@]}"
show zabbix "${target[@]}"
show telegraf "${target[@]}"
show status --json "${target[@]}"
echo
echo "# The same guest when the outside world is gone (203.0.113.1 never answers):"
show nagios --socket "web01=$dir/web01.sock" --external 203.0.113.1
