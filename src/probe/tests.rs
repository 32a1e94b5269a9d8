//! The probe core against a scripted agent: Linux, Windows, exec disabled,
//! agent silent, ping failing, no gateway, and libvirt-side NIC facts.

use super::*;
use crate::inventory::fake::OneShotConnector;
use crate::inventory::{AgentConnector, ChannelState, Lifecycle, NicConfig, VmSettings, VmTarget};
use crate::qga::fake::{CallLog, FakeTransport};
use crate::qga::{AgentError, AgentTransport};
use crate::verdict::{Code, ServiceState};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Mutex;

const MAC: &str = "52:54:00:aa:bb:01";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn guest_info(version: &str, commands: &[(&str, bool)]) -> Value {
    let list: Vec<Value> = commands
        .iter()
        .map(|(name, enabled)| json!({"name": name, "enabled": enabled}))
        .collect();
    json!({"version": version, "supported_commands": list})
}

fn linux_commands(exec: bool) -> Vec<(&'static str, bool)> {
    vec![
        ("guest-get-osinfo", true),
        ("guest-network-get-interfaces", true),
        ("guest-exec", exec),
        ("guest-exec-status", exec),
    ]
}

fn interfaces() -> Value {
    json!([
        {"name": "lo", "hardware-address": "00:00:00:00:00:00",
         "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": 8}]},
        {"name": "eth0", "hardware-address": MAC,
         "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24}]}
    ])
}

const IPUTILS_OK: &str = "PING x (x) 56(84) bytes of data.\n64 bytes from x: icmp_seq=1 ttl=64 time=0.412 ms\n\n--- x ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\n";
const IPUTILS_LOST: &str = "PING x\n\n--- x ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss, time 0ms\n";

