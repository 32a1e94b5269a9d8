//! A result shared under `--min-interval`, judged by the caller's own RTT
//! thresholds. Thresholds are not part of what is probed: a Nagios service
//! with `-w 100 -c 500` and a Zabbix item without thresholds share one probe,
//! and each sees the replies' RTTs against its own ranges.

use super::policy::{PingTarget, Policy};
use super::summary::summarize;
use super::{Code, Verdict};
use crate::report::{Report, Thresholds};

/// Re-judges every reply (OK or `rtt_high`, with an RTT) in `report` by
/// `policy`'s thresholds and sums up the VMs whose parts changed. Anything
/// else (unreachable, agent down, maintenance, a `--fail-after` count)
/// does not depend on thresholds and stays as probed.
pub fn judge_replies(report: &mut Report, policy: &Policy, thresholds: &Thresholds) {
    report.thresholds = thresholds.clone();
    for vm in &mut report.vms {
        let mut changed = false;
        for nic in &mut vm.nics {
            if let Some(gateway) = nic.gateway {
                changed |= rejudge(
                    &mut nic.verdict,
                    PingTarget::Gateway(gateway),
                    nic.rtt_ms,
                    policy,
                );
            }
        }
        if let Some(ext) = &mut vm.external {
            changed |= rejudge(
                &mut ext.verdict,
                PingTarget::External(ext.address),
                ext.rtt_ms,
                policy,
            );
        }
        if changed {
            vm.verdict = summarize(&vm.agent.verdict, &vm.nics, vm.external.as_ref());
        }
    }
}

fn rejudge(verdict: &mut Verdict, target: PingTarget, rtt: Option<f64>, policy: &Policy) -> bool {
    if !matches!(verdict.code, Code::Ok | Code::RttHigh) || rtt.is_none() {
        return false;
    }
    let judged = policy.rtt_verdict(target, rtt);
    let changed = judged != *verdict;
    *verdict = judged;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{fixture, NicKind};
    use crate::verdict::threshold::Range;
    use crate::verdict::ServiceState;

    fn report(policy: &Policy) -> Report {
        let gw = "192.0.2.1".parse().unwrap();
        let agent = fixture::ok(Code::Ok, "guest agent 7.2 responding");
        let mut vm = fixture::vm("vm1", agent);
        let mut nic = fixture::nic(
            "52:54:00:00:00:01",
            policy.rtt_verdict(PingTarget::Gateway(gw), Some(150.0)),
        );
        nic.gateway = Some(gw);
        nic.kind = NicKind::External;
        nic.rtt_ms = Some(150.0);
        vm.nics.push(nic);
        vm.external = Some(fixture::external(Verdict::new(
            ServiceState::Critical,
            Code::ExternalUnreachable,
            "external unreachable",
        )));
        vm.verdict = summarize(&vm.agent.verdict, &vm.nics, vm.external.as_ref());
        fixture::report(vec![vm])
    }

    #[test]
    fn each_caller_sees_replies_against_its_own_thresholds() {
        let plain = Policy::default();
        let strict = Policy {
            rtt_warning: Some("100".parse::<Range>().unwrap()),
            ..Policy::default()
        };
        let mut shared = report(&plain);
        assert_eq!(shared.vms[0].nics[0].verdict.code, Code::Ok);
        let mine = Thresholds {
            warning: strict.rtt_warning.clone(),
            critical: None,
        };
        judge_replies(&mut shared, &strict, &mine);
        let nic = &shared.vms[0].nics[0].verdict;
        assert_eq!(
            (nic.state, nic.code),
            (ServiceState::Warning, Code::RttHigh)
        );
        assert_eq!(shared.thresholds.warning, mine.warning);
        // The unreachable external is no matter of thresholds: still the VM's verdict.
        assert_eq!(shared.vms[0].verdict.code, Code::ExternalUnreachable);
        judge_replies(&mut shared, &plain, &Thresholds::default());
        assert_eq!(
            shared.vms[0].nics[0].verdict,
            report(&plain).vms[0].nics[0].verdict
        );
    }
}
