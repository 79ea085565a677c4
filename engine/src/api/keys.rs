//! Key management (the operator only): partner keys under `/v1/partners/{id}/keys`, ingest keys
//! under `/v1/ingest-keys`. A key's token is in the answer that creates it, and never again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::{ApiError, AppState, Operator, parse_json};
use crate::error::FieldError;
use crate::id::PartnerId;
use crate::store::{ApiKey, KeyKind, NewKey, now_ms};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners/{partner_id}/keys", get(list_partner).post(create_partner))
        .route("/v1/partners/{partner_id}/keys/{key_id}", delete(revoke_partner))
        .route("/v1/ingest-keys", get(list_ingest).post(create_ingest))
        .route("/v1/ingest-keys/{key_id}", delete(revoke_ingest))
}

/// The partner of the path, which must exist.
async fn existing(state: &AppState, id: &str) -> Result<(), ApiError> {
    match state.store.partner(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("no partner {id}"))),
    }
}

async fn create_partner(
    _: Operator,
    State(state): State<AppState>,
    Path(partner_id): Path<String>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    existing(&state, &partner_id).await?;
    let key = state
        .store
        .create_key(KeyKind::Partner, Some(&partner_id), None, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn list_partner(
    _: Operator,
    State(state): State<AppState>,
    Path(partner_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &partner_id).await?;
    let keys: Vec<ApiKey> = state.store.keys(KeyKind::Partner, Some(&partner_id)).await?;
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Deserialize)]
struct KeyPath {
    partner_id: String,
    key_id: String,
}

async fn revoke_partner(
    _: Operator,
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    existing(&state, &path.partner_id).await?;
    let done = state
        .store
        .revoke_key(KeyKind::Partner, Some(&path.partner_id), &path.key_id, now_ms())
        .await?;
    state.auth.forget(&path.key_id);
    revoked(done, &path.key_id)
}

fn revoked(done: bool, key_id: &str) -> Result<StatusCode, ApiError> {
    if done {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no key {key_id} that is not revoked")))
    }
}

/// `{}`, or `{"partners": ["ptn_…", …]}` to limit the key to those partners' events.
/// Largest body of `POST /v1/ingest-keys`: a list of partner ids.
const KEY_BYTES: usize = 1 << 20;

async fn create_ingest(
    _: Operator,
    State(state): State<AppState>,
    Body(body): Body<KEY_BYTES>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    let json = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    let partners = match json.get("partners") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut ids = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("partners[{i}]");
                let Some(id) = item.as_str() else {
                    return Err(ApiError::invalid(
                        FieldError::new(&field, Some(&item.to_string()), "must be a partner id").into(),
                        "",
                    ));
                };
                if state.store.partner(id).await?.is_none() {
                    return Err(ApiError::invalid(
                        FieldError::new(&field, Some(id), "names no partner").into(),
                        "",
                    ));
                }
                ids.push(PartnerId::from(id));
            }
            Some(ids)
        }
        Some(other) => {
            return Err(ApiError::invalid(
                FieldError::new(
                    "partners",
                    Some(&other.to_string()),
                    "must be a list of partner ids, or null for all",
                )
                .into(),
                "",
            ));
        }
    };
    let key = state
        .store
        .create_key(KeyKind::Ingest, None, partners, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn list_ingest(_: Operator, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keys = state.store.keys(KeyKind::Ingest, None).await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke_ingest(
    _: Operator,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let done = state.store.revoke_key(KeyKind::Ingest, None, &key_id, now_ms()).await?;
    state.auth.forget(&key_id);
    revoked(done, &key_id)
}
