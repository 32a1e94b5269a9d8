//! The stable machine codes of every verdict (`gateway_unreachable`, ...):
//! one enum, so a misspelled code does not compile and every renderer
//! prints the same text for it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// A verdict's stable code. The text (`as_str`) is the wire format in
        /// every output and in the state directory.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[$doc])* $variant,)+
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)+
                }
            }

            /// The code for its text; `None` for a code this build does
            /// not know (written by another version).
            pub fn from_text(text: &str) -> Option<Code> {
                match text {
                    $($text => Some(Code::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

codes! {
    Ok => "ok",
    VmNotRunning => "vm_not_running",
    NoAgentChannel => "no_agent_channel",
    AgentNotConnected => "agent_not_connected",
    AgentTimeout => "agent_timeout",
    AgentDisconnected => "agent_disconnected",
    AgentUnreachable => "agent_unreachable",
    AgentProtocolError => "agent_protocol_error",
    AgentCommandDisabled => "agent_command_disabled",
    AgentUnsupported => "agent_unsupported",
    AgentError => "agent_error",
    PermissionDenied => "permission_denied",
    HostError => "host_error",
    ExecDisabled => "exec_disabled",
    TimedOut => "timed_out",
    Booting => "booting",
    GatewayUnreachable => "gateway_unreachable",
    ExternalUnreachable => "external_unreachable",
    RttHigh => "rtt_high",
    PingMissing => "ping_missing",
    PingDenied => "ping_denied",
    PingError => "ping_error",
    PingTimeout => "ping_timeout",
    NoGateway => "no_gateway",
    LinkDown => "link_down",
    NicMissing => "nic_missing",
    NoAddress => "no_address",
    GatewayInvalid => "gateway_invalid",
    NotChecked => "not_checked",
    Paused => "paused",
    PausedError => "paused_error",
    Migrating => "migrating",
    Frozen => "frozen",
    ExecDenied => "exec_denied",
    Maintenance => "maintenance",
    MetadataInvalid => "metadata_invalid",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// A stored result with a code this build does not know is refused as a
// whole: the state directory is a cache, and the caller probes afresh.
impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Code::from_text(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown code {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_is_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<Code>("\"no_such_code\"").is_err());
    }
}
