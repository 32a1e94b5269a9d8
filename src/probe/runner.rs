//! Probing many VMs at once: a bounded pool of worker threads, one agent
//! session per VM, and one overall deadline that is never overrun. VMs not
//! finished by then are reported UNKNOWN ("timed out") and the rest is kept.

use super::{probe_vm, timed_out_report, ProbeConfig};
use crate::inventory::VmTarget;
use crate::report::VmReport;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type WorkQueue = Arc<Mutex<VecDeque<(usize, Arc<VmTarget>)>>>;

/// Time kept back from each VM's deadline for collecting and rendering.
fn render_margin(total: Duration) -> Duration {
    (total / 20).min(Duration::from_millis(200))
}

/// Probes all `targets` with at most `jobs` in parallel and returns their
/// reports sorted by name, no later than `deadline`.
pub fn probe_all(
    targets: Vec<VmTarget>,
    cfg: &ProbeConfig,
    jobs: usize,
    deadline: Instant,
) -> Vec<VmReport> {
    let started = Instant::now();
    let total = deadline.saturating_duration_since(started);
    let vm_deadline = deadline - render_margin(total).min(total);
    let targets: Vec<Arc<VmTarget>> = targets.into_iter().map(Arc::new).collect();
    let queue: WorkQueue = Arc::new(Mutex::new(targets.iter().cloned().enumerate().collect()));
    let cfg = Arc::new(cfg.clone());
    let (sender, receiver) = mpsc::channel::<(usize, VmReport)>();
    let workers = jobs.max(1).min(targets.len());
    for _ in 0..workers {
        let queue = Arc::clone(&queue);
        let sender = sender.clone();
        let cfg = Arc::clone(&cfg);
        // Detached on purpose: a VM stuck in a blocking host call past the
        // deadline must not hold the report back. Its thread ends with the
        // process (or at its own bounded timeout).
        let spawned = thread::Builder::new()
            .name("vmnetprobe-worker".into())
            .spawn(move || loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                let Some((index, target)) = next else { break };
                if Instant::now() >= vm_deadline {
                    break;
                }
                let report = probe_vm(&target, &cfg, vm_deadline);
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
    let mut missing = targets.len();
    while missing > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(wait) {
            Ok((index, report)) => {
                if let Some(slot) = reports.get_mut(index) {
                    if slot.is_none() {
                        missing -= 1;
                    }
                    *slot = Some(report);
                }
            }
            Err(_) => break,
        }
    }
    let mut out: Vec<VmReport> = reports
        .into_iter()
        .zip(&targets)
        .map(|(report, target)| report.unwrap_or_else(|| timed_out_report(target, &cfg, total)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uuid.cmp(&b.uuid)));
    out
}
