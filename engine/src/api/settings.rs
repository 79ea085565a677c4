//! `/v1/partners/{partner_id}/settings/action-inquiry`: save, read, delete, disable, re-enable,
//! preview and test a partner's notification settings.
//!
//! Deleting the settings loses no postback: the partner's pending deliveries are held (status
//! `held`), as while its endpoint is disabled, and go once settings are saved again; events
//! accepted meanwhile make no deliveries, as for a partner that never had settings.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{BadRequest, Conflict, NotFound, PartnerPath, TooLarge, TooManyRequests, Unprocessable};
use super::{ApiError, AppState, Partner, parse_json};
use crate::error::{FieldError, Invalid};
use crate::event::{Event, EventType};
use crate::exchange::{self, Context, Exchanged};
use crate::id::DeliveryId;
use crate::render::MAX_RENDERED_LEN;
use crate::settings::NotificationSettings;
use crate::store::{SettingsRecord, now_ms};

const PATH: &str = "/v1/partners/{partner_id}/settings/action-inquiry";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(show).put(save).delete(remove))
        .route(&format!("{PATH}/enable"), post(enable))
        .route(&format!("{PATH}/disable"), post(disable))
        .route(&format!("{PATH}/preview"), post(preview))
        .route(&format!("{PATH}/test"), post(test))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(show, save, remove, enable, disable, preview, test))]
pub(super) struct Doc;

/// Saved settings with their state, as `view` writes them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer `view` writes, in the OpenAPI document")]
struct SettingsView {
    /// The settings as saved, with `plugin_config`'s secrets redacted.
    settings: NotificationSettings,
    /// Grows on every save.
    version: i64,
    /// False while the endpoint is disabled (after a 410 Gone, or by `disable`); its deliveries
    /// are held.
    enabled: bool,
    /// Why the endpoint is disabled, when it is.
    disabled_reason: Option<String>,
    /// When it was disabled (Unix ms).
    disabled_at: Option<i64>,
    /// When the settings were last saved (Unix ms).
    updated_at: i64,
}

/// The answer of `enable` and `disable`.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the answers of `enable` and `disable` in the OpenAPI document"
)]
struct EndpointState {
    /// Whether postbacks go.
    enabled: bool,
    /// Why it is disabled (`disable` only).
    disabled_reason: Option<String>,
    /// Deliveries held by disabling it (`disable` only).
    held_deliveries: Option<u64>,
    /// Held deliveries due again (`enable` only).
    released_deliveries: Option<u64>,
}

/// The answer of `remove`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `remove` in the OpenAPI document")]
struct Deleted {
    /// Always true.
    deleted: bool,
    /// Pending deliveries now held until settings are saved again.
    held_deliveries: u64,
}

