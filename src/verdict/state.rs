//! Service states as monitoring systems know them, ordered by severity.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Nagios-style service state.
///
/// Ordered by how bad it is for "worst state wins" aggregation:
/// `Ok < Unknown < Warning < Critical`. A known failure outranks not knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceState {
    Ok,
    Unknown,
    Warning,
    Critical,
}

impl ServiceState {
    /// The plugin exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); also the
    /// numeric value used by the Zabbix and Telegraf outputs.
    pub fn code(self) -> u8 {
        match self {
            ServiceState::Ok => 0,
            ServiceState::Warning => 1,
            ServiceState::Critical => 2,
            ServiceState::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Ok => "OK",
            ServiceState::Warning => "WARNING",
            ServiceState::Critical => "CRITICAL",
            ServiceState::Unknown => "UNKNOWN",
        }
    }

    /// The worst of a set of states; `Ok` for none.
    pub fn worst<I: IntoIterator<Item = ServiceState>>(states: I) -> ServiceState {
        states.into_iter().max().unwrap_or(ServiceState::Ok)
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ok" => Ok(ServiceState::Ok),
            "warning" => Ok(ServiceState::Warning),
            "critical" => Ok(ServiceState::Critical),
            "unknown" => Ok(ServiceState::Unknown),
            _ => Err(format!(
                "invalid state '{s}' (expected ok, warning, critical or unknown)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_puts_known_failures_above_unknown() {
        use ServiceState::*;
        assert!(Ok < Unknown && Unknown < Warning && Warning < Critical);
        assert_eq!(ServiceState::worst([Ok, Unknown, Warning]), Warning);
        assert_eq!(ServiceState::worst([Unknown, Critical, Ok]), Critical);
        assert_eq!(ServiceState::worst([]), Ok);
    }

    #[test]
    fn exit_codes_follow_the_plugin_api() {
        assert_eq!(ServiceState::Ok.code(), 0);
        assert_eq!(ServiceState::Warning.code(), 1);
        assert_eq!(ServiceState::Critical.code(), 2);
        assert_eq!(ServiceState::Unknown.code(), 3);
    }

    #[test]
    fn parses_case_insensitively() {
        assert_eq!(
            "Critical".parse::<ServiceState>(),
            Ok(ServiceState::Critical)
        );
        assert!("fatal".parse::<ServiceState>().is_err());
    }
}
