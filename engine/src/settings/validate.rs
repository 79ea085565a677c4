//! Validation: settings JSON read field by field, every problem named with its field, the value
//! and the fix.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use super::{CompiledSettings, NotificationSettings, all_event_types, limits};
use crate::error::{FieldError, Invalid, Problems};
use crate::event::EventType;
use crate::render::BodyFormat;
use crate::request::Method;

/// The settings' fields, as the API and the console name them.
pub(crate) const FIELDS: &[&str] = &[
    "url",
    "method",
    "body_format",
    "body_template",
    "headers",
    "min_delay_secs",
    "max_requests_per_sec",
    "success_response",
    "error_response",
    "events",
    "transform_plugin",
    "classify_plugin",
    "plugin_config",
];

impl NotificationSettings {
    /// Validates settings JSON and compiles its templates, reporting every problem at once.
    pub fn validate(json: &Json) -> Result<CompiledSettings, Invalid> {
        let Some(object) = json.as_object() else {
            return Err(FieldError::new("settings", Some(&json.to_string()), "must be a JSON object").into());
        };
        let mut problems = Problems::default();
        for key in object.keys() {
            if !FIELDS.contains(&key.as_str()) {
                let hint = FIELDS
                    .iter()
                    .min_by_key(|f| strsim::levenshtein(f, key))
                    .filter(|f| strsim::levenshtein(f, key) <= 3)
                    .map(|f| format!("did you mean {f}?"))
                    .unwrap_or_else(|| format!("the fields are {}", FIELDS.join(", ")));
                problems.push(FieldError::new(
                    key.as_str(),
                    None,
                    format!("is not a settings field; {hint}"),
                ));
            }
        }
        let url = match object.get("url") {
            Some(Json::String(url)) => url.clone(),
            None | Some(Json::Null) => {
                problems.push(FieldError::missing(
                    "url",
                    "give the endpoint, such as \"https://partner.example/postbacks\"",
                ));
                String::new()
            }
            Some(other) => {
                problems.push(FieldError::mistyped("url", other, "a string"));
                String::new()
            }
        };
        let method = match optional_str(object, "method", &mut problems)
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => Method::Post,
            Some("GET") => Method::Get,
            Some("PUT") => Method::Put,
            Some(_) => {
                let value = object["method"].as_str();
                problems.push(FieldError::new(
                    "method",
                    value,
                    "is not supported; use GET, POST or PUT",
                ));
                Method::Post
            }
        };
        let body_format = match optional_str(object, "body_format", &mut problems) {
            None | Some("json") => BodyFormat::Json,
            Some("xml") => BodyFormat::Xml,
            Some("form") => BodyFormat::Form,
            Some("text") => BodyFormat::Text,
            Some(other) => {
                problems.push(FieldError::new(
                    "body_format",
                    Some(other),
                    "is not a body format; use json, xml, form or text",
                ));
                BodyFormat::Json
            }
        };
        let body_template = optional_str(object, "body_template", &mut problems).map(str::to_owned);
        let headers = read_headers(object.get("headers"), &mut problems);
        let min_delay_secs =
            optional_uint(object, "min_delay_secs", limits::MIN_DELAY_SECS, &mut problems).unwrap_or(0);
        let max_requests_per_sec = optional_uint(
            object,
            "max_requests_per_sec",
            limits::REQUESTS_PER_SEC.into(),
            &mut problems,
        )
        .map(|n| n as u32);
        if max_requests_per_sec == Some(0) {
            problems.push(FieldError::new(
                "max_requests_per_sec",
                Some("0"),
                "would never send anything; use at least 1, or leave it out for no limit",
            ));
        }
        let success_response = response_text(object, "success_response", &mut problems);
        let error_response = response_text(object, "error_response", &mut problems);
        let events = read_events(object.get("events"), &mut problems);
        let transform_plugin = plugin_id(object, "transform_plugin", &mut problems);
        let classify_plugin = plugin_id(object, "classify_plugin", &mut problems);
        let plugin_config = match object.get("plugin_config") {
            None | Some(Json::Null) => None,
            Some(config) if config.to_string().len() > limits::PLUGIN_CONFIG_LEN => {
                problems.push(FieldError::new(
                    "plugin_config",
                    None,
                    format!("is longer than {} bytes as JSON", limits::PLUGIN_CONFIG_LEN),
                ));
                None
            }
            Some(config) => Some(config.clone()),
        };
        let settings = NotificationSettings {
            url,
            method,
            body_format,
            body_template,
            headers,
            min_delay_secs,
            max_requests_per_sec,
            success_response,
            error_response,
            events,
            transform_plugin,
            classify_plugin,
            plugin_config,
        };
        if !problems.is_empty() {
            return Err(problems.finish(()).unwrap_err());
        }
        settings.compile()
    }
}

