//! Unit tests of `nagios`.

use super::*;
use crate::report::{fixture, NicKind};
use crate::verdict::Code;

fn verdict(state: ServiceState, reason: &str) -> Verdict {
    Verdict::new(
        state,
        if state == ServiceState::Ok {
            Code::Ok
        } else {
            Code::RttHigh
        },
        reason,
    )
}

fn vm(name: &str, state: ServiceState, rtt: Option<f64>) -> VmReport {
    let agent = verdict(ServiceState::Ok, "guest agent 7.2.22 responding");
    let mut vm = fixture::vm(name, agent);
    vm.verdict = verdict(state, "eth0: gateway 192.0.2.1 rtt 0.41 ms");
    vm.agent.version = Some("7.2.22".to_string());
    let mut nic = fixture::nic(
        "52:54:00:aa:bb:01",
        verdict(state, "gateway 192.0.2.1 rtt 0.41 ms"),
    );
    nic.host_dev = Some("vnet0".to_string());
    nic.network = Some("default".to_string());
    nic.ips = vec!["192.0.2.10".parse().expect("ip")];
    nic.gateway = Some("192.0.2.1".parse().expect("ip"));
    nic.kind = NicKind::External;
    nic.rtt_ms = rtt;
    vm.nics.push(nic);
    vm
}

fn report(vms: Vec<VmReport>) -> Report {
    Report {
        vms,
        external_target: None,
        thresholds: Thresholds {
            warning: "100".parse().ok(),
            critical: "500".parse().ok(),
        },
        fatal: None,
        timestamp_ns: 0,
        duration_ms: 5.0,
        age_ms: None,
        no_vms_reason: None,
    }
}

#[test]
fn labels_have_no_spaces_and_stay_unique() {
    assert_eq!(label_vm_part("web01.example.com"), "web01.example.com");
    let odd = label_vm_part("web 01, \"x\"=ü\\ it's|a\nb");
    assert!(odd.starts_with("web_01___x____"), "{odd}");
    assert!(odd.chars().all(|c| label_char_kept(c) || c == '~'), "{odd}");
    assert_ne!(label_vm_part("web 01"), label_vm_part("web_01"));
    assert_ne!(label_vm_part("web 01"), label_vm_part("web\t01"));
    let long = label_vm_part(&"a".repeat(300));
    assert_eq!(long.chars().count(), LABEL_VM_MAX_CHARS);
    assert_ne!(long, label_vm_part(&"a".repeat(301)));
}

#[test]
fn rtt_perfdata_uses_ms_everywhere() {
    let r = report(vec![vm("web01", ServiceState::Ok, Some(0.41))]);
    let out = render_nagios(&r);
    let first = out.text.lines().next().expect("a line");
    assert!(
        first.ends_with("web01.52:54:00:aa:bb:01.gw_rtt=0.41ms;100;500;0;"),
        "{first}"
    );
    assert!(first.contains(" | vms=1;;;0 vms_ok=1;;;0 "), "{first}");
    assert_eq!(out.exit_code, 0);
}

#[test]
fn no_rtt_is_u_and_no_exponent() {
    let mut a = vm("a", ServiceState::Ok, None);
    a.external = Some(TargetReport {
        address: "198.51.100.1".parse().expect("ip"),
        verdict: verdict(ServiceState::Unknown, "agent down"),
        rtt_ms: None,
    });
    let r = report(vec![a, vm("b", ServiceState::Ok, Some(1e-7))]);
    let out = render_nagios(&r).text;
    assert!(
        out.contains(" a.52:54:00:aa:bb:01.gw_rtt=U;100;500;0; a.ext_rtt=U;100;500;0; "),
        "{out}"
    );
    assert!(out.contains("b.52:54:00:aa:bb:01.gw_rtt=0.0ms;"), "{out}");
    assert!(!out.contains("e-"));
}

#[test]
fn pipes_and_newlines_never_leak() {
    let mut bad = vm("x|y\nz", ServiceState::Critical, None);
    bad.verdict.reason = "a | b\nc".to_string();
    let out = render_nagios(&report(vec![bad])).text;
    assert_eq!(out.matches('|').count(), 1, "{out}");
    assert!(
        out.starts_with("VMNETPROBE CRITICAL - x/y z: a / b c | "),
        "{out}"
    );
}

#[test]
fn summary_names_the_worst_vm() {
    let r = report(vec![
        vm("a", ServiceState::Ok, Some(1.0)),
        vm("b", ServiceState::Critical, None),
        vm("c", ServiceState::Ok, Some(1.0)),
    ]);
    let out = render_nagios(&r);
    assert!(out.text.starts_with(
        "VMNETPROBE CRITICAL - 3 VMs: 1 CRITICAL, 2 OK; b: eth0: gateway 192.0.2.1 rtt 0.41 ms |"
    ));
    assert_eq!(out.exit_code, 2);
    let lines: Vec<&str> = out.text.lines().collect();
    assert!(lines[1].starts_with("[CRITICAL] b: "));
}

