//! Prometheus text exposition format 0.0.4, for `vmnetprobe serve` and
//! node_exporter's textfile collector.
//!
//! Design (Prometheus naming conventions): base units (`_seconds`), 0/1
//! gauges for "reachable" and "up", `_info` gauges (value 1) for metadata,
//! and every state as a numeric gauge with the plugin codes (0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN) plus the stable machine `code` as a
//! label: one series per check, alerts compare numbers (`== 2`). Series
//! are keyed by what the host knows (`vm`, `uuid`, `mac`, `type`,
//! `network`); what the guest reports (its interface name, OS, agent
//! version) is only in the `_info` gauges, so a guest whose agent is down
//! or that renames an interface never splits a series. The free-text
//! reason is never a label (unbounded cardinality). Samples carry
//! no timestamp: Prometheus stamps the scrape, and node_exporter rejects
//! timestamps in textfiles. A value that is unknown is left out, never
//! written as NaN.

use super::{agent_up, exit_code_for, reachable, Rendered};
use crate::report::{
    AgentReport, NicReport, Report, StateCounts, TargetReport, Thresholds, VmReport,
};
use crate::text::flatten;
use crate::verdict::{ServiceState, Verdict};
use std::fmt::Write as _;

use super::exposition::Family;

fn state_value(state: ServiceState) -> u64 {
    u64::from(state.code())
}

fn seconds(ms: Option<f64>) -> Option<f64> {
    ms.map(|ms| ms / 1000.0)
}

/// Every family of one report, in a fixed order.
struct Families {
    up: Family,
    duration: Family,
    timestamp: Family,
    age: Family,
    vms: Family,
    vm_info: Family,
    vm_state: Family,
    vm_duration: Family,
    vm_commands: Family,
    vm_execs: Family,
    agent_up: Family,
    agent_exec: Family,
    nic_info: Family,
    nic_state: Family,
    nic_reachable: Family,
    nic_rtt: Family,
    ext_state: Family,
    ext_reachable: Family,
    ext_rtt: Family,
}

