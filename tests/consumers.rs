//! The shipped monitoring integrations (plugins/) against the real consumers:
//! Nagios 4, Icinga 2, Zabbix 6.0 (server + PostgreSQL + frontend API + agent) and
//! InfluxDB 1.6 (for Telegraf's line protocol), each started by the test on 127.0.0.1
//! in a fresh temp dir with free ports, fed with real vmnetprobe output from a real
//! qemu-ga (tests/common `AgentLab`), and stopped by PID.
//!
//! Production paths: every consumer test first builds this tree's Debian package with
//! `cargo deb` and installs it with `dpkg -i` (tests/common/package.rs). The consumers
//! read the installed examples from /usr/share/vmnetprobe, run as their own Debian users
//! (`nagios` for Nagios 4 and Icinga 2, `zabbix` for zabbix_agentd with its default
//! Timeout=3), put in groups `libvirt` and `vmnetprobe` as the README tells operators, and
//! execute /usr/lib/nagios/plugins/check_vmnetprobe or /usr/bin/vmnetprobe. Where a test
//! compares what a consumer stored with what vmnetprobe printed, a recording wrapper sits
//! in front of the installed file (`$USER1$`, `PluginDir`, or the UserParameter's path).
//! Run them under the consumers lock: they install the package machine-wide.
//!
//! Gate: these run when VMNETPROBE_REAL_TESTS=1 (then a missing package is a failure);
//! install the consumers with tests/consumers/install.sh. The README test always runs.
//! Timings are printed as `[timing] ...` lines (see with `-- --nocapture`).

mod common;

use common::consumer::*;
use common::line_protocol::{self, Field};
use common::package;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Slow consumer setups (Zabbix DB) are cached here between runs.
const CACHE_DIR: &str = "/var/cache/vmnetprobe-consumers";
/// The user Nagios 4 and Icinga 2 run checks as on Debian.
const NAGIOS_USER: &str = "nagios";
const ZABBIX_USER: &str = "zabbix";
/// Where the shipped UserParameter takes the external address from the key.
const USERPARAM_EXTERNAL: &str = "--external '$1'";

// ---------------------------------------------------------------------------------
// The probe target: a real qemu-ga from the lab, and a recording wrapper.

struct Probe {
    _lab: common::AgentLab,
    bin: PathBuf,
    socket: PathBuf,
    external: IpAddr,
    unreachable: IpAddr,
}

/// Gives an agent socket libvirt's ownership (group `libvirt`, mode 660), which the
/// consumers' users reach through their group.
fn share_socket(lab: &common::AgentLab) {
    sh(&format!(
        "chgrp libvirt {0} && chmod 660 {0}",
        q(&lab.socket.display().to_string())
    ));
}

impl Probe {
    /// Installs the package, starts the lab agent and gives the consumers' users what
    /// the README tells operators to: groups `libvirt` and `vmnetprobe`. The agent socket
    /// stands in for libvirt's: group `libvirt`, mode 660.
    fn start() -> Probe {
        package::install();
        for user in [NAGIOS_USER, ZABBIX_USER] {
            package::add_to_groups(user, &["libvirt", package::GROUP]);
        }
        let t = Instant::now();
        let lab = common::AgentLab::start(common::LabOptions::default());
        timing("agent lab start", t);
        share_socket(&lab);
        Probe {
            bin: PathBuf::from(package::BIN),
            socket: lab.socket.clone(),
            external: lab.external,
            unreachable: lab.unreachable,
            _lab: lab,
        }
    }

    /// Target options for the lab agent named `name`.
    fn socket_arg(&self, name: &str) -> String {
        format!("{name}={}", self.socket.display())
    }

    fn run(&self, args: &[String]) -> (i32, String) {
        let out = common::run_command(Command::new(&self.bin).args(args), Duration::from_secs(60));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).expect("UTF-8 output"),
        )
    }

    /// A recording script `<scratch>/bin/<name>` in front of the installed file
    /// `installed` (package::PLUGIN or package::BIN): runs it with `extra` appended and
    /// records argv, user, stdout and exit status of every run in `<scratch>/runs/`
    /// (writable for the consumers' users), so a test can compare what the consumer
    /// stored with exactly what vmnetprobe printed in that run.
    fn wrapper(&self, scratch: &Scratch, name: &str, installed: &str, extra: &[String]) -> PathBuf {
        let runs = scratch.path("runs");
        fs::create_dir_all(&runs).unwrap();
        run_ok(Command::new("chmod").arg("1777").arg(&runs));
        let extra: Vec<String> = extra.iter().map(|a| q(a)).collect();
        let script = format!(
            "#!/bin/sh\n\
             run=$(mktemp {runs}/run.XXXXXX) || exit 3\n\
             printf '%s\\n' \"$@\" > \"$run.argv\"\n\
             id -un > \"$run.user\"\n\
             {bin} \"$@\" {extra} > \"$run.out\" 2> \"$run.err\"\n\
             rc=$?\n\
             cat \"$run.out\"\n\
             echo $rc > \"$run.rc\"\n\
             exit $rc\n",
            runs = q(&runs.display().to_string()),
            bin = q(installed),
            extra = extra.join(" "),
        );
        let path = scratch.write(&format!("bin/{name}"), &script);
        run_ok(Command::new("chmod").arg("755").arg(&path));
        path
    }
}

/// One recorded run of the wrapper.
#[derive(Debug, Clone)]
struct Run {
    argv: Vec<String>,
    /// Who ran it (`id -un`).
    user: String,
    stdout: String,
    rc: i32,
}

