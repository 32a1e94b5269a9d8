//! A guest agent reached directly on a unix socket (qemu-ga `-m unix-listen`,
//! Proxmox VE's `/var/run/qemu-server/<vmid>.qga`).
//!
//! The stream may hold leftovers from an earlier client or a late reply to a
//! command we gave up on, so every session (and every command after a timeout)
//! starts with the `guest-sync-delimited` handshake: send 0xFF (resets the
//! agent's parser), discard everything up to the agent's 0xFF sentinel, then
//! require our own random id back. Every read is bounded in size and time.

use super::reply::{self, BigReplySlot, RawReply, Reply, BIG_REPLIES, BIG_REPLY};
use super::{classify_agent_error, AgentError, AgentTransport};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest reply accepted. guest-info is ~6 KiB, interfaces of a busy
/// container host a few hundred KiB; anything beyond this is refused.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
const SENTINEL: u8 = 0xFF;
/// The longest single socket wait; see [`SocketTransport::fill`].
const READ_SLICE: Duration = Duration::from_millis(100);

pub struct SocketTransport {
    stream: UnixStream,
    buffer: Vec<u8>,
    /// The big-reply budget slot held while a large reply is buffered.
    slot: Option<BigReplySlot>,
    next_id: u64,
    /// Set after a timeout or protocol error: re-sync before the next command.
    needs_sync: bool,
}

fn io_error(err: std::io::Error, command: &str) -> AgentError {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => AgentError::Timeout {
            command: command.to_string(),
        },
        _ => AgentError::Disconnected(err.to_string()),
    }
}

/// An id for guest-sync that an earlier client cannot have used; below 2^53
/// so JSON libraries that use doubles keep it exact.
fn fresh_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 32)) & ((1 << 53) - 1)
}

/// The connect attempts' backoff: first retry after 1 ms, doubling to this.
const MAX_CONNECT_RETRY: Duration = Duration::from_millis(50);

fn connect_error(path: &Path, err: &std::io::Error) -> AgentError {
    match err.kind() {
        ErrorKind::NotFound => AgentError::Connect(format!("{}: no such socket", path.display())),
        ErrorKind::ConnectionRefused => {
            AgentError::Connect(format!("{}: no agent listening", path.display()))
        }
        ErrorKind::PermissionDenied => {
            AgentError::PermissionDenied(format!("cannot open {}", path.display()))
        }
        _ => AgentError::Connect(format!("{}: {err}", path.display())),
    }
}

/// The `sockaddr_un` for `path` and its length.
pub fn unix_addr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), AgentError> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(AgentError::Connect(format!(
            "{}: path too long for a unix socket",
            path.display()
        )));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// `connect()` with a deadline. std's blocks without limit when the
