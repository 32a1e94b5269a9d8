//! Unit tests of `policy`.

use super::*;
use ServiceState::*;

fn gw() -> PingTarget {
    PingTarget::Gateway("192.0.2.1".parse().unwrap())
}

fn state(policy: &Policy, finding: Finding) -> (ServiceState, Code) {
    let v = policy.verdict(&finding);
    (v.state, v.code)
}

#[test]
fn every_finding_has_its_state_and_code() {
    let p = Policy::default();
    let ext = PingTarget::External("198.51.100.1".parse().unwrap());
    let cases: Vec<(Finding, ServiceState, Code)> = vec![
        (Finding::VmNotRunning, Critical, Code::VmNotRunning),
        (Finding::Paused(PauseReason::User), Warning, Code::Paused),
        (Finding::Paused(PauseReason::Save), Warning, Code::Paused),
        (
            Finding::Paused(PauseReason::Snapshot),
            Warning,
            Code::Paused,
        ),
        (
            Finding::Paused(PauseReason::GuestSuspended),
            Warning,
            Code::Paused,
        ),
        (
            Finding::Paused(PauseReason::IoError),
            Critical,
            Code::PausedError,
        ),
        (
            Finding::Paused(PauseReason::Watchdog),
            Critical,
            Code::PausedError,
        ),
        (Finding::Migrating(None), Ok, Code::Migrating),
        (
            Finding::Migrating(Some(AgentError::Timeout {
                command: "guest-exec-status".into(),
            })),
            Ok,
            Code::Migrating,
        ),
        (Finding::Frozen, Warning, Code::Frozen),
        (
            Finding::Agent(AgentError::ExecDenied {
                command: "guest-exec".into(),
                desc: "Failed to execute child process “/bin/ping” (Permission denied)".into(),
            }),
            Unknown,
            Code::ExecDenied,
        ),
        (Finding::Maintenance(String::new()), Ok, Code::Maintenance),
        (
            Finding::SettingsInvalid("invalid vmnetprobe metadata: x".into()),
            Unknown,
            Code::MetadataInvalid,
        ),
        (Finding::AgentUp("7.2".into()), Ok, Code::Ok),
        (
            Finding::Agent(AgentError::NoChannel),
            Unknown,
            Code::NoAgentChannel,
        ),
        (
            Finding::Agent(AgentError::NotConnected),
            Unknown,
            Code::AgentNotConnected,
        ),
        (
            Finding::Agent(AgentError::Timeout {
                command: "guest-info".into(),
            }),
            Unknown,
            Code::AgentTimeout,
        ),
        (
            Finding::Agent(AgentError::Disconnected("eof".into())),
            Unknown,
            Code::AgentDisconnected,
        ),
        (
            Finding::Agent(AgentError::Connect("x".into())),
            Unknown,
            Code::AgentUnreachable,
        ),
        (
            Finding::Agent(AgentError::Protocol("x".into())),
            Unknown,
            Code::AgentProtocolError,
        ),
        (
            Finding::Agent(AgentError::NotRunning),
            Critical,
            Code::VmNotRunning,
        ),
        (
            Finding::Agent(AgentError::Disabled {
                command: "guest-info".into(),
            }),
            Unknown,
            Code::AgentCommandDisabled,
        ),
        (
            Finding::Agent(AgentError::NotFound {
                command: "x".into(),
            }),
            Unknown,
            Code::AgentUnsupported,
        ),
        (
            Finding::Agent(AgentError::Command {
                command: "x".into(),
                desc: "y".into(),
            }),
            Unknown,
            Code::AgentError,
        ),
        (
            Finding::Agent(AgentError::PermissionDenied("ro".into())),
            Unknown,
            Code::PermissionDenied,
        ),
        (
            Finding::Agent(AgentError::Host("x".into())),
            Unknown,
            Code::HostError,
        ),
        (Finding::ExecDisabled, Unknown, Code::ExecDisabled),
        (
            Finding::TimedOut(Duration::from_secs(10)),
            Unknown,
            Code::TimedOut,
        ),
        (Finding::Reachable(gw(), Some(1.0)), Ok, Code::Ok),
        (Finding::Reachable(gw(), None), Ok, Code::Ok),
        (
            Finding::Unreachable(gw(), String::new()),
            Critical,
            Code::GatewayUnreachable,
        ),
        (
            Finding::Unreachable(ext, "100% loss".into()),
            Critical,
            Code::ExternalUnreachable,
        ),
        (Finding::PingMissing, Unknown, Code::PingMissing),
        (Finding::PingDenied("x".into()), Unknown, Code::PingDenied),
        (Finding::PingError("x".into()), Unknown, Code::PingError),
        (
            Finding::PingUnfinished(Duration::from_secs(3)),
            Unknown,
            Code::PingTimeout,
        ),
        (Finding::NoGateway, Ok, Code::NoGateway),
        (Finding::LinkDown, Critical, Code::LinkDown),
        (Finding::NicMissing, Critical, Code::NicMissing),
        (Finding::NoAddress, Warning, Code::NoAddress),
        (
            Finding::GatewayInvalid("127.0.0.1".parse().unwrap(), "loopback"),
            Warning,
            Code::GatewayInvalid,
        ),
        (Finding::NotChecked("up".into()), Ok, Code::NotChecked),
    ];
    for (finding, want_state, want_code) in cases {
        assert_eq!(
            state(&p, finding.clone()),
            (want_state, want_code),
            "{finding:?}"
        );
    }
}

