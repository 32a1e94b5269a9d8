//! Test support: a hostile QEMU guest agent on a unix socket (std
//! `UnixListener`, one thread per connection), grammar checks for the three
//! output formats, and a runner that measures a vmnetprobe run's wall time
//! and peak memory.
//!
//! The server speaks the real handshake (client: 0xFF + guest-sync-delimited
//! {id}; agent: the parse-error line for the stray 0xFF, then 0xFF +
//! `{"return": id}\n`) and echoes each request's `id`. Each [`Mode`] breaks
//! one promise of the protocol; [`Mode::Normal`] keeps them all and plays a
//! healthy Linux guest whose pings succeed. Every `guest-exec` it receives is
//! recorded, so tests can check what vmnetprobe asked a guest to run.
#![allow(dead_code)]

pub mod grammar;
pub mod proxy;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway every fake guest routes through, and the external address the
/// tests pass with `--external`. Nothing is ever sent to them: the fake agent
/// only pretends to run ping.
pub const GATEWAY: &str = "192.0.2.1";
pub const EXTERNAL: &str = "198.51.100.1";
/// Size of the document sent by [`Mode::Huge`].
pub const HUGE_BYTES: usize = 64 * 1024 * 1024;
/// The stray-0xFF error the real agent prints before its sentinel reply.
const PARSE_ERROR: &[u8] =
    b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n";
/// Non-JSON bytes: NUL, invalid UTF-8, an unterminated object, terminal escapes.
const GARBAGE: &[u8] = b"\x00\x01\xfe\xc3\x28 {{{ \"return\": \x1b[31mnot json ]]\n";
/// Text a hostile guest puts where names, addresses and messages go.
pub const NASTY: &str =
    "|x'y=z,w\n$(reboot) `id`; rm -rf / \"q\" \\ \u{2028}\u{85}\t\u{202e}1.2.3.4\u{200b}\u{2066}\u{feff}";

/// Invisible characters that reorder or hide the text around them (bidi
/// overrides and isolates, zero-width characters, BOM): never in output.
pub fn is_hidden_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

const SENTINEL: u8 = 0xFF;

/// How the fake agent misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A healthy Linux guest (qemu-ga 10.0.2): gateway via
    /// guest-network-get-route, every ping answered.
    Normal,
    /// Handshake fine, then a non-JSON line in reply to every command.
    Garbage,
    /// The sentinel reply to guest-sync-delimited is followed by garbage.
    GarbageSync,
    /// guest-network-get-interfaces answered by a 64 MiB JSON document.
    Huge,
    /// Accepts and reads, never writes a byte.
    Silent,
    /// The handshake reply, one byte every half second.
    Drip,
    /// Closes the connection right after accept.
    CloseOnAccept,
    /// guest-exec-status says `exited: false` forever.
    NeverExits,
    /// Output that is not base64.
    BadBase64,
    /// guest-exec returns a negative pid.
    NegativePid,
    /// guest-exec-status returns `"exitcode": "0"`.
    StringExitCode,
    /// guest-info with a numeric version and a string for the command list.
    WrongTypesInfo,
    /// Interface names, addresses, routes and ping output full of `|`, `'`,
    /// `=`, `,`, newlines and shell text.
    HostileNames,
    /// Answers guest-sync-delimited with another id.
    WrongSyncId,
    /// Handshake fine, then every reply carries someone else's id.
    StaleIds,
    /// Poses as Windows; PING.EXE prints "Destination host unreachable"
    /// and exits 0 (the real ping.exe trap).
    WindowsLiar,
    /// guest-exec hands out the same pid for every program.
    PidReuse,
    /// guest-network-get-interfaces: 300 KB of a valid reply, then nothing.
    StallMidBigReply,
    /// A healthy guest that sends an unrelated `{"event": ...}` line before
    /// every reply.
    Events,
    /// A healthy guest whose guest-network-get-interfaces is a valid
    /// ~3.7 MB document (under the 4 MiB cap): eth0, then 4000 more
    /// interfaces with 12 addresses each.
    BigValid,
}

/// The [`Mode::BigValid`] interface list as JSON text, built once.
fn big_valid_interfaces() -> &'static str {
    static REPLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REPLY.get_or_init(|| {
        let mut list = vec![
            json!({"name": "lo", "hardware-address": "00:00:00:00:00:00",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}),
            json!({"name": "eth0", "hardware-address": "52:54:00:00:00:01",
                "ip-addresses": [{"ip-address": "192.0.2.10", "ip-address-type": "ipv4", "prefix": 24}]}),
        ];
        for i in 0..4000u32 {
            let addrs: Vec<Value> = (0..12u32)
                .map(|j| json!({"ip-address": format!("10.{}.{}.{j}", i / 256, i % 256), "ip-address-type": "ipv4", "prefix": 24}))
                .collect();
            list.push(json!({"name": format!("veth{i:05}"),
                "hardware-address": format!("02:00:00:{:02x}:{:02x}:01", i / 256, i % 256),
                "ip-addresses": addrs}));
        }
        Value::Array(list).to_string()
    })
}

