#!/bin/bash
# vmnetprobe end-to-end lab: real libvirtd + TCG guests, all inside network namespaces.
#
#   tests/lab/lab.sh deps      install missing Debian packages (never starts daemons)
#   tests/lab/lab.sh image     build/cache the guest image (tests/lab/build-image.sh)
#   tests/lab/lab.sh up        deps + image + namespaces + virtlogd/libvirtd + networks + guests,
#                              waits for every guest (bounded); tears down again if anything fails
#   tests/lab/lab.sh down      stop everything by recorded PID, delete the namespaces
#   tests/lab/lab.sh cut       drop forwarded traffic to the "internet" host (nftables, lab netns)
#   tests/lab/lab.sh restore   remove that drop
#   tests/lab/lab.sh status    domains, agent state, boot times
#   tests/lab/lab.sh exec DOMAIN CMD [ARG...]   run CMD in a guest via guest-exec, print its output
#   tests/lab/lab.sh libvirtd-stop [TERM|KILL]  stop the lab's libvirtd by its recorded PID
#                              (guests keep running; default TERM)
#   tests/lab/lab.sh libvirtd-start             start it again the way `up` does, wait until it answers
#   tests/lab/lab.sh destroy SLUG|NAME          virsh destroy one lab guest
#   tests/lab/lab.sh start SLUG                 create that guest again (same XML and overlay), wait
#                              until it is ready (bounded by VMNETPROBE_LAB_WAIT)
#
# Environment: VMNETPROBE_LAB_CACHE (image cache, default /var/cache/vmnetprobe-lab),
# VMNETPROBE_LAB_STATE (runtime state, default /run/vmnetprobe-lab),
# VMNETPROBE_LAB_WAIT (seconds to wait for all guests, default 300), VMNETPROBE_LAB_GUEST_MIB,
# VMNETPROBE_LAB_TB_MIB, VMNETPROBE_LAB_LIBVIRT_LOG, VMNETPROBE_LAB_MIRROR: see README.md.
#
# Network rule: nothing here sends a packet outside the two namespaces it creates.
# The lab namespace has no default route and no link to the root namespace.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
state=${VMNETPROBE_LAB_STATE:-/run/vmnetprobe-lab}
wait_max=${VMNETPROBE_LAB_WAIT:-300}
ns=vmnp-lab
inet_ns=vmnp-inet
uri=qemu:///system
ext_net=vmnp-ext ext_br=vmnp-ext0 ext_gw=192.0.2.1
int_net=vmnp-int int_br=vmnp-int0 int_gw=198.18.0.1
internet=198.51.100.1
veth_lab=vmnp-up veth_lab_ip=203.0.113.1 veth_inet=vmnp-dn veth_inet_ip=203.0.113.2
mem_mib=${VMNETPROBE_LAB_GUEST_MIB:-128}
tb_mib=${VMNETPROBE_LAB_TB_MIB:-32}

# Guests: slug|libvirt name|agent (7, 10, none)|blocked rpcs|ping (iputils, busybox)|NICs (MAC/IP/PREFIX@network ...)
guests() {
    cat <<'G'
a|vmnp-a-healthy|7||iputils|52:54:00:6e:70:01/192.0.2.11/24@vmnp-ext 52:54:00:6e:70:02/198.18.0.11/24@vmnp-int
b|vmnp-b-noexec|7|guest-exec,guest-exec-status|iputils|52:54:00:6e:70:11/192.0.2.12/24@vmnp-ext
c|vmnp-c-noagent|none||iputils|52:54:00:6e:70:21/192.0.2.13/24@vmnp-ext
d|vmnp-d-busybox|7||busybox|52:54:00:6e:70:31/192.0.2.14/24@vmnp-ext
e|vmnp-e-qga10|10||iputils|52:54:00:6e:70:41/192.0.2.15/24@vmnp-ext 52:54:00:6e:70:42/198.18.0.15/24@vmnp-int
f|vmnp-web 01 ü|7||iputils|52:54:00:6e:70:51/192.0.2.16/24@vmnp-ext
G
}

log() { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
virsh_() { virsh -q -c "$uri" "$@"; }

# ---------------------------------------------------------------- deps
# tests/lib/needs/lab.txt lists the binaries and their packages; the shared installer
# checks the binaries after installing (package status alone can lie, see there).
cmd_deps() {
    # shellcheck source=../lib/packages.sh
    . "$here/../lib/packages.sh"
    ensure_binaries_from lab "$here/../lib/needs/lab.txt" >&2
}

# ---------------------------------------------------------------- processes
pid_alive() { # PIDFILE COMM -> prints pid if the recorded process is alive and is COMM
    [ -s "$1" ] || return 1
    p=$(cat "$1")
    case $p in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$p/comm" ] || return 1
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$p"
}
stop_pid() { # PID: TERM, wait up to 15 s, KILL
    kill -TERM "$1" 2>/dev/null || return 0
    i=0
    while [ -d "/proc/$1" ] && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -d "/proc/$1" ]; then kill -KILL "$1" 2>/dev/null || true; fi
}
ns_exists() { [ -e "/run/netns/$1" ]; }

# ---------------------------------------------------------------- down
cmd_down() {
    lv=$(pid_alive "$state/libvirtd.pid" libvirtd || true)
    if [ -n "$lv" ]; then
        log "down: destroying lab domains and networks"
        virsh_ list --name 2>/dev/null >"$state/.doms" || : >"$state/.doms"
        while IFS= read -r d; do
            case $d in vmnp-*) timeout 30 virsh -q -c "$uri" destroy "$d" </dev/null >/dev/null 2>&1 & ;; esac
        done <"$state/.doms"
        wait || true
        for n in "$ext_net" "$int_net"; do
            timeout 30 virsh -q -c "$uri" net-destroy "$n" >/dev/null 2>&1 || true
        done
        log "down: stopping libvirtd (pid $lv)"
        stop_pid "$lv"
    fi
    vl=$(pid_alive "$state/virtlogd.pid" virtlogd || true)
    if [ -n "$vl" ]; then
        log "down: stopping virtlogd (pid $vl)"
        stop_pid "$vl"
    fi
    # Whatever our daemons left inside our namespaces (qemu, dnsmasq of libvirt's own
    # "default" network): every process there was started by this lab.
    for n in "$ns" "$inet_ns"; do
        ns_exists "$n" || continue
        for p in $(ip netns pids "$n" 2>/dev/null); do
            log "down: stopping leftover pid $p ($(cat "/proc/$p/comm" 2>/dev/null || echo ?)) in netns $n"
            stop_pid "$p"
        done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -f "$state/libvirtd.pid" "$state/virtlogd.pid" "$state/up-complete" "$state/manifest.json" \
        "$state/.doms" "$state"/guests/*.qcow2 2>/dev/null || true
    log "down: done"
}

# ---------------------------------------------------------------- up
preflight() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    mine=$(pid_alive "$state/libvirtd.pid" libvirtd || true)
    if [ -n "$mine" ] || ns_exists "$ns" || ns_exists "$inet_ns"; then
        log "up: leftovers of an earlier lab found, tearing them down first"
        cmd_down
    fi
    for sock in /run/libvirt/libvirt-sock /run/libvirt/virtlogd-sock; do
        [ -S "$sock" ] || continue
        # a socket file alone may be stale; a daemon answering on it is not ours
        if command -v ss >/dev/null; then
            ss -xlpn >"$state/.ss" 2>/dev/null || : >"$state/.ss"
            if grep -F -- "$sock " "$state/.ss" >/dev/null; then
                die "a libvirt daemon not started by this lab listens on $sock ($(grep -F -- "$sock " "$state/.ss" | head -n 1)); stop it first"
            fi
        fi
    done
    for comm in libvirtd virtqemud virtlogd; do
        if pgrep -x "$comm" >/dev/null 2>&1; then
            die "a $comm not started by this lab is running (pid $(pgrep -x "$comm" | tr '\n' ' ')); stop it first"
        fi
    done
}

setup_namespaces() {
    log "up: namespaces $ns (libvirt) and $inet_ns (internet host $internet)"
    ip netns add "$ns"
    ip netns add "$inet_ns"
    ip -n "$ns" link set lo up
    ip -n "$inet_ns" link set lo up
    ip -n "$ns" link add "$veth_lab" type veth peer name "$veth_inet" netns "$inet_ns"
    ip -n "$ns" addr add "$veth_lab_ip/30" dev "$veth_lab"
    ip -n "$inet_ns" addr add "$veth_inet_ip/30" dev "$veth_inet"
    ip -n "$inet_ns" addr add "$internet/32" dev lo
    ip -n "$ns" link set "$veth_lab" up
    ip -n "$inet_ns" link set "$veth_inet" up
    ip -n "$ns" route add "$internet/32" via "$veth_inet_ip"
    # replies are NATed to $veth_lab_ip by libvirt; routes back for completeness
    ip -n "$inet_ns" route add 192.0.2.0/24 via "$veth_lab_ip"
    ip -n "$inet_ns" route add 198.18.0.0/24 via "$veth_lab_ip"
}

start_daemons() {
    mkdir -p "$state/logs" /var/lib/libvirt/dnsmasq /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu
    log "up: virtlogd and libvirtd inside netns $ns"
    ip netns exec "$ns" virtlogd --daemon --pid-file "$state/virtlogd.pid"
    i=0
    until pid_alive "$state/virtlogd.pid" virtlogd >/dev/null; do
        i=$((i + 1)); [ "$i" -lt 100 ] || die "virtlogd did not start"; sleep 0.1
    done
    # libvirtd gets a private qemu.conf (bind-mounted in its own mount namespace only):
    # QEMU runs as root without relabelling. With Debian's default (libvirt-qemu) and a
    # root-only /dev/kvm, libvirt 9.0 re-probes the QEMU capabilities in a loop (~60 s per
    # domain start: "KVM was enabled when probing ..., but it is not available now").
    cat >"$state/qemu.conf" <<C
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
C
    start_libvirtd
}

start_libvirtd() { # libvirtd in $ns with the private qemu.conf; waits until it answers
    # shellcheck disable=SC2016
    LIBVIRT_LOG_OUTPUTS="${VMNETPROBE_LAB_LIBVIRT_LOG:-3}:file:$state/logs/libvirtd.log" \
        ip netns exec "$ns" unshare --mount --propagation slave /bin/sh -c \
        'mount --bind "$1" /etc/libvirt/qemu.conf && exec libvirtd --daemon --pid-file "$2"' \
        sh "$state/qemu.conf" "$state/libvirtd.pid"
    i=0
    until timeout 10 virsh -q -c "$uri" uri >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 60 ] || die "libvirtd does not answer on $uri (see $state/logs/libvirtd.log)"
        sleep 1
    done
    lv=$(pid_alive "$state/libvirtd.pid" libvirtd) || die "libvirtd pid file missing"
    [ "$(ip netns identify "$lv")" = "$ns" ] || die "libvirtd $lv is not in netns $ns"
    log "up: libvirtd pid $lv, virtlogd pid $(cat "$state/virtlogd.pid")"
}

define_networks() {
    cat >"$state/net-ext.xml" <<X
<network>
  <name>$ext_net</name>
  <forward mode='nat'/>
  <bridge name='$ext_br' stp='off' delay='0'/>
  <dns enable='no'/>
  <ip address='$ext_gw' netmask='255.255.255.0'/>
</network>
X
    cat >"$state/net-int.xml" <<X
<network>
  <name>$int_net</name>
  <bridge name='$int_br' stp='off' delay='0'/>
  <dns enable='no'/>
  <ip address='$int_gw' netmask='255.255.255.0'/>
</network>
X
    log "up: networks $ext_net (nat, $ext_gw/24) and $int_net (isolated, $int_gw/24)"
    virsh_ net-create "$state/net-ext.xml" >/dev/null
    virsh_ net-create "$state/net-int.xml" >/dev/null
}

xml_escape() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e "s/'/\&apos;/g"; }

domain_xml() { # slug name agent block ping nics
    slug=$1 name=$2 agent=$3 block=$4 ping=$5 nics=$6
    cmdline="console=ttyS0 loglevel=4 i8042.noaux i8042.nokbd i8042.nopnp mitigations=off"
    cmdline="$cmdline panic=-1 random.trust_cpu=on init_on_alloc=0 page_alloc.shuffle=0"
    cmdline="$cmdline vmnp.host=vmnp-$slug vmnp.agent=$agent vmnp.ping=$ping vmnp.gw=$ext_gw"
    [ -z "$block" ] || cmdline="$cmdline vmnp.block=$block"
    ifaces=
    for n in $nics; do
        mac=${n%%/*}
        rest=${n#*/}
        addr=${rest%@*}
        net=${n##*@}
        cmdline="$cmdline vmnp.nic=$mac/$addr"
        ifaces="$ifaces
    <interface type='network'>
      <mac address='$mac'/>
      <source network='$net'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>"
    done
    cat <<X
<domain type='qemu'>
  <name>$(xml_escape "$name")</name>
  <memory unit='MiB'>$mem_mib</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>/usr/share/qemu/qboot.rom</loader>
    <kernel>$img/vmlinuz</kernel>
    <initrd>$img/initrd.img</initrd>
    <cmdline>$cmdline</cmdline>
  </os>
  <features><acpi/><tcg><tb-cache unit='MiB'>$tb_mib</tb-cache></tcg></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$state/guests/$slug.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>$ifaces
    <serial type='file'>
      <source path='$state/guests/$slug.serial.log'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
X
}