/// listener's backlog is full (a QEMU that never accepts, or a hung one):
/// here the socket is non-blocking, a full backlog (EAGAIN on Linux unix
/// sockets) is retried with a short backoff, and the deadline ends it as a
/// timeout, like a silent agent.
fn connect_stream(path: &Path, deadline: Instant) -> Result<UnixStream, AgentError> {
    use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
    let timeout = || AgentError::Timeout {
        command: "connect".into(),
    };
    let (addr, len) = unix_addr(path)?;
    let mut delay = Duration::from_millis(1);
    loop {
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(connect_error(path, &std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `addr` is a valid sockaddr_un and `len` is within it.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        let err = std::io::Error::last_os_error();
        if rc == 0 {
            let stream = UnixStream::from(fd);
            stream
                .set_nonblocking(false)
                .map_err(|e| connect_error(path, &e))?;
            return Ok(stream);
        }
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINPROGRESS | libc::EINTR) => {}
            _ => return Err(connect_error(path, &err)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout());
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(MAX_CONNECT_RETRY);
    }
}

impl SocketTransport {
    /// Connects and performs the sync handshake within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, AgentError> {
        let deadline = Instant::now() + timeout;
        let stream = connect_stream(path, deadline)?;
        let mut transport = SocketTransport {
            stream,
            buffer: Vec::new(),
            slot: None,
            next_id: fresh_id(),
            needs_sync: true,
        };
        transport.sync(deadline)?;
        Ok(transport)
    }

    fn write_all(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        command: &str,
    ) -> Result<(), AgentError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AgentError::Timeout {
                command: command.into(),
            });
        }
        self.stream
            .set_write_timeout(Some(remaining))
            .map_err(|e| io_error(e, command))?;
        self.stream
            .write_all(bytes)
            .map_err(|e| io_error(e, command))
    }

    /// Reads more bytes into the buffer, honouring the deadline and the size cap.
    ///
    /// The socket timeout is set to at most [`READ_SLICE`] at a time: the
    /// kernel runs `SO_RCVTIMEO` on its timer wheel, which fires late by up
    /// to an eighth of the timeout (measured: 2.85 s became 2.95 s), and that
    /// lateness would eat the runner's margin and turn the VM's real reason
    /// into a generic "timed out".
    fn fill(&mut self, deadline: Instant, command: &str) -> Result<(), AgentError> {
        if self.buffer.len() >= MAX_REPLY_BYTES {
            return Err(AgentError::Protocol(format!(
                "reply to {command} is larger than {} MiB",
                MAX_REPLY_BYTES / (1024 * 1024)
            )));
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(AgentError::Timeout {
                    command: command.into(),
                });
            }
            self.stream
                .set_read_timeout(Some(remaining.min(READ_SLICE)))
                .map_err(|e| io_error(e, command))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(AgentError::Disconnected(
                        "agent closed the connection".into(),
                    ))
                }
                Ok(n) => {
                    if self.buffer.len() + n > BIG_REPLY && self.slot.is_none() {
                        // Waits (bytes stay in the kernel) until few enough
                        // big replies are buffered; room for the largest
                        // reply is reserved once, so growing never copies.
                        self.slot = Some(BIG_REPLIES.acquire(deadline).ok_or_else(|| {
                            AgentError::Timeout {
                                command: command.into(),
                            }
                        })?);
                        self.buffer
                            .reserve(MAX_REPLY_BYTES + chunk.len() - self.buffer.len());
                    }
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
                // A slice ran out: the loop checks the real deadline.
                // A slot is held only while bytes keep coming: an agent
                // that stalls mid-reply must not hold up other VMs' replies.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.slot = None;
                }
                Err(e) => return Err(io_error(e, command)),
            }
        }
    }

    /// Returns the next `\n`-terminated line (without it).
    fn read_line(&mut self, deadline: Instant, command: &str) -> Result<Vec<u8>, AgentError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buffer[scanned..].iter().position(|b| *b == b'\n') {
                let end = scanned + pos;
                // The line keeps the (possibly big) allocation; only what
                // follows it is copied.
                let rest = self.buffer.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buffer, rest);
                line.truncate(end);
                return Ok(line);
            }
            scanned = self.buffer.len();
            self.fill(deadline, command)?;
        }
    }

    fn sync(&mut self, deadline: Instant) -> Result<(), AgentError> {
        const COMMAND: &str = "guest-sync-delimited";
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1) & ((1 << 53) - 1);
        self.buffer.clear();
        let mut request = vec![SENTINEL];
        request.extend_from_slice(
            format!(r#"{{"execute":"{COMMAND}","arguments":{{"id":{id}}}}}"#).as_bytes(),
        );
        request.push(b'\n');
        self.write_all(&request, deadline, COMMAND)?;
        // What the agent sent after a sentinel instead of our id: reported
        // as a protocol error if our reply never comes.
        let mut wrong_reply: Option<String> = None;
        loop {
            // Discard everything before the sentinel, including the parse error
            // the agent reports for our own 0xFF.
            let sentinel = loop {
                if let Some(pos) = self.buffer.iter().position(|b| *b == SENTINEL) {
                    break pos;
                }
                self.buffer.clear();
                match self.fill(deadline, COMMAND) {
                    Ok(()) => {}
                    Err(AgentError::Timeout { .. }) if wrong_reply.is_some() => {
                        return Err(AgentError::Protocol(wrong_reply.unwrap_or_default()));
                    }
                    Err(e) => return Err(e),
                }
            };
            self.buffer.drain(..=sentinel);
            let line = self.read_line(deadline, COMMAND)?;
            let reply: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(_) => {
                    wrong_reply = Some(format!("reply to {COMMAND} is not JSON"));
                    continue;
                }
            };
            match reply.get("return").and_then(Value::as_u64) {
                Some(got) if got == id => {
                    self.needs_sync = false;
                    return Ok(());
                }
                other => {
                    wrong_reply = Some(format!(
                        "agent answered {COMMAND} with id {} instead of {id}",
                        other.unwrap_or_default()
                    ))
                }
            }
        }
    }

    fn exchange(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        deadline: Instant,
    ) -> Result<RawReply, AgentError> {
        if self.needs_sync {
            self.sync(deadline)?;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1) & ((1 << 53) - 1);
        let mut request = serde_json::json!({ "execute": command, "id": id });
        if let (Some(args), Some(map)) = (arguments, request.as_object_mut()) {
            map.insert("arguments".into(), args.clone());
        }
        let mut bytes = serde_json::to_vec(&request)
            .map_err(|e| AgentError::Protocol(format!("cannot encode request: {e}")))?;
        bytes.push(b'\n');
        self.write_all(&bytes, deadline, command)?;
        loop {
            let mut line = self.read_line(deadline, command)?;
            let slot = self.slot.take();
            if line.first() == Some(&SENTINEL) {
                line.remove(0);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let not_json = || AgentError::Protocol(format!("reply to {command} is not JSON"));
            let text = String::from_utf8(line).map_err(|_| not_json())?;
            let (echoed, reply) = reply::split(text).ok_or_else(not_json)?;
            // The agent echoes our id; another id is a stale reply to a
            // command we gave up on.
            if echoed.is_some_and(|e| e != Some(id)) {
                continue;
            }
            return match reply {
                Reply::Return(raw) => Ok(raw.with_slot(slot)),
                Reply::Error { class, desc } => {
                    Err(classify_agent_error(command, class.as_deref(), &desc))
                }
                // Asynchronous events are no reply to anything.
                Reply::Event => continue,
                Reply::Neither => Err(AgentError::Protocol(format!(
                    "reply to {command} has neither return nor error"
                ))),
            };
        }
    }
}

impl AgentTransport for SocketTransport {
    fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<RawReply, AgentError> {
        let result = self.exchange(command, arguments, Instant::now() + timeout);
        if let Err(AgentError::Timeout { .. } | AgentError::Protocol(_)) = &result {
            self.needs_sync = true;
        }
        if self.buffer.len() <= BIG_REPLY {
            self.slot = None;
        }
        result
    }
}

#[cfg(test)]
mod tests;
