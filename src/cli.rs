//! Command-line arguments as typed by the user (raw). `config.rs` validates them.
//! Self-contained (no `crate::` paths): build.rs includes it to generate the
//! man page and shell completions from the same definitions.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::Path;

/// The name the package installs in the monitoring plugin directory
/// (/usr/lib/nagios/plugins), a symlink to the binary: called by this name,
/// vmnetprobe runs its `nagios` subcommand.
pub const NAGIOS_PLUGIN_NAME: &str = "check_vmnetprobe";

/// The sections `vmnetprobe --help` and vmnetprobe(1) end with, for
/// operators: (title, paragraphs). A paragraph starting with "$ " is a
/// command line. build.rs renders them as man page sections; `--help` as
/// text ([`after_long_help`]).
pub const MANUAL_SECTIONS: &[(&str, &[&str])] = &[
    (
        "EXIT STATUS",
        &[
            "nagios (and check_vmnetprobe): the monitoring plugin API, the worst \
             VM's state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for a usage \
             error or a failed run).",
            "zabbix, discover, prometheus, status (table and --json): 0 when a \
             report was printed, whatever the VMs' states (they are in the \
             output); 3 for a usage error or a failed run.",
            "telegraf: 0, also for a failed run (Telegraf drops a failing \
             command's output; the error is in vmnetprobe_run). telegraf --execd: \
             0 at the end of its input, 1 when stdin or stdout fails, 3 for a \
             usage error. serve: 0 after SIGTERM or SIGINT, 3 for a usage error \
             or an address it cannot listen on.",
        ],
    ),
    (
        "FILES",
        &[
            "/var/cache/vmnetprobe: the state directory (root:vmnetprobe, mode \
             2770): agent facts, failure streaks, shared results. Add the \
             monitoring users to group vmnetprobe (and libvirt), e.g. `adduser \
             nagios vmnetprobe`.",
            "/usr/lib/nagios/plugins/check_vmnetprobe: a symlink to vmnetprobe; \
             called by this name it runs `vmnetprobe nagios`.",
            "/usr/share/vmnetprobe/: examples for Nagios, Icinga 2, Zabbix, \
             Telegraf, Prometheus and Grafana; nothing is enabled until linked \
             or copied in.",
        ],
    ),
    (
        "EXAMPLES",
        &[
            "Nagios or Icinga 2 service, RTT warning 100 ms, critical 500 ms, \
             sharing one probe with other callers for 50 s:",
            "$ check_vmnetprobe --external 203.0.113.53 -w 100 -c 500 --min-interval 50s",
            "Zabbix master item (UserParameter) and NIC discovery:",
            "$ vmnetprobe zabbix --external 203.0.113.53 --min-interval 50s",
            "$ vmnetprobe discover nics",
            "Proxmox VE, agent sockets without libvirt:",
            "$ vmnetprobe status --socket-glob '/var/run/qemu-server/*.qga' --external 203.0.113.53",
        ],
    ),
];

/// [`MANUAL_SECTIONS`] as `--help` text.
pub fn after_long_help() -> String {
    let mut text = String::new();
    for (title, paragraphs) in MANUAL_SECTIONS {
        text.push_str(&format!("\n{title}:\n"));
        for paragraph in *paragraphs {
            let indent = if paragraph.starts_with("$ ") {
                "    "
            } else {
                "  "
            };
            text.push_str(&format!("{indent}{paragraph}\n"));
        }
    }
    text
}

/// The default `--grace`: long enough for a typical Linux or Windows guest
/// to start its agent (evidence: ~100 s before guest-exec works).
pub const DEFAULT_GRACE: &str = "120s";

/// The default `serve --listen`: free in the Prometheus exporter port range
/// (9100-9999) as far as we could tell; loopback only unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// `-V`: the version and the transports this build has, so a
/// `--no-default-features` build (sockets only) is told apart at a glance.
/// build.rs passes the feature it is building for (build scripts do not see
/// the package's `cfg(feature)`).
pub const fn version_text(libvirt: bool) -> &'static str {
    if libvirt {
        concat!(env!("CARGO_PKG_VERSION"), " (libvirt, sockets)")
    } else {
        concat!(env!("CARGO_PKG_VERSION"), " (sockets only)")
    }
}

/// Help as the monitoring-plugins guidelines want it: name and version
/// first, then usage and every option.
const HELP_TEMPLATE: &str =
    "{name} {version}\n{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}{after-help}";

