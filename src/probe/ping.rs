//! The one ping run inside a guest: which binary, which argv, and what its
//! result means. No shell is involved; every target is an IP literal that
//! was parsed and checked on the host.

use crate::qga::ExecStatus;
use crate::text::one_line;
use crate::verdict::policy::{Finding, PingTarget};
use std::net::IpAddr;
use std::time::Duration;

/// Tried in order on Linux guests until one exists: iputils/busybox live in
/// /bin (or /usr/bin via usrmerge) on every mainstream distribution.
pub const LINUX_PING_PATHS: &[&str] =
    &["/bin/ping", "/usr/bin/ping", "/sbin/ping", "/usr/sbin/ping"];
pub const WINDOWS_PING_PATH: &str = r"C:\Windows\System32\PING.EXE";
/// `env` replaces the child's whole environment, so PATH goes with LC_ALL.
/// Never sent to Windows guests: SystemRoot & co. would vanish.
pub const LINUX_ENV: &[&str] = &["LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

/// Refuses addresses that cannot be a ping target. Runs on every address
/// before it becomes an argument, whatever its source.
pub fn validate_target(addr: IpAddr) -> Result<IpAddr, String> {
    let bad = match addr {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if bad {
        Err(format!("{addr} is not a unicast address"))
    } else {
        Ok(addr)
    }
}

/// A guest interface name safe to append as an IPv6 zone (`fe80::1%eth0`).
fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 15
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// fe80::/10, which needs a zone to be pinged.
pub fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// The ping target as one argv element. A link-local IPv6 gateway needs the
/// interface as zone; without a safe one it cannot be pinged.
pub fn target_argument(addr: IpAddr, zone: Option<&str>) -> Result<String, String> {
    let addr = validate_target(addr)?;
    if is_link_local(addr) {
        return match zone.filter(|z| valid_zone(z)) {
            Some(zone) => Ok(format!("{addr}%{zone}")),
            None => Err(format!("link-local {addr} needs a valid interface name")),
        };
    }
    Ok(addr.to_string())
}

/// What `-W` a Linux ping gets for `timeout`: whole seconds, rounded up.
pub fn linux_wait_secs(timeout: Duration) -> u64 {
    timeout.as_secs_f64().ceil().max(1.0) as u64
}

/// `ping -n -c 1 -W <s> <ip>`: -W takes whole seconds on busybox, and -w
/// would make iputils keep sending.
pub fn linux_args(target: &str, timeout: Duration) -> Vec<String> {
    let secs = linux_wait_secs(timeout);
    vec![
        "-n".into(),
        "-c".into(),
        "1".into(),
        "-W".into(),
        secs.to_string(),
        target.into(),
    ]
}

pub fn windows_args(addr: IpAddr, target: &str, timeout: Duration) -> Vec<String> {
    let millis = timeout.as_millis().clamp(1, 60_000);
    let family = if addr.is_ipv4() { "-4" } else { "-6" };
    vec![
        "-n".into(),
        "1".into(),
        "-w".into(),
        millis.to_string(),
        family.into(),
        target.into(),
    ]
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| one_line(l, 120))
        .unwrap_or_default()
}

/// First `time=0.047 ms` (iputils, busybox), else the average of the summary
/// line `rtt min/avg/max/mdev = a/b/c/d ms` or `round-trip min/avg/max = a/b/c ms`.
pub fn parse_linux_rtt(stdout: &str) -> Option<f64> {
    for line in stdout.lines() {
        if let Some(pos) = line.find("time=") {
            let rest = &line[pos + 5..];
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if let Ok(value) = number.parse::<f64>() {
                if rest[number.len()..].trim_start().starts_with("ms") && value.is_finite() {
                    return Some(value);
                }
            }
        }
    }
    stdout.lines().find_map(|line| {
        let (head, values) = line.split_once(" = ")?;
        if !head.contains("min/avg/max") {
            return None;
        }
        let avg = values.split('/').nth(1)?.trim();
        // `-5` and `1e3` parse as f64 too; a guest's output is not trusted.
        avg.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    })
}

/// A reply as iputils (`64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=4.00 ms`)
/// or busybox (`64 bytes from 192.0.2.1: seq=0 ttl=64 time=0.000 ms`; without
/// FANCY_PING `192.0.2.1 is alive!`) prints it.
pub fn has_reply_line(stdout: &str) -> bool {
    stdout.lines().any(|line| {
        let line = line.trim();
        let echo = line
            .split_once(" bytes from ")
            .is_some_and(|(count, rest)| {
                !count.is_empty()
                    && count.bytes().all(|b| b.is_ascii_digit())
                    && rest.contains(" ttl=")
            });
        echo || line.ends_with(" is alive!")
    })
}

/// The line that says ping was not allowed to run (not the first line:
/// warnings such as iputils' capability notes may come before it).
fn denied_line(text: &str) -> Option<String> {
    text.lines()
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.contains("operation not permitted") || lower.contains("permission denied")
        })
        .map(|l| one_line(l.trim(), 120))
}