/// One `guest-exec` as the agent received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecCall {
    pub path: String,
    pub args: Vec<String>,
    pub env: Option<Vec<String>>,
    /// The whole `arguments` object, to catch members nobody expects.
    pub raw: Value,
}

pub struct FakeAgent {
    pub socket: PathBuf,
    dir: PathBuf,
    mode: Mode,
    calls: Arc<Mutex<Vec<ExecCall>>>,
    /// Bytes of the huge document written before the client hung up.
    huge_written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vmnp-hostile-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Sets a socket's mtime an hour back. vmnetprobe takes a socket's mtime as
/// the VM's start and calls a young VM whose agent is silent "booting"
/// (`--grace`); these VMs have been up for long.
pub fn backdate(path: &Path) {
    let status = Command::new("touch")
        .args(["-m", "-d", "1 hour ago"])
        .arg(path)
        .status()
        .expect("touch");
    assert!(status.success(), "touch {}", path.display());
}

impl FakeAgent {
    pub fn start(mode: Mode) -> FakeAgent {
        let dir = temp_dir(&format!("{mode:?}").to_lowercase());
        Self::start_at(mode, dir.join("qga.sock"), dir)
    }

    /// An agent on `socket`; `dir` is removed with it.
    pub fn start_at(mode: Mode, socket: PathBuf, dir: PathBuf) -> FakeAgent {
        let listener = UnixListener::bind(&socket).expect("bind fake agent socket");
        backdate(&socket);
        let agent = FakeAgent {
            socket,
            dir,
            mode,
            calls: Arc::default(),
            huge_written: Arc::default(),
            stop: Arc::default(),
        };
        let (calls, huge, stop) = (
            Arc::clone(&agent.calls),
            Arc::clone(&agent.huge_written),
            Arc::clone(&agent.stop),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let (calls, huge) = (Arc::clone(&calls), Arc::clone(&huge));
                std::thread::spawn(move || serve(stream, mode, &calls, &huge));
            }
        });
        agent
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `NAME=PATH` for `--socket`.
    pub fn socket_arg(&self, name: &str) -> String {
        format!("{name}={}", self.socket.display())
    }

