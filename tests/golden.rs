//! Golden files: one fixture report rendered in every output format, plus a
//! failed run. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them.

mod common;

use common::line_protocol::{parse, Field};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use vmnetprobe::output::{
    render_discovery_nics, render_discovery_vms, render_nagios, render_prometheus,
    render_status_json, render_status_table, render_telegraf, render_zabbix, Rendered,
};
use vmnetprobe::report::{
    AgentReport, CloudInstance, GatewaySource, GuestOs, NicKind, NicReport, Report, TargetReport,
    Thresholds, VmReport,
};
use vmnetprobe::verdict::policy::{Finding, PingTarget, Policy};
use vmnetprobe::verdict::summary::summarize;
use vmnetprobe::verdict::Verdict;

const TIMESTAMP_NS: u64 = 1_795_636_800_000_000_000;
const EXTERNAL: &str = "198.51.100.1";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("fixture IP")
}

/// The policy of the fixture's run (`-w 100 -c 500`): every verdict in the
/// fixture is the policy's own judgement of a finding, and every VM's the
/// summary of its parts, so the golden files cannot drift from what the
/// probe reports.
fn policy() -> Policy {
    Policy {
        rtt_warning: Some("100".parse().expect("range")),
        rtt_critical: Some("500".parse().expect("range")),
        ..Policy::default()
    }
}

fn judge(finding: Finding) -> Verdict {
    policy().verdict(&finding)
}

fn gw() -> PingTarget {
    PingTarget::Gateway(ip("192.0.2.1"))
}

fn ext() -> PingTarget {
    PingTarget::External(ip(EXTERNAL))
}

fn agent(version: &str, exec_enabled: bool) -> AgentReport {
    AgentReport {
        verdict: judge(Finding::AgentUp(version.to_string())),
        version: (!version.is_empty()).then(|| version.to_string()),
        exec_enabled: Some(exec_enabled),
    }
}

#[allow(clippy::too_many_arguments)]
fn nic(
    mac: &str,
    name: &str,
    dev: &str,
    network: &str,
    ips: &[&str],
    gateway: Option<&str>,
    kind: NicKind,
    finding: Finding,
) -> NicReport {
    NicReport {
        mac: mac.to_string(),
        name: Some(name.to_string()),
        host_dev: Some(dev.to_string()),
        network: Some(network.to_string()),
        ips: ips.iter().map(|a| ip(a)).collect(),
        gateway: gateway.map(ip),
        gateway_source: gateway.map(|_| GatewaySource::LibvirtNetwork),
        kind,
        rtt_ms: finding.rtt_ms(),
        verdict: judge(finding),
    }
}

fn external(finding: Finding) -> TargetReport {
    TargetReport {
        address: ip(EXTERNAL),
        rtt_ms: finding.rtt_ms(),
        verdict: judge(finding),
    }
}

#[allow(clippy::too_many_arguments)]
fn vm(
    name: &str,
    uuid: Option<&str>,
    os: GuestOs,
    agent: AgentReport,
    nics: Vec<NicReport>,
    external: TargetReport,
    duration_ms: f64,
    (agent_commands, agent_execs): (u32, u32),
) -> VmReport {
    VmReport {
        name: name.to_string(),
        uuid: uuid.map(String::from),
        os,
        verdict: summarize(&agent.verdict, &nics, Some(&external)),
        agent,
        nics,
        external: Some(external),
        duration_ms,
        agent_commands,
        agent_execs,
        cloud: None,
    }
}

