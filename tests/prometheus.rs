//! Prometheus output against the real consumers: Debian 12's Prometheus 2.42 scrapes
//! `vmnetprobe serve` (started from the shipped systemd unit's command) and
//! node_exporter 1.5 serving the textfile (written by the shipped timer's command), in
//! front of a real qemu-ga (tests/common `AgentLab`), all on 127.0.0.1 free ports in a
//! temp dir, stopped by PID. Values read back through Prometheus' HTTP API equal
//! `status --json`; odd VM names survive; promtool checks both expositions and runs
//! the alert rules' unit tests; the shipped units pass `systemd-analyze verify`.
//!
//! The HTTP server's bounds (huge headers, slow clients, unknown paths, concurrent
//! scrapes, SIGTERM) are tested with a test-made agent socket that never answers, so
//! a scrape takes a known time; those tests need nothing but loopback and always run.
//!
//! Gate: as tests/consumers.rs (VMNETPROBE_REAL_TESTS=1 turns a missing part into a
//! failure).

mod common;

use common::consumer::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROM_TOOLS: &[&str] = &["prometheus", "promtool", "prometheus-node-exporter", "curl"];

/// VM names that need escaping somewhere: quotes, backslashes, a newline,
/// non-ASCII, and the characters other formats treat specially.
const ODD_NAMES: &[&str] = &[
    "plain01",
    "quote\"d",
    r"back\slash",
    "new\nline",
    "ünïcödé 東京",
    "web 01, x=y {z}",
];
const GONE: &str = "gone01";

/// The ExecStart argv of a unit as the package installed it, localized.
fn exec_start(unit: &str, bin: &Path, external: &str) -> Vec<String> {
    let text = localize(&shipped(&format!("prometheus/{unit}")), bin, external);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
    line.split_whitespace().map(String::from).collect()
}

/// promtool check metrics on `text`: must pass with nothing to say.
fn promtool_check_metrics(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert_silent_success(&format!("promtool check metrics on {what}"), &out);
}

/// A checker that passed with nothing to say (warnings count as failures).
fn assert_silent_success(what: &str, out: &std::process::Output) {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{what}: {said}"
    );
}

/// One instant vector from the Prometheus HTTP API.
fn query(port: u16, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (code, body) = curl(&[
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        "--data-urlencode",
        &format!("query={promql}"),
    ]);
    assert_eq!(code, 200, "{promql}: {body}");
    let doc: Value = serde_json::from_str(&body).expect("API JSON");
    doc["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("value");
            (labels, value)
        })
        .collect()
}

