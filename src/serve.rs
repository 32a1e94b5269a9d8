//! `vmnetprobe serve`: a small synchronous HTTP server for Prometheus.
//! `/metrics` probes (or shares a result under `--min-interval`, through
//! [`app::collect`]), `/` is a plain page, anything else is 404.
//!
//! Requests are parsed by `httparse`; everything around it is bounded:
//! one thread per connection, at most [`MAX_CONNECTIONS`] at once (more
//! get 503), a request head of at most [`MAX_REQUEST_BYTES`] read within
//! [`REQUEST_TIMEOUT`] (else 431 / 408), writes time out, every response
//! closes the connection. Probes never overlap: scrapes queue on one lock
//! while a probe runs, then find its result shared. SIGTERM or SIGINT
//! stops accepting, lets a running scrape finish (bounded by `--timeout`)
//! and exits 0; a second signal exits at once.
//!
//! Why not tiny_http: its 0.12 reads header lines without a length limit,
//! sets no socket timeouts, grows one thread per connection without bound
//! and stops serving after the first failed `accept` (e.g. out of file
//! descriptors) — a slow or hostile client could stall or end it.

use crate::app;
use crate::cli::DEFAULT_LISTEN;
use crate::config::{Config, ConfigError};
use crate::output::{render_prometheus, render_serve_counters, ServeCounters};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Half the usual 60 s scrape interval: two Prometheus servers (an HA
/// pair) scraping one host share one probe, a single one gets fresh data.
pub const DEFAULT_MIN_INTERVAL: &str = "30s";
/// The largest request head accepted (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; the next ones get 503 at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How often an idle accept loop looks for a stop signal.
const POLL: Duration = Duration::from_millis(100);

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>vmnetprobe</title></head><body>\n\
<h1>vmnetprobe</h1>\n<p>In-guest gateway and external reachability of the VMs on this host, \
from the QEMU guest agent.</p>\n<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// `--listen ADDR:PORT`: an IP literal and a port, never a host name (no
/// DNS lookups behind the user's back).
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError(format!(
            "invalid --listen '{text}': expected IP:PORT, e.g. {DEFAULT_LISTEN} or [::1]:9469"
        ))
    })
}

/// What every connection thread shares.
struct Shared {
    config: Config,
    /// Held while a probe runs: concurrent scrapes never probe twice.
    probe: Mutex<()>,
    active: AtomicUsize,
    scrapes: AtomicU64,
    probe_errors: AtomicU64,
    rejected: AtomicU64,
}

impl Shared {
    fn counters(&self) -> ServeCounters {
        ServeCounters {
            scrapes: self.scrapes.load(Ordering::Relaxed),
            probe_errors: self.probe_errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// Counts a connection as active until dropped.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the server until SIGTERM/SIGINT; returns the exit code. A listen
/// address that cannot be bound is one line on stderr and exit 3.
pub fn serve(listen: &str, config: Config) -> u8 {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The shutdown action goes first: it fires only on a second signal.
        let armed = signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)));
        if let Err(e) = armed {
            eprintln!("vmnetprobe: cannot handle signals: {e}");
            return 1;
        }
    }
    let listener = match parse_listen(listen).and_then(|addr| {
        TcpListener::bind(addr).map_err(|e| ConfigError(format!("cannot listen on {addr}: {e}")))
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vmnetprobe: {e}");
            return 3;
        }
    };
    if config.verbose > 0 {
        if let Ok(addr) = listener.local_addr() {
            eprintln!("vmnetprobe: serving http://{addr}/metrics");
        }
    }
    run(listener, config, &stop);
    0
}

