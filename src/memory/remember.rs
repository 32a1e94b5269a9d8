//! One run's memory of each VM: what earlier runs learned goes into the
//! probe (facts, trusted only while the VM has not restarted), and after
//! it, boot grace, the `--fail-after` streaks and what this run learned go
//! back into the state directory under its lock.

use super::facts::{self, FactBook, FactUpdate, VmStore};
use super::statedir::StateDir;
use crate::config::{Config, Source};
use crate::inventory::{started, VmTarget};
use crate::probe::runner::probe_all;
use crate::report::VmReport;
use crate::verdict::{debounce, grace};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes `targets` with what earlier runs learned, then applies boot
/// grace and debounce and stores what this run learned.
pub fn probe_remembering(
    config: &Config,
    targets: Vec<VmTarget>,
    deadline: Instant,
) -> Vec<VmReport> {
    let known = Known::of(config, &targets);
    let book = Arc::new(FactBook::new(
        known.keys.clone(),
        known.trusted_facts(config),
    ));
    let mut probe = config.probe.clone();
    if config.state_dir.is_some() {
        probe.facts = Some(Arc::clone(&book));
    }
    let mut vms = probe_all(targets, &probe, config.jobs, deadline);
    let now = facts::now_ms();
    for vm in &mut vms {
        let started = known.started_ms(&vm.name);
        grace::apply_grace(vm, started, now, config.grace, config.booting_state);
    }
    match &config.state_dir {
        Some(dir) => remember(config, dir, &known, &book, vms, deadline),
        None => vms,
    }
}

/// Each VM's state-directory key and start time, by VM name.
struct Known {
    keys: BTreeMap<String, String>,
    starts: BTreeMap<String, Option<u64>>,
}

impl Known {
    fn of(config: &Config, targets: &[VmTarget]) -> Known {
        let mut keys = BTreeMap::new();
        let mut starts = BTreeMap::new();
        for target in targets {
            let socket = target.socket.as_deref();
            let key = facts::vm_key(&target.name, target.uuid.as_deref(), socket);
            starts.insert(
                key.clone(),
                vm_started_ms(&config.source, &target.name, socket),
            );
            keys.insert(target.name.clone(), key);
        }
        Known { keys, starts }
    }

    fn started_ms(&self, name: &str) -> Option<u64> {
        self.keys
            .get(name)
            .and_then(|k| self.starts.get(k))
            .copied()
            .flatten()
    }

    /// Stored facts of the VMs that have not restarted since they were
    /// learned (facts learned before a restart are not trusted).
    fn trusted_facts(&self, config: &Config) -> BTreeMap<String, facts::AgentFacts> {
        let store = config
            .state_dir
            .as_ref()
            .map(VmStore::load)
            .unwrap_or_default();
        store
            .vms
            .iter()
            .filter_map(|(key, vm)| {
                let facts = vm.facts.clone()?;
                let now_started = self.starts.get(key)?;
                let restarted = vm.started_ms.is_some() && *now_started != vm.started_ms;
                (!restarted).then(|| (key.clone(), facts))
            })
            .collect()
    }
}

/// When the VM called `name` started, as far as the host can tell.
fn vm_started_ms(source: &Source, name: &str, socket: Option<&Path>) -> Option<u64> {
    match source {
        Source::Libvirt { uri } => {
            started::libvirt_pid_file(uri, name).and_then(|f| started::libvirt_started_ms(&f))
        }
        Source::Sockets { .. } => socket.and_then(started::socket_started_ms),
    }
}

/// Merges this run into the stored VMs under the lock (re-read there:
/// other runs may have written meanwhile) and applies `--fail-after`. The
/// smoothed verdicts stand only if the streaks they counted were saved;
/// otherwise the unsmoothed verdict stands and its reason says why.
fn remember(
    config: &Config,
    dir: &StateDir,
    known: &Known,
    book: &FactBook,
    vms: Vec<VmReport>,
    deadline: Instant,
) -> Vec<VmReport> {
    let now = facts::now_ms();
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(1));
    let lock = dir.lock(facts::VMS_LOCK, wait);
    let mut store = VmStore::load(dir);
    let mut learned = book.take_learned();
    let source = match &config.source {
        Source::Libvirt { uri } => format!("libvirt:{}", crate::config::redact_uri(uri)),
        Source::Sockets { .. } => "sockets".to_string(),
    };
    let mut smoothed = vms.clone();
    for vm in &mut smoothed {
        let Some(key) = known.keys.get(&vm.name) else {
            continue;
        };
        let entry = store.vms.entry(key.clone()).or_default();
        entry.name = vm.name.clone();
        entry.seen_ms = now;
        entry.source.clone_from(&source);
        entry.started_ms = known.starts.get(key).copied().flatten();
        match learned.remove(key) {
            Some(FactUpdate::Store(facts)) => entry.facts = Some(facts),
            Some(FactUpdate::Forget) => entry.facts = None,
            // Timed out before learning anything: keep what was known.
            None => {}
        }
        if config.fail_after > 1 {
            debounce::apply(vm, &mut entry.streaks, config.fail_after);
        } else {
            entry.streaks.clear();
        }
    }
    // libvirt lists every VM it runs: the others are gone. (A socket
    // list is not the host's whole: a VM per Nagios service is common.)
    if config.domains.is_empty() && matches!(config.source, Source::Libvirt { .. }) {
        let listed: Vec<&String> = known.keys.values().collect();
        store.forget_unlisted(&source, &listed);
    }
    store.prune(now);
    let saved = match lock {
        Ok(_held) => dir
            .write(facts::VMS_FILE, &store)
            .map_err(|e| format!("cannot write {}: {e}", facts::VMS_FILE)),
        Err(e) => Err(e.to_string()),
    };
    let why = match saved {
        Ok(()) => return smoothed,
        Err(why) => why,
    };
    if config.verbose > 0 {
        eprintln!("vmnetprobe: state not kept: {why}");
    }
    // A streak that is not saved never reaches N: the unsmoothed
    // verdict stands, and the VM's reason says why.
    let mut vms = vms;
    for (vm, would) in vms.iter_mut().zip(&smoothed) {
        if would.verdict != vm.verdict {
            vm.verdict.reason = format!(
                "{} (--fail-after not applied: state not kept: {why})",
                vm.verdict.reason
            );
        }
    }
    vms
}
