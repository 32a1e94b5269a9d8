//! One run from validated arguments to rendered output: pick the inventory,
//! probe every VM, render in the requested format. `main.rs` only prints.

use crate::cli::{Args, Command, DiscoverWhat, TargetArgs};
use crate::config::{Config, ConfigError, Source};
use crate::inventory::socket::SocketInventory;
use crate::inventory::{Inventory, InventoryError};
use crate::memory::remember::probe_remembering;
use crate::memory::shared;
use crate::memory::statedir::StateDir;
use crate::output::{self, Rendered};
use crate::report::Report;
use crate::text::without_format_chars;
use clap::Parser;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

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
    shared::share(config, started, |selection| probe_run(selection, started))
}

/// Probes every listed VM now.
fn probe_run(config: &Config, started: Instant) -> Report {
    let deadline = started + config.timeout;
    let timestamp_ns = crate::report::now_ns();
    let listed = inventory_for(&config.source).and_then(|inv| {
        let targets = inv.list(&config.domains)?;
        let why_none = targets.is_empty().then(|| inv.why_none()).flatten();
        Ok((targets, why_none))
    });
    let (mut vms, fatal, no_vms_reason) = match listed {
        Ok((targets, why_none)) => (
            probe_remembering(config, targets, deadline),
            None,
            why_none.map(|why| without_format_chars(&why)),
        ),
        Err(e) => (Vec::new(), Some(without_format_chars(&e.to_string())), None),
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
        no_vms_reason,
    }
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
            output::render_status_table_styled(report, use_color(), table_width())
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
    crate::memory::statedir::write_atomically(dir, name, text.as_bytes(), 0o644).map_err(fail)
}

/// Colour in the status table: only for a terminal, and never with
/// `NO_COLOR` set (https://no-color.org).
fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// The status table's width: a terminal's (`COLUMNS` first, the user's
/// say, then the kernel's window size), or None (80) for a pipe or a file.
fn table_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    columns(std::env::var("COLUMNS").ok().as_deref()).or_else(window_columns)
}

/// Wider than any screen: a bogus `COLUMNS` is ignored, not obeyed.
const MAX_COLUMNS: usize = 1000;

fn columns(text: Option<&str>) -> Option<usize> {
    text?
        .trim()
        .parse()
        .ok()
        .filter(|c| (1..=MAX_COLUMNS).contains(c))
}

/// stdout's window size (TIOCGWINSZ); None when it has none (0 columns).
fn window_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes one winsize into `size`, which we own.
    let asked = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    let cols = usize::from(size.ws_col);
    (asked == 0 && (1..=MAX_COLUMNS).contains(&cols)).then_some(cols)
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
                crate::text::one_line(&error.0, 1000)
            )),
            exit_code: USAGE_EXIT,
        },
        Some(command) => {
            let report = Report::failed(without_format_chars(&error.0), crate::report::now_ns());
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
    fn columns_takes_a_sane_number_only() {
        assert_eq!(columns(Some("132")), Some(132));
        assert_eq!(columns(Some(" 200\n")), Some(200));
        for bad in ["", "0", "-5", "wide", "100000"] {
            assert_eq!(columns(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(columns(None), None);
    }
}
