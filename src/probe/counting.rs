//! The transport every probe talks through: counts the commands sent (the
//! measure of how gentle a run is) and sends each under a lease of the
//! run's command gate (`-j`); after SIGTERM/SIGINT only pings are collected.

use super::*;

/// Counts the commands sent to the agent (the measure of how gentle a run
/// is), each under a lease of the run's command gate (`-j`).
pub(super) struct CountingTransport<'t> {
    pub(super) inner: &'t mut dyn AgentTransport,
    pub(super) gate: &'t CommandGate,
    pub(super) deadline: Instant,
    pub(super) sent: u32,
    pub(super) execs: u32,
    /// A command was refused because a stop was requested (`stop`).
    pub(super) interrupted: bool,
    /// When the last command was sent (after its wait at the gate).
    pub(super) last_sent: Option<Instant>,
}

impl AgentTransport for CountingTransport<'_> {
    fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<RawReply, AgentError> {
        // After SIGTERM/SIGINT only the started pings are collected.
        if command != "guest-exec-status" && stop::requested() {
            self.interrupted = true;
            return Err(AgentError::Timeout {
                command: command.into(),
            });
        }
        self.sent = self.sent.saturating_add(1);
        if command == "guest-exec" {
            self.execs = self.execs.saturating_add(1);
        }
        let _lease = self.gate.enter(self.deadline);
        self.last_sent = Some(Instant::now());
        // Time spent at the gate comes out of this command's share.
        let timeout = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        self.inner.execute_raw(command, arguments, timeout)
    }
}
