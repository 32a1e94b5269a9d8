//! Unit tests of `ping`.

use super::*;

fn gw() -> PingTarget {
    PingTarget::Gateway("192.0.2.1".parse().unwrap())
}

fn status(code: i64, stdout: &str, stderr: &str) -> ExecStatus {
    ExecStatus {
        exited: true,
        exit_code: Some(code),
        signal: None,
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

#[test]
fn argv_is_fixed_and_the_target_is_one_element() {
    let target = target_argument("192.0.2.1".parse().unwrap(), None).unwrap();
    assert_eq!(
        linux_args(&target, Duration::from_millis(800)),
        ["-n", "-c", "1", "-W", "1", "192.0.2.1"]
    );
    assert_eq!(linux_args(&target, Duration::from_millis(2500))[4], "3");
    assert_eq!(
        windows_args(
            "192.0.2.1".parse().unwrap(),
            &target,
            Duration::from_secs(1)
        ),
        ["-n", "1", "-w", "1000", "-4", "192.0.2.1"]
    );
}

#[test]
fn bad_targets_are_refused() {
    for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
        assert!(
            target_argument(bad.parse().unwrap(), None).is_err(),
            "{bad}"
        );
    }
    let ll: IpAddr = "fe80::1".parse().unwrap();
    assert!(target_argument(ll, None).is_err());
    assert!(target_argument(ll, Some("eth0; reboot")).is_err());
    assert_eq!(target_argument(ll, Some("eth0")).unwrap(), "fe80::1%eth0");
}

#[test]
fn iputils_reply_no_reply_and_errors() {
    let ok = "PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.\n64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=4.00 ms\n\n--- 192.0.2.1 ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = 4.001/4.001/4.001/0.000 ms\n";
    assert_eq!(
        classify_linux(gw(), &status(0, ok, "")),
        Finding::Reachable(gw(), Some(4.0))
    );
    let lost = "PING x\n\n--- x ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss, time 0ms\n";
    assert_eq!(
        classify_linux(gw(), &status(1, lost, "")),
        Finding::Unreachable(gw(), "no reply".into())
    );
    let unr = "From 198.51.100.1 icmp_seq=1 Destination Host Unreachable\n1 packets transmitted, 0 received, +1 errors, 100% packet loss\n";
    assert_eq!(
        classify_linux(gw(), &status(1, unr, "")),
        Finding::Unreachable(gw(), "destination host unreachable".into())
    );
    assert_eq!(
        classify_linux(
            gw(),
            &status(2, "", "ping: connect: Network is unreachable\n")
        ),
        Finding::Unreachable(gw(), "no route".into())
    );
    assert!(matches!(
        classify_linux(
            gw(),
            &status(2, "", "ping: socket: Operation not permitted\n")
        ),
        Finding::PingDenied(_)
    ));
    assert_eq!(
        classify_linux(gw(), &status(127, "", "sh: ping: not found")),
        Finding::PingMissing
    );
    assert!(matches!(
        classify_linux(gw(), &status(126, "", "")),
        Finding::PingDenied(_)
    ));
    let killed = ExecStatus {
        exited: true,
        signal: Some(9),
        ..ExecStatus::default()
    };
    assert!(matches!(
        classify_linux(gw(), &killed),
        Finding::PingError(_)
    ));
}

#[test]
fn busybox_reply_and_errors() {
    let ok = "PING 192.0.2.1 (192.0.2.1): 56 data bytes\n64 bytes from 192.0.2.1: seq=0 ttl=64 time=0.000 ms\n\n--- 192.0.2.1 ping statistics ---\n1 packets transmitted, 1 packets received, 0% packet loss\nround-trip min/avg/max = 0.000/0.000/0.000 ms\n";
    assert_eq!(
        classify_linux(gw(), &status(0, ok, "")),
        Finding::Reachable(gw(), Some(0.0))
    );
    let lost = "PING x\n\n--- x ping statistics ---\n1 packets transmitted, 0 packets received, 100% packet loss\n";
    assert!(matches!(
        classify_linux(gw(), &status(1, lost, "")),
        Finding::Unreachable(..)
    ));
    assert_eq!(
        classify_linux(
            gw(),
            &status(1, "", "ping: sendto: Network is unreachable\n")
        ),
        Finding::Unreachable(gw(), "no route".into())
    );
    assert_eq!(
        classify_linux(gw(), &status(1, "", "ping: bad address 'x'\n")),
        Finding::PingError("ping: bad address 'x'".into())
    );
}

#[test]
fn ping_denied_names_the_line_that_says_so() {
    let stderr = "ping: WARNING: your kernel is veeery old. No problems.\nping: socket: Operation not permitted\n";
    assert_eq!(
        classify_linux(gw(), &status(2, "", stderr)),
        Finding::PingDenied("ping: socket: Operation not permitted".into())
    );
}

#[test]
fn exit_0_without_a_reply_line_cannot_tell() {
    for lie in [
        "",
        "PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.\n",
        "1 packets transmitted, 1 received, 0% packet loss\n",
        "From 192.0.2.10 icmp_seq=1 Destination Host Unreachable\n",
        "x bytes from 192.0.2.1: ttl=64\n",
    ] {
        assert!(
            matches!(classify_linux(gw(), &status(0, lie, "")), Finding::PingError(ref e) if e.contains("no reply line")),
            "{lie:?}"
        );
    }
    assert_eq!(
        classify_linux(gw(), &status(0, "192.0.2.1 is alive!\n", "")),
        Finding::Reachable(gw(), None)
    );
    let v6 = "64 bytes from fe80::1%eth0: icmp_seq=1 ttl=64 time=0.051 ms\n";
    assert_eq!(
        classify_linux(gw(), &status(0, v6, "")),
        Finding::Reachable(gw(), Some(0.051))
    );
}

#[test]
fn summary_rtt_is_used_when_no_reply_line_has_one() {
    assert_eq!(
        parse_linux_rtt("rtt min/avg/max/mdev = 1.0/2.5/3.0/0.1 ms"),
        Some(2.5)
    );
    assert_eq!(parse_linux_rtt("time=abc ms"), None);
    assert_eq!(parse_linux_rtt("64 bytes: time=12.3 ms"), Some(12.3));
}

#[test]
fn windows_success_is_a_ttl_line_not_exit_code_zero() {
    let ok = "\r\nPinging 192.0.2.1 with 32 bytes of data:\r\nReply from 192.0.2.1: bytes=32 time=12ms TTL=128\r\n\r\nPing statistics for 192.0.2.1:\r\n";
    assert_eq!(
        classify_windows(gw(), &status(0, ok, "")),
        Finding::Reachable(gw(), Some(12.0))
    );
    let trap = "\r\nPinging 192.0.2.1 with 32 bytes of data:\r\nReply from 192.0.2.5: Destination host unreachable.\r\n\r\nPing statistics for 192.0.2.1:\r\n    Packets: Sent = 1, Received = 1, Lost = 0 (0% loss),\r\n";
    assert_eq!(
        classify_windows(gw(), &status(0, trap, "")),
        Finding::Unreachable(
            gw(),
            "Reply from 192.0.2.5: Destination host unreachable.".into()
        )
    );
    let timeout = "Pinging 192.0.2.1 with 32 bytes of data:\r\nRequest timed out.\r\n";
    assert!(matches!(
        classify_windows(gw(), &status(1, timeout, "")),
        Finding::Unreachable(..)
    ));
    assert!(matches!(
        classify_windows(gw(), &status(1, "", "")),
        Finding::PingError(_)
    ));
}

#[test]
fn windows_rtt_in_several_languages() {
    assert_eq!(
        parse_windows_rtt("Reply from 127.0.0.1: bytes=32 time<1ms TTL=128"),
        Some(0.5)
    );
    assert_eq!(
        parse_windows_rtt("Odpowiedz z 8.8.8.8: bajtow=32 czas=49ms TTL=43"),
        Some(49.0)
    );
    assert_eq!(
        parse_windows_rtt("127.0.0.1 からの応答: バイト数 =32 時間 <1ms TTL=128"),
        Some(0.5)
    );
    assert_eq!(
        parse_windows_rtt("Antwort von 1.2.3.4: Bytes=32 Zeit=46 ms TTL=57"),
        Some(46.0)
    );
    assert_eq!(parse_windows_rtt("TTL=5"), None);
}

#[test]
fn hostile_rtts_are_refused() {
    let huge = format!("Reply from 192.0.2.1: time={}ms TTL=64", "9".repeat(400));
    assert_eq!(parse_windows_rtt(&huge), None);
    let huge = format!("64 bytes: time={} ms", "9".repeat(400));
    assert_eq!(parse_linux_rtt(&huge), None);
    assert_eq!(parse_linux_rtt("rtt min/avg/max/mdev = 1/-5/3/0 ms"), None);
    assert_eq!(parse_linux_rtt("rtt min/avg/max/mdev = 1/inf/3/0 ms"), None);
    assert_eq!(parse_linux_rtt("rtt min/avg/max/mdev = 1/NaN/3/0 ms"), None);
}
