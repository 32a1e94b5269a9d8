//! Unit tests of `cli`.

use super::*;
use clap::CommandFactory;

#[test]
fn verify_cli() {
    Args::command().debug_assert();
}

#[test]
fn every_subcommand_has_version_and_help() {
    for sub in [
        "nagios",
        "zabbix",
        "telegraf",
        "prometheus",
        "serve",
        "status",
        "discover",
    ] {
        for flag in ["-V", "--version"] {
            let e = Args::try_parse_from(["vmnetprobe", sub, flag]).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::DisplayVersion,
                "{sub} {flag}"
            );
        }
        let e = Args::try_parse_from(["vmnetprobe", sub, "-h"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{sub} -h");
        let help = e.to_string();
        assert!(
            help.starts_with(&format!(
                "vmnetprobe-{sub} {}\n",
                version_text(cfg!(feature = "libvirt"))
            )),
            "{help}"
        );
    }
}

#[test]
fn long_help_ends_with_the_operator_sections() {
    let e = Args::try_parse_from(["vmnetprobe", "--help"]).unwrap_err();
    let help = e.to_string();
    let at = |what: &str| help.find(what).unwrap_or_else(|| panic!("{what}: {help}"));
    assert!(at("Options:") < at("EXIT STATUS:"));
    assert!(at("EXIT STATUS:") < at("FILES:") && at("FILES:") < at("EXAMPLES:"));
    for text in [
        "/var/cache/vmnetprobe",
        "/usr/lib/nagios/plugins/check_vmnetprobe",
        "/usr/share/vmnetprobe/",
        "--socket-glob",
        "vmnetprobe zabbix",
    ] {
        at(text);
    }
}

#[test]
fn version_names_the_transports_after_name_and_version() {
    let e = Args::try_parse_from(["vmnetprobe", "-V"]).unwrap_err();
    let want = if cfg!(feature = "libvirt") {
        "(libvirt, sockets)"
    } else {
        "(sockets only)"
    };
    assert_eq!(
        e.to_string(),
        format!("vmnetprobe {} {want}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_ne!(version_text(true), version_text(false));
}

#[test]
fn the_plugin_name_runs_the_nagios_subcommand() {
    let args = effective_args(
        ["/usr/lib/nagios/plugins/check_vmnetprobe", "-w", "100"].map(OsString::from),
    );
    assert_eq!(
        args,
        [
            "/usr/lib/nagios/plugins/check_vmnetprobe",
            "nagios",
            "-w",
            "100"
        ]
    );
    let a = Args::try_parse_from(&args).unwrap();
    assert!(matches!(a.command, Command::Nagios { .. }));
    // Any other name is left alone (a user's own wrapper, vmnetprobe itself).
    let plain = effective_args(["vmnetprobe", "status"].map(OsString::from));
    assert_eq!(plain, ["vmnetprobe", "status"]);
    // `check_vmnetprobe nagios ...` (as its --help's usage line reads) works too.
    assert_eq!(
        effective_args(["check_vmnetprobe", "nagios", "-w", "1"].map(OsString::from)),
        ["check_vmnetprobe", "nagios", "-w", "1"]
    );
    assert_eq!(
        effective_args(["check_vmnetprobe"].map(OsString::from)),
        ["check_vmnetprobe", "nagios"]
    );
}

#[test]
fn contract_examples_parse() {
    let a = Args::try_parse_from([
        "vmnetprobe",
        "nagios",
        "--socket",
        "vm1=/tmp/a.sock",
        "-w",
        "100",
        "-c",
        "500",
        "-t",
        "5s",
        "--external",
        "198.51.100.1",
        "-d",
        "vm1",
        "--external-network",
        "default",
        "-j",
        "4",
    ])
    .unwrap();
    assert!(matches!(
        a.command,
        Command::Nagios {
            max_output: MaxOutput(Some(8000)),
            ..
        }
    ));
    assert_eq!(a.command.target().socket, ["vm1=/tmp/a.sock"]);
    let a = Args::try_parse_from([
        "vmnetprobe",
        "discover",
        "nics",
        "--connect",
        "qemu:///system",
    ])
    .unwrap();
    assert!(matches!(
        a.command,
        Command::Discover {
            what: DiscoverWhat::Nics,
            ..
        }
    ));
    let a = Args::try_parse_from([
        "vmnetprobe",
        "telegraf",
        "--execd",
        "--socket-glob",
        "/x/*.qga",
    ])
    .unwrap();
    assert!(matches!(a.command, Command::Telegraf { execd: true, .. }));
    let a = Args::try_parse_from(["vmnetprobe", "nagios", "--max-output", "0"]).unwrap();
    assert!(matches!(
        a.command,
        Command::Nagios {
            max_output: MaxOutput(None),
            ..
        }
    ));
    for bad in ["100", "-1", "x"] {
        assert!(Args::try_parse_from(["vmnetprobe", "nagios", "--max-output", bad]).is_err());
    }
    assert!(
        Args::try_parse_from(["vmnetprobe", "status", "--connect", "x", "--socket", "a=b"])
            .is_err()
    );
}
