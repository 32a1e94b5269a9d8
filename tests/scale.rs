//! Host scale against real qemu-ga agents in a network namespace the test
//! made: an uplink outage gives every VM its real verdict whatever `-j`, a
//! QEMU that never accepts costs only its own VM, and many sockets fit in a
//! low open-file limit. States are asserted, never times (BENCHMARKS.md has
//! the figures).

mod common;

use common::{stdout, vm, vmnetprobe, AgentLab, LabOptions};
use serde_json::Value;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use vmnetprobe::qga::socket::unix_addr;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn glob(lab: &AgentLab) -> String {
    format!("{}/more/*.sock", lab.dir.display())
}

#[test]
fn an_uplink_outage_gives_every_vm_its_verdict_with_few_jobs() {
    if !common::require_real("an_uplink_outage_gives_every_vm_its_verdict_with_few_jobs") {
        return;
    }
    let mut lab = AgentLab::start(LabOptions::default());
    lab.add_agents(40);
    // The router has no route for `unreachable` and does not forward:
    // every external ping waits its whole -W and gets no reply.
    let cut = lab.unreachable.to_string();
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--no-state",
        "--grace",
        "0",
        "--socket-glob",
        &glob(&lab),
        "--external",
        &cut,
        "-j",
        "4",
        "-t",
        "3s",
        "--ping-timeout",
        "1s",
    ]);
    let doc = json(&out);
    let vms = doc["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 40, "{doc}");
    for v in vms {
        assert_eq!(v["state"], "CRITICAL", "{v}");
        assert_eq!(v["external"]["code"], "external_unreachable", "{v}");
        assert_eq!(v["nics"][0]["code"], "ok", "gateway still answers: {v}");
    }
}

/// A unix socket with a backlog of 0 and the one connection that fills it:
/// a further `connect()` would block for ever (a QEMU that never accepts).
fn never_accepting(path: &Path) -> (OwnedFd, UnixStream) {
    let (addr, len) = unix_addr(path).expect("socket path");
    // SAFETY: plain socket/bind/listen on a descriptor owned at once.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)) };
    let listening = unsafe {
        libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) == 0
            && libc::listen(fd.as_raw_fd(), 0) == 0
    };
    assert!(listening, "{}", std::io::Error::last_os_error());
    let filler = UnixStream::connect(path).expect("the first connect is queued");
    (fd, filler)
}