/// A Linux guest whose `ping` answers per target with `(exit code, stdout)`;
/// `ip route` reports 192.0.2.1 as eth0's default gateway.
fn linux_guest(exec: bool, ping: fn(&str) -> (i64, &'static str)) -> FakeTransport {
    linux_guest_with(
        exec,
        interfaces(),
        "default via 192.0.2.1 dev eth0 proto static\n",
        "",
        ping,
    )
}

/// As [`linux_guest`], with these interfaces and `ip route` / `ip -6 route`
/// outputs.
fn linux_guest_with(
    exec: bool,
    ifaces: Value,
    route4: &'static str,
    route6: &'static str,
    ping: fn(&str) -> (i64, &'static str),
) -> FakeTransport {
    let outputs: std::sync::Arc<Mutex<std::collections::HashMap<i64, Value>>> = Default::default();
    let next_pid = std::sync::Arc::new(Mutex::new(100i64));
    let outputs_exec = outputs.clone();
    FakeTransport::new()
        .reply("guest-info", guest_info("7.2.22", &linux_commands(exec)))
        .reply(
            "guest-get-osinfo",
            json!({"id": "debian", "kernel-release": "6.1.0"}),
        )
        .reply("guest-network-get-interfaces", ifaces)
        .handle("guest-exec", move |args| {
            let args = args.cloned().unwrap_or_default();
            let path = args["path"].as_str().unwrap_or_default().to_string();
            let argv: Vec<String> = args["arg"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let reply = match path.as_str() {
                "/sbin/ip" if argv.first().map(String::as_str) == Some("-6") => {
                    json!({"exited": true, "exitcode": 0, "out-data": b64(route6)})
                }
                "/sbin/ip" => json!({"exited": true, "exitcode": 0, "out-data": b64(route4)}),
                "/bin/ping" => {
                    let target = argv.last().cloned().unwrap_or_default();
                    let (code, out) = ping(&target);
                    json!({"exited": true, "exitcode": code, "out-data": b64(out)})
                }
                other => {
                    return Err(AgentError::Command {
                        command: "guest-exec".into(),
                        desc: format!(
                            "Failed to execute child process “{other}” (No such file or directory)"
                        ),
                    })
                }
            };
            let mut pid = next_pid.lock().unwrap();
            *pid += 1;
            outputs_exec.lock().unwrap().insert(*pid, reply);
            Ok(json!({"pid": *pid}))
        })
        .handle("guest-exec-status", move |args| {
            let pid = args.and_then(|a| a["pid"].as_i64()).unwrap_or(-1);
            outputs
                .lock()
                .unwrap()
                .remove(&pid)
                .ok_or(AgentError::Command {
                    command: "guest-exec-status".into(),
                    desc: "Invalid parameter 'pid'".into(),
                })
        })
}

fn target_with(transport: FakeTransport, nics: Vec<NicConfig>) -> VmTarget {
    VmTarget {
        name: "vm1".into(),
        uuid: Some("u-1".into()),
        cloud: None,
        lifecycle: Lifecycle::Running,
        channel: ChannelState::Connected,
        nics,
        socket: None,
        settings: Ok(Default::default()),
        connector: Box::new(OneShotConnector::new(transport)),
    }
}

fn cfg() -> ProbeConfig {
    ProbeConfig {
        external: Some("198.51.100.1".parse().unwrap()),
        ..ProbeConfig::default()
    }
}

fn probe(transport: FakeTransport, cfg: &ProbeConfig) -> (VmReport, CallLog) {
    let calls = transport.calls();
    let target = target_with(transport, Vec::new());
    (
        probe_vm(&target, cfg, Instant::now() + Duration::from_secs(5)),
        calls,
    )
}

fn all_ok(_target: &str) -> (i64, &'static str) {
    (0, IPUTILS_OK)
}

#[test]
fn healthy_linux_guest_is_ok_with_rtts() {
    let (vm, calls) = probe(linux_guest(true, all_ok), &cfg());
    assert_eq!(vm.verdict.state, ServiceState::Ok, "{vm:?}");
    assert_eq!(vm.os, GuestOs::Linux);
    assert_eq!(vm.nics.len(), 1, "loopback is not a NIC");
    let nic = &vm.nics[0];
    assert_eq!(nic.mac, MAC);
    assert_eq!(nic.gateway, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(nic.gateway_source, Some(GatewaySource::GuestRouteTable));
    assert_eq!(nic.rtt_ms, Some(0.412));
    let ext = vm.external.as_ref().unwrap();
    assert_eq!(ext.verdict.state, ServiceState::Ok);
    assert_eq!(ext.rtt_ms, Some(0.412));
    // Both pings started before either was polled.
    let calls = calls.lock().unwrap();
    let is_ping = |(c, a): &(String, Option<Value>)| {
        c == "guest-exec" && a.as_ref().unwrap()["path"] == "/bin/ping"
    };
    let first_ping = calls.iter().position(is_ping).unwrap();
    assert!(is_ping(&calls[first_ping + 1]));
    assert_eq!(calls[first_ping + 2].0, "guest-exec-status");
    assert_eq!(calls.iter().filter(|c| is_ping(c)).count(), 2);
}

#[test]
fn ping_argv_is_fixed_and_env_is_c_locale() {
    let (_, calls) = probe(linux_guest(true, all_ok), &cfg());
    let calls = calls.lock().unwrap();
    let ping = calls
        .iter()
        .find(|(c, a)| c == "guest-exec" && a.as_ref().unwrap()["path"] == "/bin/ping")
        .and_then(|(_, a)| a.clone())
        .unwrap();
    assert_eq!(
        ping["arg"],
        json!(["-n", "-c", "1", "-W", "1", "192.0.2.1"])
    );
    assert_eq!(ping["capture-output"], json!(true));
    assert!(ping["env"].as_array().unwrap().contains(&json!("LC_ALL=C")));
}

#[test]
fn gateway_down_is_critical_and_named() {
    fn gw_down(target: &str) -> (i64, &'static str) {
        if target == "192.0.2.1" {
            (1, IPUTILS_LOST)
        } else {
            (0, IPUTILS_OK)
        }
    }
    let (vm, _) = probe(linux_guest(true, gw_down), &cfg());
    assert_eq!(vm.verdict.state, ServiceState::Critical);
    assert_eq!(vm.verdict.code, Code::GatewayUnreachable);
    assert_eq!(
        vm.verdict.reason,
        "eth0: gateway 192.0.2.1 unreachable (no reply)"
    );
    assert_eq!(vm.external.unwrap().verdict.state, ServiceState::Ok);
}

#[test]
fn external_down_is_critical_while_gateway_stays_ok() {
    fn ext_down(target: &str) -> (i64, &'static str) {
        if target == "198.51.100.1" {
            (1, IPUTILS_LOST)
        } else {
            (0, IPUTILS_OK)
        }
    }
    let (vm, _) = probe(linux_guest(true, ext_down), &cfg());
    assert_eq!(vm.verdict.code, Code::ExternalUnreachable);
    assert_eq!(vm.nics[0].verdict.state, ServiceState::Ok);
}

#[test]
fn exec_disabled_is_unknown_with_its_own_reason_and_runs_nothing() {
    let (vm, calls) = probe(linux_guest(false, all_ok), &cfg());
    assert_eq!(vm.agent.verdict.state, ServiceState::Ok);
    assert_eq!(vm.agent.exec_enabled, Some(false));
    assert_eq!(vm.verdict.state, ServiceState::Unknown);
    assert_eq!(vm.verdict.code, Code::ExecDisabled);
    assert_eq!(vm.external.unwrap().verdict.code, Code::ExecDisabled);
    assert!(calls.lock().unwrap().iter().all(|(c, _)| c != "guest-exec"));
}

#[test]
fn silent_agent_is_unknown_and_agent_down_state_can_raise_it() {
    let silent = || {
        FakeTransport::new().fail(
            "guest-info",
            AgentError::Timeout {
                command: "guest-info".into(),
            },
        )
    };
    let (vm, _) = probe(silent(), &cfg());
    assert_eq!(vm.verdict.state, ServiceState::Unknown);
    assert_eq!(vm.verdict.code, Code::AgentTimeout);
    let mut critical = cfg();
    critical.policy.agent_down_state = ServiceState::Critical;
    let (vm, _) = probe(silent(), &critical);
    assert_eq!(vm.verdict.state, ServiceState::Critical);
}

#[test]
fn agent_dying_mid_run_marks_the_rest_unknown() {
    let guest = linux_guest(true, all_ok).fail(
        "guest-exec-status",
        AgentError::Disconnected("agent closed the connection".into()),
    );
    let (vm, _) = probe(guest, &cfg());
    assert_eq!(vm.verdict.code, Code::AgentDisconnected);
    assert_eq!(vm.nics[0].verdict.code, Code::AgentDisconnected);
}

#[test]
fn no_gateway_is_reported_not_failed() {
    let guest = linux_guest(true, all_ok)
        .handle("guest-exec", |args| {
            let path = args
                .and_then(|a| a["path"].as_str())
                .unwrap_or_default()
                .to_string();
            if path == "/sbin/ip" {
                return Err(AgentError::Command {
                    command: "guest-exec".into(),
                    desc: "other".into(),
                });
            }
            Ok(json!({"pid": 7}))
        })
        .reply(
            "guest-exec-status",
            json!({"exited": true, "exitcode": 0, "out-data": b64(IPUTILS_OK)}),
        );
    let (vm, _) = probe(guest, &cfg());
    assert_eq!(vm.nics[0].verdict.code, Code::NoGateway);
    assert_eq!(vm.nics[0].verdict.state, ServiceState::Ok);
    assert_eq!(vm.verdict.state, ServiceState::Ok);
}

#[test]
fn windows_guest_uses_ping_exe_and_the_ttl_rule() {
    let trap = "Pinging 192.0.2.1 with 32 bytes of data:\r\nReply from 192.0.2.5: Destination host unreachable.\r\n";
    let guest = FakeTransport::new()
        .reply("guest-info", guest_info("100.0.0", &linux_commands(true)))
        .reply("guest-get-osinfo", json!({"id": "mswindows", "pretty-name": "Windows 10 Pro"}))
        .reply("guest-network-get-interfaces", json!([
            {"name": "Ethernet 2", "hardware-address": MAC, "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24}]},
            {"name": "Loopback Pseudo-Interface 1", "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": 8}]}
        ]))
        .handle("guest-exec", {
            let next = std::sync::atomic::AtomicI64::new(2);
            move |args| {
            let args = args.cloned().unwrap_or_default();
            assert!(args.get("env").is_none(), "no env on Windows");
            match args["path"].as_str() {
                Some(r"C:\Windows\System32\ROUTE.EXE") => Ok(json!({"pid": 1})),
                // A fresh pid per program, as a real agent hands out.
                Some(r"C:\Windows\System32\PING.EXE") => {
                    Ok(json!({"pid": next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)}))
                }
                _ => Err(AgentError::Command { command: "guest-exec".into(), desc: "Failed to execute child process (No such file or directory)".into() }),
            }
        }})
        .handle("guest-exec-status", move |args| {
            let pid = args.and_then(|a| a["pid"].as_i64());
            Ok(match pid {
                Some(1) => json!({"exited": true, "exitcode": 0, "out-data": b64("          0.0.0.0          0.0.0.0      192.0.2.1    192.0.2.10     25\r\n")}),
                _ => json!({"exited": true, "exitcode": 0, "out-data": b64(trap)}),
            })
        });
    let (vm, calls) = probe(guest, &cfg());
    assert_eq!(vm.os, GuestOs::Windows);
    assert_eq!(vm.nics.len(), 1);
    assert_eq!(vm.nics[0].gateway, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(
        vm.nics[0].verdict.code,
        Code::GatewayUnreachable,
        "exit 0 without TTL= is a failure"
    );
    let calls = calls.lock().unwrap();
    let ping = calls
        .iter()
        .rev()
        .find(|(c, _)| c == "guest-exec")
        .and_then(|(_, a)| a.clone())
        .unwrap();
    assert_eq!(
        ping["arg"],
        json!(["-n", "1", "-w", "1000", "-4", "198.51.100.1"])
    );
}

#[test]
fn cmd_exe_fallback_detects_the_os_when_osinfo_is_missing() {
    let mut commands = linux_commands(true);
    commands.retain(|(c, _)| *c != "guest-get-osinfo");
    let guest = linux_guest(true, all_ok).reply("guest-info", guest_info("2.5.0", &commands));
    let (vm, calls) = probe(guest, &cfg());
    assert_eq!(vm.os, GuestOs::Linux);
    assert!(calls
        .lock()
        .unwrap()
        .iter()
        .any(|(c, a)| c == "guest-exec" && a.as_ref().unwrap()["path"] == "cmd.exe"));
}

#[test]
fn missing_ping_binaries_are_tried_in_order_then_reported() {
    let guest = linux_guest(true, all_ok).handle("guest-exec", |args| {
        let path = args
            .and_then(|a| a["path"].as_str())
            .unwrap_or_default()
            .to_string();
        Err(AgentError::Command {
            command: "guest-exec".into(),
            desc: format!("Failed to execute child process “{path}” (No such file or directory)"),
        })
    });
    let (vm, calls) = probe(guest, &cfg());
    assert_eq!(
        vm.external.as_ref().unwrap().verdict.code,
        Code::PingMissing
    );
    let tried: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "guest-exec")
        .filter_map(|(_, a)| a.as_ref()?["path"].as_str().map(String::from))
        .filter(|p| p.contains("ping"))
        .collect();
    assert_eq!(tried, ping::LINUX_PING_PATHS);
}

#[test]
fn libvirt_nics_join_by_mac_and_use_the_network_gateway() {
    let guest = linux_guest(true, all_ok).reply(
        "guest-info",
        guest_info(
            "7.2.22",
            &[
                ("guest-network-get-interfaces", true),
                ("guest-get-osinfo", true),
                ("guest-exec", true),
                ("guest-exec-status", true),
            ],
        ),
    );
    let nics = vec![
        NicConfig {
            mac: MAC.into(),
            network: Some("ext-net".into()),
            host_dev: Some("vnet0".into()),
            network_addresses: vec![("192.0.2.1".parse().unwrap(), 24)],
            ..NicConfig::default()
        },
        NicConfig {
            mac: "52:54:00:aa:bb:09".into(),
            network: Some("int-net".into()),
            ..NicConfig::default()
        },
        NicConfig {
            mac: "52:54:00:aa:bb:0a".into(),
            link_down: true,
            ..NicConfig::default()
        },
    ];
    let mut cfg = cfg();
    cfg.external_networks = vec!["ext-net".into()];
    let target = target_with(guest, nics);
    let vm = probe_vm(&target, &cfg, Instant::now() + Duration::from_secs(5));
    assert_eq!(vm.nics[0].kind, NicKind::External);
    assert_eq!(vm.nics[0].name.as_deref(), Some("eth0"));
    assert_eq!(vm.nics[0].host_dev.as_deref(), Some("vnet0"));
    assert_eq!(vm.nics[0].verdict.state, ServiceState::Ok);
    assert_eq!(vm.nics[1].kind, NicKind::Internal);
    assert_eq!(vm.nics[1].verdict.code, Code::NicMissing);
    assert_eq!(vm.nics[2].verdict.code, Code::NicMissing);
    assert_eq!(vm.verdict.state, ServiceState::Critical);
}

#[test]
fn internal_only_vms_skip_the_external_ping_when_networks_are_declared() {
    let mut cfg = cfg();
    cfg.external_networks = vec!["nope".into()];
    let (vm, _) = probe(linux_guest(true, all_ok), &cfg);
    assert!(vm.external.is_none());
    cfg.external_networks = vec!["eth0".into()];
    let (vm, _) = probe(linux_guest(true, all_ok), &cfg);
    assert!(vm.external.is_some());
    assert_eq!(vm.nics[0].kind, NicKind::External);
}

#[test]
fn no_exec_reports_interfaces_without_running_anything() {
    let mut cfg = cfg();
    cfg.no_exec = true;
    cfg.external = None;
    cfg.fallback_gateway = Some("192.0.2.1".parse().unwrap());
    let (vm, calls) = probe(linux_guest(true, all_ok), &cfg);
    assert!(calls.lock().unwrap().iter().all(|(c, _)| c != "guest-exec"));
    assert_eq!(vm.nics[0].verdict.code, Code::NotChecked);
    assert_eq!(vm.verdict.state, ServiceState::Ok);
    assert!(vm.external.is_none());
}

#[test]
fn not_running_and_channel_states_come_before_the_agent() {
    let mut target = target_with(
        FakeTransport::new(),
        vec![NicConfig {
            mac: MAC.into(),
            ..NicConfig::default()
        }],
    );
    target.lifecycle = Lifecycle::NotRunning;
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(1));
    assert_eq!(
        (vm.verdict.state, vm.verdict.code),
        (ServiceState::Critical, Code::VmNotRunning)
    );
    for (channel, code) in [
        (ChannelState::Missing, Code::NoAgentChannel),
        (ChannelState::Disconnected, Code::AgentNotConnected),
    ] {
        let mut target = target_with(FakeTransport::new(), vec![]);
        target.channel = channel;
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(1));
        assert_eq!(vm.verdict.code, code);
        assert_eq!(vm.external.unwrap().verdict.code, code);
    }
}

