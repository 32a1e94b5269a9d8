//! Gentle on guests, clear for operators: facts remembered between runs
//! (fewer agent commands in steady state), boot grace, debounce, shared
//! results under `--min-interval`, and a state directory that concurrent
//! runs cannot corrupt. First against a scripted agent (counting every
//! command), then against a real qemu-ga in network namespaces.

mod common;

use base64::Engine;
use common::{stdout, vm, vmnetprobe, AgentLab, LabOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmnetprobe::inventory::fake::OneShotConnector;
use vmnetprobe::inventory::{ChannelState, Lifecycle, VmTarget};
use vmnetprobe::memory::facts::{FactBook, FactUpdate, VmStore};
use vmnetprobe::probe::{probe_vm, ProbeConfig};
use vmnetprobe::qga::fake::FakeTransport;
use vmnetprobe::qga::AgentError;
use vmnetprobe::report::{GuestOs, VmReport};
use vmnetprobe::verdict::Code;
use vmnetprobe::verdict::ServiceState;

// ---------------------------------------------------------------------
// Scripted agent: what a steady-state run sends, command by command.
// ---------------------------------------------------------------------

const MAC: &str = "52:54:00:aa:bb:01";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

const PING_OK: &str = "64 bytes from x: icmp_seq=1 ttl=64 time=0.412 ms\n1 packets transmitted, 1 received, 0% packet loss\n";
const PING_LOST: &str = "1 packets transmitted, 0 received, 100% packet loss\n";

/// A guest as older agents and minimal distributions look: no
/// guest-get-osinfo (so the OS is found with the cmd.exe fallback), no
/// guest-network-get-route (so `ip route` runs), `ping` only in
/// /usr/bin. `version` and `exec` shape guest-info; `gateway_answers`
/// decides the gateway ping.
fn old_linux_guest(version: &str, exec: bool, gateway_answers: bool) -> FakeTransport {
    let outputs: Arc<Mutex<BTreeMap<i64, Value>>> = Arc::default();
    let next_pid = Arc::new(Mutex::new(100i64));
    let outputs_exec = Arc::clone(&outputs);
    let commands: Vec<Value> = [
        ("guest-network-get-interfaces", true),
        ("guest-exec", exec),
        ("guest-exec-status", exec),
    ]
    .iter()
    .map(|(name, enabled)| json!({"name": name, "enabled": enabled}))
    .collect();
    FakeTransport::new()
        .reply(
            "guest-info",
            json!({"version": version, "supported_commands": commands}),
        )
        .reply(
            "guest-network-get-interfaces",
            json!([{"name": "eth0", "hardware-address": MAC,
                    "ip-addresses": [{"ip-address": "192.0.2.10", "prefix": 24}]}]),
        )
        .handle("guest-exec", move |args| {
            let args = args.cloned().unwrap_or_default();
            let path = args["path"].as_str().unwrap_or_default().to_string();
            let target = args["arg"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let reply = match path.as_str() {
                "/sbin/ip" => json!({"exited": true, "exitcode": 0,
                    "out-data": b64("default via 192.0.2.1 dev eth0\n")}),
                "/usr/bin/ping" if target == "192.0.2.1" && !gateway_answers => {
                    json!({"exited": true, "exitcode": 1, "out-data": b64(PING_LOST)})
                }
                "/usr/bin/ping" => json!({"exited": true, "exitcode": 0, "out-data": b64(PING_OK)}),
                other => {
                    return Err(AgentError::Command {
                        command: "guest-exec".into(),
                        desc: format!(
                            "Failed to execute child process “{other}” (No such file or directory)"
                        ),
                    })
                }
            };
            let mut pid = next_pid.lock().expect("pid");
            *pid += 1;
            outputs_exec.lock().expect("outputs").insert(*pid, reply);
            Ok(json!({"pid": *pid}))
        })
        .handle("guest-exec-status", move |args| {
            let pid = args.and_then(|a| a["pid"].as_i64()).unwrap_or(-1);
            outputs
                .lock()
                .expect("outputs")
                .remove(&pid)
                .ok_or(AgentError::Command {
                    command: "guest-exec-status".into(),
                    desc: "Invalid parameter 'pid'".into(),
                })
        })
}

/// One run: the report, every command sent (`guest-exec` with its path),
/// and the facts the run learned (merged into `known` as the app does).
fn run(
    transport: FakeTransport,
    known: &mut BTreeMap<String, vmnetprobe::memory::facts::AgentFacts>,
) -> (VmReport, Vec<String>) {
    let calls = transport.calls();
    let target = VmTarget {
        name: "vm1".into(),
        uuid: Some("u-1".into()),
        cloud: None,
        lifecycle: Lifecycle::Running,
        channel: ChannelState::Connected,
        nics: Vec::new(),
        socket: None,
        settings: Ok(Default::default()),
        connector: Box::new(OneShotConnector::new(transport)),
    };
    let book = Arc::new(FactBook::new(BTreeMap::new(), known.clone()));
    let cfg = ProbeConfig {
        external: Some("198.51.100.1".parse().expect("ip")),
        facts: Some(Arc::clone(&book)),
        ..ProbeConfig::default()
    };
    let report = probe_vm(&target, &cfg, Instant::now() + Duration::from_secs(5));
    for (key, update) in book.take_learned() {
        match update {
            FactUpdate::Store(facts) => {
                known.insert(key, facts);
            }
            FactUpdate::Forget => {
                known.remove(&key);
            }
        }
    }
    let sent = calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(command, args)| match (command.as_str(), args) {
            ("guest-exec", Some(a)) => format!("guest-exec {}", a["path"].as_str().unwrap_or("")),
            _ => command.clone(),
        })
        .collect();
    (report, sent)
}

fn count(sent: &[String], command: &str) -> usize {
    sent.iter().filter(|c| c.as_str() == command).count()
}

#[test]
fn steady_state_sends_fewer_commands_and_no_os_or_route_exec() {
    let mut known = BTreeMap::new();
    let (first, cold) = run(old_linux_guest("7.2.22", true, true), &mut known);
    assert_eq!(first.verdict.state, ServiceState::Ok, "{first:?}");
    assert_eq!(first.os, GuestOs::Linux);
    assert_eq!(first.agent_commands as usize, cold.len());
    assert_eq!(count(&cold, "guest-exec cmd.exe"), 1, "{cold:?}");
    assert_eq!(count(&cold, "guest-exec /sbin/ip"), 1);
    assert_eq!(count(&cold, "guest-exec /bin/ping"), 1, "first path tried");

    let (second, warm) = run(old_linux_guest("7.2.22", true, true), &mut known);
    assert_eq!(second.verdict.state, ServiceState::Ok, "{second:?}");
    assert_eq!(second.os, GuestOs::Linux);
    assert_eq!(second.nics[0].gateway, first.nics[0].gateway);
    assert_eq!(second.nics[0].gateway_source, first.nics[0].gateway_source);
    assert_eq!(count(&warm, "guest-info"), 1, "liveness is still checked");
    assert_eq!(count(&warm, "guest-exec cmd.exe"), 0, "{warm:?}");
    assert_eq!(count(&warm, "guest-get-osinfo"), 0);
    assert_eq!(count(&warm, "guest-exec /sbin/ip"), 0);
    assert_eq!(count(&warm, "guest-exec /bin/ping"), 0);
    assert_eq!(count(&warm, "guest-exec /usr/bin/ping"), 2);
    let exec_cold = cold.iter().filter(|c| c.starts_with("guest-exec ")).count();
    let exec_warm = warm.iter().filter(|c| c.starts_with("guest-exec ")).count();
    eprintln!(
        "agent commands per VM: cold {} ({exec_cold} guest-exec), steady {} ({exec_warm} guest-exec)\n  cold:   {cold:?}\n  steady: {warm:?}",
        cold.len(),
        warm.len()
    );
    assert!(warm.len() < cold.len());
    assert_eq!(exec_warm, 2, "only the two pings");
}

#[test]
fn a_new_agent_version_or_command_list_drops_the_facts() {
    let mut known = BTreeMap::new();
    run(old_linux_guest("7.2.22", true, true), &mut known);
    let (_, upgraded) = run(old_linux_guest("8.0.0", true, true), &mut known);
    assert_eq!(count(&upgraded, "guest-exec cmd.exe"), 1, "{upgraded:?}");
    assert_eq!(count(&upgraded, "guest-exec /sbin/ip"), 1);
    // Restarted with guest-exec blocked: the change shows at once.
    let (blocked, sent) = run(old_linux_guest("8.0.0", false, true), &mut known);
    assert_eq!(blocked.verdict.code, Code::ExecDisabled);
    assert!(
        !sent.iter().any(|c| c.starts_with("guest-exec")),
        "{sent:?}"
    );
    // And an unknown OS is not remembered.
    assert!(known.is_empty(), "{known:?}");
}

#[test]
fn a_gateway_that_stops_answering_is_looked_up_again() {
    let mut known = BTreeMap::new();
    run(old_linux_guest("7.2.22", true, true), &mut known);
    let (down, _) = run(old_linux_guest("7.2.22", true, false), &mut known);
    assert_eq!(down.nics[0].verdict.code, Code::GatewayUnreachable);
    let (_, after) = run(old_linux_guest("7.2.22", true, true), &mut known);
    assert_eq!(count(&after, "guest-exec /sbin/ip"), 1, "{after:?}");
    assert_eq!(count(&after, "guest-exec cmd.exe"), 0, "OS still known");
}

#[test]
fn an_agent_that_fails_is_forgotten() {
    let mut known = BTreeMap::new();
    run(old_linux_guest("7.2.22", true, true), &mut known);
    assert_eq!(known.len(), 1);
    let silent = FakeTransport::new().fail(
        "guest-info",
        AgentError::Timeout {
            command: "guest-info".into(),
        },
    );
    let (report, _) = run(silent, &mut known);
    assert_eq!(report.agent.verdict.code, Code::AgentTimeout);
    assert!(known.is_empty());
}

// ---------------------------------------------------------------------
// The binary: boot grace needs no root (a socket that never answers).
// ---------------------------------------------------------------------

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmnp-gentle-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A socket like QEMU's chardev server while the guest boots: it accepts
/// connections, and nobody answers.
fn silent_socket(dir: &Path) -> PathBuf {
    let path = dir.join("booting.qga");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    path
}

#[test]
fn a_young_vm_whose_agent_is_silent_is_booting_not_failing() {
    let dir = temp_dir("boot");
    let socket = silent_socket(&dir);
    let arg = format!("vm1={}", socket.display());
    let state = dir.join("state");
    let state = state.to_string_lossy().into_owned();
    let base = [
        "--socket",
        arg.as_str(),
        "--external",
        "198.51.100.1",
        "--command-timeout",
        "300ms",
        "-t",
        "2s",
        "--state-dir",
        state.as_str(),
    ];
    let mut args = vec!["nagios"];
    args.extend_from_slice(&base);
    let out = vmnetprobe(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("VMNETPROBE OK - vm1: booting: guest agent not up yet (VM started "),
        "{text}"
    );
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--booting-state", "warning"]);
    let doc = json(&vmnetprobe(&args));
    let vm1 = vm(&doc, "vm1");
    assert_eq!(vm1["code"], "booting", "{vm1}");
    assert_eq!(vm1["state"], "WARNING");
    assert_eq!(vm1["agent"]["code"], "booting");
    // Grace off: the plain agent problem.
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--grace", "0"]);
    let doc = json(&vmnetprobe(&args));
    assert_eq!(vm(&doc, "vm1")["code"], "agent_timeout");
    assert_eq!(vm(&doc, "vm1")["state"], "UNKNOWN");
    // Past the grace period: the plain agent problem too.
    std::thread::sleep(Duration::from_millis(1100));
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--grace", "1s"]);
    let doc = json(&vmnetprobe(&args));
    assert_eq!(vm(&doc, "vm1")["code"], "agent_timeout");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_that_need_state_say_so() {
    let out = vmnetprobe(&[
        "nagios",
        "--socket",
        "a=/nonexistent",
        "--external",
        "198.51.100.1",
        "--no-state",
        "--fail-after",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stdout(&out),
        "VMNETPROBE UNKNOWN - --fail-after needs a writable state directory (--state-dir DIR)\n"
    );
}

// ---------------------------------------------------------------------
// Real qemu-ga.
// ---------------------------------------------------------------------

/// `(agent commands, guest-exec)` from the `-v` line of VM `name`.
fn agent_commands(stderr: &[u8], name: &str) -> (usize, usize) {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .filter(|l| l.starts_with(&format!("vmnetprobe: {name} ")))
        .find_map(|l| {
            let (_, rest) = l.split_once(" ms, ")?;
            let (commands, rest) = rest.split_once(" agent commands, ")?;
            let (execs, _) = rest.split_once(" guest-exec")?;
            Some((commands.parse().ok()?, execs.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no command count for {name} in {text}"))
}

fn store(dir: &Path) -> VmStore {
    let text = std::fs::read_to_string(dir.join("vms.json")).expect("vms.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vms.json ({e}): {text}"))
}

#[test]
fn real_agent_state_survives_between_runs_and_saves_commands() {
    if !common::require_real("real_agent_state_survives") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let state = lab.dir.join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let ext = lab.external.to_string();
    let socket = lab.socket_arg("vm1");
    let args = [
        "status",
        "--json",
        "-v",
        "--socket",
        &socket,
        "--external",
        &ext,
        "--state-dir",
        &state_arg,
    ];
    let cold = vmnetprobe(&args);
    let warm = vmnetprobe(&args);
    let (cold_doc, warm_doc) = (json(&cold), json(&warm));
    assert_eq!(vm(&cold_doc, "vm1")["state"], "OK", "{cold_doc}");
    assert_eq!(vm(&warm_doc, "vm1")["state"], "OK", "{warm_doc}");
    assert_eq!(
        vm(&warm_doc, "vm1")["nics"][0]["gateway"],
        lab.gateway.to_string()
    );
    let (n_cold, n_warm) = (
        agent_commands(&cold.stderr, "vm1"),
        agent_commands(&warm.stderr, "vm1"),
    );
    eprintln!(
        "real qemu-ga, per VM (agent commands, guest-exec): cold {n_cold:?}, steady {n_warm:?}"
    );
    // qemu-ga 7.2 has guest-get-osinfo but no guest-network-get-route:
    // cold = osinfo + `ip route` + 2 pings; steady = the 2 pings. The
    // exec-status polls vary with timing, hence no exact total.
    assert_eq!(
        (n_cold.1, n_warm.1),
        (3, 2),
        "cold {n_cold:?}, steady {n_warm:?}"
    );
    assert!(n_warm.0 < n_cold.0, "cold {n_cold:?}, steady {n_warm:?}");
    let saved = store(&state);
    let key = format!("socket:{}", lab.socket.display());
    let facts = saved.vms[&key].facts.as_ref().expect("facts kept");
    assert_eq!(facts.os, GuestOs::Linux);
    assert!(facts.ping_path.is_some(), "{facts:?}");
    assert!(facts.routes.is_some(), "{facts:?}");

    // Restarted with guest-exec blocked: the next run sees it, and the
    // facts of the old agent are dropped.
    let mut lab = lab;
    lab.kill_agent();
    let restarted = vmnetprobe(&args);
    assert_eq!(vm(&json(&restarted), "vm1")["state"], "UNKNOWN");
    assert!(
        store(&state).vms[&key].facts.is_none(),
        "forgotten while down"
    );
    lab.start_agent();
    let again = vmnetprobe(&args);
    assert_eq!(vm(&json(&again), "vm1")["state"], "OK");
    assert_eq!(agent_commands(&again.stderr, "vm1").1, 3, "learned again");
    assert!(store(&state).vms[&key].facts.is_some());
}

#[test]
fn real_agent_debounce_counts_failures_across_runs() {
    if !common::require_real("real_agent_debounce") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let state = lab.dir.join("state").to_string_lossy().into_owned();
    let unreachable = lab.unreachable.to_string();
    let socket = lab.socket_arg("vm1");
    let args = [
        "nagios",
        "--socket",
        &socket,
        "--external",
        &unreachable,
        "--state-dir",
        &state,
        "--fail-after",
        "3",
    ];
    for (n, state_word, exit) in [(1, "WARNING", 1), (2, "WARNING", 1), (3, "CRITICAL", 2)] {
        let out = vmnetprobe(&args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(exit), "run {n}: {text}");
        assert!(
            text.starts_with(&format!("VMNETPROBE {state_word} - ")),
            "{text}"
        );
        if n < 3 {
            assert!(
                text.contains(&format!("unreachable ({n} of 3 failures)"))
                    || text.contains(&format!("({n} of 3 failures)")),
                "run {n}: {text}"
            );
        } else {
            assert!(!text.contains("failures)"), "{text}");
        }
    }
    // A good run resets the streak: the address answers for a while.
    lab.in_router(&["addr", "add", &format!("{unreachable}/32"), "dev", "lo"]);
    let good = vmnetprobe(&args);
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    lab.in_router(&["addr", "del", &format!("{unreachable}/32"), "dev", "lo"]);
    let text = stdout(&vmnetprobe(&args));
    assert!(text.contains("(1 of 3 failures)"), "{text}");
}

#[test]
fn real_agent_min_interval_shares_one_result() {
    if !common::require_real("real_agent_min_interval") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let state = lab.dir.join("state").to_string_lossy().into_owned();
    let ext = lab.external.to_string();
    let socket = lab.socket_arg("vm1");
    let with = |mode: &[&str]| {
        let mut args: Vec<&str> = mode.to_vec();
        args.extend_from_slice(&[
            "--socket",
            &socket,
            "--external",
            &ext,
            "--state-dir",
            &state,
            "--min-interval",
            "30s",
        ]);
        vmnetprobe(&args)
    };
    let first = json(&with(&["status", "--json"]));
    assert_eq!(first["cached"], false);
    std::thread::sleep(Duration::from_millis(50));
    let second = json(&with(&["zabbix"]));
    assert_eq!(second["cached"], true, "{second}");
    assert!(
        second["age_ms"].as_f64().is_some_and(|a| a >= 50.0),
        "{second}"
    );
    assert_eq!(
        second["timestamp_ns"], first["timestamp_ns"],
        "the same probe"
    );
    let nagios = stdout(&with(&["nagios"]));
    assert!(nagios.contains("(shared result: probed "), "{nagios}");
    let telegraf = stdout(&with(&["telegraf"]));
    assert!(telegraf.contains(",cached=true,age_ms="), "{telegraf}");
    // RTT thresholds are the caller's own: the shared replies are judged
    // by them (a Nagios service with -w/-c and a Zabbix item share a probe).
    let strict = json(&with(&["status", "--json", "-w", "0.001"]));
    assert_eq!(strict["cached"], true, "{strict}");
    let vm1 = &strict["vms"][0];
    assert_eq!(vm1["state"], "WARNING", "{strict}");
    assert_eq!(vm1["external"]["code"], "rtt_high", "{strict}");
    assert!(
        vm1["external"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside warning range 0.001")),
        "{strict}"
    );
    assert_eq!(json(&with(&["status", "--json"]))["vms"][0]["state"], "OK");
    // Options that change what is probed are another selection: probed anew.
    let mut args = vec![
        "status",
        "--json",
        "--socket",
        &socket,
        "--external",
        &ext,
        "--state-dir",
        &state,
        "--min-interval",
        "30s",
        "--ping-timeout",
        "2s",
    ];
    let other = json(&vmnetprobe(&args));
    assert_eq!(other["cached"], false);
    args.truncate(8);
    assert_eq!(
        json(&vmnetprobe(&args))["cached"],
        false,
        "no --min-interval"
    );
}

#[test]
fn real_agent_concurrent_runs_do_not_corrupt_the_state() {
    if !common::require_real("real_agent_concurrent") {
        return;
    }
    let healthy = AgentLab::start(LabOptions::default());
    let second = AgentLab::start(LabOptions::default());
    let state = healthy.dir.join("state").to_string_lossy().into_owned();
    let ext = healthy.external.to_string();
    let (a, b) = (healthy.socket_arg("a"), second.socket_arg("b"));
    for shared in [false, true] {
        let modes: [&[&str]; 8] = [
            &["status", "--json", "-v"],
            &["zabbix", "-v"],
            &["nagios", "-v"],
            &["telegraf", "-v"],
            &["status", "--json", "-v"],
            &["zabbix", "-v"],
            &["nagios", "-v"],
            &["telegraf", "-v"],
        ];
        let handles: Vec<_> = modes
            .iter()
            .map(|mode| {
                let mut args: Vec<String> = mode.iter().map(|s| s.to_string()).collect();
                args.extend(
                    [
                        "--socket",
                        &a,
                        "--socket",
                        &b,
                        "--external",
                        &ext,
                        "--state-dir",
                        &state,
                        "--fail-after",
                        "2",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                if shared {
                    args.extend(["--min-interval".to_string(), "60s".to_string()]);
                }
                std::thread::spawn(move || {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    (args[0].clone(), vmnetprobe(&refs))
                })
            })
            .collect();
        let mut fresh_probes = 0;
        for handle in handles {
            let (mode, out) = handle.join().expect("runner");
            let text = stdout(&out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("agent commands") {
                fresh_probes += 1;
            }
            match mode.as_str() {
                "status" | "zabbix" => {
                    let doc = json(&out);
                    assert_eq!(vm(&doc, "a")["state"], "OK", "{doc}");
                    assert_eq!(vm(&doc, "b")["state"], "OK", "{doc}");
                }
                "nagios" => {
                    assert!(text.starts_with("VMNETPROBE OK - 2 VMs: 2 OK |"), "{text}");
                    assert_eq!(out.status.code(), Some(0));
                }
                "telegraf" => {
                    assert_eq!(
                        text.lines()
                            .filter(|l| l.starts_with("vmnetprobe_vm,"))
                            .count(),
                        2
                    );
                    assert!(text
                        .lines()
                        .all(|l| l.ends_with(|c: char| c.is_ascii_digit())));
                }
                _ => unreachable!(),
            }
        }
        let saved = store(Path::new(&state));
        for lab in [&healthy, &second] {
            let key = format!("socket:{}", lab.socket.display());
            assert!(saved.vms[&key].facts.is_some(), "{saved:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&state)
            .expect("state dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        if shared {
            // One caller probed; the seven others waited and shared its result.
            assert_eq!(fresh_probes, 1, "probes with --min-interval");
            let results: Vec<PathBuf> = std::fs::read_dir(&state)
                .expect("state dir")
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        n.to_string_lossy().starts_with("result-")
                            && n.to_string_lossy().ends_with(".json")
                    })
                })
                .collect();
            assert_eq!(results.len(), 1, "{results:?}");
            let stored: vmnetprobe::memory::facts::StoredResult =
                serde_json::from_slice(&std::fs::read(&results[0]).expect("read")).expect("parses");
            assert_eq!(stored.report.vms.len(), 2);
        } else {
            assert_eq!(fresh_probes, 8);
        }
    }
}

/// Per-VM services (a check per VM, `-d`) within `--min-interval` share one
/// probe of the whole host, each taking its own VM from it; a VM the host
/// does not have is still answered for itself.
#[test]
fn per_vm_checks_share_one_probe_of_the_whole_host() {
    if !common::require_real("per_vm_checks_share_one_probe") {
        return;
    }
    let mut lab = AgentLab::start(LabOptions::default());
    let sockets = lab.add_agents(12);
    let glob = sockets[0]
        .parent()
        .expect("agents' directory")
        .join("*.sock")
        .to_string_lossy()
        .into_owned();
    let state = lab.dir.join("state").to_string_lossy().into_owned();
    let ext = lab.external.to_string();
    let check = |vm: &str| {
        json(&vmnetprobe(&[
            "status",
            "--json",
            "--socket-glob",
            &glob,
            "--external",
            &ext,
            "--state-dir",
            &state,
            "--min-interval",
            "60s",
            "-d",
            vm,
        ]))
    };
    let mut stamps = std::collections::BTreeSet::new();
    for (i, socket) in sockets.iter().enumerate() {
        let name = socket.file_stem().and_then(|s| s.to_str()).expect("name");
        let doc = check(name);
        let vms = doc["vms"].as_array().expect("vms");
        assert_eq!(vms.len(), 1, "{doc}");
        assert_eq!(vms[0]["name"], name, "{doc}");
        assert_eq!(vms[0]["state"], "OK", "{doc}");
        assert_eq!(doc["cached"], i > 0, "only the first check probes: {doc}");
        stamps.insert(doc["timestamp_ns"].to_string());
    }
    assert_eq!(stamps.len(), 1, "one probe for all: {stamps:?}");
    // Not on this host: probed alone, and the answer is its own.
    let missing = check("no-such-vm");
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-vm")),
        "{missing}"
    );
}
