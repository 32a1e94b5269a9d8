//! Typed views of the agent replies vmnetprobe reads, parsed defensively: the
//! guest is untrusted, so every field is checked, every list and string is
//! bounded, and nothing here can panic on bad input.

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// More entries than this in one reply is treated as a hostile or broken agent.
pub const MAX_LIST_LEN: usize = 4096;
/// Strings from the guest (names, versions) are cut to this many characters.
pub const MAX_TEXT_LEN: usize = 256;
/// Captured output of one guest command, base64 as sent. A ping prints < 1 KiB.
pub const MAX_EXEC_OUTPUT_B64: usize = 256 * 1024;

/// Collapses control characters and whitespace runs to one space and cuts the
/// text to `max` characters, so guest text can go into a one-line reason.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if out.chars().count() >= max {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(|s| one_line(s, MAX_TEXT_LEN))
}

fn bounded_array<'v>(value: &'v Value, what: &str) -> Result<&'v Vec<Value>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{what}: expected an array"))?;
    if list.len() > MAX_LIST_LEN {
        return Err(format!(
            "{what}: {} entries is more than {MAX_LIST_LEN}",
            list.len()
        ));
    }
    Ok(list)
}

/// A MAC address normalised to lowercase `aa:bb:cc:dd:ee:ff`, or None.
pub fn normalize_mac(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, part) in parts.iter().enumerate() {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if i > 0 {
            out.push(':');
        }
        out.push_str(&part.to_ascii_lowercase());
    }
    Some(out)
}

/// Parses an IP literal from the guest. A Windows zone suffix (`%6`) is dropped.
pub fn parse_ip(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let bare = raw.split_once('%').map_or(raw, |(addr, _)| addr);
    bare.parse().ok()
}

/// `guest-info`: the agent version and which commands are enabled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestInfo {
    pub version: String,
    /// Command name → enabled.
    pub commands: BTreeMap<String, bool>,
}

impl GuestInfo {
    pub fn parse(reply: &Value) -> Result<Self, String> {
        let version = reply.get("version").and_then(text).unwrap_or_default();
        let list = bounded_array(
            reply
                .get("supported_commands")
                .ok_or("guest-info: no supported_commands")?,
            "guest-info supported_commands",
        )?;
        let mut commands = BTreeMap::new();
        for entry in list {
            let Some(name) = entry.get("name").and_then(Value::as_str) else {
                continue;
            };
            let enabled = entry
                .get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            commands.insert(one_line(name, MAX_TEXT_LEN), enabled);
        }
        Ok(GuestInfo { version, commands })
    }

    /// Present in the list and enabled.
    pub fn supports(&self, command: &str) -> bool {
        self.commands.get(command).copied().unwrap_or(false)
    }

    /// Present in the list but switched off (policy, or not built for this OS on 7.2).
    pub fn is_disabled(&self, command: &str) -> bool {
        self.commands.get(command) == Some(&false)
    }
}

/// `guest-get-osinfo`; every member is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsInfo {
    pub id: Option<String>,
    pub pretty_name: Option<String>,
    pub kernel_release: Option<String>,
}

impl OsInfo {
    pub fn parse(reply: &Value) -> Result<Self, String> {
        if !reply.is_object() {
            return Err("guest-get-osinfo: expected an object".into());
        }
        Ok(OsInfo {
            id: reply.get("id").and_then(text),
            pretty_name: reply.get("pretty-name").and_then(text),
            kernel_release: reply.get("kernel-release").and_then(text),
        })
    }

    /// Windows agents always report the constant id `mswindows`; pretty-name
    /// is not reliable (Windows 11 says "Windows 10").
    pub fn is_windows(&self) -> bool {
        self.id.as_deref() == Some("mswindows")
    }
}

/// One entry of `guest-network-get-interfaces`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestInterface {
    pub name: String,
    pub mac: Option<String>,
    pub ips: Vec<(IpAddr, u8)>,
}

