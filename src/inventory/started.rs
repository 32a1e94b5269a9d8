//! When each VM started, from the host, never from the guest (boot grace
//! needs it):
//!
//! - libvirt (`qemu:///system` or `qemu:///session` on this host): the
//!   start time of the QEMU process named in libvirt's pid file
//!   (`/run/libvirt/qemu/NAME.pid`), from `/proc/PID/stat`;
//! - agent sockets: the socket file's modification time (QEMU creates a
//!   chardev server socket when the VM starts, as Proxmox VE does).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Linux's USER_HZ, the unit of `/proc/PID/stat` start times, on every
/// architecture libvirt/KVM runs on.
const USER_HZ: u64 = 100;

/// The pid file libvirt keeps for a running domain under `uri`.
pub fn libvirt_pid_file(uri: &str, name: &str) -> Option<PathBuf> {
    if name.contains('/') || name.is_empty() {
        return None;
    }
    match uri {
        "qemu:///system" => Some(PathBuf::from(format!("/run/libvirt/qemu/{name}.pid"))),
        "qemu:///session" => std::env::var_os("XDG_RUNTIME_DIR").map(|dir| {
            PathBuf::from(dir)
                .join("libvirt/qemu/run")
                .join(format!("{name}.pid"))
        }),
        _ => None,
    }
}

/// When the process `pid` started, in ms since the Unix epoch.
pub fn process_started_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    started_ms_from(&stat, &boot)
}

/// `starttime` (field 22, after the parenthesised command name, which may
/// itself contain spaces and parentheses) plus `btime` from `/proc/stat`.
fn started_ms_from(pid_stat: &str, proc_stat: &str) -> Option<u64> {
    let after_name = &pid_stat[pid_stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1000 + ticks * 1000 / USER_HZ)
}

/// Start time of the domain whose pid file is `pid_file`.
pub fn libvirt_started_ms(pid_file: &Path) -> Option<u64> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    process_started_ms(pid)
}

/// Start time of the VM behind an agent socket: the socket's mtime.
pub fn socket_started_ms(socket: &Path) -> Option<u64> {
    let modified = std::fs::metadata(socket).ok()?.modified().ok()?;
    let since = modified.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_start_times_are_parsed_past_odd_command_names() {
        let stat =
            "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 250 1000 10";
        let boot = "cpu 1 2 3\nbtime 1700000000\nprocesses 5\n";
        assert_eq!(started_ms_from(stat, boot), Some(1_700_000_002_500));
        assert_eq!(started_ms_from("garbage", boot), None);
        assert!(process_started_ms(std::process::id()).is_some());
    }

    #[test]
    fn pid_files_only_for_local_uris_and_plain_names() {
        assert_eq!(
            libvirt_pid_file("qemu:///system", "web01"),
            Some(PathBuf::from("/run/libvirt/qemu/web01.pid"))
        );
        assert_eq!(libvirt_pid_file("qemu+ssh://h/system", "web01"), None);
        assert_eq!(libvirt_pid_file("qemu:///system", "../x"), None);
    }
}
