//! The result model: what the probe found, per VM and per NIC. Every renderer
//! reads this and nothing else.

use crate::verdict::threshold::Range;
use crate::verdict::{ServiceState, Verdict};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::IpAddr;

#[cfg(test)]
pub(crate) mod fixture;

// The model is also read back from the state directory (results shared
// under `--min-interval`), hence `Deserialize`; the few foreign types go
// through their `FromStr`.

fn de_range<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Range>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// Now, Unix epoch nanoseconds: a run's timestamp.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One run over all selected VMs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// VMs sorted by name (then UUID), each VM's NICs by MAC: the probe
    /// delivers them so (runner, `probe::into_report`), renderers keep the order.
    pub vms: Vec<VmReport>,
    /// The external address pinged from every guest (absent with `--no-exec`).
    pub external_target: Option<IpAddr>,
    /// RTT thresholds in milliseconds, as given with `-w`/`-c`.
    pub thresholds: Thresholds,
    /// Set when the run could not even list VMs (libvirt unreachable, ...).
    /// Such a report has no VMs and is UNKNOWN.
    pub fatal: Option<String>,
    /// Start of the run, Unix epoch nanoseconds: the one timestamp of the run.
    pub timestamp_ns: u64,
    /// Wall time of the whole run.
    pub duration_ms: f64,
    /// Set when this report was not probed for this caller but shared
    /// from the state directory (`--min-interval`): its age when served.
    #[serde(default)]
    pub age_ms: Option<f64>,
    /// Why no VM was listed, when the inventory can say more than "no
    /// running VMs": a socket glob that matched nothing, so that a mistyped
    /// pattern does not pass for an empty host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_vms_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thresholds {
    #[serde(deserialize_with = "de_range")]
    pub warning: Option<Range>,
    #[serde(deserialize_with = "de_range")]
    pub critical: Option<Range>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestOs {
    Linux,
    Windows,
    Unknown,
}

impl GuestOs {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestOs::Linux => "linux",
            GuestOs::Windows => "windows",
            GuestOs::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicKind {
    Internal,
    External,
}

impl NicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NicKind::Internal => "internal",
            NicKind::External => "external",
        }
    }
}

/// Where a NIC's gateway address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewaySource {
    /// `guest-network-get-route` (qemu-ga 9.1+, Linux).
    AgentRoute,
    /// `ip route` run in a Linux guest, or `route print` in a Windows guest.
    GuestRouteTable,
    /// The `<ip address>` of the libvirt network the NIC is attached to.
    LibvirtNetwork,
    /// `--gateway` on the command line.
    User,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmReport {
    pub name: String,
    pub uuid: Option<String>,
    pub os: GuestOs,
    /// Worst of agent, NICs and external; its reason names the component.
    #[serde(flatten)]
    pub verdict: Verdict,
    pub agent: AgentReport,
    pub nics: Vec<NicReport>,
    /// The external ping; `None` when not applicable (`--no-exec`, or a VM
    /// with only internal NICs while `--external-network` is in use).
    pub external: Option<TargetReport>,
    pub duration_ms: f64,
    /// Commands sent to the guest agent for this VM in this run (the
    /// transport's own `guest-sync` handshake not counted).
    #[serde(default)]
    pub agent_commands: u32,
    /// Of those, programs started in the guest (`guest-exec`): each one is
    /// a line in the guest's log.
    #[serde(default)]
    pub agent_execs: u32,
    /// The cloud platform's names for this VM (OpenStack Nova's metadata in
    /// the domain XML): extra labels, never part of the VM's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudInstance>,
}

/// What OpenStack Nova writes into a domain's `<metadata>` about the
/// instance behind an `instance-0000xxxx` domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudInstance {
    /// The instance's display name (`nova:name`).
    pub name: String,
    /// The owning project (`nova:owner/nova:project`).
    pub project: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReport {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub version: Option<String>,
    /// Whether `guest-exec` and `guest-exec-status` are present and enabled.
    pub exec_enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NicReport {
    /// Lowercase MAC: the key that joins libvirt's view and the guest's.
    pub mac: String,
    /// The guest's interface name, else the host tap device.
    pub name: Option<String>,
    /// Host side device (libvirt `<target dev>`), if any.
    pub host_dev: Option<String>,
    /// libvirt network or bridge the NIC is attached to.
    pub network: Option<String>,
    pub ips: Vec<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub gateway_source: Option<GatewaySource>,
    #[serde(rename = "type")]
    pub kind: NicKind,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    pub address: IpAddr,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub rtt_ms: Option<f64>,
}

impl Report {
    /// A run that could not even start or list VMs: no VMs, UNKNOWN.
    pub fn failed(fatal: String, timestamp_ns: u64) -> Report {
        Report {
            vms: Vec::new(),
            external_target: None,
            thresholds: Thresholds::default(),
            fatal: Some(fatal),
            timestamp_ns,
            duration_ms: 0.0,
            age_ms: None,
            no_vms_reason: None,
        }
    }

    /// The state of the whole run: worst VM, or UNKNOWN when the run failed.
    pub fn state(&self) -> ServiceState {
        if self.fatal.is_some() {
            return ServiceState::Unknown;
        }
        ServiceState::worst(self.vms.iter().map(|vm| vm.verdict.state))
    }

    /// How many VMs are in each state, in the order OK, WARNING, CRITICAL, UNKNOWN.
    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for vm in &self.vms {
            match vm.verdict.state {
                ServiceState::Ok => counts.ok += 1,
                ServiceState::Warning => counts.warning += 1,
                ServiceState::Critical => counts.critical += 1,
                ServiceState::Unknown => counts.unknown += 1,
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub ok: usize,
    pub warning: usize,
    pub critical: usize,
    pub unknown: usize,
}
