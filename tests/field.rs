//! Field reliability against a real qemu-ga (issue 15): guest network
//! setups and broken guest binaries that used to give a wrong answer. Each
//! test builds its case inside the network namespaces it created
//! (tests/common): a bridge over the NIC, an interface that shares the
//! NIC's MAC, an ECMP default route, an IPv6-only default route, a `ping`
//! that exits 0 without a reply. Needs root, qemu-ga and iproute2.
//!
//! The host kernel here has no bonding and no 802.1Q driver, so bonds and
//! VLANs are covered by scripted agents replaying qemu-ga's replies
//! (src/probe/tests.rs); a passthru macvlan stands in for an interface that
//! shares the NIC's MAC on top of it, as a VLAN or a bond does.

mod common;

use common::{stdout, vm, vmnetprobe, AgentLab, LabOptions};
use serde_json::Value;

fn status(lab: &AgentLab, extra: &[&str]) -> Value {
    let socket = lab.socket_arg("guest");
    let mut args = vec![
        "status",
        "--json",
        "--socket",
        &socket,
        "-t",
        "8s",
        "--no-state",
        "--grace",
        "0",
    ];
    args.extend_from_slice(extra);
    let out = vmnetprobe(&args);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The guest VM and its one NIC (socket mode: one NIC per guest MAC).
fn only_nic(doc: &Value) -> (&Value, &Value) {
    let guest = vm(doc, "guest");
    let nics = guest["nics"].as_array().expect("nics");
    assert_eq!(nics.len(), 1, "{guest}");
    (guest, &nics[0])
}

/// Moves the guest's address and default route from eth0 to `upper`.
fn move_address_to(lab: &AgentLab, upper: &str) {
    lab.in_guest(&["addr", "del", "192.0.2.10/24", "dev", "eth0"]);
    lab.in_guest(&["addr", "add", "192.0.2.10/24", "dev", upper]);
    lab.in_guest(&["link", "set", upper, "up"]);
    lab.in_guest(&[
        "route",
        "replace",
        "default",
        "via",
        "192.0.2.1",
        "dev",
        upper,
    ]);
}

#[test]
fn a_bridge_over_the_nic_is_checked_and_its_dead_gateway_is_critical() {
    if !common::require_real("a_bridge_over_the_nic_is_checked_and_its_dead_gateway_is_critical") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let mac = lab.guest_mac();
    lab.in_guest(&["link", "add", "br0", "type", "bridge"]);
    lab.in_guest(&["link", "set", "br0", "address", &mac]);
    lab.in_guest(&["link", "set", "eth0", "master", "br0"]);
    move_address_to(&lab, "br0");
    let external = lab.external.to_string();
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["mac"], mac.as_str(), "{guest}");
    assert_eq!(nic["name"], "br0", "{guest}");
    assert_eq!(nic["gateway"], "192.0.2.1", "{guest}");
    assert_eq!(nic["state"], "OK", "{guest}");
    assert_eq!(guest["state"], "OK", "{guest}");

    // The gateway dies: the bridge's check says so.
    lab.in_router(&["addr", "del", "192.0.2.1/24", "dev", "up0"]);
    let doc = status(&lab, &["--external", &external, "--ping-timeout", "1s"]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["state"], "CRITICAL", "{guest}");
    assert_eq!(nic["code"], "gateway_unreachable", "{guest}");
    assert_eq!(guest["state"], "CRITICAL", "{guest}");
}

#[test]
fn an_interface_sharing_the_nics_mac_with_the_route_is_the_one_checked() {
    if !common::require_real("an_interface_sharing_the_nics_mac_with_the_route_is_the_one_checked")
    {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let mac = lab.guest_mac();
    // passthru: the macvlan takes its lower device's MAC, as a VLAN does.
    lab.in_guest(&[
        "link", "add", "link", "eth0", "name", "mv0", "type", "macvlan", "mode", "passthru",
    ]);
    move_address_to(&lab, "mv0");
    let external = lab.external.to_string();
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["mac"], mac.as_str(), "{guest}");
    assert_eq!(nic["name"], "mv0", "{guest}");
    assert_eq!(nic["state"], "OK", "{guest}");
    lab.in_router(&["addr", "del", "192.0.2.1/24", "dev", "up0"]);
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["code"], "gateway_unreachable", "{guest}");
}

