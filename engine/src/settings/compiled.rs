//! Compiled settings: the templates compiled and test-rendered against sample events of every
//! type, then rendered once per postback.

use super::{NotificationSettings, limits};
use crate::error::{FieldError, Invalid, Problems};
use crate::event::{Event, EventType};
use crate::render::{BodyFormat, Place, Template};
use crate::request::{Method, Request};

impl NotificationSettings {
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
        if problems.is_empty()
            && self.settings.body_format == BodyFormat::Xml
            && let Some(message) = body_problem(BodyFormat::Xml, &self.render(&ampersand_event()).body)
        {
            problems.push(FieldError::new(
                "body_template",
                None,
                format!(
                    "renders an invalid XML body when a value holds '&': {message}; a '&' in the template must begin a whole reference such as &amp;"
                ),
            ));
        }
        problems.finish(())
    }
}

/// The sample event with an '&' in every text and id field: escaped, it is `&amp;`, so a
/// reference in the template that runs across a placeholder (`&{OrderId};`) stops being one,
/// whatever name the sample's own value made of it.
fn ampersand_event() -> Event {
    use crate::catalogue::{CATALOGUE, FieldType, Source};
    let sample = Event::sample(EventType::ActionInquiryResolved, "ptn_sample");
    let mut envelope = sample.to_json();
    for placeholder in CATALOGUE.iter().filter(|p| p.source == Source::Data) {
        if matches!(placeholder.ty, FieldType::Text | FieldType::Id) {
            envelope["data"][placeholder.name] = serde_json::Value::String(format!("{}&", placeholder.example));
        }
    }
    Event::from_value(&envelope).unwrap_or(sample)
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

/// Why `&name;` is not a reference XML allows, if it is not: the reader takes whatever stands
/// between `&` and the next `;` as a name, so a template's stray `&` would pass as long as the
/// sample's values put a `;` after it, and break on the first value that does not.
fn reference_problem(reference: &quick_xml::events::BytesRef<'_>) -> Option<String> {
    let name = String::from_utf8_lossy(reference);
    let valid = if reference.is_char_ref() {
        matches!(reference.resolve_char_ref(), Ok(Some(_)))
    } else {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|first| first.is_alphabetic() || first == '_' || first == ':')
            && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    };
    (!valid).then(|| format!("`&{name};` is not an entity or character reference; write &amp; for a literal '&'"))
}

/// Why a tag's attributes are not well formed, if they are not: XML forbids `<` in an attribute
/// value, which the reader lets through, and a template that holds one there has no one reading
/// of where its placeholders stand.
fn attribute_problem(tag: &quick_xml::events::BytesStart<'_>) -> Option<String> {
    for attribute in tag.attributes() {
        match attribute {
            Err(e) => return Some(format!("a malformed attribute: {e}")),
            Ok(attribute) if attribute.value.contains(&b'<') => {
                return Some(format!(
                    "the value of attribute `{}` holds '<', which XML does not allow there; write &lt;",
                    String::from_utf8_lossy(attribute.key.as_ref())
                ));
            }
            Ok(_) => {}
        }
    }
    None
}

/// What makes `body` no well-formed XML document, as validation checks a rendered sample body
/// (one root element, every element closed with its own name, no `<` in an attribute value),
/// or `None` when it is one. The `render` fuzz target holds every rendered body to the same.
pub fn xml_problem(body: &str) -> Option<String> {
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
            Ok(Xml::Start(tag)) => {
                if let Some(problem) = attribute_problem(&tag) {
                    return Some(problem);
                }
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Xml::End(_)) => depth = depth.saturating_sub(1),
            Ok(Xml::GeneralRef(reference)) => {
                if let Some(problem) = reference_problem(&reference) {
                    return Some(format!("{problem} at byte {}", reader.buffer_position()));
                }
            }
            Ok(Xml::Empty(tag)) => {
                if let Some(problem) = attribute_problem(&tag) {
                    return Some(problem);
                }
                if depth == 0 {
                    roots += 1;
                }
            }
            Ok(_) => {}
        }
        if roots > 1 {
            return Some("it has more than one root element".into());
        }
    }
}
