//! Nagios/Icinga plugin output (monitoring-plugins conventions): one status
//! line with perfdata, then long output (one line per VM, worst first, with
//! its agent, NICs and external target indented), bounded in size.

use super::{counts_text, fixed_decimal, no_vms_text, with_hash, worst_first, Rendered};
use crate::report::{
    AgentReport, CloudInstance, NicReport, Report, TargetReport, Thresholds, VmReport,
};
use crate::text::{flatten, truncate_chars};
use crate::verdict::ServiceState;
use crate::verdict::Verdict;

/// The summary after `VMNETPROBE <STATE> - `, in characters.
const SUMMARY_MAX_CHARS: usize = 100;
/// The whole output by default, in bytes: Nagios 4 keeps 8 KB of plugin
/// output (`MAX_PLUGIN_OUTPUT_LENGTH`) and cuts the rest silently, and with
/// it the perfdata. Icinga 2 has no such cap: `--max-output 0`.
pub const DEFAULT_MAX_OUTPUT: usize = 8000;
/// A fatal message, in characters.
const FATAL_MAX_CHARS: usize = 1000;
/// The VM part of a perfdata label, in characters.
const LABEL_VM_MAX_CHARS: usize = 40;

/// The plugin output within the default (Nagios 4) size.
pub fn render_nagios(report: &Report) -> Rendered {
    render_nagios_capped(report, Some(DEFAULT_MAX_OUTPUT))
}

/// The plugin output within `max_output` bytes (`None`: no cap). Half of
/// it at most goes to perfdata; the long output keeps the non-OK VMs first.
pub fn render_nagios_capped(report: &Report, max_output: Option<usize>) -> Rendered {
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
    if let Some(fatal) = fatal {
        let state = ServiceState::Unknown;
        return Rendered {
            text: format!(
                "VMNETPROBE {state} - {}\n",
                truncate_chars(&text(fatal), FATAL_MAX_CHARS)
            ),
            exit_code: state.code(),
        };
    }
    let max_output = max_output.unwrap_or(usize::MAX);
    let state = report.state();
    let (perfdata, perf_vms) = perfdata(report, thresholds, *duration_ms, max_output / 2);
    let first = format!("VMNETPROBE {state} - {} | {perfdata}", summary(report));
    let mut notes = Vec::new();
    if let Some(age_ms) = age_ms {
        notes.push(format!(
            "(shared result: probed {} s ago, within --min-interval)",
            fixed_decimal(age_ms / 1000.0, 1).unwrap_or_else(|| "?".to_string())
        ));
    }
    if perf_vms < vms.len() {
        notes.push(format!(
            "(RTT perfdata for {perf_vms} of {} VMs: output limit, see --max-output)",
            vms.len()
        ));
    }
    let notes_bytes: usize = notes.iter().map(|n| n.len() + 1).sum();
    let budget = max_output.saturating_sub(first.len() + 1 + notes_bytes);
    let mut lines = vec![first];
    lines.extend(long_output(vms, budget));
    lines.extend(notes);
    let mut text = lines.join("\n");
    text.push('\n');
    Rendered {
        text,
        exit_code: state.code(),
    }
}

/// Plugin text: one line, no `|` (which would start perfdata).
fn text(raw: &str) -> String {
    flatten(raw).replace('|', "/")
}

/// `web01: <reason>`, or `3 VMs: 1 CRITICAL, 2 OK; web01: <reason>`.
fn summary(report: &Report) -> String {
    let worst = worst_first(&report.vms);
    let line = match worst.as_slice() {
        [] => text(&no_vms_text(report)),
        [vm] => format!("{}: {}", text(&vm.name), text(&vm.verdict.reason)),
        [vm, ..] => {
            let mut line = format!("{} VMs: {}", report.vms.len(), counts_text(report));
            if vm.verdict.state != ServiceState::Ok {
                line.push_str(&format!(
                    "; {}: {}",
                    text(&vm.name),
                    text(&vm.verdict.reason)
                ));
            }
            line
        }
    };
    truncate_chars(&line, SUMMARY_MAX_CHARS)
}