#[test]
fn agent_down_state_only_moves_agent_reachability_findings() {
    let p = Policy {
        agent_down_state: Critical,
        ..Policy::default()
    };
    assert_eq!(
        state(&p, Finding::Agent(AgentError::NotConnected)).0,
        Critical
    );
    assert_eq!(
        state(
            &p,
            Finding::Agent(AgentError::Timeout {
                command: "x".into()
            })
        )
        .0,
        Critical
    );
    assert_eq!(state(&p, Finding::ExecDisabled).0, Unknown);
    assert_eq!(
        state(&p, Finding::Agent(AgentError::PermissionDenied("x".into()))).0,
        Unknown
    );
}

#[test]
fn lifecycle_states_are_configurable_but_failures_are_not() {
    let p = Policy {
        paused_state: Ok,
        migrating_state: Warning,
        frozen_state: Critical,
        ..Policy::default()
    };
    assert_eq!(state(&p, Finding::Frozen), (Critical, Code::Frozen));
    assert_eq!(
        state(&p, Finding::Paused(PauseReason::User)),
        (Ok, Code::Paused)
    );
    assert_eq!(
        state(&p, Finding::Paused(PauseReason::IoError)),
        (Critical, Code::PausedError)
    );
    assert_eq!(
        state(&p, Finding::Migrating(None)),
        (Warning, Code::Migrating)
    );
    let v = p.verdict(&Finding::Paused(PauseReason::IoError));
    assert_eq!(v.reason, "VM paused on a disk I/O error");
    let v = p.verdict(&Finding::Migrating(Some(AgentError::Timeout {
        command: "guest-info".into(),
    })));
    assert_eq!(
        v.reason,
        "VM migrating to another host (guest agent not answering (guest-info timed out))"
    );
    let v = p.verdict(&Finding::Maintenance("kernel update".into()));
    assert_eq!(v.reason, "in maintenance (libvirt metadata): kernel update");
}

#[test]
fn rtt_thresholds_check_critical_before_warning() {
    let p = Policy {
        rtt_warning: Some("100".parse().unwrap()),
        rtt_critical: Some("500".parse().unwrap()),
        ..Policy::default()
    };
    assert_eq!(
        state(&p, Finding::Reachable(gw(), Some(50.0))),
        (Ok, Code::Ok)
    );
    assert_eq!(
        state(&p, Finding::Reachable(gw(), Some(150.0))),
        (Warning, Code::RttHigh)
    );
    assert_eq!(
        state(&p, Finding::Reachable(gw(), Some(600.0))),
        (Critical, Code::RttHigh)
    );
    let v = p.verdict(&Finding::Reachable(gw(), Some(150.0)));
    assert_eq!(
        v.reason,
        "gateway 192.0.2.1 rtt 150 ms outside warning range 100"
    );
}

#[test]
fn reasons_are_one_line() {
    let p = Policy::default();
    let v = p.verdict(&Finding::Unreachable(gw(), "100% packet loss".into()));
    assert_eq!(v.reason, "gateway 192.0.2.1 unreachable (100% packet loss)");
}
