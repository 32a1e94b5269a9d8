//! The QEMU guest agent: protocol types, errors, and the transport seam
//! (libvirt passthrough, a unix socket, or a scripted fake in tests).

pub mod fake;
pub mod interfaces;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod protocol;
pub mod reply;
pub mod socket;

use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

pub use interfaces::{GuestInterface, InterfaceList, Route};
pub use protocol::{ExecStatus, FreezeStatus, GuestInfo, OsInfo};
pub use reply::RawReply;

/// Sends one agent command and waits, at most `timeout`, for its reply.
///
/// Implementations return the `return` member of the reply; agent-side
/// `{"error": ...}` replies come back as [`AgentError`]. Only one command is
/// ever in flight per transport.
///
/// Implement one of the two methods: real transports implement
/// `execute_raw` (replies are walked as text, never built as a tree),
/// scripted ones `execute`.
pub trait AgentTransport: Send {
    fn execute(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        self.execute_raw(command, arguments, timeout)?
            .value()
            .map_err(|_| AgentError::Protocol(format!("reply to {command} is not JSON")))
    }

    /// The `return` member as JSON text.
    fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<RawReply, AgentError> {
        self.execute(command, arguments, timeout)
            .map(|v| RawReply::from_value(&v))
    }
}

/// Why an agent command did not produce a usable reply.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentError {
    /// The VM has no guest agent channel configured.
    NoChannel,
    /// The channel exists but no agent is connected to it.
    NotConnected,
    /// The VM is not running (paused, shutting down, gone).
    NotRunning,
    /// No reply within the time allowed.
    Timeout { command: String },
    /// The connection closed or the agent went away mid-command.
    Disconnected(String),
    /// The agent socket could not be opened.
    Connect(String),
    /// The guest's agent policy forbids the command (`--block-rpcs`, fsfreeze).
    Disabled { command: String },
    /// The agent does not know the command (too old, other OS).
    NotFound { command: String },
    /// `guest-exec` could not start the program: permission denied (an
    /// SELinux-confined agent, a file without exec permission, a noexec
    /// mount); `desc` is the agent's text, naming the program.
    ExecDenied { command: String, desc: String },
    /// The command ran and failed; `desc` is the agent's text.
    Command { command: String, desc: String },
    /// The reply was not what the protocol promises (garbage, too large, wrong types).
    Protocol(String),
    /// The host refused the call (read-only libvirt connection, ACL).
    PermissionDenied(String),
    /// Any other host-side failure (libvirt error with its code).
    Host(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::NoChannel => f.write_str("no guest agent channel configured"),
            AgentError::NotConnected => f.write_str("guest agent not connected"),
            AgentError::NotRunning => f.write_str("VM not running"),
            AgentError::Timeout { command } => {
                write!(f, "guest agent not answering ({command} timed out)")
            }
            AgentError::Disconnected(detail) => write!(f, "guest agent connection lost: {detail}"),
            AgentError::Connect(detail) => write!(f, "cannot open guest agent socket: {detail}"),
            AgentError::Disabled { command } => {
                write!(f, "{command} disabled by the guest agent's policy")
            }
            AgentError::NotFound { command } => write!(f, "guest agent does not support {command}"),
            AgentError::Command { command, desc } => write!(f, "{command} failed: {desc}"),
            AgentError::ExecDenied { command, desc } => {
                write!(f, "{command} may not start the program: {desc}")
            }
            AgentError::Protocol(detail) => write!(f, "guest agent protocol error: {detail}"),
            AgentError::PermissionDenied(detail) => write!(f, "permission denied: {detail}"),
            AgentError::Host(detail) => write!(f, "host error: {detail}"),
        }
    }
}

impl std::error::Error for AgentError {}

