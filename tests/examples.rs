//! The examples a newcomer runs first are run here, so they cannot rot:
//! the demo script and the library example, both against a real qemu-ga.

mod common;

use common::{bin, stdout, AgentLab, LabOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/vmnetprobe → target/<profile>/examples/<name>
    let exe = bin();
    let dir = exe.parent().expect("binary dir");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .status()
            .expect("cargo build --example");
        assert!(status.success());
    }
    path
}

#[test]
fn probe_socket_example_reports_a_healthy_agent() {
    if !common::require_real("probe_socket_example") {
        return;
    }
    let lab = AgentLab::start(LabOptions::default());
    let out = common::run_command(
        Command::new(example_binary("probe_socket"))
            .arg(&lab.socket)
            .arg(lab.external.to_string()),
        Duration::from_secs(60),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("vm OK (linux)"), "{text}");
    assert!(text.contains("gateway 192.0.2.1: OK"), "{text}");
    assert!(text.contains("external 198.51.100.1: OK"), "{text}");
}

#[test]
fn probe_socket_example_refuses_bad_input() {
    let out = common::run_command(
        Command::new(example_binary("probe_socket")).args(["/nonexistent.sock", "not-an-ip"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn demo_script_shows_every_mode() {
    if !common::require_real("demo_script") {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo.sh");
    // The demo builds nothing here (VMNETPROBE_BIN) but starts an agent and
    // probes in every mode: minutes at most even on a loaded machine.
    let out = common::run_command(
        Command::new("bash")
            .arg(script)
            .env("VMNETPROBE_BIN", bin()),
        Duration::from_secs(300),
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "$ vmnetprobe status ",
        "VMNETPROBE OK - web01",
        "{#VM.NAME}",
        "{#NIC.MAC}",
        "vmnetprobe_vm,",
        "\"vms\":",
        "VMNETPROBE CRITICAL - web01: external 203.0.113.1 unreachable",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let leftover = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !stdout(&leftover).contains("vmnp-demo"),
        "demo left namespaces behind"
    );
}
