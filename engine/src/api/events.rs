//! `POST /v1/events` and `POST /v1/events/batch`: accept events; each request is one
//! transaction, so either every event in it is recorded with its deliveries, or none is.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, AppState, parse_json};
use crate::event::Event;
use crate::store::now_ms;

/// Most events in one batch.
pub const MAX_BATCH: usize = 5000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(accept_one).layer(DefaultBodyLimit::max(1 << 20)))
        .route(
            "/v1/events/batch",
            post(accept_batch).layer(DefaultBodyLimit::max(32 << 20)),
        )
}

async fn accept_one(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = Event::from_value(&parse_json(&body)?).map_err(|e| ApiError::invalid(e, ""))?;
    let accepted = state.store.accept(std::slice::from_ref(&event), now_ms()).await?;
    state.worker.wake();
    let accepted = accepted.into_iter().next().expect("one event in, one out");
    Ok((StatusCode::ACCEPTED, Json(json!(accepted))))
}

/// The body is `{"events": [...]}` or a bare array.
async fn accept_batch(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let json = parse_json(&body)?;
    let items = match &json {
        Value::Array(items) => items,
        Value::Object(object) => match object.get("events") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(ApiError::bad_request(
                    "the body must be {\"events\": [...]} or an array of events",
                ));
            }
        },
        _ => {
            return Err(ApiError::bad_request(
                "the body must be {\"events\": [...]} or an array of events",
            ));
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} events; this one holds {}",
            items.len()
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match Event::from_value(item) {
            Ok(event) => events.push(event),
            Err(invalid) => errors.extend(ApiError::invalid(invalid, &format!("events[{i}].")).into_errors()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(crate::error::Invalid(errors), ""));
    }
    let accepted = state.store.accept(&events, now_ms()).await?;
    state.worker.wake();
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": accepted}))))
}
