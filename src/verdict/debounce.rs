//! `--fail-after N`: a NIC or external check must fail N probes in a row
//! before it is CRITICAL; until then it is WARNING with the count in its
//! reason. A probe that could not tell (UNKNOWN: agent down, exec
//! disabled, booting) neither counts nor resets; anything else resets.

use super::summary::summarize;
use super::{ServiceState, Verdict};
use crate::report::VmReport;
use std::collections::BTreeMap;

/// Updates `streaks` (kept in the state directory) with this probe of `vm`
/// and downgrades CRITICAL checks that have not failed `fail_after` times
/// in a row yet.
pub fn apply(vm: &mut VmReport, streaks: &mut BTreeMap<String, u32>, fail_after: u32) {
    let mut changed = false;
    for nic in &mut vm.nics {
        changed |= debounce(
            &mut nic.verdict,
            format!("nic:{}", nic.mac),
            streaks,
            fail_after,
        );
    }
    if let Some(ext) = &mut vm.external {
        changed |= debounce(
            &mut ext.verdict,
            format!("external:{}", ext.address),
            streaks,
            fail_after,
        );
    }
    if changed || fail_after > 1 {
        vm.verdict = summarize(&vm.agent.verdict, &vm.nics, vm.external.as_ref());
    }
}

fn debounce(
    verdict: &mut Verdict,
    key: String,
    streaks: &mut BTreeMap<String, u32>,
    fail_after: u32,
) -> bool {
    match verdict.state {
        ServiceState::Unknown => false,
        ServiceState::Ok | ServiceState::Warning => {
            streaks.remove(&key);
            false
        }
        ServiceState::Critical => {
            let count = streaks.entry(key).or_insert(0);
            *count = count.saturating_add(1);
            if *count >= fail_after {
                return false;
            }
            verdict.state = ServiceState::Warning;
            verdict.reason = format!("{} ({} of {fail_after} failures)", verdict.reason, *count);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use crate::verdict::Code;

    fn vm(nic_state: ServiceState, ext_state: ServiceState) -> VmReport {
        let agent = fixture::ok(Code::Ok, "guest agent 7.2 responding");
        let mut vm = fixture::vm("vm1", agent);
        vm.nics.push(fixture::nic(
            "52:54:00:aa:bb:01",
            Verdict::new(
                nic_state,
                Code::GatewayUnreachable,
                "gateway 192.0.2.1 unreachable",
            ),
        ));
        vm.external = Some(fixture::external(Verdict::new(
            ext_state,
            Code::ExternalUnreachable,
            "external unreachable",
        )));
        vm
    }

    #[test]
    fn critical_only_after_n_failures_in_a_row() {
        use ServiceState::*;
        let mut streaks = BTreeMap::new();
        let mut first = vm(Critical, Ok);
        apply(&mut first, &mut streaks, 3);
        assert_eq!(first.nics[0].verdict.state, Warning);
        assert_eq!(
            first.nics[0].verdict.reason,
            "gateway 192.0.2.1 unreachable (1 of 3 failures)"
        );
        assert_eq!(first.verdict.state, Warning);
        assert!(
            first.verdict.reason.contains("(1 of 3 failures)"),
            "{}",
            first.verdict.reason
        );
        // An UNKNOWN probe neither counts nor resets.
        apply(&mut vm(Unknown, Unknown), &mut streaks, 3);
        let mut second = vm(Critical, Ok);
        apply(&mut second, &mut streaks, 3);
        assert!(second.nics[0].verdict.reason.ends_with("(2 of 3 failures)"));
        let mut third = vm(Critical, Ok);
        apply(&mut third, &mut streaks, 3);
        assert_eq!(third.nics[0].verdict.state, Critical);
        assert_eq!(third.verdict.state, Critical);
        // A success resets.
        apply(&mut vm(Ok, Ok), &mut streaks, 3);
        assert!(streaks.is_empty());
        let mut again = vm(Critical, Critical);
        apply(&mut again, &mut streaks, 3);
        assert_eq!(again.verdict.state, Warning);
        assert_eq!(streaks.len(), 2);
    }

    #[test]
    fn fail_after_one_changes_nothing() {
        let mut streaks = BTreeMap::new();
        let mut v = vm(ServiceState::Critical, ServiceState::Critical);
        apply(&mut v, &mut streaks, 1);
        assert_eq!(v.nics[0].verdict.state, ServiceState::Critical);
        assert!(!v.nics[0].verdict.reason.contains("failures"));
    }
}
