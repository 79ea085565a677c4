//! `POST /v1/events` and `POST /v1/events/batch`: accept events; each request is one
//! transaction, so either every event in it is recorded with its deliveries, or none is.
//!
//! Ingest keys and the operator post events. An ingest key limited to some partners gets 403
//! for an event of another partner; a batch holding any such event is refused whole, naming
//! each of them. (403, not 404: the platform's ingest key is not a tenant, and partner ids are
//! its own data.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::body::Body;
use super::error::MAX_ERRORS;
use super::openapi::{BadRequest, Forbidden, TooLarge, Unprocessable};
use super::{ApiError, AppState, Caller, Ingest, parse_json};
use crate::error::Invalid;
use crate::event::Event;
use crate::store::Accepted;

/// Most events in one batch.
pub const MAX_BATCH: usize = 5000;

/// Largest body of `POST /v1/events`.
const EVENT_BYTES: usize = 1 << 20;

/// Largest body of `POST /v1/events/batch`.
const BATCH_BYTES: usize = 32 << 20;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(accept_one))
        .route("/v1/events/batch", post(accept_batch))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(accept_one, accept_batch))]
pub(super) struct Doc;

/// An event as the platform posts it.
#[derive(utoipa::ToSchema)]
#[schema(as = Event)]
#[allow(dead_code, reason = "describes the body `accept_one` reads, in the OpenAPI document")]
struct EventIn {
    /// The platform's id of the event, at most 128 bytes. With `partner_id`, the idempotency
    /// key: the same event posted again is recorded once.
    #[schema(max_length = 128)]
    id: String,
    /// What happened.
    #[schema(rename = "type")]
    event_type: crate::event::EventType,
    /// The partner whose postback this is, `ptn_…`.
    #[schema(max_length = 128)]
    partner_id: String,
    /// When it happened: RFC 3339 with an offset, e.g. `2026-11-20T14:03:00Z`.
    #[schema(format = DateTime)]
    occurred_at: String,
    data: EventData,
}

/// The values of the event's placeholders, by name (the placeholder catalogue's data fields).
/// `action_inquiry.created` needs `ActionInquiryId`; `action_inquiry.resolved` needs
/// `ActionInquiryId` and `ResolutionStatus`.
struct EventData;

impl utoipa::PartialSchema for EventData {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use crate::catalogue::{CATALOGUE, FieldType, MAX_TEXT_LEN, Source};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
        let mut object = ObjectBuilder::new().schema_type(Type::Object).description(Some(
            "The values of the event's placeholders, by name. `action_inquiry.created` needs \
             `ActionInquiryId`; `action_inquiry.resolved` needs `ActionInquiryId` and `ResolutionStatus`.",
        ));
        for placeholder in CATALOGUE.iter().filter(|p| p.source == Source::Data) {
            let field = ObjectBuilder::new()
                .description(Some(placeholder.description))
                .examples([placeholder.example]);
            let field = match placeholder.ty {
                FieldType::Text => field.schema_type(Type::String).max_length(Some(MAX_TEXT_LEN)),
                FieldType::Id => field.schema_type(SchemaType::from_iter([Type::String, Type::Integer])),
                FieldType::Amount => field.schema_type(SchemaType::from_iter([Type::String, Type::Number])),
                FieldType::Currency => field.schema_type(Type::String).pattern(Some("^[A-Z]{3}$")),
                FieldType::Timestamp => field
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                FieldType::Enum(words) => field.schema_type(Type::String).enum_values(Some(words.iter().copied())),
            };
            object = object.property(placeholder.name, field);
        }
        object.into()
    }
}

impl utoipa::ToSchema for EventData {}

