//! The per-VM probe: agent capabilities, guest OS, NICs and gateways, then
//! all pings of the VM started at once and polled to the end. Errors are
//! data: every failure becomes a state and a reason on the VM or its NICs.

pub mod exec;
pub mod gate;
pub mod gateway;
pub mod ping;
pub mod runner;
pub mod stop;

use crate::inventory::{ChannelState, Lifecycle, NicConfig, VmSettings, VmTarget};
use crate::memory::facts::{
    now_ms, AgentFacts, FactBook, FactUpdate, RouteEntry, RouteMemo, ROUTE_TTL,
};
use crate::qga::{
    protocol, Agent, AgentError, AgentTransport, FreezeStatus, GuestInfo, GuestInterface, RawReply,
};
use crate::report::{
    AgentReport, GatewaySource, GuestOs, NicKind, NicReport, TargetReport, VmReport,
};
use crate::verdict::policy::{Finding, PingTarget, Policy};
use crate::verdict::summary::summarize;
use crate::verdict::Verdict;
use gate::CommandGate;
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every VM is probed with. Serialized whole into the shared-result
/// key (memory::shared): a setting added here is part of it unless marked
/// `skip` with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeConfig {
    /// Pinged from every guest that has an external NIC.
    pub external: Option<IpAddr>,
    /// `--gateway`: used for NICs whose gateway could not be found.
    pub fallback_gateway: Option<IpAddr>,
    /// libvirt network or bridge names (socket mode: guest interface names)
    /// whose NICs are `external`.
    pub external_networks: Vec<String>,
    pub ping_timeout: Duration,
    /// Upper bound for one agent command.
    pub command_timeout: Duration,
    /// Never run anything in the guest.
    pub no_exec: bool,
    pub policy: Policy,
    /// Facts remembered from earlier runs, and where this run's go; `None`
    /// runs without memory (every fact learned from scratch). Memory, not a
    /// setting: not in the key.
    #[serde(skip)]
    pub facts: Option<Arc<FactBook>>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            external: None,
            fallback_gateway: None,
            external_networks: Vec::new(),
            ping_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(3),
            no_exec: false,
            policy: Policy::default(),
            facts: None,
        }
    }
}

/// Time granted to a ping beyond its own timeout: agent round trips, and
/// fork/exec in slow (emulated) guests.
const PING_GRACE: Duration = Duration::from_secs(2);

/// A NIC while its probe is under way.
struct NicProbe {
    mac: String,
    config: Option<NicConfig>,
    /// The guest interface that carries the NIC's traffic: of those with
    /// its MAC, the one with the default route, else the one with addresses.
    guest: Option<GuestInterface>,
    /// Every guest interface with the NIC's MAC, in the agent's order.
    candidates: Vec<GuestInterface>,
    kind: NicKind,
    gateway: Option<(IpAddr, GatewaySource)>,
    /// Further next hops of an ECMP default route: checked like the first.
    more_gateways: Vec<IpAddr>,
    finding: Option<Finding>,
}

/// NICs a VM may have for its gateways to be remembered between runs.
const MAX_MEMO_NICS: usize = 16;

/// How much an interface looks like the one carrying traffic: a routable
/// address beats a link-local one beats none.
fn address_rank(iface: &GuestInterface) -> u8 {
    if iface.ips.iter().any(|(ip, _)| routable(*ip)) {
        2
    } else {
        u8::from(!iface.ips.is_empty())
    }
}

/// Neither loopback nor link-local.
fn routable(ip: IpAddr) -> bool {
    !ip.is_loopback() && !ping::is_link_local(ip)
}

/// The candidate with the best [`address_rank`]; the first of equals.
fn best_by_address(candidates: &[GuestInterface]) -> Option<&GuestInterface> {
    candidates.iter().rev().max_by_key(|c| address_rank(c))
}

impl NicProbe {
    fn new(mac: String, config: Option<NicConfig>, kind: NicKind) -> NicProbe {
        NicProbe {
            mac,
            config,
            guest: None,
            candidates: Vec::new(),
            kind,
            gateway: None,
            more_gateways: Vec::new(),
            finding: None,
        }
    }

    /// Takes the guest interfaces with this NIC's MAC.
    fn set_candidates(&mut self, candidates: Vec<GuestInterface>) {
        self.guest = best_by_address(&candidates).cloned();
        self.candidates = candidates;
    }

    /// Every gateway to ping, the first one first.
    fn gateways(&self) -> Vec<IpAddr> {
        self.gateway
            .iter()
            .map(|(gw, _)| *gw)
            .chain(self.more_gateways.iter().copied())
            .collect()
    }

    fn ips(&self) -> Vec<IpAddr> {
        self.guest
            .as_ref()
            .map(|g| g.ips.iter().map(|(ip, _)| *ip).collect())
            .unwrap_or_default()
    }

    /// The guest's interface name. Never the host's tap device: a name that
    /// changed when the agent came up would rename monitoring items.
    fn name(&self) -> Option<String> {
        self.guest.as_ref().map(|g| g.name.clone())
    }
}

/// Counts the commands sent to the agent (the measure of how gentle a run
/// is), each under a lease of the run's command gate (`-j`).
struct CountingTransport<'t> {
    inner: &'t mut dyn AgentTransport,
    gate: &'t CommandGate,
    deadline: Instant,
    sent: u32,
    execs: u32,
    /// A command was refused because a stop was requested (`stop`).
    interrupted: bool,
    /// When the last command was sent (after its wait at the gate).
    last_sent: Option<Instant>,
}