#[test]
fn runner_reports_unfinished_vms_as_timed_out_and_keeps_the_rest() {
    struct Stuck;
    impl AgentConnector for Stuck {
        fn connect(&self, _t: Duration) -> Result<Box<dyn AgentTransport>, AgentError> {
            std::thread::sleep(Duration::from_secs(3));
            Err(AgentError::Connect("late".into()))
        }
    }
    let healthy = target_with(linux_guest(true, all_ok), vec![]);
    let stuck = VmTarget {
        name: "stuck".into(),
        uuid: None,
        cloud: None,
        lifecycle: Lifecycle::Running,
        channel: ChannelState::Unknown,
        nics: vec![],
        socket: None,
        settings: Ok(Default::default()),
        connector: Box::new(Stuck),
    };
    let started = Instant::now();
    let reports = runner::probe_all(
        vec![stuck, healthy],
        &cfg(),
        4,
        started + Duration::from_millis(600),
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(reports[0].name, "stuck");
    assert_eq!(reports[0].verdict.code, Code::TimedOut);
    assert_eq!(reports[1].name, "vm1");
    assert_eq!(reports[1].verdict.state, ServiceState::Ok);
}

#[test]
fn rtt_thresholds_apply_to_gateway_and_external() {
    let mut cfg = cfg();
    cfg.policy.rtt_warning = Some("0.1".parse().unwrap());
    let (vm, _) = probe(linux_guest(true, all_ok), &cfg);
    assert_eq!(vm.verdict.state, ServiceState::Warning);
    assert_eq!(vm.verdict.code, Code::RttHigh);
}

fn gateway_192_0_2_1_only(target: &str) -> (i64, &'static str) {
    if target == "192.0.2.1" {
        (0, IPUTILS_OK)
    } else if target.starts_with("192.0.2.") {
        (1, IPUTILS_LOST)
    } else {
        (0, IPUTILS_OK)
    }
}

fn gateway_dead(target: &str) -> (i64, &'static str) {
    if target.starts_with("192.0.2.") {
        (1, IPUTILS_LOST)
    } else {
        (0, IPUTILS_OK)
    }
}

/// A bond as qemu-ga reports it: both members and the bond carry the
/// bond's MAC; only the bond has the address and the route.
fn bond_interfaces() -> Value {
    json!([
        {"name": "lo", "hardware-address": "00:00:00:00:00:00",
         "ip-addresses": [{"ip-address": "127.0.0.1", "prefix": 8}]},
        {"name": "eth0", "hardware-address": MAC},
        {"name": "eth1", "hardware-address": MAC},
        {"name": "bond0", "hardware-address": MAC,
         "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24},
                          {"ip-address": "fe80::5054:ff:feaa:bb01", "prefix": 64}]}
    ])
}

