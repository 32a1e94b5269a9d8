//! One run from validated arguments to rendered output: pick the inventory,
//! probe every VM, render in the requested format. `main.rs` only prints.

use crate::cli::{Command, DiscoverWhat};
use crate::config::{Config, ConfigError, Source};
use crate::inventory::socket::SocketInventory;
use crate::inventory::{Inventory, InventoryError};
use crate::output::{self, Rendered};
use crate::probe::runner::probe_all;
use crate::report::Report;
use std::io::{BufRead, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// Lists and probes every selected VM within the configured deadline.
pub fn collect(config: &Config) -> Report {
    let started = Instant::now();
    let deadline = started + config.timeout;
    let timestamp_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let listed = inventory_for(&config.source).and_then(|inv| inv.list(&config.domains));
    let (vms, fatal) = match listed {
        Ok(targets) => (
            probe_all(targets, &config.probe, config.jobs, deadline),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if config.verbose > 0 {
        for vm in &vms {
            eprintln!(
                "vmnetprobe: {} {} {:.1} ms: {}",
                vm.name, vm.verdict.state, vm.duration_ms, vm.verdict.reason
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
    }
}

/// Renders `report` the way `command` asks.
pub fn render(command: &Command, report: &Report) -> Rendered {
    match command {
        Command::Nagios(_) => output::render_nagios(report),
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
        Command::Status { json: true, .. } => output::render_status_json(report),
        Command::Status { json: false, .. } => output::render_status_table(report),
    }
}

/// The output for a configuration error, in the mode's own terms: Nagios
/// wants a status line on stdout, the others an error on stderr.
pub fn config_error(
    command: Option<&Command>,
    error: &ConfigError,
) -> (Option<String>, Option<String>) {
    match command {
        Some(Command::Nagios(_)) => (Some(format!("VMNETPROBE UNKNOWN - {error}\n")), None),
        _ => (None, Some(format!("vmnetprobe: {error}\n"))),
    }
}

/// Telegraf `inputs.execd` with `signal = "STDIN"`: one batch per line read,
/// flushed at once; returns at end of input (Telegraf stopping).
pub fn run_execd(
    command: &Command,
    config: &Config,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let report = collect(config);
        out.write_all(render(command, &report).text.as_bytes())?;
        out.flush()?;
    }
}
