//! Running VMs from libvirt: the domain list, the live domain XML (NICs and
//! the agent channel state) and the XML of the networks the NICs are on.

use super::metadata::{parse_metadata, DomainMetadata};
use super::{
    AgentConnector, ChannelState, Inventory, InventoryError, Lifecycle, NicConfig, PauseReason,
    VmTarget,
};
use crate::qga::libvirt::LibvirtTransport;
use crate::qga::protocol::normalize_mac;
use crate::qga::{AgentError, AgentTransport};
use crate::text::one_line;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use virt::connect::Connect;
use virt::domain::{
    Domain, DomainPausedReason, DomainState, DomainStateReason, DomainStateReasonEnum,
};
use virt::enumutil::Enum;
use virt::sys;

const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

pub struct LibvirtConnector {
    domain: Arc<Domain>,
}

impl AgentConnector for LibvirtConnector {
    fn connect(&self, _timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError> {
        Ok(Box::new(LibvirtTransport::new(Arc::clone(&self.domain))))
    }

    fn lifecycle(&self) -> Option<Lifecycle> {
        let lifecycle = read_lifecycle(&self.domain)?;
        // A live migration keeps the source running until its last phase:
        // only the job says it is under way.
        if lifecycle == Lifecycle::Running && migrating_out(&self.domain) {
            return Some(Lifecycle::Migrating);
        }
        Some(lifecycle)
    }
}

/// The domain's lifecycle from `virDomainGetState`. Only libvirt saying so
/// makes a VM "not running": a state it could not read (libvirtd going
/// away) is `None`, and callers leave the verdict to the agent call, which
/// then reports the host error as UNKNOWN, never a false CRITICAL.
fn read_lifecycle(domain: &Domain) -> Option<Lifecycle> {
    match domain.state() {
        Ok((Enum::Known(state), reason)) => Some(lifecycle_from_state(state, reason)),
        Ok((Enum::Unknown(_), _)) => None,
        Err(e) if is_no_domain(&e) => Some(Lifecycle::NotRunning),
        Err(_) => None,
    }
}

/// An outgoing migration job is active on the domain (libvirt ≥ 3.3 says
/// which operation a job is; older ones never count as migrating).
fn migrating_out(domain: &Domain) -> bool {
    job_operation(domain) == Some(sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i32)
}

/// The operation of the domain's active job, if any, from
/// `virDomainGetJobStats`, read with libvirt's own accessors. Not through
/// virt 0.5's `job_stats()`: it builds a Vec from libvirt's parameter array
/// without a null check (with no job the process aborted, seen in the lab)
/// and would free libvirt's memory with Rust's allocator.
fn job_operation(domain: &Domain) -> Option<i32> {
    use std::os::raw::c_int;
    let mut kind: c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut nparams: c_int = 0;
    // SAFETY: the domain pointer is valid while `domain` lives; libvirt
    // either leaves `params` null or allocates `nparams` entries, which
    // virTypedParamsFree releases (it accepts null).
    let ret = unsafe {
        sys::virDomainGetJobStats(domain.as_ptr(), &mut kind, &mut params, &mut nparams, 0)
    };
    if ret < 0 {
        return None;
    }
    let mut operation: c_int = 0;
    let found = !params.is_null()
        // SAFETY: `params`/`nparams` as libvirt returned them; the name is a
        // NUL-terminated constant; `operation` outlives the call.
        && unsafe {
            sys::virTypedParamsGetInt(
                params,
                nparams,
                sys::VIR_DOMAIN_JOB_OPERATION.as_ptr(),
                &mut operation,
            )
        } == 1;
    // SAFETY: freed once, as allocated by libvirt above.
    unsafe { sys::virTypedParamsFree(params, nparams) };
    (kind != sys::VIR_DOMAIN_JOB_NONE as c_int && found).then_some(operation)
}

/// Maps libvirt's state and reason to a [`Lifecycle`].
pub fn lifecycle_from_state(state: DomainState, reason: DomainStateReasonEnum) -> Lifecycle {
    use DomainPausedReason as P;
    match state {
        // Blocked is running, waiting on a resource; "no state" is what
        // some drivers report for a running domain.
        DomainState::Running | DomainState::Blocked | DomainState::NoState => Lifecycle::Running,
        DomainState::PMSuspended => Lifecycle::Paused(PauseReason::GuestSuspended),
        // Active but stopped after a guest crash (on_crash='preserve'):
        // a failure to report, not a VM to leave out.
        DomainState::Crashed => Lifecycle::Paused(PauseReason::Crashed),
        DomainState::Shutdown | DomainState::Shutoff => Lifecycle::NotRunning,
        DomainState::Paused => {
            let Enum::Known(DomainStateReason::Paused(Enum::Known(why))) = reason else {
                return Lifecycle::Paused(PauseReason::Unknown);
            };
            Lifecycle::Paused(match why {
                P::Migration | P::PostCopy => return Lifecycle::Migrating,
                P::User => PauseReason::User,
                P::Save => PauseReason::Save,
                P::Dump => PauseReason::Dump,
                P::Snapshot | P::FromSnapshot => PauseReason::Snapshot,
                P::StartingUp => PauseReason::StartingUp,
                P::ShuttingDown => PauseReason::ShuttingDown,
                P::IOError => PauseReason::IoError,
                P::Watchdog => PauseReason::Watchdog,
                P::Crashed => PauseReason::Crashed,
                P::APIError => PauseReason::ApiError,
                P::PostCopyFailed => PauseReason::PostcopyFailed,
                P::Unknown => PauseReason::Unknown,
            })
        }
    }
}

/// What the live domain XML says.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainXml {
    pub nics: Vec<NicConfig>,
    pub channel: ChannelState,
    pub metadata: DomainMetadata,
}

