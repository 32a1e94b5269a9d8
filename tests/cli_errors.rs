//! Bad command-line input never panics and never starts a probe: it gives
//! one clear line and exit 3 — `VMNETPROBE UNKNOWN - reason` on stdout in
//! nagios mode, `vmnetprobe: reason` on stderr in the others. Failures to
//! list VMs at all (unknown domain, unreadable socket directory, no libvirt)
//! are fatal reports in each format's own terms; a single bad socket is that
//! VM's UNKNOWN, not the run's.
//!
//! Every invocation names its sockets (or an impossible libvirt URI) and
//! `--external`, so no case can reach a real libvirt or a real address.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const EXT: &str = "198.51.100.1";
const MODES: [&[&str]; 7] = [
    &["nagios"],
    &["status", "--json"],
    &["zabbix"],
    &["telegraf"],
    &["prometheus"],
    &["discover", "vms"],
    &["discover", "nics"],
];

fn run_os(args: &[OsString]) -> Output {
    run_program(&common::bin(), args)
}

/// Runs `program` with a 30 s limit.
fn run_program(program: &Path, args: &[OsString]) -> Output {
    common::run_command(Command::new(program).args(args), Duration::from_secs(30))
}

fn run(args: &[&str]) -> Output {
    run_os(&args.iter().map(OsString::from).collect::<Vec<_>>())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A usage or configuration error in `mode`: said in the mode's own terms
/// (a failed run of that format on stdout, see [`assert_failed_run`]); the
/// human table, `serve` and `telegraf --execd` say one line on stderr.
/// Exit 3 (Telegraf's 0, see there), no panic.
fn assert_usage_error(mode: &[&str], out: &Output, fragment: &str) {
    if !matches!(mode, ["status"] | ["serve"] | ["telegraf", "--execd"]) {
        assert_failed_run(mode, out, fragment);
        return;
    }
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let context = format!("{mode:?}: stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(out.status.code(), Some(3), "{context}");
    assert!(!stderr.contains("panicked"), "{context}");
    assert!(stdout.is_empty(), "{context}");
    assert_eq!(stderr.lines().count(), 1, "{context}");
    assert!(stderr.ends_with('\n'), "{context}");
    assert!(stderr.starts_with("vmnetprobe: "), "{context}");
    assert!(stderr.contains(fragment), "{context} lacks {fragment:?}");
}

/// A run of `mode` that failed as a whole: its format's failed-run output on
/// stdout, naming `fragment`, nothing on stderr.
fn assert_failed_run(mode: &[&str], out: &Output, fragment: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let context = format!("{mode:?}: stdout {stdout:?} stderr {stderr:?}");
    assert!(stderr.is_empty(), "{context}");
    assert!(stdout.contains(fragment), "{context} lacks {fragment:?}");
    match mode[0] {
        "nagios" => {
            assert_eq!(out.status.code(), Some(3), "{context}");
            assert_eq!(stdout.lines().count(), 1, "{context}");
            assert!(stdout.starts_with("VMNETPROBE UNKNOWN - "), "{context}");
        }
        "telegraf" => {
            // Telegraf drops the batch of a failed command: the error is data.
            assert_eq!(out.status.code(), Some(0), "{context}");
            assert!(stdout.starts_with("vmnetprobe_run "), "{context}");
            assert!(stdout.contains("error=\""), "{context}");
        }
        "prometheus" => {
            assert_eq!(out.status.code(), Some(3), "{context}");
            assert!(stdout.starts_with("# vmnetprobe error: "), "{context}");
            assert!(stdout.contains("\nvmnetprobe_up 0\n"), "{context}");
        }
        _ => {
            assert_eq!(out.status.code(), Some(3), "{context}");
            let doc: serde_json::Value =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {context}"));
            assert!(doc["error"].is_string(), "{context}");
        }
    }
}

/// A socket that cannot exist, so a case that parsed by mistake still
/// touches nothing real.
fn safe_target() -> Vec<&'static str> {
    vec![
        "--socket",
        "vm1=/nonexistent/vmnetprobe-test.sock",
        "--external",
        EXT,
        "-t",
        "2s",
    ]
}

#[test]
fn bad_values_are_one_line_and_exit_3_in_every_mode() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--external", "example.com"],
            "invalid address for --external",
        ),
        (
            &["--external", "1.2.3.4; reboot"],
            "invalid address for --external",
        ),
        (&["--external=-c 1"], "invalid address for --external"),
        (&["--external", "224.0.0.1"], "not a unicast address"),
        (&["--external", "0.0.0.0"], "not a unicast address"),
        (&["--external", ""], "invalid address for --external"),
        (&["--gateway", "999.1.1.1"], "invalid address for --gateway"),
        (
            &["--gateway", "fe80::1%eth0; reboot"],
            "invalid address for --gateway",
        ),
        (&["-w", "10:5"], "--warning"),
        (&["-w", "~:x"], "--warning"),
        (&["-c", "abc"], "--critical"),
        (&["-c", "@"], "--critical"),
        (&["-t", "0"], "invalid duration for --timeout"),
        (&["-t", "abc"], "invalid duration for --timeout"),
        (&["-t", "2h"], "invalid duration for --timeout"),
        (&["-t", "NaN"], "invalid duration for --timeout"),
        (&["-t", "1e400"], "invalid duration for --timeout"),
        (
            &["--ping-timeout", "10 parsecs"],
            "invalid duration for --ping-timeout",
        ),
        (
            &["--ping-timeout=-1"],
            "invalid duration for --ping-timeout",
        ),
        (
            &["--ping-timeout", "3s", "-t", "2500ms"],
            "--ping-timeout 3s does not fit in --timeout 2500ms",
        ),
        (
            &["--command-timeout", "18446744073709551616s"],
            "--command-timeout",
        ),
        (&["-j", "0"], "--jobs"),
        (&["-j", "99999"], "--jobs"),
        (&["-j", "abc"], "--jobs"),
        (&["-j", "-1"], "-1"),
        (&["--agent-down-state", "bad"], "--agent-down-state"),
        (&["--socket", "nopath"], "expected NAME=PATH"),
        (&["--socket", "=/tmp/x.sock"], "expected NAME=PATH"),
        (&["--socket", "vm="], "expected NAME=PATH"),
        (&["--socket", "vm=/a=/b.sock"], "ambiguous --socket"),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["-Z"], "unexpected argument '-Z'"),
        (&["--connect", "qemu:///system"], "cannot be used with"),
        (&["--timeout"], "a value is required for '--timeout"),
    ];
    for mode in MODES {
        for (bad, fragment) in cases {
            let mut args: Vec<&str> = mode.to_vec();
            // The safe defaults, less the option under test.
            let safe = safe_target();
            for pair in safe.chunks(2) {
                let given = bad.iter().any(|b| {
                    b.split('=').next() == Some(pair[0])
                        || (pair[0] == "-t" && b.starts_with("--timeout"))
                });
                if !given {
                    args.extend_from_slice(pair);
                }
            }
            args.extend_from_slice(bad);
            let out = run(&args);
            assert_usage_error(mode, &out, fragment);
        }
    }
}

