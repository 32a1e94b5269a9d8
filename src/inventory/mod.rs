//! Which VMs to probe and what the host knows about them: name, UUID, NICs
//! (from the libvirt domain XML), the agent channel, and how to reach the agent.

pub mod fake;
#[cfg(feature = "libvirt")]
pub mod libvirt;
#[cfg(feature = "libvirt")]
pub mod metadata;
pub mod socket;
pub mod started;

use crate::qga::{AgentError, AgentTransport};
use crate::report::NicKind;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Opens a session with one VM's guest agent.
pub trait AgentConnector: Send + Sync {
    fn connect(&self, timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError>;

    /// The VM's lifecycle as the host sees it now, asked again after the
    /// agent failed (a pause or a migration may have begun mid-probe).
    /// `None` when the host cannot tell (agent sockets).
    fn lifecycle(&self) -> Option<Lifecycle> {
        None
    }
}

/// Why the host paused a VM (libvirt's paused-state reason, or a guest
/// that suspended itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    User,
    Save,
    Dump,
    Snapshot,
    StartingUp,
    ShuttingDown,
    /// The guest suspended itself (S3/S4, `pmsuspended`).
    GuestSuspended,
    /// Stopped on a disk I/O error (`error_policy='stop'`, ENOSPC on thin storage).
    IoError,
    /// The watchdog device fired with action `pause`: the guest hung.
    Watchdog,
    /// The guest crashed and the VM was kept (`on_crash='preserve'`, a
    /// panic device with action pause).
    Crashed,
    /// libvirt paused it after one of its own operations failed.
    ApiError,
    /// A post-copy migration failed: the VM's memory is split between hosts.
    PostcopyFailed,
    Unknown,
}

impl PauseReason {
    /// A pause that is a failure of the VM (alerts), not an operator's or
    /// a tool's decision (its state is configurable).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PauseReason::IoError
                | PauseReason::Watchdog
                | PauseReason::Crashed
                | PauseReason::ApiError
                | PauseReason::PostcopyFailed
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            PauseReason::User => "paused by the user",
            PauseReason::Save => "paused while being saved",
            PauseReason::Dump => "paused for a memory dump",
            PauseReason::Snapshot => "paused for a snapshot",
            PauseReason::StartingUp => "paused while starting up",
            PauseReason::ShuttingDown => "paused while shutting down",
            PauseReason::GuestSuspended => "suspended by the guest (power management)",
            PauseReason::IoError => "paused on a disk I/O error",
            PauseReason::Watchdog => "paused by its watchdog (guest hung)",
            PauseReason::Crashed => "stopped after a guest crash",
            PauseReason::ApiError => "paused after a failed libvirt operation",
            PauseReason::PostcopyFailed => "paused: post-copy migration failed",
            PauseReason::Unknown => "paused (reason unknown)",
        }
    }
}

/// Where a VM is in its life, as the host says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Running,
    Paused(PauseReason),
    /// An outgoing migration is under way (running with a migration job,
    /// or paused for its last phase).
    Migrating,
    /// Shut off, shutting down, crashed, or gone.
    NotRunning,
}

/// What the host says about the agent channel before anyone talks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Connected,
    Disconnected,
    /// No `org.qemu.guest_agent.0` channel in the domain XML.
    Missing,
    /// The host cannot tell (a bare socket): connecting will.
    Unknown,
}

/// A NIC as the host configured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NicConfig {
    /// Lowercase MAC.
    pub mac: String,
    /// `<target dev>` (vnet0), present while running.
    pub host_dev: Option<String>,
    /// libvirt network name (`<source network>`).
    pub network: Option<String>,
    /// Host bridge (`<source bridge>`, or the network's bridge).
    pub bridge: Option<String>,
    pub model: Option<String>,
    /// `<link state='down'/>` in the domain XML.
    pub link_down: bool,
    /// Addresses of the libvirt network this NIC is on (`<ip address prefix>`):
    /// the gateway candidates for NAT/routed/isolated networks.
    pub network_addresses: Vec<(IpAddr, u8)>,
}

