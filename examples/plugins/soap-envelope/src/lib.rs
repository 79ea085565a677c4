//! Example plugin (transform): sends the postback as a SOAP 1.1 call, for a legacy receiver.
//!
//! The body becomes an envelope whose operation element holds one element per event value,
//! named as its placeholder, text XML-escaped:
//!
//! ```xml
//! <?xml version="1.0" encoding="utf-8"?>
//! <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
//!   <soap:Body>
//!     <SubmitPostback xmlns="urn:partner:postbacks">
//!       <EventId>evt_01JD7Y3M4W1Q9</EventId>
//!       <EventType>action_inquiry.created</EventType>
//!       <EventDate>2026-11-20T14:03:00Z</EventDate>
//!       <ActionInquiryId>1000123</ActionInquiryId>
//!       ...
//!     </SubmitPostback>
//!   </soap:Body>
//! </soap:Envelope>
//! ```
//!
//! The method becomes `POST`, `Content-Type` is `text/xml; charset=utf-8` and `SOAPAction` is
//! the quoted action URI; other headers (such as `Authorization`) are kept, and the template's
//! body is replaced.
//!
//! `plugin_config`, every key optional:
//! `{"namespace": "urn:partner:postbacks", "operation": "SubmitPostback",
//!   "soap_action": "<namespace>/<operation>", "fields": ["EventId", "OrderId", ...]}`.
//! Without `fields` the envelope has `EventId`, `EventType`, `EventDate` and every data field
//! the event carries, in the event's order; with it, those fields in that order (absent ones
//! are left out). Characters XML 1.0 cannot carry (control characters other than tab, line
//! feed and carriage return) become U+FFFD.

use std::fmt::Write;

use postwire_sdk::{Config, Event, Request, Transform, debug};
use serde::Deserialize;

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// `plugin_config`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    namespace: String,
    operation: String,
    soap_action: Option<String>,
    fields: Option<Vec<String>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            namespace: "urn:partner:postbacks".into(),
            operation: "SubmitPostback".into(),
            soap_action: None,
            fields: None,
        }
    }
}

struct SoapEnvelope;

impl Transform for SoapEnvelope {
    fn transform(event: &Event, mut request: Request, config: &Config) -> Result<Request, String> {
        let settings: Settings = config.parse()?;
        if !is_xml_name(&settings.operation) {
            return Err(format!(
                "plugin_config's \"operation\" {:?} is not an XML element name",
                settings.operation
            ));
        }
        let action = settings
            .soap_action
            .clone()
            .unwrap_or_else(|| format!("{}/{}", settings.namespace.trim_end_matches('/'), settings.operation));
        if action.contains(['"', '\r', '\n']) {
            return Err("plugin_config's \"soap_action\" cannot contain quotes or line breaks".into());
        }
        request.set_text(envelope(event, &settings)?);
        request.method = "POST".into();
        request.set_header("Content-Type", "text/xml; charset=utf-8");
        request.set_header("SOAPAction", format!("\"{action}\""));
        debug!("SOAP envelope for {} ({} bytes)", event.id(), request.body.len());
        Ok(request)
    }
}

postwire_sdk::export_transform!(SoapEnvelope);

/// The envelope around the operation element with the event's values.
fn envelope(event: &Event, settings: &Settings) -> Result<String, String> {
    let values: Vec<(&str, &str)> = match &settings.fields {
        Some(fields) => fields
            .iter()
            .filter_map(|name| Some((name.as_str(), event.get(name)?)))
            .collect(),
        None => [
            ("EventId", event.id()),
            ("EventType", event.event_type()),
            ("EventDate", event.occurred_at()),
        ]
        .into_iter()
        .chain(event.fields())
        .collect(),
    };
    let mut xml = String::with_capacity(512);
    xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(xml, "<soap:Envelope xmlns:soap=\"{SOAP_ENV}\">");
    xml.push_str("  <soap:Body>\n");
    let _ = writeln!(
        xml,
        "    <{} xmlns=\"{}\">",
        settings.operation,
        escape(&settings.namespace)
    );
    for (name, value) in values {
        if !is_xml_name(name) {
            return Err(format!("{name:?} is not an XML element name"));
        }
        let _ = writeln!(xml, "      <{name}>{}</{name}>", escape(value));
    }
    let _ = writeln!(xml, "    </{}>", settings.operation);
    xml.push_str("  </soap:Body>\n");
    xml.push_str("</soap:Envelope>\n");
    Ok(xml)
}