impl GuestInterface {
    pub fn parse_list(reply: &Value) -> Result<Vec<Self>, String> {
        let list = bounded_array(reply, "guest-network-get-interfaces")?;
        let mut out = Vec::with_capacity(list.len());
        for entry in list {
            let Some(name) = entry.get("name").and_then(text) else {
                continue;
            };
            let mac = entry
                .get("hardware-address")
                .and_then(Value::as_str)
                .and_then(normalize_mac);
            let mut ips = Vec::new();
            if let Some(addrs) = entry.get("ip-addresses") {
                for addr in bounded_array(addrs, "ip-addresses")? {
                    let Some(ip) = addr
                        .get("ip-address")
                        .and_then(Value::as_str)
                        .and_then(parse_ip)
                    else {
                        continue;
                    };
                    let max_prefix = if ip.is_ipv4() { 32 } else { 128 };
                    let prefix = addr
                        .get("prefix")
                        .and_then(Value::as_u64)
                        .filter(|p| *p <= max_prefix)
                        .unwrap_or(max_prefix) as u8;
                    ips.push((ip, prefix));
                }
            }
            out.push(GuestInterface { name, mac, ips });
        }
        Ok(out)
    }
}

/// One entry of `guest-network-get-route` (qemu-ga 9.1+, Linux).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub iface: String,
    /// The next hop of a default route, if this is one.
    pub default_gateway: Option<IpAddr>,
    /// Lower wins; IPv6 ECMP next hops are sibling routes of one metric.
    pub metric: i64,
}

impl Route {
    pub fn parse_list(reply: &Value) -> Result<Vec<Self>, String> {
        let list = bounded_array(reply, "guest-network-get-route")?;
        let mut out = Vec::new();
        for entry in list {
            let Some(iface) = entry.get("iface").and_then(text) else {
                continue;
            };
            let field = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("");
            let default_gateway = match entry.get("version").and_then(Value::as_i64) {
                Some(4) => {
                    let is_default = field("destination") == "0.0.0.0"
                        && (field("mask") == "0.0.0.0" || field("mask").is_empty());
                    is_default.then(|| parse_ip(field("gateway"))).flatten()
                }
                // IPv6: the next hop is in `nexthop`, and prefix lengths are strings.
                Some(6) => {
                    let is_default = field("destination") == "::" && field("desprefixlen") == "0";
                    is_default.then(|| parse_ip(field("nexthop"))).flatten()
                }
                _ => None,
            }
            .filter(|gw| !gw.is_unspecified());
            let metric = entry.get("metric").and_then(Value::as_i64).unwrap_or(0);
            out.push(Route {
                iface,
                default_gateway,
                metric,
            });
        }
        Ok(out)
    }
}

/// `guest-fsfreeze-status`: whether the agent froze the guest's
/// filesystems (a backup's `virsh domfsfreeze`). It is one of the few
/// commands a frozen agent still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeStatus {
    Thawed,
    Frozen,
}

impl FreezeStatus {
    pub fn parse(reply: &Value) -> Result<Self, String> {
        match reply.as_str() {
            Some("thawed") => Ok(FreezeStatus::Thawed),
            Some("frozen") => Ok(FreezeStatus::Frozen),
            _ => Err("guest-fsfreeze-status: expected \"thawed\" or \"frozen\"".into()),
        }
    }
}

pub fn parse_exec_pid(reply: &Value) -> Result<i64, String> {
    match reply.get("pid").and_then(Value::as_i64) {
        Some(pid) if pid > 0 => Ok(pid),
        Some(pid) => Err(format!("guest-exec returned invalid pid {pid}")),
        None => Err("guest-exec reply has no integer pid".into()),
    }
}

/// `guest-exec-status`. Output is decoded lossily: Windows writes its OEM code page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecStatus {
    pub exited: bool,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

