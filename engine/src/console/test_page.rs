//! *Test postback*: one button that sends a postback of the saved settings for a sample event
//! now, and shows the request sent, the receiver's status, headers and body, the duration and
//! the verdict: what the API's test route does ([`crate::api::test_postback`]).

use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::html::{self, Nav, esc};
use super::session::PartnerPage;
use super::{Console, Failure, Fields, page};
use crate::api::test_postback;
use crate::event::EventType;

pub(super) fn router() -> Router<Console> {
    Router::new().route("/console/test", get(show).post(send))
}

fn form(page_of: &PartnerPage, chosen: EventType) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"/console/test\" class=\"narrow\">{}\
         <p class=\"help\">Sends one postback of your saved settings, built from a sample event, to your \
         endpoint now. It is not a delivery: it is not retried and not in the log.</p>\
         <label for=\"type\">Sample event</label><select id=\"type\" name=\"type\">",
        html::csrf_field(&page_of.signed.session.csrf)
    );
    for event in EventType::ALL {
        let selected = if event == chosen { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", event.as_str());
    }
    out.push_str("</select><button type=\"submit\" class=\"primary\">Send test postback</button></form>");
    out
}

async fn show(page_of: PartnerPage) -> Response {
    let body = form(&page_of, EventType::ActionInquiryCreated);
    page(html::page("Test postback", Nav::Test, Some(&page_of.who()), &body)).into_response()
}

async fn send(State(console): State<Console>, page_of: PartnerPage, body: Bytes) -> Result<Response, Failure> {
    let fields = Fields::parse(&body);
    let Some(event_type) = EventType::parse(fields.text("type")) else {
        return Err(Failure::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "type: {:?} is not an event type; pick action_inquiry.created or action_inquiry.resolved",
                fields.text("type")
            ),
        ));
    };
    let mut out = form(&page_of, event_type);
    let status = match test_postback(&console.app, &page_of.partner, event_type).await {
        Ok(outcome) => {
            out.push_str(&outcome_html(&outcome));
            StatusCode::OK
        }
        Err(e) => {
            out.push_str(&html::notice("error", e.detail()));
            e.status()
        }
    };
    Ok((
        status,
        page(html::page("Test postback", Nav::Test, Some(&page_of.who()), &out)),
    )
        .into_response())
}

/// What a test postback did, as [`test_postback`] answers it.
fn outcome_html(outcome: &Value) -> String {
    let verdict = outcome["verdict"].as_str().unwrap_or_default();
    let mut out = format!(
        "<section class=\"outcome\" aria-labelledby=\"outcome-title\"><h2 id=\"outcome-title\">Result</h2>\
         <dl class=\"facts\"><dt>Verdict</dt><dd><span class=\"verdict {0}\">{0}</span></dd>",
        esc(verdict)
    );
    match outcome["response"].as_object() {
        Some(response) => {
            let _ = write!(
                out,
                "<dt>Status</dt><dd class=\"status\">{}</dd>",
                esc(&response["status"].to_string())
            );
        }
        None => out.push_str("<dt>Status</dt><dd>no answer</dd>"),
    }
    if let Some(ms) = outcome["duration_ms"].as_i64() {
        let _ = write!(out, "<dt>Duration</dt><dd>{ms} ms</dd>");
    }
    if let Some(after) = outcome["retry_after_secs"].as_u64() {
        let _ = write!(out, "<dt>Retry after</dt><dd>{after} s</dd>");
    }
    if let Some(error) = outcome["error"].as_str() {
        let _ = write!(out, "<dt>Error</dt><dd>{}</dd>", esc(error));
    }
    out.push_str("</dl>");
    out.push_str(&exchange(&outcome["request"], &outcome["response"]));
    out.push_str("</section>");
    out
}

/// A request as sent and the answer to it, as the attempt log and test postbacks record them.
pub fn exchange(request: &Value, response: &Value) -> String {
    let mut out = String::new();
    if request.is_object() {
        let _ = writeln!(
            out,
            "<h3>Request sent</h3><pre class=\"request\">{} {}",
            esc(request["method"].as_str().unwrap_or_default()),
            esc(request["url"].as_str().unwrap_or_default())
        );
        headers(&mut out, &request["headers"]);
        if let Some(body) = request["body"].as_str().filter(|b| !b.is_empty()) {
            let _ = write!(out, "\n{}", esc(body));
        }
        out.push_str("</pre>");
    }
    if response.is_object() {
        let _ = writeln!(
            out,
            "<h3>Response</h3><pre class=\"response\">{}",
            esc(&response["status"].to_string())
        );
        headers(&mut out, &response["headers"]);
        if let Some(body) = response["body"].as_str().filter(|b| !b.is_empty()) {
            let _ = write!(out, "\n{}", esc(body));
        }
        out.push_str("</pre>");
    }
    out
}

/// Headers as the log holds them: an object, or a list of name and value pairs.
pub(super) fn headers(out: &mut String, headers: &Value) {
    match headers {
        Value::Object(map) => {
            for (name, value) in map {
                let _ = writeln!(
                    out,
                    "{}: {}",
                    esc(name),
                    esc(value.as_str().unwrap_or(&value.to_string()))
                );
            }
        }
        Value::Array(pairs) => {
            for pair in pairs {
                let name = pair.get(0).and_then(Value::as_str).unwrap_or_default();
                let value = pair.get(1).and_then(Value::as_str).unwrap_or_default();
                let _ = writeln!(out, "{}: {}", esc(name), esc(value));
            }
        }
        _ => {}
    }
}