/// Five VMs (sorted by name, as the probe delivers them): OK with an
/// internal NIC without gateway, WARNING (RTT), a nasty name, CRITICAL
/// (gateway down), and a Windows VM with guest-exec disabled.
fn fixture() -> Report {
    let mut app01 = vm(
        "app01",
        Some("6695eb01-f6a4-8304-79aa-97f2502e193f"),
        GuestOs::Linux,
        agent("7.2.22", true),
        vec![
            nic(
                "52:54:00:aa:bb:01",
                "eth0",
                "vnet0",
                "default",
                &["192.0.2.10", "2001:db8::10"],
                Some("192.0.2.1"),
                NicKind::External,
                Finding::Reachable(gw(), Some(0.412)),
            ),
            nic(
                "52:54:00:aa:bb:02",
                "eth1",
                "vnet1",
                "isolated",
                &["10.0.0.10"],
                None,
                NicKind::Internal,
                Finding::NoGateway,
            ),
        ],
        external(Finding::Reachable(ext(), Some(12.3))),
        41.5,
        (5, 3),
    );
    // An OpenStack instance: Nova's names are labels.
    app01.cloud = Some(CloudInstance {
        name: "app 01".to_string(),
        project: Some("shop".to_string()),
    });
    let db02 = vm(
        "db02",
        Some("0b6ce2a4-3e44-4c47-9c1e-2d0e5e7f0d02"),
        GuestOs::Linux,
        agent("10.0.2", true),
        vec![nic(
            "52:54:00:aa:bb:03",
            "eth0",
            "vnet2",
            "default",
            &["192.0.2.11"],
            Some("192.0.2.1"),
            NicKind::External,
            Finding::Reachable(gw(), Some(150.5)),
        )],
        external(Finding::Reachable(ext(), Some(0.0000001))),
        38.25,
        (7, 3),
    );
    let mut nasty = vm(
        "web 01, \"x\"=ü\\",
        None,
        GuestOs::Unknown,
        agent("", true),
        vec![NicReport {
            mac: "52:54:00:aa:bb:04".to_string(),
            name: None,
            host_dev: None,
            network: None,
            ips: vec![ip("192.0.2.12")],
            gateway: Some(ip("192.0.2.1")),
            gateway_source: Some(GatewaySource::User),
            kind: NicKind::Internal,
            verdict: judge(Finding::Reachable(gw(), None)),
            rtt_ms: None,
        }],
        external(Finding::Reachable(ext(), Some(1.5))),
        20.0,
        (4, 2),
    );
    nasty.agent.version = None;
    let web01 = vm(
        "web01",
        Some("9a1f3c5e-7b2d-4e6f-8a9b-0c1d2e3f4a05"),
        GuestOs::Linux,
        agent("7.2.22", true),
        vec![nic(
            "52:54:00:aa:bb:05",
            "eth0",
            "vnet3",
            "default",
            &["192.0.2.13"],
            Some("192.0.2.1"),
            NicKind::External,
            Finding::Unreachable(gw(), "destination host unreachable".into()),
        )],
        external(Finding::Unreachable(ext(), String::new())),
        1012.0,
        (9, 3),
    );
    let win01 = vm(
        "win01",
        Some("4c4c4544-0042-3510-8052-b4c04f4e3032"),
        GuestOs::Windows,
        agent("108.0.2", false),
        vec![nic(
            "52:54:00:aa:bb:06",
            "Ethernet 2",
            "vnet4",
            "default",
            &["192.0.2.14"],
            Some("192.0.2.1"),
            NicKind::External,
            Finding::ExecDisabled,
        )],
        external(Finding::ExecDisabled),
        15.75,
        (3, 0),
    );
    Report {
        vms: vec![app01, db02, nasty, web01, win01],
        external_target: Some(ip(EXTERNAL)),
        thresholds: Thresholds {
            warning: policy().rtt_warning,
            critical: policy().rtt_critical,
        },
        fatal: None,
        timestamp_ns: TIMESTAMP_NS,
        duration_ms: 1034.5,
        age_ms: None,
        no_vms_reason: None,
    }
}

fn fatal_fixture() -> Report {
    Report {
        vms: Vec::new(),
        external_target: Some(ip(EXTERNAL)),
        thresholds: Thresholds::default(),
        fatal: Some(
            "cannot connect to qemu:///system: Failed to connect socket to \
             '/var/run/libvirt/libvirt-sock': Permission denied"
                .to_string(),
        ),
        timestamp_ns: TIMESTAMP_NS,
        duration_ms: 2.5,
        age_ms: None,
        no_vms_reason: None,
    }
}

