//! One run from validated arguments to rendered output: pick the inventory,
//! probe every VM, render in the requested format. `main.rs` only prints.

use crate::cache::{self, FactBook, FactUpdate, StoredResult, VmStore};
use crate::cli::{Args, Command, DiscoverWhat, TargetArgs};
use crate::config::{Config, ConfigError, Source};
use crate::inventory::socket::SocketInventory;
use crate::inventory::started;
use crate::inventory::{Inventory, InventoryError, VmTarget};
use crate::output::{self, Rendered};
use crate::probe::runner::{probe_all, render_margin};
use crate::qga::protocol::without_format_chars;
use crate::report::{Report, VmReport};
use crate::statedir::{LockError, StateDir};
use crate::verdict::{debounce, grace, shared};
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn inventory_for(source: &Source) -> Result<Box<dyn Inventory>, InventoryError> {
    match source {
        Source::Sockets { named, globs } => Ok(Box::new(SocketInventory {
            sockets: named.clone(),
            globs: globs.clone(),
        })),
        #[cfg(feature = "libvirt")]
        Source::Libvirt { uri } => Ok(Box::new(crate::inventory::libvirt::LibvirtInventory::open(
            uri,
        )?)),
        #[cfg(not(feature = "libvirt"))]
        Source::Libvirt { .. } => Err(InventoryError(
            "built without libvirt support: use --socket or --socket-glob".into(),
        )),
    }
}

/// Lists and probes every selected VM within the configured deadline, or,
/// with `--min-interval`, shares a result another caller probed recently.
pub fn collect(config: &Config) -> Report {
    let started = Instant::now();
    let (Some(dir), Some(min_interval)) = (&config.state_dir, config.min_interval) else {
        return probe_run(config, started);
    };
    let key = selection_key(config);
    let name = cache::result_name(&key);
    let file = format!("{name}.json");
    // One caller probes, the others wait for its result, up to their own
    // deadline: N callers in an outage cost one probe, not N.
    let wait = config
        .timeout
        .saturating_sub(render_margin(config.timeout))
        .saturating_sub(started.elapsed());
    let lock = dir.lock(&name, wait);
    if let Err(LockError::Busy { .. }) = &lock {
        return waited_too_long(config, started);
    }
    if let Some(mut report) = shared_result(dir, &file, &key, min_interval) {
        shared::judge_replies(&mut report, &config.probe.policy, &config.thresholds);
        if config.verbose > 0 {
            eprintln!(
                "vmnetprobe: shared result, probed {:.1} s ago (--min-interval)",
                report.age_ms.unwrap_or(0.0) / 1000.0
            );
        }
        return report;
    }
    let report = probe_run(config, started);
    if lock.is_ok() && report.fatal.is_none() {
        let stored = StoredResult {
            key,
            stored_ms: report.timestamp_ns / 1_000_000,
            report: report.clone(),
        };
        if let Err(e) = dir.write(&file, &stored) {
            if config.verbose > 0 {
                eprintln!("vmnetprobe: cannot store the result: {e}");
            }
        }
    }
    report
}

