//! Faults against real libvirt (issue 4, part 2): a domain destroyed mid-probe, and libvirtd
//! restarted under `telegraf --execd`.
//!
//! Runs only with `VMNETPROBE_LAB=1` (root, Debian 12), like tests/lab_libvirt.rs: it brings the
//! lab up itself with `tests/lab/lab.sh up` (which first tears down anything an earlier lab left)
//! and down again with a Drop guard, also when an assertion fails. `cargo test` runs the test
//! binaries one after the other, so this test and lab_libvirt.rs never share a lab. See
//! tests/lab/README.md ("Faults") and docs/reliability.md ("libvirt faults").
//!
//! With `VMNETPROBE_LAB=1` every missing prerequisite is a failure, never a skip.
//!
//! Network rule: every vmnetprobe run gets `--external` with the lab's internet host; nothing is
//! pinged outside the lab's namespaces.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
mod lab_support;

use lab_support::{lab, parse_line, probe_args, read_manifest, require_lab, s, LabGuard, Line};

const BIN: &str = env!("CARGO_BIN_EXE_vmnetprobe");

/// Regression guard (fixed bug, docs/reliability.md, "libvirt faults"): when libvirtd went away
/// between listing the domains and reading their state, a failed `virDomainGetState` was taken
/// for "not running" and running guests were reported CRITICAL `vm_not_running`. It is a race
/// (a request landing while libvirtd shuts down), so it can only be caught when it happens;
/// `false` makes every batch that shows it fail the test.
const TOLERATE_FALSE_VM_NOT_RUNNING: bool = false;

fn log(msg: impl AsRef<str>) {
    eprintln!("[lab_faults] {}", msg.as_ref());
}

const TAG: &str = "lab_faults";

fn lab_ok(args: &[&str]) {
    assert!(
        lab(TAG, args),
        "tests/lab/lab.sh {} failed (see its output above)",
        args.join(" ")
    );
}

/// Kills a child process still running when the test unwinds.
struct ChildGuard(Option<Child>);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

struct Guest {
    slug: String,
    name: String,
}

struct Lab {
    internet: String,
    ext_net: String,
    guests: Vec<Guest>,
}

fn lab_from_manifest() -> Lab {
    let m = read_manifest();
    Lab {
        internet: s(&m["internet"]),
        ext_net: s(&m["external_network"]),
        guests: m["guests"]
            .as_array()
            .expect("manifest guests")
            .iter()
            .map(|g| Guest {
                slug: s(&g["slug"]),
                name: s(&g["name"]),
            })
            .collect(),
    }
}

impl Lab {
    fn name(&self, slug: &str) -> &str {
        &self
            .guests
            .iter()
            .find(|g| g.slug == slug)
            .unwrap_or_else(|| panic!("no guest {slug} in the lab manifest"))
            .name
    }

    fn args(&self, timeout: &str, ping_timeout: &str) -> Vec<String> {
        probe_args(&self.internet, &self.ext_net, timeout, ping_timeout)
    }
}

