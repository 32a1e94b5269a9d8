//! vmnetprobe against a real qemu-ga on a unix socket, inside network
//! namespaces made by the test: healthy, external unreachable, exec blocked,
//! agent killed mid-run, agent gone — in every output mode.

mod common;

use common::{stdout, vm, vmnetprobe, vmnetprobe_with_stdin_steps, AgentLab, LabOptions};
use serde_json::Value;
use std::time::{Duration, Instant};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Every mode for one socket, with `extra` arguments; returns (mode, output).
fn all_modes(socket: &str, extra: &[&str]) -> Vec<(&'static str, std::process::Output)> {
    let modes: [(&str, &[&str]); 7] = [
        ("nagios", &["nagios"]),
        ("discover-vms", &["discover", "vms"]),
        ("discover-nics", &["discover", "nics"]),
        ("zabbix", &["zabbix"]),
        ("telegraf", &["telegraf"]),
        ("status", &["status"]),
        ("status-json", &["status", "--json"]),
    ];
    modes
        .iter()
        .map(|(name, mode)| {
            let mut args: Vec<&str> = mode.to_vec();
            args.extend_from_slice(&["--socket", socket]);
            args.extend_from_slice(extra);
            (*name, vmnetprobe(&args))
        })
        .collect()
}

/// Checks what holds in every mode whatever the VM's state.
fn check_common(outputs: &[(&str, std::process::Output)], state: &str, exit: i32) {
    for (mode, out) in outputs {
        assert!(
            out.stderr.is_empty(),
            "{mode}: stderr must stay empty: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = stdout(out);
        match *mode {
            "nagios" => {
                let first = text.lines().next().unwrap_or_default();
                assert!(first.starts_with(&format!("VMNETPROBE {state}")), "{first}");
                assert_eq!(out.status.code(), Some(exit), "{text}");
            }
            "discover-vms" | "discover-nics" => {
                let rows: Value = json(out);
                assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{text}");
                assert_eq!(rows[0]["{#VM.NAME}"], "vm1");
            }
            "zabbix" | "status-json" => {
                assert_eq!(vm(&json(out), "vm1")["state"], state, "{mode}");
            }
            "telegraf" => {
                assert_eq!(out.status.code(), Some(0));
                assert!(
                    text.lines()
                        .any(|l| l.starts_with("vmnetprobe_vm,") && l.contains(",vm=vm1 ")),
                    "{text}"
                );
                assert!(text.ends_with('\n'));
            }
            "status" => assert!(text.contains("vm1") && text.contains(state), "{text}"),
            _ => unreachable!(),
        }
    }
}

#[test]
fn healthy_agent_every_mode() {
    if !common::require_real("healthy_agent_every_mode") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let ext = lab.external.to_string();
    let socket = lab.socket_arg("vm1");
    let outputs = all_modes(&socket, &["--external", &ext]);
    check_common(&outputs, "OK", 0);

    let doc = json(&outputs.iter().find(|(m, _)| *m == "status-json").unwrap().1);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["os"], "linux");
    assert_eq!(vm1["agent"]["exec_enabled"], true);
    let nic = &vm1["nics"][0];
    assert_eq!(nic["name"], "eth0");
    assert_eq!(nic["ips"][0], lab.guest_ip.to_string());
    assert_eq!(nic["gateway"], lab.gateway.to_string());
    assert_eq!(nic["state"], "OK");
    assert!(nic["rtt_ms"].as_f64().is_some_and(|r| r >= 0.0), "{nic}");
    assert_eq!(vm1["external"]["address"], ext);
    assert_eq!(vm1["external"]["state"], "OK");
    let nagios = stdout(&outputs[0].1);
    assert!(nagios.contains("ms;"), "perfdata with RTT: {nagios}");
    let nics: Value = json(
        &outputs
            .iter()
            .find(|(m, _)| *m == "discover-nics")
            .unwrap()
            .1,
    );
    assert_eq!(nics[0]["{#NIC.GATEWAY}"], lab.gateway.to_string());
    assert_eq!(nics[0]["{#NIC.NAME}"], "eth0");
}

#[test]
fn external_unreachable_is_critical_while_the_gateway_is_ok() {
    if !common::require_real("external_unreachable") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let unreachable = lab.unreachable.to_string();
    let outputs = all_modes(&lab.socket_arg("vm1"), &["--external", &unreachable]);
    check_common(&outputs, "CRITICAL", 2);
    let doc = json(&outputs.iter().find(|(m, _)| *m == "zabbix").unwrap().1);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["code"], "external_unreachable");
    assert_eq!(vm1["external"]["state"], "CRITICAL");
    assert_eq!(vm1["nics"][0]["state"], "OK");
    let nagios = stdout(&outputs[0].1);
    assert!(
        nagios.contains(&format!("external {unreachable} unreachable")),
        "{nagios}"
    );
}

#[test]
fn no_route_in_the_guest_is_external_unreachable() {
    if !common::require_real("no_route") {
        return;
    }
    let lab = AgentLab::start(LabOptions {
        no_default_route: true,
        ..LabOptions::default()
    });
    let ext = lab.external.to_string();
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--socket",
        &lab.socket_arg("vm1"),
        "--external",
        &ext,
    ]);
    let doc = json(&out);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["external"]["code"], "external_unreachable", "{vm1}");
    assert!(vm1["external"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("no route"));
    assert_eq!(vm1["nics"][0]["code"], "no_gateway");
    assert_eq!(vm1["nics"][0]["state"], "OK");
}