/// `text` safe in XML 1.0 text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept through parsers' line-end normalisation.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Whether `name` can be an element name without a prefix: a letter or `_`, then letters,
/// digits, `_`, `-` or `.` (ASCII; placeholder names all are).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Event {
        Event::new("evt_01JD7Y3M4W1Q9", "action_inquiry.created")
            .with_occurred_at("2026-11-20T14:03:00Z")
            .with_field("ActionInquiryId", "1000123")
            .with_field("OrderId", "ORD-99812")
            .with_field(
                "InquiryNotes",
                "Customer used coupon \"FALL10\" & paid by card <visa>.\nClick was on Nov 1.",
            )
    }

    fn request() -> Request {
        Request::new("POST", "https://partner.example/legacy/postback.aspx")
            .with_header("Content-Type", "application/xml")
            .with_header("Authorization", "Bearer t")
            .with_body("<inquiry/>")
    }

    #[test]
    fn wraps_the_event_in_an_envelope() {
        let out = SoapEnvelope::transform(&created(), request(), &Config::default()).unwrap();
        assert_eq!(
            out.body,
            r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <SubmitPostback xmlns="urn:partner:postbacks">
      <EventId>evt_01JD7Y3M4W1Q9</EventId>
      <EventType>action_inquiry.created</EventType>
      <EventDate>2026-11-20T14:03:00Z</EventDate>
      <ActionInquiryId>1000123</ActionInquiryId>
      <OrderId>ORD-99812</OrderId>
      <InquiryNotes>Customer used coupon &quot;FALL10&quot; &amp; paid by card &lt;visa&gt;.
Click was on Nov 1.</InquiryNotes>
    </SubmitPostback>
  </soap:Body>
</soap:Envelope>
"#
        );
        assert_eq!(out.method, "POST");
        assert_eq!(
            out.headers,
            [
                ("Content-Type".to_string(), "text/xml; charset=utf-8".to_string()),
                ("Authorization".to_string(), "Bearer t".to_string()),
                (
                    "SOAPAction".to_string(),
                    "\"urn:partner:postbacks/SubmitPostback\"".to_string()
                ),
            ]
        );
    }

    #[test]
    fn follows_the_config() {
        let config = Config::new(
            r#"{"namespace": "http://legacy.example/ws/", "operation": "Notify", "fields": ["OrderId", "Missing", "EventId"]}"#,
        );
        let mut get = request();
        get.method = "GET".into();
        let out = SoapEnvelope::transform(&created(), get, &config).unwrap();
        assert!(
            out.body.contains(
                "    <Notify xmlns=\"http://legacy.example/ws/\">\n      <OrderId>ORD-99812</OrderId>\n      \
                 <EventId>evt_01JD7Y3M4W1Q9</EventId>\n    </Notify>\n"
            ),
            "{}",
            out.body
        );
        assert_eq!(out.method, "POST");
        assert_eq!(out.header("soapaction"), Some("\"http://legacy.example/ws/Notify\""));
        let config = Config::new(r#"{"soap_action": "urn:x#y"}"#);
        let out = SoapEnvelope::transform(&created(), request(), &config).unwrap();
        assert_eq!(out.header("SOAPAction"), Some("\"urn:x#y\""));
    }

    #[test]
    fn refuses_bad_config() {
        let refuse = |config: &str| SoapEnvelope::transform(&created(), request(), &Config::new(config)).unwrap_err();
        assert!(refuse(r#"{"operation": "Sub mit"}"#).contains("not an XML element name"));
        assert!(refuse(r#"{"namespce": "x"}"#).contains("unknown field `namespce`"));
        assert!(refuse(r#"{"soap_action": "a\"b"}"#).contains("cannot contain quotes"));
        assert!(refuse(r#"{"fields": ["EventId", "OrderId"], "operation": 5}"#).contains("invalid type"));
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("tab\tline\ncr\r"), "tab\tline\ncr&#13;");
        assert_eq!(escape("nul\u{0}bell\u{7}"), "nul\u{fffd}bell\u{fffd}");
        assert_eq!(escape("é ✓ 😀"), "é ✓ 😀");
        assert!(is_xml_name("ActionInquiryId"));
        assert!(is_xml_name("_a-b.c1"));
        for bad in ["", "1a", "a b", "a:b", "xmlThing", "é"] {
            assert!(!is_xml_name(bad), "{bad}");
        }
    }
}
