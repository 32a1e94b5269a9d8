#!/bin/bash
# vmnetprobe benchmark against real qemu-ga agents (issue 5). Run by hand, as root:
#     bash bench/run.sh
# Starts MAX(SIZES) real qemu-ga on unix sockets inside ONE guest network
# namespace created here (eth0 192.0.2.10/24 -- veth -- gw0 192.0.2.1/24 in a
# router namespace, also created here; default route via 192.0.2.1; "external"
# 198.51.100.1 on the router's lo). Nothing is pinged outside these namespaces.
# Then times `vmnetprobe zabbix --socket-glob` for every size, `vmnetprobe
# serve` scrapes, the shell+socat baseline, and the floor (one bare guest-exec
# + guest-exec-status of the same ping).
# The router does not forward, so 203.0.113.1 is dropped silently.
# Agents and the namespaces are removed on exit (by PID / name), also on ^C.
#
# Environment knobs (defaults in brackets):
#   SIZES [1 10 50 200]      agents per run          RUNS [10]  timed runs per size
#   BASE_SIZES [1 10 50]     sizes for the baseline  BASE_RUNS [3]
#   JOBS_SWEEP [4 8 16 32 64 200]  -j values tried at the largest size ("" = skip)
#   SERVE_SIZES [1 200]      sizes for `vmnetprobe serve` scrapes ("" = skip)
#   BIN [target/release/vmnetprobe, built here]      OUT [/tmp/vmnetprobe-bench]
#   EXTRA_ARGS []            more vmnetprobe arguments (e.g. "-j 64")
#   BIN_BEFORE []            a second build (e.g. before a change): A/B against BIN,
#                            runs interleaved, at AB_SIZES [1 and the largest of SIZES]
#   SCALE_SIZES [50 200 1000]  sizes for the host-scale scenarios (issue 11; "" = skip):
#                            all healthy; external silently dropped (-t 2500ms); 10 % of
#                            agents silent; 10 % of sockets never accept
#   SCALE_RUNS [5]           timed runs per scenario and size
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
SIZES=${SIZES:-"1 10 50 200"}
RUNS=${RUNS:-10}
BASE_SIZES=${BASE_SIZES:-"1 10 50"}
BASE_RUNS=${BASE_RUNS:-3}
JOBS_SWEEP=${JOBS_SWEEP-"4 8 16 32 64 200"}
SERVE_SIZES=${SERVE_SIZES-"1 200"}
OUT=${OUT:-/tmp/vmnetprobe-bench}
EXTRA_ARGS=${EXTRA_ARGS:-}
QEMU_GA=/usr/sbin/qemu-ga
GATEWAY=192.0.2.1
EXTERNAL=198.51.100.1
# Routed to gw0, which does not forward: pings to it get no reply, silently.
DROPPED=203.0.113.1
SCALE_SIZES=${SCALE_SIZES-"50 200 1000"}
SCALE_RUNS=${SCALE_RUNS:-5}

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespace)"
for tool in ip socat jq python3 base64 "$QEMU_GA"; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install qemu-guest-agent socat jq iproute2)"
done
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    BIN=$ROOT/target/release/vmnetprobe
fi
[ -x "$BIN" ] || die "no binary $BIN"
MAX=0
for n in $SIZES $BASE_SIZES $SERVE_SIZES $SCALE_SIZES; do [ "$n" -gt "$MAX" ] && MAX=$n; done