fn optional_str<'a>(object: &'a Map<String, Json>, field: &str, problems: &mut Problems) -> Option<&'a str> {
    match object.get(field) {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => Some(text),
        Some(other) => {
            problems.push(FieldError::mistyped(field, other, "a string"));
            None
        }
    }
}

fn optional_uint(object: &Map<String, Json>, field: &str, max: u64, problems: &mut Problems) -> Option<u64> {
    match object.get(field) {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n <= max) => n.as_u64(),
        Some(other) => {
            problems.push(FieldError::new(
                field,
                Some(&other.to_string()),
                format!("must be a whole number from 0 to {max}"),
            ));
            None
        }
    }
}

fn response_text(object: &Map<String, Json>, field: &str, problems: &mut Problems) -> Option<String> {
    let text = optional_str(object, field, problems)?;
    if text.is_empty() {
        return None;
    }
    if text.len() > limits::RESPONSE_TEXT_LEN {
        problems.push(FieldError::new(
            field,
            Some(text),
            format!("is longer than {} bytes", limits::RESPONSE_TEXT_LEN),
        ));
        return None;
    }
    Some(text.to_owned())
}

/// A plugin id (`plg_…`); whether it names a plugin of this partner with the right export is
/// checked by the API against the store.
fn plugin_id(object: &Map<String, Json>, field: &str, problems: &mut Problems) -> Option<String> {
    let id = optional_str(object, field, problems)?;
    if id.is_empty() {
        return None;
    }
    let ok = id.starts_with("plg_") && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        problems.push(FieldError::new(
            field,
            Some(id),
            "is not a plugin id; upload the plugin (POST /v1/partners/{partner_id}/plugins) and use the id it returns (plg_01…), or name@version",
        ));
        return None;
    }
    Some(id.to_owned())
}

fn read_headers(json: Option<&Json>, problems: &mut Problems) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    let object = match json {
        None | Some(Json::Null) => return headers,
        Some(Json::Object(object)) => object,
        Some(other) => {
            problems.push(FieldError::mistyped(
                "headers",
                other,
                "an object of names to values, such as {\"X-Api-Key\": \"abc\"}",
            ));
            return headers;
        }
    };
    if object.len() > limits::HEADERS {
        problems.push(FieldError::new(
            "headers",
            None,
            format!("has {} headers; the limit is {}", object.len(), limits::HEADERS),
        ));
        return headers;
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in object {
        let field = format!("headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(FieldError::new(
                field,
                Some(name),
                "is not a valid header name; use letters, digits and - (no spaces, colons or line breaks)",
            ));
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if crate::request::is_reserved(name) {
            problems.push(FieldError::new(
                field,
                Some(name),
                "is set by Postwire itself; remove it",
            ));
            continue;
        }
        if !seen.insert(lower) {
            problems.push(FieldError::new(
                field,
                Some(name),
                "is given twice (header names ignore case); keep one",
            ));
            continue;
        }
        match value {
            Json::String(text) if text.contains(['\r', '\n']) => problems.push(FieldError::new(
                field,
                Some(text),
                "holds a line break, which would end the header; remove it",
            )),
            // An HTTP header value cannot carry other control characters either (tab aside):
            // every request would fail to be sent, however its placeholders render.
            Json::String(text) if text.contains(|c: char| c.is_control() && c != '\t') => {
                problems.push(FieldError::new(
                    field,
                    Some(text),
                    "holds a control character, which no HTTP header may carry; remove it",
                ))
            }
            Json::String(text) => {
                headers.insert(name.clone(), text.clone());
            }
            other => problems.push(FieldError::mistyped(&field, other, "a string")),
        }
    }
    headers
}

fn read_events(json: Option<&Json>, problems: &mut Problems) -> Vec<EventType> {
    const FIX: &str = "list event types, such as [\"action_inquiry.created\", \"action_inquiry.resolved\"]";
    let items = match json {
        None | Some(Json::Null) => return all_event_types(),
        Some(Json::Array(items)) if !items.is_empty() => items,
        Some(other) => {
            problems.push(FieldError::new(
                "events",
                Some(&other.to_string()),
                format!("must be a non-empty list; {FIX}"),
            ));
            return all_event_types();
        }
    };
    let mut events = Vec::new();
    for item in items {
        match item.as_str().and_then(EventType::parse) {
            Some(ty) if !events.contains(&ty) => events.push(ty),
            Some(_) => {}
            None => problems.push(FieldError::new(
                "events",
                Some(&item.to_string()),
                format!("is not an event type; {FIX}"),
            )),
        }
    }
    events
}