fn decode_output(reply: &Value, key: &str) -> Result<String, String> {
    let Some(value) = reply.get(key) else {
        return Ok(String::new());
    };
    let encoded = value
        .as_str()
        .ok_or_else(|| format!("guest-exec-status: {key} is not a string"))?;
    if encoded.len() > MAX_EXEC_OUTPUT_B64 {
        return Err(format!(
            "guest-exec-status: {key} is {} bytes, more than {MAX_EXEC_OUTPUT_B64}",
            encoded.len()
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| format!("guest-exec-status: {key} is not valid base64"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl ExecStatus {
    pub fn parse(reply: &Value) -> Result<Self, String> {
        let exited = reply
            .get("exited")
            .and_then(Value::as_bool)
            .ok_or("guest-exec-status: no boolean 'exited'")?;
        let int = |key: &str| -> Result<Option<i64>, String> {
            match reply.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("guest-exec-status: {key} is not an integer")),
            }
        };
        Ok(ExecStatus {
            exited,
            exit_code: int("exitcode")?,
            signal: int("signal")?,
            stdout: decode_output(reply, "out-data")?,
            stderr: decode_output(reply, "err-data")?,
        })
    }
}

#[cfg(test)]
mod tests {
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
        let win11 =
            json!({"name":"Microsoft Windows","pretty-name":"Windows 10 Pro","id":"mswindows"});
        assert!(OsInfo::parse(&win11).unwrap().is_windows());
        let debian = json!({"id":"debian","pretty-name":"Debian GNU/Linux 12 (bookworm)"});
        assert!(!OsInfo::parse(&debian).unwrap().is_windows());
        assert!(!OsInfo::parse(&json!({"pretty-name":"Windows"}))
            .unwrap()
            .is_windows());
        assert!(OsInfo::parse(&json!([])).is_err());
    }

    #[test]
    fn interfaces_parse_the_recorded_linux_reply() {
        let reply = json!([
            {"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8}],"hardware-address":"00:00:00:00:00:00"},
            {"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"192.168.122.226","prefix":24}],"hardware-address":"52:54:00:AA:DD:01"},
            {"name":"Loopback Pseudo-Interface 1"},
            {"name":"Ethernet 2","ip-addresses":[{"ip-address":"fe80::3a11:dfb6:9b8f:8241%6","prefix":64},{"ip-address":"not an ip","prefix":1},{"ip-address":"10.0.0.1","prefix":99}],"hardware-address":"bogus"}
        ]);
        let list = GuestInterface::parse_list(&reply).unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[1].mac.as_deref(), Some("52:54:00:aa:dd:01"));
        assert_eq!(list[1].ips, vec![("192.168.122.226".parse().unwrap(), 24)]);
        assert!(list[2].mac.is_none() && list[2].ips.is_empty());
        assert_eq!(list[3].mac, None);
        assert_eq!(
            list[3].ips,
            vec![
                ("fe80::3a11:dfb6:9b8f:8241".parse().unwrap(), 64),
                ("10.0.0.1".parse().unwrap(), 32)
            ]
        );
    }

    #[test]
    fn hostile_interface_names_are_flattened() {
        let reply =
            json!([{"name":"eth0\n'; rm -rf / |x=1,", "hardware-address":"52:54:00:00:00:01"}]);
        let list = GuestInterface::parse_list(&reply).unwrap();
        assert_eq!(list[0].name, "eth0 '; rm -rf / |x=1,");
    }

    #[test]
    fn routes_find_v4_and_v6_default_gateways() {
        let reply = json!([
            {"flags": 3, "metric": 0, "version": 4, "iface": "eth0", "destination": "0.0.0.0", "gateway": "192.0.2.1", "mask": "0.0.0.0"},
            {"flags": 1, "metric": 0, "version": 4, "iface": "eth0", "destination": "192.0.2.0", "gateway": "0.0.0.0", "mask": "255.255.255.0"},
            {"flags": 3, "source": "::", "metric": 1024, "version": 6, "nexthop": "fd00::1", "iface": "eth0", "destination": "::", "desprefixlen": "0"},
            {"flags": 18446744071564165121u64, "metric": -1, "version": 6, "nexthop": "::", "iface": "lo", "destination": "::", "desprefixlen": "0"},
            {"version": "4", "iface": "x", "destination": "0.0.0.0", "gateway": "1.2.3.4"}
        ]);
        let routes = Route::parse_list(&reply).unwrap();
        let gws: Vec<_> = routes.iter().filter_map(|r| r.default_gateway).collect();
        assert_eq!(
            gws,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
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
        let done =
            json!({"exitcode": 0, "out-data": "aGk=", "exited": true, "out-truncated": false});
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
    fn one_line_bounds_and_flattens() {
        assert_eq!(one_line("  a\r\n b\t", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("", 3), "");
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
}