impl AgentTransport for CountingTransport<'_> {
    fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<RawReply, AgentError> {
        // After SIGTERM/SIGINT only the started pings are collected.
        if command != "guest-exec-status" && stop::requested() {
            self.interrupted = true;
            return Err(AgentError::Timeout {
                command: command.into(),
            });
        }
        self.sent = self.sent.saturating_add(1);
        if command == "guest-exec" {
            self.execs = self.execs.saturating_add(1);
        }
        let _lease = self.gate.enter(self.deadline);
        self.last_sent = Some(Instant::now());
        // Time spent at the gate comes out of this command's share.
        let timeout = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        self.inner.execute_raw(command, arguments, timeout)
    }
}

/// Which ping binary works in this guest, learned on the first exec.
#[derive(Debug, Clone, Copy)]
enum PingFlavor {
    Linux(usize),
    Windows,
}

struct VmProbe<'c> {
    cfg: &'c ProbeConfig,
    /// The VM's own settings (none when they were invalid: the VM is then
    /// not probed).
    settings: VmSettings,
    os: GuestOs,
    agent: Verdict,
    agent_version: Option<String>,
    exec_enabled: Option<bool>,
    nics: Vec<NicProbe>,
    /// `None` when the external check does not apply to this VM.
    external: Option<(IpAddr, Option<Finding>)>,
    /// The VM's key in the fact book (when there is one).
    key: Option<String>,
    /// Facts from earlier runs, once `guest-info` confirmed the agent is
    /// the same (version and command list).
    known: Option<AgentFacts>,
    /// What this run learned, stored when the agent answered throughout.
    info: Option<GuestInfo>,
    ping_path: Option<String>,
    routes: Option<RouteMemo>,
    agent_commands: u32,
    agent_execs: u32,
    /// Guest interfaces left out by the bounds (socket mode).
    dropped_interfaces: usize,
    /// Cut short by SIGTERM/SIGINT: the result is not the VM's own.
    interrupted: bool,
    /// `guest-fsfreeze-status` said "frozen".
    frozen: bool,
    /// The run's whole time (`-t` as the runner sees it), for the reason of
    /// a VM the deadline cut short.
    run_limit: Duration,
}

/// The NIC's type: the VM's own setting for its MAC, else whether it is on
/// one of `--external-network`.
fn classify_kind(
    cfg: &ProbeConfig,
    settings: &VmSettings,
    mac: &str,
    names: &[Option<&str>],
) -> NicKind {
    if let Some((_, kind)) = settings.nic_kinds.iter().find(|(m, _)| m == mac) {
        return *kind;
    }
    let external = names
        .iter()
        .flatten()
        .any(|name| cfg.external_networks.iter().any(|n| n == name));
    if external {
        NicKind::External
    } else {
        NicKind::Internal
    }
}

impl<'c> VmProbe<'c> {
    fn new(target: &VmTarget, cfg: &'c ProbeConfig) -> Self {
        let settings = target.settings.clone().unwrap_or_default();
        let nics = target
            .nics
            .iter()
            .map(|c| {
                let kind = classify_kind(
                    cfg,
                    &settings,
                    &c.mac,
                    &[c.network.as_deref(), c.bridge.as_deref()],
                );
                NicProbe::new(c.mac.clone(), Some(c.clone()), kind)
            })
            .collect();
        let mut probe = VmProbe {
            cfg,
            settings,
            os: GuestOs::Unknown,
            agent: cfg.policy.verdict(&Finding::AgentUp(String::new())),
            agent_version: None,
            exec_enabled: None,
            nics,
            external: None,
            key: cfg
                .facts
                .as_ref()
                .map(|book| book.key_for(&target.name, target.uuid.as_deref())),
            known: None,
            info: None,
            ping_path: None,
            routes: None,
            agent_commands: 0,
            agent_execs: 0,
            dropped_interfaces: 0,
            interrupted: false,
            run_limit: Duration::ZERO,
            frozen: false,
        };
        probe.update_external_applicability();
        probe
    }

    /// The external ping applies unless `--external-network` is in use and
    /// this VM has no NIC on such a network.
    fn update_external_applicability(&mut self) {
        // The VM's own external address replaces `--external`; none is
        // pinged under `--no-exec` either way.
        let address = self
            .cfg
            .external
            .map(|default| self.settings.external.unwrap_or(default));
        let kinds_set =
            !self.cfg.external_networks.is_empty() || !self.settings.nic_kinds.is_empty();
        let applies = address.is_some()
            && !self.cfg.no_exec
            && (!kinds_set || self.nics.iter().any(|n| n.kind == NicKind::External));
        self.external = match (applies, address) {
            (true, Some(addr)) => Some((addr, self.external.take().and_then(|(_, f)| f))),
            _ => None,
        };
    }

    /// The agent could not be used: it and every undecided check get the reason.
    fn agent_failed(&mut self, finding: Finding) {
        let verdict = self.cfg.policy.verdict(&finding);
        self.agent = verdict;
        for nic in &mut self.nics {
            nic.finding.get_or_insert_with(|| finding.clone());
        }
        if let Some((_, slot)) = &mut self.external {
            slot.get_or_insert(finding);
        }
    }

