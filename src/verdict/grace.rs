//! Boot grace: a VM that started less than `--grace` ago and whose agent
//! has not answered yet is Code::Booting, not failing. The start time comes
//! from the host (`inventory::started`), never from the guest.
//!
//! A reboot inside the guest keeps the QEMU process, so it gets no grace;
//! `--fail-after` covers that.

use super::summary::summarize;
use super::{Code, ServiceState, Verdict};
use crate::report::VmReport;
use std::time::Duration;

/// Agent findings that mean "not up yet" (rather than "not there at all"):
/// the channel is not connected, or the agent did not answer.
const NOT_UP_YET: &[Code] = &[
    Code::AgentNotConnected,
    Code::AgentTimeout,
    Code::AgentDisconnected,
];

/// The booting verdict.
pub fn booting_verdict(state: ServiceState, age: Duration, grace: Duration) -> Verdict {
    let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    Verdict::new(
        state,
        Code::Booting,
        format!(
            "booting: guest agent not up yet (VM started {} ago, grace {})",
            secs(age),
            secs(grace)
        ),
    )
}

/// Turns "agent not up yet" into Code::Booting when the VM started less than
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
    use crate::report::fixture;

    fn vm(code: Code, version: Option<&str>) -> VmReport {
        let verdict = Verdict::new(ServiceState::Unknown, code, "guest agent not connected");
        let mut vm = fixture::vm("vm1", verdict);
        vm.agent.version = version.map(String::from);
        vm
    }

    const NOW: u64 = 1_000_000_000;
    const GRACE: Duration = Duration::from_secs(120);

    #[test]
    fn a_young_vm_without_agent_is_booting() {
        let mut v = vm(Code::AgentNotConnected, None);
        assert!(apply_grace(
            &mut v,
            Some(NOW - 30_000),
            NOW,
            GRACE,
            ServiceState::Ok
        ));
        assert_eq!(v.verdict.code, Code::Booting);
        assert_eq!(v.verdict.state, ServiceState::Ok);
        assert_eq!(
            v.verdict.reason,
            "booting: guest agent not up yet (VM started 30s ago, grace 2m)"
        );
    }

    #[test]
    fn no_grace_when_old_unknown_answered_or_absent() {
        for (code, version, started) in [
            (Code::AgentNotConnected, None, Some(NOW - 121_000)),
            (Code::AgentNotConnected, None, None),
            (Code::AgentTimeout, Some("7.2"), Some(NOW - 1000)),
            (Code::AgentUnreachable, None, Some(NOW - 1000)),
            (Code::NoAgentChannel, None, Some(NOW - 1000)),
            (Code::VmNotRunning, None, Some(NOW - 1000)),
        ] {
            let mut v = vm(code, version);
            assert!(
                !apply_grace(&mut v, started, NOW, GRACE, ServiceState::Ok),
                "{code}"
            );
            assert_eq!(v.verdict.code, code);
        }
        let mut v = vm(Code::AgentTimeout, None);
        assert!(!apply_grace(
            &mut v,
            Some(NOW),
            NOW,
            Duration::ZERO,
            ServiceState::Ok
        ));
    }
}
