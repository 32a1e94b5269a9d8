//! Renderers: pure functions from a [`Report`] to text and an exit code.
//! Only `main.rs` writes to stdout.
//!
//! Each format lives in its own module; the helpers here are the few rules
//! they share (one-line text, fixed-point numbers, "did the target answer",
//! worst-first order).

mod exposition;
mod json;
mod nagios;
mod prometheus;
mod status;
mod telegraf;
mod zabbix;

use crate::report::{Report, VmReport};
use crate::verdict::ServiceState;
use crate::verdict::{Code, Verdict};

pub use nagios::{render_nagios, render_nagios_capped, DEFAULT_MAX_OUTPUT};
pub use prometheus::{render_prometheus, render_serve_counters, ServeCounters};
pub use status::{render_status_json, render_status_table, render_status_table_styled};
pub use telegraf::render_telegraf;
pub use zabbix::{render_discovery_nics, render_discovery_vms, render_zabbix};

/// What a renderer produces: the text for stdout and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub exit_code: u8,
}

/// Exit code of the non-Nagios formats: 0, or 3 (UNKNOWN) when the run failed.
fn exit_code_for(report: &Report) -> u8 {
    if report.fatal.is_some() {
        ServiceState::Unknown.code()
    } else {
        0
    }
}

/// What a report without VMs says: "no running VMs", or why none was
/// found when the inventory knows (`no VMs: no socket matches '...'`).
fn no_vms_text(report: &Report) -> String {
    match &report.no_vms_reason {
        Some(reason) => format!("no VMs: {}", crate::text::flatten(reason)),
        None => "no running VMs".to_string(),
    }
}

/// `text` when it is at most `max_chars` long, else its start, `~` and 8
/// hex digits of a hash of the whole text (`max_chars` in all), so two long
/// names with a common start stay two series.
fn cut_unique(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    with_hash(text, text, max_chars)
}

/// The start of `shown`, then `~` and 8 hex digits of a hash of `original`,
/// at most `max_chars` in all.
fn with_hash(shown: &str, original: &str, max_chars: usize) -> String {
    let suffix = format!(
        "~{:08x}",
        crate::memory::facts::fingerprint(original) as u32
    );
    let keep = max_chars.saturating_sub(suffix.len());
    let mut out: String = shown.chars().take(keep).collect();
    out.push_str(&suffix);
    out
}

/// A fixed-point decimal: never an exponent, at most `max_decimals`
/// digits after the point, trailing zeros trimmed but always at least one
/// decimal (`12.0`, `0.41`, `0.0000001` → `0.0` at 6 decimals).
/// `None` for NaN and infinities, which no consumer accepts.
fn fixed_decimal(value: f64, max_decimals: usize) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let mut text = format!("{value:.max_decimals$}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').len();
        text.truncate(trimmed);
        if text.ends_with('.') {
            text.push('0');
        }
    } else {
        text.push_str(".0");
    }
    if text.starts_with('-') && text[1..].bytes().all(|b| b == b'0' || b == b'.') {
        text.remove(0);
    }
    Some(text)
}

/// Whether the VM's guest agent answered this run: a frozen agent did (it
/// only refuses the checks); one not asked (maintenance, paused,
/// migrating) or failing did not.
fn agent_up(agent: &Verdict) -> bool {
    matches!(agent.code, Code::Ok | Code::Frozen)
}

/// Whether a pinged address answered: `Some(true)` for a reply (with or
/// without an RTT), `Some(false)` for "unreachable", `None` when no ping
/// result exists (not pinged, exec disabled, ping missing or failed).
fn reachable(verdict: &Verdict, rtt_ms: Option<f64>) -> Option<bool> {
    match verdict.code {
        Code::GatewayUnreachable | Code::ExternalUnreachable => Some(false),
        Code::Ok | Code::RttHigh => Some(true),
        _ if rtt_ms.is_some_and(f64::is_finite) => Some(true),
        _ => None,
    }
}

/// VMs worst state first, then by name.
fn worst_first(vms: &[VmReport]) -> Vec<&VmReport> {
    let mut sorted: Vec<&VmReport> = vms.iter().collect();
    sorted.sort_by(|a, b| {
        b.verdict
            .state
            .cmp(&a.verdict.state)
            .then_with(|| a.name.cmp(&b.name))
    });
    sorted
}

/// `1 CRITICAL, 2 OK`: the non-zero counts, worst state first.
fn counts_text(report: &Report) -> String {
    let counts = report.counts();
    let parts: Vec<String> = [
        (counts.critical, ServiceState::Critical),
        (counts.warning, ServiceState::Warning),
        (counts.unknown, ServiceState::Unknown),
        (counts.ok, ServiceState::Ok),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, state)| format!("{n} {state}"))
    .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    #[test]
    fn fixed_decimal_never_uses_an_exponent() {
        assert_eq!(fixed_decimal(1e-7, 6).as_deref(), Some("0.0"));
        assert_eq!(fixed_decimal(1e-7, 7).as_deref(), Some("0.0000001"));
        assert_eq!(fixed_decimal(0.41, 3).as_deref(), Some("0.41"));
        assert_eq!(fixed_decimal(0.4125, 3).as_deref(), Some("0.412"));
        assert_eq!(fixed_decimal(12.0, 3).as_deref(), Some("12.0"));
        assert_eq!(
            fixed_decimal(1e21, 3).as_deref(),
            Some("1000000000000000000000.0")
        );
        assert_eq!(fixed_decimal(-0.0000001, 3).as_deref(), Some("0.0"));
        assert_eq!(fixed_decimal(-1.5, 3).as_deref(), Some("-1.5"));
        assert_eq!(fixed_decimal(7.0, 0).as_deref(), Some("7.0"));
        assert_eq!(fixed_decimal(f64::NAN, 3), None);
        assert_eq!(fixed_decimal(f64::INFINITY, 3), None);
        assert_eq!(fixed_decimal(f64::NEG_INFINITY, 3), None);
    }

    #[test]
    fn cut_names_stay_apart() {
        assert_eq!(cut_unique("short", 10), "short");
        let a = cut_unique(&format!("{}a", "x".repeat(100)), 20);
        let b = cut_unique(&format!("{}b", "x".repeat(100)), 20);
        assert_eq!(a.chars().count(), 20);
        assert!(a.starts_with("xxxxxxxxxxx~"), "{a}");
        assert_ne!(a, b);
        assert_eq!(cut_unique(&"ü".repeat(30), 20).chars().count(), 20);
    }

    #[test]
    fn reachability_follows_the_stable_codes() {
        let v = |code| Verdict::new(ServiceState::Ok, code, "");
        assert_eq!(reachable(&v(Code::Ok), None), Some(true));
        assert_eq!(reachable(&v(Code::RttHigh), Some(600.0)), Some(true));
        assert_eq!(reachable(&v(Code::GatewayUnreachable), None), Some(false));
        assert_eq!(reachable(&v(Code::ExternalUnreachable), None), Some(false));
        assert_eq!(reachable(&v(Code::ExecDisabled), None), None);
        assert_eq!(reachable(&v(Code::NoGateway), None), None);
        assert_eq!(reachable(&v(Code::PingTimeout), None), None);
        assert_eq!(reachable(&v(Code::NotChecked), Some(f64::NAN)), None);
        assert_eq!(reachable(&v(Code::PingError), Some(3.0)), Some(true));
    }
}
