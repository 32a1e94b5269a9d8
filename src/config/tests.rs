//! Unit tests of `config`.

use super::*;

/// `--help` states these defaults in words (they are not clap
/// defaults: an absent option means something here).
#[test]
fn help_states_the_defaults_applied_here() {
    use clap::CommandFactory;
    let command = crate::cli::Args::command();
    let status = command.find_subcommand("status").cloned();
    let help = |name: &str| {
        status
            .as_ref()
            .and_then(|c| c.get_arguments().find(|a| a.get_id() == name))
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
    };
    assert!(help("connect").contains(&format!("[default: {DEFAULT_URI}]")));
    assert!(help("min_interval").contains(&format!(
        "[default: off; serve: {}]",
        crate::serve::DEFAULT_MIN_INTERVAL
    )));
}

fn args() -> TargetArgs {
    TargetArgs {
        ping_timeout: "1s".into(),
        timeout: "10s".into(),
        command_timeout: "3s".into(),
        jobs: 8,
        agent_down_state: "unknown".into(),
        grace: "120s".into(),
        booting_state: "ok".into(),
        paused_state: "warning".into(),
        migrating_state: "ok".into(),
        frozen_state: "warning".into(),
        fail_after: 1,
        no_state: true,
        ..TargetArgs::default()
    }
}

#[test]
fn durations_accept_humantime_and_bare_seconds() {
    assert_eq!(
        parse_duration("-t", "800ms").unwrap(),
        Duration::from_millis(800)
    );
    assert_eq!(parse_duration("-t", "10").unwrap(), Duration::from_secs(10));
    assert_eq!(
        parse_duration("-t", "1.5").unwrap(),
        Duration::from_millis(1500)
    );
    for bad in ["0", "-1", "abc", "", "2h", "NaN", "1e9"] {
        assert!(parse_duration("-t", bad).is_err(), "{bad}");
    }
}

#[test]
fn addresses_must_be_unicast_ip_literals() {
    assert!(parse_address("--external", "198.51.100.1").is_ok());
    assert!(parse_address("--external", "2001:db8::1").is_ok());
    for bad in [
        "example.com",
        "-c 1",
        "1.2.3.4; reboot",
        "0.0.0.0",
        "224.0.0.1",
        "",
    ] {
        let e = parse_address("--external", bad).unwrap_err();
        assert!(e.0.starts_with("invalid address for --external"), "{e}");
    }
}

#[test]
fn defaults_and_sources() {
    let c = Config::from_args(&args()).unwrap();
    assert_eq!(
        c.source,
        Source::Libvirt {
            uri: DEFAULT_URI.into()
        }
    );
    assert_eq!(c.probe.external, Some(DEFAULT_EXTERNAL.parse().unwrap()));
    let mut a = args();
    a.socket = vec!["vm 1=/tmp/x.sock".into()];
    a.no_exec = true;
    let c = Config::from_args(&a).unwrap();
    assert_eq!(
        c.source,
        Source::Sockets {
            named: vec![("vm 1".into(), "/tmp/x.sock".into())],
            globs: vec![]
        }
    );
    assert_eq!(c.probe.external, None);
}

#[test]
fn bad_input_is_one_clear_line() {
    let mut a = args();
    a.socket = vec!["a=b,c=/run/q.sock".into()];
    assert_eq!(
        Config::from_args(&a).unwrap().source,
        Source::Sockets {
            named: vec![("a=b,c".into(), "/run/q.sock".into())],
            globs: vec![]
        }
    );
    let mut a = args();
    a.socket = vec!["vm=/a=/b.sock".into()];
    assert!(Config::from_args(&a)
        .unwrap_err()
        .0
        .starts_with("ambiguous --socket 'vm=/a=/b.sock'"));
    let mut a = args();
    a.socket_glob = vec!["/run/*/x.qga".into()];
    assert!(Config::from_args(&a)
        .unwrap_err()
        .0
        .contains("only supported in the file name"));
    let mut a = args();
    a.socket = vec!["nopath".into()];
    assert!(Config::from_args(&a).unwrap_err().0.contains("NAME=PATH"));
    let mut a = args();
    a.warning = Some("10:5".into());
    assert!(Config::from_args(&a)
        .unwrap_err()
        .0
        .starts_with("--warning"));
    let mut a = args();
    a.agent_down_state = "bad".into();
    assert!(Config::from_args(&a).is_err());
    let mut a = args();
    a.jobs = 0;
    assert!(Config::from_args(&a).is_err());
    let mut a = args();
    a.fail_after = 0;
    assert!(Config::from_args(&a).is_err());
    let mut a = args();
    a.fail_after = 3;
    assert_eq!(
        Config::from_args(&a).unwrap_err().0,
        "--fail-after needs a writable state directory (--state-dir DIR)"
    );
    let mut a = args();
    a.booting_state = "fine".into();
    assert!(Config::from_args(&a)
        .unwrap_err()
        .0
        .starts_with("--booting-state"));
}

#[test]
fn a_ping_longer_than_the_deadline_allows_is_refused() {
    let mut a = args();
    a.timeout = "2500ms".into();
    assert!(Config::from_args(&a).is_ok());
    a.ping_timeout = "2s".into();
    assert!(Config::from_args(&a).is_ok());
    a.ping_timeout = "2.2s".into();
    assert_eq!(
        Config::from_args(&a).unwrap_err().0,
        "--ping-timeout 2.2s does not fit in --timeout 2500ms: a ping waits up to 3s (whole seconds in Linux guests) and must end before the deadline; use --timeout 3300ms or more"
    );
    a.timeout = "1s".into();
    a.ping_timeout = "500ms".into();
    assert!(Config::from_args(&a).unwrap_err().0.contains("up to 1s"));
    a.no_exec = true;
    assert!(Config::from_args(&a).is_ok(), "no pings, nothing to fit");
}

#[test]
fn uri_passwords_are_never_shown() {
    assert_eq!(
        redact_uri("qemu+ssh://admin:s3cr3t@host.example/system?keyfile=/k"),
        "qemu+ssh://admin@host.example/system?keyfile=/k"
    );
    assert_eq!(redact_uri("qemu:///system"), "qemu:///system");
    assert_eq!(
        redact_uri("qemu+tcp://u:p:q@h:16509/system"),
        "qemu+tcp://u@h:16509/system"
    );
    assert_eq!(redact_uri("test:///default"), "test:///default");
}

#[test]
fn gentle_options() {
    let mut a = args();
    a.grace = "0".into();
    a.min_interval = Some("30s".into());
    a.no_state = false;
    let dir = std::env::temp_dir().join(format!("vmnp-config-{}", std::process::id()));
    a.state_dir = Some(dir.clone());
    let c = Config::from_args(&a).unwrap();
    assert_eq!(c.grace, Duration::ZERO);
    assert_eq!(c.min_interval, Some(Duration::from_secs(30)));
    assert_eq!(c.state_dir.as_ref().map(|d| d.path()), Some(dir.as_path()));
    a.min_interval = Some("0".into());
    assert_eq!(Config::from_args(&a).unwrap().min_interval, None);
    a.grace = "-1".into();
    assert!(Config::from_args(&a).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