    pub fn exec_calls(&self) -> Vec<ExecCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn huge_bytes_written(&self) -> usize {
        self.huge_written.load(Ordering::SeqCst)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the agent does with one request.
enum Action {
    Reply(Value),
    Error(&'static str, String),
    Raw(Vec<u8>),
    Drip(Vec<u8>),
    Huge,
    /// The [`Mode::BigValid`] interface list, with the request's id.
    BigValid,
    /// These bytes, then silence until the client hangs up.
    Stall(Vec<u8>),
    Nothing,
}

struct Session<'a> {
    mode: Mode,
    calls: &'a Mutex<Vec<ExecCall>>,
    next_pid: i64,
    pids: HashMap<i64, ExecCall>,
}

fn serve(stream: UnixStream, mode: Mode, calls: &Mutex<Vec<ExecCall>>, huge: &AtomicUsize) {
    if mode == Mode::CloseOnAccept {
        return; // dropping the stream closes it
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut session = Session {
        mode,
        calls,
        next_pid: 4000,
        pids: HashMap::new(),
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if mode == Mode::Silent {
            continue;
        }
        let sentinels = line.iter().take_while(|b| **b == SENTINEL).count();
        let mut out = Vec::new();
        if sentinels > 0 {
            out.extend_from_slice(PARSE_ERROR);
        }
        if mode == Mode::Events {
            out.extend_from_slice(
                b"{\"event\": \"GUEST_PANICKED\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n",
            );
        }
        let request: Value = match serde_json::from_slice(&line[sentinels..]) {
            Ok(v) => v,
            Err(_) => {
                out.extend_from_slice(PARSE_ERROR);
                if writer.write_all(&out).is_err() {
                    return;
                }
                continue;
            }
        };
        let id = request.get("id").cloned();
        let command = request
            .get("execute")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let arguments = request.get("arguments").cloned().unwrap_or(Value::Null);
        let reply_id = match (mode, &id) {
            (Mode::StaleIds, Some(id)) => Some(json!(id.as_u64().unwrap_or(0) ^ 0x5a5a)),
            _ => id,
        };
        let wrap = |mut body: Value| {
            if let (Some(id), Some(map)) = (&reply_id, body.as_object_mut()) {
                map.insert("id".into(), id.clone());
            }
            let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
            bytes.push(b'\n');
            bytes
        };
        match session.respond(&command, &arguments) {
            Action::Reply(value) => out.extend(wrap(json!({ "return": value }))),
            Action::Error(class, desc) => {
                out.extend(wrap(json!({"error": {"class": class, "desc": desc}})))
            }
            Action::Raw(bytes) => out.extend(bytes),
            Action::Stall(bytes) => {
                out.extend(bytes);
                if writer.write_all(&out).is_err() {
                    return;
                }
                // Waits for the client to give up (EOF), never answers.
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
                return;
            }
            Action::BigValid => {
                out.extend_from_slice(b"{\"return\": ");
                out.extend_from_slice(big_valid_interfaces().as_bytes());
                if let Some(id) = &reply_id {
                    out.extend_from_slice(format!(", \"id\": {id}").as_bytes());
                }
                out.extend_from_slice(b"}\n");
            }
            Action::Nothing => {}
            Action::Drip(bytes) => {
                out.extend(bytes);
                for byte in out.drain(..) {
                    if writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            Action::Huge => {
                if writer.write_all(&out).is_err() {
                    return;
                }
                out.clear();
                write_huge(&mut writer, huge);
                return;
            }
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// A valid 64 MiB `{"return": [...]}` line, streamed in 64 KiB chunks.
fn write_huge(writer: &mut UnixStream, written: &AtomicUsize) {
    let entry = br#"{"name":"eth0","hardware-address":"52:54:00:00:00:01","ip-addresses":[{"ip-address":"192.0.2.10","ip-address-type":"ipv4","prefix":24}]},"#;
    let mut chunk = Vec::with_capacity(64 * 1024 + entry.len());
    let mut total = 0;
    let head = br#"{"return": ["#;
    chunk.extend_from_slice(head);
    while total < HUGE_BYTES {
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(entry);
        }
        if writer.write_all(&chunk).is_err() {
            return;
        }
        total += chunk.len();
        written.store(total, Ordering::SeqCst);
        chunk.clear();
    }
    let _ = writer.write_all(b"{\"name\":\"end\"}]}\n");
}

fn sync_reply(id: u64) -> Vec<u8> {
    let mut bytes = vec![SENTINEL];
    bytes.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
    bytes
}

fn b64(text: &str) -> String {
    // A small encoder: the test crate does not depend on base64.
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn linux_ping_ok(target: &str, rtt: &str) -> String {
    format!(
        "PING {target} ({target}) 56(84) bytes of data.\n64 bytes from {target}: icmp_seq=1 ttl=64 time={rtt} ms\n\n--- {target} ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = {rtt}/{rtt}/{rtt}/0.000 ms\n"
    )
}

impl Session<'_> {
    fn windows(&self) -> bool {
        self.mode == Mode::WindowsLiar
    }

    fn info(&self) -> Value {
        let mut names = vec![
            "guest-sync-delimited",
            "guest-ping",
            "guest-info",
            "guest-get-osinfo",
            "guest-network-get-interfaces",
            "guest-exec",
            "guest-exec-status",
        ];
        if !self.windows() {
            names.push("guest-network-get-route");
        }
        let commands: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "enabled": true, "success-response": true}))
            .collect();
        let version = if self.windows() { "108.0.2" } else { "10.0.2" };
        json!({"version": version, "supported_commands": commands})
    }

    fn interfaces(&self) -> Value {
        let lo = json!({"name": "lo", "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]});
        match self.mode {
            Mode::WindowsLiar => json!([
                {"name": "Loopback Pseudo-Interface 1",
                 "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "Ethernet 2", "hardware-address": "52:54:00:00:00:31",
                 "ip-addresses": [
                    {"ip-address": "fe80::5054:ff:fe00:31%6", "ip-address-type": "ipv6", "prefix": 64},
                    {"ip-address": "192.0.2.30", "ip-address-type": "ipv4", "prefix": 24}]}
            ]),
            Mode::HostileNames => json!([
                lo,
                {"name": format!("eth0{NASTY}"), "hardware-address": "52:54:00:00:00:21",
                 "ip-addresses": [
                    {"ip-address": "192.0.2.20", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "192.0.2.21; reboot", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "-c 1000", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "$(curl 198.51.100.66)", "ip-address-type": "ipv4", "prefix": "24"}]},
                {"name": format!("eth1'\"|=,{NASTY}"), "hardware-address": "52:54:00:00:00:22",
                 "ip-addresses": [
                    {"ip-address": "fe80::5054:ff:fe00:22", "ip-address-type": "ipv6", "prefix": 64},
                    {"ip-address": "192.0.2.1|198.51.100.66", "ip-address-type": "ipv4", "prefix": 24}]},
                {"name": "eth2=x,y z", "hardware-address": "52:54:00:00:00:23; reboot",
                 "ip-addresses": [{"ip-address": "192.0.2.23", "prefix": 24}]},
                {"name": 7, "hardware-address": "52:54:00:00:00:24"},
                "not an object"
            ]),
            _ => json!([
                lo,
                {"name": "eth0", "hardware-address": "52:54:00:00:00:01",
                 "ip-addresses": [{"ip-address": "192.0.2.10", "ip-address-type": "ipv4", "prefix": 24}]}
            ]),
        }
    }

    fn routes(&self) -> Value {
        let default_v4 = |iface: &str, gw: &str| {
            json!({"iface": iface, "destination": "0.0.0.0", "mask": "0.0.0.0", "gateway": gw,
                   "flags": 3, "metric": 0, "version": 4})
        };
        match self.mode {
            Mode::HostileNames => json!([
                default_v4(&format!("eth0{NASTY}"), GATEWAY),
                default_v4(&format!("eth1'\"|=,{NASTY}"), "198.51.100.66 -c 100"),
                {"iface": format!("eth1'\"|=,{NASTY}"), "destination": "::", "desprefixlen": "0",
                 "nexthop": "fe80::1", "flags": 3, "metric": 1024, "version": 6},
                default_v4("eth2=x,y z", "$(reboot)"),
                {"iface": ["x"], "version": "4"}
            ]),
            _ => json!([
                default_v4("eth0", GATEWAY),
                {"iface": "eth0", "destination": "192.0.2.0", "mask": "255.255.255.0",
                 "gateway": "0.0.0.0", "flags": 1, "metric": 0, "version": 4}
            ]),
        }
    }

    fn respond(&mut self, command: &str, arguments: &Value) -> Action {
        if command == "guest-sync-delimited" {
            let id = arguments.get("id").and_then(Value::as_u64).unwrap_or(0);
            return match self.mode {
                Mode::WrongSyncId => Action::Raw(sync_reply(id.wrapping_add(1))),
                Mode::GarbageSync => {
                    let mut bytes = vec![SENTINEL];
                    bytes.extend_from_slice(GARBAGE);
                    Action::Raw(bytes)
                }
                Mode::Drip => Action::Drip(sync_reply(id)),
                _ => Action::Raw(sync_reply(id)),
            };
        }
        if self.mode == Mode::Garbage {
            return Action::Raw(GARBAGE.to_vec());
        }
        match command {
            "guest-ping" => Action::Reply(json!({})),
            "guest-info" if self.mode == Mode::WrongTypesInfo => {
                Action::Reply(json!({"version": 7, "supported_commands": "everything"}))
            }
            "guest-info" => Action::Reply(self.info()),
            "guest-get-osinfo" if self.windows() => Action::Reply(json!({
                "name": "Microsoft Windows", "kernel-release": "20348",
                "version": "Microsoft Windows Server 2022", "pretty-name": "Windows Server 2022 Standard",
                "kernel-version": "10.0", "machine": "x86_64", "id": "mswindows"})),
            "guest-get-osinfo" => Action::Reply(json!({
                "name": "Debian GNU/Linux", "kernel-release": "6.1.0-50-cloud-amd64",
                "pretty-name": "Debian GNU/Linux 12 (bookworm)", "id": "debian", "machine": "x86_64"})),
            "guest-network-get-interfaces" if self.mode == Mode::Huge => Action::Huge,
            "guest-network-get-interfaces" if self.mode == Mode::BigValid => Action::BigValid,
            "guest-network-get-interfaces" if self.mode == Mode::StallMidBigReply => {
                let mut bytes = b"{\"return\": ".to_vec();
                bytes.extend_from_slice(&big_valid_interfaces().as_bytes()[..300 * 1024]);
                Action::Stall(bytes)
            }
            "guest-network-get-interfaces" => Action::Reply(self.interfaces()),
            "guest-network-get-route" if !self.windows() => Action::Reply(self.routes()),
            "guest-exec" => self.exec(arguments),
            "guest-exec-status" => self.exec_status(arguments),
            _ => Action::Error(
                "CommandNotFound",
                format!("The command {command} has not been found"),
            ),
        }
    }

    fn exec(&mut self, arguments: &Value) -> Action {
        let strings = |key: &str| -> Option<Vec<String>> {
            arguments.get(key).and_then(Value::as_array).map(|list| {
                list.iter()
                    .map(|v| v.as_str().unwrap_or("<not a string>").to_string())
                    .collect()
            })
        };
        let call = ExecCall {
            path: arguments
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("<no path>")
                .to_string(),
            args: strings("arg").unwrap_or_default(),
            env: strings("env"),
            raw: arguments.clone(),
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call.clone());
        }
        let known = [
            "/bin/ping",
            "/sbin/ip",
            r"C:\Windows\System32\PING.EXE",
            r"C:\Windows\System32\ROUTE.EXE",
        ];
        if !known.contains(&call.path.as_str()) {
            return Action::Error(
                "GenericError",
                format!(
                    "Failed to execute child process \u{201c}{}\u{201d} (No such file or directory)",
                    call.path
                ),
            );
        }
        if self.mode == Mode::NegativePid {
            return Action::Reply(json!({"pid": -7}));
        }
        if self.mode == Mode::PidReuse {
            self.pids.insert(4001, call);
            return Action::Reply(json!({"pid": 4001}));
        }
        self.next_pid += 1;
        self.pids.insert(self.next_pid, call);
        Action::Reply(json!({"pid": self.next_pid}))
    }

    fn exec_status(&mut self, arguments: &Value) -> Action {
        let pid = arguments.get("pid").and_then(Value::as_i64).unwrap_or(-1);
        if self.mode == Mode::NeverExits {
            return Action::Reply(json!({"exited": false}));
        }
        let Some(call) = self.pids.remove(&pid) else {
            return Action::Error("GenericError", "PID ld does not exist".into());
        };
        let target = call.args.last().cloned().unwrap_or_default();
        let (code, stdout, stderr) = match call.path.as_str() {
            r"C:\Windows\System32\ROUTE.EXE" => (
                0,
                "===========\r\nIPv4 Route Table\r\nActive Routes:\r\nNetwork Destination        Netmask          Gateway       Interface  Metric\r\n          0.0.0.0          0.0.0.0        192.0.2.1     192.0.2.30     25\r\n".to_string(),
                String::new(),
            ),
            r"C:\Windows\System32\PING.EXE" => (
                0,
                format!("\r\nPinging {target} with 32 bytes of data:\r\nReply from 192.0.2.5: Destination host unreachable.\r\n\r\nPing statistics for {target}:\r\n    Packets: Sent = 1, Received = 1, Lost = 0 (0% loss),\r\n"),
                String::new(),
            ),
            "/sbin/ip" => (0, format!("default via {GATEWAY} dev eth0\n"), String::new()),
            _ if self.mode == Mode::HostileNames && target == GATEWAY => {
                (2, String::new(), format!("ping: {NASTY}\nsecond line"))
            }
            _ if self.mode == Mode::HostileNames => {
                (0, format!("{NASTY}\n{}", linux_ping_ok(&target, "0.7")), NASTY.to_string())
            }
            _ => (0, linux_ping_ok(&target, "0.512"), String::new()),
        };
        let mut status = json!({"exited": true, "exitcode": code, "out-data": b64(&stdout)});
        if !stderr.is_empty() {
            status["err-data"] = json!(b64(&stderr));
        }
        match self.mode {
            Mode::BadBase64 => status["out-data"] = json!("%%% not base64 | $(reboot) %%%"),
            Mode::StringExitCode => status["exitcode"] = json!(code.to_string()),
            _ => {}
        }
        Action::Reply(status)
    }
}

/// One finished vmnetprobe run.
pub struct Run {
    pub output: Output,
    pub elapsed: Duration,
    /// Peak resident set (VmHWM) in KiB, when measured.
    pub peak_kib: Option<u64>,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs vmnetprobe, killing it after `hard_limit`; polls /proc for its
/// peak memory (VmHWM is a high-water mark, so the last reading before exit
/// is the peak).
pub fn run_vmnetprobe(args: &[&str], hard_limit: Duration) -> Run {
    run_binary(
        Path::new(env!("CARGO_BIN_EXE_vmnetprobe")),
        args,
        hard_limit,
    )
}

pub fn run_binary(bin: &Path, args: &[&str], hard_limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vmnetprobe");
    let pid = child.id();
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut buf);
        buf
    });
    let mut peak = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = Some(peak.map_or(kib, |p: u64| p.max(kib)));
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => panic!("wait for vmnetprobe: {e}"),
        }
        if started.elapsed() > hard_limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmnetprobe {args:?} still running after {hard_limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    Run {
        output,
        elapsed,
        peak_kib: peak,
    }
}