impl Families {
    fn new() -> Families {
        Families {
            up: Family::gauge(
                "vmnetprobe_up",
                "1 when the run could list the VMs, 0 when it failed (the reason is in a # vmnetprobe error: comment).",
            ),
            duration: Family::gauge(
                "vmnetprobe_probe_duration_seconds",
                "Wall time of the whole probe run.",
            ),
            timestamp: Family::gauge(
                "vmnetprobe_probe_timestamp_seconds",
                "When the probe run started, Unix time.",
            ),
            age: Family::gauge(
                "vmnetprobe_result_age_seconds",
                "0 when probed for this request, else the age of the result shared under --min-interval.",
            ),
            vms: Family::gauge("vmnetprobe_vms", "VMs probed, by state."),
            vm_info: Family::gauge(
                "vmnetprobe_vm_info",
                "Always 1: metadata of a probed VM.",
            ),
            vm_state: Family::gauge(
                "vmnetprobe_vm_state",
                "Overall state of the VM: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; code is the stable reason code.",
            ),
            vm_duration: Family::gauge(
                "vmnetprobe_vm_probe_duration_seconds",
                "Time spent probing this VM.",
            ),
            vm_commands: Family::gauge(
                "vmnetprobe_vm_agent_commands",
                "Guest agent commands sent to this VM in the run.",
            ),
            vm_execs: Family::gauge(
                "vmnetprobe_vm_agent_execs",
                "Programs started in this VM (guest-exec) in the run.",
            ),
            agent_up: Family::gauge(
                "vmnetprobe_agent_up",
                "1 when the VM's guest agent answered, else 0.",
            ),
            agent_exec: Family::gauge(
                "vmnetprobe_agent_exec_enabled",
                "1 when guest-exec is available in the guest agent, 0 when disabled or missing.",
            ),
            nic_info: Family::gauge(
                "vmnetprobe_nic_info",
                "Always 1: a NIC of a probed VM, with the guest's name for it and its gateway.",
            ),
            nic_state: Family::gauge(
                "vmnetprobe_nic_state",
                "State of the NIC's gateway check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            ),
            nic_reachable: Family::gauge(
                "vmnetprobe_nic_gateway_reachable",
                "1 when the gateway answered the ping from inside the guest, 0 when not; absent when not pinged.",
            ),
            nic_rtt: Family::gauge(
                "vmnetprobe_nic_gateway_rtt_seconds",
                "Round-trip time of the gateway ping from inside the guest.",
            ),
            ext_state: Family::gauge(
                "vmnetprobe_external_state",
                "State of the external check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            ),
            ext_reachable: Family::gauge(
                "vmnetprobe_external_reachable",
                "1 when the external address answered the ping from inside the guest, 0 when not; absent when not pinged.",
            ),
            ext_rtt: Family::gauge(
                "vmnetprobe_external_rtt_seconds",
                "Round-trip time of the external ping from inside the guest.",
            ),
        }
    }

    fn all(&self) -> [&Family; 19] {
        [
            &self.up,
            &self.duration,
            &self.timestamp,
            &self.age,
            &self.vms,
            &self.vm_info,
            &self.vm_state,
            &self.vm_duration,
            &self.vm_commands,
            &self.vm_execs,
            &self.agent_up,
            &self.agent_exec,
            &self.nic_info,
            &self.nic_state,
            &self.nic_reachable,
            &self.nic_rtt,
            &self.ext_state,
            &self.ext_reachable,
            &self.ext_rtt,
        ]
    }

    fn add_vm(&mut self, vm: &VmReport) {
        let VmReport {
            name,
            uuid,
            os,
            verdict,
            agent,
            nics,
            external,
            duration_ms,
            agent_commands,
            agent_execs,
            cloud: _,
        } = vm;
        let Verdict {
            state,
            code,
            reason: _,
        } = verdict;
        let AgentReport {
            verdict: agent_verdict,
            version,
            exec_enabled,
        } = agent;
        let uuid = uuid.as_deref().unwrap_or("");
        let id = [("vm", name.as_str()), ("uuid", uuid)];
        self.vm_info.add(
            &[
                id[0],
                id[1],
                ("os", os.as_str()),
                ("agent_version", version.as_deref().unwrap_or("")),
            ],
            1,
        );
        self.vm_state.add(
            &[id[0], id[1], ("code", code.as_str())],
            state_value(*state),
        );
        self.vm_duration.add(&id, seconds(Some(*duration_ms)));
        self.vm_commands.add(&id, u64::from(*agent_commands));
        self.vm_execs.add(&id, u64::from(*agent_execs));
        self.agent_up.add(&id, Some(agent_up(agent_verdict)));
        self.agent_exec.add(&id, *exec_enabled);
        for nic in nics {
            let NicReport {
                mac,
                name: nic_name,
                host_dev: _,
                network,
                ips: _,
                gateway,
                gateway_source: _,
                kind,
                verdict,
                rtt_ms,
            } = nic;
            let labels = [
                id[0],
                id[1],
                ("mac", mac.as_str()),
                ("type", kind.as_str()),
                ("network", network.as_deref().unwrap_or("")),
            ];
            let gateway = gateway.map(|g| g.to_string()).unwrap_or_default();
            let mut info = labels.to_vec();
            info.push(("nic", nic_name.as_deref().unwrap_or("")));
            info.push(("gateway", &gateway));
            self.nic_info.add(&info, 1);
            let mut state = labels.to_vec();
            state.push(("code", verdict.code.as_str()));
            self.nic_state.add(&state, state_value(verdict.state));
            self.nic_reachable.add(&labels, reachable(verdict, *rtt_ms));
            self.nic_rtt.add(&labels, seconds(*rtt_ms));
        }
        if let Some(TargetReport {
            address,
            verdict,
            rtt_ms,
        }) = external
        {
            let target = address.to_string();
            let labels = [id[0], id[1], ("target", target.as_str())];
            self.ext_state.add(
                &[
                    labels[0],
                    labels[1],
                    labels[2],
                    ("code", verdict.code.as_str()),
                ],
                state_value(verdict.state),
            );
            self.ext_reachable.add(&labels, reachable(verdict, *rtt_ms));
            self.ext_rtt.add(&labels, seconds(*rtt_ms));
        }
    }
}

/// The whole report as one exposition. Exit code as the other non-Nagios
/// formats: 0, or 3 when the run failed (the text still says so with
/// `vmnetprobe_up 0`).
pub fn render_prometheus(report: &Report) -> Rendered {
    let Report {
        vms,
        external_target: _,
        thresholds,
        fatal,
        timestamp_ns,
        duration_ms,
        age_ms,
        // vms=0 says it; the reason is for the status line.
        no_vms_reason: _,
    } = report;
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    let mut families = Families::new();
    families.up.add(&[], Some(fatal.is_none()));
    families.duration.add(&[], seconds(Some(*duration_ms)));
    families
        .timestamp
        .add(&[], Some(*timestamp_ns as f64 / 1e9));
    families.age.add(&[], seconds(Some(age_ms.unwrap_or(0.0))));
    let StateCounts {
        ok,
        warning,
        critical,
        unknown,
    } = report.counts();
    for (state, n) in [
        (ServiceState::Ok, ok),
        (ServiceState::Warning, warning),
        (ServiceState::Critical, critical),
        (ServiceState::Unknown, unknown),
    ] {
        families
            .vms
            .add(&[("state", &state.as_str().to_lowercase())], n as u64);
    }
    for vm in vms {
        families.add_vm(vm);
    }
    let mut text = String::new();
    if let Some(fatal) = fatal {
        // A comment: ignored by every parser, read by whoever looks at
        // /metrics or the textfile to see why vmnetprobe_up is 0.
        let _ = writeln!(text, "# vmnetprobe error: {}", flatten(fatal));
    }
    for family in families.all() {
        family.write(&mut text);
    }
    Rendered {
        text,
        exit_code: exit_code_for(report),
    }
}

/// Counters a long-running `vmnetprobe serve` keeps across scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeCounters {
    /// `/metrics` requests answered.
    pub scrapes: u64,
    /// Probe runs that failed (could not list the VMs).
    pub probe_errors: u64,
    /// Requests refused: malformed, too large, too slow, too many at once.
    pub rejected: u64,
}

/// The server's own counters, appended to a scrape's exposition.
pub fn render_serve_counters(counters: &ServeCounters) -> String {
    let ServeCounters {
        scrapes,
        probe_errors,
        rejected,
    } = counters;
    let mut out = String::new();
    for (name, help, value) in [
        (
            "vmnetprobe_scrapes_total",
            "/metrics requests answered by vmnetprobe serve.",
            *scrapes,
        ),
        (
            "vmnetprobe_probe_errors_total",
            "Probe runs that failed (could not list the VMs) since vmnetprobe serve started.",
            *probe_errors,
        ),
        (
            "vmnetprobe_http_rejected_total",
            "HTTP requests refused: malformed, too large, too slow or too many at once.",
            *rejected,
        ),
    ] {
        let mut family = Family::counter(name, help);
        family.add(&[], value);
        family.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests;
