//! Command-line arguments as typed by the user (raw). `config.rs` validates them.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Checks, from inside every running VM through the QEMU guest agent, that
/// the VM reaches its gateway and the outside world — without using the
/// guest's network to ask.
#[derive(Debug, Parser)]
#[command(name = "vmnetprobe", version, about, max_term_width = 100)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Nagios/Icinga plugin: status line, perfdata, long output, exit 0-3.
    Nagios(TargetArgs),
    /// Zabbix low-level discovery JSON (VMs or NICs).
    Discover {
        /// What to discover.
        what: DiscoverWhat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Zabbix master item: one JSON document with every value.
    Zabbix(TargetArgs),
    /// Telegraf/InfluxDB line protocol (inputs.exec; --execd for inputs.execd).
    Telegraf {
        /// Stay running: probe and print one batch for every line read on
        /// stdin (Telegraf's `signal = "STDIN"`); exit at end of input.
        #[arg(long)]
        execd: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Human-readable table, or JSON for scripts.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoverWhat {
    Vms,
    Nics,
}

/// Which VMs to probe, how, and the thresholds.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct TargetArgs {
    /// libvirt URI.
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
    /// VMs probed in parallel.
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
    /// results are kept [default: /var/cache/vmnetprobe when writable, else
    /// $XDG_CACHE_HOME/vmnetprobe or ~/.cache/vmnetprobe].
    #[arg(long, value_name = "DIR", conflicts_with = "no_state")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Keep nothing between runs: every fact is learned again, no
    /// debounce, no shared results.
    #[arg(long)]
    pub no_state: bool,
    /// A VM started less than this ago whose agent is not up yet is
    /// "booting" instead of failing (0 turns it off).
    #[arg(long, value_name = "DUR", default_value = crate::boot::DEFAULT_GRACE)]
    pub grace: String,
    /// State for a booting VM (ok, warning, critical, unknown).
    #[arg(long, value_name = "STATE", default_value = "ok")]
    pub booting_state: String,
    /// Consecutive failed probes before a NIC or external check is
    /// CRITICAL; WARNING before that (1: at once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fail_after: u32,
    /// Callers within this interval share one probe result (same
    /// selection and options) instead of probing the guests again.
    #[arg(long, value_name = "DUR")]
    pub min_interval: Option<String>,
    /// Print progress and agent errors on stderr.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Command {
    pub fn target(&self) -> &TargetArgs {
        match self {
            Command::Nagios(t) | Command::Zabbix(t) => t,
            Command::Discover { target, .. }
            | Command::Telegraf { target, .. }
            | Command::Status { target, .. } => target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Args::command().debug_assert();
    }

    #[test]
    fn contract_examples_parse() {
        let a = Args::try_parse_from([
            "vmnetprobe",
            "nagios",
            "--socket",
            "vm1=/tmp/a.sock",
            "-w",
            "100",
            "-c",
            "500",
            "-t",
            "5s",
            "--external",
            "198.51.100.1",
            "-d",
            "vm1",
            "--external-network",
            "default",
            "-j",
            "4",
        ])
        .unwrap();
        assert!(matches!(a.command, Command::Nagios(_)));
        assert_eq!(a.command.target().socket, ["vm1=/tmp/a.sock"]);
        let a = Args::try_parse_from([
            "vmnetprobe",
            "discover",
            "nics",
            "--connect",
            "qemu:///system",
        ])
        .unwrap();
        assert!(matches!(
            a.command,
            Command::Discover {
                what: DiscoverWhat::Nics,
                ..
            }
        ));
        let a = Args::try_parse_from([
            "vmnetprobe",
            "telegraf",
            "--execd",
            "--socket-glob",
            "/x/*.qga",
        ])
        .unwrap();
        assert!(matches!(a.command, Command::Telegraf { execd: true, .. }));
        assert!(Args::try_parse_from([
            "vmnetprobe",
            "status",
            "--connect",
            "x",
            "--socket",
            "a=b"
        ])
        .is_err());
    }
}
