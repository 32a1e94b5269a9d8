//! The state policy: the one place that decides which finding is OK, WARNING,
//! CRITICAL or UNKNOWN, with its stable code and one-line reason.

use super::threshold::Range;
use super::{Code, ServiceState, Verdict};
use crate::inventory::PauseReason;
use crate::qga::AgentError;
use serde::Serialize;
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
    /// The host paused the VM (or the guest suspended itself).
    Paused(PauseReason),
    /// An outgoing migration is under way; carries the agent failure seen
    /// meanwhile, if any.
    Migrating(Option<AgentError>),
    /// The agent answered, but the guest's filesystems are frozen (a
    /// backup's `domfsfreeze`): it refuses everything else until thawed.
    Frozen,
    /// The VM's own settings switch it to maintenance, with the note.
    Maintenance(String),
    /// The VM's own settings are invalid (the reason says which).
    SettingsInvalid(String),
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
    /// The gateway is loopback or one of the guest's own addresses: a
    /// ping to it would test nothing on the path out.
    GatewayInvalid(IpAddr, &'static str),
    /// `--no-exec`: the interface is up with addresses; nothing was pinged.
    NotChecked(String),
}

/// The operator's choices that shape states. Serialized into the
/// shared-result key, less the RTT thresholds: each caller judges shared
/// replies by its own (verdict::shared).
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// State for "the agent cannot be reached" findings (default UNKNOWN).
    pub agent_down_state: ServiceState,
    /// State for a VM paused by the user, a save, a dump or a snapshot
    /// (default WARNING); a pause on a failure is always CRITICAL.
    pub paused_state: ServiceState,
    /// State for a VM migrating away (default OK).
    pub migrating_state: ServiceState,
    /// State for a VM whose filesystems are frozen (default WARNING: a
    /// backup thaws within seconds, a freeze left behind stalls the guest).
    pub frozen_state: ServiceState,
    #[serde(skip)]
    pub rtt_warning: Option<Range>,
    #[serde(skip)]
    pub rtt_critical: Option<Range>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            agent_down_state: ServiceState::Unknown,
            paused_state: ServiceState::Warning,
            migrating_state: ServiceState::Ok,
            frozen_state: ServiceState::Warning,
            rtt_warning: None,
            rtt_critical: None,
        }
    }
}

