//! End to end against real libvirt guests (issue 7).
//!
//! Runs only with `VMNETPROBE_LAB=1` (as root, on Debian 12): `tests/lab/lab.sh up` builds or
//! reuses the cached guest image, starts virtlogd + libvirtd inside a network namespace of its own
//! and boots six TCG guests; this test then runs the real `vmnetprobe` binary in every mode
//! against `qemu:///system` and checks the state and code of every VM, NIC and external check,
//! cuts the path to the "internet" host, checks again, restores it. The lab is torn down by a
//! Drop guard, also when an assertion fails. See tests/lab/README.md.
//!
//! With `VMNETPROBE_LAB=1` every missing prerequisite is a failure, never a skip.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
mod lab_support;

use lab_support::{lab, parse_line, probe_args, read_manifest, require_lab, s, LabGuard, Line};

const BIN: &str = env!("CARGO_BIN_EXE_vmnetprobe");

const TAG: &str = "lab_libvirt";

fn lab_cmd(cmd: &str) -> bool {
    lab(TAG, &[cmd])
}

#[derive(Debug, Clone)]
struct Nic {
    mac: String,
    ip: String,
    network: String,
    gateway: String,
}

#[derive(Debug, Clone)]
struct Guest {
    slug: String,
    name: String,
    agent: String,
    nics: Vec<Nic>,
}

struct Lab {
    internet: String,
    ext_net: String,
    guests: Vec<Guest>,
}

fn lab_from_manifest() -> Lab {
    let m = read_manifest();
    let guests = m["guests"]
        .as_array()
        .expect("manifest guests")
        .iter()
        .map(|g| Guest {
            slug: s(&g["slug"]),
            name: s(&g["name"]),
            agent: s(&g["agent"]),
            nics: g["nics"]
                .as_array()
                .expect("manifest nics")
                .iter()
                .map(|n| Nic {
                    mac: s(&n["mac"]),
                    ip: s(&n["ip"]),
                    network: s(&n["network"]),
                    gateway: s(&n["gateway"]),
                })
                .collect(),
        })
        .collect();
    Lab {
        internet: s(&m["internet"]),
        ext_net: s(&m["external_network"]),
        guests,
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    what: String,
}

impl Lab {
    fn target_args(&self) -> Vec<String> {
        // TCG guests on 2 shared cores: generous deadlines
        probe_args(&self.internet, &self.ext_net, "60s", "2s")
    }

    fn run(&self, mode: &[&str], extra: &[&str]) -> Run {
        let mut args: Vec<String> = mode.iter().map(|x| x.to_string()).collect();
        args.extend(self.target_args());
        args.extend(extra.iter().map(|x| x.to_string()));
        let what = format!("vmnetprobe {}", args.join(" "));
        let t = Instant::now();
        let out: Output =
            common::run_command(Command::new(BIN).args(&args), Duration::from_secs(120));
        eprintln!(
            "[lab_libvirt] {what}: exit {:?} in {:.1}s",
            out.status.code(),
            t.elapsed().as_secs_f64()
        );
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    fn json(&self, mode: &[&str], extra: &[&str]) -> (Value, Run) {
        let r = self.run(mode, extra);
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: output is not JSON ({e}); exit {}\nstdout:\n{}\nstderr:\n{}",
                r.what, r.code, r.stdout, r.stderr
            )
        });
        (v, r)
    }

    fn guest(&self, slug: &str) -> &Guest {
        self.guests
            .iter()
            .find(|g| g.slug == slug)
            .unwrap_or_else(|| panic!("no guest {slug} in manifest"))
    }
}

