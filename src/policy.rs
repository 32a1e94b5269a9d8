//! The state policy: the one place that decides which finding is OK, WARNING,
//! CRITICAL or UNKNOWN, with its stable code and one-line reason.

use crate::qga::AgentError;
use crate::report::Verdict;
use crate::state::ServiceState;
use crate::threshold::Range;
use std::net::IpAddr;
use std::time::Duration;

/// Which address a ping went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingTarget {
    Gateway(IpAddr),
    External(IpAddr),
}

impl std::fmt::Display for PingTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingTarget::Gateway(addr) => write!(f, "gateway {addr}"),
            PingTarget::External(addr) => write!(f, "external {addr}"),
        }
    }
}

/// Everything the probe can find about a VM, its agent, a NIC or a target.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    VmNotRunning,
    /// The agent answered; carries its version.
    AgentUp(String),
    Agent(AgentError),
    /// guest-exec or guest-exec-status is switched off in the guest.
    ExecDisabled,
    /// The probe did not finish before the overall deadline.
    TimedOut(Duration),
    /// The target answered; RTT in milliseconds when the output showed one.
    Reachable(PingTarget, Option<f64>),
    Unreachable(PingTarget, String),
    PingMissing,
    PingDenied(String),
    PingError(String),
    PingUnfinished(Duration),
    NoGateway,
    LinkDown,
    NicMissing,
    NoAddress,
    /// `--no-exec`: the interface is up with addresses; nothing was pinged.
    NotChecked(String),
}

/// The operator's choices that shape states.
#[derive(Debug, Clone)]
pub struct Policy {
    /// State for "the agent cannot be reached" findings (default UNKNOWN).
    pub agent_down_state: ServiceState,
    pub rtt_warning: Option<Range>,
    pub rtt_critical: Option<Range>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            agent_down_state: ServiceState::Unknown,
            rtt_warning: None,
            rtt_critical: None,
        }
    }
}

fn format_rtt(rtt: f64) -> String {
    if rtt < 10.0 {
        format!("{rtt:.2} ms")
    } else {
        format!("{rtt:.0} ms")
    }
}

impl Policy {
    pub fn verdict(&self, finding: &Finding) -> Verdict {
        use ServiceState::*;
        let agent_down = self.agent_down_state;
        match finding {
            Finding::VmNotRunning => Verdict::new(Critical, "vm_not_running", "VM not running"),
            Finding::AgentUp(version) if version.is_empty() => {
                Verdict::new(Ok, "ok", "guest agent responding")
            }
            Finding::AgentUp(version) => {
                Verdict::new(Ok, "ok", format!("guest agent {version} responding"))
            }
            Finding::Agent(error) => {
                let (state, code) = match error {
                    AgentError::NoChannel => (agent_down, "no_agent_channel"),
                    AgentError::NotConnected => (agent_down, "agent_not_connected"),
                    AgentError::Timeout { .. } => (agent_down, "agent_timeout"),
                    AgentError::Disconnected(_) => (agent_down, "agent_disconnected"),
                    AgentError::Connect(_) => (agent_down, "agent_unreachable"),
                    AgentError::Protocol(_) => (agent_down, "agent_protocol_error"),
                    AgentError::NotRunning => (Critical, "vm_not_running"),
                    AgentError::Disabled { .. } => (Unknown, "agent_command_disabled"),
                    AgentError::NotFound { .. } => (Unknown, "agent_unsupported"),
                    AgentError::Command { .. } => (Unknown, "agent_error"),
                    AgentError::PermissionDenied(_) => (Unknown, "permission_denied"),
                    AgentError::Host(_) => (Unknown, "host_error"),
                };
                Verdict::new(state, code, error.to_string())
            }
            Finding::ExecDisabled => Verdict::new(
                Unknown,
                "exec_disabled",
                "guest-exec disabled by the guest agent's policy",
            ),
            Finding::TimedOut(limit) => Verdict::new(
                Unknown,
                "timed_out",
                format!(
                    "timed out (no result within {})",
                    humantime::format_duration(*limit)
                ),
            ),
            Finding::Reachable(target, rtt) => self.rtt_verdict(*target, *rtt),
            Finding::Unreachable(target, detail) => {
                let code = match target {
                    PingTarget::Gateway(_) => "gateway_unreachable",
                    PingTarget::External(_) => "external_unreachable",
                };
                let reason = if detail.is_empty() {
                    format!("{target} unreachable")
                } else {
                    format!("{target} unreachable ({detail})")
                };
                Verdict::new(Critical, code, reason)
            }
            Finding::PingMissing => {
                Verdict::new(Unknown, "ping_missing", "no ping binary in the guest")
            }
            Finding::PingDenied(detail) => Verdict::new(
                Unknown,
                "ping_denied",
                format!("ping not permitted in the guest: {detail}"),
            ),
            Finding::PingError(detail) => {
                Verdict::new(Unknown, "ping_error", format!("ping failed: {detail}"))
            }
            Finding::PingUnfinished(limit) => Verdict::new(
                Unknown,
                "ping_timeout",
                format!(
                    "ping did not finish within {}",
                    humantime::format_duration(*limit)
                ),
            ),
            Finding::NoGateway => Verdict::new(Ok, "no_gateway", "no gateway known"),
            Finding::LinkDown => {
                Verdict::new(Critical, "link_down", "link down (libvirt link state)")
            }
            Finding::NicMissing => {
                Verdict::new(Critical, "nic_missing", "NIC not visible in the guest")
            }
            Finding::NoAddress => Verdict::new(Warning, "no_address", "no IP address in the guest"),
            Finding::NotChecked(detail) => Verdict::new(Ok, "not_checked", detail.clone()),
        }
    }

