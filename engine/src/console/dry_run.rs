//! A plugin's dry run on its page: the form (a sample event of a chosen type or a pasted event,
//! optionally a pasted request, configuration and, for classifiers, the receiver's answer) and
//! what the run did. The run is the API's own ([`crate::api::run_plugin`]): the same checks,
//! the same count against `--tries-per-minute`, the same messages.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::Fields;
use super::html::{self, esc};
use crate::api::ApiError;
use crate::error::FieldError;
use crate::event::EventType;

/// The dry-run form's fields as text, as shown and as sent.
#[derive(Debug)]
pub(super) struct RunForm {
    event_type: String,
    event: String,
    request: String,
    config: String,
    response_status: String,
    response_body: String,
}

impl Default for RunForm {
    fn default() -> RunForm {
        RunForm {
            event_type: EventType::ActionInquiryCreated.as_str().to_owned(),
            event: String::new(),
            request: String::new(),
            config: String::new(),
            response_status: String::new(),
            response_body: String::new(),
        }
    }
}

impl RunForm {
    pub(super) fn read(fields: &Fields) -> RunForm {
        let text = |name: &str| fields.text(name).to_owned();
        RunForm {
            event_type: text("event_type"),
            event: text("event"),
            request: text("request"),
            config: text("config"),
            response_status: text("response_status"),
            response_body: text("response_body"),
        }
    }

    /// The body the API's dry run reads, or the fields whose pasted JSON is not JSON: those
    /// are the form's own problems, found before anything runs or counts as a try.
    pub(super) fn to_json(&self) -> Result<Value, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut object = Map::new();
        let mut pasted = |field: &str, text: &str, what: &str| {
            let text = text.trim();
            if text.is_empty() {
                return;
            }
            match serde_json::from_str::<Value>(text) {
                Ok(value) => {
                    object.insert(field.to_owned(), value);
                }
                Err(e) => problems.push(FieldError::new(
                    field,
                    Some(text),
                    format!("is not JSON ({e}); paste {what}, or leave it empty"),
                )),
            }
        };
        pasted("event", &self.event, "an event as POST /v1/events takes it");
        pasted(
            "request",
            &self.request,
            "a request as {\"method\", \"url\", \"headers\", \"body\"}",
        );
        pasted("config", &self.config, "the plugin's configuration as JSON");
        // Without a type (a form sent by hand), the API's default sample.
        if !object.contains_key("event") && !self.event_type.is_empty() {
            object.insert("event_type".into(), Value::String(self.event_type.clone()));
        }
        let status = self.response_status.trim();
        if !status.is_empty() || !self.response_body.is_empty() {
            let mut response = Map::new();
            if !status.is_empty() {
                // A number goes as a number; anything else as the text it is, for the API's
                // check to name.
                let value = status
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(status.into()));
                response.insert("status".into(), value);
            }
            response.insert("body".into(), Value::String(self.response_body.clone()));
            object.insert("response".into(), Value::Object(response));
        }
        if problems.is_empty() {
            Ok(Value::Object(object))
        } else {
            Err(problems)
        }
    }
}