/// The perfdata within `budget` bytes and how many VMs got their RTT
/// entries (by name; a VM that does not fit is left out, the next ones
/// still get theirs).
fn perfdata(
    report: &Report,
    thresholds: &Thresholds,
    duration_ms: f64,
    budget: usize,
) -> (String, usize) {
    let Thresholds { warning, critical } = thresholds;
    let warn = warning.as_ref().map_or("", |r| r.as_str());
    let crit = critical.as_ref().map_or("", |r| r.as_str());
    let counts = report.counts();
    let mut entries = vec![
        format!("vms={};;;0", report.vms.len()),
        format!("vms_ok={};;;0", counts.ok),
        format!("vms_warning={};;;0", counts.warning),
        format!("vms_critical={};;;0", counts.critical),
        format!("vms_unknown={};;;0", counts.unknown),
    ];
    if let Some(ms) = fixed_decimal(duration_ms, 3) {
        entries.push(format!("duration={ms}ms;;;0;"));
    }
    let mut bytes: usize = entries.iter().map(|e| e.len() + 1).sum();
    let mut included = 0;
    for vm in &report.vms {
        let vm_entries = vm_perfdata(vm, warn, crit);
        let vm_bytes: usize = vm_entries.iter().map(|e| e.len() + 1).sum();
        if bytes + vm_bytes > budget {
            continue;
        }
        bytes += vm_bytes;
        entries.extend(vm_entries);
        included += 1;
    }
    (entries.join(" "), included)
}

/// `web01.52:54:00:aa:bb:01.gw_rtt=0.41ms;100;500;0;` per NIC (by MAC)
/// and `web01.ext_rtt=...` when the external check applies; `U` when
/// there is no RTT. The label set depends only on host-side facts (VM name,
/// MACs, whether the external check applies), so a series never vanishes
/// while a guest is down.
fn vm_perfdata(vm: &VmReport, warn: &str, crit: &str) -> Vec<String> {
    let vm_part = label_vm_part(&vm.name);
    let nic_entries = vm.nics.iter().map(|nic| {
        rtt_entry(
            &format!("{vm_part}.{}.gw_rtt", label_mac(&nic.mac)),
            nic.rtt_ms,
            warn,
            crit,
        )
    });
    let external = vm
        .external
        .as_ref()
        .map(|target| rtt_entry(&format!("{vm_part}.ext_rtt"), target.rtt_ms, warn, crit));
    nic_entries.chain(external).collect()
}

/// `U` is the plugin API's "unknown" and takes no unit. The label has no
/// blank or quote, so it goes unquoted (Icinga 2 drops needless quotes).
fn rtt_entry(label: &str, rtt_ms: Option<f64>, warn: &str, crit: &str) -> String {
    let value = rtt_ms
        .and_then(|ms| fixed_decimal(ms, 3))
        .map_or_else(|| "U".to_string(), |ms| format!("{ms}ms"));
    format!("{label}={value};{warn};{crit};0;")
}

/// Characters a VM name keeps in a perfdata label; `~` is not among them,
/// so a changed name (see [`label_vm_part`]) never equals a kept one.
fn label_char_kept(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '+')
}

/// The VM name as a label part: kept as it is when it has only letters,
/// digits and `_-.:@+` and at most 40 characters; otherwise every other
/// character becomes `_`, and `~` and 8 hex digits of a hash of the full
/// name make it unique again (`web 01` → `web_01~1a2b3c4d`).
fn label_vm_part(name: &str) -> String {
    if name.chars().all(label_char_kept) && name.chars().count() <= LABEL_VM_MAX_CHARS {
        return name.to_string();
    }
    let cleaned: String = name
        .chars()
        .map(|c| if label_char_kept(c) { c } else { '_' })
        .collect();
    with_hash(&cleaned, name, LABEL_VM_MAX_CHARS)
}

/// A MAC as libvirt gives it is already label-safe; anything else a
/// hostile inventory might put there is not.
fn label_mac(mac: &str) -> String {
    mac.chars()
        .map(|c| if label_char_kept(c) { c } else { '_' })
        .collect()
}

