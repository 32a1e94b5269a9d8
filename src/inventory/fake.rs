//! A connector for tests: hands out one prepared (scripted) transport.

use super::{AgentConnector, Lifecycle};
use crate::qga::fake::FakeTransport;
use crate::qga::{AgentError, AgentTransport};
use std::sync::Mutex;
use std::time::Duration;

/// Hands out its transport once; a second connect fails like a gone agent.
/// Says what a host would when asked after a failure (a scripted migration).
pub struct OneShotConnector {
    transport: Mutex<Option<FakeTransport>>,
    lifecycle: Option<Lifecycle>,
}

impl OneShotConnector {
    pub fn new(transport: FakeTransport) -> Self {
        OneShotConnector {
            transport: Mutex::new(Some(transport)),
            lifecycle: None,
        }
    }

    /// What [`AgentConnector::lifecycle`] answers.
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }
}

impl AgentConnector for OneShotConnector {
    fn connect(&self, _timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError> {
        match self.transport.lock().ok().and_then(|mut t| t.take()) {
            Some(t) => Ok(Box::new(t)),
            None => Err(AgentError::Connect("already used".into())),
        }
    }

    fn lifecycle(&self) -> Option<Lifecycle> {
        self.lifecycle
    }
}
