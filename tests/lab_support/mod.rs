//! What both libvirt-lab tests share: driving `tests/lab/lab.sh`, tearing the
//! lab down on drop, reading its manifest, and splitting line protocol into
//! raw tag and field values.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

pub fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

pub fn state_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("VMNETPROBE_LAB_STATE").unwrap_or_else(|_| "/run/vmnetprobe-lab".into()),
    )
}

/// The lab tests' gate: false (the test passes as skipped) without
/// `VMNETPROBE_LAB=1`; with it, every missing prerequisite fails the test.
pub fn require_lab(what: &str) -> bool {
    if std::env::var("VMNETPROBE_LAB").as_deref() != Ok("1") {
        println!("skipped: set VMNETPROBE_LAB=1 to run the {what} (root, Debian 12; see tests/lab/README.md)");
        return false;
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "VMNETPROBE_LAB=1 needs root"
    );
    assert!(lab_script().is_file(), "{} missing", lab_script().display());
    true
}

/// What every lab run of vmnetprobe is given: the lab's libvirt, its
/// internet host as `--external` (nothing else is pinged), no state between
/// runs, no boot grace, and RTT thresholds far above what TCG guests need,
/// so only reachability decides.
pub fn probe_args(
    internet: &str,
    external_network: &str,
    timeout: &str,
    ping_timeout: &str,
) -> Vec<String> {
    [
        "--connect",
        "qemu:///system",
        "--external",
        internet,
        "--external-network",
        external_network,
        "--no-state",
        "--grace",
        "0",
        "--timeout",
        timeout,
        "--ping-timeout",
        ping_timeout,
        "-w",
        "2000",
        "-c",
        "5000",
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `lab.sh ARGS`, its output inherited so the lab's progress lands in
/// the CI log; `tag` prefixes this test's own log line.
pub fn lab(tag: &str, args: &[&str]) -> bool {
    eprintln!("[{tag}] tests/lab/lab.sh {}", args.join(" "));
    match Command::new("bash").arg(lab_script()).args(args).status() {
        Ok(s) => s.success(),
        Err(e) => panic!("cannot run bash {}: {e}", lab_script().display()),
    }
}

/// Tears the lab down when the test ends, passes or panics
/// (`VMNETPROBE_LAB_KEEP=1` leaves it up for debugging).
pub struct LabGuard(pub &'static str);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let tag = self.0;
        if std::env::var("VMNETPROBE_LAB_KEEP").as_deref() == Ok("1") {
            eprintln!("[{tag}] VMNETPROBE_LAB_KEEP=1: leaving the lab up (tests/lab/lab.sh down)");
            return;
        }
        if !lab(tag, &["down"]) {
            eprintln!("[{tag}] WARNING: tests/lab/lab.sh down failed");
        }
    }
}

/// A JSON value as text: strings without their quotes.
pub fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// The manifest `lab.sh up` writes (internet host, networks, guests).
pub fn read_manifest() -> Value {
    let path = state_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// One line of InfluxDB line protocol: measurement and unescaped tags, and
/// fields with their raw values (`0i`, `true`, `"quoted"`).
pub struct Line {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, String)>,
}

impl Line {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// One line as the tests' line-protocol reader (InfluxData's parser) reads
/// it, with each field in its wire form (`4i`, `"ok"`, `true`, `0.5`), as
/// the lab's assertions compare them; `None` for a line it refuses.
pub fn parse_line(line: &str) -> Option<Line> {
    use crate::common::line_protocol::{parse, Field};
    let point = parse(line).ok()?;
    point.timestamp?;
    let fields = point
        .fields
        .into_iter()
        .map(|(k, v)| {
            let wire = match v {
                Field::Int(i) => format!("{i}i"),
                Field::Float(x) => x.to_string(),
                Field::Bool(b) => b.to_string(),
                Field::Str(s) => format!("\"{s}\""),
            };
            (k, wire)
        })
        .collect();
    Some(Line {
        measurement: point.measurement,
        tags: point.tags,
        fields,
    })
}

#[test]
fn lines_are_read_by_the_line_protocol_parser_with_wire_form_fields() {
    let line = r#"vmnetprobe_vm,os=linux,vm=web\ 01\,x\=y state_code=2i,reason="gw \"a b\" C:\\x, y",ok=true 17"#;
    let l = parse_line(line).expect("parses");
    assert_eq!(l.measurement, "vmnetprobe_vm");
    assert_eq!(l.tag("vm"), Some("web 01,x=y"));
    assert_eq!(l.field("state_code"), Some("2i"));
    assert_eq!(l.field("reason"), Some(r#""gw "a b" C:\x, y""#));
    assert_eq!(l.field("ok"), Some("true"));
    assert!(parse_line("m f=1").is_none(), "timestamp required");
}
