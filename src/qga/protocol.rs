//! Typed views of the agent replies vmnetprobe reads, parsed defensively: the
//! guest is untrusted, so every field is checked, every list and string is
//! bounded, and nothing here can panic on bad input.

use crate::text::one_line;
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

pub(super) fn text(value: &Value) -> Option<String> {
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
mod tests;
