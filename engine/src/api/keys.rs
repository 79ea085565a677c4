//! Key management (the operator only): partner keys under `/v1/partners/{id}/keys`, ingest keys
//! under `/v1/ingest-keys`. A key's token is in the answer that creates it, and never again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{BadRequest, NotFound, PartnerPath, TooLarge, Unprocessable};
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

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_partner,
    list_partner,
    revoke_partner,
    create_ingest,
    list_ingest,
    revoke_ingest
))]
pub(super) struct Doc;

/// A list of keys, newest first.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the answer of the key listings in the OpenAPI document"
)]
struct Keys {
    keys: Vec<ApiKey>,
}

/// The body of `POST /v1/ingest-keys` (optional).
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the body `create_ingest` reads, in the OpenAPI document"
)]
struct NewIngestKey {
    /// The partners whose events the key may post (default: null, every partner).
    partners: Option<Vec<PartnerId>>,
}

/// The partner of the path, which must exist.
async fn existing(state: &AppState, id: &str) -> Result<(), ApiError> {
    match state.store.partner(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("no partner {id}"))),
    }
}

/// Creates a key for the partner; its token is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/keys",
    operation_id = "create_partner_key",
    tag = "keys",
    security(("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 201, description = "The key, with its token (shown once).", body = NewKey),
        (status = 404, response = NotFound),
    ),
)]
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

/// The partner's keys, revoked ones included; never their tokens.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/keys",
    operation_id = "list_partner_keys",
    tag = "keys",
    security(("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The keys.", body = Keys),
        (status = 404, response = NotFound),
    ),
)]
async fn list_partner(
    _: Operator,
    State(state): State<AppState>,
    Path(partner_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    existing(&state, &partner_id).await?;
    let keys: Vec<ApiKey> = state.store.keys(KeyKind::Partner, Some(&partner_id)).await?;
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct KeyPath {
    /// The partner's id, `ptn_…`.
    partner_id: String,
    /// The key's id, `key_…`.
    key_id: String,
}

/// The key of an ingest-key route.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path parameter in the OpenAPI document")]
struct IngestKeyPath {
    /// The key's id, `key_…`.
    key_id: String,
}

/// Revokes one of the partner's keys, at once.
#[utoipa::path(
    delete,
    path = "/v1/partners/{partner_id}/keys/{key_id}",
    operation_id = "revoke_partner_key",
    tag = "keys",
    security(("operator_token" = [])),
    params(KeyPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, response = NotFound),
    ),
)]
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
    state.revoked_everywhere(&path.key_id).await;
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

/// Creates an ingest key, for every partner or those it names; its token is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/ingest-keys",
    operation_id = "create_ingest_key",
    tag = "keys",
    security(("operator_token" = [])),
    request_body(content = Option<NewIngestKey>, description = "Optional; an empty body makes a key for every partner."),
    responses(
        (status = 201, description = "The key, with its token (shown once).", body = NewKey),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
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

/// The ingest keys, revoked ones included; never their tokens.
#[utoipa::path(
    get,
    path = "/v1/ingest-keys",
    operation_id = "list_ingest_keys",
    tag = "keys",
    security(("operator_token" = [])),
    responses((status = 200, description = "The keys.", body = Keys)),
)]
async fn list_ingest(_: Operator, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let keys = state.store.keys(KeyKind::Ingest, None).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// Revokes an ingest key, at once.
#[utoipa::path(
    delete,
    path = "/v1/ingest-keys/{key_id}",
    operation_id = "revoke_ingest_key",
    tag = "keys",
    security(("operator_token" = [])),
    params(IngestKeyPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, response = NotFound),
    ),
)]
async fn revoke_ingest(
    _: Operator,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let done = state.store.revoke_key(KeyKind::Ingest, None, &key_id, now_ms()).await?;
    state.revoked_everywhere(&key_id).await;
    revoked(done, &key_id)
}
