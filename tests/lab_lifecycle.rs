//! Lifecycle against real libvirt guests (issue 15): a suspended guest, a
//! guest whose filesystems are frozen, and per-VM settings in the domain
//! metadata, each undone afterwards.
//!
//! Runs only with `VMNETPROBE_LAB=1` (root, Debian 12), like
//! tests/lab_libvirt.rs: `tests/lab/lab.sh up` brings the lab up (tearing
//! down an earlier lab's leftovers), a Drop guard tears it down, also when
//! an assertion fails; another guard resumes, thaws and clears what the test
//! changed, so a failure leaves no paused or frozen guest behind. With
//! `VMNETPROBE_LAB=1` every missing prerequisite is a failure, never a skip.
//!
//! Network rule: every run gets `--external` with the lab's internet host.

use serde_json::Value;
use std::process::Command;
use std::time::Instant;

mod common;
mod lab_support;

use lab_support::{lab, probe_args, read_manifest, require_lab, s, LabGuard};

const BIN: &str = env!("CARGO_BIN_EXE_vmnetprobe");
const TAG: &str = "lab_lifecycle";
const URI: &str = "qemu:///system";
const NS: &str = "urn:vmnetprobe:metadata:1";

fn log(msg: impl AsRef<str>) {
    eprintln!("[{TAG}] {}", msg.as_ref());
}

/// `virsh -c qemu:///system ARGS`, bounded; its output.
fn virsh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["60", "virsh", "-c", URI])
        .args(args)
        .output()
        .map_err(|e| format!("virsh: {e}"))?;
    log(format!(
        "virsh {}: exit {:?}",
        args.join(" "),
        out.status.code()
    ));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn virsh_ok(args: &[&str]) -> String {
    virsh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Undoes what the test did to the guests (best effort, before the lab goes).
struct Undo(Vec<Vec<String>>);

impl Drop for Undo {
    fn drop(&mut self) {
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = virsh(&args);
        }
    }
}

struct Lab {
    internet: String,
    ext_net: String,
    names: Vec<(String, String)>,
}

impl Lab {
    fn name(&self, slug: &str) -> &str {
        &self
            .names
            .iter()
            .find(|(s, _)| s == slug)
            .unwrap_or_else(|| panic!("no guest {slug} in the lab manifest"))
            .1
    }

    /// `status --json` (or another mode) over the whole host, plus `extra`.
    fn run(&self, mode: &[&str], extra: &[&str]) -> (i32, String) {
        let mut args: Vec<String> = mode.iter().map(|m| m.to_string()).collect();
        args.extend(probe_args(&self.internet, &self.ext_net, "60s", "2s"));
        args.extend(extra.iter().map(|x| x.to_string()));
        let t = Instant::now();
        let out = Command::new("timeout")
            .arg("90")
            .arg(BIN)
            .args(&args)
            .output()
            .expect("vmnetprobe");
        log(format!(
            "vmnetprobe {}: exit {:?} in {:.1}s",
            args.join(" "),
            out.status.code(),
            t.elapsed().as_secs_f64()
        ));
        assert!(
            out.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn status(&self) -> Value {
        let (_, text) = self.run(&["status", "--json"], &[]);
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
        for v in doc["vms"].as_array().into_iter().flatten() {
            log(format!("  {}: {} {}", v["name"], v["state"], v["code"]));
        }
        doc
    }
}

impl Lab {
    /// A host-wide `status --json` in which `name` has `state` and `code`;
    /// the document, the VM's reason and the codes of its checks.
    fn expect(&self, name: &str, state: &str, code: &str) -> (Value, String, Vec<String>) {
        let doc = self.status();
        let (got_state, got_code, reason, checks) = verdict(&doc, name);
        assert_eq!(
            (got_state.as_str(), got_code.as_str()),
            (state, code),
            "{name}: {doc:#}"
        );
        (doc, reason, checks)
    }
}

fn vm<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("VM '{name}' missing from a host-wide run:\n{doc:#}"))
}