#[test]
fn non_utf8_arguments_are_refused_cleanly() {
    for mode in MODES {
        let mut args: Vec<OsString> = mode.iter().map(OsString::from).collect();
        args.extend(safe_target().into_iter().map(OsString::from));
        args.push("--gateway".into());
        args.push(OsString::from_vec(b"192.0.2.\xff".to_vec()));
        let out = run_os(&args);
        assert_usage_error(mode, &out, "invalid UTF-8");
    }
}

#[test]
fn unknown_commands_and_missing_subcommands_exit_3() {
    for (args, fragment) in [
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (
            &["discover", "things", "--external", EXT],
            "invalid value 'things'",
        ),
        // The missing value is named, not dropped with clap's second line.
        (
            &["discover"],
            "required arguments were not provided: <WHAT>",
        ),
    ] {
        let out = run(args);
        let mode = if args[0] == "discover" {
            &["discover", "vms"][..]
        } else {
            &["status"][..]
        };
        assert_usage_error(mode, &out, fragment);
    }
    // No subcommand at all: usage text, exit 3, nothing probed.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("Usage:") || text(&out.stderr).contains("Usage:"));
    assert!(!text(&out.stderr).contains("panicked"));
}

/// The run cannot list VMs: each format says so its own way.
fn assert_fatal(args_tail: &[&str], fragment: &str) {
    for mode in MODES {
        let mut args: Vec<&str> = mode.to_vec();
        args.extend_from_slice(args_tail);
        args.extend_from_slice(&["--external", EXT, "-t", "2s"]);
        assert_failed_run(mode, &run(&args), fragment);
    }
}