/// The samples of `name` in `job` whose labels include `want`.
fn samples<'a>(
    all: &'a [(BTreeMap<String, String>, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<&'a (BTreeMap<String, String>, f64)> {
    all.iter()
        .filter(|(l, _)| l.get("__name__").map(String::as_str) == Some(name))
        .filter(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn state_code(state: &Value) -> f64 {
    match state.as_str() {
        Some("OK") => 0.0,
        Some("WARNING") => 1.0,
        Some("CRITICAL") => 2.0,
        Some("UNKNOWN") => 3.0,
        other => panic!("state {other:?}"),
    }
}

/// The one sample of `name` for these labels, with its `code` label
/// checked against `expected["code"]`; its value.
fn one(all: &[(BTreeMap<String, String>, f64)], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found = samples(all, name, want);
    assert!(found.len() <= 1, "{name} {want:?}: {found:?}");
    found.first().map(|(_, v)| *v)
}

/// Whether a pinged target answered, by the documented rule: an RTT means
/// yes, the two "no reply" codes mean no, anything else is not pinged.
fn expected_reachable(check: &Value) -> Option<f64> {
    let code = check["code"].as_str().unwrap_or_default();
    if code == "gateway_unreachable" || code == "external_unreachable" {
        Some(0.0)
    } else if check["rtt_ms"].is_number() {
        Some(1.0)
    } else {
        None
    }
}

fn assert_close(what: &str, got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-9 + w.abs() * 1e-9, "{what}: {g} != {w}"),
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

/// Every VM, NIC and external check of `status --json` against the samples
/// Prometheus stored for `job`.
fn assert_equal_to_status(job: &str, all: &[(BTreeMap<String, String>, f64)], status: &Value) {
    let vms = status["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), ODD_NAMES.len() + 1);
    assert_eq!(
        one(all, "vmnetprobe_up", &[("job", job)]),
        Some(1.0),
        "{job}"
    );
    for vm in vms {
        let name = vm["name"].as_str().expect("name");
        let id = [("job", job), ("vm", name)];
        let state = samples(all, "vmnetprobe_vm_state", &id);
        assert_eq!(state.len(), 1, "{job} {name:?}: {state:?}");
        assert_eq!(state[0].1, state_code(&vm["state"]), "{job} {name:?}");
        assert_eq!(
            state[0].0.get("code").map(String::as_str),
            vm["code"].as_str(),
            "{job} {name:?}"
        );
        let agent_up = f64::from(u8::from(vm["agent"]["code"] == "ok"));
        assert_eq!(
            one(all, "vmnetprobe_agent_up", &id),
            Some(agent_up),
            "{name:?}"
        );
        for nic in vm["nics"].as_array().expect("nics") {
            let mac = nic["mac"].as_str().expect("mac");
            let labels = [("job", job), ("vm", name), ("mac", mac)];
            let state = samples(all, "vmnetprobe_nic_state", &labels);
            assert_eq!(state.len(), 1, "{job} {name:?} {mac}");
            assert_eq!(state[0].1, state_code(&nic["state"]));
            assert_eq!(
                state[0].0.get("type").map(String::as_str),
                nic["type"].as_str()
            );
            assert!(!state[0].0.contains_key("nic"), "guest facts only in _info");
            let info = samples(all, "vmnetprobe_nic_info", &labels);
            assert_eq!(info.len(), 1, "{job} {name:?} {mac}");
            assert_eq!(
                info[0].0.get("nic").map(String::as_str),
                Some(nic["name"].as_str().unwrap_or_default())
            );
            assert_eq!(
                one(all, "vmnetprobe_nic_gateway_reachable", &labels),
                expected_reachable(nic),
                "{job} {name:?} {mac}"
            );
            assert_close(
                &format!("{job} {name:?} {mac} rtt"),
                one(all, "vmnetprobe_nic_gateway_rtt_seconds", &labels),
                nic["rtt_ms"].as_f64().map(|ms| ms / 1000.0),
            );
        }
        let external = &vm["external"];
        if external.is_object() {
            let target = external["address"].as_str().expect("address");
            let labels = [("job", job), ("vm", name), ("target", target)];
            assert_eq!(
                one(all, "vmnetprobe_external_state", &labels),
                Some(state_code(&external["state"]))
            );
            assert_eq!(
                one(all, "vmnetprobe_external_reachable", &labels),
                expected_reachable(external),
                "{job} {name:?} external"
            );
            assert_close(
                &format!("{job} {name:?} external rtt"),
                one(all, "vmnetprobe_external_rtt_seconds", &labels),
                external["rtt_ms"].as_f64().map(|ms| ms / 1000.0),
            );
        }
    }
}

#[test]
fn prometheus_reads_back_serve_and_the_textfile_as_status_json() {
    if !real("prometheus-readback", PROM_TOOLS) {
        return;
    }
    let lab = common::AgentLab::start(common::LabOptions::default());
    let s = Scratch::new("prometheus");
    // The package's binary, run as its units run it (root).
    common::package::install();
    let bin = PathBuf::from(common::package::BIN);
    // One probe for all: serve and the textfile run share the result that
    // status --json stored (same selection, --min-interval), so every value,
    // RTTs included, must be equal.
    let mut target: Vec<String> = Vec::new();
    for name in ODD_NAMES {
        target.push("--socket".into());
        target.push(lab.socket_arg(name));
    }
    target.push("--socket".into());
    target.push(format!("{GONE}={}", s.s("no-such-agent.sock")));
    for arg in ["--min-interval", "10m", "--grace", "0", "-t", "8s"] {
        target.push(arg.into());
    }
    target.push("--state-dir".into());
    target.push(s.s("state"));
    let external = format!("--external {}", lab.external);

    let mut status_args = vec!["status".to_string(), "--json".into()];
    status_args.extend(external.split(' ').map(String::from));
    status_args.extend(target.iter().cloned());
    let argv: Vec<&str> = status_args.iter().map(String::as_str).collect();
    let out = common::vmnetprobe(&argv);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(common::vm(&status, "plain01")["state"], "OK", "{status}");
    assert_eq!(
        common::vm(&status, GONE)["agent"]["code"],
        "agent_unreachable"
    );

    // The textfile, by the shipped timer's command.
    let textfile_dir = s.path("textfile");
    fs::create_dir_all(&textfile_dir).unwrap();
    let mut argv = exec_start("vmnetprobe-textfile.service", &bin, &external);
    let shipped_path = "/var/lib/prometheus/node-exporter/vmnetprobe.prom";
    let at = argv
        .iter()
        .position(|a| a == shipped_path)
        .expect("textfile path");
    argv[at] = textfile_dir.join("vmnetprobe.prom").display().to_string();
    argv.extend(target.iter().cloned());
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let out = common::vmnetprobe(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let textfile = fs::read_to_string(textfile_dir.join("vmnetprobe.prom")).expect("textfile");
    promtool_check_metrics("the textfile", &textfile);

    // serve, by the shipped unit's command.
    let serve_port = free_port();
    let mut argv = exec_start("vmnetprobe-serve.service", &bin, &external);
    let at = argv
        .iter()
        .position(|a| a == "127.0.0.1:9469")
        .expect("listen");
    argv[at] = format!("127.0.0.1:{serve_port}");
    argv.extend(target.iter().cloned());
    let _serve = Daemon::start(
        "vmnetprobe serve",
        Command::new(&argv[0]).args(&argv[1..]),
        s.path("serve.log"),
    );
    let metrics_url = format!("http://127.0.0.1:{serve_port}/metrics");
    let exposition = wait_for("vmnetprobe serve", Duration::from_secs(10), || {
        let (code, body) = curl(&[&metrics_url]);
        (code == 200).then_some(body)
    });
    promtool_check_metrics("vmnetprobe serve /metrics", &exposition);

    let node_port = free_port();
    let _node = Daemon::start(
        "node_exporter",
        Command::new("prometheus-node-exporter").args([
            format!("--web.listen-address=127.0.0.1:{node_port}"),
            "--collector.disable-defaults".into(),
            "--collector.textfile".into(),
            format!("--collector.textfile.directory={}", textfile_dir.display()),
        ]),
        s.path("node.log"),
    );

    // Prometheus with the shipped scrape job (and its alert rules), made fast.
    let prom_port = free_port();
    let shipped = plugin_file("prometheus/prometheus-scrape.yml");
    for needle in [
        "scrape_interval: 60s",
        "scrape_timeout: 20s",
        "127.0.0.1:9469",
    ] {
        assert!(shipped.contains(needle), "scrape config lost {needle}");
    }
    let config = shipped
        .replace("scrape_interval: 60s", "scrape_interval: 1s")
        .replace("scrape_timeout: 20s", "scrape_timeout: 1s")
        .replace("127.0.0.1:9469", &format!("127.0.0.1:{serve_port}"))
        + &format!(
            "  - job_name: node\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
             static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
        );
    // rule_files are relative to the config file.
    let config = format!("global:\n  evaluation_interval: 1s\n{config}");
    s.write(
        "prom/vmnetprobe-alerts.yml",
        &plugin_file("prometheus/vmnetprobe-alerts.yml"),
    );
    let config_file = s.write("prom/prometheus.yml", &config);
    run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&config_file),
    );
    let t = Instant::now();
    let mut prometheus = Daemon::start(
        "prometheus",
        Command::new("prometheus").args([
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", s.s("prom/data")),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ]),
        s.path("prometheus.log"),
    );
    wait_for("Prometheus ready", Duration::from_secs(30), || {
        prometheus.assert_running();
        (curl(&[&format!("http://127.0.0.1:{prom_port}/-/ready")]).0 == 200).then_some(())
    });
    let all = wait_for("both jobs in Prometheus", Duration::from_secs(60), || {
        prometheus.assert_running();
        let all = query(prom_port, r#"{__name__=~"vmnetprobe_.*"}"#);
        let jobs = ["vmnetprobe", "node"];
        jobs.iter()
            .all(|job| !samples(&all, "vmnetprobe_vm_state", &[("job", job)]).is_empty())
            .then_some(all)
    });
    timing("prometheus: first samples of both jobs", t);
    for job in ["vmnetprobe", "node"] {
        assert_equal_to_status(job, &all, &status);
    }
    assert_eq!(
        one(
            &all,
            "vmnetprobe_probe_errors_total",
            &[("job", "vmnetprobe")]
        ),
        Some(0.0)
    );
    // The shipped rules load in the real Prometheus.
    let (_, rules) = curl(&[&format!("http://127.0.0.1:{prom_port}/api/v1/rules")]);
    let rules: Value = serde_json::from_str(&rules).expect("rules JSON");
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names.len(), 6, "{rules}");
    // The README's Grafana queries all return data.
    let readme = plugin_file("prometheus/README.md");
    let block = readme
        .split("<!-- BEGIN QUERIES -->")
        .nth(1)
        .and_then(|r| r.split("<!-- END QUERIES -->").next())
        .expect("queries block");
    let queries: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .collect();
    assert!(queries.len() >= 6);
    for promql in queries {
        let result = query(prom_port, promql);
        assert!(!result.is_empty(), "no data for {promql}");
    }
    prometheus.stop();
}

#[test]
fn alert_rules_fire_in_promtool_unit_tests() {
    if !real("prometheus-rules", &["promtool"]) {
        return;
    }
    let dir = repo().join("plugins/prometheus");
    let out = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "rules",
        "vmnetprobe-alerts.yml",
    ]));
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let out = run_ok(Command::new("promtool").current_dir(&dir).args([
        "test",
        "rules",
        "vmnetprobe-alerts.test.yml",
    ]));
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert is exercised by a firing case.
    let tests = plugin_file("prometheus/vmnetprobe-alerts.test.yml");
    let rules = plugin_file("prometheus/vmnetprobe-alerts.yml");
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no firing test for {alert}"
        );
    }
}

