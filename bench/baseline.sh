#!/bin/bash
# The "usual way": a shell loop over the agent sockets, one socat process per
# agent command, jq to parse, sequential per VM -- what hand-written
# Nagios/Zabbix checks do. Per VM: guest-sync-delimited handshake + guest-info,
# guest-network-get-interfaces, guest-exec ping of the gateway, guest-exec-status
# polled until exited, the same for the external address.
#
# usage: baseline.sh 'DIR/*.sock' GATEWAY EXTERNAL
#   SOCAT_T  seconds socat waits for the reply after sending (socat -t);
#            socat's default is 0.5 (the copy-paste script). qemu-ga never
#            closes the connection, so every call lasts at least this long.
#   POLL     sleep between guest-exec-status polls (default 0.1)
set -u
glob=$1 gateway=$2 external=$3
T=${SOCAT_T:-0.5}
POLL=${POLL:-0.1}

# One command on a fresh connection, preceded by the sync handshake (0xFF
# resets the agent's parser); prints the last reply line.
qga() {
    printf '\377{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n%s\n' "$RANDOM" "$2" |
        socat -t "$T" - "UNIX-CONNECT:$1" | tr -d '\377' | tail -n 1
}

# ping_in_guest SOCK ADDR -> prints "ok RTT" or "fail CODE"
ping_in_guest() {
    local sock=$1 addr=$2 pid st out code rtt
    pid=$(qga "$sock" '{"execute":"guest-exec","arguments":{"path":"/bin/ping","arg":["-n","-c","1","-W","1","'"$addr"'"],"capture-output":true}}' |
        jq -r '.return.pid // empty')
    [ -n "$pid" ] || { echo "fail exec"; return; }
    while :; do
        st=$(qga "$sock" '{"execute":"guest-exec-status","arguments":{"pid":'"$pid"'}}')
        [ "$(jq -r '.return.exited' <<<"$st")" = true ] && break
        [ "$POLL" = 0 ] || sleep "$POLL"
    done
    code=$(jq -r '.return.exitcode // -1' <<<"$st")
    out=$(jq -r '.return["out-data"] // ""' <<<"$st" | base64 -d)
    rtt=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out")
    if [ "$code" = 0 ] && [ -n "$rtt" ]; then echo "ok $rtt"; else echo "fail $code"; fi
}

ok=0 bad=0
for sock in $glob; do
    vm=$(basename "$sock" .sock)
    version=$(qga "$sock" '{"execute":"guest-info"}' | jq -r '.return.version // empty')
    if [ -z "$version" ]; then
        echo "$vm UNKNOWN agent not responding"; bad=$((bad + 1)); continue
    fi
    ip=$(qga "$sock" '{"execute":"guest-network-get-interfaces"}' |
        jq -r '.return[] | select(.name=="eth0") | ."ip-addresses"[]? | select(."ip-address-type"=="ipv4") | ."ip-address"' | head -n 1)
    gw=$(ping_in_guest "$sock" "$gateway")
    ext=$(ping_in_guest "$sock" "$external")
    if [ "${gw%% *}" = ok ] && [ "${ext%% *}" = ok ]; then
        echo "$vm OK agent $version eth0 $ip gateway rtt ${gw#ok } ms external rtt ${ext#ok } ms"; ok=$((ok + 1))
    else
        echo "$vm CRITICAL eth0 $ip gateway $gw external $ext"; bad=$((bad + 1))
    fi
done
echo "baseline: $ok ok, $bad not ok"
[ "$bad" = 0 ]