#[test]
fn a_bond_over_the_nic_is_the_nic_and_its_dead_gateway_is_critical() {
    let nic = NicConfig {
        mac: MAC.into(),
        ..NicConfig::default()
    };
    for (ping, state) in [
        (all_ok as fn(&str) -> (i64, &'static str), ServiceState::Ok),
        (gateway_dead, ServiceState::Critical),
    ] {
        let guest = linux_guest_with(
            true,
            bond_interfaces(),
            "default via 192.0.2.1 dev bond0 proto static\n",
            "",
            ping,
        );
        let target = target_with(guest, vec![nic.clone()]);
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
        let nic = &vm.nics[0];
        assert_eq!(nic.name.as_deref(), Some("bond0"), "{vm:?}");
        assert_eq!(nic.gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(nic.verdict.state, state, "{vm:?}");
        if state == ServiceState::Critical {
            assert_eq!(nic.verdict.code, Code::GatewayUnreachable);
        }
    }
}

#[test]
fn a_vlan_over_the_nic_in_socket_mode_is_one_nic_with_the_vlans_route() {
    // The parent keeps only a link-local address; the VLAN has the rest.
    let ifaces = json!([
        {"name": "eth0", "hardware-address": MAC,
         "ip-addresses": [{"ip-address": "fe80::5054:ff:feaa:bb01", "prefix": 64}]},
        {"name": "eth0.10", "hardware-address": MAC,
         "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24}]}
    ]);
    let guest = linux_guest_with(
        true,
        ifaces,
        "default via 192.0.2.1 dev eth0.10\n",
        "",
        gateway_dead,
    );
    let (vm, _) = probe(guest, &cfg());
    assert_eq!(vm.nics.len(), 1, "{vm:?}");
    assert_eq!(vm.nics[0].name.as_deref(), Some("eth0.10"));
    assert_eq!(vm.nics[0].verdict.code, Code::GatewayUnreachable, "{vm:?}");
    assert_eq!(vm.verdict.state, ServiceState::Critical);
}

/// The targets of the pings the guest was asked to run, in order.
fn pinged(calls: &CallLog) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, a)| c == "guest-exec" && a.as_ref().unwrap()["path"] == "/bin/ping")
        .map(|(_, a)| a.as_ref().unwrap()["arg"][5].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_ecmp_next_hop_is_checked() {
    let ecmp = "default proto static metric 100 \n\tnexthop via 192.0.2.1 dev eth0 weight 1 \n\tnexthop via 192.0.2.2 dev eth0 weight 1 \n";
    let guest = linux_guest_with(true, interfaces(), ecmp, "", all_ok);
    let (vm, _) = probe(guest, &cfg());
    assert_eq!(vm.verdict.state, ServiceState::Ok, "{vm:?}");
    let guest = linux_guest_with(true, interfaces(), ecmp, "", gateway_192_0_2_1_only);
    let (vm, calls) = probe(guest, &cfg());
    let nic = &vm.nics[0];
    assert_eq!(nic.verdict.code, Code::GatewayUnreachable, "{vm:?}");
    assert!(nic.verdict.reason.contains("192.0.2.2"), "{vm:?}");
    assert_eq!(nic.gateway, Some("192.0.2.2".parse().unwrap()));
    assert_eq!(pinged(&calls), ["192.0.2.1", "192.0.2.2", "198.51.100.1"]);
}

#[test]
fn an_ipv6_only_default_route_is_read_by_the_exec_fallback() {
    let ifaces = json!([
        {"name": "eth0", "hardware-address": MAC,
         "ip-addresses": [{"ip-address": "2001:db8::10", "prefix": 64},
                          {"ip-address": "fe80::10", "prefix": 64}]}
    ]);
    let guest = linux_guest_with(
        true,
        ifaces,
        "",
        "default via fe80::1 dev eth0 proto ra metric 1024 expires 1798sec hoplimit 64 pref medium\n",
        all_ok,
    );
    let (vm, calls) = probe(guest, &cfg());
    let nic = &vm.nics[0];
    assert_eq!(nic.gateway, Some("fe80::1".parse().unwrap()), "{vm:?}");
    assert_eq!(nic.verdict.state, ServiceState::Ok, "{vm:?}");
    let args: Vec<Value> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "guest-exec")
        .map(|(_, a)| a.as_ref().unwrap()["arg"].clone())
        .collect();
    assert!(args.contains(&json!(["-6", "route", "show", "default"])));
    assert!(args.iter().any(|a| a[5] == "fe80::1%eth0"), "{args:?}");
}

#[test]
fn a_ping_that_exits_0_without_a_reply_cannot_tell() {
    fn silent(_: &str) -> (i64, &'static str) {
        (0, "")
    }
    let (vm, _) = probe(linux_guest(true, silent), &cfg());
    assert_eq!(vm.nics[0].verdict.code, Code::PingError, "{vm:?}");
    assert_eq!(vm.verdict.state, ServiceState::Unknown);
}

#[test]
fn a_gateway_that_is_the_guests_own_address_or_loopback_is_flagged_not_pinged() {
    for (route, why) in [
        (
            "default via 192.0.2.10 dev eth0\n",
            "the guest's own address",
        ),
        ("default via 127.0.0.1 dev eth0\n", "loopback"),
    ] {
        let guest = linux_guest_with(true, interfaces(), route, "", all_ok);
        let (vm, calls) = probe(guest, &cfg());
        let nic = &vm.nics[0];
        assert_eq!(nic.verdict.code, Code::GatewayInvalid, "{vm:?}");
        assert_eq!(nic.verdict.state, ServiceState::Warning);
        assert!(nic.verdict.reason.contains(why), "{vm:?}");
        assert_eq!(
            pinged(&calls),
            ["198.51.100.1"],
            "only the external is pinged"
        );
    }
}

#[test]
fn vm_settings_choose_the_external_address_and_nic_types() {
    let mut target = target_with(
        linux_guest(true, all_ok),
        vec![NicConfig {
            mac: MAC.into(),
            network: Some("lan".into()),
            ..NicConfig::default()
        }],
    );
    target.settings = Ok(VmSettings {
        external: Some("203.0.113.9".parse().unwrap()),
        nic_kinds: vec![(MAC.into(), NicKind::External)],
        ..VmSettings::default()
    });
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
    assert_eq!(vm.nics[0].kind, NicKind::External);
    let ext = vm.external.as_ref().expect("external applies");
    assert_eq!(ext.address, "203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(ext.verdict.state, ServiceState::Ok);

    // An internal-only VM by its own setting: no external ping at all.
    let mut target = target_with(linux_guest(true, all_ok), vec![]);
    target.settings = Ok(VmSettings {
        nic_kinds: vec![(MAC.into(), NicKind::Internal)],
        ..VmSettings::default()
    });
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
    assert_eq!(vm.nics[0].kind, NicKind::Internal);
    assert!(vm.external.is_none(), "{:?}", vm.external);

    // --no-exec pings nothing, whatever the VM's settings say.
    let mut target = target_with(linux_guest(true, all_ok), vec![]);
    target.settings = Ok(VmSettings {
        external: Some("203.0.113.9".parse().unwrap()),
        ..VmSettings::default()
    });
    let no_exec = ProbeConfig {
        external: None,
        no_exec: true,
        ..cfg()
    };
    let vm = probe_vm(&target, &no_exec, Instant::now() + Duration::from_secs(5));
    assert!(vm.external.is_none());
}

/// A target whose agent must never be asked anything.
fn untouchable(lifecycle: Lifecycle) -> (VmTarget, CallLog) {
    let transport = linux_guest(true, all_ok);
    let calls = transport.calls();
    let mut target = target_with(
        transport,
        vec![NicConfig {
            mac: MAC.into(),
            ..NicConfig::default()
        }],
    );
    target.lifecycle = lifecycle;
    (target, calls)
}

#[test]
fn paused_and_migrating_vms_are_reported_without_asking_the_agent() {
    use crate::inventory::PauseReason;
    for (lifecycle, state, code, reason) in [
        (
            Lifecycle::Paused(PauseReason::User),
            ServiceState::Warning,
            Code::Paused,
            "VM paused by the user",
        ),
        (
            Lifecycle::Paused(PauseReason::IoError),
            ServiceState::Critical,
            Code::PausedError,
            "VM paused on a disk I/O error",
        ),
        (
            Lifecycle::Migrating,
            ServiceState::Ok,
            Code::Migrating,
            "VM migrating to another host",
        ),
    ] {
        let (target, calls) = untouchable(lifecycle);
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(1));
        assert_eq!(
            (
                vm.verdict.state,
                vm.verdict.code,
                vm.verdict.reason.as_str()
            ),
            (state, code, reason)
        );
        assert_eq!(vm.agent.verdict.code, code);
        assert_eq!(vm.nics[0].verdict.code, code, "every check says why");
        assert_eq!(vm.external.as_ref().unwrap().verdict.code, code);
        assert!(calls.lock().unwrap().is_empty(), "{lifecycle:?}");
        assert_eq!(vm.agent_commands, 0);
    }
}

#[test]
fn maintenance_never_alerts_and_invalid_settings_say_why() {
    // Maintenance wins over anything the host says, also a failure.
    let (mut target, calls) =
        untouchable(Lifecycle::Paused(crate::inventory::PauseReason::IoError));
    target.settings = Ok(VmSettings {
        maintenance: Some("disk swap, CHG-1".into()),
        ..VmSettings::default()
    });
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(1));
    assert_eq!(
        (
            vm.verdict.state,
            vm.verdict.code,
            vm.verdict.reason.as_str()
        ),
        (
            ServiceState::Ok,
            Code::Maintenance,
            "in maintenance (libvirt metadata): disk swap, CHG-1"
        )
    );
    assert_eq!(vm.nics[0].verdict.code, Code::Maintenance);
    assert!(calls.lock().unwrap().is_empty());

    let (mut target, calls) = untouchable(Lifecycle::Running);
    target.settings =
        Err("invalid vmnetprobe metadata: <external> 'x' is not an IP address".into());
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(1));
    assert_eq!(
        (vm.verdict.state, vm.verdict.code),
        (ServiceState::Unknown, Code::MetadataInvalid)
    );
    assert!(vm.verdict.reason.contains("'x' is not an IP address"));
    assert!(
        calls.lock().unwrap().is_empty(),
        "half-valid settings are not used"
    );
}