/// Collects every mismatch, then fails once with all of them and the document.
#[derive(Default)]
struct Errors(Vec<String>);
impl Errors {
    fn eq(&mut self, ctx: &str, got: &Value, want: &str) {
        if got.as_str() != Some(want) {
            self.0.push(format!("{ctx}: got {got}, want \"{want}\""));
        }
    }
    fn one_of(&mut self, ctx: &str, got: &Value, want: &[&str]) {
        if !want.iter().any(|w| got.as_str() == Some(w)) {
            self.0
                .push(format!("{ctx}: got {got}, want one of {want:?}"));
        }
    }
    fn check(&mut self, ctx: &str, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("{ctx}: {}", msg()));
        }
    }
    fn finish(self, what: &str, doc: &str) {
        if !self.0.is_empty() {
            panic!(
                "{what}: {} mismatch(es):\n  {}\n--- output ---\n{doc}",
                self.0.len(),
                self.0.join("\n  ")
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Normal,
    ExternalCut,
}

/// Checks a `status --json` / `zabbix` document against what the lab guests must give.
fn check_document(lab: &Lab, doc: &Value, phase: Phase, errs: &mut Errors) {
    let vms = match doc["vms"].as_array() {
        Some(v) => v,
        None => {
            errs.0.push("no \"vms\" array".into());
            return;
        }
    };
    let got: BTreeSet<String> = vms.iter().map(|v| s(&v["name"])).collect();
    let want: BTreeSet<String> = lab.guests.iter().map(|g| g.name.clone()).collect();
    errs.check("vms", got == want, || {
        format!("VM names {got:?}, want {want:?}")
    });

    for g in &lab.guests {
        let Some(vm) = vms
            .iter()
            .find(|v| v["name"].as_str() == Some(g.name.as_str()))
        else {
            continue;
        };
        let c = format!("VM '{}'", g.name);
        errs.check(
            &c,
            vm["uuid"].as_str().is_some_and(|u| u.len() == 36),
            || format!("uuid {}", vm["uuid"]),
        );
        let nics = vm["nics"].as_array().cloned().unwrap_or_default();
        errs.check(&c, nics.len() == g.nics.len(), || {
            format!("{} NICs, want {}", nics.len(), g.nics.len())
        });
        let ext = &vm["external"];
        for n in &g.nics {
            let cn = format!("{c} NIC {}", n.mac);
            let Some(nic) = nics
                .iter()
                .find(|x| x["mac"].as_str().map(str::to_lowercase) == Some(n.mac.clone()))
            else {
                errs.0.push(format!("{cn}: missing"));
                continue;
            };
            errs.eq(&format!("{cn} network"), &nic["network"], &n.network);
            let ty = if n.network == lab.ext_net {
                "external"
            } else {
                "internal"
            };
            errs.eq(&format!("{cn} type"), &nic["type"], ty);
            errs.check(
                &format!("{cn} host_dev"),
                nic["host_dev"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("vnet")),
                || format!("got {}", nic["host_dev"]),
            );
            if g.agent != "none" {
                errs.check(
                    &format!("{cn} ips"),
                    nic["ips"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|i| i.as_str() == Some(n.ip.as_str()))),
                    || format!("got {}, want to contain {}", nic["ips"], n.ip),
                );
                errs.eq(&format!("{cn} gateway"), &nic["gateway"], &n.gateway);
                let src = &nic["gateway_source"];
                if ty == "internal" {
                    // only the external NIC has the default route; the isolated network's <ip>
                    errs.eq(&format!("{cn} gateway_source"), src, "libvirt-network");
                } else if g.agent == "10" {
                    errs.eq(&format!("{cn} gateway_source"), src, "agent-route");
                } else {
                    errs.one_of(
                        &format!("{cn} gateway_source"),
                        src,
                        &["guest-route-table", "libvirt-network"],
                    );
                }
            }
            match g.slug.as_str() {
                "b" => {
                    errs.eq(&format!("{cn} state"), &nic["state"], "UNKNOWN");
                    errs.eq(&format!("{cn} code"), &nic["code"], "exec_disabled");
                }
                "c" => {
                    errs.eq(&format!("{cn} state"), &nic["state"], "UNKNOWN");
                }
                _ => {
                    // the gateway stays reachable also while the external path is cut
                    errs.eq(&format!("{cn} state"), &nic["state"], "OK");
                    errs.eq(&format!("{cn} code"), &nic["code"], "ok");
                    errs.check(
                        &format!("{cn} rtt_ms"),
                        nic["rtt_ms"].as_f64().is_some_and(|r| r >= 0.0),
                        || format!("got {}", nic["rtt_ms"]),
                    );
                }
            }
        }

        let agent = &vm["agent"];
        match g.slug.as_str() {
            "b" => {
                errs.eq(&format!("{c} state"), &vm["state"], "UNKNOWN");
                errs.eq(&format!("{c} code"), &vm["code"], "exec_disabled");
                errs.eq(&format!("{c} agent.state"), &agent["state"], "OK");
                errs.eq(&format!("{c} agent.code"), &agent["code"], "ok");
                errs.check(
                    &format!("{c} agent.exec_enabled"),
                    agent["exec_enabled"] == Value::Bool(false),
                    || format!("got {}", agent["exec_enabled"]),
                );
                errs.eq(&format!("{c} external.state"), &ext["state"], "UNKNOWN");
                errs.eq(&format!("{c} external.code"), &ext["code"], "exec_disabled");
            }
            "c" => {
                let codes = ["agent_not_connected", "agent_timeout"];
                errs.eq(&format!("{c} state"), &vm["state"], "UNKNOWN");
                errs.one_of(&format!("{c} code"), &vm["code"], &codes);
                errs.eq(&format!("{c} agent.state"), &agent["state"], "UNKNOWN");
                errs.one_of(&format!("{c} agent.code"), &agent["code"], &codes);
                errs.check(
                    &format!("{c} external"),
                    ext.is_null() || ext["state"].as_str() == Some("UNKNOWN"),
                    || format!("external {ext}, want null or UNKNOWN"),
                );
            }
            _ => {
                errs.eq(&format!("{c} os"), &vm["os"], "linux");
                errs.eq(&format!("{c} agent.state"), &agent["state"], "OK");
                errs.eq(&format!("{c} agent.code"), &agent["code"], "ok");
                errs.check(
                    &format!("{c} agent.exec_enabled"),
                    agent["exec_enabled"] == Value::Bool(true),
                    || format!("got {}", agent["exec_enabled"]),
                );
                let want_ver = if g.agent == "10" { "10.0." } else { "7.2." };
                errs.check(
                    &format!("{c} agent.version"),
                    agent["version"]
                        .as_str()
                        .is_some_and(|v| v.starts_with(want_ver)),
                    || format!("got {}, want {want_ver}*", agent["version"]),
                );
                errs.eq(
                    &format!("{c} external.address"),
                    &ext["address"],
                    &lab.internet,
                );
                match phase {
                    Phase::Normal => {
                        errs.eq(&format!("{c} state"), &vm["state"], "OK");
                        errs.eq(&format!("{c} code"), &vm["code"], "ok");
                        errs.eq(&format!("{c} external.state"), &ext["state"], "OK");
                        errs.eq(&format!("{c} external.code"), &ext["code"], "ok");
                        errs.check(
                            &format!("{c} external.rtt_ms"),
                            ext["rtt_ms"].as_f64().is_some(),
                            || format!("got {}", ext["rtt_ms"]),
                        );
                    }
                    Phase::ExternalCut => {
                        errs.eq(&format!("{c} state"), &vm["state"], "CRITICAL");
                        errs.eq(&format!("{c} code"), &vm["code"], "external_unreachable");
                        errs.eq(&format!("{c} external.state"), &ext["state"], "CRITICAL");
                        errs.eq(
                            &format!("{c} external.code"),
                            &ext["code"],
                            "external_unreachable",
                        );
                        errs.check(
                            &format!("{c} external.rtt_ms"),
                            ext["rtt_ms"].is_null(),
                            || format!("got {}", ext["rtt_ms"]),
                        );
                    }
                }
            }
        }
    }
}

fn check_status_json(lab: &Lab, phase: Phase) -> Value {
    let (doc, r) = lab.json(&["status", "--json"], &[]);
    let mut errs = Errors::default();
    errs.check("exit", r.code == 0, || {
        format!("exit {}, want 0; stderr: {}", r.code, r.stderr)
    });
    check_document(lab, &doc, phase, &mut errs);
    errs.finish(&r.what, &r.stdout);
    doc
}

fn healthy(lab: &Lab) -> Vec<&Guest> {
    lab.guests
        .iter()
        .filter(|g| g.slug != "b" && g.slug != "c")
        .collect()
}

fn check_nagios(lab: &Lab, phase: Phase) {
    let r = lab.run(&["nagios"], &[]);
    let mut errs = Errors::default();
    let first = r.stdout.lines().next().unwrap_or("");
    // b (exec blocked) and c (no agent) are UNKNOWN; with the path cut the others are CRITICAL
    let (code, word) = match phase {
        Phase::Normal => (3, "UNKNOWN"),
        Phase::ExternalCut => (2, "CRITICAL"),
    };
    errs.check("exit", r.code == code, || {
        format!("exit {}, want {code}", r.code)
    });
    errs.check(
        "status line",
        first.starts_with(&format!("VMNETPROBE {word} - ")),
        || format!("got {first:?}"),
    );
    errs.check(
        "perfdata",
        first.contains(" | ") && first.contains("vms=6"),
        || format!("no 'vms=6' perfdata in {first:?}"),
    );
    for g in &lab.guests {
        errs.check("long output", r.stdout.contains(&g.name), || {
            format!("VM '{}' not mentioned", g.name)
        });
    }
    errs.finish(
        &r.what,
        &format!("{}\n--- stderr ---\n{}", r.stdout, r.stderr),
    );

    // only the healthy guests: OK (exit 0) normally, CRITICAL (exit 2) with the path cut
    let mut extra = Vec::new();
    for g in healthy(lab) {
        extra.push("-d");
        extra.push(g.name.as_str());
    }
    let r = lab.run(&["nagios"], &extra);
    let first = r.stdout.lines().next().unwrap_or("");
    let (code, word) = match phase {
        Phase::Normal => (0, "OK"),
        Phase::ExternalCut => (2, "CRITICAL"),
    };
    let mut errs = Errors::default();
    errs.check("exit", r.code == code, || {
        format!("exit {}, want {code}", r.code)
    });
    errs.check(
        "status line",
        first.starts_with(&format!("VMNETPROBE {word} - ")),
        || format!("got {first:?}"),
    );
    errs.check("perfdata", first.contains("vms=4"), || {
        format!("no 'vms=4' perfdata in {first:?}")
    });
    errs.finish(
        &r.what,
        &format!("{}\n--- stderr ---\n{}", r.stdout, r.stderr),
    );
}

fn check_discovery(lab: &Lab, status: &Value) {
    let uuid_of = |name: &str| -> Value {
        status["vms"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"].as_str() == Some(name)))
            .map(|v| v["uuid"].clone())
            .unwrap_or(Value::Null)
    };

    let (doc, r) = lab.json(&["discover", "vms"], &[]);
    let mut errs = Errors::default();
    errs.check("exit", r.code == 0, || format!("exit {}", r.code));
    let arr = doc.as_array().cloned().unwrap_or_default();
    errs.check(
        "array",
        doc.is_array() && arr.len() == lab.guests.len(),
        || format!("{} entries, want {}", arr.len(), lab.guests.len()),
    );
    for g in &lab.guests {
        let c = format!("vms '{}'", g.name);
        match arr
            .iter()
            .find(|e| e["{#VM.NAME}"].as_str() == Some(g.name.as_str()))
        {
            None => errs.0.push(format!("{c}: missing")),
            Some(e) => {
                errs.check(&c, e["{#VM.UUID}"] == uuid_of(&g.name), || {
                    format!(
                        "{{#VM.UUID}} {} != status uuid {}",
                        e["{#VM.UUID}"],
                        uuid_of(&g.name)
                    )
                });
                if g.agent == "none" {
                    errs.check(&c, e["{#VM.OS}"].is_string(), || {
                        format!("{{#VM.OS}} {}", e["{#VM.OS}"])
                    });
                } else {
                    errs.eq(&format!("{c} {{#VM.OS}}"), &e["{#VM.OS}"], "linux");
                }
            }
        }
    }
    errs.finish(&r.what, &r.stdout);

    let (doc, r) = lab.json(&["discover", "nics"], &[]);
    let mut errs = Errors::default();
    errs.check("exit", r.code == 0, || format!("exit {}", r.code));
    let arr = doc.as_array().cloned().unwrap_or_default();
    let total: usize = lab.guests.iter().map(|g| g.nics.len()).sum();
    errs.check("array", doc.is_array() && arr.len() == total, || {
        format!("{} entries, want {total}", arr.len())
    });
    for g in &lab.guests {
        for n in &g.nics {
            let c = format!("nics '{}' {}", g.name, n.mac);
            match arr
                .iter()
                .find(|e| e["{#NIC.MAC}"].as_str() == Some(n.mac.as_str()))
            {
                None => errs.0.push(format!("{c}: missing")),
                Some(e) => {
                    errs.eq(&format!("{c} {{#VM.NAME}}"), &e["{#VM.NAME}"], &g.name);
                    errs.check(&c, e["{#VM.UUID}"] == uuid_of(&g.name), || {
                        format!("{{#VM.UUID}} {}", e["{#VM.UUID}"])
                    });
                    errs.eq(
                        &format!("{c} {{#NIC.NETWORK}}"),
                        &e["{#NIC.NETWORK}"],
                        &n.network,
                    );
                    let ty = if n.network == lab.ext_net {
                        "external"
                    } else {
                        "internal"
                    };
                    errs.eq(&format!("{c} {{#NIC.TYPE}}"), &e["{#NIC.TYPE}"], ty);
                    if g.agent != "none" {
                        errs.eq(&format!("{c} {{#NIC.IP}}"), &e["{#NIC.IP}"], &n.ip);
                        errs.eq(
                            &format!("{c} {{#NIC.GATEWAY}}"),
                            &e["{#NIC.GATEWAY}"],
                            &n.gateway,
                        );
                        errs.check(
                            &c,
                            e["{#NIC.NAME}"]
                                .as_str()
                                .is_some_and(|x| x.starts_with("eth")),
                            || format!("{{#NIC.NAME}} {}", e["{#NIC.NAME}"]),
                        );
                    }
                }
            }
        }
    }
    errs.finish(&r.what, &r.stdout);
}

fn check_telegraf_batch(lab: &Lab, lines: &[Line], phase: Phase, errs: &mut Errors) {
    let vm_lines: Vec<&Line> = lines
        .iter()
        .filter(|l| l.measurement == "vmnetprobe_vm")
        .collect();
    errs.check("vmnetprobe_vm", vm_lines.len() == lab.guests.len(), || {
        format!("{} lines, want {}", vm_lines.len(), lab.guests.len())
    });
    for g in &lab.guests {
        let c = format!("vmnetprobe_vm vm='{}'", g.name);
        let Some(l) = vm_lines
            .iter()
            .find(|l| l.tag("vm") == Some(g.name.as_str()))
        else {
            errs.0.push(format!("{c}: missing (tag escaping?)"));
            continue;
        };
        let want = match (g.slug.as_str(), phase) {
            ("b", _) | ("c", _) => "3i",
            (_, Phase::Normal) => "0i",
            (_, Phase::ExternalCut) => "2i",
        };
        errs.check(&c, l.field("state_code") == Some(want), || {
            format!("state_code {:?}, want {want}", l.field("state_code"))
        });
        let up = if g.agent == "none" { "false" } else { "true" };
        errs.check(&c, l.field("agent_up") == Some(up), || {
            format!("agent_up {:?}, want {up}", l.field("agent_up"))
        });
        for n in &g.nics {
            let cn = format!("vmnetprobe_nic vm='{}' mac={}", g.name, n.mac);
            match lines
                .iter()
                .find(|l| l.measurement == "vmnetprobe_nic" && l.tag("mac") == Some(n.mac.as_str()))
            {
                None => errs.0.push(format!("{cn}: missing")),
                Some(l) => {
                    errs.check(&cn, l.tag("vm") == Some(g.name.as_str()), || {
                        format!("vm tag {:?}", l.tag("vm"))
                    });
                    errs.check(&cn, l.tag("network") == Some(n.network.as_str()), || {
                        format!("network tag {:?}", l.tag("network"))
                    });
                    if g.slug != "b" && g.slug != "c" {
                        errs.check(&cn, l.field("state_code") == Some("0i"), || {
                            format!("state_code {:?}", l.field("state_code"))
                        });
                        errs.check(&cn, l.field("reachable") == Some("true"), || {
                            format!("reachable {:?}", l.field("reachable"))
                        });
                    }
                }
            }
        }
        if g.slug != "b" && g.slug != "c" {
            let ce = format!("vmnetprobe_external vm='{}'", g.name);
            match lines.iter().find(|l| {
                l.measurement == "vmnetprobe_external" && l.tag("vm") == Some(g.name.as_str())
            }) {
                None => errs.0.push(format!("{ce}: missing")),
                Some(l) => {
                    errs.check(&ce, l.tag("target") == Some(lab.internet.as_str()), || {
                        format!("target {:?}", l.tag("target"))
                    });
                    let (sc, reach) = if phase == Phase::Normal {
                        ("0i", "true")
                    } else {
                        ("2i", "false")
                    };
                    errs.check(&ce, l.field("state_code") == Some(sc), || {
                        format!("state_code {:?}, want {sc}", l.field("state_code"))
                    });
                    errs.check(&ce, l.field("reachable") == Some(reach), || {
                        format!("reachable {:?}, want {reach}", l.field("reachable"))
                    });
                }
            }
        }
    }
    let runs: Vec<&Line> = lines
        .iter()
        .filter(|l| l.measurement == "vmnetprobe_run")
        .collect();
    errs.check("vmnetprobe_run", runs.len() == 1, || {
        format!("{} lines, want 1", runs.len())
    });
    if let Some(r) = runs.first() {
        let (ok, crit) = if phase == Phase::Normal {
            ("4i", "0i")
        } else {
            ("0i", "4i")
        };
        for (k, want) in [
            ("vms", "6i"),
            ("ok", ok),
            ("critical", crit),
            ("unknown", "2i"),
            ("warning", "0i"),
        ] {
            errs.check("vmnetprobe_run", r.field(k) == Some(want), || {
                format!("{k}={:?}, want {want}", r.field(k))
            });
        }
    }
}

fn check_telegraf(lab: &Lab, phase: Phase) {
    let r = lab.run(&["telegraf"], &[]);
    let mut errs = Errors::default();
    errs.check("exit", r.code == 0, || format!("exit {}, want 0", r.code));
    let mut lines = Vec::new();
    let mut ts = BTreeSet::new();
    for l in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(l) {
            Some(p) => lines.push(p),
            None => errs.0.push(format!("unparsable line {l:?}")),
        }
        ts.insert(l.rsplit(' ').next().unwrap_or("").to_string());
    }
    errs.check(
        "timestamps",
        ts.len() == 1
            && ts
                .iter()
                .all(|t| t.len() >= 19 && t.bytes().all(|b| b.is_ascii_digit())),
        || format!("want one ns timestamp per run, got {ts:?}"),
    );
    check_telegraf_batch(lab, &lines, phase, &mut errs);
    errs.finish(&r.what, &r.stdout);
}

fn check_telegraf_execd(lab: &Lab) {
    let mut args: Vec<String> = vec!["telegraf".into(), "--execd".into()];
    args.extend(lab.target_args());
    let what = format!("vmnetprobe {}", args.join(" "));
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut batches = 0;
    for _ in 0..2 {
        stdin
            .write_all(b"\n")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{what}: write stdin: {e}"));
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(90)) {
                Ok(l) => {
                    let done = l.starts_with("vmnetprobe_run");
                    if let Some(p) = parse_line(&l) {
                        lines.push(p);
                    }
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("{what}: batch {} incomplete: {e}", batches + 1);
                }
            }
        }
        let mut errs = Errors::default();
        check_telegraf_batch(lab, &lines, Phase::Normal, &mut errs);
        errs.finish(&format!("{what} (batch {})", batches + 1), "");
        batches += 1;
    }
    drop(stdin); // EOF: must exit
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                assert!(st.success(), "{what}: exit {st} after stdin EOF, want 0");
                break;
            }
            Ok(None) if t.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => {
                let _ = child.kill();
                panic!("{what}: still running 30 s after stdin EOF");
            }
        }
    }
    eprintln!("[lab_libvirt] {what}: {batches} batches, exit 0 on EOF");
}