/// Checks, from inside every running VM through the QEMU guest agent, that
/// the VM reaches its gateway and the outside world — without using the
/// guest's network to ask — and reports to Nagios/Icinga, Zabbix, Telegraf
/// and Prometheus.
#[derive(Debug, Parser)]
#[command(
    name = "vmnetprobe",
    version = version_text(cfg!(feature = "libvirt")),
    about,
    max_term_width = 100,
    propagate_version = true,
    help_template = HELP_TEMPLATE,
    after_long_help = after_long_help()
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Nagios/Icinga plugin: status line, perfdata, long output, exit 0-3.
    #[command(help_template = HELP_TEMPLATE)]
    Nagios {
        /// Output cap in bytes, the failing VMs kept first (Nagios 4 keeps
        /// 8 KB; 0: no cap, for Icinga 2).
        #[arg(long, value_name = "BYTES", default_value = "8000", value_parser = parse_max_output)]
        max_output: MaxOutput,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Zabbix low-level discovery JSON (VMs or NICs).
    #[command(help_template = HELP_TEMPLATE)]
    Discover {
        /// What to discover.
        what: DiscoverWhat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Zabbix master item: one JSON document with every value.
    #[command(help_template = HELP_TEMPLATE)]
    Zabbix(TargetArgs),
    /// Telegraf/InfluxDB line protocol (inputs.exec; --execd for inputs.execd).
    #[command(help_template = HELP_TEMPLATE)]
    Telegraf {
        /// Stay running: probe and print one batch for every line read on
        /// stdin (Telegraf's `signal = "STDIN"`); exit at end of input.
        #[arg(long)]
        execd: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Prometheus text exposition format, or a file for node_exporter's
    /// textfile collector.
    #[command(help_template = HELP_TEMPLATE)]
    Prometheus {
        /// Write to this file (atomically: temp file + rename in the same
        /// directory) instead of stdout; it must end in `.prom`.
        #[arg(long, value_name = "PATH")]
        textfile: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// HTTP server for Prometheus: /metrics probes, scrapes within
    /// --min-interval (default here: 30s; off with --no-state) share one
    /// probe.
    #[command(help_template = HELP_TEMPLATE)]
    Serve {
        /// Address and port to listen on (an IP literal).
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Human-readable table, or JSON for scripts.
    #[command(help_template = HELP_TEMPLATE)]
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// `--max-output`: a byte cap, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxOutput(pub Option<usize>);

/// Smallest cap: a status line and a few VMs.
const MIN_MAX_OUTPUT: usize = 512;

fn parse_max_output(text: &str) -> Result<MaxOutput, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Ok(MaxOutput(None)),
        Ok(n) if n >= MIN_MAX_OUTPUT => Ok(MaxOutput(Some(n))),
        _ => Err(format!(
            "expected 0 (no cap) or a number of bytes from {MIN_MAX_OUTPUT}"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoverWhat {
    Vms,
    Nics,
}

/// Which VMs to probe, how, and the thresholds.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct TargetArgs {
    /// libvirt URI [default: qemu:///system].
    #[arg(long, value_name = "URI", conflicts_with_all = ["socket", "socket_glob"])]
    pub connect: Option<String>,
    /// A guest agent unix socket, named: NAME=PATH (repeatable). No libvirt needed.
    #[arg(long, value_name = "NAME=PATH")]
    pub socket: Vec<String>,
    /// Guest agent sockets by pattern, named by file stem, e.g.
    /// '/var/run/qemu-server/*.qga' (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub socket_glob: Vec<String>,
    /// Only this VM, by name or UUID (repeatable).
    #[arg(short = 'd', long = "domain", value_name = "NAME|UUID")]
    pub domains: Vec<String>,
    /// The external address every guest pings (an IP address; default 1.1.1.1).
    #[arg(long, value_name = "ADDR")]
    pub external: Option<String>,
    /// Gateway to ping for NICs whose gateway cannot be found.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<String>,
    /// libvirt network or bridge whose NICs are external (repeatable); with
    /// sockets, a guest interface name. All other NICs are internal.
    #[arg(long = "external-network", value_name = "NAME")]
    pub external_networks: Vec<String>,
    /// How long one ping waits for its reply.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "1s",
        allow_hyphen_values = true
    )]
    pub ping_timeout: String,
    /// Overall deadline for the whole run; never overrun.
    #[arg(
        short = 't',
        long,
        value_name = "DUR",
        default_value = "10s",
        allow_hyphen_values = true
    )]
    pub timeout: String,
    /// Upper bound for one guest agent command.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "3s",
        allow_hyphen_values = true
    )]
    pub command_timeout: String,
    /// Agent commands under way at once, host-wide. Every VM is probed at
    /// once; a VM waiting for its pings, or a command unanswered for 250 ms
    /// (a silent agent), does not count.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 32)]
    pub jobs: usize,
    /// Run nothing in the guests: report agent liveness and interfaces only.
    #[arg(long)]
    pub no_exec: bool,
    /// State for an unreachable agent (ok, warning, critical, unknown).
    #[arg(long, value_name = "STATE", default_value = "unknown")]
    pub agent_down_state: String,
    /// RTT warning range in milliseconds (Nagios range syntax, e.g. 100 or ~:100).
    #[arg(short = 'w', long = "warning", value_name = "RANGE")]
    pub warning: Option<String>,
    /// RTT critical range in milliseconds.
    #[arg(short = 'c', long = "critical", value_name = "RANGE")]
    pub critical: Option<String>,
    /// Where facts learned about guest agents, failure streaks and shared
    /// results are kept [default: /var/cache/vmnetprobe when writable (an
    /// error when its group, e.g. the package's vmnetprobe, lacks this
    /// user), else $XDG_CACHE_HOME/vmnetprobe or ~/.cache/vmnetprobe].
    #[arg(long, value_name = "DIR", conflicts_with = "no_state")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Keep nothing between runs: every fact is learned again, no
    /// debounce, no shared results.
    #[arg(long)]
    pub no_state: bool,
    /// A VM started less than this ago whose agent is not up yet is
    /// "booting" instead of failing (0 turns it off).
    #[arg(long, value_name = "DUR", default_value = DEFAULT_GRACE)]
    pub grace: String,
    /// State for a booting VM (ok, warning, critical, unknown).
    #[arg(long, value_name = "STATE", default_value = "ok")]
    pub booting_state: String,
    /// State for a VM paused by the user, a save, a dump or a snapshot
    /// (ok, warning, critical, unknown). A pause on an I/O error, a watchdog
    /// or a crash is always critical.
    #[arg(long, value_name = "STATE", default_value = "warning")]
    pub paused_state: String,
    /// State for a VM migrating to another host, also when its agent fails
    /// meanwhile (ok, warning, critical, unknown).
    #[arg(long, value_name = "STATE", default_value = "ok")]
    pub migrating_state: String,
    /// State for a VM whose filesystems are frozen (a backup's
    /// `virsh domfsfreeze`): its agent refuses the checks until thawed
    /// (ok, warning, critical, unknown).
    #[arg(long, value_name = "STATE", default_value = "warning")]
    pub frozen_state: String,
    /// Consecutive failed probes before a NIC or external check is
    /// CRITICAL; WARNING before that (1: at once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fail_after: u32,
    /// Callers within this interval share one probe result (same
    /// selection and options) instead of probing the guests again
    /// [default: off; serve: 30s].
    #[arg(long, value_name = "DUR")]
    pub min_interval: Option<String>,
    /// Print progress and agent errors on stderr.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The arguments as clap should see them: called as [`NAGIOS_PLUGIN_NAME`]
/// (the plugin directory's symlink), `check_vmnetprobe -w 100` means
/// `vmnetprobe nagios -w 100`.
pub fn effective_args(argv: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = argv.into_iter().collect();
    let as_plugin = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .is_some_and(|name| name == NAGIOS_PLUGIN_NAME);
    if as_plugin && args.get(1).is_none_or(|a| a != "nagios") {
        args.insert(1, "nagios".into());
    }
    args
}

impl Command {
    pub fn target(&self) -> &TargetArgs {
        match self {
            Command::Zabbix(t) => t,
            Command::Nagios { target, .. }
            | Command::Discover { target, .. }
            | Command::Telegraf { target, .. }
            | Command::Prometheus { target, .. }
            | Command::Serve { target, .. }
            | Command::Status { target, .. } => target,
        }
    }
}

// A path of its own: build.rs loads this file by #[path], where a plain
// `mod tests;` would be looked for beside build.rs.
#[cfg(test)]
#[path = "cli/tests.rs"]
mod tests;
