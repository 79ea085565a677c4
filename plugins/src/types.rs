//! The plain values that cross the plugin boundary, free of wasmtime types.

use std::time::Duration;

use crate::PluginError;

/// The event a postback is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The platform's event id.
    pub id: String,
    /// `action_inquiry.created` or `action_inquiry.resolved`.
    pub event_type: String,
    /// The partner.
    pub partner_id: String,
    /// RFC 3339.
    pub occurred_at: String,
    /// Data fields by placeholder name, in text form.
    pub data: Vec<(String, String)>,
}

/// An event as the host hands it to a plugin, value by value, when the plugin asks: a plugin
/// that reads two fields costs two values, whatever the event carries. [`Event`] is one; the
/// engine's events are another, formatting a value only when it is read.
pub trait EventSource: Send + 'static {
    /// The platform's event id.
    fn id(&self) -> String;
    /// `action_inquiry.created` or `action_inquiry.resolved`.
    fn event_type(&self) -> String;
    /// The partner.
    fn partner_id(&self) -> String;
    /// When it happened, RFC 3339.
    fn occurred_at(&self) -> String;
    /// The data field `name` in text form, if the event carries it (envelope placeholders are
    /// answered by the host, not here).
    fn field(&self, name: &str) -> Option<String>;
    /// Every data field the event carries, in text form, in order.
    fn fields(&self) -> Vec<(String, String)>;
}

impl EventSource for Event {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn event_type(&self) -> String {
        self.event_type.clone()
    }

    fn partner_id(&self) -> String {
        self.partner_id.clone()
    }

    fn occurred_at(&self) -> String {
        self.occurred_at.clone()
    }

    fn field(&self, name: &str) -> Option<String> {
        self.data
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    }

    fn fields(&self) -> Vec<(String, String)> {
        self.data.clone()
    }
}

/// A postback request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST` or `PUT`.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// A receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers as received.
    pub headers: Vec<(String, String)>,
    /// The body, capped.
    pub body: Vec<u8>,
    /// How long the exchange took.
    pub duration_ms: u32,
}

/// A classifier's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Failed this time; try again, after `after_secs` when given.
    Retry {
        /// Requested delay.
        after_secs: Option<u32>,
        /// Why.
        reason: String,
    },
    /// Failed for good.
    Fail(String),
}

/// Which functions of the contract a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exports {
    /// `postwire:plugin/transform`.
    pub transform: bool,
    /// `postwire:plugin/classify`.
    pub classify: bool,
}

impl Exports {
    /// `["transform", "classify"]`, as shown to users.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.transform {
            names.push("transform");
        }
        if self.classify {
            names.push("classify");
        }
        names
    }
}

/// One line the plugin logged (or wrote to stdout or stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `debug`, `info`, `warn`, `error`, `stdout` or `stderr`; `host` for the host's note that
    /// lines past the cap were dropped.
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// The result of one call with what it cost.
#[derive(Debug, Clone)]
pub struct Run<T> {
    /// The output, or why there is none.
    pub result: Result<T, PluginError>,
    /// Fuel (roughly, instructions) consumed.
    pub fuel_used: u64,
    /// The most linear memory the plugin had at once, all of its memories together, in bytes.
    pub peak_memory: usize,
    /// Wall-clock time of the call, instantiation included.
    pub duration: Duration,
    /// What the plugin logged, capped.
    pub logs: Vec<LogLine>,
}
