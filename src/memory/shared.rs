//! Results shared under `--min-interval`: callers that probe the same
//! selection within the interval share one probe. One caller probes under
//! the selection's lock, the others wait for it up to their own deadline:
//! N callers in an outage cost one probe, not N.

use super::facts::{self, StoredResult};
use super::statedir::{LockError, StateDir};
use crate::config::{Config, Source};
use crate::probe::runner::render_margin;
use crate::probe::ProbeConfig;
use crate::report::Report;
use crate::verdict::{self, ServiceState};
use serde::Serialize;
use std::time::{Duration, Instant};

/// With a state directory and `--min-interval`, the result another caller
/// probed within the interval, judged by this caller's thresholds; else
/// `probe`'s, stored for the others. Without either, just `probe`'s.
///
/// Per-VM checks (`-d`, a service per VM in Icinga or Nagios) share the
/// probe of the whole host: the first one in an interval probes every VM,
/// the others take their VMs from that result. A VM the host-wide result
/// lacks (shut off, or unknown) is probed alone, so its own answer ("VM not
/// running", "unknown VM") stands.
pub fn share(config: &Config, started: Instant, probe: impl Fn(&Config) -> Report) -> Report {
    if config.state_dir.is_none() || config.min_interval.is_none() {
        return probe(config);
    }
    if config.domains.is_empty() {
        return share_selection(config, started, &probe);
    }
    let mut host = config.clone();
    host.domains.clear();
    let mut report = share_selection(&host, started, &probe);
    if report.fatal.is_some() {
        return report;
    }
    match selected(&report, &config.domains) {
        Some(vms) => {
            report.vms = vms;
            report
        }
        None => probe(config),
    }
}

/// The VMs of `report` that `domains` names (by name or UUID), in the
/// report's order; `None` when one of the names has no VM there.
fn selected(report: &Report, domains: &[String]) -> Option<Vec<crate::report::VmReport>> {
    let names = |d: &String, vm: &crate::report::VmReport| {
        vm.name == *d
            || vm
                .uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(d))
    };
    if !domains
        .iter()
        .all(|d| report.vms.iter().any(|vm| names(d, vm)))
    {
        return None;
    }
    Some(
        report
            .vms
            .iter()
            .filter(|vm| domains.iter().any(|d| names(d, vm)))
            .cloned()
            .collect(),
    )
}

/// [`share`] for one selection: one caller probes under its lock, the
/// others wait for that result up to their own deadline.
fn share_selection(
    config: &Config,
    started: Instant,
    probe: &impl Fn(&Config) -> Report,
) -> Report {
    let (Some(dir), Some(min_interval)) = (&config.state_dir, config.min_interval) else {
        return probe(config);
    };
    let key = selection_key(config);
    let name = facts::result_name(&key);
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
        verdict::shared::judge_replies(&mut report, &config.probe.policy, &config.thresholds);
        if config.verbose > 0 {
            eprintln!(
                "vmnetprobe: shared result, probed {:.1} s ago (--min-interval)",
                report.age_ms.unwrap_or(0.0) / 1000.0
            );
        }
        return report;
    }
    let report = probe(config);
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
    let reason = format!(
        "no result within {}: another vmnetprobe run was still probing the same VMs (--min-interval)",
        humantime::format_duration(config.timeout)
    );
    Report {
        external_target: config.probe.external,
        thresholds: config.thresholds.clone(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..Report::failed(reason, crate::report::now_ns())
    }
}

/// The key of what a run probes: callers that agree on it share one result.
/// Everything in [`Config`] that changes what a probe finds is in it, the
/// probe settings whole (a new [`ProbeConfig`] field is serialized, or
/// marked `skip` with its reason there); the destructuring below does not
/// compile until a new [`Config`] field is placed on one side.
pub fn selection_key(config: &Config) -> String {
    let Config {
        source,
        domains,
        probe,
        grace,
        booting_state,
        fail_after,
        // Not what is probed: how long this caller waits, how many agent
        // commands at once, what it prints, where it keeps state, how old
        // a result it takes; -w/-c judge the shared replies per caller
        // (verdict::shared).
        thresholds: _,
        timeout: _,
        jobs: _,
        verbose: _,
        state_dir: _,
        min_interval: _,
    } = config;
    #[derive(Serialize)]
    struct Selection<'a> {
        source: String,
        domains: Vec<&'a str>,
        probe: &'a ProbeConfig,
        grace: Duration,
        booting_state: ServiceState,
        fail_after: u32,
        version: &'static str,
    }
    // A URI's password is never stored: its redacted form plus a
    // fingerprint of the whole URI tell selections apart.
    let source = match source {
        Source::Libvirt { uri } => format!(
            "libvirt:{}#{:016x}",
            crate::config::redact_uri(uri),
            facts::fingerprint(uri)
        ),
        other => format!("{other:?}"),
    };
    let mut domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    domains.sort_unstable();
    let selection = Selection {
        source,
        domains,
        probe,
        grace: *grace,
        booting_state: *booting_state,
        fail_after: *fail_after,
        version: env!("CARGO_PKG_VERSION"),
    };
    serde_json::to_string(&selection).unwrap_or_default()
}

/// The stored result for `key` when it is younger than `min_interval`.
fn shared_result(dir: &StateDir, file: &str, key: &str, min_interval: Duration) -> Option<Report> {
    let stored: StoredResult = dir.read(file)?;
    let age_ms = facts::now_ms().checked_sub(stored.stored_ms)?;
    if stored.key != key || u128::from(age_ms) >= min_interval.as_millis() {
        return None;
    }
    let mut report = stored.report;
    report.age_ms = Some(age_ms as f64);
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::threshold::Range;

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

    #[test]
    fn what_is_probed_is_in_the_key_and_how_it_is_judged_is_not() {
        use clap::Parser;
        let args = crate::cli::Args::try_parse_from(["vmnetprobe", "status", "--no-state"])
            .expect("arguments");
        let base = Config::from_args(args.command.target()).expect("config");
        let key = selection_key(&base);
        let mut other = base.clone();
        other.probe.ping_timeout += Duration::from_millis(1);
        assert_ne!(selection_key(&other), key);
        let mut other = base.clone();
        other.probe.policy.frozen_state = ServiceState::Critical;
        assert_ne!(selection_key(&other), key);
        let mut other = base.clone();
        other.probe.policy.rtt_warning = Some("100".parse::<Range>().expect("range"));
        other.timeout += Duration::from_secs(1);
        other.jobs += 1;
        assert_eq!(selection_key(&other), key);
    }
}
