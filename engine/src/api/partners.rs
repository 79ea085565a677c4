//! Partners. The operator creates (`POST /v1/partners`, with its signing secret), lists
//! (`GET /v1/partners`), disables, enables and deletes them; `GET /v1/partners/{id}` and
//! `POST /v1/partners/{id}/secret/rotate` are the partner's or the operator's.
//!
//! A disabled partner's keys answer 403, and its postbacks are held: those pending when it is
//! disabled, and those of events accepted while it is. Events for it are still accepted (202),
//! as a webhook service keeps taking its platform's events for a suspended customer: the
//! platform's ingest need not know which partners are disabled, a batch is never refused for
//! one of them, and nothing is lost; enabling the partner sends what was held.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{BadRequest, NotFound, TooLarge, Unprocessable};
use super::{ApiError, AppState, Operator, Partner, parse_json};
use crate::error::FieldError;
use crate::store::{self, now_ms};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners", post(create).get(list))
        .route("/v1/partners/{partner_id}", get(show).delete(remove))
        .route("/v1/partners/{partner_id}/disable", post(disable))
        .route("/v1/partners/{partner_id}/enable", post(enable))
        .route("/v1/partners/{partner_id}/secret/rotate", post(rotate))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, show, remove, disable, enable, rotate))]
pub(super) struct Doc;

/// The `{partner_id}` of an operator's route.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct PartnerPath {
    /// The partner's id, `ptn_…`.
    partner_id: String,
}

/// A page of a listing: `limit` (1 to 500, default 50) items older than the cursor `before`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    /// Cursor: the `next` of the previous page.
    pub before: Option<String>,
    /// Items per page, 1 to 500 (default: 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A page of partners, newest first.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `list` in the OpenAPI document")]
struct Partners {
    data: Vec<store::Partner>,
    /// The cursor of the next page (its `before`); null on the last page.
    next: Option<String>,
}

/// The answer of `disable` and `enable`.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the answers of `disable` and `enable` in the OpenAPI document"
)]
struct PartnerState {
    /// The partner.
    id: crate::id::PartnerId,
    /// Whether its keys work and its postbacks go.
    enabled: bool,
    /// Postbacks held by disabling it.
    held_deliveries: Option<u64>,
    /// Held postbacks released by enabling it.
    released_deliveries: Option<u64>,
}

/// The body of `POST /v1/partners` (optional).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `create` reads, in the OpenAPI document")]
struct NewPartner {
    /// A display name, at most 200 bytes (default: none).
    #[schema(max_length = 200)]
    name: Option<String>,
}

/// The body of `POST /v1/partners/{partner_id}/secret/rotate` (optional).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `rotate` reads, in the OpenAPI document")]
struct Rotate {
    /// Seconds during which postbacks carry the previous secret's signature too (default: 86400;
    /// 0 for none; at most 2592000).
    #[schema(minimum = 0, maximum = 2592000)]
    grace_secs: Option<u64>,
}

/// The answer of a rotation.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `rotate` in the OpenAPI document")]
struct Rotated {
    /// The partner.
    id: crate::id::PartnerId,
    /// The new signing secret, `whsec_…`: shown in this answer only.
    secret: String,
    /// When the previous secret stops signing (Unix ms).
    previous_secret_expires_at: i64,
}

impl Page {
    /// The page size asked for, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad_query(FieldError::new(
                "limit",
                Some(&limit.to_string()),
                "is out of range; use 1 to 500",
            )));
        }
        Ok(limit)
    }
}

/// Every partner, newest first: `{"data": [...], "next": cursor}`. Signing secrets are never
/// listed.
#[utoipa::path(
    get,
    path = "/v1/partners",
    operation_id = "list_partners",
    tag = "partners",
    security(("operator_token" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of partners.", body = Partners),
        (status = 400, response = BadRequest),
    ),
)]
async fn list(_: Operator, State(state): State<AppState>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let limit = page.limit()?;
    let partners = state.store.partners(page.before.as_deref(), limit).await?;
    let next = if partners.len() as i64 == limit {
        partners.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok(Json(json!({"data": partners, "next": next})))
}

fn no_partner(id: &str) -> ApiError {
    ApiError::not_found(format!("no partner {id}"))
}

/// Disables a partner: its keys answer 403 and its postbacks are held until it is enabled.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/disable",
    operation_id = "disable_partner",
    tag = "partners",
    security(("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "Disabled, with the postbacks held.", body = PartnerState),
        (status = 404, response = NotFound),
    ),
)]
async fn disable(
    _: Operator,
    State(state): State<AppState>,
    Path(path): Path<PartnerPath>,
) -> Result<Json<Value>, ApiError> {
    let id = &path.partner_id;
    let held = state
        .store
        .disable_partner(id, now_ms())
        .await?
        .ok_or_else(|| no_partner(id))?;
    state.hold_everywhere(id).await;
    state.auth.forget_partner(id);
    Ok(Json(json!({"id": id, "enabled": false, "held_deliveries": held})))
}