/// The body of `disable` (optional).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `disable` reads, in the OpenAPI document")]
struct Disable {
    /// Why, at most 500 bytes (default: `disabled by the partner`).
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// The body of `preview`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `preview` reads, in the OpenAPI document")]
struct PreviewInput {
    /// The settings to preview, as for PUT.
    settings: NotificationSettings,
    /// An event (default: the sample event of `type`).
    event: Option<Object>,
    /// The sample event's type (default: `action_inquiry.created`).
    #[schema(rename = "type")]
    event_type: Option<crate::event::EventType>,
}

/// What settings would send for an event.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `preview` in the OpenAPI document")]
struct Preview {
    /// The event rendered.
    event: Object,
    /// Whether the settings send a postback for the event's type at all.
    sends: bool,
    /// The request as the templates make it (method, url, headers, body), secret values redacted.
    request: Object,
}

/// What a test postback did.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `test` in the OpenAPI document")]
struct TestOutcome {
    /// The sample event the postback was built from.
    event: Object,
    /// The request as sent (secret headers redacted); null when none could be built.
    request: Option<Object>,
    /// The receiver's answer: `status`, `headers`, `body`; null when it did not answer.
    response: Option<Object>,
    /// How long the exchange took.
    duration_ms: Option<i64>,
    /// What the answer would mean for a delivery.
    verdict: crate::store::AttemptVerdict,
    /// When the verdict is `retry` and the receiver said when, the seconds it asked to wait.
    retry_after_secs: Option<u64>,
    /// What went wrong, in words.
    error: Option<String>,
    /// What the plugins did.
    plugins: Option<Value>,
}

/// Any JSON object.
type Object = serde_json::Map<String, Value>;

pub(super) fn view(record: &SettingsRecord) -> Value {
    let mut settings = serde_json::from_str::<Value>(&record.body).unwrap_or(Value::Null);
    if let Some(config) = settings.get_mut("plugin_config") {
        *config = crate::redact::config(config);
    }
    json!({
        "settings": settings,
        "version": record.version,
        "enabled": record.disabled_at.is_none(),
        "disabled_reason": record.disabled_reason,
        "disabled_at": record.disabled_at,
        "updated_at": record.updated_at,
    })
}

/// Largest settings body: templates and headers, with room to spare.
const SETTINGS_BYTES: usize = 2 << 20;

/// Saves the partner's settings, validated first: 422 names every field at fault.
#[utoipa::path(
    put,
    path = "/v1/partners/{partner_id}/settings/action-inquiry",
    operation_id = "save_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body = NotificationSettings,
    responses(
        (status = 200, description = "The settings as saved.", body = SettingsView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn save(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<SETTINGS_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let record = save_settings(&state, &partner.id, &parse_json(&body)?).await?;
    Ok(Json(view(&record)))
}

/// Validates `input` as the partner's settings (fields, templates, and the plugins they name)
/// and saves them: what `PUT` and the console's settings page both do.
pub(crate) async fn save_settings(
    state: &AppState,
    partner_id: &str,
    input: &Value,
) -> Result<SettingsRecord, ApiError> {
    let (input, mut problems) = pin_plugins(state, partner_id, input).await?;
    let compiled = match NotificationSettings::validate(&input) {
        Ok(compiled) => compiled,
        Err(Invalid(mut more)) => {
            problems.append(&mut more);
            return Err(ApiError::invalid(Invalid(problems), ""));
        }
    };
    let options = compiled.settings();
    for (field, id, export) in [
        ("transform_plugin", &options.transform_plugin, "transform"),
        ("classify_plugin", &options.classify_plugin, "classify"),
    ] {
        let Some(id) = id else { continue };
        match state.store.plugin(partner_id, id).await? {
            None => problems.push(FieldError::new(
                field,
                Some(id),
                "names no plugin of this partner; upload it first (POST /v1/partners/{partner_id}/plugins)",
            )),
            Some(plugin) if !plugin.exports.iter().any(|e| e == export) => problems.push(FieldError::new(
                field,
                Some(id),
                format!(
                    "does not export {export} (it exports {}); pick a plugin that does",
                    plugin.exports.join(", ")
                ),
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(Invalid(problems), ""));
    }
    let body = serde_json::to_string(compiled.settings()).expect("settings serialize");
    state.store.put_settings(partner_id, &body, now_ms()).await?;
    state.wake_workers().await;
    Ok(state.store.settings(partner_id).await?.expect("just saved"))
}

/// `input` with the plugins it names by `name@version`, or by a name alone for the latest
/// version, replaced by their ids: the settings keep the version they were saved with, however
/// many versions are uploaded after. A name that names no plugin of the partner is a problem,
/// and its field is left out of what is validated.
async fn pin_plugins(state: &AppState, partner_id: &str, input: &Value) -> Result<(Value, Vec<FieldError>), ApiError> {
    let mut input = input.clone();
    let mut problems = Vec::new();
    for field in ["transform_plugin", "classify_plugin"] {
        let Some(reference) = input.get(field).and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if reference.is_empty() || reference.starts_with("plg_") || reference.len() > 120 {
            continue;
        }
        match super::plugins::resolve(state, partner_id, &reference).await? {
            Some(plugin) => input[field] = Value::String(plugin.id.into_string()),
            None => {
                problems.push(FieldError::new(
                    field,
                    Some(&reference),
                    "names no plugin of this partner; give a plugin's id (plg_…), name@version, or a name for its \
                     latest version, after uploading it (POST /v1/partners/{partner_id}/plugins?name=…)",
                ));
                input[field] = Value::Null;
            }
        }
    }
    Ok((input, problems))
}

/// The partner's settings.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/settings/action-inquiry",
    operation_id = "show_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The settings.", body = SettingsView),
        (status = 404, response = NotFound),
    ),
)]
async fn show(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    match state.store.settings(&partner.id).await? {
        Some(record) => Ok(Json(view(&record))),
        None => Err(ApiError::not_found(format!(
            "partner {} has no action inquiry settings yet; PUT them first",
            partner.id
        ))),
    }
}

/// Re-enables a disabled endpoint and releases its held deliveries.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/enable",
    operation_id = "enable_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "Enabled.", body = EndpointState),
        (status = 404, response = NotFound),
    ),
)]
async fn enable(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    let released = state.store.enable(&partner.id, now_ms()).await?;
    state.wake_workers().await;
    Ok(Json(json!({"enabled": true, "released_deliveries": released})))
}