/// Parses the NICs and the guest agent channel out of a domain's XML.
pub fn parse_domain_xml(xml: &str) -> Result<DomainXml, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("invalid domain XML: {e}"))?;
    let devices = doc.descendants().find(|n| n.has_tag_name("devices"));
    let mut nics = Vec::new();
    let mut channel = ChannelState::Missing;
    for node in devices.iter().flat_map(|d| d.children()) {
        if node.has_tag_name("interface") {
            let child = |tag: &str| node.children().find(|c| c.has_tag_name(tag));
            let attr = |tag: &str, name: &str| {
                child(tag)
                    .and_then(|c| c.attribute(name))
                    .map(|v| one_line(v, 256))
            };
            let Some(mac) = child("mac")
                .and_then(|m| m.attribute("address"))
                .and_then(normalize_mac)
            else {
                continue;
            };
            let kind = node.attribute("type").unwrap_or("");
            nics.push(NicConfig {
                mac,
                host_dev: attr("target", "dev"),
                network: if kind == "network" {
                    attr("source", "network")
                } else {
                    None
                },
                bridge: attr("source", "bridge")
                    .or_else(|| (kind == "direct").then(|| attr("source", "dev")).flatten()),
                model: attr("model", "type"),
                link_down: child("link").and_then(|l| l.attribute("state")) == Some("down"),
                network_addresses: Vec::new(),
            });
        } else if node.has_tag_name("channel") {
            let target = node.children().find(|c| c.has_tag_name("target"));
            if target.and_then(|t| t.attribute("name")) == Some(AGENT_CHANNEL) {
                channel = match target.and_then(|t| t.attribute("state")) {
                    Some("connected") => ChannelState::Connected,
                    Some("disconnected") => ChannelState::Disconnected,
                    _ => ChannelState::Unknown,
                };
            }
        }
    }
    nics.sort_by(|a, b| a.mac.cmp(&b.mac));
    Ok(DomainXml {
        nics,
        channel,
        metadata: parse_metadata(doc.root_element()),
    })
}

fn prefix_from_netmask(mask: &str) -> Option<u8> {
    let mask: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(mask);
    // A valid netmask is a run of ones followed by zeros.
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones() as u8)
}

/// A libvirt network's bridge and host addresses (with prefix).
pub type NetworkFacts = (Option<String>, Vec<(IpAddr, u8)>);

/// The bridge and the host addresses (with prefix) of a libvirt network.
pub fn parse_network_xml(xml: &str) -> Result<NetworkFacts, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("invalid network XML: {e}"))?;
    let root = doc.root_element();
    let bridge = root
        .children()
        .find(|c| c.has_tag_name("bridge"))
        .and_then(|b| b.attribute("name"))
        .map(|b| one_line(b, 256));
    let mut addresses = Vec::new();
    for ip in root.children().filter(|c| c.has_tag_name("ip")) {
        let Some(addr) = ip
            .attribute("address")
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let prefix = ip
            .attribute("prefix")
            .and_then(|p| p.parse::<u8>().ok())
            .or_else(|| ip.attribute("netmask").and_then(prefix_from_netmask))
            .unwrap_or(if addr.is_ipv4() { 24 } else { 64 });
        addresses.push((addr, prefix));
    }
    Ok((bridge, addresses))
}

pub struct LibvirtInventory {
    conn: Connect,
    uri: String,
}

fn is_no_domain(e: &virt::error::Error) -> bool {
    matches!(e.code(), Enum::Known(virt::error::ErrorNumber::NoDomain))
}

