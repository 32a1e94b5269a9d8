#!/bin/bash
# vmnetprobe lab: build (once) and cache the guest image.
#
#   tests/lab/build-image.sh            -> prints the image directory on stdout
#
# Cache: ${VMNETPROBE_LAB_CACHE:-/var/cache/vmnetprobe-lab}/image-<KEY>, where KEY is
# a hash of this script and of guest/*, so any change rebuilds. The directory holds
#   vmlinuz      Debian bookworm cloud kernel (virtio as modules)
#   initrd.img   busybox-static initramfs that loads the virtio modules and mounts /dev/vda
#   rootfs.raw   ext4 (mkfs.ext4 -d, no loop device): debootstrap minbase + qemu-guest-agent 7.2,
#                iputils-ping, iproute2, busybox-static, qemu-ga 10.0 in /opt/qga10, /sbin/vmnp-init
#   versions     what went in
# Why a Debian kernel and not a tiny self-built one: building a kernel costs ~8.5 min
# on 2 cores; the Debian kernel + initramfs costs a few seconds more per boot
# (see README.md for the figures).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${VMNETPROBE_LAB_CACHE:-/var/cache/vmnetprobe-lab}
log() { printf '[lab-image %s] %s\n' "$(date +%T)" "$*" >&2; }

# The Debian mirror this machine's apt already uses for SUITE (deb822 .sources
# or one-line sources.list), so the image comes from the same registry.
host_mirror() {
    suite=$1
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uri }
            /^$/ { uri = "" }
            END { if (found != "") print found }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }' "$f"
    done
}
mirror=${VMNETPROBE_LAB_MIRROR:-$(host_mirror bookworm | head -n 1)}
security_mirror=${VMNETPROBE_LAB_SECURITY_MIRROR:-$(host_mirror bookworm-security | head -n 1)}
if [ -z "$mirror" ] || [ -z "$security_mirror" ]; then
    log "cannot find the Debian mirror in /etc/apt; set VMNETPROBE_LAB_MIRROR and VMNETPROBE_LAB_SECURITY_MIRROR"
    exit 1
fi

key=$(cat "$here/build-image.sh" "$here/guest/init" "$here/guest/initramfs-init" | sha256sum | cut -c1-16)
out=$cache/image-$key
if [ -f "$out/complete" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/complete" ]; then echo "$out"; exit 0; fi

t0=$(date +%s)
for tool in debootstrap mkfs.ext4 dpkg-deb depmod modprobe cpio gzip apt-get; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool (run tests/lab/lab.sh deps)"; exit 1; }
done
work=$cache/build-$key.tmp
rm -rf "$work"
mkdir -p "$work"
log "building image $key in $work"

# 1. root file system
log "debootstrap bookworm minbase (mirror $mirror)"
debootstrap --variant=minbase \
    --include=qemu-guest-agent,iputils-ping,iproute2,busybox-static \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2; exit 1; }
root=$work/rootfs

# 2. qemu-ga 10.0 from bookworm-backports and the Debian cloud kernel, through a private apt
#    state so the host's apt configuration is not touched.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs"
cat >"$work/apt/sources.list" <<LIST
deb $mirror bookworm main
deb $mirror bookworm-backports main
deb $security_mirror bookworm-security main
LIST
aptopt="-o Dir::Etc::SourceList=$work/apt/sources.list -o Dir::Etc::SourceParts=/dev/null
 -o Dir::State::Lists=$work/apt/lists -o Dir::Cache=$work/apt/cache -o Debug::NoLocking=1
 -o APT::Sandbox::User=root"
log "apt-get update (private lists: bookworm, bookworm-backports, bookworm-security)"
# shellcheck disable=SC2086
apt-get $aptopt update >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
# shellcheck disable=SC2086
kpkg=$(apt-cache $aptopt depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
[ -n "$kpkg" ] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
log "apt-get download qemu-guest-agent/bookworm-backports $kpkg"
# shellcheck disable=SC2086
(cd "$work/debs" && apt-get $aptopt download qemu-guest-agent/bookworm-backports "$kpkg") >>"$work/apt.log" 2>&1 || {
    tail -20 "$work/apt.log" >&2; exit 1; }

dpkg-deb -x "$work"/debs/qemu-guest-agent_*.deb "$work/qga10"
mkdir -p "$root/opt/qga10"
cp "$work/qga10/usr/sbin/qemu-ga" "$root/opt/qga10/qemu-ga"
qga10ver=$(chroot "$root" /opt/qga10/qemu-ga --version | head -n 1)
qga7ver=$(chroot "$root" /usr/sbin/qemu-ga --version | head -n 1)
log "agents: $qga7ver / $qga10ver"

dpkg-deb -x "$work"/debs/"$kpkg"_*.deb "$work/kernel"
kver=${kpkg#linux-image-}
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

# 3. initramfs: busybox-static + virtio modules in dependency order
log "initramfs for $kver"
depmod -b "$work/kernel" "$kver"
ird=$work/initramfs
mkdir -p "$ird/bin" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/modules" "$ird/newroot"
cp "$root/bin/busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$here/guest/initramfs-init" "$ird/init"
chmod 755 "$ird/init"
: >"$ird/modules.order"
for m in virtio_pci virtio_blk virtio_net virtio_console; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r path; do
    base=${path##*/}
    cp "$path" "$ird/modules/$base"
    echo "$base" >>"$ird/modules.order"
done
log "modules: $(tr '\n' ' ' <"$ird/modules.order")"
(cd "$ird" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/initrd.img"

# 4. finish the root file system
cp "$here/guest/init" "$root/sbin/vmnp-init"
chmod 755 "$root/sbin/vmnp-init"
# /usr/bin/ping is switched between these two by vmnp-init (vmnp.ping=...)
cp -a "$root/usr/bin/ping" "$root/usr/bin/ping.iputils"
echo vmnp-guest >"$root/etc/hostname"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
    "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/info"
log "mkfs.ext4 -d"
truncate -s 1G "$work/rootfs.raw"
mkfs.ext4 -q -F -L vmnproot -E root_owner=0:0 -d "$root" "$work/rootfs.raw"

cat >"$work/versions" <<V
image_key=$key
kernel=$kver
qga7=$qga7ver
qga10=$qga10ver
busybox=$(chroot "$root" /bin/busybox 2>&1 | head -n 1)
built=$(date -u +%FT%TZ)
build_seconds=$(($(date +%s) - t0))
V
rm -rf "$root" "$work/kernel" "$work/qga10" "$ird" "$work/apt" "$work/debs"
touch "$work/complete"
rm -rf "$out"
mv "$work" "$out"
# drop images of older build scripts
for old in "$cache"/image-*; do
    [ "$old" = "$out" ] || rm -rf "$old"
done
log "image ready in $(($(date +%s) - t0)) s: $out"
echo "$out"