/// Deletes the settings; the pending deliveries are held until settings are saved again.
#[utoipa::path(
    delete,
    path = "/v1/partners/{partner_id}/settings/action-inquiry",
    operation_id = "delete_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, response = NotFound),
    ),
)]
async fn remove(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    let held = state
        .store
        .delete_settings(&partner.id, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("partner {} has no action inquiry settings", partner.id)))?;
    state.hold_everywhere(&partner.id).await;
    Ok(Json(json!({"deleted": true, "held_deliveries": held})))
}

/// Largest body of `POST .../disable`: a reason.
const REASON_BYTES: usize = 64 << 10;

/// Longest reason kept, in bytes.
const MAX_REASON: usize = 500;

/// Disables the endpoint (`{"reason"?: "..."}`): postbacks are held until it is enabled again
/// (`POST .../enable`) or settings are saved.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/disable",
    operation_id = "disable_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Option<Disable>, description = "Optional; an empty body gives the default reason."),
    responses(
        (status = 200, description = "Disabled, with the deliveries held.", body = EndpointState),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn disable(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<REASON_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let input = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    let reason = match input.get("reason") {
        None | Some(Value::Null) => "disabled by the partner".to_owned(),
        Some(Value::String(reason)) if !reason.trim().is_empty() && reason.len() <= MAX_REASON => {
            reason.trim().to_owned()
        }
        Some(other) => {
            return Err(ApiError::invalid(
                FieldError::new(
                    "reason",
                    Some(&other.to_string()),
                    format!("must be a non-empty string of at most {MAX_REASON} bytes, or left out"),
                )
                .into(),
                "",
            ));
        }
    };
    let held = state
        .store
        .disable_endpoint(&partner.id, &reason, now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "partner {} has no action inquiry settings to disable; PUT them first",
                partner.id
            ))
        })?;
    state.hold_everywhere(&partner.id).await;
    Ok(Json(
        json!({"enabled": false, "disabled_reason": reason, "held_deliveries": held}),
    ))
}

/// Validates settings and renders the request they make for an event, without saving or
/// sending anything: `{"settings": {...}, "event"?: {...}, "type"?: "action_inquiry.created"}`.
/// Without an event, the sample event of `type` (default: created) is used. Answers the
/// request as the templates make it, secret values redacted as in the attempt log, and whether
/// the settings send a postback for the event's type at all; `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` are added when it is sent, and a transform
/// plugin, if named, runs then too (see `POST .../plugins/{plugin_id}/run`).
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/preview",
    operation_id = "preview_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body = PreviewInput,
    responses(
        (status = 200, description = "The request the settings make for the event.", body = Preview),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn preview(Partner(partner): Partner, Body(body): Body<SETTINGS_BYTES>) -> Result<Json<Value>, ApiError> {
    preview_request(&partner.id, &parse_json(&body)?).map(Json)
}

/// The request settings make for an event, as `preview` answers it: what the console's live
/// preview shows too.
pub(crate) fn preview_request(partner_id: &str, input: &Value) -> Result<Value, ApiError> {
    let Some(object) = input.as_object() else {
        return Err(ApiError::bad_request(
            "the body must be {\"settings\": {...}, \"event\"?: {...}, \"type\"?: \"action_inquiry.created\"}",
        ));
    };
    let mut problems = Vec::new();
    let event_type = match object.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if EventType::parse(name).is_some() => EventType::parse(name),
        Some(other) => {
            problems.push(FieldError::new(
                "type",
                Some(&other.to_string()),
                "use action_inquiry.created or action_inquiry.resolved",
            ));
            None
        }
    };
    let compiled = match object.get("settings") {
        None => {
            problems.push(FieldError::new(
                "settings",
                None,
                "give the settings to preview, as for PUT",
            ));
            None
        }
        Some(settings) => match NotificationSettings::validate(settings) {
            Ok(compiled) => Some(compiled),
            Err(invalid) => {
                problems.extend(ApiError::invalid(invalid, "settings.").into_errors());
                None
            }
        },
    };
    let event = match object.get("event") {
        None | Some(Value::Null) => Some(Event::sample(
            event_type.unwrap_or(EventType::ActionInquiryCreated),
            partner_id,
        )),
        Some(event) => match Event::from_value(event) {
            Ok(event) if event_type.is_some_and(|t| t != event.event_type) => {
                problems.push(FieldError::new(
                    "type",
                    event_type.map(EventType::as_str),
                    format!(
                        "differs from the event's type {}; leave type out when giving an event",
                        event.event_type
                    ),
                ));
                None
            }
            Ok(event) => Some(event),
            Err(invalid) => {
                problems.extend(ApiError::invalid(invalid, "event.").into_errors());
                None
            }
        },
    };
    let (Some(compiled), Some(event), true) = (compiled, event, problems.is_empty()) else {
        return Err(ApiError::invalid_counted(problems, 0));
    };
    let sends = compiled.settings().events.contains(&event.event_type);
    let request = compiled.render(&event);
    if request.body.len() > MAX_RENDERED_LEN {
        return Err(ApiError::invalid_counted(
            vec![FieldError::new(
                "settings.body_template",
                None,
                format!(
                    "renders over {MAX_RENDERED_LEN} bytes for this event, more than a postback sends; \
                     use each long placeholder once"
                ),
            )],
            0,
        ));
    }
    Ok(json!({
        "event": event.to_json(),
        "sends": sends,
        "request": crate::redact::request_value(&request),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TestQuery {
    /// The sample event's type (default: `action_inquiry.created`).
    #[serde(rename = "type")]
    #[param(value_type = Option<crate::event::EventType>)]
    event_type: Option<String>,
}

/// Sends a postback built from a sample event now, and answers with what happened.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/test",
    operation_id = "test_settings",
    tag = "settings",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, TestQuery),
    responses(
        (status = 200, description = "The request, the receiver's answer and the verdict.", body = TestOutcome),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
    ),
)]
async fn test(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Query(query): Query<TestQuery>,
) -> Result<Json<Value>, ApiError> {
    let event_type = match query.event_type.as_deref() {
        None => EventType::ActionInquiryCreated,
        Some(name) => EventType::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "type {name:?} is not an event type; use action_inquiry.created or action_inquiry.resolved"
            ))
        })?,
    };
    test_postback(&state, &partner, event_type).await.map(Json)
}

