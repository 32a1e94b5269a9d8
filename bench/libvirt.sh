#!/bin/bash
# vmnetprobe through libvirt against the lab's real TCG guests (issue 5), by hand, as root:
#     bash bench/libvirt.sh
# Uses the running lab (tests/lab/lab.sh up); if none is up it brings one up and tears it
# down again on exit. Times `vmnetprobe zabbix --connect qemu:///system` over the lab's six
# guests (cold: --no-state; warm: a state dir with the facts cache; and -j 1), and the shell
# way: a sequential loop running one `virsh qemu-agent-command` per agent command (guest-info,
# guest-network-get-interfaces, guest-exec ping of every NIC's gateway and of the external
# address, guest-exec-status polled every 0.1 s until exited). Prints a table and the ratio.
#
# Network rule: every ping goes to the lab's gateways or its internet host 198.51.100.1,
# both inside the lab's namespaces (--external is always passed).
#
# Then (issue 11) the uplink outage: `lab.sh cut` drops the internet host, and the healthy
# guests' external pings wait their whole --ping-timeout. Timed with -j 32 and -j 1, and one
# process (one libvirt connection; libvirtd serves max_client_requests = 5 calls per client at
# once) against two processes on half the guests each (two connections), interleaved.
#
# Knobs: RUNS [7] timed vmnetprobe runs per variant, BASE_RUNS [3] shell runs,
#        OUTAGE [1] run the outage part (0 = skip),
#        BIN [target/release/vmnetprobe, built here], OUT [/tmp/vmnetprobe-bench-libvirt]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
URI=qemu:///system
STATE=${VMNETPROBE_LAB_STATE:-/run/vmnetprobe-lab}

