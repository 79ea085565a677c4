//! *Postback log*: the partner's deliveries with their status, event, inquiry and order, attempts
//! and next retry; filters; one delivery's attempts in full; retry and replay; and a chart of
//! postbacks per hour by outcome. Every read is the store's, scoped to the signed-in partner.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::chart;
use super::html::{self, Nav, esc};
use super::session::PartnerPage;
use super::{Console, Failure, Fields, page};
use crate::api::{ApiError, retry_delivery};
use crate::event::EventType;
use crate::store::{DeliveryFilter, Status, now_ms, rules};

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/log", get(list))
        .route("/console/log/replay", post(replay))
        .route("/console/log/{delivery_id}", get(show))
        .route("/console/log/{delivery_id}/retry", post(retry))
}

/// Deliveries a page lists.
const PAGE: i64 = 50;

/// The statuses, in the order the filter offers them.
const STATUSES: [Status; 5] = [
    Status::Pending,
    Status::Blocked,
    Status::Held,
    Status::Delivered,
    Status::Failed,
];

#[derive(Deserialize, Default)]
struct Filters {
    status: Option<String>,
    event_type: Option<String>,
    inquiry_id: Option<String>,
    order_id: Option<String>,
    before: Option<String>,
    notice: Option<String>,
}

impl Filters {
    /// The store's filter, or the field at fault.
    fn filter(&self) -> Result<DeliveryFilter, String> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let status = match given(&self.status) {
            None => None,
            Some(name) => Some(Status::parse(&name).ok_or_else(|| {
                format!("status: {name:?} is not a delivery status; pick pending, blocked, held, delivered or failed")
            })?),
        };
        let event_type = match given(&self.event_type) {
            None => None,
            Some(name) => Some(
                EventType::parse(&name)
                    .ok_or_else(|| {
                        format!("event_type: {name:?} is not an event type; pick action_inquiry.created or action_inquiry.resolved")
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };
        Ok(DeliveryFilter {
            status,
            event_type,
            inquiry_id: given(&self.inquiry_id),
            order_id: given(&self.order_id),
            ..DeliveryFilter::default()
        })
    }

    /// The query string of these filters, to page on with them.
    fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("event_type", &self.event_type),
            ("inquiry_id", &self.inquiry_id),
            ("order_id", &self.order_id),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }
}

async fn list(
    State(console): State<Console>,
    page_of: PartnerPage,
    Query(filters): Query<Filters>,
) -> Result<Response, Failure> {
    let partner = &page_of.partner.id;
    let mut out = match filters.notice.as_deref() {
        Some("replayed") => html::notice("ok", "Replay queued: the done deliveries chosen are due again now."),
        Some("retried") => html::notice("ok", "Retry queued: the delivery is due again now."),
        _ => String::new(),
    };
    let store = &console.app.store;
    let hours = chart::hours(store, partner, now_ms()).await.map_err(ApiError::from)?;
    out.push_str(&chart::svg(&hours));
    out.push_str(&filter_form(&filters));
    let (status, rows) = match filters.filter() {
        Ok(filter) => {
            let rows = store
                .deliveries_where(
                    partner,
                    &filter,
                    filters.before.as_deref().filter(|b| !b.is_empty()),
                    PAGE,
                )
                .await
                .map_err(ApiError::from)?;
            (StatusCode::OK, Some(rows))
        }
        Err(message) => {
            out.push_str(&html::notice("error", &message));
            (StatusCode::BAD_REQUEST, None)
        }
    };
    if let Some(rows) = rows {
        if rows.is_empty() {
            out.push_str("<p>No postbacks match.</p>");
        } else {
            out.push_str(
                "<div class=\"scroll\"><table class=\"log\"><caption>Postbacks, newest first</caption><thead><tr>\
                 <th scope=\"col\">Delivery</th><th scope=\"col\">Status</th><th scope=\"col\">Event</th>\
                 <th scope=\"col\">Inquiry</th><th scope=\"col\">Order</th><th scope=\"col\">Attempts</th>\
                 <th scope=\"col\">Next retry</th><th scope=\"col\">Created</th></tr></thead><tbody>",
            );
            for d in &rows {
                let next = if d.status == Status::Pending {
                    html::time(d.next_at)
                } else {
                    "-".into()
                };
                let _ = write!(
                    out,
                    "<tr><td><a href=\"/console/log/{0}\"><code>{0}</code></a></td>\
                     <td><span class=\"verdict {1}\">{1}</span></td><td>{2}</td><td>{3}</td><td>{4}</td>\
                     <td>{5}</td><td>{6}</td><td>{7}</td></tr>",
                    esc(&d.id),
                    d.status.as_str(),
                    esc(&d.event_type),
                    esc(&d.inquiry_id),
                    esc(d.order_id.as_deref().unwrap_or("-")),
                    d.attempts,
                    next,
                    html::time(d.created_at)
                );
            }
            out.push_str("</tbody></table></div>");
            if rows.len() as i64 == PAGE
                && let Some(last) = rows.last()
            {
                let mut query = filters.query();
                if !query.is_empty() {
                    query.push('&');
                }
                let _ = write!(
                    out,
                    "<p><a href=\"/console/log?{}before={}\">Older postbacks</a></p>",
                    esc(&query),
                    esc(&last.id)
                );
            }
        }
    }
    out.push_str(&replay_form(&page_of));
    Ok((
        status,
        page(html::page("Postback log", Nav::Log, Some(&page_of.who()), &out)),
    )
        .into_response())
}

fn filter_form(filters: &Filters) -> String {
    let mut out = String::from(
        "<form method=\"get\" action=\"/console/log\" class=\"filters\"><div class=\"field\">\
         <label for=\"status\">Status</label><select id=\"status\" name=\"status\"><option value=\"\">any</option>",
    );
    for status in STATUSES {
        let selected = if filters.status.as_deref() == Some(status.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", status.as_str());
    }
    out.push_str(
        "</select></div><div class=\"field\"><label for=\"event_type\">Event type</label>\
         <select id=\"event_type\" name=\"event_type\"><option value=\"\">any</option>",
    );
    for event in EventType::ALL {
        let selected = if filters.event_type.as_deref() == Some(event.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", event.as_str());
    }
    let _ = write!(
        out,
        "</select></div><div class=\"field\"><label for=\"inquiry_id\">Inquiry id</label>\
         <input id=\"inquiry_id\" name=\"inquiry_id\" value=\"{}\"></div>\
         <div class=\"field\"><label for=\"order_id\">Order id</label>\
         <input id=\"order_id\" name=\"order_id\" value=\"{}\"></div>\
         <div class=\"actions\"><button type=\"submit\">Filter</button> <a href=\"/console/log\">Clear</a></div></form>",
        esc(filters.inquiry_id.as_deref().unwrap_or_default()),
        esc(filters.order_id.as_deref().unwrap_or_default())
    );
    out
}

fn replay_form(page_of: &PartnerPage) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"/console/log/replay\" class=\"replay\">{}<h2>Replay</h2>\
         <p class=\"help\">Sends done postbacks again, with the same <code>webhook-id</code>, up to {} at a time \
         (oldest first).</p><div class=\"field\"><label for=\"replay-status\">Which</label>\
         <select id=\"replay-status\" name=\"status\"><option value=\"\">delivered and failed</option>\
         <option value=\"failed\">failed</option><option value=\"delivered\">delivered</option></select></div>\
         <div class=\"field\"><label for=\"replay-type\">Event type</label><select id=\"replay-type\" name=\"event_type\">\
         <option value=\"\">any</option>",
        html::csrf_field(&page_of.signed.session.csrf),
        rules::MAX_REPLAY
    );
    for event in EventType::ALL {
        let _ = write!(out, "<option value=\"{0}\">{0}</option>", event.as_str());
    }
    out.push_str("</select></div><button type=\"submit\">Replay</button></form>");
    out
}

async fn replay(State(console): State<Console>, page_of: PartnerPage, body: Bytes) -> Result<Response, Failure> {
    let fields = Fields::parse(&body);
    let filters = Filters {
        status: fields.get("status").map(str::to_owned),
        event_type: fields.get("event_type").map(str::to_owned),
        ..Filters::default()
    };
    let filter = filters
        .filter()
        .map_err(|message| Failure::page(StatusCode::UNPROCESSABLE_ENTITY, message))?;
    if filter.status.is_some_and(|s| !rules::REPLAYABLE.contains(&s)) {
        return Err(Failure::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status: replay takes delivered or failed postbacks; the others are on their way already",
        ));
    }
    let queued = console
        .app
        .store
        .replay(&page_of.partner.id, &filter, None, rules::MAX_REPLAY, now_ms())
        .await
        .map_err(ApiError::from)?;
    if !queued.is_empty() {
        console.app.wake_workers().await;
    }
    Ok(Failure::redirect("/console/log?notice=replayed").into_response())
}