/// VMs the host speaks for, as the probe itself reports them (scripted
/// host and agents): paused by the user and on an I/O error, migrating, in
/// maintenance, and one with its filesystems frozen.
fn lifecycle_fixture() -> Report {
    use serde_json::json;
    use std::time::{Duration, Instant};
    use vmnetprobe::inventory::fake::OneShotConnector;
    use vmnetprobe::inventory::{
        ChannelState, Lifecycle, NicConfig, PauseReason, VmSettings, VmTarget,
    };
    use vmnetprobe::probe::{probe_vm, ProbeConfig};
    use vmnetprobe::qga::fake::FakeTransport;

    let target = |name: &str, mac: &str, lifecycle, transport| VmTarget {
        name: name.to_string(),
        uuid: None,
        cloud: None,
        lifecycle,
        channel: ChannelState::Connected,
        nics: vec![NicConfig {
            mac: mac.to_string(),
            host_dev: Some("vnet9".into()),
            network: Some("default".into()),
            ..NicConfig::default()
        }],
        socket: None,
        settings: Ok(VmSettings::default()),
        connector: Box::new(OneShotConnector::new(transport)),
    };
    let frozen_agent = FakeTransport::new()
        .reply(
            "guest-info",
            json!({"version": "7.2.22", "supported_commands": [
                {"name": "guest-network-get-interfaces", "enabled": false},
                {"name": "guest-exec", "enabled": false},
                {"name": "guest-exec-status", "enabled": false},
                {"name": "guest-fsfreeze-status", "enabled": true}]}),
        )
        .reply("guest-fsfreeze-status", json!("frozen"));
    let mut old01 = target(
        "old01",
        "52:54:00:00:00:04",
        Lifecycle::Running,
        FakeTransport::new(),
    );
    old01.settings = Ok(VmSettings {
        maintenance: Some("disk swap, CHG-1234".into()),
        ..VmSettings::default()
    });
    let targets = [
        target(
            "backup01",
            "52:54:00:00:00:01",
            Lifecycle::Running,
            frozen_agent,
        ),
        target(
            "db03",
            "52:54:00:00:00:02",
            Lifecycle::Paused(PauseReason::IoError),
            FakeTransport::new(),
        ),
        target(
            "mig01",
            "52:54:00:00:00:03",
            Lifecycle::Migrating,
            FakeTransport::new(),
        ),
        old01,
        target(
            "snap01",
            "52:54:00:00:00:05",
            Lifecycle::Paused(PauseReason::User),
            FakeTransport::new(),
        ),
    ];
    let cfg = ProbeConfig {
        external: Some(ip(EXTERNAL)),
        ..ProbeConfig::default()
    };
    let vms = targets
        .iter()
        .map(|t| {
            let mut vm = probe_vm(t, &cfg, Instant::now() + Duration::from_secs(5));
            vm.duration_ms = 1.5;
            vm
        })
        .collect();
    Report {
        vms,
        ..fatal_fixture_without_error()
    }
}

fn fatal_fixture_without_error() -> Report {
    Report {
        fatal: None,
        duration_ms: 12.5,
        ..fatal_fixture()
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

/// A line diff (longest common subsequence) of expected vs actual.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out.push_str(&first_difference(expected, actual));
    out
}

/// Where two texts first differ, with some context: long one-line JSON
/// documents are unreadable as a line diff.
fn first_difference(expected: &str, actual: &str) -> String {
    let a: Vec<char> = expected.chars().collect();
    let b: Vec<char> = actual.chars().collect();
    let Some(at) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) else {
        return String::new();
    };
    let context = |text: &[char]| -> String {
        let start = at.saturating_sub(40);
        let end = (at + 40).min(text.len());
        text.get(start..end)
            .map_or(String::new(), |s| s.iter().collect())
    };
    format!(
        "first difference at character {at}:\n  golden:   {:?}\n  rendered: {:?}\n",
        context(&a),
        context(&b)
    )
}

