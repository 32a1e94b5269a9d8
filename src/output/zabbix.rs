//! Zabbix: low-level discovery arrays (`{#VM.*}`, `{#NIC.*}` macros) and
//! the master-item document (the status document plus numeric fields for
//! JSONPath preprocessing and triggers). All JSON goes through serde_json.

use super::json::{self, document, vm_id, Flavor};
use super::Rendered;
use crate::report::{AgentReport, NicReport, Report, Thresholds, VmReport};
use serde::Serialize;

#[derive(Serialize)]
struct VmRow<'a> {
    #[serde(rename = "{#VM.ID}")]
    id: String,
    #[serde(rename = "{#VM.NAME}")]
    name: &'a str,
    #[serde(rename = "{#VM.UUID}")]
    uuid: &'a str,
    #[serde(rename = "{#VM.OS}")]
    os: &'a str,
    /// OpenStack's instance name and project; empty without Nova.
    #[serde(rename = "{#VM.INSTANCE}")]
    instance: &'a str,
    #[serde(rename = "{#VM.PROJECT}")]
    project: &'a str,
}

#[derive(Serialize)]
struct NicRow<'a> {
    #[serde(rename = "{#VM.ID}")]
    vm_id: String,
    #[serde(rename = "{#VM.NAME}")]
    vm_name: &'a str,
    #[serde(rename = "{#VM.UUID}")]
    vm_uuid: &'a str,
    #[serde(rename = "{#NIC.MAC}")]
    mac: &'a str,
    #[serde(rename = "{#NIC.NAME}")]
    name: &'a str,
    #[serde(rename = "{#NIC.IP}")]
    ip: String,
    #[serde(rename = "{#NIC.GATEWAY}")]
    gateway: String,
    #[serde(rename = "{#NIC.TYPE}")]
    kind: &'a str,
    #[serde(rename = "{#NIC.NETWORK}")]
    network: &'a str,
}

/// A failed run must not look like "all VMs are gone" (Zabbix would start
/// deleting discovered items): an object without `data` makes the LLD rule
/// fail visibly with the message instead.
#[derive(Serialize)]
struct DiscoveryError<'a> {
    error: &'a str,
}

/// `discover vms`: `[{"{#VM.ID}":..,"{#VM.NAME}":..,"{#VM.UUID}":..,"{#VM.OS}":..}]`.
pub fn render_discovery_vms(report: &Report) -> Rendered {
    let Report {
        vms,
        external_target: _,
        thresholds,
        fatal,
        timestamp_ns: _,
        duration_ms: _,
        age_ms: _,
        no_vms_reason: _,
    } = report;
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    if let Some(fatal) = fatal {
        return discovery_error(report, fatal);
    }
    let rows: Vec<VmRow<'_>> = vms
        .iter()
        .map(|vm| {
            let VmReport {
                name,
                uuid,
                os,
                verdict: _,
                agent: _,
                nics: _,
                external: _,
                duration_ms: _,
                agent_commands: _,
                agent_execs: _,
                cloud,
            } = vm;
            VmRow {
                id: vm_id(name, uuid.as_deref()),
                name,
                uuid: uuid.as_deref().unwrap_or(""),
                os: os.as_str(),
                instance: cloud.as_ref().map_or("", |c| c.name.as_str()),
                project: cloud
                    .as_ref()
                    .and_then(|c| c.project.as_deref())
                    .unwrap_or(""),
            }
        })
        .collect();
    to_json(report, &rows)
}

/// `discover nics`: one row per VM × NIC.
pub fn render_discovery_nics(report: &Report) -> Rendered {
    let Report {
        vms,
        external_target: _,
        thresholds,
        fatal,
        timestamp_ns: _,
        duration_ms: _,
        age_ms: _,
        no_vms_reason: _,
    } = report;
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    if let Some(fatal) = fatal {
        return discovery_error(report, fatal);
    }
    let mut rows: Vec<NicRow<'_>> = Vec::new();
    for vm in vms.iter() {
        let VmReport {
            name: vm_name,
            uuid,
            os: _,
            verdict: _,
            agent,
            nics,
            external: _,
            duration_ms: _,
            agent_commands: _,
            agent_execs: _,
            cloud: _,
        } = vm;
        let AgentReport {
            verdict: _,
            version: _,
            exec_enabled: _,
        } = agent;
        for nic in nics {
            let NicReport {
                mac,
                name,
                host_dev: _,
                network,
                ips,
                gateway,
                gateway_source: _,
                kind,
                verdict: _,
                rtt_ms: _,
            } = nic;
            rows.push(NicRow {
                vm_id: vm_id(vm_name, uuid.as_deref()),
                vm_name,
                vm_uuid: uuid.as_deref().unwrap_or(""),
                mac,
                name: name.as_deref().unwrap_or(""),
                ip: ips.first().map(|ip| ip.to_string()).unwrap_or_default(),
                gateway: gateway.map(|gw| gw.to_string()).unwrap_or_default(),
                kind: kind.as_str(),
                network: network.as_deref().unwrap_or(""),
            });
        }
    }
    to_json(report, &rows)
}