/// qemu-ga 7.2 while `virsh domfsfreeze` holds: guest-info lists every
/// command, all but the freeze allow-list switched off, and refuses them.
fn frozen_guest(frozen_at_info: bool) -> FakeTransport {
    let mut commands = linux_commands(true);
    commands.push(("guest-fsfreeze-status", true));
    if frozen_at_info {
        for c in commands.iter_mut() {
            if c.0 != "guest-fsfreeze-status" {
                c.1 = false;
            }
        }
    }
    let disabled = |command: &str| AgentError::Disabled {
        command: command.into(),
    };
    FakeTransport::new()
        .reply("guest-info", guest_info("7.2.22", &commands))
        .reply("guest-fsfreeze-status", json!("frozen"))
        .reply(
            "guest-get-osinfo",
            json!({"id": "debian", "kernel-release": "6.1.0"}),
        )
        .fail(
            "guest-network-get-interfaces",
            disabled("guest-network-get-interfaces"),
        )
        .fail("guest-exec", disabled("guest-exec"))
}

#[test]
fn a_frozen_guest_is_frozen_not_unsupported() {
    for frozen_at_info in [true, false] {
        let transport = frozen_guest(frozen_at_info);
        let calls = transport.calls();
        let target = target_with(
            transport,
            vec![NicConfig {
                mac: MAC.into(),
                ..NicConfig::default()
            }],
        );
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
        assert_eq!(
            (vm.verdict.state, vm.verdict.code),
            (ServiceState::Warning, Code::Frozen),
            "frozen at guest-info: {frozen_at_info}: {vm:?}"
        );
        assert!(
            vm.verdict.reason.contains("frozen"),
            "{}",
            vm.verdict.reason
        );
        assert_eq!(
            vm.agent.version.as_deref(),
            Some("7.2.22"),
            "the agent answered"
        );
        assert_eq!(vm.nics[0].verdict.code, Code::Frozen);
        assert_eq!(vm.external.as_ref().unwrap().verdict.code, Code::Frozen);
        let calls = calls.lock().unwrap();
        assert!(calls.iter().any(|(c, _)| c == "guest-fsfreeze-status"));
        assert!(!calls.iter().any(|(c, _)| c == "guest-exec"), "nothing run");
    }
}