/// The accept loop, until `stop` is set; then waits (bounded) for the
/// connections still being served.
pub fn run(listener: TcpListener, config: Config, stop: &AtomicBool) {
    // Non-blocking accept: the loop must see `stop` even when idle.
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let drain = config.timeout + WRITE_TIMEOUT;
    let shared = Arc::new(Shared {
        config,
        probe: Mutex::new(()),
        active: AtomicUsize::new(0),
        scrapes: AtomicU64::new(0),
        probe_errors: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    while !stop.load(Ordering::SeqCst) {
        if !readable(&listener, POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => accept(stream, &shared),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // Out of file descriptors and the like: wait, and go on serving.
            Err(_) => std::thread::sleep(POLL),
        }
    }
    drop(listener);
    let until = Instant::now() + drain;
    while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits at most `wait` for a connection to accept: the loop answers at
/// once and still sees a stop signal within `wait` when idle.
fn readable(listener: &TcpListener, wait: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    ready > 0
}

fn accept(stream: TcpStream, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        respond(
            stream,
            &Response::text(503, "too many connections\n"),
            false,
        );
        return;
    }
    let guard = Active(Arc::clone(shared));
    let spawned = std::thread::Builder::new()
        .name("vmnetprobe-http".into())
        .spawn(move || {
            let shared = Arc::clone(&guard.0);
            handle(stream, &shared);
            drop(guard);
        });
    // No thread to be had: the connection is dropped (and its count with
    // the closure that held the guard).
    drop(spawned);
}

/// One response: status, headers, body.
struct Response {
    status: u16,
    content_type: &'static str,
    allow: bool,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            allow: false,
            body: body.as_bytes().to_vec(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes `response` and closes the connection. Unread input is drained
/// briefly first: closing a socket with unread data resets it, and the
/// client could lose the response (a 431 after a huge header, say).
fn respond(mut stream: TcpStream, response: &Response, head_only: bool) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if response.allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    let written = stream.write_all(head.as_bytes()).and_then(|()| {
        if head_only {
            Ok(())
        } else {
            stream.write_all(&response.body)
        }
    });
    if written.is_err() {
        return;
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while Instant::now() < until && drained < 256 * 1024 {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// What a request head asked for.
enum Head {
    Request {
        method: String,
        path: String,
    },
    Refused(u16, &'static str),
    /// The client went away; nothing to answer.
    Gone,
}

/// Reads one request head within [`REQUEST_TIMEOUT`] and
/// [`MAX_REQUEST_BYTES`].
fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    loop {
        if len > 0 {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf[..len]) {
                Ok(httparse::Status::Complete(_)) => {
                    return Head::Request {
                        method: request.method.unwrap_or("").to_string(),
                        path: request.path.unwrap_or("").to_string(),
                    }
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Head::Refused(431, "too many header fields\n")
                }
                Err(_) => return Head::Refused(400, "malformed request\n"),
            }
        }
        if len == buf.len() {
            return Head::Refused(431, "request head too large\n");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Head::Refused(408, "request not received in time\n");
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Head::Gone,
            Ok(n) => len += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Head::Gone,
        }
    }
}

fn handle(mut stream: TcpStream, shared: &Shared) {
    let (method, path) = match read_head(&mut stream) {
        Head::Request { method, path } => (method, path),
        Head::Refused(status, body) => {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            respond(stream, &Response::text(status, body), false);
            return;
        }
        Head::Gone => return,
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        let response = Response {
            allow: true,
            ..Response::text(405, "only GET and HEAD\n")
        };
        respond(stream, &response, false);
        return;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let response = match path {
        "/metrics" => scrape(shared),
        "/" => Response {
            content_type: "text/html; charset=utf-8",
            ..Response::text(200, INDEX)
        },
        _ => Response::text(404, "not found: try /metrics\n"),
    };
    respond(stream, &response, head_only);
}

/// Probes (one at a time) and renders the exposition with the server's
/// own counters.
fn scrape(shared: &Shared) -> Response {
    let mut text = {
        // A panicked scrape poisons nothing worth keeping: the lock guards
        // no data, only the order of probes.
        let _probing = shared.probe.lock().unwrap_or_else(|p| p.into_inner());
        let report = app::collect(&shared.config);
        if report.fatal.is_some() {
            shared.probe_errors.fetch_add(1, Ordering::Relaxed);
        }
        render_prometheus(&report).text
    };
    shared.scrapes.fetch_add(1, Ordering::Relaxed);
    text.push_str(&render_serve_counters(&shared.counters()));
    Response {
        content_type: METRICS_TYPE,
        ..Response::text(200, &text)
    }
}

#[cfg(test)]
mod tests;
