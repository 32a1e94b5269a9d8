//! The per-VM probe: agent capabilities, guest OS, NICs and gateways, then
//! all pings of the VM started at once and polled to the end. Errors are
//! data: every failure becomes a state and a reason on the VM or its NICs.

mod counting;
pub mod exec;
pub mod gate;
pub mod gateway;
mod nics;
mod os;
mod outcome;
pub mod ping;
mod pings;
mod routes;
pub mod runner;
pub mod stop;

use crate::inventory::{ChannelState, Lifecycle, NicConfig, VmSettings, VmTarget};
use crate::memory::facts::{
    now_ms, AgentFacts, FactBook, FactUpdate, RouteEntry, RouteMemo, ROUTE_TTL,
};
use crate::qga::{
    Agent, AgentError, AgentTransport, FreezeStatus, GuestInfo, GuestInterface, RawReply,
};
use crate::report::{
    AgentReport, GatewaySource, GuestOs, NicKind, NicReport, TargetReport, VmReport,
};
use crate::verdict::policy::{Finding, PingTarget, Policy};
use crate::verdict::summary::summarize;
use crate::verdict::Verdict;
use counting::CountingTransport;
use gate::CommandGate;
use nics::{classify_kind, NicProbe};
use os::detect_os;
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

/// A duration as reasons name it ("timed out after 2.5s"): whole
/// milliseconds, the same everywhere.
pub(crate) fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Probes one VM until `deadline`. Never fails: problems are in the report.
pub fn probe_vm(target: &VmTarget, cfg: &ProbeConfig, deadline: Instant) -> VmReport {
    let started = Instant::now();
    let mut probe = VmProbe::new(target, cfg);
    probe.run_limit = whole_ms(deadline.saturating_duration_since(started));
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