#[test]
fn a_blocked_command_on_a_thawed_agent_is_not_frozen() {
    let mut commands = linux_commands(true);
    commands.retain(|c| c.0 != "guest-network-get-interfaces");
    commands.push(("guest-network-get-interfaces", false));
    commands.push(("guest-fsfreeze-status", true));
    let transport = FakeTransport::new()
        .reply("guest-info", guest_info("7.2.22", &commands))
        .reply("guest-fsfreeze-status", json!("thawed"))
        .reply("guest-get-osinfo", json!({"id": "debian"}));
    let (vm, _) = probe(transport, &cfg());
    assert_ne!(vm.verdict.code, Code::Frozen, "{vm:?}");
    // Without a NIC list from the host there is nothing to check.
    assert_eq!(vm.agent.verdict.code, Code::Ok);
}

#[test]
fn agent_failures_during_an_outgoing_migration_are_migrating() {
    // The agent stops answering mid-probe; asked afterwards, the host says
    // an outgoing migration job is running.
    for lifecycle in [
        Lifecycle::Migrating,
        Lifecycle::Paused(crate::inventory::PauseReason::User),
        Lifecycle::Running,
    ] {
        let transport = FakeTransport::new()
            .reply("guest-info", guest_info("7.2.22", &linux_commands(true)))
            .fail(
                "guest-get-osinfo",
                AgentError::Timeout {
                    command: "guest-get-osinfo".into(),
                },
            );
        let mut target = target_with(FakeTransport::new(), vec![]);
        target.connector = Box::new(OneShotConnector::new(transport).with_lifecycle(lifecycle));
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
        let want = match lifecycle {
            Lifecycle::Migrating => (ServiceState::Ok, Code::Migrating),
            Lifecycle::Paused(_) => (ServiceState::Warning, Code::Paused),
            _ => (ServiceState::Unknown, Code::AgentTimeout),
        };
        assert_eq!((vm.verdict.state, vm.verdict.code), want, "{lifecycle:?}");
        if lifecycle == Lifecycle::Migrating {
            assert_eq!(
                vm.verdict.reason,
                "VM migrating to another host (guest agent not answering (guest-get-osinfo timed out))"
            );
            assert_eq!(vm.external.as_ref().unwrap().verdict.code, Code::Migrating);
        }
    }
}