/// What a guest must report: state and code of the VM (slug `a`, `d`, `e`, `f` are healthy).
fn want_vm(slug: &str, cut: bool) -> (&'static str, &'static [&'static str]) {
    match slug {
        "b" => ("UNKNOWN", &["exec_disabled"]),
        "c" => ("UNKNOWN", &["agent_not_connected", "agent_timeout"]),
        _ if cut => ("CRITICAL", &["external_unreachable"]),
        _ => ("OK", &["ok"]),
    }
}

/// Checks one VM of a `status --json` document; NICs of healthy guests must be OK with an RTT.
fn check_vm(vm: &Value, slug: &str, cut: bool, errs: &mut Vec<String>) {
    let name = s(&vm["name"]);
    let (state, codes) = want_vm(slug, cut);
    if vm["state"].as_str() != Some(state) || !codes.iter().any(|c| vm["code"].as_str() == Some(c))
    {
        errs.push(format!(
            "VM '{name}': {} {} ({}), want {state} {codes:?}",
            vm["state"], vm["code"], vm["reason"]
        ));
    }
    if slug != "b" && slug != "c" {
        for nic in vm["nics"].as_array().into_iter().flatten() {
            if nic["state"].as_str() != Some("OK") || !nic["rtt_ms"].is_number() {
                errs.push(format!(
                    "VM '{name}' NIC {}: {} {} rtt {}, want OK with an RTT (gateway)",
                    nic["mac"], nic["state"], nic["code"], nic["rtt_ms"]
                ));
            }
        }
    }
}

fn status_json(lab: &Lab, timeout: &str, ping_timeout: &str) -> (Value, Duration) {
    let mut args = vec!["status".to_string(), "--json".into()];
    args.extend(lab.args(timeout, ping_timeout));
    let t = Instant::now();
    let out = common::run_command(Command::new(BIN).args(&args), Duration::from_secs(120));
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    log(format!(
        "vmnetprobe {}: exit {:?} in {:.2}s",
        args.join(" "),
        out.status.code(),
        took.as_secs_f64()
    ));
    let doc = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{text}"));
    (doc, took)
}

fn check_all(lab: &Lab, doc: &Value, cut: bool, what: &str) {
    let mut errs = Vec::new();
    for g in &lab.guests {
        match doc["vms"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"].as_str() == Some(&g.name)))
        {
            Some(vm) => check_vm(vm, &g.slug, cut, &mut errs),
            None => errs.push(format!("VM '{}' missing", g.name)),
        }
    }
    assert!(
        errs.is_empty(),
        "{what}:\n  {}\n--- output ---\n{doc:#}",
        errs.join("\n  ")
    );
}

// ------------------------------------------------------------------ (a) destroy mid-probe

fn destroy_mid_probe(lab: &Lab) {
    const TIMEOUT_S: u64 = 10;
    let victim = lab.name("a").to_string();
    lab_ok(&["cut"]); // external pings now wait for their full -W 3 (no reply)
    let mut args = vec!["status".to_string(), "--json".into()];
    args.extend(lab.args(&format!("{TIMEOUT_S}s"), "3s"));
    let what = format!("vmnetprobe {}", args.join(" "));
    let t0 = Instant::now();
    let mut child = ChildGuard(Some(
        Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    ));
    std::thread::sleep(Duration::from_millis(500));
    let t_destroy = t0.elapsed();
    lab_ok(&["destroy", "a"]);
    let t_destroyed = t0.elapsed();
    let out = child
        .0
        .take()
        .unwrap()
        .wait_with_output()
        .expect("vmnetprobe output");
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    log(format!(
        "{what}: exit {:?} after {:.2}s; `virsh destroy {victim}` from {:.2}s to {:.2}s",
        out.status.code(),
        took.as_secs_f64(),
        t_destroy.as_secs_f64(),
        t_destroyed.as_secs_f64()
    ));
    assert!(
        took <= Duration::from_secs(TIMEOUT_S + 1),
        "{what}: took {took:?}, more than -t {TIMEOUT_S}s + 1 s"
    );
    assert_eq!(out.status.code(), Some(0), "{what}: exit status\n{text}");
    assert!(
        out.stderr.is_empty(),
        "{what}: stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e})\n{text}"));
    let vms = doc["vms"].as_array().cloned().unwrap_or_default();
    for vm in &vms {
        log(format!(
            "  '{}': {} {} \"{}\" in {} ms",
            s(&vm["name"]),
            s(&vm["state"]),
            s(&vm["code"]),
            s(&vm["reason"]),
            vm["duration_ms"]
        ));
    }
    let mut errs = Vec::new();
    for g in &lab.guests {
        let Some(vm) = vms.iter().find(|v| v["name"].as_str() == Some(&g.name)) else {
            errs.push(format!(
                "VM '{}' missing (listed before the destroy)",
                g.name
            ));
            continue;
        };
        if g.slug != "a" {
            check_vm(vm, &g.slug, true, &mut errs);
            continue;
        }
        // The destroyed VM: a clear reason, at once (not the run's deadline).
        // libvirt reports "agent not responding" when the VM goes away mid-command;
        // vmnetprobe then asks libvirt whether the domain is still active. The destroy
        // may not have completed at that instant, so both answers are legitimate.
        let clear = ["vm_not_running", "agent_timeout"];
        let state_ok = matches!(vm["state"].as_str(), Some("UNKNOWN" | "CRITICAL"));
        let code_ok = clear.iter().any(|c| vm["code"].as_str() == Some(c));
        if !state_ok || !code_ok {
            errs.push(format!(
                "destroyed VM '{}': {} {} ({}), want UNKNOWN/CRITICAL with one of {clear:?}",
                g.name, vm["state"], vm["code"], vm["reason"]
            ));
        }
        let ms = vm["duration_ms"].as_f64().unwrap_or(f64::MAX);
        let limit = t_destroyed.as_secs_f64() * 1000.0 + 2000.0;
        if ms > limit {
            errs.push(format!(
                "destroyed VM '{}': probe ended after {ms:.0} ms, want < {limit:.0} ms \
                 (destroy done + 2 s), not at the deadline",
                g.name
            ));
        }
    }
    assert!(
        errs.is_empty(),
        "{what}:\n  {}\n--- output ---\n{text}",
        errs.join("\n  ")
    );

    // A destroyed transient domain is gone: listed runs skip it, `-d NAME` is a fatal error.
    let (doc, _) = status_json(lab, "30s", "2s");
    assert!(
        doc["vms"]
            .as_array()
            .is_some_and(|a| a.len() == lab.guests.len() - 1
                && a.iter().all(|v| v["name"].as_str() != Some(&victim))),
        "after the destroy: want the other {} VMs only\n{doc:#}",
        lab.guests.len() - 1
    );

    // Restore: the guest back, the path open, every VM as before.
    let t = Instant::now();
    lab_ok(&["start", "a"]);
    log(format!(
        "'{victim}' back after {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    lab_ok(&["restore"]);
    let (doc, _) = status_json(lab, "60s", "2s");
    check_all(lab, &doc, false, "after restart of the destroyed domain");
}

// ------------------------------------------------------------------ (b) libvirtd restart

struct Batch {
    index: usize,
    at: Instant,
    lines: Vec<Line>,
    raw: Vec<String>,
    bad: Vec<String>,
}

impl Batch {
    fn run(&self) -> Option<&Line> {
        self.lines
            .iter()
            .find(|l| l.measurement == "vmnetprobe_run")
    }
    fn error(&self) -> Option<&str> {
        self.run().and_then(|r| r.field("error"))
    }
    fn vm_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines
            .iter()
            .filter(|l| l.measurement == "vmnetprobe_vm")
    }
    /// Every guest present with its normal state code, and the run counts right.
    fn healthy(&self, lab: &Lab) -> bool {
        let run_ok = self.run().is_some_and(|r| {
            r.field("error").is_none()
                && r.field("vms") == Some(&format!("{}i", lab.guests.len()))
                && r.field("ok") == Some("4i")
                && r.field("unknown") == Some("2i")
        });
        run_ok
            && self.bad.is_empty()
            && lab.guests.iter().all(|g| {
                let want = if g.slug == "b" || g.slug == "c" {
                    "3i"
                } else {
                    "0i"
                };
                self.vm_lines()
                    .any(|l| l.tag("vm") == Some(&g.name) && l.field("state_code") == Some(want))
            })
    }
    fn summary(&self) -> String {
        match (self.error(), self.run()) {
            (Some(e), _) => format!("error={e}"),
            (None, Some(r)) => {
                let codes: std::collections::BTreeSet<&str> = self
                    .vm_lines()
                    .filter_map(|l| l.field("code"))
                    .map(|c| c.trim_matches('"'))
                    .collect();
                format!(
                    "vms={} ok={} unknown={} critical={} codes {codes:?}",
                    r.field("vms").unwrap_or("?"),
                    r.field("ok").unwrap_or("?"),
                    r.field("unknown").unwrap_or("?"),
                    r.field("critical").unwrap_or("?")
                )
            }
            (None, None) => "no vmnetprobe_run line".into(),
        }
    }
}

/// Collects batches (up to and including a `vmnetprobe_run` line) until EOF.
fn collect_batches(stdout: impl std::io::Read, batches: Arc<Mutex<Vec<Batch>>>) {
    let mut cur = Batch {
        index: 0,
        at: Instant::now(),
        lines: Vec::new(),
        raw: Vec::new(),
        bad: Vec::new(),
    };
    for l in BufReader::new(stdout).lines().map_while(Result::ok) {
        if l.trim().is_empty() {
            continue;
        }
        match parse_line(&l) {
            Some(p) => cur.lines.push(p),
            None => cur.bad.push(l.clone()),
        }
        let done = l.starts_with("vmnetprobe_run");
        cur.raw.push(l);
        if done {
            let mut b = batches.lock().unwrap();
            cur.index = b.len() + 1;
            cur.at = Instant::now();
            let next = Batch {
                index: 0,
                at: Instant::now(),
                lines: Vec::new(),
                raw: Vec::new(),
                bad: Vec::new(),
            };
            b.push(std::mem::replace(&mut cur, next));
        }
    }
    if !cur.raw.is_empty() {
        // an unterminated batch: recorded as one, the checks then fail on it
        let mut b = batches.lock().unwrap();
        cur.index = b.len() + 1;
        cur.bad
            .push("(batch without a vmnetprobe_run line at EOF)".into());
        b.push(cur);
    }
}

/// Waits until `n` healthy batches arrived after `since`; false at the deadline.
fn wait_healthy(
    lab: &Lab,
    batches: &Arc<Mutex<Vec<Batch>>>,
    since: Instant,
    n: usize,
    max: Duration,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < max {
        let count = batches
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.at > since && b.healthy(lab))
            .count();
        if count >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn libvirtd_restart_under_execd(lab: &Lab) {
    const FEED: Duration = Duration::from_millis(1500);
    const OUTAGE: Duration = Duration::from_secs(3);
    let mut args = vec!["telegraf".to_string(), "--execd".into()];
    args.extend(lab.args("30s", "2s"));
    let what = format!("vmnetprobe {}", args.join(" "));
    log(format!("{what}: newline every {FEED:?}"));
    let mut guard = ChildGuard(Some(
        Command::new(BIN)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    ));
    let child = guard.0.as_mut().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let batches = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let b = Arc::clone(&batches);
        std::thread::spawn(move || collect_batches(stdout, b))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let feeder = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if stdin.write_all(b"\n").and_then(|_| stdin.flush()).is_err() {
                    break;
                }
                sent.lock().unwrap().push(Instant::now());
                std::thread::sleep(FEED);
            }
            // stdin dropped here: EOF
        })
    };
    let t0 = Instant::now();
    let mut outages = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            wait_healthy(lab, &batches, t0, 1, Duration::from_secs(60)),
            "{what}: no healthy batch before the restart"
        );
        for sig in ["TERM", "KILL"] {
            // Stop libvirtd while a request is being probed: 200 ms after a newline went out
            // (the domains are listed by then, agent commands in flight).
            let n = sent.lock().unwrap().len();
            let t = Instant::now();
            while sent.lock().unwrap().len() == n && t.elapsed() < FEED * 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(200));
            let down = Instant::now();
            lab_ok(&["libvirtd-stop", sig]);
            std::thread::sleep(OUTAGE);
            lab_ok(&["libvirtd-start"]);
            let up = Instant::now();
            log(format!(
                "libvirtd SIG{sig}: away for {:.1}s ({:.1}s..{:.1}s)",
                (up - down).as_secs_f64(),
                (down - t0).as_secs_f64(),
                (up - t0).as_secs_f64()
            ));
            assert!(
                wait_healthy(lab, &batches, up, 2, Duration::from_secs(60)),
                "{what}: no 2 healthy batches within 60 s after libvirtd (SIG{sig}) was back"
            );
            outages.push((sig, down, up));
        }
    }));
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let child = guard.0.as_mut().unwrap();
    let t_eof = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if t_eof.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => break None,
        }
    };
    if status.is_none() {
        let _ = child.kill();
    }
    collector.join().unwrap();
    let stderr_text = err_text.join().unwrap_or_default();
    let sent = sent.lock().unwrap().clone();
    let batches = std::mem::take(&mut *batches.lock().unwrap());

    // What happened, request by request.
    let mut false_not_running = Vec::new();
    let mut errs = Vec::new();
    for b in &batches {
        let req = sent.get(b.index - 1).copied();
        let during = outages
            .iter()
            .find_map(|(s, d, u)| match req {
                Some(r) if r >= *d && r <= *u => Some(format!(" [libvirtd SIG{s} outage]")),
                Some(r) if r < *d && b.at > *d => {
                    Some(format!(" [in flight when libvirtd got SIG{s}]"))
                }
                _ => None,
            })
            .unwrap_or_default();
        log(format!(
            "  batch {:2}: request at {:5.1}s, answer at {:5.1}s ({:.2}s): {}{during}",
            b.index,
            req.map(|r| (r - t0).as_secs_f64()).unwrap_or(f64::NAN),
            (b.at - t0).as_secs_f64(),
            req.map(|r| b.at.saturating_duration_since(r).as_secs_f64())
                .unwrap_or(f64::NAN),
            b.summary()
        ));
        if !b.bad.is_empty() || b.run().is_none() {
            errs.push(format!("batch {}: unparsable {:?}", b.index, b.bad));
        }
        if b.error().is_some() && b.vm_lines().count() != 0 {
            errs.push(format!("batch {}: error and VM lines", b.index));
        }
        for l in b.vm_lines() {
            let name = l.tag("vm").unwrap_or("?");
            let slug = lab
                .guests
                .iter()
                .find(|g| g.name == name)
                .map(|g| g.slug.as_str());
            let want = match slug {
                Some("b" | "c") => "3i",
                Some(_) => "0i",
                None => {
                    errs.push(format!("batch {}: unknown VM {name}", b.index));
                    continue;
                }
            };
            let got = l.field("state_code").unwrap_or("?");
            // libvirtd going away may make a VM UNKNOWN, never a false alarm
            if got == want || got == "3i" {
                continue;
            }
            let raw = b
                .raw
                .iter()
                .find(|r| {
                    parse_line(r).is_some_and(|p| {
                        p.measurement == "vmnetprobe_vm" && p.tag("vm") == Some(name)
                    })
                })
                .cloned()
                .unwrap_or_default();
            if l.field("code") == Some("\"vm_not_running\"") {
                false_not_running.push(format!("batch {}: {raw}", b.index));
            } else {
                errs.push(format!(
                    "batch {}: VM '{name}' state_code {got}, want {want} or 3i: {raw}",
                    b.index
                ));
            }
        }
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    let st = status.unwrap_or_else(|| panic!("{what}: still running 60 s after stdin EOF"));
    assert!(st.success(), "{what}: exit {st} after stdin EOF, want 0");
    assert!(stderr_text.is_empty(), "{what}: stderr: {stderr_text}");
    assert_eq!(
        batches.len(),
        sent.len(),
        "{what}: {} requests (newlines) but {} batches",
        sent.len(),
        batches.len()
    );
    let outage_batches = batches.iter().filter(|b| b.error().is_some()).count();
    assert!(
        outage_batches >= 1,
        "{what}: no batch saw libvirtd away (no `error` field): the outage was not exercised"
    );
    if let Some(last) = batches.last() {
        assert!(
            last.healthy(lab),
            "{what}: the last batch is not healthy:\n{}",
            last.raw.join("\n")
        );
    }
    if !false_not_running.is_empty() {
        let msg = format!(
            "running guests reported CRITICAL vm_not_running while libvirtd went away \
             (src/inventory/libvirt.rs takes a failed virDomainGetState for \"not running\"):\n  {}",
            false_not_running.join("\n  ")
        );
        if TOLERATE_FALSE_VM_NOT_RUNNING {
            log(format!("KNOWN BUG (tolerated): {msg}"));
        } else {
            errs.push(msg);
        }
    }
    assert!(errs.is_empty(), "{what}:\n  {}", errs.join("\n  "));
    log(format!(
        "{what}: {} requests, {} batches ({} with the libvirt error), exit 0 on EOF after {:.2}s",
        sent.len(),
        batches.len(),
        outage_batches,
        t_eof.elapsed().as_secs_f64()
    ));
}

#[test]
fn lab_libvirt_faults() {
    if !require_lab("libvirt fault test") {
        return;
    }

    let t0 = Instant::now();
    let _guard = LabGuard(TAG);
    lab_ok(&["up"]);
    log(format!("lab up in {:.0}s", t0.elapsed().as_secs_f64()));
    let lab = lab_from_manifest();
    assert_eq!(lab.guests.len(), 6, "lab manifest must list 6 guests");

    // baseline: every guest as expected before any fault
    let (doc, _) = status_json(&lab, "60s", "2s");
    check_all(&lab, &doc, false, "before the faults");

    let t = Instant::now();
    destroy_mid_probe(&lab);
    log(format!(
        "(a) destroy mid-probe passed in {:.0}s",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    libvirtd_restart_under_execd(&lab);
    log(format!(
        "(b) libvirtd restart under execd passed in {:.0}s",
        t.elapsed().as_secs_f64()
    ));

    // after the restart, one-shot runs see every guest as before
    let (doc, _) = status_json(&lab, "60s", "2s");
    check_all(&lab, &doc, false, "after the libvirtd restarts");
    log(format!(
        "all checks passed in {:.0}s (lab teardown follows)",
        t0.elapsed().as_secs_f64()
    ));
}