async fn show(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let Some((d, attempts)) = console
        .app
        .store
        .delivery(&page_of.partner.id, &id)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(no_postback());
    };
    let mut out = format!(
        "<p><a href=\"/console/log\">Back to the log</a></p><dl class=\"facts\">\
         <dt>Delivery</dt><dd><code>{id}</code></dd><dt>Status</dt><dd><span class=\"verdict {status}\">{status}</span></dd>\
         <dt>Event</dt><dd>{event_type} <code>{event_id}</code></dd><dt>Inquiry</dt><dd>{inquiry}</dd>\
         <dt>Order</dt><dd>{order}</dd><dt>Attempts</dt><dd>{attempts}</dd><dt>Created</dt><dd>{created}</dd>",
        id = esc(&d.id),
        status = d.status.as_str(),
        event_type = esc(&d.event_type),
        event_id = esc(&d.event_id),
        inquiry = esc(&d.inquiry_id),
        order = esc(d.order_id.as_deref().unwrap_or("-")),
        attempts = d.attempts,
        created = html::time(d.created_at)
    );
    if d.status == Status::Pending {
        let _ = write!(out, "<dt>Next attempt</dt><dd>{}</dd>", html::time(d.next_at));
    }
    if let Some(error) = &d.last_error {
        let _ = write!(out, "<dt>Last error</dt><dd>{}</dd>", esc(error));
    }
    out.push_str("</dl>");
    if rules::REPLAYABLE.contains(&d.status) {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/log/{}/retry\">{}<button type=\"submit\">Retry now</button></form>",
            esc(&d.id),
            html::csrf_field(&page_of.signed.session.csrf)
        );
    }
    for attempt in &attempts {
        let request: Value = serde_json::from_str(attempt.request.get()).unwrap_or(Value::Null);
        let response = match attempt.response_status {
            Some(status) => serde_json::json!({
                "status": status,
                "headers": attempt
                    .response_headers
                    .as_ref()
                    .and_then(|h| serde_json::from_str::<Value>(h.get()).ok())
                    .unwrap_or(Value::Null),
                "body": attempt.response_body,
            }),
            None => Value::Null,
        };
        let _ = write!(
            out,
            "<section class=\"attempt\"><h2>Attempt {number} <span class=\"verdict {verdict}\">{verdict}</span></h2>\
             <p class=\"help\">{started} · {duration} ms{error}</p>{exchange}</section>",
            number = attempt.number,
            verdict = attempt.verdict.as_str(),
            started = html::time(attempt.started_at),
            duration = attempt.duration_ms,
            error = match &attempt.error {
                Some(error) => format!(" · {}", esc(error)),
                None => String::new(),
            },
            exchange = super::test_page::exchange(&request, &response)
        );
    }
    if attempts.is_empty() {
        out.push_str("<p>No attempt yet.</p>");
    }
    Ok(page(html::page("Postback", Nav::Log, Some(&page_of.who()), &out)).into_response())
}

async fn retry(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    retry_delivery(&console.app, &page_of.partner.id, &id)
        .await
        .map_err(|e| match e.status() {
            StatusCode::NOT_FOUND => no_postback(),
            _ => e.into(),
        })?;
    Ok(Failure::redirect(&format!(
        "/console/log/{}",
        percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
    ))
    .into_response())
}

/// 404 for a postback that is not the partner's: the id asked for is not repeated, so that a
/// page never shows another partner's ids, not even those typed into its address.
fn no_postback() -> Failure {
    Failure::page(
        StatusCode::NOT_FOUND,
        "There is no such postback of yours; pick one from the postback log.",
    )
}