NS=vmnp-bench-$$
W=$(mktemp -d /tmp/vmnp-bench.XXXXXX)
PIDS=()
NS_MADE=
cleanup() {
    set +e
    if [ "${#PIDS[@]}" -gt 0 ]; then
        kill -TERM "${PIDS[@]}" 2>/dev/null
        for _ in $(seq 50); do
            alive=0
            for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
            [ $alive = 0 ] && break
            sleep 0.1
        done
        kill -KILL "${PIDS[@]}" 2>/dev/null
        wait "${PIDS[@]}" 2>/dev/null
    fi
    [ -n "$NS_MADE" ] && ip netns del "$NS" 2>/dev/null && ip netns del "$NS-r" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT" "$W/agents" "$W/state" "$W/vmstate"
# vmnetprobe's own state directory (facts cache), fresh for this run: the
# default one is shared with every other run on the host and can be large.
VMNP_STATE="--state-dir $W/vmstate"

# --- network: the guests' namespace, one "guest" NIC with a MAC, and a ----
# router namespace behind it (the gateway must not be the guest's own address)
ip netns add "$NS"; NS_MADE=1
ip netns add "$NS-r"
ip -n "$NS" link set lo up
ip -n "$NS" link add eth0 type veth peer name gw0 netns "$NS-r"
ip -n "$NS" addr add 192.0.2.10/24 dev eth0
ip -n "$NS-r" link set lo up
ip -n "$NS-r" addr add "$GATEWAY/24" dev gw0
ip -n "$NS-r" addr add "$EXTERNAL/32" dev lo
ip -n "$NS" link set eth0 up
ip -n "$NS-r" link set gw0 up
ip -n "$NS" route add default via "$GATEWAY" dev eth0
# No forwarding: DROPPED reaches gw0 and is dropped without an ICMP error.
ip netns exec "$NS-r" sysctl -qw net.ipv4.ip_forward=0

echo "starting $MAX qemu-ga in namespace $NS ($("$QEMU_GA" -V | head -n1))"
for i in $(seq -f %03g 1 "$MAX"); do
    mkdir -p "$W/state/vm$i"
    ip netns exec "$NS" "$QEMU_GA" -m unix-listen -p "$W/agents/vm$i.sock" \
        -t "$W/state/vm$i" -f "$W/state/vm$i/qga.pid" \
        </dev/null >/dev/null 2>"$W/state/vm$i/qga.log" &
    PIDS+=($!)      # `ip netns exec` execs qemu-ga: this is the agent's PID
done
printf '%s\n' "${PIDS[@]}" >"$W/agents.pids"
deadline=$((SECONDS + 60))
for i in $(seq -f %03g 1 "$MAX"); do
    while [ ! -S "$W/agents/vm$i.sock" ]; do
        [ $SECONDS -lt $deadline ] || die "agent vm$i did not create its socket"
        sleep 0.05
    done
done
# Per size, a directory holding the first N sockets (symlinks).
for n in $SIZES $BASE_SIZES $SERVE_SIZES $SCALE_SIZES; do
    d=$W/set$n
    [ -d "$d" ] && continue
    mkdir "$d"
    for i in $(seq -f %03g 1 "$n"); do ln -s "$W/agents/vm$i.sock" "$d/vm$i.sock"; done
done
probe() { # probe N [args...]
    local n=$1; shift
    # shellcheck disable=SC2086
    "$BIN" zabbix --socket-glob "$W/set$n/*.sock" --external "$EXTERNAL" $VMNP_STATE $EXTRA_ARGS "$@"
}
# Every VM OK, its eth0 gateway (found in the guest's route table) and the
# external address pinged with an RTT.
check_ok() { # check_ok N FILE
    jq -e --argjson n "$1" --arg gw "$GATEWAY" '
        (.vms | length) == $n and all(.vms[];
            .state == "OK"
            and any(.nics[]; .gateway == $gw and .code == "ok" and .rtt_ms != null)
            and .external.code == "ok" and .external.rtt_ms != null)' "$2" >/dev/null
}

# --- 1. correctness before timing ----------------------------------------
# Up to 3 tries: right after start-up, 1000 agents still compete for the CPU.
for try in 1 2 3; do
    probe "$MAX" >"$W/verify.json"
    check_ok "$MAX" "$W/verify.json" && break
    echo "verify try $try: not every VM OK yet"
    sleep 5
done
check_ok "$MAX" "$W/verify.json" || {
    cp "$W/verify.json" "$OUT/verify-failed.json"
    jq -c '(.vms | length), ([.vms[] | .code] | group_by(.) | map({(.[0]): length}) | add)' "$W/verify.json"
    jq -c --arg gw "$GATEWAY" '.vms[] | select((.state == "OK"
            and any(.nics[]; .gateway == $gw and .code == "ok" and .rtt_ms != null)
            and .external.code == "ok" and .external.rtt_ms != null) | not)' "$W/verify.json" | head -n 3
    die "vmnetprobe does not report every VM OK with gateway and external RTT"
}
echo "verified: $MAX VMs OK, e.g. $(jq -r '.vms[0].reason' "$W/verify.json")"

