//! *Event notifications*: the settings form field by field, each validation error beside its
//! field, the placeholder catalogue beside the body, a preview of the exact request for a
//! sample event, and save. Validation and saving are the API's own
//! ([`crate::api::save_settings`], [`crate::api::preview_request`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::html::{self, Nav, esc};
use super::session::PartnerPage;
use super::{Console, Failure, Fields, page};
use crate::api::{ApiError, preview_request, save_settings};
use crate::catalogue::CATALOGUE;
use crate::error::FieldError;
use crate::event::EventType;
use crate::settings::{FIELDS, NotificationSettings};

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/settings", get(show).post(submit))
        .route("/console/settings/preview", post(live_preview))
}

/// The form's fields as text, as shown and as sent.
#[derive(Debug, Default)]
struct Form {
    url: String,
    method: String,
    body_format: String,
    body_template: String,
    /// One `Name: value` a line.
    headers: String,
    min_delay_secs: String,
    max_requests_per_sec: String,
    success_response: String,
    error_response: String,
    events: Vec<String>,
    transform_plugin: String,
    classify_plugin: String,
    plugin_config: String,
    /// The sample event the preview renders.
    sample: String,
}

impl Form {
    /// The form of saved settings; `plugin_config` shown redacted, as the API shows it.
    fn saved(settings: &NotificationSettings) -> Form {
        let plain = |v: &Option<String>| v.clone().unwrap_or_default();
        Form {
            url: settings.url.clone(),
            method: settings.method.as_str().to_owned(),
            body_format: json!(settings.body_format).as_str().unwrap_or_default().to_owned(),
            body_template: plain(&settings.body_template),
            headers: settings.headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(),
            min_delay_secs: settings.min_delay_secs.to_string(),
            max_requests_per_sec: settings.max_requests_per_sec.map(|n| n.to_string()).unwrap_or_default(),
            success_response: plain(&settings.success_response),
            error_response: plain(&settings.error_response),
            events: settings.events.iter().map(|e| e.as_str().to_owned()).collect(),
            transform_plugin: plain(&settings.transform_plugin),
            classify_plugin: plain(&settings.classify_plugin),
            plugin_config: settings
                .plugin_config
                .as_ref()
                .map(|c| html::pretty(&crate::redact::config(c)))
                .unwrap_or_default(),
            sample: EventType::ActionInquiryCreated.as_str().to_owned(),
        }
    }

    /// A new partner's starting point.
    fn blank() -> Form {
        Form {
            method: "POST".into(),
            body_format: "json".into(),
            min_delay_secs: "0".into(),
            events: EventType::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
            sample: EventType::ActionInquiryCreated.as_str().to_owned(),
            ..Form::default()
        }
    }

    fn read(fields: &Fields) -> Form {
        let text = |name: &str| fields.text(name).to_owned();
        Form {
            url: text("url"),
            method: text("method"),
            body_format: text("body_format"),
            body_template: text("body_template"),
            headers: text("headers"),
            min_delay_secs: text("min_delay_secs"),
            max_requests_per_sec: text("max_requests_per_sec"),
            success_response: text("success_response"),
            error_response: text("error_response"),
            events: fields.all("events").map(str::to_owned).collect(),
            transform_plugin: text("transform_plugin"),
            classify_plugin: text("classify_plugin"),
            plugin_config: text("plugin_config"),
            sample: text("sample"),
        }
    }