/// Compares every rendering with its golden file; collects all mismatches
/// before failing, or rewrites the files with `UPDATE_GOLDEN=1`.
fn check(cases: &[(&str, Rendered, u8)]) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, rendered, exit_code) in cases {
        assert_eq!(rendered.exit_code, *exit_code, "exit code of {name}");
        let path = golden_dir().join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(golden_dir()).expect("create tests/golden");
            std::fs::write(&path, &rendered.text).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != rendered.text {
            failures.push(format!(
                "--- {} (- golden, + rendered)\n{}",
                path.display(),
                diff(&expected, &rendered.text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden files differ; rerun with UPDATE_GOLDEN=1 if the change is intended\n\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_format_matches_its_golden_file() {
    let report = fixture();
    check(&[
        ("nagios", render_nagios(&report), 2),
        ("discovery_vms", render_discovery_vms(&report), 0),
        ("discovery_nics", render_discovery_nics(&report), 0),
        ("zabbix", render_zabbix(&report), 0),
        ("telegraf", render_telegraf(&report), 0),
        ("prometheus", render_prometheus(&report), 0),
        ("status_table", render_status_table(&report), 0),
        ("status_json", render_status_json(&report), 0),
    ]);
}

#[test]
fn lifecycle_verdicts_match_their_golden_files() {
    let report = lifecycle_fixture();
    check(&[
        ("lifecycle_nagios", render_nagios(&report), 2),
        ("lifecycle_zabbix", render_zabbix(&report), 0),
        ("lifecycle_telegraf", render_telegraf(&report), 0),
        ("lifecycle_prometheus", render_prometheus(&report), 0),
        ("lifecycle_status_table", render_status_table(&report), 0),
    ]);
}

#[test]
fn a_failed_run_matches_its_golden_files() {
    let report = fatal_fixture();
    check(&[
        ("nagios_fatal", render_nagios(&report), 3),
        ("telegraf_fatal", render_telegraf(&report), 0),
        ("prometheus_fatal", render_prometheus(&report), 3),
    ]);
}

/// The fixture as a caller within `--min-interval` gets it: shared from an
/// earlier probe, with its age.
#[test]
fn a_shared_result_shows_its_age() {
    let mut report = fixture();
    report.age_ms = Some(12_345.0);
    check(&[
        ("nagios_shared", render_nagios(&report), 2),
        ("status_table_shared", render_status_table(&report), 0),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&render_status_json(&report).text).expect("json");
    assert_eq!(json["cached"], true);
    assert_eq!(json["age_ms"], 12345.0);
    let telegraf = render_telegraf(&report).text;
    let run = telegraf.lines().last().expect("run line");
    assert!(run.contains(",cached=true,age_ms=12345.0 "), "{run}");
}

#[test]
fn json_outputs_parse_and_table_fits_80_columns() {
    let report = fixture();
    for rendered in [
        render_discovery_vms(&report),
        render_discovery_nics(&report),
        render_zabbix(&report),
        render_status_json(&report),
    ] {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&rendered.text);
        assert!(parsed.is_ok(), "not JSON: {}", rendered.text);
    }
    for line in render_status_table(&report).text.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
}

#[test]
fn telegraf_lines_are_well_formed() {
    let text = render_telegraf(&fixture()).text;
    assert!(!text.contains('\r'));
    for line in text.lines() {
        assert!(line.ends_with(&format!(" {TIMESTAMP_NS}")), "{line}");
        assert!(
            !line.contains("=,") && !line.contains("= "),
            "empty tag: {line}"
        );
    }
}

type Schema = std::collections::BTreeMap<
    String,
    (
        std::collections::BTreeSet<String>,
        std::collections::BTreeSet<String>,
    ),
>;

/// Measurement → (field names, tag keys) in line protocol `text`, read by
/// InfluxData's own parser (`influxdb-line-protocol`); a refused line fails.
fn line_protocol_schema(text: &str) -> Schema {
    let mut schema = Schema::new();
    for line in text.lines() {
        let point = parse(line).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (fields, tags) = schema.entry(point.measurement).or_default();
        tags.extend(point.tags.into_iter().map(|(k, _)| k));
        fields.extend(point.fields.into_iter().map(|(k, _)| k));
    }
    schema
}

#[test]
fn telegraf_lines_read_back_as_written_by_influxdatas_parser() {
    let mut report = fixture();
    // A 100 KB VM name must not make a 100 KB line (Telegraf refuses lines
    // over 64 KiB), and two such names must stay two series.
    let mut long_a = report.vms[0].clone();
    long_a.name = format!("{}a", "x".repeat(100_000));
    let mut long_b = long_a.clone();
    long_b.name = format!("{}b", "x".repeat(100_000));
    report.vms.extend([long_a, long_b]);
    let text = render_telegraf(&report).text;
    let lines: Vec<_> = text
        .lines()
        .map(|l| parse(l).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect();
    assert_eq!(lines.len(), text.lines().count());
    for raw in text.lines() {
        assert!(raw.len() < 1024, "{} bytes: {raw:.200}", raw.len());
    }
    let vm_tags: Vec<String> = lines
        .iter()
        .filter(|l| l.measurement == "vmnetprobe_vm")
        .map(|l| l.tag("vm").unwrap_or_default().to_string())
        .collect();
    assert!(
        vm_tags.contains(&r#"web 01, "x"=ü"#.to_string()),
        "{vm_tags:?}"
    );
    let unique: std::collections::BTreeSet<&String> = vm_tags.iter().collect();
    assert_eq!(unique.len(), vm_tags.len(), "{vm_tags:?}");
    // Types as written: integers, floats, booleans and strings.
    let web01 = lines
        .iter()
        .find(|l| l.tag("vm") == Some("web01"))
        .expect("web01 line");
    assert_eq!(web01.field("state_code"), Some(&Field::Int(2)));
    assert_eq!(web01.field("agent_up"), Some(&Field::Bool(true)));
    assert_eq!(web01.field("duration_ms"), Some(&Field::Float(1012.0)));
    assert_eq!(web01.field("os"), Some(&Field::Str("linux".into())));
    assert_eq!(web01.timestamp, Some(TIMESTAMP_NS as i64));
    // Tags are host-side facts only: the guest's OS and interface name are fields.
    for line in &lines {
        for key in ["os", "nic"] {
            assert!(line.tag(key).is_none(), "{key} is a tag: {line:?}");
        }
    }
    let win_nic = lines
        .iter()
        .find(|l| l.measurement == "vmnetprobe_nic" && l.tag("vm") == Some("win01"))
        .expect("win01 NIC line");
    assert_eq!(win_nic.field("nic"), Some(&Field::Str("Ethernet 2".into())));
}

/// Every identifier an InfluxQL query names: `FROM "m"` is the measurement,
/// `fn("x")` and `"x" >` are fields, `GROUP BY "x"` and `WITH KEY = "x"`
/// and `"x" =~` are tags; `AS "x"` is an alias.
fn influxql_names(query: &str) -> (String, Vec<String>, Vec<String>) {
    let (mut measurement, mut fields, mut tags) = (String::new(), Vec::new(), Vec::new());
    let group_by = query.find("GROUP BY").unwrap_or(query.len());
    let mut rest = query;
    let mut offset = 0;
    while let Some(start) = rest.find('"') {
        let Some(len) = rest[start + 1..].find('"') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        let before = rest[..start].trim_end();
        let after = rest[start + len + 2..].trim_start();
        let at = offset + start;
        if before.ends_with("FROM") {
            measurement = name.to_string();
        } else if before.ends_with("AS") {
        } else if before.ends_with('(') || after.starts_with('>') || after.starts_with('<') {
            fields.push(name.to_string());
        } else if at > group_by || before.ends_with("KEY =") || after.starts_with("=~") {
            tags.push(name.to_string());
        } else {
            panic!("cannot classify \"{name}\" in {query}");
        }
        offset += start + len + 2;
        rest = &rest[start + len + 2..];
    }
    (measurement, fields, tags)
}

#[test]
fn grafana_queries_name_real_measurements_and_fields() {
    let mut report = fixture();
    let mut text = render_telegraf(&report).text;
    report.age_ms = Some(1500.0);
    text.push_str(&render_telegraf(&report).text);
    let mut schema = line_protocol_schema(&text);
    assert!(schema.contains_key("vmnetprobe_nic"), "{schema:?}");
    // Telegraf adds its global `host` tag to every metric (unless
    // `omit_hostname`): the dashboard's hypervisor variable.
    for (_, tags) in schema.values_mut() {
        assert!(
            !tags.contains("host"),
            "vmnetprobe must not write `host` itself"
        );
        tags.insert("host".to_string());
    }

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/grafana/vmnetprobe-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty(),
            "panel without query: {}",
            panel["title"]
        );
        for target in targets {
            queries.push(target["query"].as_str().expect("raw InfluxQL").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        queries.push(variable["query"].as_str().expect("query").to_string());
    }
    for query in &queries {
        let (measurement, fields, tags) = influxql_names(query);
        let Some((known_fields, known_tags)) = schema.get(&measurement) else {
            panic!("unknown measurement '{measurement}' in {query}");
        };
        for field in &fields {
            assert!(
                known_fields.contains(field),
                "no field {measurement}.{field}: {query}"
            );
        }
        for tag in &tags {
            assert!(
                known_tags.contains(tag),
                "no tag {measurement}.{tag}: {query}"
            );
        }
        assert!(
            !fields.is_empty() || query.starts_with("SHOW TAG VALUES"),
            "no field in {query}"
        );
    }
    assert!(queries.len() >= 10);
    // Every query keeps to the chosen hypervisors: "VMs by state" of two
    // hosts must not add up.
    for query in &queries {
        assert!(
            query.contains(r#""host" =~ /^$host$/"#) || query.ends_with(r#"WITH KEY = "host""#),
            "no host filter: {query}"
        );
    }
}