/// What to do about a refused child, on RHEL-family guests the usual case
/// (SECURITY.md, "Guest-side setting").
const EXEC_DENIED_HINT: &str = "an SELinux-confined agent (RHEL family) needs setsebool -P virt_qemu_ga_run_unconfined on, or a policy module allowing ping; see SECURITY.md";

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
            Finding::VmNotRunning => Verdict::new(Critical, Code::VmNotRunning, "VM not running"),
            Finding::Paused(why) if why.is_failure() => Verdict::new(
                Critical,
                Code::PausedError,
                format!("VM {}", why.describe()),
            ),
            Finding::Paused(why) => Verdict::new(
                self.paused_state,
                Code::Paused,
                format!("VM {}", why.describe()),
            ),
            Finding::Migrating(None) => Verdict::new(
                self.migrating_state,
                Code::Migrating,
                "VM migrating to another host",
            ),
            Finding::Migrating(Some(error)) => Verdict::new(
                self.migrating_state,
                Code::Migrating,
                format!("VM migrating to another host ({error})"),
            ),
            Finding::Frozen => Verdict::new(
                self.frozen_state,
                Code::Frozen,
                "guest filesystems frozen (guest-fsfreeze-status): no checks until thawed",
            ),
            Finding::Maintenance(note) if note.is_empty() => {
                Verdict::new(Ok, Code::Maintenance, "in maintenance (libvirt metadata)")
            }
            Finding::Maintenance(note) => Verdict::new(
                Ok,
                Code::Maintenance,
                format!("in maintenance (libvirt metadata): {note}"),
            ),
            Finding::SettingsInvalid(reason) => {
                Verdict::new(Unknown, Code::MetadataInvalid, reason.clone())
            }
            Finding::AgentUp(version) if version.is_empty() => {
                Verdict::new(Ok, Code::Ok, "guest agent responding")
            }
            Finding::AgentUp(version) => {
                Verdict::new(Ok, Code::Ok, format!("guest agent {version} responding"))
            }
            Finding::Agent(error @ AgentError::ExecDenied { .. }) => Verdict::new(
                Unknown,
                Code::ExecDenied,
                format!("{error}; {EXEC_DENIED_HINT}"),
            ),
            Finding::Agent(error) => {
                let (state, code) = match error {
                    AgentError::NoChannel => (agent_down, Code::NoAgentChannel),
                    AgentError::NotConnected => (agent_down, Code::AgentNotConnected),
                    AgentError::Timeout { .. } => (agent_down, Code::AgentTimeout),
                    AgentError::Disconnected(_) => (agent_down, Code::AgentDisconnected),
                    AgentError::Connect(_) => (agent_down, Code::AgentUnreachable),
                    AgentError::Protocol(_) => (agent_down, Code::AgentProtocolError),
                    AgentError::NotRunning => (Critical, Code::VmNotRunning),
                    AgentError::Disabled { .. } => (Unknown, Code::AgentCommandDisabled),
                    AgentError::NotFound { .. } => (Unknown, Code::AgentUnsupported),
                    AgentError::Command { .. } => (Unknown, Code::AgentError),
                    // Given its own verdict above, with the hint.
                    AgentError::ExecDenied { .. } => (Unknown, Code::ExecDenied),
                    AgentError::PermissionDenied(_) => (Unknown, Code::PermissionDenied),
                    AgentError::Host(_) => (Unknown, Code::HostError),
                };
                Verdict::new(state, code, error.to_string())
            }
            Finding::ExecDisabled => Verdict::new(
                Unknown,
                Code::ExecDisabled,
                "guest-exec disabled by the guest agent's policy",
            ),
            Finding::TimedOut(limit) => Verdict::new(
                Unknown,
                Code::TimedOut,
                format!(
                    "timed out (no result within {})",
                    humantime::format_duration(*limit)
                ),
            ),
            Finding::Reachable(target, rtt) => self.rtt_verdict(*target, *rtt),
            Finding::Unreachable(target, detail) => {
                let code = match target {
                    PingTarget::Gateway(_) => Code::GatewayUnreachable,
                    PingTarget::External(_) => Code::ExternalUnreachable,
                };
                let reason = if detail.is_empty() {
                    format!("{target} unreachable")
                } else {
                    format!("{target} unreachable ({detail})")
                };
                Verdict::new(Critical, code, reason)
            }
            Finding::PingMissing => {
                Verdict::new(Unknown, Code::PingMissing, "no ping binary in the guest")
            }
            Finding::PingDenied(detail) => Verdict::new(
                Unknown,
                Code::PingDenied,
                format!("ping not permitted in the guest: {detail}"),
            ),
            Finding::PingError(detail) => {
                Verdict::new(Unknown, Code::PingError, format!("ping failed: {detail}"))
            }
            Finding::PingUnfinished(limit) => Verdict::new(
                Unknown,
                Code::PingTimeout,
                format!(
                    "ping did not finish within {}",
                    humantime::format_duration(*limit)
                ),
            ),
            Finding::NoGateway => Verdict::new(Ok, Code::NoGateway, "no gateway known"),
            Finding::LinkDown => {
                Verdict::new(Critical, Code::LinkDown, "link down (libvirt link state)")
            }
            Finding::NicMissing => {
                Verdict::new(Critical, Code::NicMissing, "NIC not visible in the guest")
            }
            Finding::GatewayInvalid(gateway, why) => Verdict::new(
                Warning,
                Code::GatewayInvalid,
                format!("gateway {gateway} is {why}, not a gateway (not pinged)"),
            ),
            Finding::NoAddress => {
                Verdict::new(Warning, Code::NoAddress, "no IP address in the guest")
            }
            Finding::NotChecked(detail) => Verdict::new(Ok, Code::NotChecked, detail.clone()),
        }
    }

    /// A reply's verdict under this policy's RTT thresholds.
    pub fn rtt_verdict(&self, target: PingTarget, rtt: Option<f64>) -> Verdict {
        let Some(rtt) = rtt else {
            return Verdict::new(ServiceState::Ok, Code::Ok, format!("{target} reachable"));
        };
        let shown = format_rtt(rtt);
        if let Some(range) = self.rtt_critical.as_ref().filter(|r| r.alerts(rtt)) {
            return Verdict::new(
                ServiceState::Critical,
                Code::RttHigh,
                format!("{target} rtt {shown} outside critical range {range}"),
            );
        }
        if let Some(range) = self.rtt_warning.as_ref().filter(|r| r.alerts(rtt)) {
            return Verdict::new(
                ServiceState::Warning,
                Code::RttHigh,
                format!("{target} rtt {shown} outside warning range {range}"),
            );
        }
        Verdict::new(ServiceState::Ok, Code::Ok, format!("{target} rtt {shown}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::*;

    fn gw() -> PingTarget {
        PingTarget::Gateway("192.0.2.1".parse().unwrap())
    }

    fn state(policy: &Policy, finding: Finding) -> (ServiceState, Code) {
        let v = policy.verdict(&finding);
        (v.state, v.code)
    }

    #[test]
    fn every_finding_has_its_state_and_code() {
        let p = Policy::default();
        let ext = PingTarget::External("198.51.100.1".parse().unwrap());
        let cases: Vec<(Finding, ServiceState, Code)> = vec![
            (Finding::VmNotRunning, Critical, Code::VmNotRunning),
            (Finding::Paused(PauseReason::User), Warning, Code::Paused),
            (Finding::Paused(PauseReason::Save), Warning, Code::Paused),
            (
                Finding::Paused(PauseReason::Snapshot),
                Warning,
                Code::Paused,
            ),
            (
                Finding::Paused(PauseReason::GuestSuspended),
                Warning,
                Code::Paused,
            ),
            (
                Finding::Paused(PauseReason::IoError),
                Critical,
                Code::PausedError,
            ),
            (
                Finding::Paused(PauseReason::Watchdog),
                Critical,
                Code::PausedError,
            ),
            (Finding::Migrating(None), Ok, Code::Migrating),
            (
                Finding::Migrating(Some(AgentError::Timeout {
                    command: "guest-exec-status".into(),
                })),
                Ok,
                Code::Migrating,
            ),
            (Finding::Frozen, Warning, Code::Frozen),
            (
                Finding::Agent(AgentError::ExecDenied {
                    command: "guest-exec".into(),
                    desc: "Failed to execute child process “/bin/ping” (Permission denied)".into(),
                }),
                Unknown,
                Code::ExecDenied,
            ),
            (Finding::Maintenance(String::new()), Ok, Code::Maintenance),
            (
                Finding::SettingsInvalid("invalid vmnetprobe metadata: x".into()),
                Unknown,
                Code::MetadataInvalid,
            ),
            (Finding::AgentUp("7.2".into()), Ok, Code::Ok),
            (
                Finding::Agent(AgentError::NoChannel),
                Unknown,
                Code::NoAgentChannel,
            ),
            (
                Finding::Agent(AgentError::NotConnected),
                Unknown,
                Code::AgentNotConnected,
            ),
            (
                Finding::Agent(AgentError::Timeout {
                    command: "guest-info".into(),
                }),
                Unknown,
                Code::AgentTimeout,
            ),
            (
                Finding::Agent(AgentError::Disconnected("eof".into())),
                Unknown,
                Code::AgentDisconnected,
            ),
            (
                Finding::Agent(AgentError::Connect("x".into())),
                Unknown,
                Code::AgentUnreachable,
            ),
            (
                Finding::Agent(AgentError::Protocol("x".into())),
                Unknown,
                Code::AgentProtocolError,
            ),
            (
                Finding::Agent(AgentError::NotRunning),
                Critical,
                Code::VmNotRunning,
            ),
            (
                Finding::Agent(AgentError::Disabled {
                    command: "guest-info".into(),
                }),
                Unknown,
                Code::AgentCommandDisabled,
            ),
            (
                Finding::Agent(AgentError::NotFound {
                    command: "x".into(),
                }),
                Unknown,
                Code::AgentUnsupported,
            ),
            (
                Finding::Agent(AgentError::Command {
                    command: "x".into(),
                    desc: "y".into(),
                }),
                Unknown,
                Code::AgentError,
            ),
            (
                Finding::Agent(AgentError::PermissionDenied("ro".into())),
                Unknown,
                Code::PermissionDenied,
            ),
            (
                Finding::Agent(AgentError::Host("x".into())),
                Unknown,
                Code::HostError,
            ),
            (Finding::ExecDisabled, Unknown, Code::ExecDisabled),
            (
                Finding::TimedOut(Duration::from_secs(10)),
                Unknown,
                Code::TimedOut,
            ),
            (Finding::Reachable(gw(), Some(1.0)), Ok, Code::Ok),
            (Finding::Reachable(gw(), None), Ok, Code::Ok),
            (
                Finding::Unreachable(gw(), String::new()),
                Critical,
                Code::GatewayUnreachable,
            ),
            (
                Finding::Unreachable(ext, "100% loss".into()),
                Critical,
                Code::ExternalUnreachable,
            ),
            (Finding::PingMissing, Unknown, Code::PingMissing),
            (Finding::PingDenied("x".into()), Unknown, Code::PingDenied),
            (Finding::PingError("x".into()), Unknown, Code::PingError),
            (
                Finding::PingUnfinished(Duration::from_secs(3)),
                Unknown,
                Code::PingTimeout,
            ),
            (Finding::NoGateway, Ok, Code::NoGateway),
            (Finding::LinkDown, Critical, Code::LinkDown),
            (Finding::NicMissing, Critical, Code::NicMissing),
            (Finding::NoAddress, Warning, Code::NoAddress),
            (
                Finding::GatewayInvalid("127.0.0.1".parse().unwrap(), "loopback"),
                Warning,
                Code::GatewayInvalid,
            ),
            (Finding::NotChecked("up".into()), Ok, Code::NotChecked),
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
    fn lifecycle_states_are_configurable_but_failures_are_not() {
        let p = Policy {
            paused_state: Ok,
            migrating_state: Warning,
            frozen_state: Critical,
            ..Policy::default()
        };
        assert_eq!(state(&p, Finding::Frozen), (Critical, Code::Frozen));
        assert_eq!(
            state(&p, Finding::Paused(PauseReason::User)),
            (Ok, Code::Paused)
        );
        assert_eq!(
            state(&p, Finding::Paused(PauseReason::IoError)),
            (Critical, Code::PausedError)
        );
        assert_eq!(
            state(&p, Finding::Migrating(None)),
            (Warning, Code::Migrating)
        );
        let v = p.verdict(&Finding::Paused(PauseReason::IoError));
        assert_eq!(v.reason, "VM paused on a disk I/O error");
        let v = p.verdict(&Finding::Migrating(Some(AgentError::Timeout {
            command: "guest-info".into(),
        })));
        assert_eq!(
            v.reason,
            "VM migrating to another host (guest agent not answering (guest-info timed out))"
        );
        let v = p.verdict(&Finding::Maintenance("kernel update".into()));
        assert_eq!(v.reason, "in maintenance (libvirt metadata): kernel update");
    }

    #[test]
    fn rtt_thresholds_check_critical_before_warning() {
        let p = Policy {
            rtt_warning: Some("100".parse().unwrap()),
            rtt_critical: Some("500".parse().unwrap()),
            ..Policy::default()
        };
        assert_eq!(
            state(&p, Finding::Reachable(gw(), Some(50.0))),
            (Ok, Code::Ok)
        );
        assert_eq!(
            state(&p, Finding::Reachable(gw(), Some(150.0))),
            (Warning, Code::RttHigh)
        );
        assert_eq!(
            state(&p, Finding::Reachable(gw(), Some(600.0))),
            (Critical, Code::RttHigh)
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