#[test]
fn exec_blocked_by_the_guest_is_unknown_exec_disabled() {
    if !common::require_real("exec_blocked") {
        return;
    }
    let lab = AgentLab::start(LabOptions {
        block_rpcs: Some("guest-exec,guest-exec-status".into()),
        ..LabOptions::default()
    });
    let ext = lab.external.to_string();
    let outputs = all_modes(&lab.socket_arg("vm1"), &["--external", &ext]);
    check_common(&outputs, "UNKNOWN", 3);
    let doc = json(&outputs.iter().find(|(m, _)| *m == "status-json").unwrap().1);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["agent"]["state"], "OK");
    assert_eq!(vm1["agent"]["exec_enabled"], false);
    assert_eq!(vm1["code"], "exec_disabled");
    assert_eq!(vm1["external"]["code"], "exec_disabled");
    assert!(stdout(&outputs[0].1).contains("guest-exec disabled"));
}

#[test]
fn agent_killed_mid_run_ends_promptly_with_a_reason() {
    if !common::require_real("agent_killed_mid_run") {
        return;
    }
    let mut lab = AgentLab::start(LabOptions::default());
    let unreachable = lab.unreachable.to_string();
    let socket = lab.socket_arg("vm1");
    // A 3 s ping to a silent address keeps the probe busy while the agent dies.
    let runner = std::thread::spawn(move || {
        let args = [
            "status",
            "--json",
            "--socket",
            &socket,
            "--external",
            &unreachable,
            "--ping-timeout",
            "3s",
            "-t",
            "8s",
        ];
        let started = Instant::now();
        (vmnetprobe(&args), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(700));
    lab.kill_agent();
    let (out, took) = runner.join().expect("runner");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let doc = json(&out);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["state"], "UNKNOWN", "{vm1}");
    assert_eq!(vm1["code"], "agent_disconnected", "{vm1}");
    assert!(out.stderr.is_empty());
}

#[test]
fn dead_agent_and_missing_socket_are_distinct_unknowns() {
    if !common::require_real("dead_agent") {
        return;
    }
    let mut lab = AgentLab::start(LabOptions::default());
    lab.kill_agent();
    let ext = lab.external.to_string();
    let missing = format!("gone={}", lab.dir.join("nope.sock").display());
    let out = vmnetprobe(&[
        "nagios",
        "--socket",
        &lab.socket_arg("vm1"),
        "--socket",
        &missing,
        "--external",
        &ext,
        "-t",
        "3s",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--socket",
        &lab.socket_arg("vm1"),
        "--socket",
        &missing,
        "--external",
        &ext,
    ]);
    let doc = json(&out);
    assert_eq!(vm(&doc, "vm1")["code"], "agent_unreachable");
    assert!(vm(&doc, "vm1")["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("no agent listening"));
    assert_eq!(vm(&doc, "gone")["code"], "agent_unreachable");
    assert!(vm(&doc, "gone")["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("no such socket"));
}

#[test]
fn several_agents_in_one_run_keep_their_own_results() {
    if !common::require_real("several_agents") {
        return;
    }
    let healthy = AgentLab::start(LabOptions::default());
    let blocked = AgentLab::start(LabOptions {
        block_rpcs: Some("guest-exec".into()),
        ..LabOptions::default()
    });
    let ext = healthy.external.to_string();
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--socket",
        &healthy.socket_arg("a-healthy"),
        "--socket",
        &blocked.socket_arg("b-blocked"),
        "--external",
        &ext,
    ]);
    let doc = json(&out);
    assert_eq!(vm(&doc, "a-healthy")["state"], "OK");
    assert_eq!(vm(&doc, "b-blocked")["code"], "exec_disabled");
    let names: Vec<&str> = doc["vms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["a-healthy", "b-blocked"], "sorted by name");
}

#[test]
fn telegraf_execd_emits_one_batch_per_stdin_line() {
    if !common::require_real("telegraf_execd") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let ext = lab.external.to_string();
    let out = vmnetprobe_with_stdin_steps(
        &[
            "telegraf",
            "--execd",
            "--socket",
            &lab.socket_arg("vm1"),
            "--external",
            &ext,
        ],
        // Apart: lines queued while a probe runs are answered by one batch.
        &[
            (Duration::ZERO, b"\n"),
            (Duration::from_millis(1500), b"\n"),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let batches = text
        .lines()
        .filter(|l| l.starts_with("vmnetprobe_run"))
        .count();
    assert_eq!(batches, 2, "{text}");
}

#[test]
fn no_exec_runs_nothing_and_reports_interfaces() {
    if !common::require_real("no_exec") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let gw = lab.gateway.to_string();
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--socket",
        &lab.socket_arg("vm1"),
        "--no-exec",
        "--gateway",
        &gw,
    ]);
    let doc = json(&out);
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["state"], "OK", "{vm1}");
    assert_eq!(vm1["nics"][0]["code"], "not_checked");
    assert!(vm1["external"].is_null());
    let log = std::fs::read_to_string(lab.dir.join("qga.log")).unwrap_or_default();
    assert!(!log.contains("guest-exec called"), "{log}");
}
