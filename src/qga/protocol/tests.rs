//! Unit tests of `protocol`.

use super::*;
use serde_json::json;

#[test]
fn freeze_status_is_one_of_two_words() {
    assert_eq!(
        FreezeStatus::parse(&json!("frozen")),
        Ok(FreezeStatus::Frozen)
    );
    assert_eq!(
        FreezeStatus::parse(&json!("thawed")),
        Ok(FreezeStatus::Thawed)
    );
    for bad in [
        json!("FROZEN"),
        json!(1),
        json!({"status": "frozen"}),
        json!(null),
    ] {
        assert!(FreezeStatus::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn guest_info_tells_enabled_from_disabled_from_absent() {
    let info = GuestInfo::parse(&json!({"version": "7.2.22", "supported_commands": [
        {"enabled": true, "name": "guest-exec", "success-response": true},
        {"enabled": false, "name": "guest-exec-status"},
        {"name": 5}, "junk"
    ]}))
    .unwrap();
    assert_eq!(info.version, "7.2.22");
    assert!(info.supports("guest-exec"));
    assert!(!info.supports("guest-exec-status"));
    assert!(info.is_disabled("guest-exec-status"));
    assert!(!info.supports("guest-network-get-route"));
    assert!(!info.is_disabled("guest-network-get-route"));
}

#[test]
fn guest_info_rejects_wrong_shapes() {
    assert!(GuestInfo::parse(&json!("x")).is_err());
    assert!(GuestInfo::parse(&json!({"supported_commands": {}})).is_err());
    let huge: Vec<Value> = (0..MAX_LIST_LEN + 1).map(|_| json!({})).collect();
    assert!(GuestInfo::parse(&json!({"supported_commands": huge})).is_err());
}

#[test]
fn osinfo_detects_windows_by_id_only() {
    let win11 = json!({"name":"Microsoft Windows","pretty-name":"Windows 10 Pro","id":"mswindows"});
    assert!(OsInfo::parse(&win11).unwrap().is_windows());
    let debian = json!({"id":"debian","pretty-name":"Debian GNU/Linux 12 (bookworm)"});
    assert!(!OsInfo::parse(&debian).unwrap().is_windows());
    assert!(!OsInfo::parse(&json!({"pretty-name":"Windows"}))
        .unwrap()
        .is_windows());
    assert!(OsInfo::parse(&json!([])).is_err());
}

#[test]
fn exec_pid_must_be_a_positive_integer() {
    assert_eq!(parse_exec_pid(&json!({"pid": 12134})), Ok(12134));
    assert!(parse_exec_pid(&json!({"pid": -1})).is_err());
    assert!(parse_exec_pid(&json!({"pid": "12"})).is_err());
    assert!(parse_exec_pid(&json!({})).is_err());
}

#[test]
fn exec_status_decodes_output_and_rejects_bad_fields() {
    let done = json!({"exitcode": 0, "out-data": "aGk=", "exited": true, "out-truncated": false});
    let status = ExecStatus::parse(&done).unwrap();
    assert!(status.exited);
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(status.stdout, "hi");
    assert_eq!(
        ExecStatus::parse(&json!({"signal": 9, "exited": true}))
            .unwrap()
            .signal,
        Some(9)
    );
    assert!(ExecStatus::parse(&json!({"exited": "yes"})).is_err());
    assert!(ExecStatus::parse(&json!({"exited": true, "exitcode": "0"})).is_err());
    assert!(ExecStatus::parse(&json!({"exited": true, "out-data": "!!!"})).is_err());
    assert!(ExecStatus::parse(&json!({"exited": true, "out-data": 5})).is_err());
    let big = "A".repeat(MAX_EXEC_OUTPUT_B64 + 4);
    assert!(ExecStatus::parse(&json!({"exited": true, "out-data": big})).is_err());
}

#[test]
fn exec_status_tolerates_non_utf8_output() {
    // CP850 "ü" from a Windows console
    let status =
        ExecStatus::parse(&json!({"exited": true, "exitcode": 0, "out-data": "gQ=="})).unwrap();
    assert_eq!(status.stdout, "\u{fffd}");
}

#[test]
fn macs_and_ips_are_validated() {
    assert_eq!(
        normalize_mac("52-54-00-AA-BB-CC").as_deref(),
        Some("52:54:00:aa:bb:cc")
    );
    assert_eq!(normalize_mac("52:54:00:aa:bb"), None);
    assert_eq!(normalize_mac("zz:54:00:aa:bb:cc"), None);
    assert_eq!(parse_ip(" 10.0.0.1 "), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(parse_ip("10.0.0.1; reboot"), None);
    assert_eq!(parse_ip("-c 100"), None);
}
