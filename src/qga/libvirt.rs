//! The guest agent through libvirt (`virDomainQemuAgentCommand`): libvirt owns
//! the virtio-serial channel and does the sync itself; its errors are mapped
//! by code (libvirt 9.0 reports agent errors as code 1 with a fixed prefix,
//! 11.2+ as codes 112/113).

use super::{classify_agent_error, AgentError, AgentTransport};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use virt::domain::Domain;
use virt::error::{Error, ErrorNumber};

pub struct LibvirtTransport {
    domain: Arc<Domain>,
}

impl LibvirtTransport {
    pub fn new(domain: Arc<Domain>) -> Self {
        LibvirtTransport { domain }
    }

    /// False only when libvirt says the domain is gone or stopped.
    fn domain_is_active(&self) -> bool {
        match self.domain.is_active() {
            Ok(active) => active,
            Err(e) => !matches!(e.code(), virt::enumutil::Enum::Known(ErrorNumber::NoDomain)),
        }
    }
}

const AGENT_ERROR_PREFIX: &str = "unable to execute QEMU agent command '";

/// The agent's own text from "…unable to execute QEMU agent command 'x': desc".
fn agent_desc(message: &str) -> Option<&str> {
    let start = message.find(AGENT_ERROR_PREFIX)? + AGENT_ERROR_PREFIX.len();
    let rest = &message[start..];
    rest.find("': ").map(|i| &rest[i + 3..])
}

/// Maps a libvirt error from an agent command to an [`AgentError`], by code.
pub fn map_libvirt_error(
    command: &str,
    code: Option<ErrorNumber>,
    raw: u32,
    message: &str,
) -> AgentError {
    use ErrorNumber as E;
    let command_owned = command.to_string();
    match code {
        Some(E::InternalError | E::AgentCommandFailed) => match agent_desc(message) {
            Some(desc) => classify_agent_error(command, None, desc),
            None => AgentError::Host(format!("{message} (code {raw})")),
        },
        Some(E::AgentUnresponsive | E::AgentCommandTimeout | E::OperationTimeout) => {
            AgentError::Timeout {
                command: command_owned,
            }
        }
        Some(E::ArgumentUnsupported) => AgentError::NoChannel,
        Some(E::OperationInvalid | E::NoDomain) => AgentError::NotRunning,
        Some(E::OperationDenied | E::AccessDenied | E::AuthFailed) => {
            AgentError::PermissionDenied(message.to_string())
        }
        _ => AgentError::Host(format!("{message} (code {raw})")),
    }
}

fn map_error(command: &str, error: &Error) -> AgentError {
    let code = error.code();
    let known = match code {
        virt::enumutil::Enum::Known(k) => Some(k),
        virt::enumutil::Enum::Unknown(_) => None,
    };
    map_libvirt_error(command, known, code.to_raw(), error.message())
}

impl AgentTransport for LibvirtTransport {
    fn execute_raw(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        timeout: Duration,
    ) -> Result<super::RawReply, AgentError> {
        let mut request = serde_json::json!({ "execute": command });
        if let (Some(args), Some(map)) = (arguments, request.as_object_mut()) {
            map.insert("arguments".into(), args.clone());
        }
        // libvirt takes whole seconds; 0 would mean "don't wait" and
        // negative values block. Round up, at least 1.
        let seconds = timeout.as_secs_f64().ceil().clamp(1.0, 3600.0) as i32;
        let reply = self
            .domain
            .qemu_agent_command(&request.to_string(), seconds, 0)
            .map_err(|e| match map_error(command, &e) {
                // libvirt says "not responding" also when the VM went away
                // mid-command; ask libvirt (not the message) which it was.
                AgentError::Timeout { .. } if !self.domain_is_active() => AgentError::NotRunning,
                other => other,
            })?;
        if reply.len() > super::socket::MAX_REPLY_BYTES {
            return Err(AgentError::Protocol(format!(
                "reply to {command} is too large"
            )));
        }
        // libvirt turns agent errors into its own; what is left is a return.
        match super::reply::split(reply) {
            Some((_, super::reply::Reply::Return(raw))) => Ok(raw),
            Some(_) => Err(AgentError::Protocol(format!(
                "reply to {command} has no return"
            ))),
            None => Err(AgentError::Protocol(format!(
                "reply to {command} is not JSON"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_9_agent_errors_arrive_as_internal_errors_with_a_prefix() {
        let msg = "internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled";
        assert_eq!(
            map_libvirt_error("guest-exec", Some(ErrorNumber::InternalError), 1, msg),
            AgentError::Disabled {
                command: "guest-exec".into()
            }
        );
        let msg = "internal error: unable to execute QEMU agent command 'guest-exec': Guest agent command failed, error was 'Failed to execute child process “cmd.exe” (No such file or directory)'";
        let e = map_libvirt_error("guest-exec", Some(ErrorNumber::InternalError), 1, msg);
        assert!(matches!(&e, AgentError::Command { desc, .. } if desc.contains("No such file")));
        let e = map_libvirt_error(
            "guest-info",
            Some(ErrorNumber::InternalError),
            1,
            "internal error: something else",
        );
        assert!(matches!(e, AgentError::Host(_)));
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (ErrorNumber::AgentUnresponsive, "timeout"),
            (ErrorNumber::AgentCommandTimeout, "timeout"),
            (ErrorNumber::ArgumentUnsupported, "nochannel"),
            (ErrorNumber::OperationInvalid, "notrunning"),
            (ErrorNumber::OperationDenied, "denied"),
            (ErrorNumber::NoSupport, "host"),
        ];
        for (code, want) in cases {
            let got = match map_libvirt_error("guest-info", Some(code), 0, "m") {
                AgentError::Timeout { .. } => "timeout",
                AgentError::NoChannel => "nochannel",
                AgentError::NotRunning => "notrunning",
                AgentError::PermissionDenied(_) => "denied",
                AgentError::Host(_) => "host",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{code:?}");
        }
        let msg = "guest agent command failed: unable to execute QEMU agent command 'guest-network-get-route': The command guest-network-get-route has not been found";
        assert!(matches!(
            map_libvirt_error(
                "guest-network-get-route",
                Some(ErrorNumber::AgentCommandFailed),
                113,
                msg
            ),
            AgentError::NotFound { .. }
        ));
    }
}
