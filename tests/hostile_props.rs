//! Property tests with a fixed seed (so CI is reproducible and bounded):
//! the agent reply parsers and the ping classification never panic and
//! keep their output bounded and one-line, whatever a hostile guest sends;
//! the renderers keep their grammar (Nagios, JSON, line protocol) for any
//! report, names full of unicode and control characters included.

mod common;
mod hostile_agent;

use hostile_agent::grammar::{check_line_protocol, check_nagios, FieldValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Number, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vmnetprobe::output::{
    render_discovery_nics, render_discovery_vms, render_nagios, render_status_json,
    render_status_table, render_telegraf, render_zabbix,
};
use vmnetprobe::probe::ping;
use vmnetprobe::qga::interfaces::{
    GuestInterface, Route, MAX_ADDRESSES, MAX_DEFAULT_ROUTES, MAX_GUEST_NICS, MAX_PER_MAC,
};
use vmnetprobe::qga::protocol::{
    parse_exec_pid, ExecStatus, GuestInfo, OsInfo, MAX_EXEC_OUTPUT_B64, MAX_LIST_LEN, MAX_TEXT_LEN,
};
use vmnetprobe::report::{
    AgentReport, GatewaySource, GuestOs, NicKind, NicReport, Report, TargetReport, Thresholds,
    VmReport,
};
use vmnetprobe::verdict::policy::{Finding, PingTarget, Policy};
use vmnetprobe::verdict::Code;
use vmnetprobe::verdict::ServiceState;
use vmnetprobe::verdict::Verdict;

/// CI runs a fixed seed and few cases (a few seconds). For a deeper local
/// search: `VMNETPROBE_PROPTEST_CASES=20000 VMNETPROBE_PROPTEST_SEED=7
/// cargo test --release --test hostile_props`.
fn config(cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("VMNETPROBE_PROPTEST_CASES").map_or(cases, |c| c as u32),
        rng_seed: RngSeed::Fixed(env("VMNETPROBE_PROPTEST_SEED").unwrap_or(0x766d_6e65_7470_726f)),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

// ---- strategies ----------------------------------------------------------

/// Text a hostile guest or user might send: arbitrary unicode, weighted to
/// the characters that break formats.
fn nasty_text() -> impl Strategy<Value = String> {
    let nasty_char = prop_oneof![
        4 => prop::sample::select(vec![
            '|', '\'', '=', ',', ' ', '\n', '\r', '\t', '\\', '"', '\u{0}', '\u{7f}', '\u{85}',
            '\u{2028}', '\u{feff}', '\u{202e}', '…', 'ü', '時', ';', '$', '`', '{', '}', '#',
        ]),
        3 => prop::char::range('a', 'z'),
        2 => any::<char>(),
    ];
    prop_oneof![
        3 => prop::collection::vec(nasty_char, 0..40).prop_map(|c| c.into_iter().collect()),
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => Just("\\".to_string()),
        1 => prop::collection::vec(Just('\\'), 1..4).prop_map(|c| format!("x{}", String::from_iter(c))),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

/// Strings shaped like what parsers look for, and some that only nearly are.
fn field_text() -> impl Strategy<Value = String> {
    prop_oneof![
        nasty_text(),
        ip().prop_map(|a| a.to_string()),
        ip().prop_map(|a| format!("{a}%eth0; reboot")),
        Just("52:54:00:AA:bb:01".to_string()),
        Just("52-54-00-aa-bb-0".to_string()),
        Just("0.0.0.0".to_string()),
        Just("::".to_string()),
        Just("mswindows".to_string()),
        Just("aGk=".to_string()),
        Just("!!!".to_string()),
        prop::collection::vec(prop::sample::select(b"ABCabc+/=09".to_vec()), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

const KEYS: &[&str] = &[
    "name",
    "hardware-address",
    "ip-addresses",
    "ip-address",
    "ip-address-type",
    "prefix",
    "version",
    "supported_commands",
    "enabled",
    "id",
    "pretty-name",
    "kernel-release",
    "iface",
    "destination",
    "mask",
    "gateway",
    "nexthop",
    "desprefixlen",
    "exited",
    "exitcode",
    "signal",
    "out-data",
    "err-data",
    "pid",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0i64, 1, 2, 4, 6, 24, 32, 64, 126, 127, 128, 129, -1])
            .prop_map(Value::from),
        field_text().prop_map(Value::String),
    ]
}

/// Any JSON, with keys mostly from the agent schema so that parsers go deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
                        1 => nasty_text(),
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

// ---- parsers -------------------------------------------------------------

fn bounded_line(text: &str) -> bool {
    text.chars().count() <= MAX_TEXT_LEN + 1 && !text.chars().any(char::is_control)
}

fn check_parsers(reply: &Value) -> Result<(), TestCaseError> {
    if let Ok(info) = GuestInfo::parse(reply) {
        prop_assert!(info.commands.len() <= MAX_LIST_LEN);
        prop_assert!(bounded_line(&info.version));
        prop_assert!(info.commands.keys().all(|k| bounded_line(k)));
    }
    if let Ok(os) = OsInfo::parse(reply) {
        for text in [&os.id, &os.pretty_name, &os.kernel_release]
            .into_iter()
            .flatten()
        {
            prop_assert!(bounded_line(text), "{text:?}");
        }
    }
    if let Ok(list) = GuestInterface::parse_text(&reply.to_string(), &[]) {
        let list = list.kept;
        prop_assert!(list.len() <= MAX_GUEST_NICS * MAX_PER_MAC);
        for iface in &list {
            prop_assert!(bounded_line(&iface.name), "{:?}", iface.name);
            if let Some(mac) = &iface.mac {
                prop_assert!(
                    mac.len() == 17
                        && mac.bytes().enumerate().all(|(i, b)| if i % 3 == 2 {
                            b == b':'
                        } else {
                            b.is_ascii_hexdigit() && !b.is_ascii_uppercase()
                        }),
                    "{mac}"
                );
            }
            prop_assert!(iface.ips.len() <= MAX_ADDRESSES);
            for (addr, prefix) in &iface.ips {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                prop_assert!(*prefix <= max, "{addr}/{prefix}");
            }
        }
    }
    if let Ok(routes) = Route::parse_text(&reply.to_string()) {
        prop_assert!(routes.len() <= MAX_DEFAULT_ROUTES);
        for route in &routes {
            prop_assert!(bounded_line(&route.iface));
            prop_assert!(route.default_gateway.is_none_or(|g| !g.is_unspecified()));
        }
    }
    if let Ok(status) = ExecStatus::parse(reply) {
        // Decoded base64 is 3/4 of its text; lossy UTF-8 at most triples it.
        let max = MAX_EXEC_OUTPUT_B64 / 4 * 3 * 3;
        prop_assert!(status.stdout.len() <= max && status.stderr.len() <= max);
    }
    if let Ok(pid) = parse_exec_pid(reply) {
        prop_assert!(pid > 0);
    }
    Ok(())
}

fn interface_entry() -> impl Strategy<Value = Value> {
    let address = (field_text(), json_leaf(), json_leaf()).prop_map(|(a, kind, prefix)| {
        serde_json::json!({"ip-address": a, "ip-address-type": kind, "prefix": prefix})
    });
    (
        prop_oneof![3 => field_text().prop_map(Value::String), 1 => json_leaf()],
        prop_oneof![3 => field_text().prop_map(Value::String), 1 => json_leaf()],
        prop::collection::vec(address, 0..5),
    )
        .prop_map(|(name, mac, addrs)| {
            serde_json::json!({"name": name, "hardware-address": mac, "ip-addresses": addrs})
        })
}

fn route_entry() -> impl Strategy<Value = Value> {
    (
        field_text(),
        prop::sample::select(vec![4i64, 6, 5]),
        prop_oneof![
            Just("0.0.0.0".to_string()),
            Just("::".to_string()),
            field_text()
        ],
        field_text(),
        prop_oneof![Just("0".to_string()), field_text()],
    )
        .prop_map(|(iface, version, dest, gw, plen)| {
            serde_json::json!({"iface": iface, "version": version, "destination": dest,
                "mask": "0.0.0.0", "gateway": gw, "nexthop": gw, "desprefixlen": plen})
        })
}

fn exec_status_reply() -> impl Strategy<Value = Value> {
    (
        json_leaf(),
        json_leaf(),
        json_leaf(),
        json_leaf(),
        json_leaf(),
    )
        .prop_map(|(exited, code, signal, out, err)| {
            serde_json::json!({"exited": exited, "exitcode": code, "signal": signal,
                "out-data": out, "err-data": err})
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn parsers_survive_any_json(reply in json_value()) {
        check_parsers(&reply)?;
    }

    #[test]
    fn parsers_survive_schema_shaped_replies(
        interfaces in prop::collection::vec(interface_entry(), 0..6),
        routes in prop::collection::vec(route_entry(), 0..6),
        status in exec_status_reply(),
        pid in json_leaf(),
    ) {
        check_parsers(&Value::Array(interfaces))?;
        check_parsers(&Value::Array(routes))?;
        check_parsers(&status)?;
        check_parsers(&serde_json::json!({"pid": pid}))?;
        // A well-formed exit status always parses.
        let ok = serde_json::json!({"exited": true, "exitcode": 0, "out-data": "aGk="});
        prop_assert!(ExecStatus::parse(&ok).is_ok());
    }
}

// ---- ping classification --------------------------------------------------

fn ping_output() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        nasty_text(),
        Just("64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=".to_string()),
        Just(" ms\n".to_string()),
        Just("time=".to_string()),
        Just("time<".to_string()),
        Just("ms".to_string()),
        Just("TTL=".to_string()),
        Just("1 packets transmitted, 0 received".to_string()),
        Just("rtt min/avg/max/mdev = ".to_string()),
        Just("round-trip min/avg/max = ".to_string()),
        Just("Destination Host Unreachable\n".to_string()),
        Just("Network is unreachable".to_string()),
        Just("Operation not permitted".to_string()),
        Just("/".to_string()),
        Just(" = ".to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|f| f.to_string()),
        Just("9".repeat(400)),
        Just("\r\n".to_string()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

fn exec_status() -> impl Strategy<Value = ExecStatus> {
    (
        prop::option::of(prop_oneof![
            prop::sample::select(vec![0i64, 1, 2, 126, 127]),
            any::<i64>()
        ]),
        prop::option::of(any::<i64>()),
        ping_output(),
        ping_output(),
    )
        .prop_map(|(exit_code, signal, stdout, stderr)| ExecStatus {
            exited: true,
            exit_code,
            signal,
            stdout,
            stderr,
        })
}

fn check_finding(finding: &Finding) -> Result<(), TestCaseError> {
    if let Finding::Reachable(_, Some(rtt)) = finding {
        prop_assert!(rtt.is_finite() && *rtt >= 0.0, "rtt {rtt}");
    }
    let verdict = Policy::default().verdict(finding);
    prop_assert!(
        !verdict.reason.chars().any(char::is_control),
        "{:?}",
        verdict.reason
    );
    // Guest text is cut to 120 characters; the longest reason is one with
    // an absurd but finite RTT (f64::MAX ms has 309 digits).
    prop_assert!(
        verdict.reason.chars().count() <= 400,
        "{:?}",
        verdict.reason
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ping_classification_is_bounded(status in exec_status(), addr in ip()) {
        let target = PingTarget::Gateway(addr);
        check_finding(&ping::classify_linux(target, &status))?;
        check_finding(&ping::classify_windows(target, &status))?;
        for line in status.stdout.lines() {
            if let Some(rtt) = ping::parse_windows_rtt(line) {
                prop_assert!(rtt.is_finite() && rtt >= 0.0);
            }
        }
        if let Some(rtt) = ping::parse_linux_rtt(&status.stdout) {
            prop_assert!(rtt.is_finite() && rtt >= 0.0, "rtt {rtt}");
        }
    }

    #[test]
    fn ping_targets_are_one_ip_literal(addr in ip(), zone in nasty_text()) {
        if let Ok(arg) = ping::target_argument(addr, Some(&zone)) {
            let (literal, zone) = arg.split_once('%').map_or((arg.as_str(), None), |(a, z)| (a, Some(z)));
            prop_assert_eq!(literal.parse::<IpAddr>().ok(), Some(addr));
            prop_assert!(!arg.starts_with('-'));
            if let Some(zone) = zone {
                prop_assert!(zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            }
        }
    }
}

// ---- renderers -----------------------------------------------------------

fn state() -> impl Strategy<Value = ServiceState> {
    prop::sample::select(vec![
        ServiceState::Ok,
        ServiceState::Warning,
        ServiceState::Critical,
        ServiceState::Unknown,
    ])
}

fn verdict() -> impl Strategy<Value = Verdict> {
    (
        state(),
        prop::sample::select(Code::ALL.to_vec()),
        nasty_text(),
    )
        .prop_map(|(state, code, reason)| Verdict::new(state, code, reason))
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0..2000.0f64,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
        1 => Just(1e-9),
    ]
}

fn nic() -> impl Strategy<Value = NicReport> {
    (
        nasty_text(),
        prop::option::of(nasty_text()),
        prop::option::of(nasty_text()),
        prop::option::of(nasty_text()),
        prop::collection::vec(ip(), 0..3),
        prop::option::of(ip()),
        any::<bool>(),
        verdict(),
        prop::option::of(float()),
    )
        .prop_map(
            |(mac, name, host_dev, network, ips, gateway, external, verdict, rtt_ms)| NicReport {
                mac,
                name,
                host_dev,
                network,
                ips,
                gateway,
                gateway_source: gateway.map(|_| GatewaySource::AgentRoute),
                kind: if external {
                    NicKind::External
                } else {
                    NicKind::Internal
                },
                verdict,
                rtt_ms,
            },
        )
}

fn vm() -> impl Strategy<Value = VmReport> {
    (
        (
            nasty_text(),
            prop::option::of(nasty_text()),
            prop::sample::select(vec![GuestOs::Linux, GuestOs::Windows, GuestOs::Unknown]),
            verdict(),
        ),
        (
            verdict(),
            prop::option::of(nasty_text()),
            prop::option::of(any::<bool>()),
        ),
        prop::collection::vec(nic(), 0..4),
        prop::option::of((ip(), verdict(), prop::option::of(float()))),
        float(),
        any::<u32>(),
    )
        .prop_map(
            |((name, uuid, os, verdict), (agent, version, exec_enabled), nics, ext, dur, n)| {
                VmReport {
                    name,
                    uuid,
                    os,
                    verdict,
                    agent: AgentReport {
                        verdict: agent,
                        version,
                        exec_enabled,
                    },
                    nics,
                    external: ext.map(|(address, verdict, rtt_ms)| TargetReport {
                        address,
                        verdict,
                        rtt_ms,
                    }),
                    duration_ms: dur,
                    agent_commands: n,
                    agent_execs: n / 2,
                    cloud: None,
                }
            },
        )
}

fn report() -> impl Strategy<Value = Report> {
    let range = prop::sample::select(vec![
        None,
        Some("100"),
        Some("~:100"),
        Some("@10:20"),
        Some("10:"),
    ])
    .prop_map(|r| r.and_then(|t| t.parse().ok()));
    (
        prop::collection::vec(vm(), 0..6),
        prop::option::of(ip()),
        (range.clone(), range),
        prop_oneof![4 => Just(None), 1 => nasty_text().prop_map(Some)],
        any::<u64>(),
        float(),
        prop::option::of(float()),
        prop::option::of(nasty_text()),
    )
        .prop_map(
            |(
                vms,
                external_target,
                (warning, critical),
                fatal,
                timestamp_ns,
                duration_ms,
                age_ms,
                no_vms_reason,
            )| {
                let vms = if fatal.is_some() { Vec::new() } else { vms };
                Report {
                    vms,
                    external_target,
                    thresholds: Thresholds { warning, critical },
                    fatal,
                    timestamp_ns,
                    duration_ms,
                    age_ms,
                    no_vms_reason,
                }
            },
        )
}

fn sorted_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names.collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn renderers_keep_their_grammar(report in report()) {
        let nagios = render_nagios(&report);
        let parsed = check_nagios(&nagios.text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", nagios.text)))?;
        prop_assert_eq!(parsed.state.as_str(), report.state().as_str());
        prop_assert_eq!(nagios.exit_code, report.state().code());

        for (mode, rendered) in [
            ("status", render_status_json(&report)),
            ("zabbix", render_zabbix(&report)),
        ] {
            let doc: Value = serde_json::from_str(&rendered.text)
                .map_err(|e| TestCaseError::fail(format!("{mode}: {e}\n{}", rendered.text)))?;
            if report.fatal.is_none() {
                let names = doc["vms"].as_array().map(|vms| {
                    sorted_names(vms.iter().map(|v| v["name"].as_str().unwrap_or("\u{0}").to_string()))
                });
                prop_assert_eq!(names, Some(sorted_names(report.vms.iter().map(|v| v.name.clone()))));
            }
        }
        for (mode, rendered) in [
            ("discover vms", render_discovery_vms(&report)),
            ("discover nics", render_discovery_nics(&report)),
        ] {
            let doc: Value = serde_json::from_str(&rendered.text)
                .map_err(|e| TestCaseError::fail(format!("{mode}: {e}\n{}", rendered.text)))?;
            if let Some(rows) = doc.as_array() {
                for row in rows {
                    let ok = row.as_object().is_some_and(|o| {
                        o.iter().all(|(k, v)| k.starts_with("{#") && k.ends_with('}') && v.is_string())
                    });
                    prop_assert!(ok, "{}: {}", mode, row);
                }
            } else {
                prop_assert!(report.fatal.is_some() && doc.get("error").is_some(), "{}", rendered.text);
            }
        }

        let telegraf = render_telegraf(&report);
        prop_assert_eq!(telegraf.exit_code, 0);
        let points = check_line_protocol(&telegraf.text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", telegraf.text)))?;
        let vm_points = points.iter().filter(|p| p.measurement == "vmnetprobe_vm").count();
        prop_assert_eq!(vm_points, report.vms.len());
        let run = points.last().expect("run point");
        prop_assert_eq!(run.field("vms"), Some(&FieldValue::Int(report.vms.len() as i64)));
        prop_assert!(points
            .iter()
            .all(|p| p.timestamp == Some(report.timestamp_ns.min(i64::MAX as u64) as i64)));

        let table = render_status_table(&report);
        prop_assert!(table.text.ends_with('\n'));
    }
}

/// Found by the property test above with a deeper search
/// (`VMNETPROBE_PROPTEST_CASES=20000 VMNETPROBE_PROPTEST_SEED=7`): a name
/// whose backslash stands before a Unicode space (here NBSP) that the final
/// trim removes leaves a trailing backslash in a tag value, which escapes
/// the next separator and breaks the line (and, for Telegraf's exec input,
/// the whole batch). Linux accepts NBSP in interface names; Windows
/// adapter names and hostile agents send anything. Fixed in
/// `src/output/telegraf.rs` (`tag_value`): every Unicode whitespace becomes
/// ' ' before the backslash pass.
#[test]
fn a_backslash_before_a_unicode_space_keeps_line_protocol_valid() {
    let mut report = Report {
        vms: Vec::new(),
        external_target: None,
        thresholds: Thresholds::default(),
        fatal: None,
        timestamp_ns: 1,
        duration_ms: 1.0,
        age_ms: None,
        no_vms_reason: None,
    };
    for name in ["eth0\\\u{a0}\\", "\\\u{2028}\\", "x\\\u{3000}\\"] {
        report.vms.push(VmReport {
            name: format!("vm{name}"),
            uuid: None,
            os: GuestOs::Linux,
            verdict: Verdict::new(ServiceState::Ok, Code::Ok, "fine"),
            agent: AgentReport {
                verdict: Verdict::new(ServiceState::Ok, Code::Ok, "up"),
                version: None,
                exec_enabled: Some(true),
            },
            nics: vec![NicReport {
                mac: "52:54:00:00:00:01".into(),
                name: Some(name.into()),
                host_dev: None,
                network: None,
                ips: Vec::new(),
                gateway: None,
                gateway_source: None,
                kind: NicKind::Internal,
                verdict: Verdict::new(ServiceState::Ok, Code::NoGateway, "no gateway known"),
                rtt_ms: None,
            }],
            external: None,
            duration_ms: 1.0,
            agent_commands: 0,
            agent_execs: 0,
            cloud: None,
        });
    }
    let text = render_telegraf(&report).text;
    if let Err(e) = check_line_protocol(&text) {
        panic!("{e}\n{text}");
    }
}