fn runs(scratch: &Scratch) -> Vec<Run> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(scratch.path("runs")) else {
        return out;
    };
    let mut names: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        // Complete runs only: .rc is written last.
        let Some(s) = p
            .display()
            .to_string()
            .strip_suffix(".rc")
            .map(String::from)
        else {
            continue;
        };
        let Ok(rc) = fs::read_to_string(format!("{s}.rc")) else {
            continue;
        };
        out.push(Run {
            argv: fs::read_to_string(format!("{s}.argv"))
                .unwrap()
                .lines()
                .map(String::from)
                .collect(),
            user: fs::read_to_string(format!("{s}.user"))
                .unwrap()
                .trim()
                .to_string(),
            stdout: fs::read_to_string(format!("{s}.out")).unwrap(),
            rc: rc.trim().parse().unwrap(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------
// Plugin output as the Nagios plugin API splits it.

#[derive(Debug, PartialEq)]
struct PluginOutput {
    /// First line before `|`, trimmed.
    text: String,
    /// Lines 2..n up to the second `|`.
    long: Vec<String>,
    /// All perfdata items.
    perf: Vec<String>,
}

fn split_perf(s: &str) -> Vec<String> {
    // Space separated; a single-quoted label may contain spaces.
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            ' ' if !quoted => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

fn parse_plugin_output(out: &str) -> PluginOutput {
    let mut lines = out.trim_end_matches('\n').split('\n');
    let first = lines.next().unwrap_or("");
    let (text, mut perf) = match first.split_once('|') {
        Some((t, p)) => (t.trim().to_string(), split_perf(p)),
        None => (first.trim().to_string(), Vec::new()),
    };
    let mut long = Vec::new();
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf.extend(split_perf(line));
        } else if let Some((t, p)) = line.split_once('|') {
            if !t.trim().is_empty() {
                long.push(t.to_string());
            }
            perf.extend(split_perf(p));
            in_perf = true;
        } else {
            long.push(line.to_string());
        }
    }
    PluginOutput { text, long, perf }
}

// ---------------------------------------------------------------------------------
// READMEs embed the shipped files verbatim.

/// Every `<!-- BEGIN FILE x -->` ... `<!-- END FILE x -->` block of a README holds one
/// fenced code block whose content must be byte-identical to plugins/<dir>/x.
fn embedded_files(readme: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut rest = readme;
    while let Some(start) = rest.find("<!-- BEGIN FILE ") {
        let after = &rest[start + "<!-- BEGIN FILE ".len()..];
        let name_end = after.find(" -->").expect("unterminated BEGIN marker");
        let name = after[..name_end].to_string();
        let body_start = &after[name_end + 4..];
        let end_marker = format!("<!-- END FILE {name} -->");
        let end = body_start
            .find(&end_marker)
            .unwrap_or_else(|| panic!("no {end_marker}"));
        let block = body_start[..end].trim();
        let open_end = block.find('\n').expect("fence line");
        assert!(
            block.starts_with("```"),
            "{name}: block must be a fenced code block"
        );
        let inner = &block[open_end + 1..];
        let inner = inner
            .strip_suffix("```")
            .unwrap_or_else(|| panic!("{name}: fence not closed"));
        found.insert(name, inner.to_string());
        rest = &body_start[end + end_marker.len()..];
    }
    found
}

#[test]
fn readmes_embed_the_shipped_files_verbatim() {
    let expected: &[(&str, &[&str])] = &[
        (
            "nagios",
            &[
                "vmnetprobe-commands.cfg",
                "vmnetprobe-services.example.cfg",
                "nrpe-vmnetprobe.cfg",
            ],
        ),
        (
            "icinga2",
            &[
                "vmnetprobe-command.conf",
                "vmnetprobe-services.example.conf",
            ],
        ),
        ("zabbix", &["userparameter_vmnetprobe.conf"]),
        (
            "telegraf",
            &["vmnetprobe-exec.conf", "vmnetprobe-execd.conf"],
        ),
        (
            "prometheus",
            &["prometheus-scrape.yml", "vmnetprobe-alerts.yml"],
        ),
    ];
    for (dir, files) in expected {
        let readme = plugin_file(&format!("{dir}/README.md"));
        let embedded = embedded_files(&readme);
        for f in *files {
            let shipped = plugin_file(&format!("{dir}/{f}"));
            let inner = embedded
                .get(*f)
                .unwrap_or_else(|| panic!("plugins/{dir}/README.md does not embed {f}"));
            assert_eq!(
                inner, &shipped,
                "plugins/{dir}/README.md: embedded {f} differs from the file"
            );
        }
        for name in embedded.keys() {
            assert!(
                files.contains(&name.as_str()),
                "plugins/{dir}/README.md embeds unknown file {name}"
            );
        }
    }
}

#[test]
fn plugin_output_split_follows_the_plugin_api() {
    let p = parse_plugin_output(
        "VMNETPROBE OK - 1 VM | a=1 'b c'=2ms;1;2\nline 2\nline 3 | d=4\ne=5\n",
    );
    assert_eq!(p.text, "VMNETPROBE OK - 1 VM");
    assert_eq!(p.long, ["line 2", "line 3 "]);
    assert_eq!(p.perf, ["a=1", "'b c'=2ms;1;2", "d=4", "e=5"]);
}

// ---------------------------------------------------------------------------------
// Nagios 4

fn nagios_blocks(status_dat: &str, kind: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: Option<BTreeMap<String, String>> = None;
    for line in status_dat.lines() {
        let t = line.trim();
        if t == format!("{kind} {{") {
            cur = Some(BTreeMap::new());
        } else if t == "}" {
            if let Some(b) = cur.take() {
                out.push(b);
            }
        } else if let Some(b) = cur.as_mut() {
            if let Some((k, v)) = line.trim_start().split_once('=') {
                b.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

const NAGIOS_BASE_OBJECTS: &str = "\
define timeperiod {
    timeperiod_name         24x7
    alias                   always
    sunday                  00:00-24:00
    monday                  00:00-24:00
    tuesday                 00:00-24:00
    wednesday               00:00-24:00
    thursday                00:00-24:00
    friday                  00:00-24:00
    saturday                00:00-24:00
}
define command {
    command_name            always-true
    command_line            /bin/true
}
define contact {
    contact_name                    nobody
    service_notification_period     24x7
    host_notification_period        24x7
    service_notification_options    n
    host_notification_options       n
    service_notification_commands   always-true
    host_notification_commands      always-true
}
define service {
    name                    generic-service
    register                0
    max_check_attempts      1
    check_interval          3600
    retry_interval          3600
    check_period            24x7
    notification_period     24x7
    contacts                nobody
}
define host {
    host_name               kvm01
    check_command           always-true
    max_check_attempts      1
    check_period            24x7
    notification_period     24x7
    contacts                nobody
}
define host {
    host_name               hv01
    check_command           always-true
    max_check_attempts      1
    check_period            24x7
    notification_period     24x7
    contacts                nobody
}
";

/// A nagios.cfg in the scratch dir for Nagios running as its Debian user, with
/// `$USER1$` (Debian's resource.cfg: the plugin directory) set to `user1`.
fn nagios_cfg(s: &Scratch, cfg_files: &[&str], user1: &Path) -> PathBuf {
    let var = s.s("var");
    let resource = s.write(
        "etc/resource.cfg",
        &format!("$USER1$={}\n", user1.display()),
    );
    let mut cfg = format!("resource_file={}\n", resource.display());
    for f in cfg_files {
        cfg.push_str(&format!("cfg_file={}\n", s.s(f)));
    }
    cfg.push_str(&format!(
        "log_file={var}/nagios.log\nstatus_file={var}/status.dat\nstatus_update_interval=1\n\
         object_cache_file={var}/objects.cache\nprecached_object_file={var}/objects.precache\n\
         temp_file={var}/nagios.tmp\ntemp_path={var}\nlock_file={var}/nagios.lock\n\
         state_retention_file={var}/retention.dat\ncheck_result_path={var}/checkresults\n\
         command_file={var}/nagios.cmd\nquery_socket={var}/nagios.qh\ncheck_external_commands=0\n\
         nagios_user={NAGIOS_USER}\nnagios_group={NAGIOS_USER}\ninterval_length=1\nenable_notifications=0\nuse_syslog=0\n\
         check_result_reaper_frequency=1\nmax_service_check_spread=1\nmax_host_check_spread=1\n\
         service_inter_check_delay_method=n\nhost_inter_check_delay_method=n\n\
         service_check_timeout=60\n"
    ));
    fs::create_dir_all(s.path("var/checkresults")).unwrap();
    sh(&format!("chown -R {NAGIOS_USER}: {}", q(&var)));
    s.write("nagios.cfg", &cfg)
}

#[test]
fn nagios_runs_the_shipped_commands() {
    if !real("nagios", &["nagios4"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("nagios");
    let wrapper = probe.wrapper(&s, "check_vmnetprobe", package::PLUGIN, &[]);
    let user1 = wrapper.parent().unwrap().to_path_buf();
    s.write(
        "etc/commands.cfg",
        &shipped("nagios/vmnetprobe-commands.cfg"),
    );
    s.write(
        "etc/services.example.cfg",
        &shipped("nagios/vmnetprobe-services.example.cfg"),
    );
    s.write("etc/base.cfg", NAGIOS_BASE_OBJECTS);

    // 1. The shipped commands and the shipped service example validate.
    let t = Instant::now();
    let cfg = nagios_cfg(
        &s,
        &[
            "etc/commands.cfg",
            "etc/services.example.cfg",
            "etc/base.cfg",
        ],
        &user1,
    );
    let out = Command::new("nagios4")
        .arg("-v")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Total Errors:   0"),
        "nagios4 -v rejected the config:\n{text}"
    );
    assert!(
        text.contains("Checked 2 services"),
        "example services not loaded:\n{text}"
    );
    timing("nagios: nagios4 -v", t);

    // 2. A running Nagios executes both commands; status.dat holds what vmnetprobe printed.
    let sock = probe.socket_arg("lab");
    let ext = probe.external.to_string();
    let down = probe.unreachable.to_string();
    let services = [
        (
            "all",
            format!("vmnetprobe!--socket {sock} --external {ext} -w 100 -c 500 -t 8s"),
        ),
        (
            "one",
            format!("vmnetprobe_vm!lab!--socket {sock} --external {ext} -t 8s"),
        ),
        (
            "down",
            format!("vmnetprobe!--socket {sock} --external {down} -t 8s"),
        ),
    ];
    let mut objs = String::new();
    for (desc, cmd) in &services {
        objs.push_str(&format!(
            "define service {{\n    use generic-service\n    host_name hv01\n    service_description {desc}\n    check_command {cmd}\n}}\n"
        ));
    }
    s.write("etc/services.cfg", &objs);
    let cfg = nagios_cfg(
        &s,
        &["etc/commands.cfg", "etc/services.cfg", "etc/base.cfg"],
        &user1,
    );
    run_ok(Command::new("nagios4").arg("-v").arg(&cfg));
    let t = Instant::now();
    let mut nagios = Daemon::start(
        "nagios4",
        Command::new("nagios4").arg(&cfg),
        s.path("nagios.out"),
    );
    let status = wait_for(
        "3 service results in status.dat",
        Duration::from_secs(60),
        || {
            nagios.assert_running();
            let dat = fs::read_to_string(s.path("var/status.dat")).ok()?;
            let blocks = nagios_blocks(&dat, "servicestatus");
            let done = blocks
                .iter()
                .filter(|b| b.get("has_been_checked").map(String::as_str) == Some("1"))
                .count();
            (done == 3 && runs(&s).len() >= 3).then_some(blocks)
        },
    );
    timing("nagios: start to 3 results", t);
    let stopped = nagios.stop();
    eprintln!("[timing] nagios: stop {:.2}s", stopped.as_secs_f64());

    let runs = runs(&s);
    for (desc, _) in &services {
        let b = status
            .iter()
            .find(|b| b["service_description"] == *desc)
            .unwrap();
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| match *desc {
                "one" => r.argv.contains(&"-d".to_string()),
                "down" => r.argv.contains(&down),
                _ => !r.argv.contains(&"-d".to_string()) && !r.argv.contains(&down),
            })
            .collect();
        assert_eq!(mine.len(), 1, "{desc}: expected one run, got {mine:?}");
        let run = mine[0];
        assert_eq!(
            run.user, NAGIOS_USER,
            "{desc}: Nagios ran the check as another user"
        );
        let p = parse_plugin_output(&run.stdout);
        let got = (
            b["current_state"].parse::<i32>().unwrap(),
            b["plugin_output"].clone(),
            b["long_plugin_output"].clone(),
            b["performance_data"].clone(),
        );
        // status.dat escapes backslashes and newlines.
        let long = p.long.join("\n").replace('\\', r"\\").replace('\n', r"\n");
        let want = (run.rc, p.text.clone(), long, p.perf.join(" "));
        assert_eq!(
            got, want,
            "service {desc}: Nagios recorded something else than vmnetprobe printed:\n{}",
            run.stdout
        );
        let expected_state = if *desc == "down" { 2 } else { 0 };
        assert_eq!(
            run.rc, expected_state,
            "service {desc}: vmnetprobe output:\n{}",
            run.stdout
        );
    }
}

// ---------------------------------------------------------------------------------
// Icinga 2

fn icinga_defines(s: &Scratch) -> Vec<String> {
    for d in [
        "var/lib",
        "var/log",
        "var/cache",
        "var/spool/tmp",
        "var/run",
    ] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    // Icinga drops to RunAsUser before it touches these, also for `daemon -C`.
    sh(&format!("chown -R {NAGIOS_USER}: {}", q(&s.s("var"))));
    [
        ("DataDir", "var/lib"),
        ("LogDir", "var/log"),
        ("CacheDir", "var/cache"),
        ("SpoolDir", "var/spool"),
        ("InitRunDir", "var/run"),
    ]
    .iter()
    .map(|(k, v)| format!("-DConfiguration.{k}={}", s.s(v)))
    .chain([
        format!("-DConfiguration.RunAsUser={NAGIOS_USER}"),
        format!("-DConfiguration.RunAsGroup={NAGIOS_USER}"),
    ])
    .collect()
}

/// Icinga's TLS files for node "icinga-test", made once with its own PKI commands (3 s,
/// mostly the CA key) and cached.
fn icinga_certs(s: &Scratch) {
    let cache = PathBuf::from(CACHE_DIR).join("icinga2-pki-icinga-test");
    if !cache.join("icinga-test.key").exists() {
        let t = Instant::now();
        let tmp = Scratch::new("icinga-pki");
        icinga_pki(&[("icinga-test", &tmp)]);
        let certs = tmp.path("var/lib/certs");
        fs::create_dir_all(CACHE_DIR).unwrap();
        let staging = PathBuf::from(format!("{}.tmp{}", cache.display(), std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).unwrap();
        for f in ["ca.crt", "icinga-test.crt", "icinga-test.key"] {
            fs::copy(certs.join(f), staging.join(f)).unwrap();
        }
        let _ = fs::remove_dir_all(&cache);
        fs::rename(&staging, &cache).unwrap();
        timing("icinga2: PKI (cold, cached afterwards)", t);
    }
    let certs = s.path("var/lib/certs");
    fs::create_dir_all(&certs).unwrap();
    for f in ["ca.crt", "icinga-test.crt", "icinga-test.key"] {
        fs::copy(cache.join(f), certs.join(f)).unwrap();
    }
}

/// Asks Icinga's API (user test) to check the services matching `filter` now.
fn icinga_reschedule(api: &str, filter: &str) -> (u16, String) {
    let body = json!({"type": "Service", "filter": filter, "force": true}).to_string();
    curl(&[
        "-k",
        "-u",
        "test:test",
        "-H",
        "Accept: application/json",
        "-X",
        "POST",
        &format!("{api}/actions/reschedule-check"),
        "-d",
        &body,
    ])
}

/// TLS files for Icinga nodes `cns` under one CA, made by this test with Icinga's own
/// PKI commands, copied into each node's `var/lib/certs`.
fn icinga_pki(nodes: &[(&str, &Scratch)]) {
    let tmp = Scratch::new("icinga-pki-pair");
    let d = icinga_defines(&tmp);
    let certs = tmp.path("var/lib/certs");
    fs::create_dir_all(&certs).unwrap();
    // icinga2 pki drops to RunAsUser too.
    sh(&format!("chown -R {NAGIOS_USER}: {}", q(&tmp.s("var"))));
    let c = |f: &str| certs.join(f).display().to_string();
    run_ok(Command::new("icinga2").args(["pki", "new-ca"]).args(&d));
    for (cn, node) in nodes {
        let (key, csr, crt) = (
            format!("{cn}.key"),
            format!("{cn}.csr"),
            format!("{cn}.crt"),
        );
        run_ok(
            Command::new("icinga2")
                .args([
                    "pki",
                    "new-cert",
                    "--cn",
                    cn,
                    "--key",
                    &c(&key),
                    "--csr",
                    &c(&csr),
                ])
                .args(&d),
        );
        run_ok(
            Command::new("icinga2")
                .args(["pki", "sign-csr", "--csr", &c(&csr), "--cert", &c(&crt)])
                .args(&d),
        );
        let dest = node.path("var/lib/certs");
        fs::create_dir_all(&dest).unwrap();
        fs::copy(tmp.path("var/lib/ca/ca.crt"), dest.join("ca.crt")).unwrap();
        for f in [&key, &crt] {
            fs::copy(certs.join(f), dest.join(f)).unwrap();
        }
        sh(&format!("chown -R {NAGIOS_USER}: {}", q(&node.s("var"))));
    }
}

/// The real deployment: an Icinga 2 master schedules, the agent on the hypervisor
/// executes (`command_endpoint`, from the shipped example's `vmnetprobe_agent` rule),
/// and the result is read on the master's API. Two icinga2 processes on loopback,
/// master and agent zones, certificates made by the test.
#[test]
fn icinga2_master_schedules_and_the_agent_executes() {
    if !real("icinga2-distributed", &["icinga2", "curl"]) {
        return;
    }
    let probe = Probe::start();
    let (m, a) = (Scratch::new("icinga-master"), Scratch::new("icinga-agent"));
    let (dm, da) = (icinga_defines(&m), icinga_defines(&a));
    let t = Instant::now();
    icinga_pki(&[("master", &m), ("agent", &a)]);
    timing("icinga2: PKI for master and agent", t);
    let wrapper = probe.wrapper(&a, "check_vmnetprobe", package::PLUGIN, &[]);
    let (m_port, a_port) = (free_port(), free_port());
    let zones = format!(
        "object Endpoint \"master\" {{ }}\n\
         object Endpoint \"agent\" {{ host = \"127.0.0.1\"; port = \"{a_port}\" }}\n\
         object Zone \"master\" {{ endpoints = [ \"master\" ] }}\n\
         object Zone \"agent\" {{ endpoints = [ \"agent\" ]; parent = \"master\" }}\n"
    );
    let command = shipped("icinga2/vmnetprobe-command.conf");
    // The agent: executes what the master sends, has the CheckCommand, schedules nothing.
    let a_conf = a.write(
        "etc/icinga2.conf",
        &format!(
            "const NodeName = \"agent\"\nconst ZoneName = \"agent\"\nconst PluginDir = \"{}\"\n\
             include <itl>\n{command}\n{zones}\
             object ApiListener \"api\" {{ bind_host = \"127.0.0.1\"; bind_port = {a_port}; accept_commands = true }}\n",
            wrapper.parent().unwrap().display()
        ),
    );
    // The master: the host named like the agent's endpoint, the shipped apply rules.
    let sock = probe.socket_arg("lab");
    let ext = probe.external.to_string();
    let m_conf = m.write(
        "etc/icinga2.conf",
        &format!(
            "const NodeName = \"master\"\nconst ZoneName = \"master\"\nconst PluginDir = \"/nonexistent\"\n\
             include <itl>\n{command}\n{example}\n{zones}\
             object Host \"agent\" {{\n  check_command = \"dummy\"\n  zone = \"master\"\n  vars.vmnetprobe = true\n  \
             vars.vmnetprobe_agent = true\n  vars.vmnetprobe_socket = [ \"{sock}\" ]\n  vars.vmnetprobe_external = \"{ext}\"\n  \
             vars.vmnetprobe_timeout = \"8s\"\n}}\n\
             object CheckerComponent \"checker\" {{ }}\n\
             object ApiUser \"test\" {{ password = \"test\"; permissions = [ \"*\" ] }}\n\
             object ApiListener \"api\" {{ bind_host = \"127.0.0.1\"; bind_port = {m_port} }}\n",
            example = shipped("icinga2/vmnetprobe-services.example.conf"),
        ),
    );
    for (conf, d) in [(&a_conf, &da), (&m_conf, &dm)] {
        let out = common::run_command(
            Command::new("icinga2")
                .args(["daemon", "-C", "-c"])
                .arg(conf)
                .args(d),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "icinga2 daemon -C rejected {}:\n{}",
            conf.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let start = |conf: &Path, d: &[String], s: &Scratch, what: &str| {
        Daemon::start(
            what,
            Command::new("icinga2")
                .args(["daemon", "-c"])
                .arg(conf)
                .args(d)
                .args(["-x", "warning"]),
            s.path("icinga2.out"),
        )
    };
    let t = Instant::now();
    let mut agent = start(&a_conf, &da, &a, "icinga2 agent");
    let mut master = start(&m_conf, &dm, &m, "icinga2 master");
    let api = format!("https://127.0.0.1:{m_port}/v1");
    wait_for("master API", Duration::from_secs(30), || {
        master.assert_running();
        agent.assert_running();
        (curl(&["-k", "-u", "test:test", &format!("{api}/status")]).0 == 200).then_some(())
    });
    // The master connects to the agent's endpoint; then the check can go there.
    wait_for(
        "the agent endpoint connected",
        Duration::from_secs(30),
        || {
            let (_, body) = curl(&[
                "-k",
                "-u",
                "test:test",
                &format!("{api}/objects/endpoints/agent?attrs=connected"),
            ]);
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["results"][0]["attrs"]["connected"] == true).then_some(())
        },
    );
    let result = wait_for(
        "the agent's check result on the master",
        Duration::from_secs(60),
        || {
            master.assert_running();
            icinga_reschedule(&api, r#"service.name==\"vm-network\""#);
            let (_, body) = curl(&["-k", "-u", "test:test", &format!("{api}/objects/services/agent!vm-network?attrs=last_check_result&attrs=command_endpoint")]);
            let v: Value = serde_json::from_str(&body).ok()?;
            let attrs = v["results"][0]["attrs"].clone();
            let output = attrs["last_check_result"]["output"].as_str()?;
            output.starts_with("VMNETPROBE ").then_some(attrs)
        },
    );
    timing(
        "icinga2: master and agent start to a result on the master",
        t,
    );
    master.stop();
    agent.stop();
    let r = &result["last_check_result"];
    assert_eq!(result["command_endpoint"], "agent", "{result}");
    assert_eq!(r["check_source"], "agent", "executed elsewhere: {result}");
    assert_eq!(r["exit_status"], 0, "{result}");
    // The agent's process ran vmnetprobe, as nagios, and printed what the master shows.
    let runs = runs(&a);
    let run = runs
        .iter()
        .find(|run| {
            r["output"].as_str().is_some_and(|o| {
                o.trim_end()
                    .starts_with(parse_plugin_output(&run.stdout).text.trim_end())
            })
        })
        .unwrap_or_else(|| panic!("no run on the agent printed {}", r["output"]));
    assert_eq!(run.user, NAGIOS_USER);
    assert!(
        run.argv
            .windows(2)
            .any(|w| w == ["--external", ext.as_str()]),
        "{:?}",
        run.argv
    );
}

#[test]
fn icinga2_runs_the_shipped_check_command() {
    if !real("icinga2", &["icinga2", "curl"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("icinga2");
    let d = icinga_defines(&s);
    let wrapper = probe.wrapper(&s, "check_vmnetprobe", package::PLUGIN, &[]);
    let command = s.write(
        "etc/vmnetprobe-command.conf",
        &shipped("icinga2/vmnetprobe-command.conf"),
    );
    let example = s.write(
        "etc/vmnetprobe-services.example.conf",
        &shipped("icinga2/vmnetprobe-services.example.conf"),
    );
    let sock = probe.socket_arg("lab");
    let ext = probe.external.to_string();
    let down = probe.unreachable.to_string();
    let hosts = format!(
        "object Host \"hv01\" {{\n  check_command = \"dummy\"\n  vars.vmnetprobe = true\n  vars.vmnetprobe_vms = [ \"lab\" ]\n  \
         vars.vmnetprobe_socket = [ \"{sock}\" ]\n  vars.vmnetprobe_external = \"{ext}\"\n  vars.vmnetprobe_warning = \"100\"\n  \
         vars.vmnetprobe_critical = \"500\"\n  vars.vmnetprobe_timeout = \"8s\"\n}}\n\
         object Host \"hv02\" {{\n  check_command = \"dummy\"\n  vars.vmnetprobe = true\n  \
         vars.vmnetprobe_socket = [ \"{sock}\" ]\n  vars.vmnetprobe_external = \"{down}\"\n  vars.vmnetprobe_timeout = \"8s\"\n}}\n\
         object Host \"lab-vm\" {{\n  check_command = \"dummy\"\n  zone = ZoneName\n  vars.vmnetprobe_hypervisor = NodeName\n  \
         vars.vmnetprobe_domain = \"lab\"\n  vars.vmnetprobe_socket = [ \"{sock}\" ]\n  vars.vmnetprobe_external = \"{ext}\"\n  \
         vars.vmnetprobe_timeout = \"8s\"\n}}\n"
    );
    let port = free_port();
    let base = format!(
        "const NodeName = \"icinga-test\"\nconst ZoneName = \"icinga-test\"\n\
         const PluginDir = \"{}\"\ninclude <itl>\ninclude \"{}\"\ninclude \"{}\"\n{hosts}\
         object Endpoint NodeName {{ }}\nobject Zone ZoneName {{ endpoints = [ NodeName ] }}\n",
        wrapper.parent().unwrap().display(),
        command.display(),
        example.display()
    );
    // 1. The shipped CheckCommand and apply rules validate.
    let conf = s.write("etc/check.conf", &base);
    let t = Instant::now();
    let out = common::run_command(
        Command::new("icinga2")
            .args(["daemon", "-C", "-c"])
            .arg(&conf)
            .args(&d),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "icinga2 daemon -C rejected the config:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Instantiated 4 Services"),
        "expected 4 applied services:\n{text}"
    );
    timing("icinga2: daemon -C", t);

    // 2. A running icinga2 executes them; the API's last_check_result is what vmnetprobe printed.
    icinga_certs(&s);
    let conf = s.write(
        "etc/icinga2.conf",
        &format!(
            "{base}object CheckerComponent \"checker\" {{ }}\n\
             object ApiUser \"test\" {{ password = \"test\"; permissions = [ \"*\" ] }}\n\
             object ApiListener \"api\" {{ bind_host = \"127.0.0.1\"; bind_port = {port} }}\n"
        ),
    );
    sh(&format!("chown -R {NAGIOS_USER}: {}", q(&s.s("var"))));
    let t = Instant::now();
    let mut icinga = Daemon::start(
        "icinga2",
        Command::new("icinga2")
            .args(["daemon", "-c"])
            .arg(&conf)
            .args(&d)
            .args(["-x", "warning"]),
        s.path("icinga2.out"),
    );
    let api = format!("https://127.0.0.1:{port}/v1");
    wait_for("icinga2 API", Duration::from_secs(30), || {
        icinga.assert_running();
        (curl(&["-k", "-u", "test:test", &format!("{api}/status")]).0 == 200).then_some(())
    });
    timing("icinga2: start to API ready", t);
    // The example's check_interval is 5m: ask for the first checks now.
    let (code, body) = icinga_reschedule(&api, "true");
    assert_eq!(code, 200, "reschedule-check: {body}");
    let services = wait_for(
        "4 check results via the API",
        Duration::from_secs(60),
        || {
            let (code, body) = curl(&["-k", "-u", "test:test", &format!("{api}/objects/services?attrs=last_check_result&attrs=state&attrs=name&attrs=host_name&attrs=command_endpoint")]);
            if code != 200 {
                return None;
            }
            let v: Value = serde_json::from_str(&body).ok()?;
            let results = v["results"].as_array()?.clone();
            (results.len() == 4
                && results
                    .iter()
                    .all(|r| r["attrs"]["last_check_result"].is_object()))
            .then_some(results)
        },
    );
    timing("icinga2: start to 4 results", t);
    let stopped = icinga.stop();
    eprintln!("[timing] icinga2: stop {:.2}s", stopped.as_secs_f64());

    let runs = runs(&s);
    for svc in &services {
        let name = svc["name"].as_str().unwrap();
        let r = &svc["attrs"]["last_check_result"];
        let argv: Vec<String> = r["command"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(r["command"][0].as_str(), Some(wrapper.to_str().unwrap()));
        let got = (
            r["exit_status"].as_i64().unwrap() as i32,
            // Icinga keeps the space before `|`: compare line ends trimmed.
            r["output"]
                .as_str()
                .unwrap()
                .lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n"),
            r["performance_data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap_or("?").to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
        let candidates: Vec<&Run> = runs.iter().filter(|run| run.argv == argv).collect();
        assert!(
            !candidates.is_empty(),
            "{name}: no vmnetprobe run with argv {argv:?}"
        );
        for run in &candidates {
            assert_eq!(
                run.user, NAGIOS_USER,
                "{name}: Icinga ran the check as another user"
            );
        }
        let wants: Vec<_> = candidates
            .iter()
            .map(|run| {
                let p = parse_plugin_output(&run.stdout);
                let mut output = p.text.clone();
                for l in &p.long {
                    output.push('\n');
                    output.push_str(l);
                }
                (
                    run.rc,
                    output
                        .lines()
                        .map(str::trim_end)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    p.perf,
                )
            })
            .collect();
        assert!(
            wants.contains(&got),
            "{name}: icinga2 recorded\n{got:?}\nbut vmnetprobe printed one of\n{wants:?}"
        );
        assert_eq!(
            svc["attrs"]["state"].as_f64(),
            Some(got.0 as f64),
            "{name}: state"
        );
        let host = svc["attrs"]["host_name"].as_str().unwrap();
        let expected_state = if host == "hv02" { 2 } else { 0 };
        assert_eq!(
            got.0, expected_state,
            "{host}!{name}: vmnetprobe output {:?}",
            got.1
        );
    }
    let names: Vec<String> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "hv01!vm-network",
        "hv01!vm-network-lab",
        "hv02!vm-network",
        "lab-vm!vm-network",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "service {want} missing: {names:?}"
        );
    }
    // The per-VM host's service runs on the hypervisor's endpoint, for its VM only.
    let per_vm = services
        .iter()
        .find(|s| s["attrs"]["host_name"] == "lab-vm")
        .expect("lab-vm service");
    assert_eq!(
        per_vm["attrs"]["command_endpoint"], "icinga-test",
        "{per_vm}"
    );
    let command = &per_vm["attrs"]["last_check_result"]["command"];
    assert!(
        command
            .as_array()
            .is_some_and(|a| a.windows(2).any(|w| w[0] == "--domain" && w[1] == "lab")),
        "{command}"
    );
}

// ---------------------------------------------------------------------------------
// Telegraf line protocol into InfluxDB 1.6

struct Influx {
    _daemon: Daemon,
    url: String,
}

impl Influx {
    fn start(s: &Scratch) -> Influx {
        let (http, rpc) = (free_port(), free_port());
        let dir = s.s("influx");
        let conf = s.write(
            "influx/influxdb.conf",
            &format!(
                "reporting-enabled = false\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{dir}/meta\"\n[data]\n  dir = \"{dir}/data\"\n  wal-dir = \"{dir}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
                 [logging]\n  level = \"warn\"\n  suppress-logo = true\n"
            ),
        );
        let t = Instant::now();
        let mut daemon = Daemon::start(
            "influxd",
            Command::new("influxd").arg("run").arg("-config").arg(&conf),
            s.path("influx/log"),
        );
        let url = format!("http://127.0.0.1:{http}");
        wait_for("influxd /ping", Duration::from_secs(30), || {
            daemon.assert_running();
            (curl(&[&format!("{url}/ping")]).0 == 204).then_some(())
        });
        timing("influxdb: start to ready", t);
        let (code, body) = curl(&[
            "-XPOST",
            &format!("{url}/query"),
            "--data-urlencode",
            "q=CREATE DATABASE vmnet",
        ]);
        assert_eq!(code, 200, "{body}");
        Influx {
            _daemon: daemon,
            url,
        }
    }

    /// POST one body of line protocol; (HTTP status, body).
    fn write(&self, s: &Scratch, lines: &str) -> (u16, String) {
        let f = s.write("influx/body", lines);
        curl(&[
            "-XPOST",
            &format!("{}/write?db=vmnet", self.url),
            "--data-binary",
            &format!("@{}", f.display()),
        ])
    }

    fn select_all(&self, measurement: &str) -> Vec<BTreeMap<String, Value>> {
        let (code, body) = curl(&[
            "-G",
            &format!("{}/query", self.url),
            "--data-urlencode",
            "db=vmnet",
            "--data-urlencode",
            "epoch=ns",
            "--data-urlencode",
            &format!("q=SELECT * FROM \"{measurement}\""),
        ]);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let Some(series) = v["results"][0]["series"].as_array() else {
            return Vec::new();
        };
        let cols: Vec<String> = series[0]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        series[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                cols.iter()
                    .cloned()
                    .zip(row.as_array().unwrap().iter().cloned())
                    .collect()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Line {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Field>,
    timestamp: Option<i64>,
}

/// One line as the tests' line-protocol reader (InfluxData's own parser)
/// reads it; a line it refuses fails the test.
fn parse_lp(line: &str) -> Line {
    let point = line_protocol::parse(line).unwrap_or_else(|e| panic!("{e}"));
    Line {
        measurement: point.measurement,
        tags: point.tags.into_iter().collect(),
        fields: point.fields.into_iter().collect(),
        timestamp: point.timestamp,
    }
}

fn field_matches(f: &Field, v: &Value) -> bool {
    match (f, v) {
        (Field::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
        (Field::Float(x), Value::Number(n)) => n.as_f64() == Some(*x),
        (Field::Bool(b), Value::Bool(c)) => b == c,
        (Field::Str(s), Value::String(t)) => s == t,
        _ => false,
    }
}

/// Every line printed must be in InfluxDB, with equal tags and fields.
fn assert_read_back(influx: &Influx, lines: &[Line]) {
    let mut by_m: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for l in lines {
        by_m.entry(l.measurement.as_str()).or_default().push(l);
    }
    for (m, want) in by_m {
        let rows = influx.select_all(m);
        assert_eq!(
            rows.len(),
            want.len(),
            "{m}: {} rows in InfluxDB for {} lines:\n{rows:?}",
            rows.len(),
            want.len()
        );
        let tag_keys: Vec<&String> = want.iter().flat_map(|l| l.tags.keys()).collect();
        for l in want {
            let hit = rows.iter().any(|row| {
                l.timestamp
                    .is_none_or(|ts| row["time"].as_i64() == Some(ts))
                    && tag_keys.iter().all(|k| match l.tags.get(*k) {
                        Some(v) => row.get(*k).and_then(Value::as_str) == Some(v.as_str()),
                        None => row.get(*k).is_none_or(Value::is_null),
                    })
                    && l.fields
                        .iter()
                        .all(|(k, f)| row.get(k).is_some_and(|v| field_matches(f, v)))
            });
            assert!(
                hit,
                "{m}: line not read back as printed:\n{l:?}\nrows:\n{rows:#?}"
            );
        }
    }
}

/// The command array of a shipped Telegraf snippet, with the binary and the external
/// address replaced. `key` is `commands` (exec, array of arrays) or `command` (execd).
fn telegraf_command(file: &str, key: &str, probe: &Probe) -> Vec<String> {
    let conf = shipped(file);
    let line = conf
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{file}: no `{key} = ` line"));
    let value: Value = serde_json::from_str(line.split_once(" = ").unwrap().1).unwrap();
    let argv = if key == "commands" {
        value[0].clone()
    } else {
        value
    };
    let mut argv: Vec<String> = argv
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], SHIPPED_BIN);
    assert_eq!(Path::new(&argv[0]), probe.bin);
    let ext = argv
        .iter()
        .position(|a| a == "--external")
        .expect("--external in the snippet");
    argv[ext + 1] = probe.external.to_string();
    argv
}

/// VM names that line protocol must escape, one agent socket each (all the lab's qemu-ga).
/// `--socket NAME=PATH` cannot carry `=` in NAME (split at the first `=`), so the name
/// with `=` comes from a symlink found by --socket-glob (named by file stem).
const ODD_NAMES: &[&str] = &[
    "db 01",
    "web,eu",
    "say \"hi\" 'x'",
    "könig-Ω ü",
    r"back\slash",
];
const ODD_GLOB_NAME: &str = "k=v, x";
const GONE_NAME: &str = "gone,vm";

fn odd_name_args(s: &Scratch, probe: &Probe) -> Vec<String> {
    let mut args = Vec::new();
    for n in ODD_NAMES {
        args.push("--socket".into());
        args.push(probe.socket_arg(n));
    }
    let dir = s.path("socks");
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&probe.socket, dir.join(format!("{ODD_GLOB_NAME}.qga"))).unwrap();
    args.push("--socket-glob".into());
    args.push(format!("{}/*.qga", dir.display()));
    // An agent that is not there: its reason (a string field) quotes this path,
    // so `"` and `\` must be escaped in field values too.
    args.push("--socket".into());
    args.push(format!("{GONE_NAME}={}", s.s(r#"no "such" \agent"#)));
    args
}

fn lp_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn telegraf_exec_output_is_accepted_and_read_back_by_influxdb() {
    if !real("telegraf-exec", &["influxd", "curl"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("influx-exec");
    let influx = Influx::start(&s);
    let mut argv = telegraf_command("telegraf/vmnetprobe-exec.conf", "commands", &probe);
    argv.extend(odd_name_args(&s, &probe));
    let t = Instant::now();
    let (rc, out) = probe.run(&argv[1..]);
    timing("telegraf exec: one vmnetprobe run (7 VMs)", t);
    assert_eq!(
        rc, 0,
        "inputs.exec discards output of a failing command:\n{out}"
    );
    let lines = lp_lines(&out);
    assert!(!lines.is_empty(), "no line protocol printed");
    let mut rejected = Vec::new();
    for l in &lines {
        let (code, body) = influx.write(&s, &format!("{l}\n"));
        if code != 204 {
            rejected.push(format!("{l}\n  -> HTTP {code} {body}"));
        }
    }
    assert!(
        rejected.is_empty(),
        "InfluxDB rejected lines:\n{}",
        rejected.join("\n")
    );
    let parsed: Vec<Line> = lines.iter().map(|l| parse_lp(l)).collect();
    assert_read_back(&influx, &parsed);

    let mut names: Vec<String> = parsed
        .iter()
        .filter(|l| l.measurement == "vmnetprobe_vm")
        .map(|l| l.tags["vm"].clone())
        .collect();
    names.sort();
    let mut want: Vec<String> = ODD_NAMES
        .iter()
        .chain([&ODD_GLOB_NAME, &GONE_NAME])
        .map(|n| n.to_string())
        .collect();
    want.sort();
    assert_eq!(names, want, "VM names did not survive line protocol");
    for m in [
        "vmnetprobe_vm",
        "vmnetprobe_nic",
        "vmnetprobe_external",
        "vmnetprobe_run",
    ] {
        assert!(parsed.iter().any(|l| l.measurement == m), "no {m} line");
    }
    let stamps: std::collections::BTreeSet<_> = parsed.iter().map(|l| l.timestamp).collect();
    assert_eq!(
        stamps.len(),
        1,
        "one timestamp per run expected: {stamps:?}"
    );
}

#[test]
fn telegraf_execd_batches_are_accepted_by_influxdb() {
    if !real("telegraf-execd", &["influxd", "curl"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("influx-execd");
    let influx = Influx::start(&s);
    let mut argv = telegraf_command("telegraf/vmnetprobe-execd.conf", "command", &probe);
    argv.extend(["--socket".to_string(), probe.socket_arg("lab vm")]);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Nothing is printed before Telegraf asks.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "execd printed before the first request"
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut all = Vec::new();
    let mut stamps = Vec::new();
    for batch in 0..2 {
        let t = Instant::now();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        // A batch ends with its vmnetprobe_run line (written once per batch); lines
        // arriving shortly after would belong to it too, so drain briefly.
        let mut lines = Vec::new();
        loop {
            let l = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("batch did not complete within 20s");
            let done = l.starts_with("vmnetprobe_run");
            lines.push(l);
            if done {
                break;
            }
        }
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            lines.push(l);
        }
        timing(&format!("telegraf execd: batch {batch}"), t);
        let lines = lp_lines(&lines.join("\n"));
        let (code, body) = influx.write(&s, &(lines.join("\n") + "\n"));
        assert_eq!(
            code,
            204,
            "batch {batch} rejected: {body}\n{}",
            lines.join("\n")
        );
        let parsed: Vec<Line> = lines.iter().map(|l| parse_lp(l)).collect();
        let ts: std::collections::BTreeSet<_> = parsed.iter().map(|l| l.timestamp).collect();
        assert_eq!(
            ts.len(),
            1,
            "batch {batch}: one timestamp per batch expected"
        );
        stamps.extend(ts);
        assert_eq!(
            parsed
                .iter()
                .filter(|l| l.measurement == "vmnetprobe_run")
                .count(),
            1
        );
        assert!(parsed
            .iter()
            .any(|l| l.measurement == "vmnetprobe_vm" && l.tags["vm"] == "lab vm"));
        all.extend(parsed);
    }
    assert_ne!(
        stamps[0], stamps[1],
        "both batches carry the same timestamp"
    );
    assert_read_back(&influx, &all);
    // Telegraf stopping closes stdin: vmnetprobe exits 0.
    drop(stdin);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("execd mode did not exit on stdin EOF");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "execd exit status {status}");
}

// ---------------------------------------------------------------------------------
// Zabbix 6.0: PostgreSQL + server + frontend API (php -S) + agent with the shipped
// UserParameter. The template's master item is ZABBIX_PASSIVE, so the test runs a
// real zabbix_agentd on 127.0.0.1 and the server polls it: the shipped template and
// UserParameter file are used as they are (binary path and external address replaced).

/// A PostgreSQL cluster in a scratch dir; `pg_ctl stop` on drop.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(s: &Scratch) -> Postgres {
        let bin = PathBuf::from(sh("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1").trim());
        let port = free_port();
        let (data, sock, log) = (s.path("pg/data"), s.path("pg/sock"), s.path("pg/log"));
        for d in [&data, &sock, &log] {
            fs::create_dir_all(d).unwrap();
        }
        sh(&format!(
            "chown -R postgres: {0} && chmod 700 {1}",
            q(&s.s("pg")),
            q(&data.display().to_string())
        ));
        let t = Instant::now();
        let as_pg = |cmd: String| sh(&format!("su postgres -s /bin/sh -c {}", q(&cmd)));
        as_pg(format!(
            "{}/initdb -D {} -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null",
            bin.display(),
            data.display()
        ));
        as_pg(format!(
            "{}/pg_ctl -D {} -l {}/pg.log -w start -o \"-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" >/dev/null",
            bin.display(),
            data.display(),
            log.display(),
            sock.display()
        ));
        timing("zabbix: postgres initdb + start", t);
        Postgres { bin, data, port }
    }

    fn psql(&self, user: &str, db: &str, sql: &str) -> String {
        run_ok(Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ]))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "{}/pg_ctl -D {} -m fast -w stop >/dev/null",
                self.bin.display(),
                self.data.display()
            ))
            .status();
    }
}

/// Creates database `zabbix` (owner zabbix) with the Zabbix schema and data: restored
/// from a pg_dump cached under CACHE_DIR (keyed by Zabbix and PostgreSQL versions), or
/// loaded from the package's SQL (~40 s) and then dumped into the cache.
fn zabbix_database(pg: &Postgres) {
    pg.psql(
        "postgres",
        "postgres",
        "CREATE ROLE zabbix LOGIN PASSWORD 'zabbix'",
    );
    pg.psql(
        "postgres",
        "postgres",
        "CREATE DATABASE zabbix OWNER zabbix TEMPLATE template0 ENCODING 'UTF8'",
    );
    let version = sh("dpkg-query -W -f='${Version}' zabbix-server-pgsql");
    let pg_major = pg
        .bin
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let key: String = format!("zabbix-{version}-pg{pg_major}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dump = PathBuf::from(CACHE_DIR).join(format!("{key}.dump"));
    let conn = format!("-h 127.0.0.1 -p {} -U zabbix", pg.port);
    let t = Instant::now();
    if dump.exists() {
        sh(&format!(
            "pg_restore {conn} -d zabbix --no-owner -j 2 {}",
            q(&dump.display().to_string())
        ));
        timing("zabbix: restore cached DB dump (warm)", t);
    } else {
        sh(&format!(
            "cd /usr/share/zabbix-server-pgsql && zcat schema.sql.gz images.sql.gz data.sql.gz | psql {conn} -d zabbix -q -v ON_ERROR_STOP=1 >/dev/null"
        ));
        timing("zabbix: load schema + data (cold)", t);
        fs::create_dir_all(CACHE_DIR).unwrap();
        let tmp = format!("{}.tmp{}", dump.display(), std::process::id());
        sh(&format!("pg_dump {conn} -Fc -f {} zabbix", q(&tmp)));
        fs::rename(&tmp, &dump).unwrap();
        eprintln!("cached the Zabbix database as {}", dump.display());
    }
}

struct ZabbixApi {
    url: String,
    auth: Option<String>,
    body: PathBuf,
}

impl ZabbixApi {
    fn call(&self, method: &str, params: Value) -> Value {
        let mut req = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        if let Some(a) = &self.auth {
            req["auth"] = json!(a);
        }
        fs::write(&self.body, req.to_string()).unwrap();
        let (code, body) = curl(&[
            "-H",
            "Content-Type: application/json-rpc",
            "--data-binary",
            &format!("@{}", self.body.display()),
            &self.url,
        ]);
        assert_eq!(code, 200, "{method}: HTTP {code} {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method}: {e}: {body}"));
        assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
        v["result"].clone()
    }
}

/// What a JSONPath prototype should yield for one discovered item, from a report.
/// Items are keyed by the VM's `id` (its UUID, else `name:<name>`).
fn zabbix_expected(report: &Value, key: &str) -> Option<String> {
    let inner = key.split_once('[')?.1.strip_suffix(']')?;
    let params: Vec<String> = serde_json::from_str(&format!("[{inner}]")).ok()?;
    let vm = report["vms"]
        .as_array()?
        .iter()
        .find(|v| v["id"] == params[0])?;
    let nic = || {
        vm["nics"]
            .as_array()?
            .iter()
            .find(|n| n["mac"] == params[1])
            .cloned()
    };
    let v = match key.split('[').next()? {
        "vmnetprobe.vm.state" => vm["state_code"].clone(),
        "vmnetprobe.vm.code" => vm["code"].clone(),
        "vmnetprobe.vm.reason" => vm["reason"].clone(),
        "vmnetprobe.vm.agent" => vm["agent"]["code"].clone(),
        "vmnetprobe.vm.external" => vm["external"]["code"].clone(),
        "vmnetprobe.vm.external.rtt" => vm["external"]["rtt_ms"].clone(),
        "vmnetprobe.nic.status" => nic()?["code"].clone(),
        "vmnetprobe.nic.reason" => nic()?["reason"].clone(),
        "vmnetprobe.nic.rtt" => nic()?["rtt_ms"].clone(),
        other => panic!("no expectation for item {other}"),
    };
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Names of the host's discovered triggers that are in PROBLEM state.
fn zabbix_firing(api: &ZabbixApi, hostid: &str, flags: u8) -> Vec<String> {
    let trig = api.call(
        "trigger.get",
        json!({"hostids": [hostid], "filter": {"flags": flags, "value": 1}, "output": ["description"], "expandDescription": true}),
    );
    trig.as_array()
        .unwrap()
        .iter()
        .map(|t| t["description"].as_str().unwrap().to_string())
        .collect()
}

/// Sets a host macro of `hostid` to `value`.
fn zabbix_set_macro(api: &ZabbixApi, hostid: &str, name: &str, value: &str) {
    let found = api.call(
        "usermacro.get",
        json!({"hostids": [hostid], "filter": {"macro": name}, "output": ["hostmacroid"]}),
    );
    let id = found[0]["hostmacroid"]
        .as_str()
        .unwrap_or_else(|| panic!("no host macro {name}"));
    api.call(
        "usermacro.update",
        json!({"hostmacroid": id, "value": value}),
    );
}

fn same_value(got: &str, want: &str) -> bool {
    got == want
        || matches!((got.parse::<f64>(), want.parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() < 1e-9)
}

/// zabbix_agentd on 127.0.0.1:`port` as the Debian package runs it: started as root, it
/// drops to `user` (no AllowRoot), with the default Timeout (3 s), including `userparam`.
fn zabbix_agent(s: &Scratch, port: u16, userparam: &Path, user: &str) -> Daemon {
    let run = s.path(&format!("agent-{port}"));
    fs::create_dir_all(&run).unwrap();
    sh(&format!("chown {user}: {}", q(&run.display().to_string())));
    let conf = s.write(
        &format!("etc/zabbix_agentd-{port}.conf"),
        &format!(
            "LogType=console\nPidFile={}/zabbix_agentd.pid\nServer=127.0.0.1\nListenIP=127.0.0.1\n\
             ListenPort={port}\nStartAgents=2\nHostname=hv01\nUser={user}\nInclude={}\n",
            run.display(),
            userparam.display()
        ),
    );
    let mut agent = Daemon::start(
        "zabbix_agentd",
        Command::new("zabbix_agentd").args(["-f", "-c"]).arg(&conf),
        s.path(&format!("agent-{port}.log")),
    );
    wait_for("zabbix_agentd listening", Duration::from_secs(20), || {
        agent.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    agent
}

/// `zabbix_get` of `key` from the agent on `port`, as the server's poller asks it.
fn zabbix_get(port: u16, key: &str) -> String {
    let out = common::run_command(
        Command::new("zabbix_get").args(["-s", "127.0.0.1", "-p", &port.to_string(), "-k", key]),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn zabbix_imports_the_template_and_discovers_vms() {
    if !real(
        "zabbix",
        &[
            "zabbix_server",
            "zabbix_agentd",
            "php",
            "psql",
            "curl",
            "/usr/share/zabbix/api_jsonrpc.php",
        ],
    ) {
        return;
    }
    let t0 = Instant::now();
    let probe = Probe::start();
    let s = Scratch::new("zabbix");
    let pg = Postgres::start(&s);
    zabbix_database(&pg);

    // Frontend: a private copy, because Debian hard-codes /etc/zabbix/zabbix.conf.php.
    let (web_port, server_port, agent_port) = (free_port(), free_low_port(), free_low_port());
    let web = s.s("web");
    sh(&format!(
        "cp -a /usr/share/zabbix {w} && sed -i \"s#'/etc/zabbix/zabbix.conf.php'#'{w}/conf/zabbix.conf.php'#\" {w}/include/classes/core/CConfigFile.php",
        w = web
    ));
    s.write(
        "web/conf/zabbix.conf.php",
        &format!(
            "<?php\n$DB['TYPE']='POSTGRESQL'; $DB['SERVER']='127.0.0.1'; $DB['PORT']='{}'; $DB['DATABASE']='zabbix';\n\
             $DB['USER']='zabbix'; $DB['PASSWORD']='zabbix'; $DB['SCHEMA']=''; $DB['ENCRYPTION']=false;\n\
             $DB['KEY_FILE']=''; $DB['CERT_FILE']=''; $DB['CA_FILE']=''; $DB['VERIFY_HOST']=false; $DB['CIPHER_LIST']='';\n\
             $DB['VAULT_URL']=''; $DB['VAULT_DB_PATH']=''; $DB['VAULT_TOKEN']=''; $DB['DOUBLE_IEEE754']=true;\n\
             $ZBX_SERVER='127.0.0.1'; $ZBX_SERVER_PORT='{server_port}'; $ZBX_SERVER_NAME='test';\n\
             $IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;\n",
            pg.port
        ),
    );
    let mut php = Daemon::start(
        "php -S",
        Command::new("php").args(["-S", &format!("127.0.0.1:{web_port}"), "-t", &web]),
        s.path("php.log"),
    );

    // Agent with the shipped UserParameter; the wrapper adds the agent sockets.
    // Four VMs: "lab" (real agent), one whose agent socket does not exist (its name
    // needs quoting in item keys; its RTTs are null and must be discarded), one whose
    // qemu-ga blocks guest-exec, and one whose ping binary fails.
    let noexec = common::AgentLab::start(common::LabOptions {
        block_rpcs: Some("guest-exec,guest-exec-status".into()),
        ..common::LabOptions::default()
    });
    let noping = common::AgentLab::start(common::LabOptions {
        ping_wrapper: Some("#!/bin/sh\necho 'ping: broken' >&2\nexit 2\n".into()),
        ..common::LabOptions::default()
    });
    share_socket(&noexec);
    share_socket(&noping);
    let wrapper = probe.wrapper(
        &s,
        "vmnetprobe",
        package::BIN,
        &[
            "--socket".into(),
            probe.socket_arg("lab"),
            "--socket".into(),
            format!("gone vm,1={}", s.s("no-agent.sock")),
            "--socket".into(),
            noexec.socket_arg("noexec"),
            "--socket".into(),
            noping.socket_arg("noping"),
        ],
    );
    let userparam_file = shipped("zabbix/userparameter_vmnetprobe.conf");
    assert!(
        userparam_file.contains("UserParameter=vmnetprobe.report[*],")
            && !userparam_file.contains(SHIPPED_EXTERNAL),
        "settings come from key parameters, not from the file"
    );
    let userparam = s.write(
        "etc/userparameter_vmnetprobe.conf",
        &localize(&userparam_file, &wrapper, SHIPPED_EXTERNAL),
    );
    let mut agent = zabbix_agent(&s, agent_port, &userparam, ZABBIX_USER);

    fs::create_dir_all(s.path("zsock")).unwrap();
    let server_conf = s.write(
        "etc/zabbix_server.conf",
        &format!(
            "LogType=console\nPidFile={}\nSocketDir={}\nDBHost=127.0.0.1\nDBPort={}\nDBName=zabbix\nDBUser=zabbix\nDBPassword=zabbix\n\
             ListenIP=127.0.0.1\nListenPort={server_port}\nAllowRoot=1\nCacheUpdateFrequency=1\nHousekeepingFrequency=0\nTimeout=4\n\
             StartPollers=2\nStartPollersUnreachable=1\nStartPingers=0\nStartDiscoverers=0\nStartHTTPPollers=0\nStartTrappers=1\n\
             StartLLDProcessors=1\nStartPreprocessors=2\nStartDBSyncers=1\nStartEscalators=1\nStartAlerters=1\nStartTimers=1\n",
            s.s("zabbix_server.pid"),
            s.s("zsock"),
            pg.port
        ),
    );
    let t = Instant::now();
    let mut server = Daemon::start(
        "zabbix_server",
        Command::new("zabbix_server")
            .args(["-f", "-c"])
            .arg(&server_conf),
        s.path("server.log"),
    );

    let mut api = ZabbixApi {
        url: format!("http://127.0.0.1:{web_port}/api_jsonrpc.php"),
        auth: None,
        body: s.path("api-request.json"),
    };
    wait_for("zabbix API", Duration::from_secs(20), || {
        php.assert_running();
        (curl(&[&api.url.replace("api_jsonrpc.php", "")]).0 == 200).then_some(())
    });
    let token = api.call(
        "user.login",
        json!({"username": "Admin", "password": "zabbix"}),
    );
    api.auth = Some(token.as_str().unwrap().to_string());
    // The stock "Zabbix server" host would poll an agent on 127.0.0.1:10050: disable it.
    api.call("host.update", json!({"hostid": "10084", "status": 1}));

    // 1. The shipped template imports as it is.
    let yes = json!({"createMissing": true, "updateExisting": true});
    let imported = api.call(
        "configuration.import",
        json!({"format": "yaml", "source": shipped("zabbix/template_vmnetprobe.yaml"), "rules": {
            "groups": {"createMissing": true}, "templates": yes, "items": yes, "triggers": yes,
            "discoveryRules": yes, "valueMaps": yes, "templateLinkage": {"createMissing": true}}}),
    );
    assert_eq!(imported, json!(true));
    let tpl = api.call(
        "template.get",
        json!({"filter": {"host": ["vmnetprobe by Zabbix agent"]}, "output": ["templateid"]}),
    );
    let tpl_id = tpl[0]["templateid"]
        .as_str()
        .expect("template imported")
        .to_string();
    let group = api.call(
        "hostgroup.get",
        json!({"filter": {"name": ["Templates"]}, "output": ["groupid"]}),
    );

    // 2. A host linked to it: a fast interval, the lab's external address by macro
    //    (never the template's public default), an RTT threshold of -1 ms for VM "lab"
    //    (context macro) so that the RTT trigger must fire, and the shortest nodata.
    let host = api.call(
        "host.create",
        json!({"host": "hv01", "groups": [{"groupid": group[0]["groupid"]}], "templates": [{"templateid": tpl_id}],
               "interfaces": [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "", "port": agent_port.to_string()}],
               "macros": [{"macro": "{$VMNETPROBE.INTERVAL}", "value": "3s"},
                          {"macro": "{$VMNETPROBE.EXTERNAL}", "value": probe.external.to_string()},
                          {"macro": "{$VMNETPROBE.NODATA.TIMEOUT}", "value": "30s"},
                          {"macro": "{$VMNETPROBE.GATEWAY.RTT.WARN:\"lab\"}", "value": "-1"}]}),
    );
    let hostid = host["hostids"][0].as_str().unwrap().to_string();
    timing(
        "zabbix: server start to template imported + host created",
        t,
    );

    // 3. Discovery creates the items; every one gets the value vmnetprobe printed.
    let report = wait_for(
        "a vmnetprobe run by the agent",
        Duration::from_secs(60),
        || {
            server.assert_running();
            agent.assert_running();
            runs(&s).into_iter().next()
        },
    );
    assert_eq!(report.rc, 0, "vmnetprobe zabbix failed: {}", report.stdout);
    assert_eq!(
        report.user, ZABBIX_USER,
        "the agent ran vmnetprobe as another user"
    );
    // The macros are the settings: the agent ran vmnetprobe with the host's values.
    let external = probe.external.to_string();
    assert!(
        report
            .argv
            .windows(2)
            .any(|w| w == ["--external", external.as_str()])
            && report.argv.windows(2).any(|w| w == ["-t", "2500ms"]),
        "{:?}",
        report.argv
    );
    let report: Value =
        serde_json::from_str(&report.stdout).expect("vmnetprobe zabbix prints JSON");
    let vms = report["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 4, "{report}");
    let nics: usize = vms
        .iter()
        .map(|v| v["nics"].as_array().unwrap().len())
        .sum();
    assert!(nics >= 3, "the lab VMs should have NICs: {report}");
    let want_items = vms.len() * 6 + nics * 3;

    let t = Instant::now();
    let items = wait_for(
        "discovered items with values",
        Duration::from_secs(90),
        || {
            server.assert_running();
            let items = api.call(
            "item.get",
            json!({"hostids": [hostid], "filter": {"flags": 4}, "output": ["key_", "lastvalue", "lastclock", "state", "error"]}),
        );
            let items = items.as_array().unwrap().clone();
            for i in &items {
                assert_eq!(
                    i["state"], "0",
                    "item {} not supported: {}",
                    i["key_"], i["error"]
                );
            }
            let all_runs: Vec<Value> = runs(&s)
                .iter()
                .filter_map(|r| serde_json::from_str(&r.stdout).ok())
                .collect();
            let ready = items.len() == want_items
                && items.iter().all(|i| {
                    let key = i["key_"].as_str().unwrap();
                    let expected = all_runs.iter().any(|r| zabbix_expected(r, key).is_some());
                    !expected || i["lastclock"] != "0"
                });
            ready.then_some((items, all_runs))
        },
    );
    timing("zabbix: host created to discovered items with values", t);
    let (items, all_runs) = items;
    for i in &items {
        eprintln!("zabbix item {} = {:?}", i["key_"], i["lastvalue"]);
    }
    for i in &items {
        let key = i["key_"].as_str().unwrap();
        let got = i["lastvalue"].as_str().unwrap();
        if i["lastclock"] == "0" {
            assert!(
                all_runs.iter().all(|r| zabbix_expected(r, key).is_none()),
                "{key} has no value"
            );
            continue;
        }
        let wants: Vec<String> = all_runs
            .iter()
            .filter_map(|r| zabbix_expected(r, key))
            .collect();
        assert!(
            wants.iter().any(|w| same_value(got, w)),
            "{key}: Zabbix has {got:?}, vmnetprobe printed one of {wants:?}"
        );
    }
    let lab_uuid_free = vms
        .iter()
        .all(|v| v["id"].as_str().is_some_and(|id| id.starts_with("name:")));
    assert!(lab_uuid_free, "socket VMs are keyed name:<name>: {report}");
    let count = api.call(
        "item.get",
        json!({"hostids": [hostid], "filter": {"key_": "vmnetprobe.vms"}, "output": ["lastvalue"]}),
    );
    assert_eq!(count[0]["lastvalue"], "4");

    // 4. Trigger prototypes were discovered; each class fires for its fault: "RTT high"
    //    for VM "lab" (threshold -1 ms by context macro), "agent down" for the VM
    //    without an agent, "guest-exec not allowed" and "ping cannot run" for theirs;
    //    nothing else.
    let want_triggers = vms.len() * 6 + nics * 3;
    let t = Instant::now();
    let want_firing = [
        "VM gone vm,1: guest agent down",
        "VM noexec: guest-exec not allowed, network not checked",
        "VM noping: ping cannot run in the guest",
    ];
    wait_for(
        "discovered triggers; one per injected fault firing",
        Duration::from_secs(60),
        || {
            let trig = api.call(
                "trigger.get",
                json!({"hostids": [hostid], "filter": {"flags": 4}, "output": ["description"]}),
            );
            let firing = zabbix_firing(&api, &hostid, 4);
            let rtt = firing
                .iter()
                .any(|d| d.starts_with("VM lab NIC ") && d.ends_with(": gateway RTT high"));
            let ok = trig.as_array().unwrap().len() == want_triggers
                && rtt
                && want_firing.iter().all(|w| firing.iter().any(|d| d == w));
            if ok {
                assert_eq!(firing.len(), 4, "unexpected problems: {firing:?}");
                assert!(
                    zabbix_firing(&api, &hostid, 0).is_empty(),
                    "template-level problem"
                );
            }
            ok.then_some(())
        },
    );
    timing("zabbix: triggers fired", t);

    // 5. The external address is a macro: pointing it at an address nobody answers
    //    makes the agent run vmnetprobe with it, and "external address unreachable"
    //    fires for the VM whose pings work.
    let unreachable = probe.unreachable.to_string();
    zabbix_set_macro(&api, &hostid, "{$VMNETPROBE.EXTERNAL}", &unreachable);
    let t = Instant::now();
    wait_for(
        "external address unreachable after the macro change",
        Duration::from_secs(60),
        || {
            server.assert_running();
            let firing = zabbix_firing(&api, &hostid, 4);
            firing
                .iter()
                .any(|d| d == "VM lab: external address unreachable")
                .then_some(())
        },
    );
    assert!(runs(&s).iter().any(|r| r
        .argv
        .windows(2)
        .any(|w| w == ["--external", unreachable.as_str()])));
    timing("zabbix: macro change to trigger", t);

    // 6. A failed run (here: a macro value vmnetprobe refuses) raises "run failed"
    //    with its reason, fails both discovery rules, and keeps every discovered item.
    zabbix_set_macro(&api, &hostid, "{$VMNETPROBE.EXTERNAL}", "not-an-address");
    let t = Instant::now();
    wait_for("run failed problem", Duration::from_secs(60), || {
        server.assert_running();
        let firing = zabbix_firing(&api, &hostid, 0);
        firing
            .iter()
            .any(|d| d == "vmnetprobe: run failed")
            .then_some(())
    });
    timing("zabbix: failed run to problem", t);
    let failed = runs(&s)
        .into_iter()
        .find(|r| r.argv.iter().any(|a| a == "not-an-address"))
        .expect("a run with the bad macro value");
    let doc: Value = serde_json::from_str(&failed.stdout).unwrap_or_else(|e| {
        panic!(
            "a refused macro value still gives JSON: {e}: {}",
            failed.stdout
        )
    });
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid address for --external"),
        "{doc}"
    );
    let error = api.call(
        "item.get",
        json!({"hostids": [hostid], "filter": {"key_": "vmnetprobe.error"}, "output": ["lastvalue"]}),
    );
    assert!(
        error[0]["lastvalue"]
            .as_str()
            .unwrap_or("")
            .contains("invalid address for --external"),
        "{error}"
    );
    wait_for("discovery rules failing", Duration::from_secs(30), || {
        let rules = api.call(
            "discoveryrule.get",
            json!({"hostids": [hostid], "output": ["key_", "state", "error"]}),
        );
        let rules = rules.as_array().unwrap().clone();
        (rules.len() == 2
            && rules.iter().all(|r| {
                r["state"] == "1"
                    && r["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("keeping the last discovery")
            }))
        .then_some(())
    });
    let kept = api.call(
        "item.get",
        json!({"hostids": [hostid], "filter": {"flags": 4}, "output": ["key_"]}),
    );
    assert_eq!(
        kept.as_array().unwrap().len(),
        want_items,
        "a failed run must not remove discovered items"
    );

    // 7. A macro value that would be a shell command is refused by the agent
    //    (UnsafeUserParameters=0) before any shell runs: the master item becomes
    //    unsupported, nothing is executed, and "no report" fires after its timeout.
    let marker = s.path("injected");
    zabbix_set_macro(
        &api,
        &hostid,
        "{$VMNETPROBE.EXTERNAL}",
        &format!("{};touch {}", probe.external, marker.display()),
    );
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !zabbix_firing(&api, &hostid, 0)
        .iter()
        .any(|d| d == "vmnetprobe: no report for 30s")
    {
        server.assert_running();
        if Instant::now() > deadline {
            let trig = api.call("trigger.get", json!({"hostids": [hostid], "filter": {"flags": 0}, "output": ["description", "expression", "value", "state", "error"], "expandExpression": true}));
            let master = api.call("item.get", json!({"hostids": [hostid], "search": {"key_": "vmnetprobe.report["}, "output": ["key_", "state", "error", "lastclock", "lastvalue"]}));
            panic!("no \"no report\" problem:\ntriggers {trig:#}\nmaster {master:#}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    timing("zabbix: refused macro to nodata problem", t);
    let master = api.call(
        "item.get",
        json!({"hostids": [hostid], "search": {"key_": "vmnetprobe.report["}, "output": ["state", "error"]}),
    );
    assert_eq!(master[0]["state"], "1", "{master}");
    assert!(
        master[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("are not allowed in the parameters"),
        "{master}"
    );
    assert!(!marker.exists(), "a macro value reached a shell");
    assert!(
        runs(&s)
            .iter()
            .all(|r| !r.argv.iter().any(|a| a.contains("touch"))),
        "the agent ran vmnetprobe with a refused parameter"
    );

    timing("zabbix: whole test", t0);
    drop(php);
    let stopped = server.stop();
    eprintln!("[timing] zabbix: server stop {:.2}s", stopped.as_secs_f64());
}

// ---------------------------------------------------------------------------------
// The package's shared state directory, as the consumers use it in production.

/// The stored shared result whose selection names `socket` (one per lab), from the
/// package's state directory, with its file's owner uid and group gid.
fn stored_result(socket: &Path) -> Option<(Value, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let needle = socket.display().to_string();
    fs::read_dir(package::STATE_DIR)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .find_map(|e| {
            let meta = fs::symlink_metadata(e.path()).ok()?;
            if !meta.is_file() || meta.len() > 1 << 20 {
                return None;
            }
            let v: Value = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            v["key"]
                .as_str()?
                .contains(&needle)
                .then(|| (v, meta.uid(), meta.gid()))
        })
}

/// The operator's one edit of the installed UserParameter file, when the VMs are not
/// those of qemu:///system: the target options (here: the lab's socket). The external
/// address and the deadline stay key parameters (the template's macros).
fn operator_edit(shipped: &str, target: &str) -> String {
    assert!(
        shipped.contains(USERPARAM_EXTERNAL),
        "the shipped file no longer takes the external address as {USERPARAM_EXTERNAL:?}"
    );
    shipped.replace(
        USERPARAM_EXTERNAL,
        &format!("{target} {USERPARAM_EXTERNAL}"),
    )
}

fn uid_gid(user_or_group: &str, flag: &str) -> u32 {
    sh(&format!(
        "id {flag} {user_or_group} 2>/dev/null || getent group {user_or_group} | cut -d: -f3"
    ))
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn nagios_and_zabbix_share_one_probe_through_the_package_state_dir() {
    if !real("share", &["nagios4", "zabbix_agentd", "zabbix_get"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("share");
    let shared = format!(
        "--socket {} --external {} --min-interval 10m",
        probe.socket_arg("lab"),
        probe.external
    );

    // 1. Nagios, as nagios, runs the installed plugin through the installed commands.
    s.write(
        "etc/commands.cfg",
        &shipped("nagios/vmnetprobe-commands.cfg"),
    );
    s.write("etc/base.cfg", NAGIOS_BASE_OBJECTS);
    s.write(
        "etc/services.cfg",
        &format!(
            "define service {{\n    use generic-service\n    host_name hv01\n    service_description shared\n    check_command vmnetprobe!{shared}\n}}\n"
        ),
    );
    let cfg = nagios_cfg(
        &s,
        &["etc/commands.cfg", "etc/services.cfg", "etc/base.cfg"],
        Path::new(package::PLUGIN_DIR),
    );
    let mut nagios = Daemon::start(
        "nagios4",
        Command::new("nagios4").arg(&cfg),
        s.path("nagios.out"),
    );
    let status = wait_for(
        "the Nagios result in status.dat",
        Duration::from_secs(60),
        || {
            nagios.assert_running();
            let dat = fs::read_to_string(s.path("var/status.dat")).ok()?;
            nagios_blocks(&dat, "servicestatus")
                .into_iter()
                .find(|b| b.get("has_been_checked").map(String::as_str) == Some("1"))
        },
    );
    nagios.stop();
    assert_eq!(status["current_state"], "0", "{status:?}");
    assert!(
        status["plugin_output"].starts_with("VMNETPROBE OK - "),
        "{status:?}"
    );

    // The probe's result is in the package's directory, written by user nagios, group
    // vmnetprobe (setgid directory), readable by the group.
    let (stored, uid, gid) =
        stored_result(&probe.socket).expect("Nagios' run stored no shared result");
    assert_eq!(
        uid,
        uid_gid(NAGIOS_USER, "-u"),
        "result not written by nagios"
    );
    assert_eq!(
        gid,
        uid_gid(package::GROUP, "-g"),
        "result not in group vmnetprobe"
    );

    // 2. zabbix_agentd, as zabbix with the default Timeout, runs the installed
    //    UserParameter (the operator's edit: the target; the external address and the
    //    deadline come as key parameters, as from the template's macros) and gets the
    //    same probe: no second run in the guests.
    let userparam = s.write(
        "etc/userparameter_vmnetprobe.conf",
        &operator_edit(
            &shipped("zabbix/userparameter_vmnetprobe.conf"),
            &format!("--socket {} --min-interval 10m", probe.socket_arg("lab")),
        ),
    );
    let port = free_low_port();
    let mut agent = zabbix_agent(&s, port, &userparam, ZABBIX_USER);
    let got = zabbix_get(
        port,
        &format!("vmnetprobe.report[{},2500ms]", probe.external),
    );
    agent.stop();
    let doc: Value = serde_json::from_str(&got).unwrap_or_else(|e| {
        panic!(
            "zabbix_get did not return JSON ({e}): {got}\n{}",
            agent.log()
        )
    });
    assert_eq!(doc["cached"], json!(true), "{doc}");
    assert_eq!(
        doc["timestamp_ns"], stored["report"]["timestamp_ns"],
        "{doc}"
    );
    assert_eq!(common::vm(&doc, "lab")["code"], "ok", "{doc}");
    let (_, uid_after, _) = stored_result(&probe.socket).unwrap();
    assert_eq!(
        uid_after, uid,
        "the Zabbix run probed again instead of sharing"
    );
}

#[test]
fn a_consumer_user_outside_the_group_is_told_the_fix() {
    if !real("group", &["zabbix_agentd", "zabbix_get"]) {
        return;
    }
    let probe = Probe::start();
    let s = Scratch::new("group");
    // An agent running as a user the operator did not add to group vmnetprobe.
    let args = format!("--socket {} --min-interval 10m", probe.socket_arg("lab"));
    let userparam = s.write(
        "etc/userparameter_vmnetprobe.conf",
        &operator_edit(&shipped("zabbix/userparameter_vmnetprobe.conf"), &args),
    );
    let port = free_low_port();
    let mut agent = zabbix_agent(&s, port, &userparam, "nobody");
    let got = zabbix_get(
        port,
        &format!("vmnetprobe.report[{},2500ms]", probe.external),
    );
    agent.stop();
    assert!(
        got.contains(&format!(
            "state directory {} is not writable by user nobody: add it to group {} (adduser nobody {})",
            package::STATE_DIR,
            package::GROUP,
            package::GROUP
        )),
        "Zabbix shows: {got}\n{}",
        agent.log()
    );

    // A member whose process started before it joined (no supplementary group yet).
    let out = common::run_command(
        Command::new("setpriv").args([
            &format!("--reuid={ZABBIX_USER}"),
            &format!("--regid={ZABBIX_USER}"),
            "--clear-groups",
            package::PLUGIN,
            "--socket",
            &probe.socket_arg("lab"),
            "--external",
            &probe.external.to_string(),
        ]),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(
        stdout.trim_end(),
        format!(
            "VMNETPROBE UNKNOWN - state directory {} is not writable by user {ZABBIX_USER}: \
             {ZABBIX_USER} is in group {}, but this process is not: restart the service that \
             runs vmnetprobe; or pass --state-dir DIR or --no-state",
            package::STATE_DIR,
            package::GROUP
        )
    );
}
