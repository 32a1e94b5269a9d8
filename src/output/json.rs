//! The JSON document shared by `status --json` and `zabbix`: the report as
//! documented in the output contract, optionally with the numeric extras
//! Zabbix JSONPath triggers want (`state_code`, `reachable`, `summary`).

use super::{exit_code_for, reachable, Rendered};
use crate::report::{
    AgentReport, CloudInstance, GatewaySource, GuestOs, NicKind, NicReport, Report, TargetReport,
    Thresholds, VmReport,
};
use crate::verdict::ServiceState;
use crate::verdict::{Code, Verdict};
use serde::Serialize;
use std::net::IpAddr;

/// Whether to add the Zabbix-only numeric fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    Status,
    Zabbix,
}

#[derive(Serialize)]
pub(super) struct Document<'a> {
    vms: Vec<Vm<'a>>,
    external_target: Option<IpAddr>,
    timestamp_ns: u64,
    duration_ms: f64,
    /// True when the result was shared from an earlier probe (`--min-interval`).
    cached: bool,
    /// How old the result is: 0 when probed for this caller.
    age_ms: f64,
    error: Option<&'a str>,
    /// Why `vms` is empty, when there is more to say than "no running VMs".
    #[serde(skip_serializing_if = "Option::is_none")]
    no_vms_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

#[derive(Serialize)]
struct Summary {
    vms: usize,
    ok: usize,
    warning: usize,
    critical: usize,
    unknown: usize,
    duration_ms: f64,
}

#[derive(Serialize)]
struct Vm<'a> {
    /// Zabbix only: the key of the VM's items, its UUID, else `name:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: &'a str,
    uuid: Option<&'a str>,
    os: GuestOs,
    state: ServiceState,
    code: Code,
    reason: &'a str,
    #[serde(flatten)]
    zabbix: Option<StateCode>,
    agent: Agent<'a>,
    nics: Vec<Nic<'a>>,
    external: Option<Target<'a>>,
    duration_ms: f64,
    /// OpenStack's instance name and project, when Nova manages the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<&'a CloudInstance>,
}

#[derive(Serialize)]
struct Agent<'a> {
    state: ServiceState,
    code: Code,
    reason: &'a str,
    #[serde(flatten)]
    zabbix: Option<StateCode>,
    version: Option<&'a str>,
    exec_enabled: Option<bool>,
}

#[derive(Serialize)]
struct Nic<'a> {
    mac: &'a str,
    name: Option<&'a str>,
    host_dev: Option<&'a str>,
    network: Option<&'a str>,
    ips: &'a [IpAddr],
    gateway: Option<IpAddr>,
    gateway_source: Option<GatewaySource>,
    #[serde(rename = "type")]
    kind: NicKind,
    state: ServiceState,
    code: Code,
    reason: &'a str,
    #[serde(flatten)]
    zabbix: Option<Reachability>,
    rtt_ms: Option<f64>,
}

#[derive(Serialize)]
struct Target<'a> {
    address: IpAddr,
    state: ServiceState,
    code: Code,
    reason: &'a str,
    #[serde(flatten)]
    zabbix: Option<Reachability>,
    rtt_ms: Option<f64>,
}

#[derive(Serialize)]
struct StateCode {
    state_code: u8,
}

#[derive(Serialize)]
struct Reachability {
    state_code: u8,
    /// 1 answered, 0 unreachable, null not pinged.
    reachable: Option<u8>,
}

pub(super) fn document(report: &Report, flavor: Flavor) -> Document<'_> {
    let Report {
        vms,
        external_target,
        thresholds,
        fatal,
        timestamp_ns,
        duration_ms,
        age_ms,
        no_vms_reason,
    } = report;
    // Thresholds are configuration, not results; they are not part of the
    // documented document.
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    let zabbix = flavor == Flavor::Zabbix;
    let summary = zabbix.then(|| {
        let counts = report.counts();
        Summary {
            vms: vms.len(),
            ok: counts.ok,
            warning: counts.warning,
            critical: counts.critical,
            unknown: counts.unknown,
            duration_ms: ms(*duration_ms),
        }
    });
    Document {
        vms: vms.iter().map(|vm| vm_json(vm, zabbix)).collect(),
        external_target: *external_target,
        timestamp_ns: *timestamp_ns,
        duration_ms: ms(*duration_ms),
        cached: age_ms.is_some(),
        age_ms: ms(age_ms.unwrap_or(0.0)),
        error: fatal.as_deref(),
        no_vms_reason: no_vms_reason.as_deref(),
        summary,
    }
}

/// Milliseconds rounded to microseconds, so serde_json never writes an
/// exponent (`1e-7`) that a JSONPath consumer might not take as a number.
/// NaN and infinities stay as they are and serde_json writes them as `null`.
fn ms(value: f64) -> f64 {
    if value.is_finite() {
        (value * 1000.0).round() / 1000.0
    } else {
        value
    }
}

