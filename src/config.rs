//! Validated configuration: addresses parsed as IP literals, durations and
//! ranges checked, transports chosen. Every error is one clear line.

use crate::cli::TargetArgs;
use crate::memory::statedir::StateDir;
use crate::probe::ping::{linux_wait_secs, validate_target};
use crate::probe::runner::render_margin;
use crate::probe::ProbeConfig;
use crate::report::Thresholds;
use crate::verdict::policy::Policy;
use crate::verdict::threshold::Range;
use crate::verdict::ServiceState;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The external address pinged by default: a public anycast resolver that
/// answers ICMP. Override with `--external`; tests always do.
pub const DEFAULT_EXTERNAL: &str = "1.1.1.1";
pub const DEFAULT_URI: &str = "qemu:///system";
/// `--timeout` is bounded so a typo cannot stall a monitoring system.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// What a VM needs before its pings start (connect, info, interfaces,
/// routes: ~10 ms per VM here, BENCHMARKS.md), with room for a loaded host.
const PING_SETUP: Duration = Duration::from_millis(100);

/// Where the VMs come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Libvirt {
        uri: String,
    },
    Sockets {
        named: Vec<(String, PathBuf)>,
        globs: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub domains: Vec<String>,
    pub probe: ProbeConfig,
    pub thresholds: Thresholds,
    pub timeout: Duration,
    pub jobs: usize,
    pub verbose: u8,
    /// `None`: `--no-state`, or no usable default location.
    pub state_dir: Option<StateDir>,
    /// Zero: no boot grace.
    pub grace: Duration,
    pub booting_state: ServiceState,
    /// 1: no debounce.
    pub fail_after: u32,
    pub min_interval: Option<Duration>,
}

/// A usage or configuration error: the run does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// `800ms`, `2s`, `1m`; a bare number is seconds (Nagios `-t 10`).
pub fn parse_duration(option: &str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 && secs <= MAX_TIMEOUT.as_secs_f64() => {
            Ok(Duration::from_secs_f64(secs))
        }
        Ok(_) => Err(()),
        Err(_) => humantime::parse_duration(text).map_err(|_| ()),
    };
    match parsed {
        Ok(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(ConfigError(format!(
            "invalid duration for {option}: '{text}' (examples: 800ms, 2s, 1m; up to 1h)"
        ))),
    }
}

/// As [`parse_duration`], but `0` is allowed and means "off".
pub fn parse_duration_or_off(option: &str, text: &str) -> Result<Duration, ConfigError> {
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_duration(option, text),
    }
}

pub fn parse_address(option: &str, text: &str) -> Result<IpAddr, ConfigError> {
    let addr: IpAddr = text.trim().parse().map_err(|_| {
        ConfigError(format!(
            "invalid address for {option}: '{text}' is not an IP address"
        ))
    })?;
    validate_target(addr).map_err(|e| ConfigError(format!("invalid address for {option}: {e}")))
}

fn parse_state(option: &str, text: &str) -> Result<ServiceState, ConfigError> {
    text.parse()
        .map_err(|e| ConfigError(format!("{option}: {e}")))
}

fn parse_range(option: &str, text: Option<&str>) -> Result<Option<Range>, ConfigError> {
    text.map(|t| {
        t.parse::<Range>()
            .map_err(|e| ConfigError(format!("{option}: {e}")))
    })
    .transpose()
}

/// A ping that cannot end before the deadline would make every VM whose
/// ping goes unanswered UNKNOWN "timed out" instead of CRITICAL: refused.
/// Linux guests wait whole seconds (`-W`), so that is what must fit.
fn check_ping_fits(
    ping_text: &str,
    ping: Duration,
    timeout_text: &str,
    timeout: Duration,
) -> Result<(), ConfigError> {
    let wait = Duration::from_secs(linux_wait_secs(ping));
    let room = timeout.saturating_sub(render_margin(timeout));
    if wait + PING_SETUP <= room {
        return Ok(());
    }
    let needed = wait + PING_SETUP + Duration::from_millis(200);
    Err(ConfigError(format!(
        "--ping-timeout {ping_text} does not fit in --timeout {timeout_text}: a ping waits up to {}s (whole seconds in Linux guests) and must end before the deadline; use --timeout {}ms or more",
        wait.as_secs(),
        needed.as_millis()
    )))
}

/// A libvirt URI fit to show or store: the password of
/// `qemu+ssh://user:secret@host/system` is dropped (`user@host` stays).
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return uri.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}@{host}{tail}")
}

