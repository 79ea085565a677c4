//! Template compile and render: settings whose templates render valid requests for the sample
//! events must render valid requests for every event, whatever its values hold. That is the
//! escaping promise: a value stays inside the place its placeholder stands in.
//!
//! Input: sections separated by the byte 0x1F (unit separator), so that seeds stay readable:
//! 1. two bytes: the body format (`j`son, `x`ml, `f`orm, `t`ext) and the event type
//!    (`c`reated, `r`esolved);
//! 2. the URL template;
//! 3. the body template;
//! 4. a header value template;
//! 5. and on: `Name=value`, a value for the event's `data` field `Name`, replacing the sample
//!    event's (values the event validator refuses are left out).

#![no_main]

use libfuzzer_sys::fuzz_target;
use postwire::event::{Event, EventType};
use postwire::render::{BodyFormat, MAX_RENDERED_LEN};
use postwire::request::Request;
use postwire::settings::NotificationSettings;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sections = text.split('\u{1f}');
    let control = sections.next().unwrap_or_default().as_bytes();
    let (format, name) = match control.first() {
        Some(b'x') => (BodyFormat::Xml, "xml"),
        Some(b'f') => (BodyFormat::Form, "form"),
        Some(b't') => (BodyFormat::Text, "text"),
        _ => (BodyFormat::Json, "json"),
    };
    let event_type = match control.get(1) {
        Some(b'r') => EventType::ActionInquiryResolved,
        _ => EventType::ActionInquiryCreated,
    };
    let url = sections.next().unwrap_or_default();
    let body = sections.next().unwrap_or_default();
    let header = sections.next().unwrap_or_default();
    let settings = json!({
        "url": url,
        "method": "POST",
        "body_format": name,
        "body_template": body,
        "headers": { "X-Fuzz": header },
    });
    let Ok(compiled) = NotificationSettings::validate(&settings) else {
        return;
    };

    let sample = Event::sample(event_type, "ptn_fuzz");
    let mut envelope = sample.to_json();
    for value in sections {
        let Some((field, value)) = value.split_once('=') else {
            continue;
        };
        let before = envelope["data"].get(field).cloned();
        envelope["data"][field] = Value::String(value.to_owned());
        if Event::from_value(&envelope).is_err() {
            match before {
                Some(before) => envelope["data"][field] = before,
                None => {
                    envelope["data"]
                        .as_object_mut()
                        .expect("data is an object")
                        .remove(field);
                }
            }
        }
    }
    let event = Event::from_value(&envelope).expect("only values the validator accepts are kept");

    let expected = compiled.render(&sample);
    let request = compiled.render(&event);
    check(format, &expected, &request);
});

/// What must hold of `request` (rendered for any event) given `expected`, the same settings
/// rendered for the sample event, which validation has checked.
fn check(format: BodyFormat, expected: &Request, request: &Request) {
    if request.url.len() <= MAX_RENDERED_LEN {
        check_url(expected, request);
    }
    for (_, value) in &request.headers {
        assert!(
            http::HeaderValue::from_str(value).is_ok(),
            "a header value no request can carry: {value:?}"
        );
    }

    if request.body.is_empty() || request.body.len() > MAX_RENDERED_LEN {
        // No body is a valid body in every format (validation lets it through); one too long to
        // send is refused whole by the delivery.
        return;
    }
    match format {
        BodyFormat::Json => {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&request.body) {
                panic!("the JSON body does not parse ({e}): {:?}", request.body);
            }
        }
        BodyFormat::Xml => {
            if let Some(problem) = postwire::settings::xml_problem(&request.body) {
                panic!("the XML body is not well formed ({problem}): {:?}", request.body);
            }
            assert_eq!(elements(&request.body), elements(&expected.body), "{:?}", request.body);
        }
        BodyFormat::Form => {
            assert_eq!(
                separators(&request.body),
                separators(&expected.body),
                "{:?}",
                request.body
            );
        }
        BodyFormat::Text => {}
    }
}

/// Placeholders stand only after the host, so a value can never send the request elsewhere;
/// values are percent-encoded, so they never add a query parameter.
fn check_url(expected: &Request, request: &Request) {
    let sample = url::Url::parse(&expected.url).expect("validation parsed the sample URL");
    let rendered =
        url::Url::parse(&request.url).unwrap_or_else(|e| panic!("the URL does not parse ({e}): {:?}", request.url));
    assert_eq!(rendered.scheme(), sample.scheme(), "{:?}", request.url);
    assert_eq!(rendered.host_str(), sample.host_str(), "{:?}", request.url);
    assert_eq!(rendered.port(), sample.port(), "{:?}", request.url);
    assert_eq!(separators(&request.url), separators(&expected.url), "{:?}", request.url);
}

/// How many `&` and `=` a form body or URL holds: its literal text's, as values are encoded.
fn separators(text: &str) -> (usize, usize) {
    (text.matches('&').count(), text.matches('=').count())
}

/// The elements of a well-formed XML body, in order: its literal text's, as values are escaped.
fn elements(body: &str) -> Vec<String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(body);
    let mut names = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Xml::Start(e)) => names.push(format!("<{}", String::from_utf8_lossy(e.name().as_ref()))),
            Ok(Xml::Empty(e)) => names.push(format!("<{}/", String::from_utf8_lossy(e.name().as_ref()))),
            Ok(Xml::End(e)) => names.push(format!("/{}", String::from_utf8_lossy(e.name().as_ref()))),
            Ok(Xml::Eof) | Err(_) => return names,
            Ok(_) => {}
        }
    }
}