/// The long output within `budget` bytes: every VM in full when it fits,
/// else the non-OK VMs in full and a count of the OK ones, else as many
/// non-OK VMs as fit and a count of the rest.
fn long_output(vms: &[VmReport], budget: usize) -> Vec<String> {
    let blocks: Vec<(ServiceState, Vec<String>)> = worst_first(vms)
        .into_iter()
        .map(|vm| (vm.verdict.state, vm_lines(vm)))
        .collect();
    let size = |lines: &[String]| lines.iter().map(|l| l.len() + 1).sum::<usize>();
    let all: Vec<String> = blocks.iter().flat_map(|(_, b)| b.iter().cloned()).collect();
    if size(&all) <= budget {
        return all;
    }
    let ok_count = blocks
        .iter()
        .filter(|(state, _)| *state == ServiceState::Ok)
        .count();
    let mut out = Vec::new();
    let mut used = 0;
    let mut shown_not_ok = 0;
    let not_ok: Vec<&Vec<String>> = blocks
        .iter()
        .filter(|(state, _)| *state != ServiceState::Ok)
        .map(|(_, b)| b)
        .collect();
    // Room kept for the closing "… and N more" line.
    let reserve = 80;
    for block in &not_ok {
        let block_size = size(block);
        if used + block_size + reserve > budget {
            break;
        }
        used += block_size;
        out.extend(block.iter().cloned());
        shown_not_ok += 1;
    }
    let hidden_not_ok = not_ok.len() - shown_not_ok;
    if hidden_not_ok == 0 {
        out.push(format!("… and {ok_count} more OK VMs"));
    } else {
        out.push(format!(
            "… and {} more VMs ({hidden_not_ok} not OK, {ok_count} OK)",
            hidden_not_ok + ok_count
        ));
    }
    out
}

/// `[CRITICAL] web01: <reason>` and its indented components.
fn vm_lines(vm: &VmReport) -> Vec<String> {
    let VmReport {
        name,
        uuid: _,
        os: _,
        verdict,
        agent,
        nics,
        external,
        duration_ms: _,
        agent_commands: _,
        agent_execs: _,
        cloud,
    } = vm;
    let Verdict {
        state,
        code: _,
        reason,
    } = verdict;
    let mut lines = vec![format!(
        "[{state}] {}{}: {}",
        text(name),
        cloud_label(cloud.as_ref()),
        text(reason)
    )];
    let AgentReport {
        verdict: agent_verdict,
        version,
        exec_enabled: _,
    } = agent;
    let agent_label = match version {
        Some(version) => format!("agent {version}"),
        None => "agent".to_string(),
    };
    lines.push(component(agent_verdict, &agent_label));
    for nic in nics {
        lines.push(nic_line(nic));
    }
    if let Some(TargetReport {
        address,
        verdict,
        rtt_ms: _,
    }) = external
    {
        lines.push(component(verdict, &format!("external {address}")));
    }
    lines
}

/// ` (web 01, project shop)` after an OpenStack instance's domain name.
fn cloud_label(cloud: Option<&CloudInstance>) -> String {
    let Some(CloudInstance { name, project }) = cloud else {
        return String::new();
    };
    match project {
        Some(project) => format!(" ({}, project {})", text(name), text(project)),
        None => format!(" ({})", text(name)),
    }
}

/// `  \_ [OK] eth0 52:54:00:aa:bb:01 192.0.2.10 gw 192.0.2.1 (external): <reason>`
fn nic_line(nic: &NicReport) -> String {
    let NicReport {
        mac,
        name,
        host_dev: _,
        network: _,
        ips,
        gateway,
        gateway_source: _,
        kind,
        verdict,
        rtt_ms: _,
    } = nic;
    let mut parts: Vec<String> = Vec::new();
    if let Some(name) = name {
        parts.push(name.clone());
    }
    parts.push(mac.clone());
    if !ips.is_empty() {
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        parts.push(ips.join(","));
    }
    if let Some(gateway) = gateway {
        parts.push(format!("gw {gateway}"));
    }
    parts.push(format!("({})", kind.as_str()));
    component(verdict, &parts.join(" "))
}

fn component(verdict: &Verdict, label: &str) -> String {
    let Verdict {
        state,
        code: _,
        reason,
    } = verdict;
    format!("  \\_ [{state}] {}: {}", text(label), text(reason))
}

#[cfg(test)]
mod tests;
