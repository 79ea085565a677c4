//! Notification settings: where and how a partner receives postbacks, validated on save.
//!
//! Validation reads the JSON field by field so every error names its field, the value and the
//! fix; then it compiles every template and renders each against a sample event of every type,
//! so a URL that stops being a URL or a JSON body that stops being JSON is refused on save, not
//! discovered on the first postback.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::event::EventType;
use crate::render::BodyFormat;
use crate::request::Method;

/// Limits on what settings may hold.
pub mod limits {
    /// Longest URL template, in bytes.
    pub const URL_LEN: usize = 2048;
    /// Longest body template, in bytes.
    pub const BODY_LEN: usize = 64 * 1024;
    /// Most extra headers.
    pub const HEADERS: usize = 32;
    /// Longest header value template, in bytes.
    pub const HEADER_VALUE_LEN: usize = 4096;
    /// Longest minimum delay: 30 days.
    pub const MIN_DELAY_SECS: u64 = 30 * 24 * 3600;
    /// Highest rate limit, requests per second.
    pub const REQUESTS_PER_SEC: u32 = 10_000;
    /// Longest success or error response text, in bytes.
    pub const RESPONSE_TEXT_LEN: usize = 1024;
    /// Longest `plugin_config`, as JSON text.
    pub const PLUGIN_CONFIG_LEN: usize = 64 * 1024;
}

/// A partner's settings for one event family, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationSettings {
    /// The endpoint; placeholders allowed after the host.
    pub url: String,
    /// The HTTP method (default: POST, when saving).
    #[schema(required = false)]
    pub method: Method,
    /// How the body is written and escaped (default: json, when saving).
    #[schema(required = false)]
    pub body_format: BodyFormat,
    /// The body with placeholders; absent for GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    /// Extra headers; values may hold placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Postbacks are not sent before `occurred_at` plus this many seconds.
    #[serde(default)]
    pub min_delay_secs: u64,
    /// Most requests per second to this endpoint; no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_sec: Option<u32>,
    /// When set, a 2xx response whose body lacks this text is not a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_response: Option<String>,
    /// When set, a response whose body holds this text failed, even with a 2xx status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_response: Option<String>,
    /// The event types that produce postbacks; every type by default.
    #[serde(default = "all_event_types")]
    pub events: Vec<EventType>,
    /// A plugin (id) that transforms the rendered request before it is signed and sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_plugin: Option<String>,
    /// A plugin (id) that classifies the receiver's answer instead of the default rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classify_plugin: Option<String>,
    /// Configuration handed to the plugins (any JSON; may hold secrets, shown redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<Json>,
}

fn all_event_types() -> Vec<EventType> {
    EventType::ALL.to_vec()
}

impl NotificationSettings {
    /// Reads settings from JSON text and validates them (see [`NotificationSettings::validate`]).
    pub fn from_json(text: &str) -> Result<CompiledSettings, crate::Error> {
        let json: Json = serde_json::from_str(text).map_err(|source| crate::Error::Json {
            what: "the settings document".into(),
            source,
        })?;
        Ok(NotificationSettings::validate(&json)?)
    }
}

mod compiled;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use validate::FIELDS;

pub use compiled::{CompiledSettings, xml_problem};