#[test]
fn unknown_domain_is_fatal_in_every_format() {
    assert_fatal(
        &["--socket", "vm1=/nonexistent/x.sock", "-d", "nope"],
        "unknown VM 'nope'",
    );
}

#[test]
fn missing_socket_directory_is_fatal_in_every_format() {
    assert_fatal(
        &["--socket-glob", "/nonexistent/vmnetprobe/*.qga"],
        "cannot read /nonexistent/vmnetprobe",
    );
}

/// A glob matching nothing in an existing directory is a host without VMs
/// (OK), but the output names the pattern: a mistyped one must not stay
/// green unnoticed.
#[test]
fn socket_glob_matching_nothing_names_the_pattern() {
    let dir = temp_dir("empty-glob");
    // A file the pattern does not match: the directory is not empty.
    std::fs::write(dir.join("101.qmp"), b"").expect("file");
    let pattern = format!("{}/*.qga", dir.display());
    let said = format!("no VMs: no socket matches '{pattern}'");
    let target = [
        "--socket-glob",
        &pattern,
        "--external",
        EXT,
        "--no-state",
        "-t",
        "2s",
    ];
    let cases: [(&[&str], String); 4] = [
        (&["nagios"], format!("VMNETPROBE OK - {said} | vms=0;")),
        (&["status"], format!("{said}\n")),
        (
            &["status", "--json"],
            format!("\"no_vms_reason\": \"no socket matches '{pattern}'\""),
        ),
        (
            &["zabbix"],
            format!("\"no_vms_reason\":\"no socket matches '{pattern}'\""),
        ),
    ];
    for (mode, want) in cases {
        let mut args = mode.to_vec();
        args.extend_from_slice(&target);
        let out = run(&args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {stdout}");
        assert!(out.stderr.is_empty(), "{mode:?}: {}", text(&out.stderr));
        if mode == ["status"] {
            assert_eq!(stdout, want, "{mode:?}");
        } else {
            assert!(stdout.contains(&want), "{mode:?}: {stdout}");
        }
    }
    // A named socket is listed as given: no pattern to blame.
    let out = run(&[
        "nagios",
        "--socket-glob",
        &pattern,
        "--socket",
        "vm1=/nonexistent/x.sock",
        "--external",
        EXT,
        "--no-state",
        "-t",
        "2s",
    ]);
    assert!(!text(&out.stdout).contains("no socket matches"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a terminal the status table is as wide as the terminal, so long
/// reasons are shown whole; piped, it keeps its 80 columns. `script` gives
/// the binary a real pty; `stty cols` sets its window size (TIOCGWINSZ).
#[test]
fn status_table_takes_the_terminal_width() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(!forced(), "script missing (bsdutils); run tests/setup.sh");
        return;
    }
    let reason =
        "cannot open guest agent socket: /nonexistent/vmnetprobe-test.sock: no such socket";
    let status = format!(
        "{} status --socket vm1=/nonexistent/vmnetprobe-test.sock --external {EXT} --no-state -t 2s",
        common::bin().display()
    );
    let piped = text(
        &run(&[
            "status",
            "--socket",
            "vm1=/nonexistent/vmnetprobe-test.sock",
            "--external",
            EXT,
            "--no-state",
            "-t",
            "2s",
        ])
        .stdout,
    );
    assert!(piped.lines().all(|l| l.chars().count() <= 80), "{piped}");
    assert!(!piped.contains(reason), "{piped}");
    for (how, command) in [
        ("COLUMNS", format!("COLUMNS=150 NO_COLOR=1 {status}")),
        (
            "window size",
            format!("stty cols 150 && NO_COLOR=1 {status}"),
        ),
    ] {
        let out = common::run_command(
            Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .env_remove("COLUMNS"),
            Duration::from_secs(30),
        );
        let table = text(&out.stdout).replace('\r', "");
        assert_eq!(out.status.code(), Some(0), "{how}: {table}");
        assert!(table.contains(&format!("  {reason}\n")), "{how}: {table}");
    }
}

#[test]
fn socket_glob_with_a_wildcard_directory_is_a_usage_error_in_every_format() {
    for mode in MODES {
        let mut args: Vec<&str> = mode.to_vec();
        args.extend_from_slice(&["--socket-glob", "/tmp/*/x.qga", "--external", EXT]);
        let out = run(&args);
        assert_usage_error(mode, &out, "wildcards are only supported in the file name");
    }
}

#[test]
fn unreachable_libvirt_is_fatal_in_every_format() {
    if !cfg!(feature = "libvirt") {
        return;
    }
    // No driver has this scheme: libvirt refuses at once, nothing is contacted.
    assert_fatal(
        &["--connect", "vmnetprobe-no-such-driver:///x"],
        "vmnetprobe-no-such-driver:///x",
    );
}

#[test]
fn textfile_needs_a_prom_name_and_gets_the_failed_run() {
    for bad in ["/tmp/vmnetprobe.txt", "/tmp/.prom", "/"] {
        let mut args = vec!["prometheus", "--textfile", bad];
        args.extend(safe_target());
        assert_usage_error(&["prometheus"], &run(&args), "--textfile");
    }
    let dir = temp_dir("textfile");
    let file = dir.join("vmnetprobe.prom");
    let path = file.display().to_string();
    let out = run(&[
        "prometheus",
        "--textfile",
        &path,
        "--socket-glob",
        "/nonexistent/vmnetprobe/*.qga",
        "--external",
        EXT,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let written = std::fs::read_to_string(&file).expect("textfile written");
    assert!(written.contains("\nvmnetprobe_up 0\n"), "{written}");
    let entries = std::fs::read_dir(&dir).expect("list").count();
    assert_eq!(entries, 1, "no temp file left behind");
    let missing = dir.join("no/such/dir/x.prom").display().to_string();
    let out = run(&[
        "prometheus",
        "--textfile",
        &missing,
        "--socket-glob",
        "/nonexistent/x/*.qga",
        "--external",
        EXT,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).starts_with("vmnetprobe: cannot write --textfile "),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmnp-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A unix socket nobody answers on (bound, never accepted).
fn dead_socket(path: &Path) -> std::os::unix::net::UnixListener {
    std::os::unix::net::UnixListener::bind(path).expect("bind")
}

#[test]
fn bad_sockets_are_that_vms_unknown_not_the_runs() {
    let dir = temp_dir("sockets");
    let file = dir.join("plain-file");
    std::fs::write(&file, "not a socket").expect("write");
    let vanished = dir.join("vanished.sock");
    drop(dead_socket(&vanished));
    std::fs::remove_file(&vanished).expect("rm");
    let closed = dir.join("closed.sock");
    drop(dead_socket(&closed)); // the file stays, nobody listens
    let specs = [
        format!("a-missing={}", dir.join("missing.sock").display()),
        format!("b-file={}", file.display()),
        format!("c-dir={}", dir.display()),
        format!("d-closed={}", closed.display()),
    ];
    let mut args = vec!["status", "--json", "--external", EXT, "-t", "3s"];
    for s in &specs {
        args.extend_from_slice(&["--socket", s]);
    }
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (name, fragment) in [
        ("a-missing", "no such socket"),
        ("b-file", "no agent listening"),
        ("c-dir", "cannot open guest agent socket"),
        ("d-closed", "no agent listening"),
    ] {
        let vm = common::vm(&doc, name);
        assert_eq!(vm["state"], "UNKNOWN", "{vm}");
        assert_eq!(vm["code"], "agent_unreachable", "{vm}");
        assert!(
            vm["reason"].as_str().unwrap_or_default().contains(fragment),
            "{vm}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether real-part tests must run (CI): a missing prerequisite then fails.
fn forced() -> bool {
    std::env::var("VMNETPROBE_REAL_TESTS").as_deref() == Ok("1")
}

/// Root and setpriv, to run the binary as nobody; a skip says why, and with
/// VMNETPROBE_REAL_TESTS=1 their absence fails the test instead.
fn can_run_as_nobody(test: &str) -> bool {
    if is_root() && Command::new("setpriv").arg("--version").output().is_ok() {
        return true;
    }
    assert!(!forced(), "{test}: needs root and setpriv (util-linux)");
    eprintln!("skipped {test}: needs root and setpriv to run as nobody");
    false
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs vmnetprobe as `nobody`: root can open any socket, so permission
/// errors only show for an unprivileged user. With `--no-state`: where the
/// package is installed, nobody may not use its state directory (that case
/// is tests/consumers.rs `a_consumer_user_outside_the_group_is_told_the_fix`).
fn run_as_nobody(args: &[&str]) -> Output {
    let mut full = vec![
        "--reuid=65534".to_string(),
        "--regid=65534".to_string(),
        "--clear-groups".to_string(),
        common::bin().display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    full.push("--no-state".into());
    common::run_command(
        Command::new("setpriv")
            .args(&full)
            .env("HOME", "/nonexistent")
            .env_remove("XDG_CACHE_HOME"),
        Duration::from_secs(30),
    )
}

/// serve's default --min-interval needs a state directory; without one it
/// is dropped, not turned into a configuration error (the bad --listen is
/// the first complaint).
#[test]
fn serve_without_a_state_directory_still_starts() {
    if !can_run_as_nobody("serve_without_a_state_directory_still_starts") {
        return;
    }
    let out = run_as_nobody(&[
        "serve",
        "--listen",
        "999.0.0.1:1",
        "--socket",
        "vm1=/nonexistent/x.sock",
        "--external",
        EXT,
    ]);
    assert_usage_error(&["serve"], &out, "invalid --listen '999.0.0.1:1'");
}

#[test]
fn unreadable_sockets_and_directories_say_permission_denied() {
    if !can_run_as_nobody("unreadable_sockets_and_directories_say_permission_denied") {
        return;
    }
    let dir = temp_dir("perm");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = dir.join("root-only.sock");
    let _listener = dead_socket(&sock);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let spec = format!("vm1={}", sock.display());
    let out = run_as_nobody(&[
        "status",
        "--json",
        "--socket",
        &spec,
        "--external",
        EXT,
        "-t",
        "2s",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    let vm = common::vm(&doc, "vm1");
    assert_eq!(vm["state"], "UNKNOWN", "{vm}");
    assert_eq!(vm["code"], "permission_denied", "{vm}");
    assert!(
        vm["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&sock.display().to_string()),
        "{vm}"
    );
    let out = run_as_nobody(&["nagios", "--socket", &spec, "--external", EXT, "-t", "2s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("permission denied"),
        "{}",
        text(&out.stdout)
    );

    // A socket directory nobody may list: the run cannot know its VMs.
    let private = dir.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let glob = format!("{}/*.qga", private.display());
    let out = run_as_nobody(&[
        "nagios",
        "--socket-glob",
        &glob,
        "--external",
        EXT,
        "-t",
        "2s",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("VMNETPROBE UNKNOWN - cannot read")
            && stdout.contains("ermission denied"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_and_help_work_in_every_mode_and_exit_0() {
    let version = env!("CARGO_PKG_VERSION");
    for mode in MODES.iter().chain([&[][..]].iter()) {
        let sub = mode.first().copied();
        for flag in ["-V", "--version"] {
            let mut args = sub.into_iter().collect::<Vec<_>>();
            args.push(flag);
            let out = run(&args);
            let stdout = text(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout:?}");
            assert!(out.stderr.is_empty(), "{args:?}: {:?}", text(&out.stderr));
            assert_eq!(stdout.lines().count(), 1, "{args:?}: {stdout:?}");
            // Name and version first (monitoring-plugins), then the
            // transports, which tell a sockets-only build apart.
            let transports = if cfg!(feature = "libvirt") {
                "(libvirt, sockets)"
            } else {
                "(sockets only)"
            };
            let name = sub.map_or("vmnetprobe".to_string(), |s| format!("vmnetprobe-{s}"));
            assert_eq!(
                stdout,
                format!("{name} {version} {transports}\n"),
                "{args:?}"
            );
        }
        let mut args = sub.into_iter().collect::<Vec<_>>();
        args.push("-h");
        let out = run(&args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout:?}");
        assert!(
            stdout.contains(version) && stdout.contains("Usage:"),
            "{stdout}"
        );
    }
}

/// The package's /usr/lib/nagios/plugins/check_vmnetprobe is a symlink to the
/// binary: by that name it is the nagios subcommand, usage errors included.
#[test]
fn called_as_check_vmnetprobe_it_is_the_nagios_plugin() {
    let dir = std::env::temp_dir().join(format!("vmnp-plugin-name-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let link = dir.join("check_vmnetprobe");
    std::os::unix::fs::symlink(common::bin(), &link).expect("symlink");
    let run_link =
        |args: &[&str]| run_program(&link, &args.iter().map(OsString::from).collect::<Vec<_>>());
    let out = run_link(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("vmnetprobe-nagios "),
        "{out:?}"
    );
    let out = run_link(&["--bogus"]);
    assert_usage_error(&["nagios"], &out, "unexpected argument '--bogus'");
    let mut args = safe_target();
    args.push("--no-state");
    let out = run_link(&args);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        text(&out.stdout).starts_with("VMNETPROBE UNKNOWN"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_user_outside_group_libvirt_is_told_the_fix() {
    // The socket-only build has no libvirt to connect to: nothing to test.
    if !cfg!(feature = "libvirt") || !can_run_as_nobody("a_user_outside_group_libvirt") {
        return;
    }
    let has_group = std::fs::read_to_string("/etc/group")
        .is_ok_and(|g| g.lines().any(|l| l.starts_with("libvirt:")));
    if !has_group {
        assert!(
            !forced(),
            "no group libvirt: run tests/setup.sh (libvirt-daemon-system)"
        );
        eprintln!("skipped: no group libvirt on this machine");
        return;
    }
    // The default URI; whether a libvirtd runs here or not, nobody cannot
    // use it, and the one line says which user and which group.
    let out = run_as_nobody(&["nagios", "--external", EXT, "-t", "2s"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with("VMNETPROBE UNKNOWN - cannot connect to libvirt at qemu:///system: "),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with(
            "; user nobody lacks group libvirt: add it to group libvirt (adduser nobody libvirt), then restart its service"
        ),
        "{stdout}"
    );
}