    fn run(&mut self, target: &VmTarget, gate: &CommandGate, deadline: Instant) {
        // The host's word comes first, and none of these asks the guest
        // anything: a VM in maintenance or paused keeps what was learned
        // about its agent.
        let maintenance = target
            .settings
            .as_ref()
            .ok()
            .and_then(|s| s.maintenance_at(std::time::SystemTime::now()));
        let host_says = match (&target.settings, target.lifecycle) {
            (Err(reason), _) => Some(Finding::SettingsInvalid(reason.clone())),
            (Ok(_), _) if maintenance.is_some() => maintenance.map(Finding::Maintenance),
            (Ok(_), Lifecycle::Paused(why)) => Some(Finding::Paused(why)),
            (Ok(_), Lifecycle::Migrating) => Some(Finding::Migrating(None)),
            _ => None,
        };
        if let Some(finding) = host_says {
            return self.agent_failed(finding);
        }
        let not_up = if target.lifecycle == Lifecycle::NotRunning {
            Some(Finding::VmNotRunning)
        } else {
            match target.channel {
                ChannelState::Missing => Some(Finding::Agent(AgentError::NoChannel)),
                ChannelState::Disconnected => Some(Finding::Agent(AgentError::NotConnected)),
                ChannelState::Connected | ChannelState::Unknown => None,
            }
        };
        if let Some(finding) = not_up {
            // Whatever comes back is a restarted agent: learn it again.
            self.forget();
            return self.agent_failed(finding);
        }
        if stop::requested() {
            self.interrupted = true;
            return;
        }
        let (connect_sent, connected) = {
            let _lease = gate.enter(deadline);
            let sent = Instant::now();
            let remaining = deadline.saturating_duration_since(sent);
            let result = target
                .connector
                .connect(remaining.min(self.cfg.command_timeout));
            (sent, result)
        };
        let mut transport = match connected {
            Ok(t) => t,
            Err(e) => {
                self.forget();
                let finding = self.deadline_or(explain_failure(target, e), deadline, connect_sent);
                return self.agent_failed(finding);
            }
        };
        let mut counting = CountingTransport {
            inner: transport.as_mut(),
            gate,
            deadline,
            sent: 0,
            execs: 0,
            interrupted: false,
            last_sent: None,
        };
        let mut agent = Agent::new(&mut counting, self.cfg.command_timeout, deadline);
        let result = self.run_with_agent(&mut agent);
        self.agent_commands = counting.sent;
        self.agent_execs = counting.execs;
        self.interrupted = counting.interrupted;
        let last_sent = counting.last_sent.unwrap_or(connect_sent);
        match result {
            // Facts from a frozen agent's command list are not stored; the
            // ones from before hold again once it is thawed.
            Ok(()) if self.frozen => self.mark_frozen(),
            Ok(()) => self.remember(),
            Err(e) => {
                self.forget();
                let finding = self.deadline_or(explain_failure(target, e), deadline, last_sent);
                self.agent_failed(finding);
            }
        }
    }

    /// A command that timed out because the run's deadline came, not its
    /// own `--command-timeout`, says nothing about the agent when it was
    /// sent shortly before (the VM waited its turn on a busy host): that is
    /// the run's time running out. One that waited at least half its
    /// command timeout unanswered is the agent's silence, deadline or not.
    fn deadline_or(&self, finding: Finding, deadline: Instant, sent: Instant) -> Finding {
        match finding {
            Finding::Agent(AgentError::Timeout { .. })
                if reached(deadline) && sent.elapsed() < self.cfg.command_timeout / 2 =>
            {
                Finding::TimedOut(self.run_limit)
            }
            other => other,
        }
    }