#[test]
fn every_next_hop_of_an_ecmp_default_route_is_checked() {
    if !common::require_real("every_next_hop_of_an_ecmp_default_route_is_checked") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    lab.in_router(&["addr", "add", "192.0.2.2/24", "dev", "up0"]);
    lab.in_guest(&[
        "route",
        "replace",
        "default",
        "nexthop",
        "via",
        "192.0.2.1",
        "dev",
        "eth0",
        "nexthop",
        "via",
        "192.0.2.2",
        "dev",
        "eth0",
    ]);
    let external = lab.external.to_string();
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["state"], "OK", "{guest}");
    assert_eq!(guest["state"], "OK", "{guest}");

    // One next hop dies; the other still answers.
    lab.in_router(&["addr", "del", "192.0.2.2/24", "dev", "up0"]);
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["code"], "gateway_unreachable", "{guest}");
    assert_eq!(nic["gateway"], "192.0.2.2", "{guest}");
    let reason = nic["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("192.0.2.2"), "{guest}");
}

#[test]
fn an_ipv6_only_default_route_is_found_without_the_route_command() {
    if !common::require_real("an_ipv6_only_default_route_is_found_without_the_route_command") {
        return;
    }
    // qemu-ga 7.2 has no guest-network-get-route: the exec fallback reads it.
    let lab = AgentLab::start(LabOptions {
        no_default_route: true,
        ..LabOptions::default()
    });
    lab.in_router(&["addr", "add", "fe80::1/64", "dev", "up0", "nodad"]);
    lab.in_router(&["addr", "add", "2001:db8::1/64", "dev", "up0", "nodad"]);
    lab.in_router(&["addr", "add", "2001:db8:ffff::1/128", "dev", "lo"]);
    lab.in_guest(&["addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad"]);
    lab.in_guest(&["addr", "add", "fe80::10/64", "dev", "eth0", "nodad"]);
    lab.in_guest(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
    ]);
    let doc = status(&lab, &["--external", "2001:db8:ffff::1"]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["gateway"], "fe80::1", "{guest}");
    assert_eq!(nic["state"], "OK", "{guest}");
    assert_eq!(guest["state"], "OK", "{guest}");

    lab.in_router(&["addr", "del", "fe80::1/64", "dev", "up0"]);
    let doc = status(&lab, &["--external", "2001:db8:ffff::1"]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["code"], "gateway_unreachable", "{guest}");
    assert_eq!(guest["state"], "CRITICAL", "{guest}");
}

#[test]
fn a_ping_that_exits_0_without_a_reply_cannot_tell() {
    if !common::require_real("a_ping_that_exits_0_without_a_reply_cannot_tell") {
        return;
    }
    let lab = AgentLab::start(LabOptions {
        ping_wrapper: Some("#!/bin/sh\nexit 0\n".into()),
        ..LabOptions::default()
    });
    // The unreachable address would be OK if exit 0 were trusted.
    let unreachable = lab.unreachable.to_string();
    let doc = status(&lab, &["--external", &unreachable]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["state"], "UNKNOWN", "{guest}");
    assert_eq!(nic["code"], "ping_error", "{guest}");
    assert!(
        nic["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no reply line"),
        "{guest}"
    );
    assert_eq!(guest["external"]["code"], "ping_error", "{guest}");
    assert_eq!(guest["state"], "UNKNOWN", "{guest}");
}

#[test]
fn a_gateway_that_is_the_guests_own_address_is_flagged_not_pinged() {
    if !common::require_real("a_gateway_that_is_the_guests_own_address_is_flagged_not_pinged") {
        return;
    }
    // The kernel refuses such a route; `--gateway` (for guests without a
    // default route) takes any address, and a guest would answer itself.
    let lab = AgentLab::start(LabOptions {
        no_default_route: true,
        ..LabOptions::default()
    });
    let own = lab.guest_ip.to_string();
    let doc = status(&lab, &["--external", &own, "--gateway", &own]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["state"], "WARNING", "{guest}");
    assert_eq!(nic["code"], "gateway_invalid", "{guest}");
    assert!(
        nic["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the guest's own address"),
        "{guest}"
    );
}

// ---- state that cannot be kept, callers that wait ------------------------

/// `status --json` with `--fail-after 3` on an external address that never
/// answers: CRITICAL unsmoothed, WARNING "(1 of 3 failures)" smoothed.
fn outage_args<'a>(socket: &'a str, state: &'a str, unreachable: &'a str) -> Vec<&'a str> {
    vec![
        "status",
        "--json",
        "--socket",
        socket,
        "--external",
        unreachable,
        "--ping-timeout",
        "1s",
        "-t",
        "8s",
        "--grace",
        "0",
        "--fail-after",
        "3",
        "--state-dir",
        state,
    ]
}

