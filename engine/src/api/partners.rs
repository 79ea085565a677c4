//! `POST /v1/partners` (the operator): create a partner and its signing secret;
//! `GET /v1/partners/{id}` and `POST /v1/partners/{id}/secret/rotate` (the partner or the
//! operator).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::body::Body;
use super::{ApiError, AppState, Operator, Partner, parse_json};
use crate::error::FieldError;
use crate::store;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners", post(create))
        .route("/v1/partners/{partner_id}", get(show))
        .route("/v1/partners/{partner_id}/secret/rotate", post(rotate))
}

/// The answer of `POST /v1/partners`: the partner and, this once, its signing secret.
#[derive(serde::Serialize)]
struct Created {
    #[serde(flatten)]
    partner: store::Partner,
    secret: String,
}

/// Largest body of `POST /v1/partners`: a name and little else.
const PARTNER_BYTES: usize = 64 << 10;

async fn create(
    _: Operator,
    State(state): State<AppState>,
    Body(body): Body<PARTNER_BYTES>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let json = if body.is_empty() {
        serde_json::json!({})
    } else {
        parse_json(&body)?
    };
    let name = match json.get("name") {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(name)) if name.len() <= 200 => name.as_str(),
        Some(other) => {
            return Err(ApiError::invalid(
                FieldError::new(
                    "name",
                    Some(&other.to_string()),
                    "must be a string of at most 200 bytes",
                )
                .into(),
                "",
            ));
        }
    };
    let key = &state.secret_key;
    let partner = state.store.create_partner(name, |secret| key.seal(secret)).await?;
    let secret = partner.secret.clone();
    Ok((StatusCode::CREATED, Json(Created { partner, secret })))
}

/// How long the previous secret still signs after a rotation unless the request says.
const DEFAULT_GRACE_SECS: u64 = 86_400;

/// Longest grace period accepted: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 86_400;

/// Gives the partner a new signing secret, shown this once; postbacks carry the previous
/// secret's signature too until the grace period (`grace_secs`, default 24 h, 0 for none) ends.
async fn rotate(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<PARTNER_BYTES>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let json = if body.is_empty() {
        serde_json::json!({})
    } else {
        parse_json(&body)?
    };
    let grace_secs = match json.get("grace_secs") {
        None | Some(serde_json::Value::Null) => DEFAULT_GRACE_SECS,
        Some(value) => value.as_u64().filter(|s| *s <= MAX_GRACE_SECS).ok_or_else(|| {
            ApiError::invalid(
                FieldError::new(
                    "grace_secs",
                    Some(&value.to_string()),
                    "must be a whole number of seconds from 0 to 2592000",
                )
                .into(),
                "",
            )
        })?,
    };
    let secret = crate::sign::new_secret();
    let until = store::now_ms() + grace_secs as i64 * 1000;
    let found = state
        .store
        .rotate_secret(&partner.id, &state.secret_key.seal(&secret), until)
        .await?;
    if !found {
        return Err(ApiError::not_found("no such partner"));
    }
    state.worker.forget_endpoint(&partner.id);
    Ok(Json(serde_json::json!({
        "id": partner.id,
        "secret": secret,
        "previous_secret_expires_at": until,
    })))
}

async fn show(Partner(partner): Partner) -> Json<store::Partner> {
    Json(partner)
}
