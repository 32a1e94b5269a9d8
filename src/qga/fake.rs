//! A scripted agent for tests: each command name maps to a handler that
//! returns a reply or an error. Every call is recorded.

use super::{AgentError, AgentTransport};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Handler = Box<dyn FnMut(Option<&Value>) -> Result<Value, AgentError> + Send>;

/// Record of the calls a [`FakeTransport`] received: command and arguments.
pub type CallLog = Arc<Mutex<Vec<(String, Option<Value>)>>>;

#[derive(Default)]
pub struct FakeTransport {
    handlers: HashMap<String, Handler>,
    calls: CallLog,
}

impl FakeTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// `command` always returns `value`.
    pub fn reply(self, command: &str, value: Value) -> Self {
        self.handle(command, move |_| Ok(value.clone()))
    }

    /// `command` always fails with `error`.
    pub fn fail(self, command: &str, error: AgentError) -> Self {
        self.handle(command, move |_| Err(error.clone()))
    }

    pub fn handle(
        mut self,
        command: &str,
        handler: impl FnMut(Option<&Value>) -> Result<Value, AgentError> + Send + 'static,
    ) -> Self {
        self.handlers.insert(command.to_string(), Box::new(handler));
        self
    }

    pub fn calls(&self) -> CallLog {
        Arc::clone(&self.calls)
    }
}

impl AgentTransport for FakeTransport {
    fn execute(
        &mut self,
        command: &str,
        arguments: Option<&Value>,
        _timeout: Duration,
    ) -> Result<Value, AgentError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((command.to_string(), arguments.cloned()));
        }
        match self.handlers.get_mut(command) {
            Some(handler) => handler(arguments),
            None => Err(AgentError::NotFound {
                command: command.to_string(),
            }),
        }
    }
}
