//! Notification settings: where and how a partner receives postbacks, validated on save.
//!
//! Validation reads the JSON field by field so every error names its field, the value and the
//! fix; then it compiles every template and renders each against a sample event of every type,
//! so a URL that stops being a URL or a JSON body that stops being JSON is refused on save, not
//! discovered on the first postback.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::{FieldError, Invalid, Problems};
use crate::event::{Event, EventType};
use crate::render::{BodyFormat, Place, Template};
use crate::request::{Method, Request};

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

/// Headers Postwire writes itself; a partner may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// A partner's settings for one event family, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSettings {
    /// The endpoint; placeholders allowed after the host.
    pub url: String,
    /// The HTTP method.
    pub method: Method,
    /// How the body is written and escaped.
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

const FIELDS: &[&str] = &[
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
    /// Reads settings from JSON text and validates them (see [`NotificationSettings::validate`]).
    pub fn from_json(text: &str) -> Result<CompiledSettings, crate::Error> {
        let json: Json = serde_json::from_str(text).map_err(|source| crate::Error::Json {
            what: "the settings document".into(),
            source,
        })?;
        Ok(NotificationSettings::validate(&json)?)
    }

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
                problems.push(mistyped("url", other, "a string"));
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

    /// Checks the rules that span fields, compiles the templates and test-renders them.
    pub fn compile(self) -> Result<CompiledSettings, Invalid> {
        let mut problems = Problems::default();
        if self.url.len() > limits::URL_LEN {
            problems.push(FieldError::new(
                "url",
                Some(&self.url),
                format!("is longer than {} bytes", limits::URL_LEN),
            ));
        } else if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            problems.push(FieldError::new(
                "url",
                Some(&self.url),
                "must start with https:// or http://, such as \"https://partner.example/postbacks\"",
            ));
        }
        let url = template("url", &self.url, Place::Url, &mut problems);
        let body = match (&self.body_template, self.method) {
            (Some(body), Method::Get) if !body.is_empty() => {
                problems.push(FieldError::new(
                    "body_template",
                    Some(body),
                    "must be empty for GET, which sends no body; put the placeholders in url's query string, or use POST",
                ));
                None
            }
            (Some(body), _) if body.len() > limits::BODY_LEN => {
                problems.push(FieldError::new(
                    "body_template",
                    Some(body),
                    format!("is {} bytes; the limit is {}", body.len(), limits::BODY_LEN),
                ));
                None
            }
            (Some(body), Method::Post | Method::Put) => {
                template("body_template", body, Place::Body(self.body_format), &mut problems)
            }
            _ => None,
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if value.len() > limits::HEADER_VALUE_LEN {
                problems.push(FieldError::new(
                    field,
                    Some(value),
                    format!("is longer than {} bytes", limits::HEADER_VALUE_LEN),
                ));
                continue;
            }
            if let Some(compiled) = template(&field, value, Place::Header, &mut problems) {
                headers.push((name.clone(), compiled));
            }
        }
        if let (Some(success), Some(error)) = (&self.success_response, &self.error_response)
            && success == error
        {
            problems.push(FieldError::new(
                "error_response",
                Some(error),
                "equals success_response, so no response could be told apart; make them differ",
            ));
        }
        if !problems.is_empty() {
            return Err(problems.finish(()).unwrap_err());
        }
        let compiled = CompiledSettings {
            url: url.expect("no problems means the url compiled"),
            body,
            headers,
            settings: self,
        };
        compiled.check_samples()?;
        Ok(compiled)
    }
}

fn mistyped(field: &str, value: &Json, expected: &str) -> FieldError {
    FieldError::new(
        field,
        Some(&value.to_string()),
        format!("has the wrong type; expected {expected}"),
    )
}

