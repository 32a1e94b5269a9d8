//! A real qemu-ga on a unix socket (tests/common), frozen and thawed, and
//! one whose children are refused: `frozen` and `exec_denied`, end to end.
//!
//! The agent runs on this host's filesystems, so `guest-fsfreeze-freeze`
//! (every filesystem) is blocked in it; the test freezes only a 16 MiB ext4
//! image on a loop device, named with `guest-fsfreeze-freeze-list`.

mod common;

use common::{require_real, run_limited, stdout, vm, vmnetprobe, AgentLab, LabOptions};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One command to the agent on its own connection (qemu-ga serves one
/// client at a time; vmnetprobe is not running meanwhile).
fn agent_command(socket: &Path, command: Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect to qemu-ga");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    writeln!(stream, "{command}").expect("send");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An ext4 image on a loop device, mounted: the only filesystem the test
/// freezes. Thawed, unmounted and detached on drop, also after a failure.
struct FreezableFs {
    image: PathBuf,
    mountpoint: PathBuf,
    device: Option<String>,
}

impl FreezableFs {
    fn new(dir: &Path) -> FreezableFs {
        std::fs::create_dir_all(dir).expect("dir");
        let image = dir.join("fs.img");
        let mountpoint = dir.join("freezable");
        std::fs::create_dir_all(&mountpoint).expect("mountpoint");
        let file = std::fs::File::create(&image).expect("image");
        file.set_len(16 << 20).expect("image size");
        let img = image.to_string_lossy().into_owned();
        ok(&run_limited("mkfs.ext4", &["-q", "-F", &img]), "mkfs.ext4");
        let attach = run_limited("losetup", &["-f", "--show", &img]);
        ok(&attach, "losetup");
        let device = stdout(&attach).trim().to_string();
        let fs = FreezableFs {
            image,
            mountpoint,
            device: Some(device.clone()),
        };
        let mnt = fs.mountpoint.to_string_lossy().into_owned();
        ok(&run_limited("mount", &[&device, &mnt]), "mount");
        fs
    }
}

impl Drop for FreezableFs {
    fn drop(&mut self) {
        let mnt = self.mountpoint.to_string_lossy().into_owned();
        let _ = run_limited("fsfreeze", &["-u", &mnt]);
        let _ = run_limited("umount", &[&mnt]);
        if let Some(device) = self.device.take() {
            let _ = run_limited("losetup", &["-d", &device]);
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

fn status_json(lab: &AgentLab) -> Value {
    let external = lab.external.to_string();
    let socket = lab.socket_arg("vm1");
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--socket",
        &socket,
        "--external",
        &external,
        "--no-state",
        "-t",
        "20s",
    ]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

#[test]
fn a_frozen_agent_is_frozen_and_ok_again_once_thawed() {
    if !require_real("a_frozen_agent_is_frozen_and_ok_again_once_thawed") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vmnp-freeze-{}", std::process::id()));
    // Mounted before the agent starts: its mount namespace is a copy.
    let fs = FreezableFs::new(&dir);
    let lab = AgentLab::start(LabOptions {
        // Never every filesystem of this host: only the list below.
        block_rpcs: Some("guest-fsfreeze-freeze".into()),
        ..LabOptions::default()
    });
    let before = status_json(&lab);
    assert_eq!(vm(&before, "vm1")["state"], "OK", "{before}");

    let frozen = agent_command(
        &lab.socket,
        json!({"execute": "guest-fsfreeze-freeze-list",
               "arguments": {"mountpoints": [fs.mountpoint.to_string_lossy()]}}),
    );
    assert_eq!(frozen["return"], 1, "one filesystem frozen: {frozen}");
    let doc = status_json(&lab);
    let v = vm(&doc, "vm1");
    assert_eq!(
        (v["state"].as_str(), v["code"].as_str()),
        (Some("WARNING"), Some("frozen")),
        "{doc}"
    );
    assert!(
        v["reason"].as_str().unwrap_or("").contains("frozen"),
        "{doc}"
    );
    assert_eq!(v["agent"]["code"], "frozen");
    assert!(
        v["agent"]["version"].is_string(),
        "the agent answered: {doc}"
    );
    for nic in v["nics"].as_array().expect("nics") {
        assert_eq!(nic["code"], "frozen", "{doc}");
    }
    assert_eq!(v["external"]["code"], "frozen");

    let thawed = agent_command(&lab.socket, json!({"execute": "guest-fsfreeze-thaw"}));
    assert_eq!(thawed["return"], 1, "{thawed}");
    let after = status_json(&lab);
    assert_eq!(vm(&after, "vm1")["state"], "OK", "{after}");
    drop(lab);
    drop(fs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_ping_is_exec_denied_with_the_hint() {
    if !require_real("a_refused_ping_is_exec_denied_with_the_hint") {
        return;
    }
    // /usr/bin/ping (which /bin/ping is on merged /usr) without exec
    // permission, in qemu-ga's own mount namespace only.
    let lab = AgentLab::start(LabOptions {
        ping_wrapper: Some("#!/bin/sh\nexit 0\n".into()),
        ping_not_executable: true,
        ..LabOptions::default()
    });
    let doc = status_json(&lab);
    let v = vm(&doc, "vm1");
    assert_eq!(
        (v["state"].as_str(), v["code"].as_str()),
        (Some("UNKNOWN"), Some("exec_denied")),
        "{doc}"
    );
    let reason = v["reason"].as_str().unwrap_or("");
    assert!(reason.contains("Permission denied"), "{reason}");
    assert!(reason.contains("ping"), "{reason}");
    assert!(reason.contains("virt_qemu_ga_run_unconfined"), "{reason}");
    assert_eq!(v["external"]["code"], "exec_denied", "{doc}");
    // The gateway was found (ip runs); only the ping was refused.
    let nic = &v["nics"][0];
    assert_eq!(nic["gateway"], lab.gateway.to_string(), "{doc}");
    assert_eq!(nic["code"], "exec_denied", "{doc}");
}
