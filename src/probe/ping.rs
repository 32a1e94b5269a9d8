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
mod tests;