/// `zabbix`: the master item, one JSON document with every value.
pub fn render_zabbix(report: &Report) -> Rendered {
    to_json(report, &document(report, Flavor::Zabbix))
}

fn discovery_error(report: &Report, fatal: &str) -> Rendered {
    to_json(report, &DiscoveryError { error: fatal })
}

fn to_json<T: Serialize>(report: &Report, value: &T) -> Rendered {
    json::rendered(report, value, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{fixture, GuestOs};
    use crate::verdict::Code;

    fn report() -> Report {
        let mut vm = fixture::vm("web 01, \"x\"=ü\\", fixture::ok(Code::Ok, "up"));
        vm.verdict = fixture::ok(Code::Ok, "fine");
        vm.os = GuestOs::Windows;
        vm.agent.version = None;
        let mut nic = fixture::nic(
            "52:54:00:00:00:02",
            fixture::ok(Code::NoGateway, "no gateway known"),
        );
        nic.name = None;
        vm.nics.push(nic);
        let mut report = fixture::report(vec![vm]);
        report.duration_ms = 2.0;
        report
    }

    #[test]
    fn discovery_rows_use_empty_strings_not_null() {
        let vms: serde_json::Value =
            serde_json::from_str(&render_discovery_vms(&report()).text).expect("json");
        assert_eq!(
            vms,
            serde_json::json!([{"{#VM.ID}": "name:web 01, \"x\"=ü\\", "{#VM.NAME}": "web 01, \"x\"=ü\\", "{#VM.UUID}": "", "{#VM.OS}": "windows", "{#VM.INSTANCE}": "", "{#VM.PROJECT}": ""}])
        );
        let nics: serde_json::Value =
            serde_json::from_str(&render_discovery_nics(&report()).text).expect("json");
        assert_eq!(
            nics,
            serde_json::json!([{
                "{#VM.ID}": "name:web 01, \"x\"=ü\\",
                "{#VM.NAME}": "web 01, \"x\"=ü\\", "{#VM.UUID}": "",
                "{#NIC.MAC}": "52:54:00:00:00:02", "{#NIC.NAME}": "", "{#NIC.IP}": "",
                "{#NIC.GATEWAY}": "", "{#NIC.TYPE}": "internal", "{#NIC.NETWORK}": ""
            }])
        );
    }

    #[test]
    fn master_document_has_numeric_fields() {
        let doc: serde_json::Value =
            serde_json::from_str(&render_zabbix(&report()).text).expect("json");
        assert_eq!(doc["summary"]["vms"], 1);
        assert_eq!(doc["summary"]["ok"], 1);
        assert_eq!(doc["vms"][0]["state_code"], 0);
        assert_eq!(doc["vms"][0]["id"], "name:web 01, \"x\"=ü\\");
        let mut with_uuid = report();
        with_uuid.vms[0].uuid = Some("6695EB01-F6A4-8304-79AA-97F2502E193F".into());
        let doc: serde_json::Value =
            serde_json::from_str(&render_zabbix(&with_uuid).text).expect("json");
        assert_eq!(doc["vms"][0]["id"], "6695eb01-f6a4-8304-79aa-97f2502e193f");
        assert_eq!(doc["vms"][0]["agent"]["state_code"], 0);
        assert_eq!(doc["vms"][0]["nics"][0]["state_code"], 0);
        assert!(doc["vms"][0]["nics"][0]["reachable"].is_null());
        assert!(doc["error"].is_null());
    }

    #[test]
    fn fatal_is_an_error_not_an_empty_discovery() {
        let mut r = report();
        r.vms.clear();
        r.fatal = Some("libvirt: permission denied".to_string());
        let out = render_discovery_vms(&r);
        assert_eq!(out.text, "{\"error\":\"libvirt: permission denied\"}\n");
        assert_eq!(out.exit_code, 3);
        let doc: serde_json::Value = serde_json::from_str(&render_zabbix(&r).text).expect("json");
        assert_eq!(doc["error"], "libvirt: permission denied");
        assert_eq!(render_zabbix(&r).exit_code, 3);
    }
}
