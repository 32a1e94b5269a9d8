//! Every decision about a state lives here, and nowhere else: the policy
//! that turns a probe's findings into verdicts, the RTT thresholds, how a
//! VM's verdict sums up its parts, and the two rules that may rewrite a
//! verdict afterwards (boot grace, `--fail-after`).

pub mod code;
pub mod debounce;
pub mod grace;
pub mod policy;
pub mod shared;
pub mod state;
pub mod summary;
pub mod threshold;

pub use code::Code;
pub use state::ServiceState;

use serde::{Deserialize, Serialize};

/// A state with its stable machine code (e.g. `gateway_unreachable`) and a
/// one-line human reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: ServiceState,
    pub code: Code,
    pub reason: String,
}

impl Verdict {
    pub fn new(state: ServiceState, code: Code, reason: impl Into<String>) -> Self {
        Verdict {
            state,
            code,
            reason: reason.into(),
        }
    }
}