/// Sends a test postback of the saved settings for the sample event of `event_type`, as
/// `test` answers it: what the console's test page shows too.
pub(crate) async fn test_postback(
    state: &AppState,
    partner: &crate::store::Partner,
    event_type: EventType,
) -> Result<Value, ApiError> {
    let record = state
        .store
        .settings(&partner.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no settings to test; PUT them first"))?;
    state.take_try(&partner.id)?;
    let settings: NotificationSettings = serde_json::from_str(&record.body)
        .map_err(|e| ApiError::conflict(format!("the saved settings are unreadable: {e}")))?;
    let compiled = settings.compile().map_err(|e| ApiError::invalid(e, ""))?;
    let event = std::sync::Arc::new(Event::sample(event_type, &partner.id));
    let test_id = DeliveryId::for_test();
    let secret = state
        .secret_key
        .open(&partner.secret)
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    let previous = match state.store.endpoint(&partner.id).await?.and_then(|e| e.previous_secret) {
        Some((stored, until)) => Some((
            state
                .secret_key
                .open(&stored)
                .map_err(|e| ApiError::conflict(e.to_string()))?,
            until,
        )),
        None => None,
    };
    let ctx = Context {
        sender: &state.sender,
        plugins: &state.plugins,
        partner_id: &partner.id,
        settings: &compiled,
        secret: &secret,
        previous_secret: previous.as_ref().map(|(s, until)| (s.as_str(), *until)),
        delivery_id: &test_id,
        number: 1,
        serve: None,
    };
    let Exchanged { attempt, verdict } = match exchange::run(&ctx, &event, compiled.render(&event)).await {
        Ok(exchanged) => exchanged,
        Err(failed) => {
            return Ok(json!({
                "event": event.to_json(),
                "request": null,
                "response": null,
                "verdict": "fail",
                "error": failed.to_string(),
                "plugins": {"transform": failed.into_report()},
            }));
        }
    };
    Ok(json!({
        "event": event.to_json(),
        "request": attempt.request,
        "response": attempt.response_status.map(|status| json!({
            "status": status,
            "headers": attempt.response_headers,
            "body": attempt.response_body,
        })),
        "duration_ms": attempt.duration_ms,
        "verdict": attempt.verdict,
        "retry_after_secs": match verdict {
            crate::classify::Verdict::Retry { after: Some(after), .. } => Some(after.as_secs()),
            _ => None,
        },
        "error": attempt.error,
        "plugins": attempt.plugins,
    }))
}
