//! Running fixed programs in a guest: `guest-exec`, then `guest-exec-status`
//! polled with a short, bounded backoff until the program has exited (which
//! also frees its record in the agent).

use crate::qga::{Agent, AgentError, ExecStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);

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

/// True when guest-exec failed because the program does not exist. The text is
/// GLib's ("Failed to execute child process “x” (No such file or directory)").
pub fn is_missing_program(error: &AgentError) -> bool {
    match error {
        AgentError::Command { desc, .. } => {
            desc.contains("No such file or directory") || desc.contains("Failed to execute child")
        }
        _ => false,
    }
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
        for (slot, pid) in results.iter_mut().zip(pids) {
            if slot.is_some() {
                continue;
            }
            match agent.exec_status(*pid) {
                Ok(status) if status.exited => *slot = Some(Ok(status)),
                Ok(_) => {}
                Err(e) if is_session_fatal(&e) => return Err(e),
                Err(e) => *slot = Some(Err(e)),
            }
        }
        if results.iter().all(Option::is_some) {
            return Ok(results);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(results);
        }
        sleep(delay.min(until - now));
        delay = (delay * 2).min(MAX_POLL);
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
