//! Unit tests of `socket`.

use super::*;
use std::os::unix::io::OwnedFd;

fn transport(stream: UnixStream) -> SocketTransport {
    SocketTransport {
        stream,
        buffer: Vec::new(),
        slot: None,
        next_id: 7,
        needs_sync: true,
    }
}

/// A listener with a backlog of 0 that never accepts, and the one
/// connection that fills its queue.
fn full_listener(path: &Path) -> (OwnedFd, UnixStream) {
    use std::os::unix::io::{AsRawFd, FromRawFd};
    let (addr, len) = unix_addr(path).unwrap();
    // SAFETY: plain socket/bind/listen on a descriptor owned at once.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)) };
    let bound = unsafe {
        libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) == 0
            && libc::listen(fd.as_raw_fd(), 0) == 0
    };
    assert!(bound, "{}", std::io::Error::last_os_error());
    let filler = connect_stream(path, Instant::now()).expect("first connect queues");
    (fd, filler)
}

#[test]
fn a_listener_that_never_accepts_times_out_on_connect() {
    let dir = std::env::temp_dir().join(format!("vmnp-backlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("full.sock");
    let _full = full_listener(&path);
    let started = Instant::now();
    let err = SocketTransport::connect(&path, Duration::from_millis(300)).err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Some(AgentError::Timeout { command }) if command == "connect"),
        "{:?}",
        err.is_some()
    );
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_agent_times_out_on_time() {
    // Long enough for the kernel's coarse timer wheel (a 2.2 s SO_RCVTIMEO
    // fired ~100 ms late here); each wait is now a short slice.
    let (ours, _agent) = UnixStream::pair().unwrap();
    let mut t = transport(ours);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(2200);
    let err = t.sync(deadline).unwrap_err();
    let late = Instant::now().saturating_duration_since(deadline);
    assert!(matches!(err, AgentError::Timeout { .. }), "{err:?}");
    assert!(
        late < Duration::from_millis(50),
        "deadline overrun by {late:?}"
    );
}

#[test]
fn garbage_after_the_sync_sentinel_is_a_protocol_error() {
    let (ours, mut agent) = UnixStream::pair().unwrap();
    agent.write_all(b"\xff\x00\xfe{{{ not json\n").unwrap();
    let mut t = transport(ours);
    let err = t
        .sync(Instant::now() + Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(
        err,
        AgentError::Protocol("reply to guest-sync-delimited is not JSON".into())
    );
}

#[test]
fn another_sync_id_is_a_protocol_error_and_ours_still_wins() {
    let (ours, mut agent) = UnixStream::pair().unwrap();
    agent.write_all(b"\xff{\"return\": 99}\n").unwrap();
    let mut t = transport(ours);
    let err = t
        .sync(Instant::now() + Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(
        err,
        AgentError::Protocol("agent answered guest-sync-delimited with id 99 instead of 7".into())
    );
    // A late reply of an earlier client, then ours: in sync.
    agent
        .write_all(b"\xff{\"return\": 5}\n\xff{\"return\": 8}\n")
        .unwrap();
    t.sync(Instant::now() + Duration::from_millis(300)).unwrap();
    assert!(!t.needs_sync);
}