fn libvirt_message(e: &virt::error::Error) -> String {
    one_line(e.message(), 300)
}

impl LibvirtInventory {
    /// Connects read-write (agent commands need it). Also switches off
    /// libvirt's default error printer: errors are returned as values, and
    /// stderr belongs to the monitoring system.
    pub fn open(uri: &str) -> Result<Self, InventoryError> {
        virt::error::clear_error_callback();
        // Shown in errors: never with a password the URI may carry.
        let shown = crate::config::redact_uri(uri);
        let conn = Connect::open(Some(uri)).map_err(|e| {
            // libvirtd's socket for qemu:///system is for root and group
            // libvirt: a monitoring user outside it is the usual cause.
            let hint = (uri == "qemu:///system")
                .then(|| crate::account::missing_group("libvirt"))
                .flatten()
                .map(|fix| format!("; {fix}"))
                .unwrap_or_default();
            InventoryError(format!(
                "cannot connect to libvirt at {shown}: {}{hint}",
                libvirt_message(&e)
            ))
        })?;
        Ok(LibvirtInventory { conn, uri: shown })
    }

    fn find_selected(&self, wanted: &str) -> Result<Domain, InventoryError> {
        self.conn
            .lookup_domain_by_name(wanted)
            .or_else(|_| self.conn.lookup_domain_by_uuid_string(wanted))
            .map_err(|_| InventoryError(format!("unknown domain '{wanted}' at {}", self.uri)))
    }

    fn network(&self, name: &str, cache: &mut BTreeMap<String, NetworkFacts>) -> NetworkFacts {
        if let Some(hit) = cache.get(name) {
            return hit.clone();
        }
        let parsed = self
            .conn
            .lookup_network_by_name(name)
            .ok()
            .and_then(|n| n.xml_desc(0).ok())
            .and_then(|xml| parse_network_xml(&xml).ok())
            .unwrap_or_default();
        cache.insert(name.to_string(), parsed.clone());
        parsed
    }

    fn target(
        &self,
        domain: Domain,
        networks: &mut BTreeMap<String, NetworkFacts>,
    ) -> Result<VmTarget, InventoryError> {
        let name = domain.name().map_err(|e| {
            InventoryError(format!(
                "cannot read a domain name: {}",
                libvirt_message(&e)
            ))
        })?;
        let uuid = domain.uuid_string().ok();
        let lifecycle = read_lifecycle(&domain).unwrap_or(Lifecycle::Running);
        // A domain that vanished between listing and reading is "not running".
        let parsed = domain
            .xml_desc(0)
            .ok()
            .and_then(|xml| parse_domain_xml(&xml).ok());
        let (mut nics, channel, metadata) = match parsed {
            Some(p) => (p.nics, p.channel, p.metadata),
            None => (Vec::new(), ChannelState::Unknown, DomainMetadata::default()),
        };
        for nic in &mut nics {
            if let Some(net) = nic.network.clone() {
                let (bridge, addresses) = self.network(&net, networks);
                nic.network_addresses = addresses;
                if nic.bridge.is_none() {
                    nic.bridge = bridge;
                }
            }
        }
        Ok(VmTarget {
            name,
            uuid,
            cloud: metadata.cloud,
            lifecycle,
            channel,
            nics,
            socket: None,
            settings: metadata.vmnetprobe,
            connector: Box::new(LibvirtConnector {
                domain: Arc::new(domain),
            }),
        })
    }
}

impl Inventory for LibvirtInventory {
    fn list(&self, selection: &[String]) -> Result<Vec<VmTarget>, InventoryError> {
        // Active, not only running: a paused VM is reported, never skipped.
        let domains = if selection.is_empty() {
            self.conn
                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                .map_err(|e| {
                    InventoryError(format!(
                        "cannot list domains at {}: {}",
                        self.uri,
                        libvirt_message(&e)
                    ))
                })?
        } else {
            selection
                .iter()
                .map(|wanted| self.find_selected(wanted))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut networks = BTreeMap::new();
        let mut targets = Vec::with_capacity(domains.len());
        for domain in domains {
            let target = self.target(domain, &mut networks)?;
            // Host-wide, a VM shutting down (or gone since the listing) is
            // not one to watch; a selected one is reported as not running.
            if selection.is_empty() && target.lifecycle == Lifecycle::NotRunning {
                continue;
            }
            targets.push(target);
        }
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        targets.dedup_by(|a, b| a.uuid.is_some() && a.uuid == b.uuid);
        Ok(targets)
    }
}

#[cfg(test)]
mod tests;