    fn rtt_verdict(&self, target: PingTarget, rtt: Option<f64>) -> Verdict {
        let Some(rtt) = rtt else {
            return Verdict::new(ServiceState::Ok, "ok", format!("{target} reachable"));
        };
        let shown = format_rtt(rtt);
        if let Some(range) = self.rtt_critical.as_ref().filter(|r| r.alerts(rtt)) {
            return Verdict::new(
                ServiceState::Critical,
                "rtt_high",
                format!("{target} rtt {shown} outside critical range {range}"),
            );
        }
        if let Some(range) = self.rtt_warning.as_ref().filter(|r| r.alerts(rtt)) {
            return Verdict::new(
                ServiceState::Warning,
                "rtt_high",
                format!("{target} rtt {shown} outside warning range {range}"),
            );
        }
        Verdict::new(ServiceState::Ok, "ok", format!("{target} rtt {shown}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::*;

    fn gw() -> PingTarget {
        PingTarget::Gateway("192.0.2.1".parse().unwrap())
    }

    fn state(policy: &Policy, finding: Finding) -> (ServiceState, &'static str) {
        let v = policy.verdict(&finding);
        (v.state, v.code)
    }

    #[test]
    fn every_finding_has_its_state_and_code() {
        let p = Policy::default();
        let ext = PingTarget::External("198.51.100.1".parse().unwrap());
        let cases: Vec<(Finding, ServiceState, &str)> = vec![
            (Finding::VmNotRunning, Critical, "vm_not_running"),
            (Finding::AgentUp("7.2".into()), Ok, "ok"),
            (
                Finding::Agent(AgentError::NoChannel),
                Unknown,
                "no_agent_channel",
            ),
            (
                Finding::Agent(AgentError::NotConnected),
                Unknown,
                "agent_not_connected",
            ),
            (
                Finding::Agent(AgentError::Timeout {
                    command: "guest-info".into(),
                }),
                Unknown,
                "agent_timeout",
            ),
            (
                Finding::Agent(AgentError::Disconnected("eof".into())),
                Unknown,
                "agent_disconnected",
            ),
            (
                Finding::Agent(AgentError::Connect("x".into())),
                Unknown,
                "agent_unreachable",
            ),
            (
                Finding::Agent(AgentError::Protocol("x".into())),
                Unknown,
                "agent_protocol_error",
            ),
            (
                Finding::Agent(AgentError::NotRunning),
                Critical,
                "vm_not_running",
            ),
            (
                Finding::Agent(AgentError::Disabled {
                    command: "guest-info".into(),
                }),
                Unknown,
                "agent_command_disabled",
            ),
            (
                Finding::Agent(AgentError::NotFound {
                    command: "x".into(),
                }),
                Unknown,
                "agent_unsupported",
            ),
            (
                Finding::Agent(AgentError::Command {
                    command: "x".into(),
                    desc: "y".into(),
                }),
                Unknown,
                "agent_error",
            ),
            (
                Finding::Agent(AgentError::PermissionDenied("ro".into())),
                Unknown,
                "permission_denied",
            ),
            (
                Finding::Agent(AgentError::Host("x".into())),
                Unknown,
                "host_error",
            ),
            (Finding::ExecDisabled, Unknown, "exec_disabled"),
            (
                Finding::TimedOut(Duration::from_secs(10)),
                Unknown,
                "timed_out",
            ),
            (Finding::Reachable(gw(), Some(1.0)), Ok, "ok"),
            (Finding::Reachable(gw(), None), Ok, "ok"),
            (
                Finding::Unreachable(gw(), String::new()),
                Critical,
                "gateway_unreachable",
            ),
            (
                Finding::Unreachable(ext, "100% loss".into()),
                Critical,
                "external_unreachable",
            ),
            (Finding::PingMissing, Unknown, "ping_missing"),
            (Finding::PingDenied("x".into()), Unknown, "ping_denied"),
            (Finding::PingError("x".into()), Unknown, "ping_error"),
            (
                Finding::PingUnfinished(Duration::from_secs(3)),
                Unknown,
                "ping_timeout",
            ),
            (Finding::NoGateway, Ok, "no_gateway"),
            (Finding::LinkDown, Critical, "link_down"),
            (Finding::NicMissing, Critical, "nic_missing"),
            (Finding::NoAddress, Warning, "no_address"),
            (Finding::NotChecked("up".into()), Ok, "not_checked"),
        ];
        for (finding, want_state, want_code) in cases {
            assert_eq!(
                state(&p, finding.clone()),
                (want_state, want_code),
                "{finding:?}"
            );
        }
    }

    #[test]
    fn agent_down_state_only_moves_agent_reachability_findings() {
        let p = Policy {
            agent_down_state: Critical,
            ..Policy::default()
        };
        assert_eq!(
            state(&p, Finding::Agent(AgentError::NotConnected)).0,
            Critical
        );
        assert_eq!(
            state(
                &p,
                Finding::Agent(AgentError::Timeout {
                    command: "x".into()
                })
            )
            .0,
            Critical
        );
        assert_eq!(state(&p, Finding::ExecDisabled).0, Unknown);
        assert_eq!(
            state(&p, Finding::Agent(AgentError::PermissionDenied("x".into()))).0,
            Unknown
        );
    }

    #[test]
    fn rtt_thresholds_check_critical_before_warning() {
        let p = Policy {
            rtt_warning: Some("100".parse().unwrap()),
            rtt_critical: Some("500".parse().unwrap()),
            ..Policy::default()
        };
        assert_eq!(state(&p, Finding::Reachable(gw(), Some(50.0))), (Ok, "ok"));
        assert_eq!(
            state(&p, Finding::Reachable(gw(), Some(150.0))),
            (Warning, "rtt_high")
        );
        assert_eq!(
            state(&p, Finding::Reachable(gw(), Some(600.0))),
            (Critical, "rtt_high")
        );
        let v = p.verdict(&Finding::Reachable(gw(), Some(150.0)));
        assert_eq!(
            v.reason,
            "gateway 192.0.2.1 rtt 150 ms outside warning range 100"
        );
    }

    #[test]
    fn reasons_are_one_line() {
        let p = Policy::default();
        let v = p.verdict(&Finding::Unreachable(gw(), "100% packet loss".into()));
        assert_eq!(v.reason, "gateway 192.0.2.1 unreachable (100% packet loss)");
    }
}
