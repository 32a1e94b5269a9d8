//! Boot grace: a VM that started less than `--grace` ago and whose agent
//! has not answered yet is "booting", not failing. The start time comes
//! from the host, never from the guest:
//!
//! - libvirt (`qemu:///system` or `qemu:///session` on this host): the
//!   start time of the QEMU process named in libvirt's pid file
//!   (`/run/libvirt/qemu/NAME.pid`), from `/proc/PID/stat`;
//! - agent sockets: the socket file's modification time (QEMU creates a
//!   chardev server socket when the VM starts, as Proxmox VE does).
//!
//! A reboot inside the guest keeps the QEMU process, so it gets no grace;
//! `--fail-after` covers that.

use crate::probe::summarize;
use crate::report::{Verdict, VmReport};
use crate::state::ServiceState;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// The default `--grace`: long enough for a typical Linux or Windows guest
/// to start its agent (evidence: ~100 s before guest-exec works).
pub const DEFAULT_GRACE: &str = "120s";
/// Linux's USER_HZ, the unit of `/proc/PID/stat` start times, on every
/// architecture libvirt/KVM runs on.
const USER_HZ: u64 = 100;

/// Agent findings that mean "not up yet" (rather than "not there at all"):
/// the channel is not connected, or the agent did not answer.
const NOT_UP_YET: &[&str] = &["agent_not_connected", "agent_timeout", "agent_disconnected"];

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

/// The booting verdict.
pub fn booting_verdict(state: ServiceState, age: Duration, grace: Duration) -> Verdict {
    let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    Verdict::new(
        state,
        "booting",
        format!(
            "booting: guest agent not up yet (VM started {} ago, grace {})",
            secs(age),
            secs(grace)
        ),
    )
}

/// Turns "agent not up yet" into "booting" when the VM started less than
/// `grace` ago. True when it did.
pub fn apply_grace(
    vm: &mut VmReport,
    started_ms: Option<u64>,
    now_ms: u64,
    grace: Duration,
    state: ServiceState,
) -> bool {
    let Some(started) = started_ms else {
        return false;
    };
    let age = Duration::from_millis(now_ms.saturating_sub(started));
    let agent = &vm.agent.verdict;
    if grace.is_zero()
        || age >= grace
        || vm.agent.version.is_some()
        || !NOT_UP_YET.contains(&agent.code)
    {
        return false;
    }
    let old = agent.clone();
    let booting = booting_verdict(state, age, grace);
    for nic in &mut vm.nics {
        if nic.verdict == old {
            nic.verdict = booting.clone();
        }
    }
    if let Some(ext) = &mut vm.external {
        if ext.verdict == old {
            ext.verdict = booting.clone();
        }
    }
    vm.agent.verdict = booting.clone();
    vm.verdict = summarize(&vm.agent.verdict, &vm.nics, vm.external.as_ref());
    // Nothing worse than booting (host-side findings such as a link down
    // still show): the VM is booting.
    if vm.verdict.state <= booting.state {
        vm.verdict = booting;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AgentReport, GuestOs};

    fn vm(code: &'static str, version: Option<&str>) -> VmReport {
        let verdict = Verdict::new(ServiceState::Unknown, code, "guest agent not connected");
        VmReport {
            name: "vm1".into(),
            uuid: None,
            os: GuestOs::Unknown,
            verdict: verdict.clone(),
            agent: AgentReport {
                verdict,
                version: version.map(String::from),
                exec_enabled: None,
            },
            nics: Vec::new(),
            external: None,
            duration_ms: 1.0,
            agent_commands: 0,
            agent_execs: 0,
        }
    }

    const NOW: u64 = 1_000_000_000;
    const GRACE: Duration = Duration::from_secs(120);

    #[test]
    fn a_young_vm_without_agent_is_booting() {
        let mut v = vm("agent_not_connected", None);
        assert!(apply_grace(
            &mut v,
            Some(NOW - 30_000),
            NOW,
            GRACE,
            ServiceState::Ok
        ));
        assert_eq!(v.verdict.code, "booting");
        assert_eq!(v.verdict.state, ServiceState::Ok);
        assert_eq!(
            v.verdict.reason,
            "booting: guest agent not up yet (VM started 30s ago, grace 2m)"
        );
    }

    #[test]
    fn no_grace_when_old_unknown_answered_or_absent() {
        for (code, version, started) in [
            ("agent_not_connected", None, Some(NOW - 121_000)),
            ("agent_not_connected", None, None),
            ("agent_timeout", Some("7.2"), Some(NOW - 1000)),
            ("agent_unreachable", None, Some(NOW - 1000)),
            ("no_agent_channel", None, Some(NOW - 1000)),
            ("vm_not_running", None, Some(NOW - 1000)),
        ] {
            let mut v = vm(code, version);
            assert!(
                !apply_grace(&mut v, started, NOW, GRACE, ServiceState::Ok),
                "{code}"
            );
            assert_eq!(v.verdict.code, code);
        }
        let mut v = vm("agent_timeout", None);
        assert!(!apply_grace(
            &mut v,
            Some(NOW),
            NOW,
            Duration::ZERO,
            ServiceState::Ok
        ));
    }

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
