//! `/v1/partners/{partner_id}/deliveries`: the delivery log partners read, manual retries, and
//! replays of many deliveries at once.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{BadRequest, Conflict, NotFound, PartnerPath, TooLarge, Unprocessable};
use super::partners::Page;
use super::{ApiError, AppState, Partner, parse_json};
use crate::error::FieldError;
use crate::event::EventType;
use crate::store::{Attempt, Delivery, DeliveryFilter, Status, now_ms, rules};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners/{partner_id}/deliveries", get(list))
        .route("/v1/partners/{partner_id}/deliveries/replay", post(replay))
        .route("/v1/partners/{partner_id}/deliveries/{delivery_id}", get(show))
        .route("/v1/partners/{partner_id}/deliveries/{delivery_id}/retry", post(retry))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, replay, show, retry))]
pub(super) struct Doc;

/// A page of deliveries, newest first.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `list` in the OpenAPI document")]
struct DeliveryPage {
    data: Vec<Delivery>,
    /// The cursor of the next page (its `before`); null on the last page.
    next: Option<String>,
}

/// A delivery and every attempt made for it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `show` in the OpenAPI document")]
struct DeliveryLog {
    delivery: Delivery,
    attempts: Vec<Attempt>,
}

/// The body of `replay` (optional): which done deliveries to send again.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `replay` reads, in the OpenAPI document")]
struct ReplayInput {
    /// Created at or after: Unix ms or RFC 3339.
    #[schema(value_type = Option<String>)]
    since: Option<Value>,
    /// Created before: Unix ms or RFC 3339.
    #[schema(value_type = Option<String>)]
    until: Option<Value>,
    /// `delivered` or `failed` (default: both).
    status: Option<Status>,
    /// Only events of this type.
    event_type: Option<EventType>,
    /// The `next` of the previous replay, to replay the rest.
    after: Option<String>,
}

/// The answer of `replay`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `replay` in the OpenAPI document")]
struct Replayed {
    /// Deliveries due again now.
    queued: u64,
    /// The `after` that replays the rest; null when all were replayed.
    next: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only deliveries in this state (default: all).
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Only deliveries of events of this type.
    #[param(value_type = Option<EventType>)]
    event_type: Option<String>,
    /// Created at or after: Unix ms or RFC 3339.
    since: Option<String>,
    /// Created before: Unix ms or RFC 3339.
    until: Option<String>,
    /// Only deliveries of this inquiry.
    inquiry_id: Option<String>,
    /// Only deliveries of events with this `OrderId`.
    order_id: Option<String>,
    /// Cursor: the `next` of the previous page.
    before: Option<String>,
    /// Deliveries per page, 1 to 500 (default: 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A time given as Unix milliseconds or in RFC 3339.
fn time(field: &str, value: &str) -> Result<i64, FieldError> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|at| at.timestamp_millis())
        .map_err(|_| {
            FieldError::new(
                field,
                Some(value),
                "is not a time; give Unix milliseconds (1763647380000) or RFC 3339 (2026-11-20T14:03:00Z)",
            )
        })
}

/// A status name, if it is one.
fn status(field: &str, name: &str) -> Result<Status, FieldError> {
    Status::parse(name).ok_or_else(|| {
        FieldError::new(
            field,
            Some(name),
            "is not a delivery status; use pending, blocked, held, delivered or failed",
        )
    })
}