/// The report of a caller whose deadline passed while another run was
/// still probing the same selection.
fn waited_too_long(config: &Config, started: Instant) -> Report {
    Report {
        vms: Vec::new(),
        external_target: config.probe.external,
        thresholds: config.thresholds.clone(),
        fatal: Some(format!(
            "no result within {}: another vmnetprobe run was still probing the same VMs (--min-interval)",
            humantime::format_duration(config.timeout)
        )),
        timestamp_ns: now_ns(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        age_ms: None,
    }
}

/// Now, Unix epoch nanoseconds.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Everything that changes a result; callers that agree on it may share one.
fn selection_key(config: &Config) -> String {
    let p = &config.probe;
    let mut domains = config.domains.clone();
    domains.sort();
    // A URI's password is never stored: its redacted form plus a
    // fingerprint of the whole URI tell selections apart.
    let source = match &config.source {
        Source::Libvirt { uri } => format!(
            "libvirt:{}#{:016x}",
            crate::config::redact_uri(uri),
            cache::fingerprint(uri)
        ),
        other => format!("{other:?}"),
    };
    format!(
        "{source}|{domains:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{}|{:?}|{}|{}|{}",
        p.external,
        p.fallback_gateway,
        p.external_networks,
        p.ping_timeout,
        p.command_timeout,
        p.no_exec,
        p.policy.agent_down_state,
        p.policy.paused_state,
        p.policy.migrating_state,
        p.policy.frozen_state,
        // RTT thresholds are left out: each caller judges the shared
        // replies by its own (verdict::shared).
        config.grace,
        config.booting_state,
        config.fail_after,
        env!("CARGO_PKG_VERSION"),
    )
}

/// The stored result for `key` when it is younger than `min_interval`.
fn shared_result(dir: &StateDir, file: &str, key: &str, min_interval: Duration) -> Option<Report> {
    let stored: StoredResult = dir.read(file)?;
    let age_ms = cache::now_ms().checked_sub(stored.stored_ms)?;
    if stored.key != key || u128::from(age_ms) >= min_interval.as_millis() {
        return None;
    }
    let mut report = stored.report;
    report.age_ms = Some(age_ms as f64);
    Some(report)
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

/// Probes every listed VM now.
fn probe_run(config: &Config, started: Instant) -> Report {
    let deadline = started + config.timeout;
    let timestamp_ns = now_ns();
    let listed = inventory_for(&config.source).and_then(|inv| inv.list(&config.domains));
    let (mut vms, fatal) = match listed {
        Ok(targets) => (probe_with_memory(config, targets, deadline), None),
        Err(e) => (Vec::new(), Some(without_format_chars(&e.to_string()))),
    };
    // Names come from the host, not the guest, but may still hide a bidi
    // override: shown without (the probe used the real name).
    for vm in &mut vms {
        vm.name = without_format_chars(&vm.name);
    }
    if config.verbose > 0 {
        for vm in &vms {
            eprintln!(
                "vmnetprobe: {} {} {:.1} ms, {} agent commands, {} guest-exec: {}",
                vm.name,
                vm.verdict.state,
                vm.duration_ms,
                vm.agent_commands,
                vm.agent_execs,
                vm.verdict.reason
            );
        }
    }
    Report {
        vms,
        external_target: config.probe.external,
        thresholds: config.thresholds.clone(),
        fatal,
        timestamp_ns,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        age_ms: None,
    }
}

/// Probes `targets` with what earlier runs learned, then applies boot
/// grace and debounce and stores what this run learned.
fn probe_with_memory(config: &Config, targets: Vec<VmTarget>, deadline: Instant) -> Vec<VmReport> {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut starts: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for target in &targets {
        let socket = target.socket.as_deref();
        let key = cache::vm_key(&target.name, target.uuid.as_deref(), socket);
        starts.insert(
            key.clone(),
            vm_started_ms(&config.source, &target.name, socket),
        );
        keys.insert(target.name.clone(), key);
    }
    let store = config
        .state_dir
        .as_ref()
        .map(VmStore::load)
        .unwrap_or_default();
    // Facts learned before the VM (re)started are not trusted.
    let known = store
        .vms
        .iter()
        .filter_map(|(key, vm)| {
            let facts = vm.facts.clone()?;
            let now_started = starts.get(key)?;
            let restarted = vm.started_ms.is_some() && *now_started != vm.started_ms;
            (!restarted).then(|| (key.clone(), facts))
        })
        .collect();
    let book = Arc::new(FactBook::new(keys.clone(), known));
    let mut probe = config.probe.clone();
    if config.state_dir.is_some() {
        probe.facts = Some(Arc::clone(&book));
    }
    let mut vms = probe_all(targets, &probe, config.jobs, deadline);
    let now = cache::now_ms();
    for vm in &mut vms {
        let started = keys
            .get(&vm.name)
            .and_then(|k| starts.get(k))
            .copied()
            .flatten();
        grace::apply_grace(vm, started, now, config.grace, config.booting_state);
    }
    if let Some(dir) = &config.state_dir {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        let lock = dir.lock(cache::VMS_LOCK, wait);
        // Re-read under the lock: other runs may have written meanwhile.
        let mut store = VmStore::load(dir);
        let mut learned = book.take_learned();
        let source = match &config.source {
            Source::Libvirt { uri } => format!("libvirt:{}", crate::config::redact_uri(uri)),
            Source::Sockets { .. } => "sockets".to_string(),
        };
        // Smoothed on a copy: it stands only if the streaks it counted are kept.
        let mut smoothed = vms.clone();
        for vm in &mut smoothed {
            let Some(key) = keys.get(&vm.name) else {
                continue;
            };
            let entry = store.vms.entry(key.clone()).or_default();
            entry.name = vm.name.clone();
            entry.seen_ms = now;
            entry.source.clone_from(&source);
            entry.started_ms = starts.get(key).copied().flatten();
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
            let listed: Vec<&String> = keys.values().collect();
            store.forget_unlisted(&source, &listed);
        }
        store.prune(now);
        let saved = match lock {
            Ok(_held) => dir
                .write(cache::VMS_FILE, &store)
                .map_err(|e| format!("cannot write {}: {e}", cache::VMS_FILE)),
            Err(e) => Err(e.to_string()),
        };
        match saved {
            Ok(()) => vms = smoothed,
            Err(why) => {
                if config.verbose > 0 {
                    eprintln!("vmnetprobe: state not kept: {why}");
                }
                // A streak that is not saved never reaches N: the unsmoothed
                // verdict stands, and the VM's reason says why.
                for (vm, would) in vms.iter_mut().zip(&smoothed) {
                    if would.verdict != vm.verdict {
                        vm.verdict.reason = format!(
                            "{} (--fail-after not applied: state not kept: {why})",
                            vm.verdict.reason
                        );
                    }
                }
            }
        }
    }
    vms
}

/// Renders `report` the way `command` asks.
pub fn render(command: &Command, report: &Report) -> Rendered {
    match command {
        Command::Nagios { max_output, .. } => output::render_nagios_capped(report, max_output.0),
        Command::Discover {
            what: DiscoverWhat::Vms,
            ..
        } => output::render_discovery_vms(report),
        Command::Discover {
            what: DiscoverWhat::Nics,
            ..
        } => output::render_discovery_nics(report),
        Command::Zabbix(_) => output::render_zabbix(report),
        Command::Telegraf { .. } => output::render_telegraf(report),
        Command::Prometheus { .. } | Command::Serve { .. } => output::render_prometheus(report),
        Command::Status { json: true, .. } => output::render_status_json(report),
        Command::Status { json: false, .. } => {
            output::render_status_table_styled(report, use_color())
        }
    }
}

/// The target options `command` runs with: `serve` shares probes under
/// [`crate::serve::DEFAULT_MIN_INTERVAL`] unless told otherwise, told to
/// keep no state, or no state directory is to be had (then every scrape
/// probes; a default must not turn into a configuration error).
pub fn target_args(command: &Command) -> std::borrow::Cow<'_, TargetArgs> {
    match command {
        Command::Serve { target, .. }
            if target.min_interval.is_none()
                && !target.no_state
                // An unusable shared directory (Err) is reported by Config.
                && (target.state_dir.is_some()
                    || !matches!(StateDir::default_location(), Ok(None))) =>
        {
            let mut target = target.clone();
            target.min_interval = Some(crate::serve::DEFAULT_MIN_INTERVAL.to_string());
            std::borrow::Cow::Owned(target)
        }
        _ => std::borrow::Cow::Borrowed(command.target()),
    }
}

/// The `--textfile` of `vmnetprobe prometheus`, checked before the probe
/// runs: node_exporter reads only `*.prom` files from a directory.
pub fn textfile(command: &Command) -> Result<Option<&Path>, ConfigError> {
    let Command::Prometheus {
        textfile: Some(path),
        ..
    } = command
    else {
        return Ok(None);
    };
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".prom") && n.len() > ".prom".len());
    if !named {
        return Err(ConfigError(format!(
            "invalid --textfile '{}': the file name must end in .prom (node_exporter reads only those)",
            path.display()
        )));
    }
    Ok(Some(path))
}