    /// The settings JSON the API validates, and the problems only the form can have (a header
    /// line without a colon, `plugin_config` that is not JSON). `stored_config` is the saved
    /// `plugin_config`: sent back as shown (redacted), it stays as saved.
    fn to_json(&self, stored_config: Option<&Value>) -> (Value, Vec<FieldError>) {
        let mut problems = Vec::new();
        let mut object = Map::new();
        let mut text = |name: &str, value: &str, keep_empty: bool| {
            if keep_empty || !value.is_empty() {
                object.insert(name.into(), Value::String(value.to_owned()));
            }
        };
        text("url", self.url.trim(), true);
        text("method", &self.method, false);
        text("body_format", &self.body_format, false);
        text("body_template", &self.body_template, false);
        text("success_response", &self.success_response, false);
        text("error_response", &self.error_response, false);
        text("transform_plugin", &self.transform_plugin, false);
        text("classify_plugin", &self.classify_plugin, false);
        for (name, value) in [
            ("min_delay_secs", self.min_delay_secs.trim()),
            ("max_requests_per_sec", self.max_requests_per_sec.trim()),
        ] {
            if value.is_empty() {
                continue;
            }
            // A number goes as a number; anything else as the text it is, for the API's
            // validation to name.
            let parsed = value
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(value.into()));
            object.insert(name.into(), parsed);
        }
        let mut headers = Map::new();
        for line in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.split_once(':') {
                Some((name, value)) => {
                    headers.insert(name.trim().to_owned(), Value::String(value.trim().to_owned()));
                }
                None => problems.push(FieldError::new(
                    "headers",
                    Some(line),
                    "is not a header; write one header a line as Name: value",
                )),
            }
        }
        object.insert("headers".into(), Value::Object(headers));
        object.insert(
            "events".into(),
            Value::Array(self.events.iter().map(|e| Value::String(e.clone())).collect()),
        );
        let config = self.plugin_config.trim();
        if !config.is_empty() {
            let unchanged = stored_config.filter(|stored| {
                serde_json::from_str::<Value>(config).is_ok_and(|sent| sent == crate::redact::config(stored))
            });
            match (unchanged, serde_json::from_str::<Value>(config)) {
                (Some(stored), _) => {
                    object.insert("plugin_config".into(), stored.clone());
                }
                (None, Ok(value)) => {
                    object.insert("plugin_config".into(), value);
                }
                (None, Err(e)) => problems.push(FieldError::new(
                    "plugin_config",
                    Some(config),
                    format!("is not JSON ({e}); write a JSON object, or leave it empty"),
                )),
            }
        }
        (Value::Object(object), problems)
    }

    fn sample(&self) -> EventType {
        EventType::parse(&self.sample).unwrap_or(EventType::ActionInquiryCreated)
    }
}

