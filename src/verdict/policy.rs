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

impl Finding {
    /// The round-trip time of a reply, when the output showed one.
    pub fn rtt_ms(&self) -> Option<f64> {
        match self {
            Finding::Reachable(_, rtt) => *rtt,
            _ => None,
        }
    }
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
mod tests;