/// An SELinux-confined qemu-ga: every program it starts is refused, with
/// the text the agent sends (classified as the transports do).
fn confined_guest(deny_ip: bool) -> FakeTransport {
    let refused = |path: &str| {
        crate::qga::classify_agent_error(
            "guest-exec",
            Some("GenericError"),
            &format!("Guest agent command failed, error was 'Failed to execute child process “{path}” (Permission denied)'"),
        )
    };
    FakeTransport::new()
        .reply("guest-info", guest_info("7.2.22", &linux_commands(true)))
        .reply(
            "guest-get-osinfo",
            json!({"id": "rhel", "kernel-release": "5.14.0"}),
        )
        .reply("guest-network-get-interfaces", interfaces())
        .handle("guest-exec", move |args| {
            let path = args.and_then(|a| a["path"].as_str()).unwrap_or_default();
            if path.ends_with("/ip") && !deny_ip {
                return Ok(json!({"pid": 7}));
            }
            Err(refused(path))
        })
        .reply(
            "guest-exec-status",
            json!({"exited": true, "exitcode": 0,
                   "out-data": b64("default via 192.0.2.1 dev eth0 proto static\n")}),
        )
}

#[test]
fn a_confined_agent_that_refuses_ping_is_exec_denied_with_the_hint() {
    let nics = vec![NicConfig {
        mac: MAC.into(),
        ..NicConfig::default()
    }];
    for deny_ip in [false, true] {
        let target = target_with(confined_guest(deny_ip), nics.clone());
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
        assert_eq!(
            (vm.verdict.state, vm.verdict.code),
            (ServiceState::Unknown, Code::ExecDenied),
            "ip denied too: {deny_ip}: {vm:?}"
        );
        assert!(
            vm.verdict.reason.contains("Permission denied"),
            "{}",
            vm.verdict.reason
        );
        assert!(
            vm.verdict.reason.contains("virt_qemu_ga_run_unconfined"),
            "{}",
            vm.verdict.reason
        );
        assert_eq!(vm.nics[0].verdict.code, Code::ExecDenied, "not no_gateway");
        assert_eq!(vm.external.as_ref().unwrap().verdict.code, Code::ExecDenied);
        if !deny_ip {
            assert_eq!(vm.nics[0].gateway, Some("192.0.2.1".parse().unwrap()));
            assert!(vm.nics[0].verdict.reason.contains("/bin/ping"));
        }
    }
}