#[test]
fn shipped_systemd_units_verify() {
    if !real("prometheus-units", &["systemd-analyze"]) {
        return;
    }
    let s = Scratch::new("units");
    let units = [
        "vmnetprobe-serve.service",
        "vmnetprobe-textfile.service",
        "vmnetprobe-textfile.timer",
    ];
    let mut paths = Vec::new();
    for unit in units {
        let text = plugin_file(&format!("prometheus/{unit}"));
        let text = if text.contains(SHIPPED_BIN) {
            localize(&text, &common::bin(), SHIPPED_EXTERNAL)
        } else {
            text
        };
        paths.push(s.write(unit, &text));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze");
    assert_silent_success("systemd-analyze verify", &out);
}

// ---------------------------------------------------------------------------------
// The HTTP server's bounds, with an agent that never answers.

/// (accepted, closed) per connection, since the agent started.
type Spans = Arc<Mutex<Vec<(Duration, Option<Duration>)>>>;

/// A unix socket that accepts guest-agent connections and never answers,
/// recording when each was opened and closed (one per probe).
struct SilentAgent {
    path: PathBuf,
    spans: Spans,
}

impl SilentAgent {
    fn start(path: PathBuf) -> SilentAgent {
        let listener = UnixListener::bind(&path).expect("bind agent socket");
        let spans: Spans = Arc::default();
        let recorded = Arc::clone(&spans);
        let t0 = Instant::now();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let index = {
                    let mut spans = recorded.lock().expect("spans");
                    spans.push((t0.elapsed(), None));
                    spans.len() - 1
                };
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || {
                    let mut sink = [0u8; 1024];
                    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                    recorded.lock().expect("spans")[index].1 = Some(t0.elapsed());
                });
            }
        });
        SilentAgent { path, spans }
    }

    /// Connections so far (probes started).
    fn total(&self) -> usize {
        self.spans.lock().expect("spans").len()
    }

    /// The longest time two connections were open together. Probes one
    /// after the other overlap by no more than the closing one's EOF takes
    /// to be seen here; concurrent ones by most of the 1.5 s timeout.
    fn most_overlap(&self) -> Duration {
        let spans = self.spans.lock().expect("spans").clone();
        let mut most = Duration::ZERO;
        for (i, (a_open, a_close)) in spans.iter().enumerate() {
            for (b_open, b_close) in &spans[i + 1..] {
                let a_close = a_close.unwrap_or(Duration::MAX);
                let b_close = b_close.unwrap_or(Duration::MAX);
                let overlap = a_close.min(b_close).saturating_sub(*a_open.max(b_open));
                most = most.max(overlap);
            }
        }
        most
    }

    fn assert_no_overlap(&self) {
        let most = self.most_overlap();
        assert!(
            most < Duration::from_millis(500),
            "probes overlapped by {most:?}"
        );
    }
}