/// State, code and reason of one VM, and the code of each of its checks.
fn verdict(doc: &Value, name: &str) -> (String, String, String, Vec<String>) {
    let v = vm(doc, name);
    let mut checks: Vec<String> = v["nics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| s(&n["code"]))
        .collect();
    if !v["external"].is_null() {
        checks.push(s(&v["external"]["code"]));
    }
    (s(&v["state"]), s(&v["code"]), s(&v["reason"]), checks)
}

fn paused_and_resumed(lab: &Lab, undo: &mut Undo) {
    let name = lab.name("a").to_string();
    undo.0.push(vec!["resume".into(), name.clone()]);
    virsh_ok(&["suspend", &name]);
    let reason = virsh_ok(&["domstate", "--reason", &name]);
    assert!(reason.contains("paused (user)"), "{reason}");

    let (doc, why, checks) = lab.expect(&name, "WARNING", "paused");
    assert_eq!(why, "VM paused by the user");
    assert!(checks.iter().all(|c| c == "paused"), "{checks:?}");
    assert_eq!(
        doc["vms"].as_array().map(Vec::len),
        Some(6),
        "no VM skipped"
    );
    // Selected by name: the same, not "VM not running"; the state is the option's.
    let (exit, text) = lab.run(&["nagios"], &["-d", &name, "--paused-state", "critical"]);
    assert_eq!(exit, 2, "{text}");
    assert!(text.contains("VM paused by the user"), "{text}");

    virsh_ok(&["resume", &name]);
    lab.expect(&name, "OK", "ok");
}

/// A pause that begins while the probe waits on the guest: the agent call
/// fails, the host is asked again, and the VM is `paused`, not an agent error.
fn paused_mid_probe(lab: &Lab, undo: &mut Undo) {
    let name = lab.name("a").to_string();
    undo.0.push(vec!["resume".into(), name.clone()]);
    assert!(lab_ok(&["cut"])); // the external ping now waits its full 3 s
    let mut args: Vec<String> = ["status", "--json", "-d", &name].map(String::from).to_vec();
    args.extend(probe_args(&lab.internet, &lab.ext_net, "30s", "3s"));
    let t = Instant::now();
    let child = Command::new("timeout")
        .arg("60")
        .arg(BIN)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vmnetprobe");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    virsh_ok(&["suspend", &name]);
    let suspended_at = t.elapsed().as_secs_f64();
    let out = child.wait_with_output().expect("vmnetprobe output");
    log(format!(
        "vmnetprobe {} (suspended at {suspended_at:.1}s): exit {:?} in {:.1}s",
        args.join(" "),
        out.status.code(),
        t.elapsed().as_secs_f64()
    ));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let (state, code, why, _) = verdict(&doc, &name);
    assert_eq!(
        (state.as_str(), code.as_str(), why.as_str()),
        ("WARNING", "paused", "VM paused by the user"),
        "{doc:#}"
    );
    virsh_ok(&["resume", &name]);
    assert!(lab_ok(&["restore"]));
    lab.expect(&name, "OK", "ok");
}

fn frozen_and_thawed(lab: &Lab, undo: &mut Undo) {
    // qemu-ga 7.2 (d) and 10.0 (e)
    for slug in ["d", "e"] {
        let name = lab.name(slug).to_string();
        undo.0.push(vec!["domfsthaw".into(), name.clone()]);
        let frozen = virsh_ok(&["domfsfreeze", &name]);
        log(format!("{name}: {}", frozen.trim()));
        let (doc, why, checks) = lab.expect(&name, "WARNING", "frozen");
        assert!(why.contains("frozen"), "{why}");
        assert!(checks.iter().all(|c| c == "frozen"), "{checks:?}");
        assert!(
            vm(&doc, &name)["agent"]["version"].is_string(),
            "the agent answered"
        );
        virsh_ok(&["domfsthaw", &name]);
        lab.expect(&name, "OK", "ok");
    }
}

fn settings_from_metadata(lab: &Lab, undo: &mut Undo) {
    let name = lab.name("a").to_string();
    let set = |xml: &str| {
        virsh_ok(&[
            "metadata",
            &name,
            "--uri",
            NS,
            "--key",
            "vmnetprobe",
            "--live",
            "--set",
            xml,
        ])
    };
    undo.0.push(
        [
            "metadata",
            &name,
            "--uri",
            NS,
            "--key",
            "vmnetprobe",
            "--live",
            "--remove",
        ]
        .map(String::from)
        .to_vec(),
    );

    // Maintenance: OK whatever happens, even with the external path cut.
    set("<probe><maintenance>kernel update, CHG-42</maintenance></probe>");
    assert!(lab_ok(&["cut"]));
    let (doc, why, checks) = lab.expect(&name, "OK", "maintenance");
    assert_eq!(
        why,
        "in maintenance (libvirt metadata): kernel update, CHG-42"
    );
    assert!(checks.iter().all(|c| c == "maintenance"), "{checks:?}");
    // ... while a healthy guest next to it sees the cut.
    let (_, code, _, _) = verdict(&doc, lab.name("d"));
    assert_eq!(code, "external_unreachable", "{doc:#}");
    assert!(lab_ok(&["restore"]));

    // An address with extra text never becomes a ping argument.
    set("<probe><external>198.51.100.1 -f</external></probe>");
    let (_, why, _) = lab.expect(&name, "UNKNOWN", "metadata_invalid");
    assert!(why.contains("is not an IP address"), "{why}");

    // The VM's own external address and NIC type, from its metadata.
    let ext_mac = s(&read_manifest()["guests"]
        .as_array()
        .and_then(|g| g.iter().find(|g| s(&g["slug"]) == "a"))
        .expect("guest a")["nics"][0]["mac"]);
    set(&format!(
        "<probe><external>{}</external><nic mac=\"{ext_mac}\" type=\"internal\"/></probe>",
        lab.internet
    ));
    let doc = lab.status();
    let v = vm(&doc, &name);
    let nic = v["nics"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["mac"] == ext_mac.as_str()))
        .unwrap_or_else(|| panic!("NIC {ext_mac}: {doc:#}"));
    assert_eq!(nic["type"], "internal", "the VM's setting wins: {doc:#}");
    // No external NIC left on this VM: the external check does not apply.
    assert!(v["external"].is_null(), "{doc:#}");

    virsh_ok(&[
        "metadata",
        &name,
        "--uri",
        NS,
        "--key",
        "vmnetprobe",
        "--live",
        "--remove",
    ]);
    lab.expect(&name, "OK", "ok");
}