    /// Asks the agent whether the guest's filesystems are frozen, when a
    /// command this probe needs was refused: a frozen qemu-ga refuses all
    /// but a few commands (`guest-fsfreeze-status` among them). True when
    /// frozen; the probe then stops asking.
    fn check_frozen(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
    ) -> Result<bool, AgentError> {
        if !info.supports("guest-fsfreeze-status") {
            return Ok(false);
        }
        match agent.fsfreeze_status() {
            Ok(FreezeStatus::Frozen) => {
                self.frozen = true;
                Ok(true)
            }
            Ok(FreezeStatus::Thawed) => Ok(false),
            Err(e) if exec::is_session_fatal(&e) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// [`Self::check_frozen`] with this run's `guest-info`.
    fn frozen_since(&mut self, agent: &mut Agent<'_>) -> Result<bool, AgentError> {
        match self.info.clone() {
            Some(info) => self.check_frozen(agent, &info),
            None => Ok(false),
        }
    }

    /// A frozen agent explains the agent and every check (nothing could be
    /// asked), except what the host knows by itself (a link down).
    fn mark_frozen(&mut self) {
        let verdict = self.cfg.policy.verdict(&Finding::Frozen);
        self.agent = verdict;
        for nic in &mut self.nics {
            if nic.finding != Some(Finding::LinkDown) {
                nic.finding = Some(Finding::Frozen);
            }
        }
        if let Some((_, slot)) = &mut self.external {
            *slot = Some(Finding::Frozen);
        }
    }

    /// Hands what this run learned to the fact book.
    fn remember(&mut self) {
        let (Some(book), Some(key), Some(info)) = (&self.cfg.facts, &self.key, &self.info) else {
            return;
        };
        if self.os == GuestOs::Unknown {
            return book.learn(key.clone(), FactUpdate::Forget);
        }
        let facts = AgentFacts {
            version: info.version.clone(),
            commands: crate::memory::facts::commands_fingerprint(&info.commands),
            os: self.os,
            ping_path: self.ping_path.clone(),
            routes: self.routes.clone(),
        };
        book.learn(key.clone(), FactUpdate::Store(facts));
    }

    fn forget(&self) {
        if let (Some(book), Some(key)) = (&self.cfg.facts, &self.key) {
            book.learn(key.clone(), FactUpdate::Forget);
        }
    }

    fn run_with_agent(&mut self, agent: &mut Agent<'_>) -> Result<(), AgentError> {
        let info = agent.info()?;
        // Facts from earlier runs hold only for the very same agent: same
        // version, same command list (a restart with other --block-rpcs,
        // an upgrade or a reinstall all change one of them).
        self.known = match (&self.cfg.facts, &self.key) {
            (Some(book), Some(key)) => book
                .known(key)
                .filter(|f| {
                    f.version == info.version
                        && f.commands == crate::memory::facts::commands_fingerprint(&info.commands)
                })
                .cloned(),
            _ => None,
        };
        self.ping_path = self.known.as_ref().and_then(|f| f.ping_path.clone());
        self.info = Some(info.clone());
        self.agent_version = Some(info.version.clone());
        self.agent = self
            .cfg
            .policy
            .verdict(&Finding::AgentUp(info.version.clone()));
        let exec_enabled = info.supports("guest-exec") && info.supports("guest-exec-status");
        self.exec_enabled = Some(exec_enabled);
        let may_exec = exec_enabled && !self.cfg.no_exec;
        // Listed but switched off: a policy (--block-rpcs) or a freeze.
        if info.is_disabled("guest-network-get-interfaces") && self.check_frozen(agent, &info)? {
            return Ok(());
        }

        self.os = match self.known.as_ref().map(|f| f.os) {
            Some(os @ (GuestOs::Linux | GuestOs::Windows)) => os,
            _ => detect_os(agent, &info, may_exec)?,
        };
        self.read_interfaces(agent, &info)?;
        if self.frozen {
            return Ok(());
        }
        self.find_gateways(agent, &info, may_exec)?;
        self.decide_before_ping(exec_enabled);
        if may_exec {
            self.ping_all(agent)?;
        }
        Ok(())
    }

    fn read_interfaces(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
    ) -> Result<(), AgentError> {
        let host_macs: Vec<String> = self.nics.iter().map(|n| n.mac.clone()).collect();
        let interfaces = if info.supports("guest-network-get-interfaces") {
            match agent.interfaces(&host_macs) {
                Ok(list) => {
                    self.dropped_interfaces = list.dropped;
                    list.kept
                }
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                // Refused after guest-info listed it: frozen since?
                Err(AgentError::Disabled { .. }) if self.check_frozen(agent, info)? => {
                    return Ok(());
                }
                Err(e) => {
                    let finding = Finding::Agent(e);
                    for nic in &mut self.nics {
                        nic.finding = Some(finding.clone());
                    }
                    return Ok(());
                }
            }
        } else {
            let finding = Finding::Agent(AgentError::NotFound {
                command: "guest-network-get-interfaces".into(),
            });
            for nic in &mut self.nics {
                nic.finding = Some(finding.clone());
            }
            return Ok(());
        };
        let with_mac = |mac: &str| -> Vec<GuestInterface> {
            interfaces
                .iter()
                .filter(|g| g.mac.as_deref() == Some(mac))
                .cloned()
                .collect()
        };
        if self.nics.is_empty() {
            // No host-side NIC list (socket mode): the guest's MACs are the NICs.
            let mut macs: Vec<&str> = interfaces
                .iter()
                .filter_map(|g| g.mac.as_deref())
                .filter(|m| *m != protocol::ZERO_MAC)
                .collect();
            macs.sort_unstable();
            macs.dedup();
            for mac in macs {
                let mut nic = NicProbe::new(mac.to_string(), None, NicKind::Internal);
                nic.set_candidates(with_mac(mac));
                let names: Vec<Option<&str>> = nic
                    .candidates
                    .iter()
                    .map(|g| Some(g.name.as_str()))
                    .collect();
                nic.kind = classify_kind(self.cfg, &self.settings, mac, &names);
                self.nics.push(nic);
            }
            self.update_external_applicability();
        } else {
            for nic in &mut self.nics {
                // Matched by MAC: guest names (eth0, "Ethernet 2") never match host tap names.
                let candidates = with_mac(&nic.mac);
                nic.set_candidates(candidates);
                if nic.guest.is_none() {
                    nic.finding = Some(Finding::NicMissing);
                }
            }
        }
        Ok(())
    }

    fn find_gateways(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
        may_exec: bool,
    ) -> Result<(), AgentError> {
        if self.nics.iter().all(|n| n.guest.is_none()) {
            return Ok(());
        }
        if !self.gateways_from_memo() {
            let found = if self.os != GuestOs::Windows && info.supports("guest-network-get-route") {
                match agent.routes() {
                    Ok(routes) => {
                        let by_iface = gateway::gateways_from_routes(&routes);
                        self.assign_by_name(&by_iface, GatewaySource::AgentRoute);
                        true
                    }
                    Err(e) if exec::is_session_fatal(&e) => return Err(e),
                    Err(_) => false,
                }
            } else if may_exec {
                self.gateways_from_guest_exec(agent)?
            } else {
                false
            };
            // A VM with many NICs reads its routes every run instead: its
            // memo would make the state file grow with NICs, not VMs.
            let small = self.nics.iter().filter(|n| n.guest.is_some()).count() <= MAX_MEMO_NICS;
            self.routes = (found && small).then(|| self.route_memo(now_ms()));
        }
        for nic in &mut self.nics {
            if nic.gateway.is_some() {
                continue;
            }
            let ips = nic.ips();
            if let Some(net) = nic.config.as_ref() {
                if let Some(gw) = gateway::gateway_from_network(&net.network_addresses, &ips) {
                    nic.gateway = Some((gw, GatewaySource::LibvirtNetwork));
                }
            }
        }
        self.assign_fallback_gateway();
        Ok(())
    }

    /// Uses the gateways an earlier run found in the guest's routes, while
    /// they are younger than [`ROUTE_TTL`] and every NIC still has the
    /// addresses it had then. True when they were used.
    fn gateways_from_memo(&mut self) -> bool {
        let Some(memo) = self.known.as_ref().and_then(|f| f.routes.clone()) else {
            return false;
        };
        let ttl = u64::try_from(ROUTE_TTL.as_millis()).unwrap_or(u64::MAX);
        if now_ms().saturating_sub(memo.learned_ms) >= ttl {
            return false;
        }
        let current = self.nics.iter().filter(|n| n.guest.is_some());
        let unchanged = current
            .clone()
            .all(|n| memo.nics.get(&n.mac).is_some_and(|e| e.ips == n.ips()));
        if !unchanged || current.count() != memo.nics.len() {
            return false;
        }
        for nic in &mut self.nics {
            if let Some(entry) = memo.nics.get(&nic.mac) {
                nic.gateway = entry.gateway.zip(entry.source);
                nic.more_gateways = entry.more.clone();
            }
        }
        self.routes = Some(memo);
        true
    }

    /// The gateways just found in the guest's routes, per NIC.
    fn route_memo(&self, learned_ms: u64) -> RouteMemo {
        let nics = self
            .nics
            .iter()
            .filter(|n| n.guest.is_some())
            .map(|n| {
                let entry = RouteEntry {
                    ips: n.ips(),
                    gateway: n.gateway.map(|(gw, _)| gw),
                    source: n.gateway.map(|(_, source)| source),
                    more: n.more_gateways.clone(),
                };
                (n.mac.clone(), entry)
            })
            .collect();
        RouteMemo { learned_ms, nics }
    }

    /// Gives each NIC the next hops of its interface. Of several guest
    /// interfaces with the NIC's MAC, the one with the default route is
    /// the NIC's (the bridge, bond or VLAN on top, not the member below).
    fn assign_by_name(&mut self, by_iface: &gateway::NextHops, source: GatewaySource) {
        for nic in &mut self.nics {
            let hops_of = |g: &GuestInterface| by_iface.get(&g.name).filter(|h| !h.is_empty());
            let routed = match nic.guest.as_ref().filter(|g| hops_of(g).is_some()) {
                Some(current) => Some(current.clone()),
                None => nic
                    .candidates
                    .iter()
                    .filter(|g| hops_of(g).is_some())
                    .rev()
                    .max_by_key(|g| address_rank(g))
                    .cloned(),
            };
            let Some(routed) = routed else { continue };
            if let Some((first, more)) = hops_of(&routed).and_then(|h| h.split_first()) {
                nic.gateway = Some((*first, source));
                nic.more_gateways = more.to_vec();
                nic.guest = Some(routed);
            }
        }
    }

    /// Whether some NIC without an IPv4 default route has a routable IPv6
    /// address, so its IPv6 default route is worth one more exec.
    fn wants_ipv6_routes(&self, v4: &gateway::NextHops) -> bool {
        self.nics.iter().any(|nic| {
            let routed = nic.candidates.iter().any(|g| v4.contains_key(&g.name));
            !routed
                && nic
                    .candidates
                    .iter()
                    .any(|g| g.ips.iter().any(|(ip, _)| ip.is_ipv6() && routable(*ip)))
        })
    }

    /// Reads the guest's route table; true when it could be read.
    fn gateways_from_guest_exec(&mut self, agent: &mut Agent<'_>) -> Result<bool, AgentError> {
        let until = agent
            .deadline()
            .min(Instant::now() + self.cfg.command_timeout);
        if self.os == GuestOs::Windows {
            let args = gateway::windows_route_args();
            match exec::run_and_wait(agent, gateway::WINDOWS_ROUTE_PATH, &args, None, until) {
                Ok(Some(status)) => {
                    let by_ip = gateway::gateways_from_route_print(&status.stdout);
                    for nic in &mut self.nics {
                        let gw = nic.ips().iter().find_map(|ip| by_ip.get(ip).copied());
                        if let Some(gw) = gw {
                            nic.gateway = Some((gw, GatewaySource::GuestRouteTable));
                        }
                    }
                    return Ok(status.exit_code == Some(0));
                }
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                _ => {}
            }
            return Ok(false);
        }
        let args = gateway::linux_route_args();
        for path in gateway::LINUX_IP_PATHS {
            match exec::run_and_wait(agent, path, &args, Some(ping::LINUX_ENV), until) {
                Ok(Some(status)) => {
                    let mut by_iface = gateway::gateways_from_ip_route(&status.stdout);
                    if self.wants_ipv6_routes(&by_iface) {
                        let args6 = gateway::linux_route6_args();
                        match exec::run_and_wait(agent, path, &args6, Some(ping::LINUX_ENV), until)
                        {
                            Ok(Some(v6)) => gateway::merge_ipv6(
                                &mut by_iface,
                                gateway::gateways_from_ip_route(&v6.stdout),
                            ),
                            Err(e) if exec::is_session_fatal(&e) => return Err(e),
                            _ => {}
                        }
                    }
                    self.assign_by_name(&by_iface, GatewaySource::GuestRouteTable);
                    return Ok(status.exit_code == Some(0));
                }
                Ok(None) => return Ok(false),
                Err(e) if e.is_missing_program() => continue,
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                // Not "no gateway": the guest refused, and says so per NIC.
                Err(e @ AgentError::ExecDenied { .. }) => {
                    for nic in self.nics.iter_mut().filter(|n| n.guest.is_some()) {
                        nic.finding.get_or_insert_with(|| Finding::Agent(e.clone()));
                    }
                    return Ok(false);
                }
                Err(_) => return Ok(false),
            }
        }
        Ok(false)
    }

    fn assign_fallback_gateway(&mut self) {
        let Some(gw) = self.cfg.fallback_gateway else {
            return;
        };
        let in_subnet = self.nics.iter().position(|n| {
            n.gateway.is_none()
                && n.guest
                    .as_ref()
                    .is_some_and(|g| gateway::in_nic_subnet(gw, &g.ips))
        });
        let chosen = in_subnet.or_else(|| {
            self.nics
                .iter()
                .position(|n| n.gateway.is_none() && n.guest.is_some())
        });
        if let Some(i) = chosen {
            self.nics[i].gateway = Some((gw, GatewaySource::User));
        }
    }

    /// Settles every NIC that will not be pinged, and says why.
    fn decide_before_ping(&mut self, exec_enabled: bool) {
        for nic in &mut self.nics {
            if nic.finding.is_some() {
                continue;
            }
            let link_down = nic.config.as_ref().is_some_and(|c| c.link_down);
            nic.finding = if link_down {
                Some(Finding::LinkDown)
            } else if nic.ips().is_empty() {
                Some(Finding::NoAddress)
            } else if nic.gateway.is_none() {
                Some(Finding::NoGateway)
            } else if self.cfg.no_exec {
                let ips: Vec<String> = nic.ips().iter().map(ToString::to_string).collect();
                Some(Finding::NotChecked(format!(
                    "up, {} (--no-exec)",
                    ips.join(" ")
                )))
            } else if !exec_enabled {
                Some(Finding::ExecDisabled)
            } else {
                None
            };
        }
        if let Some((_, slot @ None)) = &mut self.external {
            if !exec_enabled {
                *slot = Some(Finding::ExecDisabled);
            }
        }
    }

    /// Starts every pending ping, then polls them together.
    fn ping_all(&mut self, agent: &mut Agent<'_>) -> Result<(), AgentError> {
        // Slot: Some(i) = NIC i's gateway, None = the external target.
        let mut pending: Vec<(Option<usize>, PingTarget, String)> = Vec::new();
        let mut refused: Vec<(usize, Finding)> = Vec::new();
        let own: Vec<IpAddr> = self
            .nics
            .iter()
            .flat_map(|n| {
                n.candidates
                    .iter()
                    .flat_map(|g| g.ips.iter().map(|(ip, _)| *ip))
            })
            .collect();
        for (i, nic) in self.nics.iter().enumerate() {
            if nic.finding.is_some() {
                continue;
            }
            let zone = nic.guest.as_ref().map(|g| g.name.as_str());
            for gw in nic.gateways() {
                // The guest would answer itself: no check of the path out.
                let invalid = if gw.is_loopback() {
                    Some("loopback")
                } else if own.contains(&gw) {
                    Some("the guest's own address")
                } else {
                    None
                };
                if let Some(why) = invalid {
                    refused.push((i, Finding::GatewayInvalid(gw, why)));
                    continue;
                }
                match ping::target_argument(gw, zone) {
                    Ok(arg) => pending.push((Some(i), PingTarget::Gateway(gw), arg)),
                    Err(e) => refused.push((i, Finding::PingError(e))),
                }
            }
        }
        for (i, finding) in refused {
            self.settle(Some(i), finding);
        }
        if let Some((addr, slot @ None)) = &mut self.external {
            match ping::target_argument(*addr, None) {
                Ok(arg) => pending.push((None, PingTarget::External(*addr), arg)),
                Err(e) => *slot = Some(Finding::PingError(e)),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }

        // Start with the ping binary that worked last time; if it is gone,
        // search the whole list once more.
        let remembered = self
            .ping_path
            .as_deref()
            .and_then(|p| ping::LINUX_PING_PATHS.iter().position(|c| *c == p))
            .unwrap_or(0);
        let mut rescan = remembered > 0;
        let mut flavor = match self.os {
            GuestOs::Windows => PingFlavor::Windows,
            _ => PingFlavor::Linux(remembered),
        };
        let mut started: Vec<(Option<usize>, PingTarget, i64)> = Vec::new();
        for (slot, target, arg) in pending {
            if stop::requested() {
                // Collect what runs; start nothing more.
                self.interrupted = true;
                break;
            }
            let timeout = self.cfg.ping_timeout;
            let mut result = start_ping(agent, &mut flavor, target, &arg, timeout);
            if rescan && matches!(result, Err(StartError::Finding(Finding::PingMissing))) {
                rescan = false;
                flavor = PingFlavor::Linux(0);
                result = start_ping(agent, &mut flavor, target, &arg, timeout);
            }
            match result {
                Ok(pid) => started.push((slot, target, pid)),
                Err(StartError::Fatal(e)) => return Err(e),
                // guest-info said exec was on: frozen since? (asked once)
                Err(StartError::Finding(Finding::ExecDisabled))
                    if started.is_empty() && !self.frozen && self.frozen_since(agent)? =>
                {
                    return Ok(());
                }
                Err(StartError::Finding(f)) => self.settle(slot, f),
            }
        }
        self.ping_path = match flavor {
            PingFlavor::Linux(i) if !started.is_empty() => {
                ping::LINUX_PING_PATHS.get(i).map(|p| p.to_string())
            }
            _ => None,
        };
        let limit = self.cfg.ping_timeout + PING_GRACE;
        let waiting = Instant::now();
        let until = agent.deadline().min(waiting + limit);
        // The run ends before the pings' own timeout: not their fault.
        let cut_by_deadline = agent.deadline() < waiting + self.cfg.ping_timeout;
        // What the reason says is the time really waited.
        let waited =
            Duration::from_millis(until.saturating_duration_since(waiting).as_millis() as u64);
        let pids: Vec<i64> = started.iter().map(|(_, _, pid)| *pid).collect();
        let results = exec::wait_all(agent, &pids, until)?;
        for ((slot, target, _), result) in started.into_iter().zip(results) {
            let finding = match result {
                Some(Ok(status)) => match flavor {
                    PingFlavor::Windows => ping::classify_windows(target, &status),
                    PingFlavor::Linux(_) => ping::classify_linux(target, &status),
                },
                Some(Err(e)) => Finding::PingError(e.to_string()),
                // Not the ping's fault when the run ended first.
                None if cut_by_deadline => Finding::TimedOut(self.run_limit),
                None => Finding::PingUnfinished(waited),
            };
            self.settle(slot, finding);
        }
        // A gateway from the routes that did not answer is looked up again
        // next time instead of being trusted.
        let stale = self.nics.iter().any(|n| {
            matches!(
                n.gateway,
                Some((
                    _,
                    GatewaySource::AgentRoute | GatewaySource::GuestRouteTable
                ))
            ) && matches!(n.finding, Some(Finding::Unreachable(..)))
        });
        if stale {
            self.routes = None;
        }
        Ok(())
    }

    /// Records a check's finding. A NIC with several next hops keeps the
    /// worst, and its reported gateway becomes the one that finding is about.
    fn settle(&mut self, slot: Option<usize>, finding: Finding) {
        let policy = &self.cfg.policy;
        match slot {
            Some(i) => {
                let Some(nic) = self.nics.get_mut(i) else {
                    return;
                };
                let worse = nic
                    .finding
                    .as_ref()
                    .is_none_or(|old| policy.verdict(&finding).state > policy.verdict(old).state);
                if !worse {
                    return;
                }
                if let Finding::Reachable(PingTarget::Gateway(gw), _)
                | Finding::Unreachable(PingTarget::Gateway(gw), _) = &finding
                {
                    let mut hops = nic.gateways();
                    if let (Some(pos), Some((_, source))) =
                        (hops.iter().position(|h| h == gw), nic.gateway)
                    {
                        let chosen = hops.remove(pos);
                        nic.gateway = Some((chosen, source));
                        nic.more_gateways = hops;
                    }
                }
                nic.finding = Some(finding);
            }
            None => {
                if let Some((_, f)) = &mut self.external {
                    *f = Some(finding);
                }
            }
        }
    }

    fn into_report(self, target: &VmTarget, started: Instant) -> VmReport {
        let policy = &self.cfg.policy;
        let nics: Vec<NicReport> = self
            .nics
            .into_iter()
            .map(|nic| {
                let finding = nic.finding.clone().unwrap_or(Finding::NoGateway);
                let rtt_ms = match finding {
                    Finding::Reachable(_, rtt) => rtt,
                    _ => None,
                };
                NicReport {
                    name: nic.name(),
                    ips: nic.ips(),
                    host_dev: nic.config.as_ref().and_then(|c| c.host_dev.clone()),
                    network: nic
                        .config
                        .as_ref()
                        .and_then(|c| c.network.clone().or_else(|| c.bridge.clone())),
                    gateway: nic.gateway.map(|(gw, _)| gw),
                    gateway_source: nic.gateway.map(|(_, source)| source),
                    kind: nic.kind,
                    verdict: policy.verdict(&finding),
                    rtt_ms,
                    mac: nic.mac,
                }
            })
            .collect();
        let external = self.external.map(|(address, finding)| {
            let finding = finding.unwrap_or(Finding::PingError("not run".into()));
            let rtt_ms = match finding {
                Finding::Reachable(_, rtt) => rtt,
                _ => None,
            };
            TargetReport {
                address,
                verdict: policy.verdict(&finding),
                rtt_ms,
            }
        });
        let verdict = summarize(&self.agent, &nics, external.as_ref());
        let mut agent = self.agent;
        if self.dropped_interfaces > 0 {
            // Bounded on purpose (memory), and said so.
            agent.reason = format!(
                "{}; {} more guest interfaces not checked (at most {} NICs)",
                agent.reason,
                self.dropped_interfaces,
                protocol::MAX_GUEST_NICS
            );
        }
        VmReport {
            name: target.name.clone(),
            uuid: target.uuid.clone(),
            os: self.os,
            verdict,
            agent: AgentReport {
                verdict: agent,
                version: self.agent_version,
                exec_enabled: self.exec_enabled,
            },
            nics,
            external,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            agent_commands: self.agent_commands,
            agent_execs: self.agent_execs,
        }
    }
}

enum StartError {
    Fatal(AgentError),
    Finding(Finding),
}

fn start_ping(
    agent: &mut Agent<'_>,
    flavor: &mut PingFlavor,
    target: PingTarget,
    arg: &str,
    timeout: Duration,
) -> Result<i64, StartError> {
    let addr = match target {
        PingTarget::Gateway(a) | PingTarget::External(a) => a,
    };
    loop {
        let result = match *flavor {
            PingFlavor::Windows => agent.exec(
                ping::WINDOWS_PING_PATH,
                &ping::windows_args(addr, arg, timeout),
                None,
            ),
            PingFlavor::Linux(i) => {
                let Some(path) = ping::LINUX_PING_PATHS.get(i) else {
                    return Err(StartError::Finding(Finding::PingMissing));
                };
                agent.exec(path, &ping::linux_args(arg, timeout), Some(ping::LINUX_ENV))
            }
        };
        match result {
            Ok(pid) => return Ok(pid),
            Err(e) if exec::is_session_fatal(&e) => return Err(StartError::Fatal(e)),
            Err(AgentError::Disabled { .. }) => {
                return Err(StartError::Finding(Finding::ExecDisabled))
            }
            Err(e) if e.is_missing_program() => match flavor {
                PingFlavor::Linux(i) => *i += 1,
                PingFlavor::Windows => return Err(StartError::Finding(Finding::PingMissing)),
            },
            Err(e @ AgentError::ExecDenied { .. }) => {
                return Err(StartError::Finding(Finding::Agent(e)))
            }
            Err(e) => return Err(StartError::Finding(Finding::PingError(e.to_string()))),
        }
    }
}

/// The OS from `guest-get-osinfo`; where that is missing, the original
/// method: `cmd.exe` runs on Windows and cannot be found on Linux.
fn detect_os(
    agent: &mut Agent<'_>,
    info: &GuestInfo,
    may_exec: bool,
) -> Result<GuestOs, AgentError> {
    if info.supports("guest-get-osinfo") {
        match agent.osinfo() {
            Ok(os) if os.is_windows() => return Ok(GuestOs::Windows),
            Ok(os) if os.id.is_some() || os.kernel_release.is_some() => return Ok(GuestOs::Linux),
            Ok(_) => {}
            Err(e) if exec::is_session_fatal(&e) => return Err(e),
            Err(_) => {}
        }
    }
    if !may_exec {
        return Ok(GuestOs::Unknown);
    }
    let args = ["/c".to_string(), "ver".to_string()];
    let until = agent
        .deadline()
        .min(Instant::now() + Duration::from_secs(5));
    match exec::run_and_wait(agent, "cmd.exe", &args, None, until) {
        Ok(_) => Ok(GuestOs::Windows),
        Err(e) if e.is_missing_program() => Ok(GuestOs::Linux),
        Err(e) if exec::is_session_fatal(&e) => Err(e),
        Err(_) => Ok(GuestOs::Unknown),
    }
}

/// An agent failure, named by what the host says now: a pause or an
/// outgoing migration that began mid-probe explains it (asked only after a
/// failure, so a healthy run costs the host nothing).
fn explain_failure(target: &VmTarget, error: AgentError) -> Finding {
    match target.connector.lifecycle() {
        Some(Lifecycle::Migrating) => Finding::Migrating(Some(error)),
        Some(Lifecycle::Paused(why)) => Finding::Paused(why),
        Some(Lifecycle::NotRunning) => Finding::VmNotRunning,
        Some(Lifecycle::Running) | None => Finding::Agent(error),
    }
}

/// Whether `deadline` has come (within the precision of a socket wait).
fn reached(deadline: Instant) -> bool {
    Instant::now() + Duration::from_millis(10) >= deadline
}

/// Probes one VM until `deadline`. Never fails: problems are in the report.
pub fn probe_vm(target: &VmTarget, cfg: &ProbeConfig, deadline: Instant) -> VmReport {
    let started = Instant::now();
    let mut probe = VmProbe::new(target, cfg);
    probe.run_limit =
        Duration::from_millis(deadline.saturating_duration_since(started).as_millis() as u64);
    probe.run(target, &CommandGate::unlimited(), deadline);
    probe.into_report(target, started)
}

/// As [`probe_vm`], with every agent command under a lease of `gate`;
/// `None` when a stop (SIGTERM/SIGINT) cut the probe short. `run_limit` is
/// the whole run's time, named in the reason of a VM the deadline cut short.
pub fn probe_vm_gated(
    target: &VmTarget,
    cfg: &ProbeConfig,
    gate: &CommandGate,
    deadline: Instant,
    run_limit: Duration,
) -> Option<VmReport> {
    let started = Instant::now();
    let mut probe = VmProbe::new(target, cfg);
    probe.run_limit = run_limit;
    probe.run(target, gate, deadline);
    (!probe.interrupted).then(|| probe.into_report(target, started))
}

/// The report of a VM whose probe did not finish before the overall deadline.
pub fn timed_out_report(target: &VmTarget, cfg: &ProbeConfig, limit: Duration) -> VmReport {
    let mut probe = VmProbe::new(target, cfg);
    probe.agent_failed(Finding::TimedOut(limit));
    probe.into_report(target, Instant::now() - limit)
}

#[cfg(test)]
mod tests;
