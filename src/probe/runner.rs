//! Probing many VMs at once: one thread per VM session, one agent command
//! in flight per VM, `-j` commands in flight host-wide (see `gate`), and one
//! overall deadline that is never overrun. VMs not finished by then are
//! reported UNKNOWN ("timed out") and the rest is kept.
//!
//! Why a thread per VM and not a pool of `-j` workers: most of a VM's probe
//! is waiting (for its pings, `-W` seconds when the external address is cut;
//! for a silent agent, `--command-timeout`), and a pool worker that waits is
//! a worker taken. In an uplink outage every VM waits at once, so a pool of
//! 32 gave 64 of 200 VMs their verdict and 136 "timed out". Threads wait for
//! free, and both transports block (libvirt's agent call has no async form),
//! so a thread per VM is the one design that serves both. The pool is
//! bounded only by open files (one agent socket per session).

use super::gate::CommandGate;
use super::stop::{self, DeferSignals};
use super::{probe_vm_gated, timed_out_report, whole_ms, ProbeConfig};
use crate::inventory::VmTarget;
use crate::report::VmReport;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type WorkQueue = Arc<Mutex<VecDeque<(usize, Arc<VmTarget>)>>>;

/// Open files kept for everything but agent sockets: stdio, the libvirt
/// connection, the state directory and its lock, /proc reads.
const RESERVED_FILES: u64 = 64;
/// Sessions (threads) at most, whatever the open-file limit.
const MAX_SESSIONS: usize = 4096;
/// A probe needs little stack (the deepest is serde_json, depth-limited to
/// 128); the default 2 MiB would only reserve address space at 1000 VMs.
const SESSION_STACK: usize = 512 * 1024;

/// Raises the soft open-file limit towards the hard one, as far as `wanted`
/// needs (1024 by default here, and every session holds an agent socket),
/// and returns how many sessions the limit then allows at once.
pub fn session_budget(wanted: usize) -> usize {
    let wanted = (wanted as u64).saturating_add(RESERVED_FILES);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return MAX_SESSIONS;
    }
    if limit.rlim_cur < wanted && limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let budget = limit.rlim_cur.saturating_sub(RESERVED_FILES).max(1);
    usize::try_from(budget)
        .unwrap_or(MAX_SESSIONS)
        .min(MAX_SESSIONS)
}

/// After SIGTERM/SIGINT, how long past the ping timeout the started pings
/// are waited for (agent round trips).
const STOP_GRACE: Duration = Duration::from_millis(500);
/// How often the collecting loop looks for a stop request.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Time kept back from each VM's deadline for collecting and rendering.
pub fn render_margin(total: Duration) -> Duration {
    (total / 20).min(Duration::from_millis(200))
}

/// Probes all `targets`, with at most `jobs` agent commands under way at
/// once, and returns their reports sorted by name, no later than `deadline`.
pub fn probe_all(
    targets: Vec<VmTarget>,
    cfg: &ProbeConfig,
    jobs: usize,
    deadline: Instant,
) -> Vec<VmReport> {
    let _signals = DeferSignals::install();
    let started = Instant::now();
    let total = deadline.saturating_duration_since(started);
    let shown = whole_ms(total);
    let vm_deadline = deadline - render_margin(total).min(total);
    let targets: Vec<Arc<VmTarget>> = targets.into_iter().map(Arc::new).collect();
    let queue: WorkQueue = Arc::new(Mutex::new(targets.iter().cloned().enumerate().collect()));
    let cfg = Arc::new(cfg.clone());
    let gate = Arc::new(CommandGate::new(jobs));
    // `None`: cut short by a stop request.
    let (sender, receiver) = mpsc::channel::<(usize, Option<VmReport>)>();
    // More VMs than open files allow wait in the queue for a session.
    let workers = session_budget(targets.len()).min(targets.len());
    for _ in 0..workers {
        let queue = Arc::clone(&queue);
        let sender = sender.clone();
        let cfg = Arc::clone(&cfg);
        let gate = Arc::clone(&gate);
        // Detached on purpose: a VM stuck in a blocking host call past the
        // deadline must not hold the report back. Its thread ends with the
        // process (or at its own bounded timeout).
        let spawned = thread::Builder::new()
            .name("vmnetprobe-vm".into())
            .stack_size(SESSION_STACK)
            .spawn(move || loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                let Some((index, target)) = next else { break };
                if Instant::now() >= vm_deadline || stop::requested() {
                    break;
                }
                let report = probe_vm_gated(&target, &cfg, &gate, vm_deadline, shown);
                if sender.send((index, report)).is_err() {
                    break;
                }
            });
        if spawned.is_err() {
            break;
        }
    }
    drop(sender);

    let mut reports: Vec<Option<VmReport>> = vec![None; targets.len()];
    let mut done = vec![false; targets.len()];
    let mut missing = targets.len();
    let mut until = deadline;
    while missing > 0 {
        let now = Instant::now();
        if stop::requested() && until == deadline {
            // Started pings end within their timeout: wait that long.
            until = deadline.min(now + cfg.ping_timeout + STOP_GRACE);
        }
        if now >= until {
            break;
        }
        match receiver.recv_timeout((until - now).min(STOP_CHECK)) {
            Ok((index, report)) => {
                if let Some(slot) = done.get_mut(index) {
                    if !*slot {
                        missing -= 1;
                    }
                    *slot = true;
                }
                if let Some(slot) = reports.get_mut(index) {
                    *slot = report;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A VM cut short by a stop had no result in the time the run lasted.
    let limit = if stop::requested() {
        whole_ms(started.elapsed())
    } else {
        shown
    };
    let mut out: Vec<VmReport> = reports
        .into_iter()
        .zip(&targets)
        .map(|(report, target)| report.unwrap_or_else(|| timed_out_report(target, &cfg, limit)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uuid.cmp(&b.uuid)));
    out
}
