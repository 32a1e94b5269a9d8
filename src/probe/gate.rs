//! `-j`: how many agent commands may be under way at once, host-wide.
//!
//! Every VM has its own thread (see `runner`), and each agent command (and
//! the connect before them) first takes a lease here. A lease stops counting
//! once its command has been unanswered for [`SLOW_COMMAND`]: a silent agent,
//! a QEMU that never accepts, or a long exec wait is a VM *waiting*, and a
//! waiting VM must not keep a healthy one from working. Between its polls of
//! a running ping a VM holds no lease at all. So `-j` bounds the work the
//! agents and vmnetprobe do at the same moment, never how many VMs can wait.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A command unanswered this long is waiting, not working. A healthy agent
/// answers in 1-5 ms here even under load (BENCHMARKS.md); a silent one is
/// known to be slow after this and lets the next VM go.
pub const SLOW_COMMAND: Duration = Duration::from_millis(250);

pub struct CommandGate {
    limit: usize,
    hold: Duration,
    /// Start time of every lease not yet returned, by lease id.
    leases: Mutex<(u64, Vec<(u64, Instant)>)>,
    freed: Condvar,
}

/// Returned to the gate when dropped.
pub struct Lease<'g> {
    gate: &'g CommandGate,
    id: u64,
}

impl CommandGate {
    pub fn new(limit: usize) -> Self {
        CommandGate::with_hold(limit, SLOW_COMMAND)
    }

    pub fn with_hold(limit: usize, hold: Duration) -> Self {
        CommandGate {
            limit: limit.max(1),
            hold,
            leases: Mutex::new((0, Vec::new())),
            freed: Condvar::new(),
        }
    }

    /// No limit: for a single VM probed alone.
    pub fn unlimited() -> Self {
        CommandGate::new(usize::MAX)
    }

    /// Waits until fewer than `limit` leases are still young, but never past
    /// `until`: then the command goes ahead and its own deadline check ends it.
    pub fn enter(&self, until: Instant) -> Lease<'_> {
        let mut guard = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut young = 0;
            let mut next_expiry: Option<Instant> = None;
            for (_, started) in &guard.1 {
                let expiry = *started + self.hold;
                if expiry > now {
                    young += 1;
                    next_expiry = Some(next_expiry.map_or(expiry, |e| e.min(expiry)));
                }
            }
            if young < self.limit || now >= until {
                guard.0 = guard.0.wrapping_add(1);
                let id = guard.0;
                guard.1.push((id, now));
                return Lease { gate: self, id };
            }
            let wake = next_expiry.unwrap_or(until).min(until);
            let wait = wake.saturating_duration_since(now);
            guard = self
                .freed
                .wait_timeout(guard, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut guard = self
            .gate
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.1.retain(|(id, _)| *id != self.id);
        drop(guard);
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn at_most_limit_young_leases_at_once() {
        let gate = Arc::new(CommandGate::with_hold(2, Duration::from_secs(10)));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _lease = gate.enter(Instant::now() + Duration::from_secs(10));
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_slow_lease_stops_counting_and_the_deadline_wins() {
        let gate = CommandGate::with_hold(1, Duration::from_millis(50));
        let silent = gate.enter(Instant::now());
        // The first lease is young: a second one waits until it is 50 ms old.
        let started = Instant::now();
        let second = gate.enter(started + Duration::from_secs(5));
        assert!(started.elapsed() >= Duration::from_millis(40));
        drop(second);
        // Past `until`, a lease is granted at once even when the gate is full.
        let gate = CommandGate::with_hold(1, Duration::from_secs(10));
        let _held = gate.enter(Instant::now());
        let until = Instant::now() + Duration::from_millis(30);
        let _late = gate.enter(until);
        assert!(Instant::now() >= until);
        drop(silent);
    }
}