/// `NAME=PATH`. VM names may contain `=`, socket paths are absolute: split
/// before the `=/`, else at the first `=`. Two `=/` could split either way
/// (`vm=/a=/b.sock`): refused rather than guessed.
fn parse_socket(spec: &str) -> Result<(String, PathBuf), ConfigError> {
    if spec.matches("=/").count() > 1 {
        return Err(ConfigError(format!(
            "ambiguous --socket '{spec}': '=/' occurs more than once, so NAME and PATH cannot be told apart"
        )));
    }
    let split = match spec.find("=/") {
        Some(i) => Some((&spec[..i], &spec[i + 1..])),
        None => spec.split_once('='),
    };
    match split {
        Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(ConfigError(format!(
            "invalid --socket '{spec}': expected NAME=PATH"
        ))),
    }
}

impl Config {
    pub fn from_args(args: &TargetArgs) -> Result<Config, ConfigError> {
        let source = if !args.socket.is_empty() || !args.socket_glob.is_empty() {
            let named = args
                .socket
                .iter()
                .map(|s| parse_socket(s))
                .collect::<Result<Vec<_>, _>>()?;
            for pattern in &args.socket_glob {
                let dir = std::path::Path::new(pattern).parent();
                if dir.is_some_and(|d| d.to_string_lossy().contains(['*', '?'])) {
                    return Err(ConfigError(format!(
                        "invalid --socket-glob '{pattern}': wildcards are only supported in the file name"
                    )));
                }
            }
            Source::Sockets {
                named,
                globs: args.socket_glob.clone(),
            }
        } else {
            Source::Libvirt {
                uri: args
                    .connect
                    .clone()
                    .unwrap_or_else(|| DEFAULT_URI.to_string()),
            }
        };
        let timeout = parse_duration("--timeout", &args.timeout)?;
        let ping_timeout = parse_duration("--ping-timeout", &args.ping_timeout)?;
        let command_timeout = parse_duration("--command-timeout", &args.command_timeout)?;
        if !args.no_exec {
            check_ping_fits(&args.ping_timeout, ping_timeout, &args.timeout, timeout)?;
        }
        let external = parse_address(
            "--external",
            args.external.as_deref().unwrap_or(DEFAULT_EXTERNAL),
        )?;
        let fallback_gateway = args
            .gateway
            .as_deref()
            .map(|g| parse_address("--gateway", g))
            .transpose()?;
        let agent_down_state = parse_state("--agent-down-state", &args.agent_down_state)?;
        let warning = parse_range("--warning", args.warning.as_deref())?;
        let critical = parse_range("--critical", args.critical.as_deref())?;
        if args.jobs == 0 || args.jobs > 1024 {
            return Err(ConfigError(format!(
                "invalid --jobs {}: expected 1 to 1024",
                args.jobs
            )));
        }
        let grace = parse_duration_or_off("--grace", &args.grace)?;
        let booting_state = parse_state("--booting-state", &args.booting_state)?;
        let paused_state = parse_state("--paused-state", &args.paused_state)?;
        let migrating_state = parse_state("--migrating-state", &args.migrating_state)?;
        let frozen_state = parse_state("--frozen-state", &args.frozen_state)?;
        if args.fail_after == 0 || args.fail_after > 1000 {
            return Err(ConfigError(format!(
                "invalid --fail-after {}: expected 1 to 1000",
                args.fail_after
            )));
        }
        let min_interval = args
            .min_interval
            .as_deref()
            .map(|t| parse_duration_or_off("--min-interval", t))
            .transpose()?
            .filter(|d| !d.is_zero());
        let state_dir = match (&args.state_dir, args.no_state) {
            (_, true) => None,
            (Some(dir), false) => Some(StateDir::explicit(dir).map_err(ConfigError)?),
            (None, false) => StateDir::default_location().map_err(ConfigError)?,
        };
        if state_dir.is_none() {
            let needs = if args.fail_after > 1 {
                Some("--fail-after")
            } else if min_interval.is_some() {
                Some("--min-interval")
            } else {
                None
            };
            if let Some(option) = needs {
                return Err(ConfigError(format!(
                    "{option} needs a writable state directory (--state-dir DIR)"
                )));
            }
        }
        Ok(Config {
            source,
            domains: args.domains.clone(),
            probe: ProbeConfig {
                external: (!args.no_exec).then_some(external),
                fallback_gateway,
                external_networks: args.external_networks.clone(),
                ping_timeout,
                command_timeout,
                no_exec: args.no_exec,
                policy: Policy {
                    agent_down_state,
                    paused_state,
                    migrating_state,
                    frozen_state,
                    rtt_warning: warning.clone(),
                    rtt_critical: critical.clone(),
                },
                facts: None,
            },
            thresholds: Thresholds { warning, critical },
            timeout,
            jobs: args.jobs,
            verbose: args.verbose,
            state_dir,
            grace,
            booting_state,
            fail_after: args.fail_after,
            min_interval,
        })
    }
}

#[cfg(test)]
mod tests;
