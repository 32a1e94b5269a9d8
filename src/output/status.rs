//! `vmnetprobe status`: a table for a terminal (80 columns, or the
//! terminal's width when the caller knows it; worst VM first, NIC rows indented, states coloured when asked to) and the
//! `--json` document.

use super::json::{self, document, Flavor};
use super::Rendered;
use super::{counts_text, exit_code_for, fixed_decimal, no_vms_text, worst_first};
use crate::report::{AgentReport, NicReport, Report, TargetReport, Thresholds, VmReport};
use crate::text::{flatten, truncate_chars};
use crate::verdict::ServiceState;
use crate::verdict::Verdict;

/// Widest line of the table, in characters, when not told the terminal's
/// width (a pipe, a file); also the least it gets.
const WIDTH: usize = 80;
const NAME_WIDTH: usize = 16;
const STATE_WIDTH: usize = 8;
const OS_WIDTH: usize = 8;
const NICS_WIDTH: usize = 5;
const RTT_WIDTH: usize = 8;

/// `status --json`: the documented document, pretty-printed.
pub fn render_status_json(report: &Report) -> Rendered {
    json::rendered(report, &document(report, Flavor::Status), true)
}

/// `status`: a human table, worst VM first, without colour.
pub fn render_status_table(report: &Report) -> Rendered {
    render_status_table_styled(report, false, None)
}