/// Enables a disabled partner: its keys work again and its held postbacks go, if its endpoint
/// can send.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/enable",
    operation_id = "enable_partner",
    tag = "partners",
    security(("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "Enabled, with the postbacks released.", body = PartnerState),
        (status = 404, response = NotFound),
    ),
)]
async fn enable(
    _: Operator,
    State(state): State<AppState>,
    Path(path): Path<PartnerPath>,
) -> Result<Json<Value>, ApiError> {
    let id = &path.partner_id;
    let released = state
        .store
        .enable_partner(id, now_ms())
        .await?
        .ok_or_else(|| no_partner(id))?;
    state.wake_workers().await;
    Ok(Json(
        json!({"id": id, "enabled": true, "released_deliveries": released}),
    ))
}

/// Deletes a partner with all its data, in one transaction; its keys answer 401 and its ids
/// 404 from then on.
#[utoipa::path(
    delete,
    path = "/v1/partners/{partner_id}",
    operation_id = "delete_partner",
    tag = "partners",
    security(("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
    ),
)]
async fn remove(
    _: Operator,
    State(state): State<AppState>,
    Path(path): Path<PartnerPath>,
) -> Result<StatusCode, ApiError> {
    let id = &path.partner_id;
    if state.store.partner(id).await?.is_none() {
        return Err(no_partner(id));
    }
    // Before the rows go: from now on no outcome of the partner's is recorded.
    state.forget_everywhere(id).await;
    let deleted = state.store.delete_partner(id).await?.ok_or_else(|| no_partner(id))?;
    state.auth.forget_partner(id);
    for plugin in &deleted.plugins {
        state.plugins.forget(plugin);
    }
    tracing::info!(partner = %id, deliveries = deleted.deliveries, keys = deleted.keys.len(), "partner deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The answer of `POST /v1/partners`: the partner and, this once, its signing secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = CreatedPartner)]
struct Created {
    #[serde(flatten)]
    partner: store::Partner,
    /// The Standard Webhooks signing secret, `whsec_…`: shown in this answer only.
    secret: String,
}

/// Largest body of `POST /v1/partners`: a name and little else.
const PARTNER_BYTES: usize = 64 << 10;

/// Creates a partner and its signing secret.
#[utoipa::path(
    post,
    path = "/v1/partners",
    operation_id = "create_partner",
    tag = "partners",
    security(("operator_token" = [])),
    request_body(content = Option<NewPartner>, description = "Optional; an empty body is a partner without a name."),
    responses(
        (status = 201, description = "The partner and, this once, its signing secret.", body = Created),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
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
    let (partner, secret) = create_partner(&state, &json).await?;
    Ok((StatusCode::CREATED, Json(Created { partner, secret })))
}

/// Creates a partner from `input`, the JSON `create` reads (`{"name"?}`), and answers it with
/// its signing secret, to show this once: what `create` and the console's operator page both
/// do.
pub(crate) async fn create_partner(state: &AppState, input: &Value) -> Result<(store::Partner, String), ApiError> {
    let name = match input.get("name") {
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
    Ok((partner, secret))
}

/// How long the previous secret still signs after a rotation unless the request says.
const DEFAULT_GRACE_SECS: u64 = 86_400;

/// Longest grace period accepted: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 86_400;

/// Gives the partner a new signing secret, shown this once; postbacks carry the previous
/// secret's signature too until the grace period (`grace_secs`, default 24 h, 0 for none) ends.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/secret/rotate",
    operation_id = "rotate_secret",
    tag = "partners",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Option<Rotate>, description = "Optional; an empty body keeps the default grace period."),
    responses(
        (status = 200, description = "The new secret and when the previous one stops signing.", body = Rotated),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
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

/// The partner (never its signing secret).
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}",
    operation_id = "show_partner",
    tag = "partners",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The partner.", body = store::Partner),
        (status = 404, response = NotFound),
    ),
)]
async fn show(Partner(partner): Partner) -> Json<store::Partner> {
    Json(partner)
}