/// Per-VM settings the host keeps for vmnetprobe (libvirt: the domain's
/// metadata, see [`metadata`]), already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmSettings {
    /// In maintenance, with the operator's note (may be empty): reported,
    /// never alerting, nothing asked of the guest.
    pub maintenance: Option<String>,
    /// When the maintenance ends by itself (`until="…"`, RFC 3339): a
    /// forgotten switch does not silence a VM for good.
    pub maintenance_until: Option<std::time::SystemTime>,
    /// Pinged instead of `--external` from this VM.
    pub external: Option<IpAddr>,
    /// NIC type by MAC, over `--external-network`.
    pub nic_kinds: Vec<(String, NicKind)>,
}

impl VmSettings {
    /// The maintenance note while maintenance is on at `now`, with its end.
    pub fn maintenance_at(&self, now: std::time::SystemTime) -> Option<String> {
        let note = self.maintenance.as_ref()?;
        let Some(until) = self.maintenance_until else {
            return Some(note.clone());
        };
        if now >= until {
            return None;
        }
        let until = humantime::format_rfc3339_seconds(until);
        Some(if note.is_empty() {
            format!("until {until}")
        } else {
            format!("{note}, until {until}")
        })
    }
}

/// One VM to probe.
pub struct VmTarget {
    pub name: String,
    pub uuid: Option<String>,
    /// The cloud platform's names for it (labels, not its key).
    pub cloud: Option<crate::report::CloudInstance>,
    pub lifecycle: Lifecycle,
    pub channel: ChannelState,
    /// NICs from the domain XML; empty when the host does not know them
    /// (socket mode), in which case the guest's own interfaces are used.
    pub nics: Vec<NicConfig>,
    /// The agent socket (socket mode): the VM's identity on this host and,
    /// by its age, when the VM started.
    pub socket: Option<PathBuf>,
    /// `Err` when the host's settings for this VM are invalid: the VM is
    /// then UNKNOWN with that reason instead of probed with half of them.
    pub settings: Result<VmSettings, String>,
    pub connector: Box<dyn AgentConnector>,
}

impl fmt::Debug for VmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmTarget")
            .field("name", &self.name)
            .field("uuid", &self.uuid)
            .field("lifecycle", &self.lifecycle)
            .field("channel", &self.channel)
            .field("nics", &self.nics)
            .field("socket", &self.socket)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Names are not keys: two VMs may share one (the same socket file name in
/// two directories). Each of them is renamed `NAME (SOCKET)` or
/// `NAME (UUID)`, so every output shows both and no consumer merges them.
pub fn disambiguate_names(targets: &mut [VmTarget]) {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for t in targets.iter() {
        *counts.entry(t.name.clone()).or_default() += 1;
    }
    for t in targets.iter_mut() {
        if counts.get(&t.name).copied().unwrap_or(0) < 2 {
            continue;
        }
        let identity = match (&t.socket, &t.uuid) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(uuid)) => uuid.clone(),
            (None, None) => continue,
        };
        t.name = format!("{} ({identity})", t.name);
    }
}

/// A failure to list VMs at all: the run cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError(pub String);

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InventoryError {}

/// A source of VMs (libvirt, a list of agent sockets).
pub trait Inventory {
    /// The running and paused VMs, or those named in `selection` (name or
    /// UUID). A selected VM that exists but is not running is returned with
    /// [`Lifecycle::NotRunning`]; a selected VM that does not exist is an
    /// error.
    fn list(&self, selection: &[String]) -> Result<Vec<VmTarget>, InventoryError>;

    /// Why [`Inventory::list`] found no VM, when there is more to say than
    /// "no running VMs" (a socket pattern that matched nothing).
    fn why_none(&self) -> Option<String> {
        None
    }
}
