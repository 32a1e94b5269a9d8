//! SIGTERM/SIGINT while VMs are being probed: stop starting anything, but
//! collect the pings already running before the process goes.
//!
//! qemu-ga frees an exec's record only when a `guest-exec-status` sees it
//! finished; a ping left behind stays in the agent until it restarts. So a
//! signal does not kill the run at once: no new command but
//! `guest-exec-status` is sent, the started pings are polled until they end
//! (at most `--ping-timeout` later, never past `-t`), the report is printed,
//! and the process exits. A second signal kills at once, as usual.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a SIGTERM/SIGINT arrived during the current probe.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// While alive, SIGTERM and SIGINT request a stop instead of killing; the
/// previous handling comes back on drop (so an idle `telegraf --execd`
/// still dies on the first signal). A signal the process already handles
/// (`serve` does, and lets a running probe finish) is left alone.
pub struct DeferSignals {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl DeferSignals {
    pub fn install() -> Self {
        REQUESTED.store(false, Ordering::SeqCst);
        let mut previous = Vec::new();
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: sigaction is plain data; the handler only does an
            // atomic store; SA_RESETHAND lets a second signal kill.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        DeferSignals { previous }
    }
}

impl Drop for DeferSignals {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores the action saved by `install`.
            unsafe {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}