/// What a finished Linux ping (iputils or busybox) says about `target`.
pub fn classify_linux(target: PingTarget, status: &ExecStatus) -> Finding {
    if let Some(signal) = status.signal {
        return Finding::PingError(format!("ping killed by signal {signal}"));
    }
    let err = first_line(&status.stderr);
    match status.exit_code {
        // A replaced, wrapped or broken binary can exit 0 without a reply.
        Some(0) if has_reply_line(&status.stdout) => {
            Finding::Reachable(target, parse_linux_rtt(&status.stdout))
        }
        Some(0) => Finding::PingError(
            "ping exited 0 but printed no reply line, cannot tell whether the target answered"
                .into(),
        ),
        Some(126) => {
            Finding::PingDenied(denied_line(&status.stderr).unwrap_or(if err.is_empty() {
                "exit code 126".into()
            } else {
                err
            }))
        }
        Some(127) => Finding::PingMissing,
        Some(code @ (1 | 2)) => {
            if status.stderr.contains("Network is unreachable") {
                return Finding::Unreachable(target, "no route".into());
            }
            if let Some(cause) = denied_line(&status.stderr) {
                return Finding::PingDenied(cause);
            }
            if status.stdout.contains("packets transmitted") {
                let detail = if status.stdout.contains("Unreachable") {
                    "destination host unreachable"
                } else {
                    "no reply"
                };
                return Finding::Unreachable(target, detail.into());
            }
            // iputils exits 2 on errors; busybox exits 1 and prints only to stderr.
            let detail = if err.is_empty() {
                format!("exit code {code}")
            } else {
                err
            };
            Finding::PingError(detail)
        }
        Some(code) => Finding::PingError(if err.is_empty() {
            format!("exit code {code}")
        } else {
            format!("exit code {code}: {err}")
        }),
        None => Finding::PingError("no exit code".into()),
    }
}

/// Windows ping.exe exits 0 for "Destination host unreachable" replies, and
/// its words are localised: a reply is a line with `TTL=`, nothing else.
pub fn classify_windows(target: PingTarget, status: &ExecStatus) -> Finding {
    if let Some(line) = status.stdout.lines().find(|l| l.contains("TTL=")) {
        return Finding::Reachable(target, parse_windows_rtt(line));
    }
    if status.stdout.trim().is_empty() {
        let err = first_line(&status.stderr);
        let detail = match (status.exit_code, status.signal) {
            (_, Some(code)) => format!("ping.exe ended with status {code:#x}"),
            (Some(code), _) if err.is_empty() => format!("exit code {code}"),
            _ => err,
        };
        return Finding::PingError(detail);
    }
    // Skip the "Pinging x with 32 bytes" header: the next line says why.
    let detail = status
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .nth(1)
        .map(|l| one_line(l, 120))
        .unwrap_or_else(|| "no reply".into());
    Finding::Unreachable(target, detail)
}

/// `time=12ms`, `time<1ms`, `czas=49ms`, `時間 <1ms`: the number before `ms`
/// that follows `=` or `<`. `<1ms` is reported as 0.5 ms.
pub fn parse_windows_rtt(line: &str) -> Option<f64> {
    let ttl = line.find("TTL=").unwrap_or(line.len());
    let head = &line[..ttl];
    let ms = head.rfind("ms")?;
    let before = head[..ms].trim_end();
    let digits_start = before.rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    // 400 digits parse as infinity.
    let value: f64 = before[digits_start..]
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())?;
    let marker = before[..digits_start].trim_end().chars().last()?;
    match marker {
        '<' => Some(value / 2.0),
        '=' => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
}