/// Accepts one event and records its deliveries.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "accept_event",
    tag = "events",
    security(("ingest_key" = []), ("operator_token" = [])),
    request_body = EventIn,
    responses(
        (status = 202, description = "Accepted (or accepted before: `duplicate`).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn accept_one(
    Ingest(caller): Ingest,
    State(state): State<AppState>,
    Body(body): Body<EVENT_BYTES>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = read_event(&body)?.map_err(|e| ApiError::invalid(e, ""))?;
    if !caller.may_post_for(&event.partner_id) {
        return Err(ApiError::forbidden(format!(
            "this ingest key may not post events for partner {}",
            event.partner_id
        )));
    }
    let accepted = state.worker.accept(vec![event]).await?;
    let accepted = accepted.into_iter().next().expect("one event in, one out");
    Ok((StatusCode::ACCEPTED, Json(json!(accepted))))
}

/// One event from its JSON text: read directly when it is a plain valid envelope (and then
/// stored as sent), else as a JSON tree, which names every problem.
fn read_event(text: &[u8]) -> Result<Result<Event, Invalid>, ApiError> {
    match std::str::from_utf8(text).ok().and_then(Event::from_valid_json_kept) {
        Some(event) => Ok(Ok(event)),
        None => Ok(Event::from_value(&parse_json(text)?)),
    }
}

/// `{"events": [...]}`, each event left as text to read on its own.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = EventBatch)]
struct Wrapped<'a> {
    /// 1 to 5000 events.
    #[serde(borrow)]
    #[schema(value_type = Vec<EventIn>, min_items = 1, max_items = 5000)]
    events: Vec<&'a RawValue>,
}

/// Accepts up to 5,000 events in one transaction: all or none. The body is `{"events": [...]}` or
/// a bare array.
#[utoipa::path(
    post,
    path = "/v1/events/batch",
    operation_id = "accept_events",
    tag = "events",
    security(("ingest_key" = []), ("operator_token" = [])),
    request_body(content = Wrapped, description = "`{\"events\": [...]}`, or the array of events alone."),
    responses(
        (status = 202, description = "Every event accepted, in the order sent.", body = Batch),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn accept_batch(
    Ingest(caller): Ingest,
    State(state): State<AppState>,
    Body(body): Body<BATCH_BYTES>,
) -> Result<(StatusCode, Json<Batch>), ApiError> {
    // The events' texts without a JSON tree; a body that is not plainly one of the two shapes
    // is read as a tree, which explains what is wrong.
    let items: Option<Vec<&RawValue>> =
        std::str::from_utf8(&body)
            .ok()
            .and_then(|text| match text.trim_start().as_bytes().first() {
                Some(b'[') => serde_json::from_str(text).ok(),
                Some(b'{') => serde_json::from_str::<Wrapped>(text).ok().map(|w| w.events),
                _ => None,
            });
    let events = match items {
        Some(items) => read_all(&items, |item| read_event(item.get().as_bytes()))?,
        None => {
            let json = parse_json(&body)?;
            let items = match &json {
                Value::Array(items) => items,
                Value::Object(object) => match object.get("events") {
                    Some(Value::Array(items)) => items,
                    _ => return Err(ApiError::bad_request(BATCH_SHAPE)),
                },
                _ => return Err(ApiError::bad_request(BATCH_SHAPE)),
            };
            read_all(items, |item| Ok(Event::from_value(item)))?
        }
    };
    refuse_others(&caller, &events)?;
    let accepted = state.worker.accept(events).await?;
    Ok((StatusCode::ACCEPTED, Json(Batch { accepted })))
}

/// Refuses a batch holding any event of a partner the caller may not post for, naming each.
fn refuse_others(caller: &Caller, events: &[Event]) -> Result<(), ApiError> {
    if let Caller::Operator = caller {
        return Ok(());
    }
    let refused: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| !caller.may_post_for(&event.partner_id))
        .map(|(i, event)| format!("events[{i}] (partner {})", event.partner_id))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "this ingest key may not post events for the partners of {}; nothing was accepted",
        refused.join(", ")
    )))
}

/// The answer to a batch.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AcceptedBatch)]
struct Batch {
    accepted: Vec<Accepted>,
}

const BATCH_SHAPE: &str = "the body must be {\"events\": [...]} or an array of events";

/// Every event of a batch, or every problem, each named by the event's place.
fn read_all<T>(
    items: &[T],
    read: impl Fn(&T) -> Result<Result<Event, Invalid>, ApiError>,
) -> Result<Vec<Event>, ApiError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} events; this one holds {}",
            items.len()
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    // The first errors, named, and a count of the others: an answer lists at most
    // `MAX_ERRORS`, so naming more would be wasted work.
    let mut errors = Vec::new();
    let mut left_out = 0;
    for (i, item) in items.iter().enumerate() {
        match read(item)? {
            Ok(event) => events.push(event),
            Err(invalid) => {
                let room = MAX_ERRORS.saturating_sub(errors.len());
                left_out += invalid.0.len().saturating_sub(room);
                errors.extend(invalid.0.into_iter().take(room).map(|mut e| {
                    e.field = format!("events[{i}].{}", e.field);
                    e
                }));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_counted(errors, left_out));
    }
    Ok(events)
}