/// Turns an agent `{"error": {"class", "desc"}}` into an [`AgentError`].
///
/// QGA has only two classes and says "disabled" only in the text (libvirt 9.0
/// even drops the class), so this is the one place that reads error text:
/// "Command X has been disabled[: reason]", "The command X has not been
/// found", and GLib's spawn failure "Failed to execute child process “P”
/// (Permission denied)".
pub fn classify_agent_error(command: &str, class: Option<&str>, desc: &str) -> AgentError {
    let command = command.to_string();
    if desc.contains("has been disabled") {
        return AgentError::Disabled { command };
    }
    if class == Some("CommandNotFound") || desc.contains("has not been found") {
        return AgentError::NotFound { command };
    }
    let desc = crate::text::one_line(desc, 200);
    if desc.contains(SPAWN_FAILED) && desc.contains("(Permission denied)") {
        return AgentError::ExecDenied { command, desc };
    }
    AgentError::Command { command, desc }
}

/// GLib's text when `guest-exec` cannot start the program.
const SPAWN_FAILED: &str = "Failed to execute child";

impl AgentError {
    /// `guest-exec` failed because the program does not exist (GLib:
    /// "Failed to execute child process “x” (No such file or directory)").
    pub fn is_missing_program(&self) -> bool {
        match self {
            AgentError::Command { desc, .. } => {
                desc.contains("No such file or directory") || desc.contains(SPAWN_FAILED)
            }
            _ => false,
        }
    }
}

/// The typed agent commands vmnetprobe uses, over any transport, each bounded
/// by both the per-command timeout and the VM's deadline.
pub struct Agent<'a> {
    transport: &'a mut dyn AgentTransport,
    command_timeout: Duration,
    deadline: Instant,
    /// Every pid guest-exec returned in this session: a pid handed out
    /// twice would give one program's result to another.
    pids: Vec<i64>,
}