/// `status`: as [`render_status_table`], with the state column in colour
/// when `color` (the caller decides: a terminal, and no `NO_COLOR`), and
/// lines up to `width` characters (a terminal's; never below [`WIDTH`],
/// which the fixed columns need), so a wide terminal shows whole reasons.
pub fn render_status_table_styled(report: &Report, color: bool, width: Option<usize>) -> Rendered {
    let width = width.map_or(WIDTH, |w| w.max(WIDTH));
    let Report {
        vms,
        external_target: _,
        thresholds,
        fatal,
        timestamp_ns: _,
        duration_ms,
        age_ms,
        no_vms_reason: _,
    } = report;
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    let exit_code = exit_code_for(report);
    if let Some(fatal) = fatal {
        return Rendered {
            text: format!("error: {}\n", flatten(fatal)),
            exit_code,
        };
    }
    if vms.is_empty() {
        return Rendered {
            text: format!("{}\n", no_vms_text(report)),
            exit_code,
        };
    }
    let mut lines = vec![row(
        ["VM", "STATE", "OS", "NICS", "EXT RTT", "REASON"],
        None,
        width,
    )];
    let paint = |state: ServiceState| color.then_some(state);
    for vm in worst_first(vms) {
        vm_rows(vm, &mut lines, paint, width);
    }
    let when = match age_ms {
        Some(age) => format!(
            "shared result, probed {} s ago",
            fixed_decimal(age / 1000.0, 1).unwrap_or_else(|| "?".to_string())
        ),
        None => format!(
            "{} ms",
            fixed_decimal(*duration_ms, 1).unwrap_or_else(|| "?".to_string())
        ),
    };
    lines.push(String::new());
    lines.push(format!(
        "{} VM{}: {} ({when})",
        vms.len(),
        if vms.len() == 1 { "" } else { "s" },
        counts_text(report)
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    Rendered { text, exit_code }
}

fn vm_rows(
    vm: &VmReport,
    lines: &mut Vec<String>,
    paint: impl Fn(ServiceState) -> Option<ServiceState>,
    width: usize,
) {
    let VmReport {
        name,
        uuid: _,
        os,
        verdict,
        agent,
        nics,
        external,
        duration_ms: _,
        agent_commands: _,
        agent_execs: _,
        cloud: _,
    } = vm;
    let Verdict {
        state,
        code: _,
        reason,
    } = verdict;
    let AgentReport {
        verdict: _,
        version: _,
        exec_enabled: _,
    } = agent;
    let nics_ok = nics
        .iter()
        .filter(|nic| nic.verdict.state == crate::verdict::ServiceState::Ok)
        .count();
    let ext_rtt = match external {
        Some(TargetReport {
            address: _,
            verdict: _,
            rtt_ms,
        }) => rtt_text(*rtt_ms),
        None => "-".to_string(),
    };
    lines.push(row(
        [
            name,
            state.as_str(),
            os.as_str(),
            &format!("{nics_ok}/{}", nics.len()),
            &ext_rtt,
            reason,
        ],
        paint(*state),
        width,
    ));
    for nic in nics {
        let NicReport {
            mac,
            name,
            host_dev: _,
            network: _,
            ips: _,
            gateway: _,
            gateway_source: _,
            kind,
            verdict,
            rtt_ms,
        } = nic;
        let label = format!("  {}", name.as_deref().unwrap_or(mac));
        lines.push(row(
            [
                &label,
                verdict.state.as_str(),
                kind.as_str(),
                "",
                &rtt_text(*rtt_ms),
                &verdict.reason,
            ],
            paint(verdict.state),
            width,
        ));
    }
}

/// `0.41 ms`, `12.3 ms`, `150 ms`, or `-`.
fn rtt_text(rtt_ms: Option<f64>) -> String {
    match rtt_ms.filter(|v| v.is_finite()) {
        None => "-".to_string(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// The ANSI colour of a state: green, red, yellow, magenta.
fn ansi(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Ok => "\x1b[32m",
        ServiceState::Critical => "\x1b[1;31m",
        ServiceState::Warning => "\x1b[33m",
        ServiceState::Unknown => "\x1b[35m",
    }
}

const ANSI_RESET: &str = "\x1b[0m";

/// One table line; every cell is cut to its column, the last one to what
/// is left of `width` (escape codes take no columns). With `paint`, the
/// state cell is coloured.
fn row(cells: [&str; 6], paint: Option<ServiceState>, width: usize) -> String {
    let [name, state, os, nics, rtt, reason] = cells.map(flatten);
    let mut line = String::new();
    let mut columns = 0;
    for (i, (text, width)) in [
        (&name, NAME_WIDTH),
        (&state, STATE_WIDTH),
        (&os, OS_WIDTH),
        (&nics, NICS_WIDTH),
    ]
    .into_iter()
    .enumerate()
    {
        let cell = truncate_chars(text, width);
        match paint.filter(|_| i == 1) {
            Some(state) => {
                line.push_str(ansi(state));
                line.push_str(&cell);
                line.push_str(ANSI_RESET);
            }
            None => line.push_str(&cell),
        }
        line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 1));
        columns += width + 1;
    }
    let rtt = truncate_chars(&rtt, RTT_WIDTH);
    line.extend(std::iter::repeat_n(' ', RTT_WIDTH - rtt.chars().count()));
    line.push_str(&rtt);
    line.push_str("  ");
    columns += RTT_WIDTH + 2;
    let left = width.saturating_sub(columns);
    line.push_str(&truncate_chars(&reason, left));
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fit_80_columns_even_with_long_and_wide_text() {
        let long = "ü".repeat(200);
        let line = row(
            [&long, "CRITICAL", "windows", "10/10", "1234 ms", &long],
            None,
            WIDTH,
        );
        assert_eq!(line.chars().count(), WIDTH);
        assert!(line.ends_with('…'));
        let line = row(["a\nb", "OK", "linux", "1/1", "-", "x\ty"], None, WIDTH);
        assert!(!line.contains('\n') && !line.contains('\t'));
    }

    #[test]
    fn a_wide_terminal_shows_whole_reasons() {
        let reason = "1 NIC, 1 gateway reachable, external 198.51.100.1 unreachable";
        let cells = ["web01", "CRITICAL", "linux", "1/1", "-", reason];
        assert!(row(cells, None, WIDTH).ends_with('…'));
        let wide = row(cells, None, 200);
        assert!(wide.ends_with(reason), "{wide}");
        let long = "x".repeat(300);
        let capped = row(["a", "OK", "linux", "1/1", "-", &long], None, 120);
        assert_eq!(capped.chars().count(), 120);
    }

    #[test]
    fn colour_only_paints_the_state_and_keeps_the_width() {
        let long = "x".repeat(200);
        let cells = ["vm1", "CRITICAL", "linux", "0/1", "-", long.as_str()];
        let plain = row(cells, None, WIDTH);
        let painted = row(cells, Some(ServiceState::Critical), WIDTH);
        assert!(painted.contains("\x1b[1;31mCRITICAL\x1b[0m"), "{painted:?}");
        assert_eq!(
            painted.replace("\x1b[1;31m", "").replace(ANSI_RESET, ""),
            plain
        );
        assert!(!plain.contains('\x1b'));
    }

    #[test]
    fn rtt_is_short() {
        assert_eq!(rtt_text(Some(0.412)), "0.41 ms");
        assert_eq!(rtt_text(Some(12.34)), "12.3 ms");
        assert_eq!(rtt_text(Some(1500.0)), "1500 ms");
        assert_eq!(rtt_text(Some(f64::NAN)), "-");
        assert_eq!(rtt_text(None), "-");
    }
}