fn check_zabbix(lab: &Lab, status: &Value, phase: Phase) {
    let (doc, r) = lab.json(&["zabbix"], &[]);
    let mut errs = Errors::default();
    errs.check("exit", r.code == 0, || format!("exit {}", r.code));
    check_document(lab, &doc, phase, &mut errs);
    // same shape and verdicts as status --json
    for vm in status["vms"].as_array().into_iter().flatten() {
        let z = doc["vms"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"] == vm["name"]));
        match z {
            None => errs.0.push(format!("zabbix: VM {} missing", vm["name"])),
            Some(z) => {
                for k in ["uuid", "os", "state", "code"] {
                    errs.check(
                        &format!("zabbix VM {} {k}", vm["name"]),
                        z[k] == vm[k],
                        || format!("{} vs status {}", z[k], vm[k]),
                    );
                }
            }
        }
    }
    errs.finish(&r.what, &r.stdout);
}

#[test]
fn lab_libvirt_end_to_end() {
    // From here on, every missing prerequisite is a failure.
    if !require_lab("libvirt lab test") {
        return;
    }

    let t0 = Instant::now();
    let _guard = LabGuard(TAG);
    assert!(
        lab_cmd("up"),
        "tests/lab/lab.sh up failed (see its output above)"
    );
    eprintln!("[lab_libvirt] lab up in {:.0}s", t0.elapsed().as_secs_f64());
    let lab = lab_from_manifest();
    assert_eq!(lab.guests.len(), 6, "lab manifest must list 6 guests");
    for slug in ["a", "b", "c", "d", "e", "f"] {
        let _ = lab.guest(slug);
    }
    assert!(
        lab.guest("f").name.contains(' ') && !lab.guest("f").name.is_ascii(),
        "guest f must have spaces and non-ASCII"
    );

    // 1. path to the internet host open
    let status = check_status_json(&lab, Phase::Normal);
    check_zabbix(&lab, &status, Phase::Normal);
    check_nagios(&lab, Phase::Normal);
    check_discovery(&lab, &status);
    check_telegraf(&lab, Phase::Normal);
    check_telegraf_execd(&lab);

    // 2. external path cut: external_unreachable, gateways still OK
    assert!(lab_cmd("cut"), "tests/lab/lab.sh cut failed");
    check_status_json(&lab, Phase::ExternalCut);
    check_nagios(&lab, Phase::ExternalCut);
    check_telegraf(&lab, Phase::ExternalCut);

    // 3. restored
    assert!(lab_cmd("restore"), "tests/lab/lab.sh restore failed");
    check_status_json(&lab, Phase::Normal);
    eprintln!(
        "[lab_libvirt] all checks passed in {:.0}s (lab teardown follows)",
        t0.elapsed().as_secs_f64()
    );
}
