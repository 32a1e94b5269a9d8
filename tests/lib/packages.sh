# Sourced by every setup script (POSIX sh): installs Debian packages by the
# binaries they must provide, and checks those binaries afterwards.
#
# Why binaries and not package status: a machine image can ship a package from
# bookworm-backports (qemu-utils 10 here) that dpkg reports as installed, and
# that apt then *removes* when it installs bookworm's qemu-system-x86 7.2 beside
# it. Only a check of the binaries after the install catches that.
#
#   ensure_binaries LABEL ENTRY...
#     ENTRY is BINARY=PACKAGE or BINARY=PACKAGE/RELEASE; BINARY is a command
#     name (looked up in PATH plus the sbin directories) or an absolute path.
#     A PACKAGE/RELEASE entry is always installed together with the others
#     whenever anything is missing, so that packages that must match (qemu-utils
#     and qemu-system-x86) come from one release, downgrading if need be.
#   Exits 1 with one line "LABEL: missing after install: BIN (PKG) ..." when a
#   binary is still missing after the install.
#   ensure_cargo_deb LABEL
#     cargo-deb (builds the Debian package; not in Debian 12) from crates.io,
#     pinned, then checks `cargo deb --version`; exits 1 with one line if not.
#   ensure_binaries_from LABEL FILE...
#     The same with the entries read from FILEs (tests/lib/needs/*.txt: one
#     entry a line, # comments), all in one apt transaction.

packages_log=${TMPDIR:-/tmp}/vmnetprobe-apt.log

binary_present() {
    case $1 in
    /*) [ -e "$1" ] ;;
    *) PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" command -v "$1" >/dev/null 2>&1 ;;
    esac
}

# Prints "BIN (PKG)" for each ENTRY whose binary is missing.
missing_binaries() {
    for pk_entry in "$@"; do
        pk_bin=${pk_entry%%=*}
        pk_pkg=${pk_entry#*=}
        binary_present "$pk_bin" || printf '%s (%s) ' "$pk_bin" "${pk_pkg%%/*}"
    done
}

apt_install() {
    made_policy=
    # No systemd here, and CI must not keep stray services: packages must not
    # start their daemons.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        --allow-downgrades -o DPkg::Lock::Timeout=600 "$@" >>"$packages_log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        # A fresh machine may have stale or no package lists.
        apt-get update -q >>"$packages_log" 2>&1 || true
        rc=0
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            --allow-downgrades -o DPkg::Lock::Timeout=600 "$@" >>"$packages_log" 2>&1 || rc=$?
    fi
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

ensure_binaries() {
    pk_label=$1
    shift
    pk_missing=$(missing_binaries "$@")
    if [ -z "$pk_missing" ]; then
        echo "$pk_label: all $# binaries present"
        return 0
    fi
    pk_pkgs=
    for pk_entry in "$@"; do
        pk_bin=${pk_entry%%=*}
        pk_pkg=${pk_entry#*=}
        case $pk_pkg in
        */*) pk_pkgs="$pk_pkgs $pk_pkg" ;;
        *) binary_present "$pk_bin" || pk_pkgs="$pk_pkgs $pk_pkg" ;;
        esac
    done
    # Unique, in order.
    # shellcheck disable=SC2086
    pk_pkgs=$(printf '%s\n' $pk_pkgs | awk '!seen[$0]++' | tr '\n' ' ')
    echo "$pk_label: missing $pk_missing- installing $pk_pkgs"
    # shellcheck disable=SC2086
    if ! apt_install $pk_pkgs; then
        tail -n 15 "$packages_log" >&2
        echo "$pk_label: apt-get install failed for: $pk_pkgs(log: $packages_log)" >&2
        exit 1
    fi
    pk_missing=$(missing_binaries "$@")
    if [ -n "$pk_missing" ]; then
        echo "$pk_label: missing after install: $pk_missing(log: $packages_log)" >&2
        exit 1
    fi
    echo "$pk_label: all $# binaries present"
}

ensure_binaries_from() {
    pk_label=$1
    shift
    # shellcheck disable=SC2046
    ensure_binaries "$pk_label" $(sed -e 's/#.*//' "$@")
}

# From scratch (empty CARGO_HOME and --root, Rust 1.95) this install works and
# takes ~6.5 min on a loaded 2-core machine (382 s, 2026-12-02).
cargo_deb_version=3.8.0

ensure_cargo_deb() {
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "$1: missing cargo-deb - cargo install cargo-deb@$cargo_deb_version --locked"
        if ! env -u CARGO_TARGET_DIR cargo install "cargo-deb@$cargo_deb_version" --locked \
            >>"$packages_log" 2>&1; then
            tail -n 15 "$packages_log" >&2
            echo "$1: cargo install cargo-deb failed (log: $packages_log)" >&2
            exit 1
        fi
    fi
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "$1: missing after install: cargo-deb (cargo install cargo-deb --locked)" >&2
        exit 1
    fi
    echo "$1: cargo-deb present"
}
