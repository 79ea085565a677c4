//! `/v1/partners/{partner_id}/deliveries`: the delivery log partners read, and manual retries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, Partner};
use crate::store::{Status, now_ms};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners/{partner_id}/deliveries", get(list))
        .route("/v1/partners/{partner_id}/deliveries/{delivery_id}", get(show))
        .route("/v1/partners/{partner_id}/deliveries/{delivery_id}/retry", post(retry))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    /// Cursor: the `next` of the previous page.
    before: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(name) => Some(Status::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status {name:?} is not a delivery status; use pending, blocked, held, delivered or failed"
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range; use 1 to 500"
        )));
    }
    let page = state
        .store
        .deliveries(&partner.id, status, query.before.as_deref(), limit)
        .await?;
    let next = if page.len() as i64 == limit {
        page.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(json!({"data": page, "next": next})))
}

#[derive(Deserialize)]
struct DeliveryPath {
    delivery_id: String,
}

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

async fn retry(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<DeliveryPath>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match state.store.retry(&partner.id, &path.delivery_id, now_ms()).await? {
        Some(delivery) => {
            state.worker.wake();
            Ok((StatusCode::ACCEPTED, Json(json!(delivery))))
        }
        None => match state.store.delivery(&partner.id, &path.delivery_id).await? {
            None => Err(ApiError::not_found(format!(
                "partner {} has no delivery {}",
                partner.id, path.delivery_id
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