/// Writes `text` to `path` atomically, for node_exporter's textfile
/// collector: it never sees a half-written file.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write --textfile {}: {e}", path.display());
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| fail(std::io::Error::other("no file name")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Readable by node_exporter, which usually runs as another user.
    crate::statedir::write_atomically(dir, name, text.as_bytes(), 0o644).map_err(fail)
}

/// Colour in the status table: only for a terminal, and never with
/// `NO_COLOR` set (https://no-color.org).
fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// What a run that could not start prints, and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub exit_code: u8,
}

/// The exit code of usage and configuration errors (the plugin API's UNKNOWN).
pub const USAGE_EXIT: u8 = 3;

/// A configuration error in the mode's own terms: a failed run of that mode,
/// rendered like one (a Nagios status line, a Zabbix or discovery document
/// with `error`, a Telegraf `error` field, Prometheus `vmnetprobe_up 0`,
/// JSON with `error`), so that the monitoring system raises it instead of
/// losing it on stderr. The human table, `serve` and `telegraf --execd`
/// (whose stdout is a stream) say it on stderr.
pub fn config_failure(command: Option<&Command>, error: &ConfigError) -> Failure {
    match command {
        None
        | Some(Command::Serve { .. })
        | Some(Command::Status { json: false, .. })
        | Some(Command::Telegraf { execd: true, .. }) => Failure {
            stdout: None,
            stderr: Some(format!(
                "vmnetprobe: {} (see --help)\n",
                crate::qga::protocol::one_line(&error.0, 1000)
            )),
            exit_code: USAGE_EXIT,
        },
        Some(command) => {
            let report = Report::failed(without_format_chars(&error.0), now_ns());
            let rendered = render(command, &report);
            Failure {
                stdout: Some(rendered.text),
                stderr: None,
                exit_code: rendered.exit_code,
            }
        }
    }
}