fn lab_ok(args: &[&str]) -> bool {
    lab(TAG, args)
}

#[test]
fn lab_lifecycle() {
    if !require_lab("libvirt lifecycle test") {
        return;
    }
    let t0 = Instant::now();
    let _guard = LabGuard(TAG);
    assert!(lab_ok(&["up"]), "tests/lab/lab.sh up failed");
    log(format!("lab up in {:.0}s", t0.elapsed().as_secs_f64()));
    let m = read_manifest();
    let lab = Lab {
        internet: s(&m["internet"]),
        ext_net: s(&m["external_network"]),
        names: m["guests"]
            .as_array()
            .expect("manifest guests")
            .iter()
            .map(|g| (s(&g["slug"]), s(&g["name"])))
            .collect(),
    };
    // Declared after the lab guard: dropped first, while the lab is up.
    let mut undo = Undo(Vec::new());
    for (what, step) in [
        ("paused/resumed", paused_and_resumed as fn(&Lab, &mut Undo)),
        ("paused mid-probe", paused_mid_probe),
        ("frozen/thawed", frozen_and_thawed),
        ("metadata", settings_from_metadata),
    ] {
        let t = Instant::now();
        step(&lab, &mut undo);
        log(format!(
            "{what} passed in {:.0}s",
            t.elapsed().as_secs_f64()
        ));
    }
    log(format!(
        "all checks passed in {:.0}s (lab teardown follows)",
        t0.elapsed().as_secs_f64()
    ));
}