/// `vmnetprobe serve` on a free port in front of the silent agent: every
/// probe takes the 1.5 s command timeout.
fn serve_silent(s: &Scratch, agent: &SilentAgent, extra: &[&str]) -> (Daemon, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let socket = format!("slow={}", agent.path.display());
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--listen", &listen, "--socket", &socket])
        .args(["--external", "198.51.100.1", "--grace", "0"])
        .args(["--command-timeout", "1500ms", "-t", "4s"])
        .args(extra);
    let daemon = Daemon::start(
        "vmnetprobe serve",
        &mut cmd,
        s.path(&format!("serve-{port}.log")),
    );
    wait_for("serve listening", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (daemon, port)
}

/// Sends `request` raw and reads the reply until the server closes;
/// (status code, whole reply, time taken).
fn raw(port: u16, request: &[u8]) -> (u16, String, Duration) {
    let t = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = stream.write_all(request);
    read_reply(stream, t)
}

/// Reads until the server closes; (status code, whole reply, time since `t`).
fn read_reply(mut stream: TcpStream, t: Instant) -> (u16, String, Duration) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let code = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, reply, t.elapsed())
}

fn get(port: u16, path: &str) -> (u16, String, Duration) {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn bad_requests_are_refused_without_disturbing_a_scrape() {
    let s = Scratch::new("serve-bad");
    let agent = SilentAgent::start(s.path("agent.sock"));
    let (mut serve, port) = serve_silent(&s, &agent, &["--no-state"]);
    let scrape = std::thread::spawn(move || get(port, "/metrics"));
    wait_for("the scrape's probe", Duration::from_secs(10), || {
        (agent.total() > 0).then_some(())
    });

    // While that scrape waits on the agent, everything else is answered at once.
    let (code, reply, took) = get(port, "/nope");
    assert_eq!(code, 404, "{reply}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (code, reply, _) = get(port, "/");
    assert_eq!(code, 200, "{reply}");
    assert!(reply.contains("href=\"/metrics\""), "{reply}");
    let (code, reply, _) = raw(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(code, 200, "{reply}");
    assert!(
        reply.ends_with("\r\n\r\n") && body(&reply).is_empty(),
        "{reply:?}"
    );
    let (code, reply, _) = raw(
        port,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(code, 405, "{reply}");
    assert!(reply.contains("Allow: GET, HEAD\r\n"), "{reply}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, reply, took) = raw(port, huge.as_bytes());
    assert_eq!(code, 431, "{reply}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    let (code, _, _) = raw(port, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(code, 431);
    let (code, _, _) = raw(
        port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert_eq!(code, 400);

    // A slow client: half a request, then silence. It gets 408 after the
    // request timeout (5 s); meanwhile the scrape completes.
    // Connected here, before the flood below, so it is first in the accept queue.
    let t = Instant::now();
    let mut slow_stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow_stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .expect("half a request");
    let slow = std::thread::spawn(move || read_reply(slow_stream, t));
    // More idle connections than the server serves at once: the surplus
    // is refused with 503 at once.
    let mut idle = Vec::new();
    for _ in 0..70 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).expect("connect"));
    }
    let mut refused = 0;
    for conn in &mut idle {
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = conn.read(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 5,
        "only {refused} of 70 idle connections refused"
    );

    let (code, reply, took) = scrape.join().expect("scrape thread");
    assert_eq!(code, 200, "{reply}");
    assert!(
        took >= Duration::from_millis(1200),
        "the probe waited: {took:?}"
    );
    assert!(reply.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(
        body(&reply).contains("\nvmnetprobe_agent_up{vm=\"slow\",uuid=\"\"} 0\n"),
        "{reply}"
    );
    let (code, _, took) = slow.join().expect("slow thread");
    assert_eq!(code, 408);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    drop(idle);

    // Once the idle ones are gone, scrapes are served again, and the
    // refusals were counted.
    let (code, reply, _) = wait_for("a scrape after the flood", Duration::from_secs(15), || {
        let r = get(port, "/metrics");
        (r.0 == 200).then_some(r)
    });
    assert_eq!(code, 200);
    let rejected: u64 = body(&reply)
        .lines()
        .find_map(|l| l.strip_prefix("vmnetprobe_http_rejected_total "))
        .and_then(|v| v.parse().ok())
        .expect("rejected counter");
    assert!(rejected >= 5 + 5, "{rejected}");
    agent.assert_no_overlap();
    serve.assert_running();
}

#[test]
fn concurrent_scrapes_share_one_probe() {
    let s = Scratch::new("serve-share");
    let agent = SilentAgent::start(s.path("agent.sock"));
    let state = s.s("state");
    let (mut serve, port) = serve_silent(&s, &agent, &["--state-dir", &state]);
    let scrapes: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || get(port, "/metrics")))
        .collect();
    let mut fresh = 0;
    for scrape in scrapes {
        let (code, reply, _) = scrape.join().expect("scrape");
        assert_eq!(code, 200, "{reply}");
        let age: f64 = body(&reply)
            .lines()
            .find_map(|l| l.strip_prefix("vmnetprobe_result_age_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("age");
        if age == 0.0 {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one scrape probed, the others shared its result");
    agent.assert_no_overlap();
    let per_probe = agent.total();
    // Within the default --min-interval (30 s) for serve: still shared.
    let (code, reply, took) = get(port, "/metrics");
    assert_eq!(code, 200, "{reply}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(agent.total(), per_probe);
    serve.assert_running();

    // Nothing shared (--no-state): concurrent scrapes each probe, one
    // after the other, never two at once.
    let agent = SilentAgent::start(s.path("agent2.sock"));
    let (mut serve, port) = serve_silent(&s, &agent, &["--no-state"]);
    let t = Instant::now();
    let scrapes: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(port, "/metrics")))
        .collect();
    for scrape in scrapes {
        assert_eq!(scrape.join().expect("scrape").0, 200);
    }
    agent.assert_no_overlap();
    assert_eq!(agent.total(), 3 * per_probe);
    assert!(
        t.elapsed() >= Duration::from_millis(3 * 1400),
        "{:?}",
        t.elapsed()
    );
    serve.assert_running();
}

#[test]
fn sigterm_lets_a_running_scrape_finish_and_exits_0() {
    let s = Scratch::new("serve-term");
    let agent = SilentAgent::start(s.path("agent.sock"));
    let (mut serve, port) = serve_silent(&s, &agent, &["--no-state"]);
    let scrape = std::thread::spawn(move || get(port, "/metrics"));
    wait_for("the scrape's probe", Duration::from_secs(10), || {
        (agent.total() > 0).then_some(())
    });
    let t = Instant::now();
    run_ok(Command::new("kill").arg(serve.child.id().to_string()));
    let (code, reply, _) = scrape.join().expect("scrape");
    assert_eq!(code, 200, "{reply}");
    let status = wait_for("serve to exit", Duration::from_secs(10), || {
        serve.child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
    let log = fs::read_to_string(s.path(&format!("serve-{port}.log"))).unwrap_or_default();
    assert!(log.is_empty(), "nothing on stderr: {log}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let s = Scratch::new("serve-term2");
    let agent = SilentAgent::start(s.path("agent.sock"));
    let (mut serve, port) = serve_silent(&s, &agent, &["--no-state"]);
    let scrape = std::thread::spawn(move || get(port, "/metrics"));
    wait_for("the scrape's probe", Duration::from_secs(10), || {
        (agent.total() > 0).then_some(())
    });
    let pid = serve.child.id().to_string();
    let t = Instant::now();
    run_ok(Command::new("kill").arg(&pid));
    std::thread::sleep(Duration::from_millis(100));
    run_ok(Command::new("kill").arg(&pid));
    let status = wait_for("serve to exit", Duration::from_secs(10), || {
        serve.child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    let (code, _, _) = scrape.join().expect("scrape");
    assert_ne!(code, 200, "the scrape was cut short");
}