fn state_code(zabbix: bool, state: ServiceState) -> Option<StateCode> {
    zabbix.then(|| StateCode {
        state_code: state.code(),
    })
}

fn reachability(zabbix: bool, verdict: &Verdict, rtt_ms: Option<f64>) -> Option<Reachability> {
    zabbix.then(|| Reachability {
        state_code: verdict.state.code(),
        reachable: reachable(verdict, rtt_ms).map(u8::from),
    })
}

/// The key of a VM's Zabbix items: its libvirt UUID (lowercase), which
/// survives renames and has no character an item key or a JSONPath filter
/// must escape; without one (agent sockets) its name, marked as such.
pub(super) fn vm_id(name: &str, uuid: Option<&str>) -> String {
    match uuid {
        Some(uuid) if !uuid.is_empty() => uuid.to_ascii_lowercase(),
        _ => format!("name:{name}"),
    }
}

fn vm_json(vm: &VmReport, zabbix: bool) -> Vm<'_> {
    let VmReport {
        name,
        uuid,
        os,
        verdict,
        agent,
        nics,
        external,
        duration_ms,
        agent_commands: _,
        agent_execs: _,
        cloud,
    } = vm;
    let Verdict {
        state,
        code,
        reason,
    } = verdict;
    Vm {
        id: zabbix.then(|| vm_id(name, uuid.as_deref())),
        name,
        uuid: uuid.as_deref(),
        os: *os,
        state: *state,
        code: *code,
        reason,
        zabbix: state_code(zabbix, *state),
        agent: agent_json(agent, zabbix),
        nics: nics.iter().map(|nic| nic_json(nic, zabbix)).collect(),
        external: external.as_ref().map(|t| target_json(t, zabbix)),
        duration_ms: ms(*duration_ms),
        cloud: cloud.as_ref(),
    }
}

fn agent_json(agent: &AgentReport, zabbix: bool) -> Agent<'_> {
    let AgentReport {
        verdict,
        version,
        exec_enabled,
    } = agent;
    let Verdict {
        state,
        code,
        reason,
    } = verdict;
    Agent {
        state: *state,
        code: *code,
        reason,
        zabbix: state_code(zabbix, *state),
        version: version.as_deref(),
        exec_enabled: *exec_enabled,
    }
}

fn nic_json(nic: &NicReport, zabbix: bool) -> Nic<'_> {
    let NicReport {
        mac,
        name,
        host_dev,
        network,
        ips,
        gateway,
        gateway_source,
        kind,
        verdict,
        rtt_ms,
    } = nic;
    let Verdict {
        state,
        code,
        reason,
    } = verdict;
    Nic {
        mac,
        name: name.as_deref(),
        host_dev: host_dev.as_deref(),
        network: network.as_deref(),
        ips,
        gateway: *gateway,
        gateway_source: *gateway_source,
        kind: *kind,
        state: *state,
        code: *code,
        reason,
        zabbix: reachability(zabbix, verdict, *rtt_ms),
        rtt_ms: rtt_ms.map(ms),
    }
}

fn target_json(target: &TargetReport, zabbix: bool) -> Target<'_> {
    let TargetReport {
        address,
        verdict,
        rtt_ms,
    } = target;
    let Verdict {
        state,
        code,
        reason,
    } = verdict;
    Target {
        address: *address,
        state: *state,
        code: *code,
        reason,
        zabbix: reachability(zabbix, verdict, *rtt_ms),
        rtt_ms: rtt_ms.map(ms),
    }
}

/// `value` as one JSON document and a newline (pretty for people), with the
/// run's exit code.
pub(super) fn rendered<T: Serialize>(report: &Report, value: &T, pretty: bool) -> Rendered {
    let json = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    let text = match json {
        Ok(json) => json + "\n",
        // Plain structs of strings and numbers cannot fail to serialize;
        // stay valid JSON regardless.
        Err(error) => serde_json::json!({ "error": error.to_string() }).to_string() + "\n",
    };
    Rendered {
        text,
        exit_code: exit_code_for(report),
    }
}

#[cfg(test)]
mod tests {
    use super::ms;

    #[test]
    fn milliseconds_never_need_an_exponent() {
        for (value, text) in [
            (1e-7, "0.0"),
            (0.0004, "0.0"),
            (0.4125, "0.413"),
            (12.3, "12.3"),
            (1012.0, "1012.0"),
        ] {
            assert_eq!(serde_json::to_string(&ms(value)).expect("json"), text);
        }
        assert_eq!(serde_json::to_string(&ms(f64::NAN)).expect("json"), "null");
    }
}