fn check_unsmoothed(doc: &Value, why: &str) {
    let guest = vm(doc, "guest");
    assert_eq!(guest["external"]["state"], "CRITICAL", "{guest}");
    assert_eq!(guest["state"], "CRITICAL", "{guest}");
    let reason = guest["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("--fail-after not applied: state not kept: ") && reason.contains(why),
        "{guest}"
    );
}

#[test]
fn fail_after_whose_streak_cannot_be_kept_says_so_and_alerts() {
    if !common::require_real("fail_after_whose_streak_cannot_be_kept_says_so_and_alerts") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let socket = lab.socket_arg("guest");
    let unreachable = lab.unreachable.to_string();

    // Another run holds the lock for longer than a run waits (1 s).
    let state = lab.dir.join("state-busy");
    std::fs::create_dir_all(&state).expect("state dir");
    let held = std::fs::File::create(state.join("vms.lock")).expect("lock file");
    held.lock().expect("hold the lock");
    let state_arg = state.to_string_lossy().into_owned();
    let out = vmnetprobe(&outage_args(&socket, &state_arg, &unreachable));
    drop(held);
    check_unsmoothed(&json_of(&out), "vms.lock held by another run");

    // A lock file of another user in a shared directory.
    let state = lab.dir.join("state-foreign");
    std::fs::create_dir_all(&state).expect("state dir");
    let lock = state.join("vms.lock");
    std::fs::write(&lock, "").expect("lock file");
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).expect("chown");
    let state_arg = state.to_string_lossy().into_owned();
    let out = vmnetprobe(&outage_args(&socket, &state_arg, &unreachable));
    check_unsmoothed(&json_of(&out), "owned by uid 65534");

    // A full disk: a tiny tmpfs, filled, in a mount namespace of the run's own.
    let state = lab.dir.join("state-full");
    std::fs::create_dir_all(&state).expect("state dir");
    let state_arg = state.to_string_lossy().into_owned();
    let script = format!(
        "mount -t tmpfs -o size=64k,mode=0750 tmpfs {state_arg} && (head -c 1M /dev/zero > {state_arg}/fill 2>/dev/null; exec \"$@\")"
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(common::bin())
        .args(outage_args(&socket, &state_arg, &unreachable));
    let out = common::run_with_limit(cmd, None, "vmnetprobe on a full disk");
    check_unsmoothed(&json_of(&out), "No space left on device");
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn callers_in_an_outage_wait_for_the_running_probe_and_share_it() {
    if !common::require_real("callers_in_an_outage_wait_for_the_running_probe_and_share_it") {
        return;
    }
    // Each probe takes ~5 s (the external never answers): longer than half
    // of -t, which is where waiting callers used to give up and probe too.
    let lab = AgentLab::start(LabOptions::default());
    let socket = lab.socket_arg("guest");
    let unreachable = lab.unreachable.to_string();
    let state = lab.dir.join("state").to_string_lossy().into_owned();
    let args = [
        "status",
        "--json",
        "--socket",
        &socket,
        "--external",
        &unreachable,
        "--ping-timeout",
        "5s",
        "-t",
        "9s",
        "--grace",
        "0",
        "--state-dir",
        &state,
        "--min-interval",
        "60s",
    ];
    let docs: Vec<Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let args = &args;
                scope.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(150 * i));
                    json_of(&vmnetprobe(args))
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("caller"))
            .collect()
    });
    let probed = docs.iter().filter(|d| d["cached"] == false).count();
    assert_eq!(probed, 1, "one probe for four callers: {docs:?}");
    for doc in &docs {
        assert_eq!(doc["timestamp_ns"], docs[0]["timestamp_ns"], "{doc}");
        let guest = vm(doc, "guest");
        assert_eq!(guest["external"]["code"], "external_unreachable", "{guest}");
    }
}