start_guests() {
    mkdir -p "$state/guests"
    guests >"$state/.guests"
    while IFS='|' read -r slug name agent block ping nics; do
        rm -f "$state/guests/$slug".*
        qemu-img create -q -f qcow2 -F raw -b "$img/rootfs.raw" "$state/guests/$slug.qcow2"
        domain_xml "$slug" "$name" "$agent" "$block" "$ping" "$nics" >"$state/guests/$slug.xml"
        now >"$state/guests/$slug.t0"
        virsh_ create "$state/guests/$slug.xml" >/dev/null || die "virsh create $name failed"
        log "up: started '$name' (agent=$agent${block:+ block=$block} ping=$ping)"
    done <"$state/.guests"
}

agent_ping() { timeout 10 virsh -q -c "$uri" qemu-agent-command "$1" '{"execute":"guest-ping"}' --timeout 2 >/dev/null 2>&1; }

wait_guests() {
    deadline=$(($(date +%s) + wait_max))
    : >"$state/boot-times"
    pending=$(cut -d'|' -f1 "$state/.guests" | tr '\n' ' ')
    while [ -n "$pending" ]; do
        still=
        for slug in $pending; do
            IFS='|' read -r _ name agent _ _ _ <<<"$(grep "^$slug|" "$state/.guests")"
            ready=
            if [ -f "$state/guests/$slug.serial.log" ] && grep -a -q vmnp-ready "$state/guests/$slug.serial.log"; then
                if [ "$agent" = none ] || agent_ping "$name"; then ready=1; fi
            fi
            if [ -n "$ready" ]; then
                t=$(awk -v a="$(cat "$state/guests/$slug.t0")" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
                up=$(grep -a -o 'uptime=[0-9.]*' "$state/guests/$slug.serial.log" | head -n 1)
                log "up: '$name' ready after ${t}s (guest kernel $up s at init end)"
                printf '%s|%s|%s|%s\n' "$slug" "$name" "$t" "${up#uptime=}" >>"$state/boot-times"
            else
                still="$still $slug"
            fi
        done
        pending=${still# }
        [ -n "$pending" ] || break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            for slug in $pending; do
                log "guest $slug not ready; serial log tail:"
                tail -n 20 "$state/guests/$slug.serial.log" >&2 2>/dev/null || true
            done
            die "guests not ready within ${wait_max}s: $pending"
        fi
        sleep 1
    done
}

write_manifest() {
    {
        printf '{\n  "uri": "%s",\n  "internet": "%s",\n  "external_network": "%s",\n' "$uri" "$internet" "$ext_net"
        printf '  "networks": {"%s": {"gateway": "%s", "bridge": "%s"}, "%s": {"gateway": "%s", "bridge": "%s"}},\n' \
            "$ext_net" "$ext_gw" "$ext_br" "$int_net" "$int_gw" "$int_br"
        printf '  "guests": [\n'
        first=1
        while IFS='|' read -r slug name agent block ping nics; do
            [ -n "$first" ] || printf ',\n'
            first=
            t=$(grep "^$slug|" "$state/boot-times" | cut -d'|' -f3)
            printf '    {"slug": "%s", "name": "%s", "agent": "%s", "block": "%s", "ping": "%s", "boot_to_ready_s": %s, "nics": [' \
                "$slug" "$name" "$agent" "$block" "$ping" "${t:-null}"
            nf=1
            for n in $nics; do
                [ -n "$nf" ] || printf ', '
                nf=
                mac=${n%%/*} rest=${n#*/}
                addr=${rest%@*} net=${n##*@}
                gw=$ext_gw
                [ "$net" = "$ext_net" ] || gw=$int_gw
                printf '{"mac": "%s", "ip": "%s", "prefix": %s, "network": "%s", "gateway": "%s"}' \
                    "$mac" "${addr%/*}" "${addr#*/}" "$net" "$gw"
            done
            printf ']}'
        done <"$state/.guests"
        printf '\n  ]\n}\n'
    } >"$state/manifest.json"
}

cmd_up() {
    t_start=$(date +%s)
    mkdir -p "$state"
    cmd_deps
    img=$("$here/build-image.sh")
    [ -f "$img/complete" ] || die "no image"
    preflight
    trap 'rc=$?; if [ "$rc" != 0 ]; then log "up failed (exit $rc), tearing down"; cmd_down; fi' EXIT
    setup_namespaces
    start_daemons
    define_networks
    t_guests=$(date +%s)
    start_guests
    wait_guests
    write_manifest
    touch "$state/up-complete"
    trap - EXIT
    log "up: lab ready in $(($(date +%s) - t_start)) s (guests $(($(date +%s) - t_guests)) s); manifest $state/manifest.json"
}

# ---------------------------------------------------------------- cut / restore
cmd_cut() {
    ns_exists "$ns" || die "lab is not up"
    ip netns exec "$ns" nft -f - <<N
table inet vmnp_cut {
  chain forward_drop {
    type filter hook forward priority -10; policy accept;
    ip daddr $internet drop
  }
}
N
    log "cut: forwarded traffic to $internet is dropped in netns $ns"
}
cmd_restore() {
    ns_exists "$ns" || die "lab is not up"
    ip netns exec "$ns" nft delete table inet vmnp_cut 2>/dev/null || true
    log "restore: path to $internet open"
}

# ---------------------------------------------------------------- status / exec
cmd_status() {
    virsh_ list --all
    [ -f "$state/boot-times" ] && { echo "boot-to-ready (s):"; cat "$state/boot-times"; }
    lv=$(pid_alive "$state/libvirtd.pid" libvirtd || true)
    [ -z "$lv" ] || { echo "libvirtd pid $lv rss $(awk '/VmRSS/ {print $2, $3}' "/proc/$lv/status")"; }
    for p in $(ip netns pids "$ns" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qemu-system-x86 ] || continue
        n=$(tr '\0' ' ' <"/proc/$p/cmdline" | sed -n 's/.*guest=\([^,]*\),.*/\1/p')
        echo "qemu pid $p '$n' rss $(awk '/VmRSS/ {print $2, $3}' "/proc/$p/status")"
    done
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: lab.sh exec DOMAIN CMD [ARG...]"
    dom=$1; shift
    path=$1; shift
    args=
    for a in "$@"; do args="$args${args:+,}\"$a\""; done
    r=$(virsh_ qemu-agent-command "$dom" "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"$path\",\"arg\":[$args],\"capture-output\":true}}")
    pid=$(printf '%s' "$r" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    [ -n "$pid" ] || die "guest-exec: $r"
    for _ in $(seq 1 100); do
        s=$(virsh_ qemu-agent-command "$dom" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
        case $s in *'"exited":true'*) break ;; esac
        sleep 0.2
    done
    code=$(printf '%s' "$s" | sed -n 's/.*"exitcode":\([0-9]*\).*/\1/p')
    out=$(printf '%s' "$s" | sed -n 's/.*"out-data":"\([^"]*\)".*/\1/p')
    err=$(printf '%s' "$s" | sed -n 's/.*"err-data":"\([^"]*\)".*/\1/p')
    [ -z "$out" ] || printf '%s' "$out" | base64 -d
    [ -z "$err" ] || printf '%s' "$err" | base64 -d >&2
    echo "[exit ${code:-?}]" >&2
}

# ---------------------------------------------------------------- faults (tests/lab_faults.rs)
cmd_libvirtd_stop() {
    sig=${1:-TERM}
    case $sig in TERM | KILL) ;; *) die "usage: lab.sh libvirtd-stop [TERM|KILL]" ;; esac
    [ -f "$state/up-complete" ] || die "lab is not up"
    lv=$(pid_alive "$state/libvirtd.pid" libvirtd) || die "no lab libvirtd running"
    log "libvirtd-stop: SIG$sig to libvirtd (pid $lv); guests keep running"
    if [ "$sig" = KILL ]; then
        kill -KILL "$lv" 2>/dev/null || true
        i=0
        while [ -d "/proc/$lv" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    else
        stop_pid "$lv"
    fi
    [ ! -d "/proc/$lv" ] || die "libvirtd $lv did not stop"
}
cmd_libvirtd_start() {
    [ -f "$state/up-complete" ] || die "lab is not up"
    ns_exists "$ns" || die "netns $ns missing"
    lv=$(pid_alive "$state/libvirtd.pid" libvirtd || true)
    [ -z "$lv" ] || die "libvirtd already running (pid $lv)"
    t0=$(now)
    start_libvirtd
    log "libvirtd-start: answering again after $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"
}
guest_line() { # SLUG|NAME -> the guests() line
    guests | awk -F'|' -v k="$1" '$1 == k || $2 == k' | head -n 1
}
cmd_destroy() {
    [ $# = 1 ] || die "usage: lab.sh destroy SLUG|NAME"
    line=$(guest_line "$1")
    [ -n "$line" ] || die "no lab guest $1"
    IFS='|' read -r _ name _ _ _ _ <<<"$line"
    virsh_ destroy "$name" >/dev/null
    log "destroy: '$name' destroyed"
}
cmd_start() {
    [ $# = 1 ] || die "usage: lab.sh start SLUG"
    [ -f "$state/up-complete" ] || die "lab is not up"
    line=$(guest_line "$1")
    [ -n "$line" ] || die "no lab guest $1"
    IFS='|' read -r slug name _ _ _ _ <<<"$line"
    [ -f "$state/guests/$slug.xml" ] || die "no domain XML for $slug"
    if virsh_ domstate "$name" 2>/dev/null | grep -q running; then die "'$name' is running"; fi
    : >"$state/guests/$slug.serial.log"
    now >"$state/guests/$slug.t0"
    virsh_ create "$state/guests/$slug.xml" >/dev/null || die "virsh create $name failed"
    log "start: '$name' created again, waiting for it"
    printf '%s\n' "$line" >"$state/.guests"
    cp "$state/boot-times" "$state/.boot-times.all" 2>/dev/null || : >"$state/.boot-times.all"
    wait_guests
    grep -v "^$slug|" "$state/.boot-times.all" >"$state/.boot-times.new" || true
    cat "$state/boot-times" >>"$state/.boot-times.new"
    mv "$state/.boot-times.new" "$state/boot-times"
    rm -f "$state/.boot-times.all"
    guests >"$state/.guests"
}

case ${1:-} in
    deps) cmd_deps ;;
    image) cmd_deps; "$here/build-image.sh" ;;
    up) cmd_up ;;
    down) mkdir -p "$state"; cmd_down ;;
    cut) cmd_cut ;;
    restore) cmd_restore ;;
    status) cmd_status ;;
    exec) shift; cmd_exec "$@" ;;
    libvirtd-stop) shift; cmd_libvirtd_stop "$@" ;;
    libvirtd-start) cmd_libvirtd_start ;;
    destroy) shift; cmd_destroy "$@" ;;
    start) shift; cmd_start "$@" ;;
    *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