#[test]
fn empty_and_fatal() {
    let out = render_nagios(&report(vec![]));
    assert!(out
        .text
        .starts_with("VMNETPROBE OK - no running VMs | vms=0;;;0"));
    let mut r = report(vec![]);
    r.fatal = Some("cannot connect | to libvirt\nsecond line".to_string());
    let out = render_nagios(&r);
    assert_eq!(
        out.text,
        "VMNETPROBE UNKNOWN - cannot connect / to libvirt second line\n"
    );
    assert_eq!(out.exit_code, 3);
}

#[test]
fn output_stays_bounded_and_keeps_the_problems() {
    let mut vms: Vec<VmReport> = (0..500)
        .map(|i| {
            vm(
                &format!("vm{i:03}-with-a-rather-long-name"),
                ServiceState::Ok,
                Some(0.5),
            )
        })
        .collect();
    vms[250].verdict.state = ServiceState::Critical;
    vms[250].nics[0].verdict.state = ServiceState::Critical;
    let out = render_nagios(&report(vms)).text;
    assert!(out.len() <= DEFAULT_MAX_OUTPUT, "{} bytes", out.len());
    assert!(out.contains("\n[CRITICAL] vm250-with-a-rather-long-name: "));
    assert!(out.contains("… and 499 more OK VMs"));
    assert!(out.contains("(RTT perfdata for "));
    let first = out.lines().next().expect("a line");
    assert!(first.len() <= DEFAULT_MAX_OUTPUT / 2 + 200);
    assert_eq!(first.matches('|').count(), 1);
}

#[test]
fn one_long_name_does_not_cost_the_next_vms_their_perfdata() {
    let vms = vec![
        vm("a", ServiceState::Ok, Some(1.0)),
        vm(&"b".repeat(100_000), ServiceState::Ok, Some(1.0)),
        vm("c", ServiceState::Ok, Some(1.0)),
    ];
    let out = render_nagios(&report(vms)).text;
    let first = out.lines().next().expect("a line");
    assert!(first.contains(" a.52:54:00:aa:bb:01.gw_rtt="), "{first}");
    assert!(first.contains(" c.52:54:00:aa:bb:01.gw_rtt="), "{first}");
    assert!(
        first.contains(" bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb~"),
        "{first}"
    );
    // A VM whose entries alone exceed the perfdata budget is left out,
    // the VMs after it are not.
    let mut big = vm("b", ServiceState::Ok, Some(1.0));
    big.nics = (0..200)
        .map(|i| {
            let mut nic = big.nics[0].clone();
            nic.mac = format!("52:54:00:aa:{:02x}:{:02x}", i / 256, i % 256);
            nic
        })
        .collect();
    let vms = vec![big, vm("c", ServiceState::Ok, Some(1.0))];
    let out = render_nagios(&report(vms)).text;
    let first = out.lines().next().expect("a line");
    assert!(!first.contains(" b."), "{first}");
    assert!(first.contains(" c.52:54:00:aa:bb:01.gw_rtt="), "{first}");
    assert!(
        out.contains("(RTT perfdata for 1 of 2 VMs: output limit"),
        "{out}"
    );
}

#[test]
fn the_cap_is_configurable_and_can_be_lifted() {
    let vms: Vec<VmReport> = (0..500)
        .map(|i| vm(&format!("vm{i:03}"), ServiceState::Warning, Some(1.0)))
        .collect();
    let capped = render_nagios_capped(&report(vms.clone()), Some(20_000)).text;
    assert!(capped.len() <= 20_000 && capped.len() > DEFAULT_MAX_OUTPUT);
    let all = render_nagios_capped(&report(vms), None).text;
    assert!(!all.contains("more VMs"), "cut without a cap");
    assert!(!all.contains("(RTT perfdata for"));
    assert_eq!(
        all.lines().next().map(|l| l.matches(".gw_rtt=").count()),
        Some(500)
    );
}

#[test]
fn many_problems_are_cut_too() {
    let vms: Vec<VmReport> = (0..500)
        .map(|i| vm(&format!("vm{i:03}"), ServiceState::Warning, None))
        .collect();
    let out = render_nagios(&report(vms)).text;
    assert!(out.len() <= DEFAULT_MAX_OUTPUT, "{} bytes", out.len());
    assert!(out.contains(" more VMs ("), "{out}");
}
