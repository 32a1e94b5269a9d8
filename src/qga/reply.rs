//! One agent reply line, split into id, `return` (kept as JSON text) and
//! `error` without building a tree of the whole reply: a valid reply may be
//! megabytes, and a `serde_json::Value` tree of it is ten times that. The
//! parsers in [`super::protocol`] walk the text and keep only what they need.
//!
//! Large replies also share a process-wide budget ([`BigReplies`]): at most
//! [`BIG_REPLY_SLOTS`] replies over [`BIG_REPLY`] bytes are buffered at once;
//! the others wait (bounded by their deadline) with their bytes still in the
//! kernel's socket buffer, so many guests sending valid multi-megabyte
//! replies cannot add up to hundreds of megabytes. A reader gives its slot
//! back whenever its agent stalls, so a hostile agent cannot hold up others.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// A reply this large (bytes) needs a slot of the big-reply budget.
pub const BIG_REPLY: usize = 256 * 1024;
/// Big replies buffered at the same time, process-wide.
pub const BIG_REPLY_SLOTS: usize = 2;

/// The `return` member of a reply, as JSON text.
#[derive(Debug)]
pub struct RawReply {
    text: String,
    start: usize,
    end: usize,
    /// Held while the text is alive (a big reply's budget slot).
    _slot: Option<BigReplySlot>,
}

impl RawReply {
    /// A reply that is already a tree (scripted transports).
    pub fn from_value(value: &Value) -> RawReply {
        let text = value.to_string();
        let end = text.len();
        RawReply {
            text,
            start: 0,
            end,
            _slot: None,
        }
    }

    pub fn json(&self) -> &str {
        self.text.get(self.start..self.end).unwrap_or("null")
    }

    /// The tree, for the small replies that are read as one.
    pub fn value(&self) -> Result<Value, String> {
        serde_json::from_str(self.json()).map_err(|e| e.to_string())
    }

    /// Keeps `slot` until this reply is dropped.
    pub fn with_slot(mut self, slot: Option<BigReplySlot>) -> RawReply {
        self._slot = slot;
        self
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "return", borrow, default)]
    ret: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct ErrorFields<'a> {
    #[serde(borrow, default)]
    class: Option<&'a RawValue>,
    #[serde(borrow, default)]
    desc: Option<&'a RawValue>,
}

/// What one reply line says.
#[derive(Debug)]
pub enum Reply {
    Return(RawReply),
    Error {
        class: Option<String>,
        desc: String,
    },
    /// An asynchronous `{"event": ...}` line: not a reply to anything.
    Event,
    Neither,
}

/// A JSON string member, unescaped; `None` when absent or not a string.
pub(super) fn string(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

/// Whether `text` is a JSON object: serde would also take an array as a
/// struct, by position.
pub(super) fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Splits a reply line; `None` when it is not a JSON object. The id is
/// returned as a number when it is one (`Some(None)`: an id of another type).
pub fn split(text: String) -> Option<(Option<Option<u64>>, Reply)> {
    if !is_object(&text) {
        return None;
    }
    let (id, ret, error, event) = {
        let envelope: Envelope<'_> = serde_json::from_str(&text).ok()?;
        let id = envelope
            .id
            .map(|raw| serde_json::from_str::<u64>(raw.get()).ok());
        let ret = envelope.ret.map(|raw| {
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            (start, start + raw.get().len())
        });
        let error = envelope.error.map(|raw| {
            let fields: ErrorFields<'_> = serde_json::from_str(raw.get()).unwrap_or_default();
            (
                string(fields.class),
                string(fields.desc).unwrap_or_default(),
            )
        });
        (id, ret, error, envelope.event.is_some())
    };
    let reply = match (ret, error) {
        (Some((start, end)), _) => Reply::Return(RawReply {
            text,
            start,
            end,
            _slot: None,
        }),
        (None, Some((class, desc))) => Reply::Error { class, desc },
        (None, None) if event => Reply::Event,
        (None, None) => Reply::Neither,
    };
    Some((id, reply))
}

/// The process-wide budget for big replies.
pub struct BigReplies {
    used: Mutex<usize>,
    freed: Condvar,
}

/// One slot of [`BigReplies`]; given back on drop.
#[derive(Debug)]
pub struct BigReplySlot(());

pub static BIG_REPLIES: BigReplies = BigReplies {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

impl BigReplies {
    /// Waits for a slot until `deadline`; `None` when none came free.
    pub fn acquire(&self, deadline: Instant) -> Option<BigReplySlot> {
        let mut used = self.used.lock().ok()?;
        loop {
            if *used < BIG_REPLY_SLOTS {
                *used += 1;
                return Some(BigReplySlot(()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            used = self.freed.wait_timeout(used, left).ok()?.0;
        }
    }
}

impl Drop for BigReplySlot {
    fn drop(&mut self) {
        if let Ok(mut used) = BIG_REPLIES.used.lock() {
            *used = used.saturating_sub(1);
        }
        BIG_REPLIES.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reply_is_split_without_parsing_its_return() {
        let (id, reply) = split(r#"{"return": [1, {"a": 2}], "id": 7}"#.into()).expect("object");
        assert_eq!(id, Some(Some(7)));
        let Reply::Return(raw) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(raw.json(), r#"[1, {"a": 2}]"#);
        let (_, reply) =
            split(r#"{"error": {"class": 5, "desc": "Command x has been disabled"}}"#.into())
                .expect("object");
        assert!(
            matches!(reply, Reply::Error { class: None, ref desc } if desc.contains("disabled"))
        );
        let (id, reply) = split(r#"{"event": "SHUTDOWN", "data": {}}"#.into()).expect("object");
        assert_eq!(id, None);
        assert!(matches!(reply, Reply::Event));
        assert!(matches!(
            split("{}".into()).expect("object").1,
            Reply::Neither
        ));
        assert_eq!(
            split(r#"{"id": "x", "return": 1}"#.into())
                .expect("object")
                .0,
            Some(None)
        );
        assert!(split("[1]".into()).is_none());
        assert!(split("not json".into()).is_none());
    }

    #[test]
    fn big_replies_wait_for_a_slot_until_their_deadline() {
        let held: Vec<BigReplySlot> = (0..BIG_REPLY_SLOTS)
            .map(|_| BIG_REPLIES.acquire(Instant::now()).expect("free slot"))
            .collect();
        let started = Instant::now();
        assert!(BIG_REPLIES
            .acquire(Instant::now() + Duration::from_millis(50))
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(BIG_REPLIES.acquire(Instant::now()).is_some());
    }
}