# ---------------------------------------------------------------- the shell way (one VM list)
# bench/libvirt.sh --shell EXTERNAL 'NAME|GW GW...' ...
if [ "${1:-}" = --shell ]; then
    shift
    ext=$1; shift
    vq() { virsh -q -c "$URI" qemu-agent-command "$1" "$2" --timeout 5 2>/dev/null; }
    ping_rtt() { # DOMAIN ADDR -> prints rtt ms or "unreachable"/"error"
        local r pid s out
        r=$(vq "$1" "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/ping\",\"arg\":[\"-n\",\"-c\",\"1\",\"-W\",\"2\",\"$2\"],\"capture-output\":true}}") || { echo error; return; }
        pid=$(jq -r '.return.pid' <<<"$r")
        while :; do
            s=$(vq "$1" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || { echo error; return; }
            [ "$(jq -r '.return.exited' <<<"$s")" = true ] && break
            sleep 0.1
        done
        out=$(jq -r '.return["out-data"] // ""' <<<"$s" | base64 -d)
        if [ "$(jq -r '.return.exitcode' <<<"$s")" = 0 ]; then
            sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out" | head -n 1
        else
            echo unreachable
        fi
    }
    for spec in "$@"; do
        dom=${spec%%|*} gws=${spec#*|}
        if ! vq "$dom" '{"execute":"guest-info"}' >/dev/null; then
            echo "$dom: agent not answering"; continue
        fi
        vq "$dom" '{"execute":"guest-network-get-interfaces"}' | jq -r '[.return[].name] | join(",")' >/dev/null
        line="$dom:"
        for gw in $gws; do line="$line gw $gw $(ping_rtt "$dom" "$gw")"; done
        echo "$line external $ext $(ping_rtt "$dom" "$ext")"
    done
    exit 0
fi

RUNS=${RUNS:-7}
BASE_RUNS=${BASE_RUNS:-3}
OUT=${OUT:-/tmp/vmnetprobe-bench-libvirt}
die() { echo "bench/libvirt: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (the lab)"
for tool in virsh jq python3 base64; do command -v "$tool" >/dev/null || die "missing $tool"; done
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    BIN=$ROOT/target/release/vmnetprobe
fi
[ -x "$BIN" ] || die "no binary $BIN"
mkdir -p "$OUT"
W=$(mktemp -d /tmp/vmnp-bench-libvirt.XXXXXX)
LAB_MINE=
CUT=
cleanup() {
    set +e
    [ -z "$CUT" ] || bash "$ROOT/tests/lab/lab.sh" restore
    [ -z "$LAB_MINE" ] || bash "$ROOT/tests/lab/lab.sh" down
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -f "$STATE/up-complete" ] && virsh -q -c "$URI" uri >/dev/null 2>&1; then
    echo "using the running lab ($STATE/manifest.json)"
else
    echo "no lab up: bringing one up (torn down on exit)"
    LAB_MINE=1
    bash "$ROOT/tests/lab/lab.sh" up || die "lab up failed"
fi
M=$STATE/manifest.json
EXTERNAL=$(jq -r .internet "$M")
EXT_NET=$(jq -r .external_network "$M")
# same flags as tests/lab_libvirt.rs (TCG: generous deadlines, RTT thresholds out of the way)
ARGS=(--connect "$URI" --external "$EXTERNAL" --external-network "$EXT_NET" --grace 0
    --timeout 60s --ping-timeout 2s -w 2000 -c 5000)
# host side: libvirtd and every QEMU (the guests' CPU, idle ticking included)
{
    cat "$STATE/libvirtd.pid"; echo
    for p in $(ip netns pids vmnp-lab); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qemu-system-x86 ] && echo "$p"
    done
} | grep . >"$W/host.pids"
NVM=$(jq '.guests | length' "$M")

check_ok() { # FILE: the four healthy guests OK, b exec_disabled, c no agent
    jq -e '
        (.vms | length) == 6
        and ([.vms[] | select(.state == "OK" and .external.code == "ok"
              and all(.nics[]; .code == "ok" and .rtt_ms != null))] | length) == 4
        and any(.vms[]; .code == "exec_disabled")
        and any(.vms[]; .code == "agent_not_connected" or .code == "agent_timeout")' "$1" >/dev/null
}
"$BIN" zabbix "${ARGS[@]}" --no-state >"$W/verify.json" || true
check_ok "$W/verify.json" || {
    jq -c '.vms[] | {name, state, code, reason}' "$W/verify.json"
    die "the lab guests are not as expected (4 OK, b exec_disabled, c without agent)"
}
echo "verified: $(jq -r '[.vms[] | "\(.name)=\(.code)"] | join(" ")' "$W/verify.json")"

measure() { # NAME ARGS... -> JSON
    local name=$1; shift
    python3 "$ROOT/bench/measure.py" --runs "$RUNS" --agents "$W/host.pids" \
        --save-last "$W/$name.json" -- "$BIN" zabbix "${ARGS[@]}" "$@"
}
COLD=$(measure cold --no-state)
check_ok "$W/cold.json" || die "last cold run not as expected"
echo "vmnetprobe cold (--no-state): $COLD"
WARM=$(measure warm --state-dir "$W/state")
check_ok "$W/warm.json" || die "last warm run not as expected"
echo "vmnetprobe warm (facts cache): $WARM"
J1=$(measure j1 --no-state -j 1)
check_ok "$W/j1.json" || die "last -j 1 run not as expected"
echo "vmnetprobe -j 1: $J1"
per_vm=$(jq -r '[.vms[] | select(.state == "OK") | .duration_ms] | sort | .[length/2|floor]' "$W/cold.json")

# the shell way over the same six guests, every NIC's gateway handed in
SPECS=()
while IFS= read -r l; do SPECS+=("$l"); done < <(jq -r '.guests[] | "\(.name)|\([.nics[].gateway] | unique | join(" "))"' "$M")
bash "$0" --shell "$EXTERNAL" "${SPECS[@]}" >"$W/shell.txt"
cat "$W/shell.txt"
[ "$(grep -c 'external [0-9.]* [0-9][0-9.]*$' "$W/shell.txt")" -ge 4 ] || die "the shell way did not get 4 external RTTs"
SHELL_M=$(python3 "$ROOT/bench/measure.py" --runs "$BASE_RUNS" --warmup 0 --agents "$W/host.pids" \
    -- bash "$0" --shell "$EXTERNAL" "${SPECS[@]}")
echo "shell (virsh qemu-agent-command, sequential): $SHELL_M"

# --- the uplink outage (issue 11) ----------------------------------------------------
OUT_ROWS=()
if [ "${OUTAGE:-1}" = 1 ]; then
    check_outage() { # FILE: the four healthy guests CRITICAL external_unreachable, gateways OK
        jq -e '([.vms[] | select(.state == "CRITICAL" and .external.code == "external_unreachable"
                and all(.nics[]; .code == "ok"))] | length) == 4' "$1" >/dev/null
    }
    bash "$ROOT/tests/lab/lab.sh" cut; CUT=1
    mapfile -t NAMES < <(jq -r '.guests[].name' "$M")
    HALF=$(( ${#NAMES[@]} / 2 ))
    A=() B=()
    for i in "${!NAMES[@]}"; do
        if [ "$i" -lt "$HALF" ]; then A+=(-d "${NAMES[$i]}"); else B+=(-d "${NAMES[$i]}"); fi
    done
    # one JSON document from the two halves, so the same check applies
    split_run() {
        "$BIN" zabbix "${ARGS[@]}" --no-state "${A[@]}" >"$W/split-a.json" &
        local a=$!
        "$BIN" zabbix "${ARGS[@]}" --no-state "${B[@]}" >"$W/split-b.json"
        wait "$a"
        jq -s '{vms: (.[0].vms + .[1].vms)}' "$W/split-a.json" "$W/split-b.json"
    }
    for round in $(seq "$RUNS"); do
        for variant in one two; do
            t0=$(date +%s%N)
            c0=$(awk '{s += $14 + $15 + $16 + $17} END {print s}' $(sed 's|.*|/proc/&/stat|' "$W/host.pids") 2>/dev/null)
            if [ $variant = one ]; then
                "$BIN" zabbix "${ARGS[@]}" --no-state >"$W/out-$variant.json"
            else
                split_run >"$W/out-$variant.json"
            fi
            t1=$(date +%s%N)
            c1=$(awk '{s += $14 + $15 + $16 + $17} END {print s}' $(sed 's|.*|/proc/&/stat|' "$W/host.pids") 2>/dev/null)
            check_outage "$W/out-$variant.json" || die "outage ($variant): verdicts not as expected: $(jq -c '[.vms[] | {name, code}]' "$W/out-$variant.json")"
            echo "$variant $(( (t1 - t0) / 1000000 )) $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) ))" >>"$W/outage.txt"
        done
    done
    med() { awk -v v="$1" -v c="$2" '$1 == v {print $c}' "$W/outage.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    ping_ms=$(jq -r '[.vms[] | select(.external.code == "external_unreachable") | .duration_ms] | sort | .[length/2|floor]' "$W/out-one.json")
    J1O=$(measure outage-j1 --no-state -j 1)
    check_outage "$W/outage-j1.json" || die "outage -j 1: verdicts not as expected"
    OUT_ROWS+=("| outage, one process (-j 32) | $(med one 2) | $(med one 3) |")
    OUT_ROWS+=("| outage, two processes on half the guests each (two connections) | $(med two 2) | $(med two 3) |")
    OUT_ROWS+=("| outage, one process, -j 1 | $(jq -r .wall_ms <<<"$J1O") | $(jq -r .agent_cpu_ms <<<"$J1O") |")
    bash "$ROOT/tests/lab/lab.sh" restore; CUT=
fi

f() { jq -r ".$2" <<<"$1"; }
row() { # label JSON
    printf '| %s | %s | %s–%s | %s | %.1f | %s |\n' "$1" "$(f "$2" wall_ms)" "$(f "$2" wall_min_ms)" \
        "$(f "$2" wall_max_ms)" "$(f "$2" cpu_ms)" "$(awk -v r="$(f "$2" maxrss_kib)" 'BEGIN{print r/1024}')" \
        "$(f "$2" agent_cpu_ms)"
}
{
    echo "## vmnetprobe through libvirt, lab guests $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(virsh -c "$URI" version 2>/dev/null | sed -n "s/^Using library: //p; s/^Running hypervisor: //p" | paste -sd, -);" \
        "$NVM TCG guests; vmnetprobe $RUNS runs per row, shell $BASE_RUNS"
    echo
    echo "| run | wall median ms | min–max ms | CPU user+sys ms | peak RSS MiB | libvirtd+QEMU CPU ms |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "vmnetprobe cold (--no-state)" "$COLD"
    row "vmnetprobe warm (facts cache)" "$WARM"
    row "vmnetprobe cold -j 1" "$J1"
    row "shell: virsh per command, sequential" "$SHELL_M"
    echo
    echo "speed-up (shell / vmnetprobe): cold $(awk -v a="$(f "$SHELL_M" wall_ms)" -v b="$(f "$COLD" wall_ms)" 'BEGIN{printf "%.1fx", a/b}')," \
        "warm $(awk -v a="$(f "$SHELL_M" wall_ms)" -v b="$(f "$WARM" wall_ms)" 'BEGIN{printf "%.1fx", a/b}')," \
        "-j 1 $(awk -v a="$(f "$SHELL_M" wall_ms)" -v b="$(f "$J1" wall_ms)" 'BEGIN{printf "%.1fx", a/b}')"
    echo "per healthy VM (vmnetprobe duration_ms, last cold run, median): $per_vm ms"
    if [ "${#OUT_ROWS[@]}" -gt 0 ]; then
        echo
        echo "uplink outage (lab.sh cut, --ping-timeout 2s; $RUNS interleaved rounds, medians):"
        echo
        echo "| run | wall ms | libvirtd+QEMU CPU ms |"
        echo "|---|---:|---:|"
        printf '%s\n' "${OUT_ROWS[@]}"
        echo
        echo "one cut guest's own probe (duration_ms, median): $ping_ms ms"
    fi
} | tee "$OUT/results.md"
