//! `POST /v1/partners` (the operator): create a partner and its signing secret;
//! `GET /v1/partners/{id}` (the partner or the operator).

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

async fn show(Partner(partner): Partner) -> Json<store::Partner> {
    Json(partner)
}