#[test]
fn a_password_in_the_connect_uri_is_never_printed_or_stored() {
    let dir = std::env::temp_dir().join(format!("vmnp-field-uri-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_string_lossy().into_owned();
    // Port 1 on loopback: nobody listens, the connection is refused.
    let uri = "qemu+tcp://admin:s3cr3t@127.0.0.1:1/system";
    for mode in [&["nagios"][..], &["status", "--json"], &["telegraf"]] {
        let mut args = mode.to_vec();
        args.extend_from_slice(&[
            "--connect",
            uri,
            "--external",
            "198.51.100.1",
            "-t",
            "5s",
            "--state-dir",
            &state,
            "--min-interval",
            "30s",
            "-v",
        ]);
        let out = vmnetprobe(&args);
        let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains("s3cr3t"), "{all}");
        assert!(all.contains("admin@127.0.0.1:1"), "{all}");
    }
    for entry in std::fs::read_dir(&dir).expect("state dir").flatten() {
        let text = std::fs::read(entry.path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("s3cr3t"),
            "{}",
            entry.path().display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The state file follows the VMs libvirt runs: after a full listing the
/// VMs it no longer has are dropped (a cloud host churns through
/// thousands a month). Against libvirt's own test driver.
#[test]
fn the_state_file_keeps_only_the_vms_libvirt_still_runs() {
    let dir = std::env::temp_dir().join(format!("vmnp-field-churn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let gone: serde_json::Map<String, Value> = (0..1200)
        .map(|i| {
            let vm = serde_json::json!({"name": format!("old{i}"), "seen_ms": 1_790_000_000_000u64 + i,
                "source": "libvirt:test:///default"});
            (format!("uuid:00000000-0000-0000-0000-{i:012}"), vm)
        })
        .collect();
    let elsewhere =
        serde_json::json!({"name": "x", "seen_ms": 1_790_000_000_000u64, "source": "sockets"});
    let mut vms = gone;
    vms.insert("socket:/run/other.qga".into(), elsewhere);
    std::fs::write(
        dir.join("vms.json"),
        serde_json::json!({"format": 1, "vms": vms}).to_string(),
    )
    .expect("seed");
    let state = dir.to_string_lossy().into_owned();
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--connect",
        "test:///default",
        "--external",
        "198.51.100.1",
        "--state-dir",
        &state,
        "-t",
        "5s",
    ]);
    assert_eq!(vm(&json_of(&out), "test")["code"], "no_agent_channel");
    let text = std::fs::read_to_string(dir.join("vms.json")).expect("vms.json");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let keys: Vec<&String> = doc["vms"].as_object().expect("vms").keys().collect();
    // The test driver's one running domain; the socket entry's file is gone too.
    assert_eq!(
        keys,
        ["uuid:6695eb01-f6a4-8304-79aa-97f2502e193f"],
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn telegraf_execd_skips_a_non_utf8_line_and_answers_queued_lines_with_one_batch() {
    if !common::require_real("telegraf_execd_skips_a_non_utf8_line") {
        return;
    }
    // Each probe takes ~2 s (the external never answers): the three lines
    // written meanwhile queue up and get one batch.
    let lab = AgentLab::start(LabOptions::default());
    let socket = lab.socket_arg("guest");
    let unreachable = lab.unreachable.to_string();
    let out = common::vmnetprobe_with_stdin_steps(
        &[
            "telegraf",
            "--execd",
            "--socket",
            &socket,
            "--external",
            &unreachable,
            "--ping-timeout",
            "2s",
            "--grace",
            "0",
            "--no-state",
        ],
        &[
            (std::time::Duration::ZERO, b"\xff\xfe not UTF-8\n\n"),
            (std::time::Duration::from_millis(500), b"\n\n\n"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let batches = text
        .lines()
        .filter(|l| l.starts_with("vmnetprobe_run"))
        .count();
    assert_eq!(batches, 2, "{text}");
}

#[test]
fn ping_denied_names_the_real_cause_not_the_first_stderr_line() {
    if !common::require_real("ping_denied_names_the_real_cause") {
        return;
    }
    // As an unprivileged or confined ping prints it, after a warning.
    let lab = AgentLab::start(LabOptions {
        ping_wrapper: Some(
            "#!/bin/sh\necho 'ping: WARNING: capability cap_net_raw not set, trying ICMP sockets' >&2\necho 'ping: socket: Operation not permitted' >&2\nexit 2\n".into(),
        ),
        ..LabOptions::default()
    });
    let external = lab.external.to_string();
    let doc = status(&lab, &["--external", &external]);
    let (guest, nic) = only_nic(&doc);
    assert_eq!(nic["code"], "ping_denied", "{guest}");
    assert_eq!(
        nic["reason"], "ping not permitted in the guest: ping: socket: Operation not permitted",
        "{guest}"
    );
}
