//! A unix-socket proxy between vmnetprobe and a real qemu-ga that watches
//! the requests go by and fires a hook at a chosen moment — e.g. kills the
//! agent after it answered guest-exec and before guest-exec-status reaches it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn FnMut() + Send>;

pub struct Proxy {
    pub socket: PathBuf,
    fired: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on `socket` and forwards every connection to `upstream`. The
    /// first request line containing `trigger` (after one containing
    /// `after`) runs `hook` before it is forwarded.
    pub fn start(
        socket: &Path,
        upstream: &Path,
        after: &'static str,
        trigger: &'static str,
        hook: Hook,
    ) -> Proxy {
        let listener = UnixListener::bind(socket).expect("bind proxy");
        let fired = Arc::new(AtomicBool::new(false));
        let hook = Arc::new(Mutex::new(Some(hook)));
        let upstream = upstream.to_path_buf();
        let fired_flag = Arc::clone(&fired);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(agent) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let (hook, fired) = (Arc::clone(&hook), Arc::clone(&fired_flag));
                std::thread::spawn(move || pump(client, agent, after, trigger, &hook, &fired));
            }
        });
        Proxy {
            socket: socket.to_path_buf(),
            fired,
        }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

fn pump(
    client: UnixStream,
    agent: UnixStream,
    after: &str,
    trigger: &str,
    hook: &Mutex<Option<Hook>>,
    fired: &AtomicBool,
) {
    let (Ok(mut agent_in), Ok(mut agent_out), Ok(mut client_out)) =
        (agent.try_clone(), agent.try_clone(), client.try_clone())
    else {
        return;
    };
    // agent -> client: plain bytes; when the agent dies, the client sees EOF.
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match agent_out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
    });
    // client -> agent: line by line (every vmnetprobe request is one line).
    let mut reader = BufReader::new(client);
    let mut seen_after = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        if text.contains(after) {
            seen_after = true;
        }
        if seen_after && text.contains(trigger) && !fired.swap(true, Ordering::SeqCst) {
            if let Some(mut hook) = hook.lock().ok().and_then(|mut h| h.take()) {
                hook();
            }
        }
        if agent_in.write_all(&line).is_err() {
            break;
        }
    }
    let _ = agent_in.shutdown(Shutdown::Both);
}
