//! Which VMs to probe and what the host knows about them: name, UUID, NICs
//! (from the libvirt domain XML), the agent channel, and how to reach the agent.

pub mod fake;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod socket;
pub mod started;

use crate::qga::{AgentError, AgentTransport};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Opens a session with one VM's guest agent.
pub trait AgentConnector: Send + Sync {
    fn connect(&self, timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError>;
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

/// One VM to probe.
pub struct VmTarget {
    pub name: String,
    pub uuid: Option<String>,
    pub running: bool,
    pub channel: ChannelState,
    /// NICs from the domain XML; empty when the host does not know them
    /// (socket mode), in which case the guest's own interfaces are used.
    pub nics: Vec<NicConfig>,
    /// The agent socket (socket mode): the VM's identity on this host and,
    /// by its age, when the VM started.
    pub socket: Option<PathBuf>,
    pub connector: Box<dyn AgentConnector>,
}

impl fmt::Debug for VmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmTarget")
            .field("name", &self.name)
            .field("uuid", &self.uuid)
            .field("running", &self.running)
            .field("channel", &self.channel)
            .field("nics", &self.nics)
            .field("socket", &self.socket)
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
    /// The running VMs, or those named in `selection` (name or UUID). A
    /// selected VM that exists but is not running is returned with
    /// `running: false`; a selected VM that does not exist is an error.
    fn list(&self, selection: &[String]) -> Result<Vec<VmTarget>, InventoryError>;
}