/// The filters of a listing or a replay, checked.
fn filter(
    status: Option<Status>,
    event_type: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<DeliveryFilter, FieldError> {
    let event_type = match event_type.filter(|t| !t.is_empty()) {
        None => None,
        Some(name) => Some(
            EventType::parse(name)
                .ok_or_else(|| {
                    FieldError::new(
                        "event_type",
                        Some(name),
                        "is not an event type; use action_inquiry.created or action_inquiry.resolved",
                    )
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let since = since.filter(|s| !s.is_empty()).map(|s| time("since", s)).transpose()?;
    let until = until.filter(|s| !s.is_empty()).map(|s| time("until", s)).transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(FieldError::new(
            "until",
            Some(&until.to_string()),
            format!("must be after since ({since}); the range takes since and stops before until"),
        ));
    }
    Ok(DeliveryFilter {
        status,
        event_type,
        since,
        until,
        ..DeliveryFilter::default()
    })
}

/// A partner's deliveries, newest first: `{"data": [...], "next": cursor}`, filtered by any of
/// `status`, `event_type`, `since` and `until` (on `created_at`; Unix ms or RFC 3339; since
/// included, until not), `inquiry_id` and `order_id`; page with `before=<next>`.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/deliveries",
    operation_id = "list_deliveries",
    tag = "deliveries",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, ListQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn list(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(name) => Some(status("status", name).map_err(ApiError::bad_query)?),
    };
    let mut filter = filter(
        status,
        query.event_type.as_deref(),
        query.since.as_deref(),
        query.until.as_deref(),
    )
    .map_err(ApiError::bad_query)?;
    filter.inquiry_id = query.inquiry_id.filter(|i| !i.is_empty());
    filter.order_id = query.order_id.filter(|o| !o.is_empty());
    let limit = Page {
        before: None,
        limit: query.limit,
    }
    .limit()?;
    let page = state
        .store
        .deliveries_where(&partner.id, &filter, query.before.as_deref(), limit)
        .await?;
    let next = if page.len() as i64 == limit {
        page.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(json!({"data": page, "next": next})))
}

/// Largest body of a replay: a few filters.
const REPLAY_BYTES: usize = 64 << 10;

/// Replays the partner's done deliveries: `{"since"?, "until"?, "status"?: "delivered" |
/// "failed", "event_type"?, "after"?}`. Each is due now again with the same id (the receiver
/// sees the same `webhook-id`) and gets a new attempt; pending, blocked and held ones are on
/// their way already and are left be. At most 10,000 (oldest first) per call: the answer's
/// `next`, when not null, is the `after` that replays the rest.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/deliveries/replay",
    operation_id = "replay_deliveries",
    tag = "deliveries",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Option<ReplayInput>, description = "Optional; an empty body replays every done delivery."),
    responses(
        (status = 202, description = "How many are due again, and where to go on.", body = Replayed),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn replay(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<REPLAY_BYTES>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    let Some(object) = input.as_object() else {
        return Err(ApiError::bad_request(
            "the body must be an object: {\"since\"?, \"until\"?, \"status\"?, \"event_type\"?, \"after\"?}",
        ));
    };
    let mut problems = Vec::new();
    let mut text = |field: &str| match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(n)) if field == "since" || field == "until" => Some(n.to_string()),
        Some(other) => {
            problems.push(FieldError::new(field, Some(&other.to_string()), "must be a string"));
            None
        }
    };
    let (status_name, event_type, since, until, after) = (
        text("status"),
        text("event_type"),
        text("since"),
        text("until"),
        text("after"),
    );
    let status = match status_name.as_deref() {
        None => None,
        Some(name) => match status("status", name) {
            Ok(status) if rules::REPLAYABLE.contains(&status) => Some(status),
            Ok(_) => {
                problems.push(FieldError::new(
                    "status",
                    Some(name),
                    "is on its way already; replay takes delivered or failed deliveries",
                ));
                None
            }
            Err(e) => {
                problems.push(e);
                None
            }
        },
    };
    let filter = match filter(status, event_type.as_deref(), since.as_deref(), until.as_deref()) {
        Ok(filter) => Some(filter),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let Some(filter) = filter.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid_counted(problems, 0));
    };
    let queued = state
        .store
        .replay(&partner.id, &filter, after.as_deref(), rules::MAX_REPLAY, now_ms())
        .await?;
    if !queued.is_empty() {
        state.wake_workers().await;
    }
    let next = if queued.len() as i64 == rules::MAX_REPLAY {
        queued.iter().max().cloned()
    } else {
        None
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"queued": queued.len(), "next": next})),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct DeliveryPath {
    /// The delivery's id, `dlv_…`.
    delivery_id: String,
}

/// A delivery and its attempts: each request as sent and the receiver's answer.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/deliveries/{delivery_id}",
    operation_id = "show_delivery",
    tag = "deliveries",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, DeliveryPath),
    responses(
        (status = 200, description = "The delivery and its attempts.", body = DeliveryLog),
        (status = 404, response = NotFound),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<DeliveryPath>,
) -> Result<Json<Value>, ApiError> {
    match state.store.delivery(&partner.id, &path.delivery_id).await? {
        Some((delivery, attempts)) => Ok(Json(json!({"delivery": delivery, "attempts": attempts}))),
        None => Err(ApiError::not_found(format!(
            "partner {} has no delivery {}",
            partner.id, path.delivery_id
        ))),
    }
}

/// Sends a delivered or failed delivery again, now.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/deliveries/{delivery_id}/retry",
    operation_id = "retry_delivery",
    tag = "deliveries",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, DeliveryPath),
    responses(
        (status = 202, description = "Due now.", body = Delivery),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn retry(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<DeliveryPath>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let delivery = retry_delivery(&state, &partner.id, &path.delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(delivery))))
}

/// Makes the partner's delivered or failed delivery `id` due now, or says why it cannot be:
/// what `retry` and the console's retry button both do.
pub(crate) async fn retry_delivery(state: &AppState, partner_id: &str, id: &str) -> Result<Delivery, ApiError> {
    match state.store.retry(partner_id, id, now_ms()).await? {
        Some(delivery) => {
            state.wake_workers().await;
            Ok(delivery)
        }
        None => match state.store.delivery(partner_id, id).await? {
            None => Err(ApiError::not_found(format!(
                "partner {partner_id} has no delivery {id}"
            ))),
            Some((delivery, _)) => Err(ApiError::conflict(format!(
                "delivery {} is {}: {}",
                delivery.id,
                delivery.status.as_str(),
                match delivery.status {
                    Status::Held => "the endpoint is disabled; re-enable it (POST .../settings/action-inquiry/enable)",
                    Status::Pending => "it is being sent right now; its attempt will show in the log",
                    _ => "it waits for the created postback of its inquiry",
                }
            ))),
        },
    }
}
