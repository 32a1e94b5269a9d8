//! Reports for unit tests, built in one place: a VM, a NIC and an external
//! check with neutral defaults, to be adjusted field by field.

use super::{AgentReport, GuestOs, NicKind, NicReport, Report, TargetReport, Thresholds, VmReport};
use crate::verdict::{Code, ServiceState, Verdict};

/// An OK verdict with `code` and `reason`.
pub fn ok(code: Code, reason: &str) -> Verdict {
    Verdict::new(ServiceState::Ok, code, reason)
}

/// A Linux VM whose agent (7.2) has `agent` as its verdict and as the VM's;
/// no NICs, no external check.
pub fn vm(name: &str, agent: Verdict) -> VmReport {
    VmReport {
        name: name.to_string(),
        uuid: None,
        os: GuestOs::Linux,
        verdict: agent.clone(),
        agent: AgentReport {
            verdict: agent,
            version: Some("7.2".to_string()),
            exec_enabled: Some(true),
        },
        nics: Vec::new(),
        external: None,
        duration_ms: 1.0,
        agent_commands: 0,
        agent_execs: 0,
        cloud: None,
    }
}

/// An internal NIC `mac` named eth0, without addresses or gateway.
pub fn nic(mac: &str, verdict: Verdict) -> NicReport {
    NicReport {
        mac: mac.to_string(),
        name: Some("eth0".to_string()),
        host_dev: None,
        network: None,
        ips: Vec::new(),
        gateway: None,
        gateway_source: None,
        kind: NicKind::Internal,
        verdict,
        rtt_ms: None,
    }
}

/// The external check of 198.51.100.1.
pub fn external(verdict: Verdict) -> TargetReport {
    TargetReport {
        address: std::net::IpAddr::from([198, 51, 100, 1]),
        verdict,
        rtt_ms: None,
    }
}

/// A run over `vms`, without thresholds.
pub fn report(vms: Vec<VmReport>) -> Report {
    Report {
        vms,
        external_target: None,
        thresholds: Thresholds::default(),
        fatal: None,
        timestamp_ns: 1,
        duration_ms: 1.0,
        age_ms: None,
        no_vms_reason: None,
    }
}