impl<'a> Agent<'a> {
    pub fn new(
        transport: &'a mut dyn AgentTransport,
        command_timeout: Duration,
        deadline: Instant,
    ) -> Self {
        Agent {
            transport,
            command_timeout,
            deadline,
            pids: Vec::new(),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn call(&mut self, command: &str, arguments: Option<&Value>) -> Result<Value, AgentError> {
        let timeout = self.timeout_for(command)?;
        self.transport.execute(command, arguments, timeout)
    }

    /// As [`Agent::call`], the reply kept as text (for replies that may be big).
    fn call_raw(&mut self, command: &str) -> Result<RawReply, AgentError> {
        let timeout = self.timeout_for(command)?;
        self.transport.execute_raw(command, None, timeout)
    }

    fn timeout_for(&self, command: &str) -> Result<Duration, AgentError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AgentError::Timeout {
                command: command.to_string(),
            });
        }
        Ok(remaining.min(self.command_timeout))
    }

    pub fn ping(&mut self) -> Result<(), AgentError> {
        self.call("guest-ping", None).map(|_| ())
    }

    pub fn info(&mut self) -> Result<GuestInfo, AgentError> {
        let reply = self.call("guest-info", None)?;
        GuestInfo::parse(&reply).map_err(AgentError::Protocol)
    }

    pub fn osinfo(&mut self) -> Result<OsInfo, AgentError> {
        let reply = self.call("guest-get-osinfo", None)?;
        OsInfo::parse(&reply).map_err(AgentError::Protocol)
    }

    /// The guest's interfaces that can matter: with one of `host_macs`,
    /// or (when empty, socket mode) a bounded number of NICs, those with
    /// addresses first.
    pub fn interfaces(&mut self, host_macs: &[String]) -> Result<InterfaceList, AgentError> {
        let reply = self.call_raw("guest-network-get-interfaces")?;
        GuestInterface::parse_text(reply.json(), host_macs).map_err(AgentError::Protocol)
    }

    /// The guest's default routes.
    pub fn routes(&mut self) -> Result<Vec<Route>, AgentError> {
        let reply = self.call_raw("guest-network-get-route")?;
        Route::parse_text(reply.json()).map_err(AgentError::Protocol)
    }

    pub fn fsfreeze_status(&mut self) -> Result<FreezeStatus, AgentError> {
        let reply = self.call("guest-fsfreeze-status", None)?;
        FreezeStatus::parse(&reply).map_err(AgentError::Protocol)
    }

    /// Starts `path` with `args` (no shell) and returns its pid. `env`, when
    /// given, replaces the child's whole environment.
    pub fn exec(
        &mut self,
        path: &str,
        args: &[String],
        env: Option<&[&str]>,
    ) -> Result<i64, AgentError> {
        let mut arguments = serde_json::json!({
            "path": path,
            "arg": args,
            // A boolean works on every agent since 2.5; the 8.0+ mode enum
            // is refused by 7.2.
            "capture-output": true,
        });
        if let (Some(env), Some(map)) = (env, arguments.as_object_mut()) {
            map.insert("env".to_string(), serde_json::json!(env));
        }
        let reply = self.call("guest-exec", Some(&arguments))?;
        let pid = protocol::parse_exec_pid(&reply).map_err(AgentError::Protocol)?;
        if self.pids.contains(&pid) {
            return Err(AgentError::Protocol(format!(
                "guest-exec returned pid {pid} twice in one run"
            )));
        }
        self.pids.push(pid);
        Ok(pid)
    }

    pub fn exec_status(&mut self, pid: i64) -> Result<ExecStatus, AgentError> {
        let arguments = serde_json::json!({ "pid": pid });
        let reply = self.call("guest-exec-status", Some(&arguments))?;
        ExecStatus::parse(&reply).map_err(AgentError::Protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_text_is_recognised_on_every_agent_version() {
        for desc in [
            "Command guest-exec has been disabled",
            "Command guest-exec has been disabled: the command is not allowed",
            "Command guest-exec has been disabled: the agent is in frozen state",
        ] {
            assert_eq!(
                classify_agent_error("guest-exec", Some("CommandNotFound"), desc),
                AgentError::Disabled {
                    command: "guest-exec".into()
                }
            );
        }
    }

    #[test]
    fn unknown_commands_are_not_found_with_or_without_class() {
        let e = classify_agent_error(
            "guest-network-get-route",
            None,
            "The command guest-network-get-route has not been found",
        );
        assert!(matches!(e, AgentError::NotFound { .. }));
        let e = classify_agent_error("x", Some("CommandNotFound"), "whatever");
        assert!(matches!(e, AgentError::NotFound { .. }));
    }

    #[test]
    fn a_pid_handed_out_twice_is_a_protocol_error() {
        let mut fake =
            fake::FakeTransport::new().handle("guest-exec", |_| Ok(serde_json::json!({"pid": 42})));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut agent = Agent::new(&mut fake, Duration::from_secs(1), deadline);
        assert_eq!(agent.exec("/bin/ping", &[], None), Ok(42));
        let e = agent.exec("/bin/ping", &[], None).unwrap_err();
        assert_eq!(
            e,
            AgentError::Protocol("guest-exec returned pid 42 twice in one run".into())
        );
    }

    #[test]
    fn a_refused_child_is_exec_denied_a_missing_one_is_not() {
        // qemu-ga 7.2 over a socket, and libvirt 9.0's unwrapped agent text.
        for desc in [
            "Guest agent command failed, error was 'Failed to execute child process “/bin/ping” (Permission denied)'",
            "Failed to execute child process \"/bin/ping\" (Permission denied)",
        ] {
            let e = classify_agent_error("guest-exec", Some("GenericError"), desc);
            assert!(
                matches!(&e, AgentError::ExecDenied { desc, .. } if desc.contains("/bin/ping")),
                "{e:?}"
            );
            assert!(!e.is_missing_program());
        }
        let missing = classify_agent_error(
            "guest-exec",
            Some("GenericError"),
            "Guest agent command failed, error was 'Failed to execute child process “cmd.exe” (No such file or directory)'",
        );
        assert!(missing.is_missing_program(), "{missing:?}");
        // A ping that ran and printed "permission denied" is not this.
        let ran = classify_agent_error("guest-exec-status", None, "ping: permission denied");
        assert!(matches!(ran, AgentError::Command { .. }));
    }

    #[test]
    fn other_errors_keep_one_line_of_text() {
        let e = classify_agent_error("guest-exec", Some("GenericError"), "Failed\nto execute");
        assert_eq!(
            e,
            AgentError::Command {
                command: "guest-exec".into(),
                desc: "Failed to execute".into()
            }
        );
    }
}