# --- 2. the floor --------------------------------------------------------
FLOOR=$(python3 "$BENCH/floor.py" "$W/agents/vm001.sock" "$GATEWAY" 50)
echo "floor: $FLOOR"
floor_ms=$(jq -r .exec_roundtrip_ms <<<"$FLOOR")
# vmnetprobe's own time for one VM (connect .. report), median of 20 runs at N=1
for _ in $(seq 20); do probe 1 | jq -r '.vms[0].duration_ms'; done | sort -n >"$W/vm1.txt"
vm_ms=$(sed -n 10p "$W/vm1.txt")

START=$(python3 "$BENCH/measure.py" --runs 10 -- "$BIN" --version)
echo "startup (--version): $START"

# --- 3. vmnetprobe at each size ------------------------------------------
declare -A V_WALL V_CPU V_RSS V_AGENT B_WALL B_CPU
for n in $SIZES; do
    m=$(python3 "$BENCH/measure.py" --runs "$RUNS" --agents "$W/agents.pids" \
        --save-last "$W/last$n.json" -- "$BIN" zabbix --socket-glob "$W/set$n/*.sock" \
        --external "$EXTERNAL" $VMNP_STATE $EXTRA_ARGS)
    check_ok "$n" "$W/last$n.json" || die "N=$n: last timed run was not all OK"
    V_WALL[$n]=$(jq -r .wall_ms <<<"$m"); V_CPU[$n]=$(jq -r .cpu_ms <<<"$m")
    V_RSS[$n]=$(jq -r .maxrss_kib <<<"$m"); V_AGENT[$n]=$(jq -r .agent_cpu_ms <<<"$m")
    echo "vmnetprobe N=$n: $m"
done