/// A command line clap refused, reported like a configuration error of the
/// subcommand it names (so `vmnetprobe zabbix --bogus` is a Zabbix document
/// with `error`, `check_vmnetprobe --bogus` a Nagios status line).
pub fn usage_failure(argv: &[OsString], error: &clap::Error) -> Failure {
    let text = error.to_string();
    // clap's message runs up to its "Usage:" line, over one or more lines
    // ("the following required arguments were not provided:\n  <WHAT>").
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    let message = message.trim_start_matches("error: ");
    let message = if message.is_empty() {
        "invalid arguments"
    } else {
        message
    };
    config_failure(
        failure_command(argv).as_ref(),
        &ConfigError(message.to_string()),
    )
}

/// The subcommand `argv` names, with its defaults, for reporting an error
/// in its format: only the words that pick the format are kept.
fn failure_command(argv: &[OsString]) -> Option<Command> {
    let sub = argv.get(1)?.to_str()?;
    let has = |flag: &str| argv.iter().skip(2).any(|a| a == flag);
    let mut minimal = vec!["vmnetprobe", sub];
    match sub {
        "discover" => minimal.push("vms"),
        "status" if has("--json") => minimal.push("--json"),
        "telegraf" if has("--execd") => minimal.push("--execd"),
        _ => {}
    }
    Args::try_parse_from(minimal).ok().map(|a| a.command)
}

/// Telegraf `inputs.execd` with `signal = "STDIN"`: one batch per request
/// line, flushed at once; returns at end of input (Telegraf stopping).
/// Lines that queued up while a probe ran are answered by one batch, and
/// a line that is not UTF-8 is noise, not a request.
pub fn run_execd(
    command: &Command,
    config: &Config,
    input: Box<dyn BufRead + Send>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let (requests, incoming) = std::sync::mpsc::channel::<()>();
    // A thread reads, so requests queue while a probe runs.
    std::thread::spawn(move || {
        let mut input = input;
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if std::str::from_utf8(&line).is_err() => continue,
                Ok(_) => {
                    if requests.send(()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    loop {
        match incoming.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if crate::probe::stop::requested() {
                    return Ok(());
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        while incoming.try_recv().is_ok() {}
        let report = collect(config);
        out.write_all(render(command, &report).text.as_bytes())?;
        out.flush()?;
        // Told to stop during that probe: its batch is out, now go.
        if crate::probe::stop::requested() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_key_keeps_no_uri_password_but_tells_passwords_apart() {
        let config = |uri: &str| {
            use clap::Parser;
            let args = crate::cli::Args::try_parse_from([
                "vmnetprobe",
                "status",
                "--connect",
                uri,
                "--no-state",
            ])
            .expect("arguments");
            Config::from_args(args.command.target()).expect("config")
        };
        let a = selection_key(&config("qemu+ssh://root:s3cr3t@h/system"));
        let b = selection_key(&config("qemu+ssh://root:other@h/system"));
        assert!(!a.contains("s3cr3t") && a.contains("root@h/system"), "{a}");
        assert_ne!(a, b);
    }
}