fn optional_str<'a>(object: &'a Map<String, Json>, field: &str, problems: &mut Problems) -> Option<&'a str> {
    match object.get(field) {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => Some(text),
        Some(other) => {
            problems.push(mistyped(field, other, "a string"));
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
            "is not a plugin id; upload the plugin (POST /v1/partners/{partner_id}/plugins) and use the id it returns, such as plg_01…",
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
            problems.push(mistyped(
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
        if RESERVED_HEADERS.contains(&lower.as_str()) {
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
            Json::String(text) => {
                headers.insert(name.clone(), text.clone());
            }
            other => problems.push(mistyped(&field, other, "a string")),
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

fn template(field: &str, text: &str, place: Place, problems: &mut Problems) -> Option<Template> {
    Template::compile(text, place)
        .map_err(|error| problems.push(FieldError::new(field, None, error.to_string())))
        .ok()
}

/// Settings with their templates compiled, ready to render postbacks.
#[derive(Debug, Clone)]
pub struct CompiledSettings {
    settings: NotificationSettings,
    url: Template,
    body: Option<Template>,
    headers: Vec<(String, Template)>,
}

impl CompiledSettings {
    /// The settings as saved.
    pub fn settings(&self) -> &NotificationSettings {
        &self.settings
    }

    /// Renders the postback for `event`.
    pub fn render(&self, event: &Event) -> Request {
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        let has_body = self.settings.method != Method::Get;
        if has_body
            && !self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push((
                "Content-Type".to_owned(),
                self.settings.body_format.content_type().to_owned(),
            ));
        }
        for (name, value) in &self.headers {
            headers.push((name.clone(), value.render(event)));
        }
        Request {
            method: self.settings.method,
            url: self.url.render(event),
            headers,
            body: self.body.as_ref().map(|body| body.render(event)).unwrap_or_default(),
        }
    }

    /// Renders sample events of every type and checks that the results are what the settings
    /// promise: a valid http(s) URL, and a body that parses in its format.
    fn check_samples(&self) -> Result<(), Invalid> {
        let mut problems = Problems::default();
        for event_type in EventType::ALL {
            let sample = Event::sample(event_type, "ptn_sample");
            let request = self.render(&sample);
            match url::Url::parse(&request.url) {
                Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
                Ok(_) => problems.push(FieldError::new(
                    "url",
                    Some(&self.settings.url),
                    "has no host; write it as https://host/path",
                )),
                Err(error) => problems.push(FieldError::new(
                    "url",
                    Some(&self.settings.url),
                    format!(
                        "is not a valid URL once rendered ({error}), for example {:?}",
                        request.url
                    ),
                )),
            }
            if let Some(message) = body_problem(self.settings.body_format, &request.body) {
                problems.push(FieldError::new(
                    "body_template",
                    None,
                    format!(
                        "renders an invalid {} body for a sample {event_type} event: {message}",
                        format_name(self.settings.body_format)
                    ),
                ));
            }
            if !problems.is_empty() {
                break;
            }
        }
        problems.finish(())
    }
}

fn format_name(format: BodyFormat) -> &'static str {
    match format {
        BodyFormat::Json => "JSON",
        BodyFormat::Xml => "XML",
        BodyFormat::Form => "form",
        BodyFormat::Text => "text",
    }
}

/// Why `body` is not a valid document of `format`, if it is not.
fn body_problem(format: BodyFormat, body: &str) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    match format {
        BodyFormat::Json => serde_json::from_str::<serde::de::IgnoredAny>(body).err().map(|e| {
            format!(
                "{e}; check the JSON around the placeholders (a placeholder outside quotes renders a whole JSON value)"
            )
        }),
        BodyFormat::Xml => xml_problem(body),
        BodyFormat::Form | BodyFormat::Text => None,
    }
}

fn xml_problem(body: &str) -> Option<String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        match reader.read_event() {
            Err(e) => return Some(format!("{e} at byte {}", reader.error_position())),
            Ok(Xml::Eof) if depth > 0 => return Some("an element is never closed".into()),
            Ok(Xml::Eof) if roots == 0 => return Some("it has no root element".into()),
            Ok(Xml::Eof) => return None,
            Ok(Xml::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Xml::End(_)) => depth = depth.saturating_sub(1),
            Ok(Xml::Empty(_)) if depth == 0 => roots += 1,
            Ok(_) => {}
        }
        if roots > 1 {
            return Some("it has more than one root element".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(json: Json) -> String {
        NotificationSettings::validate(&json).unwrap_err().to_string()
    }

    #[test]
    fn accepts_and_renders_json_settings() {
        let compiled = NotificationSettings::validate(&json!({
            "url": "https://partner.example/pb?inq={ActionInquiryId}",
            "body_template": "{\"order\":\"{OrderId}\",\"amount\":{TransactionAmount}}",
            "headers": {"X-Api-Key": "k-{MediaPartnerId}"},
            "max_requests_per_sec": 20
        }))
        .unwrap();
        let request = compiled.render(&Event::sample(EventType::ActionInquiryCreated, "p"));
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://partner.example/pb?inq=1000123");
        assert_eq!(
            request.headers,
            [
                ("Content-Type".into(), "application/json".into()),
                ("X-Api-Key".into(), "k-88123".into())
            ]
        );
        assert_eq!(request.body, r#"{"order":"ORD-99812","amount":149.90}"#);
    }

    #[test]
    fn names_field_value_and_fix() {
        let all = errors(json!({
            "url": "ftp://x", "method": "DELETE", "body_format": "yaml", "headers": {"Bad Name": "x", "Host": "y"},
            "min_delay_secs": -1, "max_requests_per_sec": 0, "urll": 1
        }));
        for needle in [
            "urll: is not a settings field; did you mean url?",
            "method: \"DELETE\" is not supported; use GET, POST or PUT",
            "body_format: \"yaml\" is not a body format",
            "headers.Bad Name: \"Bad Name\" is not a valid header name",
            "headers.Host: \"Host\" is set by Postwire itself",
            "min_delay_secs: \"-1\" must be a whole number from 0 to 2592000",
            "max_requests_per_sec: \"0\" would never send anything",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        assert!(errors(json!({"url": "ftp://x"})).contains("url: \"ftp://x\" must start with https:// or http://"));
    }

    #[test]
    fn get_has_no_body() {
        let all = errors(json!({"url": "https://p.example/", "method": "get", "body_template": "x={OrderId}"}));
        assert!(
            all.contains("body_template: \"x={OrderId}\" must be empty for GET"),
            "{all}"
        );
    }

    #[test]
    fn unknown_placeholders_are_refused_with_a_hint() {
        let all = errors(json!({"url": "https://p.example/", "body_template": "{\"o\":\"{OrderID}\"}"}));
        assert_eq!(
            all,
            "body_template: line 1, column 7: unknown placeholder {OrderID}; did you mean {OrderId}?"
        );
    }

    #[test]
    fn bodies_must_stay_valid_documents() {
        let all = errors(json!({"url": "https://p.example/", "body_template": "{\"o\": {OrderId}"}));
        assert!(all.starts_with("body_template: renders an invalid JSON body"), "{all}");
        let all =
            errors(json!({"url": "https://p.example/", "body_format": "xml", "body_template": "<a>{OrderId}</b>"}));
        assert!(all.starts_with("body_template: renders an invalid XML body"), "{all}");
    }
}