# --- 4. -j sweep at the largest size --------------------------------------
if [ -n "$JOBS_SWEEP" ]; then
    big=${SIZES##* }
    for j in $JOBS_SWEEP; do
        m=$(python3 "$BENCH/measure.py" --runs "$RUNS" --agents "$W/agents.pids" \
            --save-last "$W/j$j.json" -- "$BIN" zabbix --socket-glob "$W/set$big/*.sock" \
            --external "$EXTERNAL" $VMNP_STATE -j "$j")
        check_ok "$big" "$W/j$j.json" || echo "  (-j $j: not all OK)"
        echo "vmnetprobe N=$big -j $j: $m"
    done
fi

# --- 4b. A/B against another build ----------------------------------------
if [ -n "${BIN_BEFORE:-}" ]; then
    : >"$OUT/ab.txt"
    for n in ${AB_SIZES:-1 ${SIZES##* }}; do
        echo "A/B N=$n (interleaved, $RUNS rounds):"
        python3 "$BENCH/compare.py" --glob "$W/set$n/*.sock" --external "$EXTERNAL" \
            --agents "$W/agents.pids" --rounds "$RUNS" --args "$VMNP_STATE" \
            before="$BIN_BEFORE" after="$BIN" | tee -a "$OUT/ab.txt"
    done
fi

# --- 4c. vmnetprobe serve: scrape latency and memory ------------------------
# Probing every scrape (--no-state), and sharing under --min-interval (serve's
# default 30 s: the first scrape probes, the others read the shared result).
: >"$OUT/serve.txt"
for n in $SERVE_SIZES; do
    for mode in probe shared; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if [ "$mode" = probe ]; then state=(--no-state); else state=(--state-dir "$W/serve-state-$n"); fi
        # shellcheck disable=SC2086
        m=$(python3 "$BENCH/scrape.py" --port "$port" --vms "$n" --runs "$RUNS" -- "$BIN" serve \
            --listen "127.0.0.1:$port" --socket-glob "$W/set$n/*.sock" --external "$EXTERNAL" \
            "${state[@]}" $EXTRA_ARGS)
        echo "serve N=$n $mode: $m" | tee -a "$OUT/serve.txt"
    done
done

# --- 4d. host-scale scenarios (issue 11) ---------------------------------
# Broken sockets are named zz-*: sorted last, told apart in the checks.
SCALE_ROWS=()
if [ -n "$SCALE_SIZES" ]; then
    bad=0
    for n in $SCALE_SIZES; do [ $((n / 10)) -gt $bad ] && bad=$((n / 10)); done
    mkdir -p "$W/silent" "$W/nacc"
    silent=() nacc=()
    for i in $(seq -f %03g 1 "$bad"); do
        silent+=("$W/silent/zz-silent$i.sock"); nacc+=("$W/nacc/zz-noaccept$i.sock")
    done
    for mode in silent never-accept; do
        if [ $mode = silent ]; then socks=("${silent[@]}"); else socks=("${nacc[@]}"); fi
        python3 "$BENCH/silent.py" $mode "${socks[@]}" >"$W/$mode.ready" 2>"$W/$mode.log" &
        PIDS+=($!)
    done
    deadline=$((SECONDS + 30))
    until grep -q ready "$W/silent.ready" && grep -q ready "$W/never-accept.ready"; do
        [ $SECONDS -lt $deadline ] || die "silent.py did not start: $(cat "$W"/*.log)"
        sleep 0.1
    done
    for n in $SCALE_SIZES; do
        k=$((n / 10))
        for kind in sil nacc; do
            d=$W/$kind$n; mkdir "$d"
            for i in $(seq -f %03g 1 $((n - k))); do ln -s "$W/agents/vm$i.sock" "$d/vm$i.sock"; done
            for i in $(seq -f %03g 1 "$k"); do
                if [ $kind = sil ]; then ln -s "$W/silent/zz-silent$i.sock" "$d/"
                else ln -s "$W/nacc/zz-noaccept$i.sock" "$d/"; fi
            done
        done
    done
fi
# check_outage N FILE: every VM CRITICAL external_unreachable, its gateway OK.
check_outage() {
    jq -e --argjson n "$1" '(.vms | length) == $n and all(.vms[];
        .state == "CRITICAL" and .external.code == "external_unreachable"
        and all(.nics[]; .code == "ok"))' "$2" >/dev/null
}
# check_partial N FILE: zz-* UNKNOWN agent_timeout, all others OK with RTTs.
check_partial() {
    jq -e --argjson n "$1" '(.vms | length) == $n and all(.vms[];
        if (.name | startswith("zz-")) then .state == "UNKNOWN" and .code == "agent_timeout"
        else .state == "OK" and .external.rtt_ms != null end)' "$2" >/dev/null
}
scale_run() { # scale_run SCENARIO N DIR CHECK [args...]
    local scenario=$1 n=$2 dir=$3 check=$4; shift 4
    local m last=$W/scale-$scenario-$n.json ok=yes healthy
    # shellcheck disable=SC2086
    m=$(python3 "$BENCH/measure.py" --runs "$SCALE_RUNS" --agents "$W/agents.pids" \
        --save-last "$last" -- "$BIN" zabbix --socket-glob "$dir/*.sock" $VMNP_STATE $EXTRA_ARGS "$@")
    if ! $check "$n" "$last"; then
        ok=NO
        cp "$last" "$OUT/"
        echo "  $scenario N=$n not as expected, codes in the last run:" \
            "$(jq -c '[.vms[] | "\(if (.name | startswith("zz-")) then "broken" else "healthy" end) \(.code)"]
                | group_by(.) | map({(.[0]): length}) | add' "$last")"
    fi
    healthy=$(jq '[.vms[] | select(.name | startswith("zz-") | not) | .duration_ms] | sort
        | if length == 0 then null else .[length / 2 | floor] end' "$last")
    echo "scale $scenario N=$n: $m verdicts-as-expected=$ok healthy-VM-median-duration=${healthy}ms"
    SCALE_ROWS+=("| $scenario | $n | $(jq -r .wall_ms <<<"$m") | $(jq -r .wall_max_ms <<<"$m") | $(jq -r .cpu_ms <<<"$m") | $(jq -r --argjson n "$n" '.cpu_ms / $n * 100 | round / 100' <<<"$m") | $(jq -r '.maxrss_kib / 1024 * 10 | round / 10' <<<"$m") | $healthy | $ok |")
}
for n in $SCALE_SIZES; do
    scale_run healthy "$n" "$W/set$n" check_ok --external "$EXTERNAL"
    scale_run outage "$n" "$W/set$n" check_outage --external "$DROPPED" -t 2500ms
    # --grace 0: the sockets are minutes old, a real VM's would be past its boot grace.
    scale_run silent10 "$n" "$W/sil$n" check_partial --external "$EXTERNAL" --grace 0
    scale_run noaccept10 "$n" "$W/nacc$n" check_partial --external "$EXTERNAL" --grace 0
done

# --- 5. shell + socat baseline -------------------------------------------
for n in $BASE_SIZES; do
    m=$(python3 "$BENCH/measure.py" --runs "$BASE_RUNS" --warmup 0 --agents "$W/agents.pids" \
        --save-last "$W/base$n.txt" -- bash "$BENCH/baseline.sh" "$W/set$n/*.sock" "$GATEWAY" "$EXTERNAL")
    [ "$(jq -r .exit <<<"$m")" = 0 ] || die "baseline N=$n failed: $(tail -n 3 "$W/base$n.txt")"
    B_WALL[$n]=$(jq -r .wall_ms <<<"$m"); B_CPU[$n]=$(jq -r .cpu_ms <<<"$m")
    echo "baseline N=$n: $m"
done

# --- 6. table ------------------------------------------------------------
{
    echo "## vmnetprobe benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $("$QEMU_GA" -V | head -n1)"
    echo "binary: $BIN $EXTRA_ARGS (vmnetprobe runs: $RUNS per size, baseline: $BASE_RUNS)"
    echo
    echo "| N | wall median ms | per VM ms | CPU user+sys ms | peak RSS MiB | agents' CPU ms | shell+socat wall ms | speed-up |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $(printf '%s\n' $SIZES $BASE_SIZES | sort -nu); do
        vw=${V_WALL[$n]:-} bw=${B_WALL[$n]:-}
        per=; ratio=; rss=
        [ -n "$vw" ] && per=$(awk -v w="$vw" -v n="$n" 'BEGIN{printf "%.2f", w/n}')
        [ -n "$vw" ] && rss=$(awk -v r="${V_RSS[$n]}" 'BEGIN{printf "%.1f", r/1024}')
        [ -n "$vw" ] && [ -n "$bw" ] && ratio=$(awk -v a="$bw" -v b="$vw" 'BEGIN{printf "%.0fx", a/b}')
        echo "| $n | $vw | $per | ${V_CPU[$n]:-} | $rss | ${V_AGENT[$n]:-} | $bw | $ratio |"
    done
    echo
    echo "floor (bare guest-exec + guest-exec-status of ping $GATEWAY, tight polling): $floor_ms ms;" \
        "guest-info round trip $(jq -r .guest_info_ms <<<"$FLOOR") ms"
    info_ms=$(jq -r .guest_info_ms <<<"$FLOOR")
    # What one VM needs at least here: two exec phases in a row (qemu-ga 7.2 has
    # no guest-network-get-route, so `ip route` runs before the pings; the two
    # pings run together) and 4 plain commands (sync, info, osinfo, interfaces).
    work=$(awk -v f="$floor_ms" -v i="$info_ms" 'BEGIN{printf "%.2f", 2*f+4*i}')
    echo "vmnetprobe per VM at N=1 (its duration_ms: min $(head -n1 "$W/vm1.txt"), median $vm_ms ms of 20)" \
        "-> overhead above one exec round trip $(awk -v a="$vm_ms" -v b="$floor_ms" 'BEGIN{printf "%.2f", a-b}') ms," \
        "above the work floor (2 exec phases + 4 commands = $work ms) $(awk -v a="$vm_ms" -v b="$work" 'BEGIN{printf "%.2f", a-b}') ms"
    [ -s "$OUT/serve.txt" ] && { echo; echo "vmnetprobe serve, $RUNS scrapes in a row (ms from connect to last byte; RSS after them):"; sed 's/^/    /' "$OUT/serve.txt"; }
    echo "process start (--version): wall $(jq -r .wall_ms <<<"$START") ms, CPU $(jq -r .cpu_ms <<<"$START") ms, RSS $(jq -r .maxrss_kib <<<"$START") KiB"
    if [ "${#SCALE_ROWS[@]}" -gt 0 ]; then
        echo
        echo "host-scale scenarios ($SCALE_RUNS runs each; outage: --external $DROPPED -t 2500ms; silent10/noaccept10: --grace 0):"
        echo
        echo "| scenario | N | wall median ms | wall max ms | CPU ms | CPU per VM ms | peak RSS MiB | healthy VMs' median duration ms | verdicts as expected |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        printf '%s\n' "${SCALE_ROWS[@]}"
    fi
} | tee "$OUT/results.md"