#[test]
fn a_socket_that_never_accepts_costs_only_its_own_vm() {
    if !common::require_real("a_socket_that_never_accepts_costs_only_its_own_vm") {
        return;
    }
    let mut lab = AgentLab::start(LabOptions::default());
    let healthy = lab.add_agents(2);
    // Named to sort first: with -j 1 it is tried before the healthy ones.
    let stuck = lab.dir.join("more/a-stuck.sock");
    let _held = never_accepting(&stuck);
    let ext = lab.external.to_string();
    let mut args = vec![
        "status".to_string(),
        "--json".into(),
        "--no-state".into(),
        // The socket is seconds old: no boot grace.
        "--grace".into(),
        "0".into(),
        "--external".into(),
        ext,
        "-j".into(),
        "1".into(),
        "-t".into(),
        "6s".into(),
        "--command-timeout".into(),
        "2s".into(),
        "--socket".into(),
        format!("a-stuck={}", stuck.display()),
    ];
    for (i, s) in healthy.iter().enumerate() {
        args.push("--socket".into());
        args.push(format!("vm{i}={}", s.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let doc = json(&vmnetprobe(&args));
    let stuck = vm(&doc, "a-stuck");
    assert_eq!(stuck["state"], "UNKNOWN", "{stuck}");
    assert_eq!(stuck["code"], "agent_timeout", "{stuck}");
    for name in ["vm0", "vm1"] {
        assert_eq!(vm(&doc, name)["state"], "OK", "{}", vm(&doc, name));
    }
}

/// `count` listeners that queue a connection and never answer (a QEMU whose
/// agent is silent): each holds one of vmnetprobe's descriptors for the
/// whole command timeout.
fn silent_listeners(dir: &Path, count: usize) -> Vec<std::os::unix::net::UnixListener> {
    std::fs::create_dir_all(dir).expect("dir");
    (0..count)
        .map(|i| {
            std::os::unix::net::UnixListener::bind(dir.join(format!("vm{i:04}.sock")))
                .expect("bind")
        })
        .collect()
}

/// Runs `status --json` on every socket in `dir` under an open-file limit
/// `soft:hard` (prlimit, util-linux) and returns the VMs.
fn under_file_limit(dir: &Path, limit: &str) -> Vec<Value> {
    let glob = format!("{}/*.sock", dir.display());
    let nofile = format!("--nofile={limit}");
    let bin = common::bin();
    let bin = bin.to_string_lossy();
    let out = common::run_limited(
        "prlimit",
        &[
            &nofile,
            "--",
            &bin,
            "status",
            "--json",
            "--no-state",
            "--grace",
            "0",
            "--no-exec",
            "--socket-glob",
            &glob,
            "-t",
            "4s",
            "--command-timeout",
            "1s",
            // Every agent here is silent: each holds a -j slot for 250 ms
            // (src/probe/gate.rs), which is not what this test is about.
            "-j",
            "1024",
        ],
    );
    json(&out)["vms"].as_array().expect("vms").clone()
}

#[test]
fn a_thousand_sockets_fit_in_a_low_open_file_limit() {
    let dir = std::env::temp_dir().join(format!("vmnp-nofile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // This test process holds the listeners: it needs the room too.
    vmnetprobe::probe::runner::session_budget(2200);
    let _listeners = silent_listeners(&dir, 1000);

    // Soft 1024 (the default), hard higher: raised, every VM gets its own
    // real verdict at once.
    let vms = under_file_limit(&dir, "1024:8192");
    assert_eq!(vms.len(), 1000);
    for v in &vms {
        assert_eq!(v["code"], "agent_timeout", "{v}");
    }

    // Hard 256: bounded instead; VMs wait for a free session, and those that
    // do not get one in time are "timed out" -- never "Too many open files".
    let vms = under_file_limit(&dir, "256:256");
    assert_eq!(vms.len(), 1000);
    let mut timed_out = 0;
    for v in &vms {
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(!reason.contains("open files"), "{v}");
        match v["code"].as_str() {
            Some("agent_timeout") => {}
            Some("timed_out") => timed_out += 1,
            _ => panic!("{v}"),
        }
    }
    assert!(timed_out < 1000, "some sessions ran");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_collects_the_started_pings_and_ends_without_waiting_for_the_rest() {
    if !common::require_real("sigterm_collects_the_started_pings") {
        return;
    }
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let mut lab = AgentLab::start(LabOptions::default());
    let pinging = lab.add_agents(1);
    let silent_dir = lab.dir.join("silent");
    let _silent = silent_listeners(&silent_dir, 1);
    let cut = lab.unreachable.to_string();
    let child = Command::new(common::bin())
        .args([
            "status",
            "--json",
            "--no-state",
            "--grace",
            "0",
            "--external",
            &cut,
            "--ping-timeout",
            "3s",
            "--command-timeout",
            "8s",
            "-t",
            "20s",
        ])
        .arg("--socket")
        .arg(format!("pinging={}", pinging[0].display()))
        .arg("--socket")
        .arg(format!(
            "silent={}",
            silent_dir.join("vm0000.sock").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmnetprobe");
    // By then the external ping (3 s, no reply) runs and the silent agent
    // holds its session in a read that would last 8 s.
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signals our own child by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        // SAFETY: as above; a no-op if it has exited and was reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("output");
    drop(watchdog);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    // The started pings were collected (which frees their records in
    // qemu-ga): the real verdict, not "timed out".
    let v = vm(&doc, "pinging");
    assert_eq!(v["external"]["code"], "external_unreachable", "{v}");
    assert_eq!(v["nics"][0]["code"], "ok", "{v}");
    // The silent one was not waited for (it would be agent_timeout at 8 s).
    let s = vm(&doc, "silent");
    assert_eq!(s["code"], "timed_out", "{s}");
}