#[test]
fn exec_refused_after_guest_info_asks_whether_the_guest_froze_meanwhile() {
    let mut commands = linux_commands(true);
    commands.push(("guest-fsfreeze-status", true));
    let disabled = AgentError::Disabled {
        command: "guest-exec".into(),
    };
    let transport = FakeTransport::new()
        .reply("guest-info", guest_info("7.2.22", &commands))
        .reply("guest-get-osinfo", json!({"id": "debian"}))
        .reply("guest-network-get-interfaces", interfaces())
        .fail("guest-exec", disabled)
        .reply("guest-fsfreeze-status", json!("frozen"));
    let calls = transport.calls();
    let target = target_with(
        transport,
        vec![NicConfig {
            mac: MAC.into(),
            network_addresses: vec![("192.0.2.1".parse().unwrap(), 24)],
            ..NicConfig::default()
        }],
    );
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
    assert_eq!(
        (vm.verdict.state, vm.verdict.code),
        (ServiceState::Warning, Code::Frozen),
        "{vm:?}"
    );
    let asked = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "guest-fsfreeze-status")
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn maintenance_that_has_ended_is_probed_as_usual() {
    use std::time::{Duration as D, SystemTime};
    let nics = vec![NicConfig {
        mac: MAC.into(),
        ..NicConfig::default()
    }];
    for (until, want) in [
        (SystemTime::now() - D::from_secs(60), Code::Ok),
        (SystemTime::now() + D::from_secs(3600), Code::Maintenance),
    ] {
        let mut target = target_with(linux_guest(true, all_ok), nics.clone());
        target.settings = Ok(VmSettings {
            maintenance: Some("disk swap".into()),
            maintenance_until: Some(until),
            ..VmSettings::default()
        });
        let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
        assert_eq!(vm.verdict.code, want, "{vm:?}");
        if want == Code::Maintenance {
            assert!(
                vm.verdict.reason.contains("disk swap, until 20"),
                "{}",
                vm.verdict.reason
            );
        }
    }
}

#[test]
fn more_than_4096_guest_interfaces_keep_the_nic_that_matters() {
    let mut list: Vec<Value> = (0..5000)
        .map(|i| json!({"name": format!("veth{i}"), "hardware-address": format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)}))
        .collect();
    list.push(json!({"name": "eth0", "hardware-address": MAC,
        "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24}]}));
    let guest = linux_guest_with(
        true,
        Value::Array(list),
        "default via 192.0.2.1 dev eth0\n",
        "",
        all_ok,
    );
    let nic = NicConfig {
        mac: MAC.into(),
        ..NicConfig::default()
    };
    let target = target_with(guest, vec![nic]);
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
    assert_eq!(vm.verdict.state, ServiceState::Ok, "{:?}", vm.verdict);
    assert_eq!(vm.nics[0].name.as_deref(), Some("eth0"));
}

#[test]
fn a_command_cut_by_the_run_deadline_is_timed_out_not_a_silent_agent() {
    // guest-info takes longer than the run has left: the transport gives up
    // at the deadline, as the socket transport does.
    let slow = linux_guest(true, all_ok).handle("guest-info", |_| {
        std::thread::sleep(Duration::from_millis(250));
        Err(AgentError::Timeout {
            command: "guest-info".into(),
        })
    });
    let target = target_with(slow, vec![]);
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_millis(240));
    assert_eq!(vm.verdict.code, Code::TimedOut, "{}", vm.verdict.reason);
    // Its own --command-timeout running out well before the deadline is the
    // agent's doing.
    let silent = linux_guest(true, all_ok).fail(
        "guest-info",
        AgentError::Timeout {
            command: "guest-info".into(),
        },
    );
    let target = target_with(silent, vec![]);
    let vm = probe_vm(&target, &cfg(), Instant::now() + Duration::from_secs(5));
    assert_eq!(vm.verdict.code, Code::AgentTimeout);
}
