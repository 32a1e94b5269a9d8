//! Running fixed programs in a guest: `guest-exec`, then `guest-exec-status`
//! polled with a short, bounded backoff until the program has exited (which
//! also frees its record in the agent).
//!
//! The first poll is 1 ms after guest-exec returned (none at once: no program
//! has exited by then), then the wait doubles up to 100 ms: polls at 1, 3, 7,
//! 15, 31 … ms. Starting at 5 ms (polls at 5, 15, 35 …) made a ~2 ms local
//! exec cost 5 ms, twice per VM (`ip route`, then the pings): 15 → 8.5 ms per
//! VM, measured in bench/ (BENCHMARKS.md). Growing by 1.5 instead of 2 gained
//! nothing measurable and cost more agent CPU at 200 VMs.

use crate::qga::{Agent, AgentError, ExecStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(100);

/// The next wait: twice the last one, at most `MAX_POLL`.
fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_POLL)
}

/// An error after which nothing more can be asked of this agent in this run.
pub fn is_session_fatal(error: &AgentError) -> bool {
    matches!(
        error,
        AgentError::Timeout { .. }
            | AgentError::Disconnected(_)
            | AgentError::Protocol(_)
            | AgentError::Connect(_)
            | AgentError::NotRunning
            | AgentError::NotConnected
            | AgentError::NoChannel
            | AgentError::PermissionDenied(_)
            | AgentError::Host(_)
    )
}

/// Polls every pid until it has exited or `until` passes. Each slot is
/// `None` when its program had not finished in time.
pub fn wait_all(
    agent: &mut Agent<'_>,
    pids: &[i64],
    until: Instant,
) -> Result<Vec<Option<Result<ExecStatus, AgentError>>>, AgentError> {
    let mut results: Vec<Option<Result<ExecStatus, AgentError>>> = vec![None; pids.len()];
    let mut delay = FIRST_POLL;
    loop {
        // Waits first, but polls at least once even when `until` has passed.
        let now = Instant::now();
        if now < until {
            sleep(delay.min(until - now));
            delay = next_delay(delay);
        }
        for (slot, pid) in results.iter_mut().zip(pids) {
            if slot.is_some() {
                continue;
            }
            match agent.exec_status(*pid) {
                Ok(status) if status.exited => *slot = Some(Ok(status)),
                Ok(_) => {}
                // Past the VM's deadline the agent takes no more calls: a
                // program not seen to finish by then is unfinished, and the
                // results already collected stand.
                Err(AgentError::Timeout { .. }) if Instant::now() >= agent.deadline() => {}
                Err(e) if is_session_fatal(&e) => return Err(e),
                Err(e) => *slot = Some(Err(e)),
            }
        }
        if results.iter().all(Option::is_some) || Instant::now() >= until {
            return Ok(results);
        }
    }
}

/// Runs one program and waits for it; `Ok(None)` when it did not finish in time.
pub fn run_and_wait(
    agent: &mut Agent<'_>,
    path: &str,
    args: &[String],
    env: Option<&[&str]>,
    until: Instant,
) -> Result<Option<ExecStatus>, AgentError> {
    let pid = agent.exec(path, args, env)?;
    let mut results = wait_all(agent, &[pid], until)?;
    match results.pop().flatten() {
        Some(Ok(status)) => Ok(Some(status)),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qga::fake::FakeTransport;
    use serde_json::json;

    #[test]
    fn programs_unfinished_at_the_vm_deadline_are_unfinished_not_fatal() {
        // pid 1 has exited, pid 2 never does; `until` is the VM's deadline.
        let mut fake = FakeTransport::new().handle("guest-exec-status", |args| {
            match args.and_then(|a| a["pid"].as_i64()) {
                Some(1) => Ok(json!({"exited": true, "exitcode": 0})),
                _ => Ok(json!({"exited": false})),
            }
        });
        let deadline = Instant::now() + Duration::from_millis(150);
        let mut agent = Agent::new(&mut fake, Duration::from_secs(3), deadline);
        let results = wait_all(&mut agent, &[1, 2], deadline).expect("not an agent failure");
        assert!(matches!(&results[0], Some(Ok(s)) if s.exit_code == Some(0)));
        assert!(results[1].is_none());
    }
}