/// Field errors by the form field they belong to (`headers.X-Api-Key` belongs to `headers`).
#[derive(Default)]
struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    fn of(errors: &[FieldError]) -> Errors {
        let mut by_field = BTreeMap::<String, Vec<String>>::new();
        for error in errors {
            let path = error.field.strip_prefix("settings.").unwrap_or(&error.field);
            let root = path.split(['.', '[']).next().unwrap_or_default();
            // Beside its field in the form; errors of no field are listed above it.
            let field = if FIELDS.contains(&root) { root } else { "" };
            let shown = FieldError {
                field: path.to_owned(),
                ..error.clone()
            };
            by_field.entry(field.to_owned()).or_default().push(shown.to_string());
        }
        Errors(by_field)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors of `field`, as a paragraph the input points at.
    fn beside(&self, field: &str) -> String {
        html::field_errors(field, self.0.get(field))
    }

    /// The attributes that mark an input invalid and point at its errors.
    fn marks(&self, field: &str) -> String {
        html::invalid_marks(field, self.0.contains_key(field))
    }
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn show(
    State(console): State<Console>,
    page_of: PartnerPage,
    Query(saved): Query<Saved>,
) -> Result<Response, Failure> {
    let record = console
        .app
        .store
        .settings(&page_of.partner.id)
        .await
        .map_err(ApiError::from)?;
    let (form, stored) = match record
        .as_ref()
        .and_then(|r| serde_json::from_str::<NotificationSettings>(&r.body).ok())
    {
        Some(settings) => (Form::saved(&settings), settings.plugin_config),
        None => (Form::blank(), None),
    };
    let mut notice = String::new();
    if saved.saved.is_some() {
        notice = html::notice(
            "ok",
            "Saved. Postbacks use these settings from now on, pending retries included.",
        );
    } else if record.is_none() {
        notice = html::notice(
            "ok",
            "No settings yet: fill in the form and save to start receiving postbacks.",
        );
    }
    if let Some(reason) = record.as_ref().and_then(|r| r.disabled_reason.as_ref()) {
        notice.push_str(&html::notice(
            "error",
            &format!("The endpoint is disabled ({reason}); saving the settings enables it again."),
        ));
    }
    let preview = if record.is_some() {
        preview(&page_of.partner.id, &form, stored.as_ref())
    } else {
        String::new()
    };
    let body = render(&console, &page_of, &form, &Errors::default(), &notice, &preview).await?;
    Ok(page(html::page(
        "Event notifications",
        Nav::Settings,
        Some(&page_of.who()),
        &body,
    ))
    .into_response())
}

async fn submit(State(console): State<Console>, page_of: PartnerPage, body: Bytes) -> Result<Response, Failure> {
    let fields = Fields::parse(&body);
    let form = Form::read(&fields);
    let stored = stored_config(&console, &page_of.partner.id).await?;
    let (input, mut problems) = form.to_json(stored.as_ref());
    let (status, notice) = if fields.get("action") == Some("preview") {
        (StatusCode::OK, String::new())
    } else if problems.is_empty() {
        match save_settings(&console.app, &page_of.partner.id, &input).await {
            Ok(_) => return Ok(Failure::redirect("/console/settings?saved=1").into_response()),
            Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                problems.extend(e.errors().iter().cloned());
                (StatusCode::UNPROCESSABLE_ENTITY, not_saved())
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, not_saved())
    };
    let preview = preview(&page_of.partner.id, &form, stored.as_ref());
    let body = render(&console, &page_of, &form, &Errors::of(&problems), &notice, &preview).await?;
    Ok((
        status,
        page(html::page(
            "Event notifications",
            Nav::Settings,
            Some(&page_of.who()),
            &body,
        )),
    )
        .into_response())
}

fn not_saved() -> String {
    html::notice("error", "Not saved: fix the fields marked below and save again.")
}

/// The preview alone, for the page's script to refresh as the form changes.
async fn live_preview(State(console): State<Console>, page_of: PartnerPage, body: Bytes) -> Result<Response, Failure> {
    let form = Form::read(&Fields::parse(&body));
    let stored = stored_config(&console, &page_of.partner.id).await?;
    Ok(page(preview(&page_of.partner.id, &form, stored.as_ref())).into_response())
}

async fn stored_config(console: &Console, partner_id: &str) -> Result<Option<Value>, Failure> {
    let record = console.app.store.settings(partner_id).await.map_err(ApiError::from)?;
    Ok(record
        .and_then(|r| serde_json::from_str::<NotificationSettings>(&r.body).ok())
        .and_then(|s| s.plugin_config))
}

/// The request the form's settings make for the sample event, or why they make none.
fn preview(partner_id: &str, form: &Form, stored: Option<&Value>) -> String {
    let (settings, problems) = form.to_json(stored);
    let mut out = String::from("<h2 id=\"preview-title\">Preview</h2>");
    let answer = if problems.is_empty() {
        preview_request(
            partner_id,
            &json!({"settings": settings, "type": form.sample().as_str()}),
        )
    } else {
        Err(ApiError::invalid_counted(problems, 0))
    };
    match answer {
        Ok(preview) => {
            let request = &preview["request"];
            if preview["sends"] == false {
                out.push_str(&html::notice(
                    "error",
                    "These settings send no postback for this event type: tick it under Events.",
                ));
            }
            let _ = writeln!(
                out,
                "<p class=\"help\">The request for the sample <code>{}</code> event, as sent but for the \
                 <code>webhook-*</code> signature headers added when it goes (secret values hidden).</p>\
                 <pre class=\"request\">{} {}",
                esc(form.sample().as_str()),
                esc(request["method"].as_str().unwrap_or_default()),
                esc(request["url"].as_str().unwrap_or_default())
            );
            super::test_page::headers(&mut out, &request["headers"]);
            if let Some(body) = request["body"].as_str().filter(|b| !b.is_empty()) {
                let _ = write!(out, "\n{}", esc(body));
            }
            out.push_str("</pre>");
        }
        Err(e) => {
            let errors = Errors::of(e.errors());
            out.push_str("<p class=\"field-error\">No preview until these are fixed:</p><ul class=\"errors\">");
            for message in errors.0.values().flatten() {
                let _ = write!(out, "<li>{}</li>", esc(message));
            }
            if errors.is_empty() {
                let _ = write!(out, "<li>{}</li>", esc(e.detail()));
            }
            out.push_str("</ul>");
        }
    }
    out
}

/// The form, the catalogue beside the body, and the preview.
async fn render(
    console: &Console,
    page_of: &PartnerPage,
    form: &Form,
    errors: &Errors,
    notice: &str,
    preview: &str,
) -> Result<String, Failure> {
    let plugins = console
        .app
        .store
        .plugins(&page_of.partner.id)
        .await
        .map_err(ApiError::from)?;
    let mut out = String::from(notice);
    if let Some(others) = errors.0.get("") {
        out.push_str("<ul class=\"errors\">");
        for message in others {
            let _ = write!(out, "<li>{}</li>", esc(message));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/console/settings\" id=\"settings\" class=\"settings\" novalidate>{}\
         <div class=\"columns\"><div class=\"fields\">",
        html::csrf_field(&page_of.signed.session.csrf)
    );
    let input = |name: &str, label: &str, value: &str, kind: &str, help: &str| {
        format!(
            "<div class=\"field\"><label for=\"{name}\">{label}</label>\
             <input id=\"{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{}>{}{}</div>",
            esc(value),
            errors.marks(name),
            if help.is_empty() {
                String::new()
            } else {
                format!("<p class=\"help\">{help}</p>")
            },
            errors.beside(name)
        )
    };
    let select = |name: &str, label: &str, value: &str, options: &[(&str, &str)]| {
        let mut s = format!(
            "<div class=\"field\"><label for=\"{name}\">{label}</label><select id=\"{name}\" name=\"{name}\"{}>",
            errors.marks(name)
        );
        for (option, shown) in options {
            let selected = if *option == value { " selected" } else { "" };
            let _ = write!(s, "<option value=\"{}\"{selected}>{}</option>", esc(option), esc(shown));
        }
        let _ = write!(s, "</select>{}</div>", errors.beside(name));
        s
    };
    out.push_str(&input(
        "url",
        "Postback URL",
        &form.url,
        "url",
        "Where postbacks go: <code>https://…</code>; placeholders allowed after the host.",
    ));
    out.push_str("<div class=\"pair\">");
    out.push_str(&select(
        "method",
        "Method",
        &form.method,
        &[("POST", "POST"), ("PUT", "PUT"), ("GET", "GET")],
    ));
    out.push_str(&select(
        "body_format",
        "Body format",
        &form.body_format,
        &[
            ("json", "JSON"),
            ("xml", "XML"),
            ("form", "Form (urlencoded)"),
            ("text", "Plain text"),
        ],
    ));
    out.push_str("</div>");
    let _ = write!(
        out,
        "<div class=\"field\"><label for=\"body_template\">Body</label>\
         <textarea id=\"body_template\" name=\"body_template\" rows=\"10\" spellcheck=\"false\"{}>{}</textarea>\
         <p class=\"help\">Write <code>{{Placeholder}}</code> where a value goes; each is escaped for its \
         place. Leave empty for GET.</p>{}</div>",
        errors.marks("body_template"),
        esc(&form.body_template),
        errors.beside("body_template")
    );
    let _ = write!(
        out,
        "<div class=\"field\"><label for=\"headers\">Headers</label>\
         <textarea id=\"headers\" name=\"headers\" rows=\"3\" spellcheck=\"false\"{}>{}</textarea>\
         <p class=\"help\">One a line, <code>Name: value</code>; values may hold placeholders.</p>{}</div>",
        errors.marks("headers"),
        esc(&form.headers),
        errors.beside("headers")
    );
    out.push_str("<div class=\"pair\">");
    out.push_str(&input(
        "min_delay_secs",
        "Minimum delay (seconds)",
        &form.min_delay_secs,
        "text",
        "Not sent before the event's time plus this.",
    ));
    out.push_str(&input(
        "max_requests_per_sec",
        "Rate limit (requests per second)",
        &form.max_requests_per_sec,
        "text",
        "Empty: no limit.",
    ));
    out.push_str("</div><div class=\"pair\">");
    out.push_str(&input(
        "success_response",
        "Success text",
        &form.success_response,
        "text",
        "When set, a 2xx answer must contain it.",
    ));
    out.push_str(&input(
        "error_response",
        "Error text",
        &form.error_response,
        "text",
        "When set, an answer containing it failed.",
    ));
    out.push_str("</div>");
    let _ = write!(
        out,
        "<fieldset class=\"field\"{}><legend>Events</legend>",
        errors.marks("events")
    );
    for event in EventType::ALL {
        let checked = if form.events.iter().any(|e| e == event.as_str()) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<label class=\"check\"><input type=\"checkbox\" name=\"events\" value=\"{0}\"{checked}> {0}</label>",
            event.as_str()
        );
    }
    let _ = write!(out, "{}</fieldset>", errors.beside("events"));
    let mut transforms = vec![("", "none")];
    let mut classifiers = vec![("", "none")];
    for plugin in &plugins {
        if plugin.exports.iter().any(|e| e == "transform") {
            transforms.push((plugin.id.as_str(), plugin.name.as_str()));
        }
        if plugin.exports.iter().any(|e| e == "classify") {
            classifiers.push((plugin.id.as_str(), plugin.name.as_str()));
        }
    }
    out.push_str("<div class=\"pair\">");
    out.push_str(&select(
        "transform_plugin",
        "Transform plugin",
        &form.transform_plugin,
        &transforms,
    ));
    out.push_str(&select(
        "classify_plugin",
        "Classify plugin",
        &form.classify_plugin,
        &classifiers,
    ));
    out.push_str("</div>");
    let _ = write!(
        out,
        "<div class=\"field\"><label for=\"plugin_config\">Plugin configuration (JSON)</label>\
         <textarea id=\"plugin_config\" name=\"plugin_config\" rows=\"3\" spellcheck=\"false\"{}>{}</textarea>\
         <p class=\"help\">Secret values are shown hidden; left as shown, they stay as saved.</p>{}</div>",
        errors.marks("plugin_config"),
        esc(&form.plugin_config),
        errors.beside("plugin_config")
    );
    out.push_str(&select(
        "sample",
        "Preview with the sample event",
        form.sample().as_str(),
        &[
            ("action_inquiry.created", "action_inquiry.created"),
            ("action_inquiry.resolved", "action_inquiry.resolved"),
        ],
    ));
    out.push_str(
        "<div class=\"actions\"><button type=\"submit\" name=\"action\" value=\"save\" class=\"primary\">Save</button>\
         <button type=\"submit\" name=\"action\" value=\"preview\">Preview</button></div></div>",
    );
    out.push_str(&catalogue());
    let _ = write!(
        out,
        "</div></form><section id=\"preview\" aria-labelledby=\"preview-title\" aria-live=\"polite\">{preview}</section>"
    );
    Ok(out)
}

/// The placeholders, each a button the page's script inserts into the body at the cursor.
fn catalogue() -> String {
    let mut out = String::from(
        "<aside class=\"catalogue\" aria-labelledby=\"catalogue-title\"><h2 id=\"catalogue-title\">Placeholders</h2>\
         <p class=\"help\">Click one to insert it into the body at the cursor.</p><ul>",
    );
    for placeholder in CATALOGUE {
        let _ = write!(
            out,
            "<li><button type=\"button\" class=\"placeholder\" data-insert=\"{{{0}}}\">{{{0}}}</button> \
             <span class=\"type\">{1}</span><br><span class=\"help\">{2} e.g. <code>{3}</code></span></li>",
            esc(placeholder.name),
            esc(placeholder.ty.name()),
            esc(placeholder.description),
            esc(placeholder.example)
        );
    }
    out.push_str("</ul></aside>");
    out
}
