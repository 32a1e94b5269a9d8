//! A connector for tests: hands out one prepared (scripted) transport.

use super::AgentConnector;
use crate::qga::fake::FakeTransport;
use crate::qga::{AgentError, AgentTransport};
use std::sync::Mutex;
use std::time::Duration;

/// Hands out its transport once; a second connect fails like a gone agent.
pub struct OneShotConnector(Mutex<Option<FakeTransport>>);

impl OneShotConnector {
    pub fn new(transport: FakeTransport) -> Self {
        OneShotConnector(Mutex::new(Some(transport)))
    }
}

impl AgentConnector for OneShotConnector {
    fn connect(&self, _timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError> {
        match self.0.lock().ok().and_then(|mut t| t.take()) {
            Some(t) => Ok(Box::new(t)),
            None => Err(AgentError::Connect("already used".into())),
        }
    }
}