/// The form fields an error of the dry run belongs beside; `""` for above the form.
pub(super) struct RunErrors(BTreeMap<&'static str, Vec<String>>);

impl RunErrors {
    pub(super) fn none() -> RunErrors {
        RunErrors(BTreeMap::new())
    }

    /// `errors` by form field; `classifies` places the run's own failure (reported as
    /// `response`) beside the receiver's answer, where a classifier's is fixed.
    pub(super) fn of(errors: &[FieldError], classifies: bool) -> RunErrors {
        let mut by_field = BTreeMap::<&'static str, Vec<String>>::new();
        for error in errors {
            let field = match error.field.as_str() {
                "response.status" => "response_status",
                "response" if classifies => "response_status",
                f if f == "event" || f.starts_with("event.") || f.starts_with("event[") => "event",
                "event_type" => "event_type",
                "request" => "request",
                "config" => "config",
                _ => "",
            };
            // The API names the run's own failure `response`; above the form, its words alone.
            let shown = if field.is_empty() && matches!(error.field.as_str(), "" | "response") {
                error.message.clone()
            } else {
                error.to_string()
            };
            by_field.entry(field).or_default().push(shown);
        }
        RunErrors(by_field)
    }

    /// Errors of no form field, as a notice above the form.
    pub(super) fn general(&self) -> String {
        match self.0.get("") {
            Some(messages) => html::notice("error", &format!("Not run: {}", messages.join("; "))),
            None => String::new(),
        }
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

/// The dry-run form of plugin `plugin_id`; the classifier's fields when it `classifies`.
pub(super) fn form(csrf: &str, plugin_id: &str, classifies: bool, form: &RunForm, errors: &RunErrors) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"/console/plugins/{}/run\" class=\"dry-run\">{}<h2>Dry run</h2>\
         <p class=\"help\">Runs the plugin as a postback would, on a sample event or one you paste, and \
         sends nothing. It counts against your tries per minute, as test postbacks do.</p>\
         <div class=\"field\"><label for=\"event_type\">Sample event</label>\
         <select id=\"event_type\" name=\"event_type\"{}>",
        esc(plugin_id),
        html::csrf_field(csrf),
        errors.marks("event_type")
    );
    for event in EventType::ALL {
        let selected = if event.as_str() == form.event_type {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", event.as_str());
    }
    let _ = write!(out, "</select>{}</div>", errors.beside("event_type"));
    let textarea = |out: &mut String, name: &str, label: &str, help: &str, rows: u8, value: &str| {
        let _ = write!(
            out,
            "<div class=\"field\"><label for=\"{name}\">{label}</label>\
             <textarea id=\"{name}\" name=\"{name}\" rows=\"{rows}\" spellcheck=\"false\"{}>{}</textarea>\
             <p class=\"help\">{help}</p>{}</div>",
            errors.marks(name),
            esc(value),
            errors.beside(name)
        );
    };
    textarea(
        &mut out,
        "event",
        "Event JSON (optional)",
        "An event as <code>POST /v1/events</code> takes it; empty: the sample above.",
        6,
        &form.event,
    );
    textarea(
        &mut out,
        "request",
        "Request JSON (optional)",
        "<code>{\"method\", \"url\", \"headers\", \"body\"}</code>; empty: the request your saved settings \
         render for the event.",
        4,
        &form.request,
    );
    textarea(
        &mut out,
        "config",
        "Plugin configuration JSON (optional)",
        "Empty: your saved <code>plugin_config</code>.",
        3,
        &form.config,
    );
    if classifies {
        let _ = write!(
            out,
            "<fieldset class=\"field\"><legend>The receiver's answer, to classify</legend>\
             <div class=\"field\"><label for=\"response_status\">Status</label>\
             <input id=\"response_status\" name=\"response_status\" inputmode=\"numeric\" value=\"{}\"{}>{}</div>",
            esc(&form.response_status),
            errors.marks("response_status"),
            errors.beside("response_status")
        );
        textarea(
            &mut out,
            "response_body",
            "Body",
            "What the receiver answered.",
            3,
            &form.response_body,
        );
        out.push_str("</fieldset>");
    }
    out.push_str("<button type=\"submit\" class=\"primary\">Dry run</button></form>");
    out
}

/// What a dry run did, as [`crate::api::run_plugin`] answers it: for each export its input and
/// output (transform) or verdict (classify), fuel, memory, time and logs, or its error.
pub(super) fn result(out_json: &Value) -> String {
    let mut out = String::from(
        "<section class=\"outcome\" aria-labelledby=\"result-title\"><h2 id=\"result-title\">Dry run result</h2>",
    );
    if let Some(report) = out_json.get("transform") {
        out.push_str("<div class=\"run transform\"><h3>Transform</h3>");
        facts(&mut out, report, None);
        if report["input"].is_object() {
            out.push_str("<h4>Request in</h4>");
            request(&mut out, "request-in", &report["input"]);
        }
        if report["output"].is_object() {
            out.push_str("<h4>Request out</h4>");
            request(&mut out, "request-out", &report["output"]);
        }
        logs(&mut out, report);
        out.push_str("</div>");
    }
    if let Some(report) = out_json.get("classify") {
        out.push_str("<div class=\"run classify\"><h3>Classify</h3>");
        facts(&mut out, report, report.get("output"));
        logs(&mut out, report);
        out.push_str("</div>");
    }
    out.push_str("</section>");
    out
}

fn facts(out: &mut String, report: &Value, verdict: Option<&Value>) {
    out.push_str("<dl class=\"facts\">");
    if let Some(verdict) = verdict {
        let name = verdict["verdict"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "<dt>Verdict</dt><dd><span class=\"verdict {0}\">{0}</span></dd>",
            esc(name)
        );
        if let Some(after) = verdict["after_secs"].as_u64() {
            let _ = write!(out, "<dt>Retry after</dt><dd>{after} s</dd>");
        }
        if let Some(reason) = verdict["reason"].as_str() {
            let _ = write!(out, "<dt>Reason</dt><dd>{}</dd>", esc(reason));
        }
    }
    if let Some(error) = report["error"].as_str() {
        let _ = write!(out, "<dt>Error</dt><dd class=\"run-error\">{}</dd>", esc(error));
    }
    if let Some(fuel) = report["fuel_used"].as_u64() {
        let _ = write!(out, "<dt>Fuel</dt><dd class=\"fuel\">{fuel}</dd>");
    }
    if let Some(bytes) = report["peak_memory"].as_u64() {
        let _ = write!(out, "<dt>Peak memory</dt><dd>{:.1} KiB</dd>", bytes as f64 / 1024.0);
    }
    if let Some(us) = report["duration_us"].as_u64() {
        let _ = write!(out, "<dt>Time</dt><dd>{:.3} ms</dd>", us as f64 / 1000.0);
    }
    out.push_str("</dl>");
}

fn request(out: &mut String, class: &str, request: &Value) {
    let _ = writeln!(
        out,
        "<pre class=\"request {class}\">{} {}",
        esc(request["method"].as_str().unwrap_or_default()),
        esc(request["url"].as_str().unwrap_or_default())
    );
    super::test_page::headers(out, &request["headers"]);
    if let Some(body) = request["body"].as_str().filter(|b| !b.is_empty()) {
        let _ = write!(out, "\n{}", esc(body));
    }
    out.push_str("</pre>");
}

fn logs(out: &mut String, report: &Value) {
    let lines = report["logs"].as_array().map(Vec::as_slice).unwrap_or_default();
    if lines.is_empty() {
        out.push_str("<p class=\"help\">No log lines.</p>");
        return;
    }
    out.push_str("<h4>Logs</h4><pre class=\"logs\">");
    for line in lines {
        let _ = writeln!(
            out,
            "{}: {}",
            esc(line["level"].as_str().unwrap_or_default()),
            esc(line["message"].as_str().unwrap_or_default())
        );
    }
    out.push_str("</pre>");
}

/// The problems of an API answer, as form errors: its field errors, or its detail.
pub(super) fn problems(error: &ApiError) -> Vec<FieldError> {
    if error.errors().is_empty() {
        vec![FieldError::new("", None, error.detail())]
    } else {
        error.errors().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> RunForm {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        RunForm::read(&Fields::parse(body.as_bytes()))
    }

    #[test]
    fn a_sample_unless_an_event_is_pasted() {
        let sample = form(&[("event_type", "action_inquiry.resolved")]).to_json().unwrap();
        assert_eq!(sample, serde_json::json!({"event_type": "action_inquiry.resolved"}));
        let pasted = form(&[("event_type", "action_inquiry.resolved"), ("event", "{\"id\": \"e\"}")])
            .to_json()
            .unwrap();
        assert_eq!(pasted, serde_json::json!({"event": {"id": "e"}}));
    }

    #[test]
    fn bad_pasted_json_is_the_fields_error() {
        let problems = form(&[("event", "{\"id\":"), ("config", "[1,"), ("request", "")])
            .to_json()
            .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["event", "config"]);
        assert!(problems[0].to_string().contains("is not JSON"), "{}", problems[0]);
        let errors = RunErrors::of(&problems, false);
        assert!(errors.beside("event").contains("id=\"event-error\""));
        assert!(errors.general().is_empty());
    }

    #[test]
    fn the_runs_own_failure_is_above_the_form_unless_a_classifier_answer_fixes_it() {
        let failure = [FieldError::new("response", None, "the plugin trapped")];
        let transform = RunErrors::of(&failure, false);
        assert_eq!(
            transform.general(),
            html::notice("error", "Not run: the plugin trapped")
        );
        let classifier = RunErrors::of(&failure, true);
        assert!(classifier.general().is_empty());
        assert!(
            classifier
                .beside("response_status")
                .contains("response: the plugin trapped")
        );
        let settings = RunErrors::of(&[FieldError::new("settings.url", None, "is not a URL")], false);
        assert!(settings.general().contains("settings.url: is not a URL"));
    }

    #[test]
    fn a_response_goes_with_its_status_as_given() {
        let json = form(&[("response_status", "200"), ("response_body", "{\"status\":\"ok\"}")])
            .to_json()
            .unwrap();
        assert_eq!(
            json["response"],
            serde_json::json!({"status": 200, "body": "{\"status\":\"ok\"}"})
        );
        let json = form(&[("response_status", "two hundred")]).to_json().unwrap();
        assert_eq!(json["response"]["status"], "two hundred");
    }

    #[test]
    fn what_the_run_shows_is_escaped() {
        let shown = result(&serde_json::json!({
            "transform": {"fuel_used": 10, "peak_memory": 2048, "duration_us": 1500,
                "logs": [{"level": "info", "message": "<b>"}],
                "input": {"method": "POST", "url": "https://r.example/<x>", "headers": [], "body": "<i>"},
                "output": {"method": "POST", "url": "https://r.example/", "headers": [["A", "<c>"]], "body": "</pre>"}},
            "classify": {"output": {"verdict": "fail", "reason": "<no>"}},
        }));
        for raw in ["<b>", "<x>", "<i>", "<c>", "<no>", "</pre>\n"] {
            assert!(!shown.contains(raw), "{raw} unescaped in {shown}");
        }
        assert!(shown.contains("&lt;/pre&gt;") && shown.contains("class=\"verdict fail\""));
    }
}
