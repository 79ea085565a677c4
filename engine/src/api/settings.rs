//! `/v1/partners/{partner_id}/settings/action-inquiry`: save, read, re-enable and test a
//! partner's notification settings.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::{ApiError, AppState, Partner, parse_json};
use crate::error::{FieldError, Invalid};
use crate::event::{Event, EventType};
use crate::exchange::{self, Context, Exchanged};
use crate::id::DeliveryId;
use crate::settings::NotificationSettings;
use crate::store::{SettingsRecord, now_ms};

const PATH: &str = "/v1/partners/{partner_id}/settings/action-inquiry";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(show).put(save))
        .route(&format!("{PATH}/enable"), post(enable))
        .route(&format!("{PATH}/test"), post(test))
}

fn view(record: &SettingsRecord) -> Value {
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

async fn save(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<SETTINGS_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let compiled = NotificationSettings::validate(&parse_json(&body)?).map_err(|e| ApiError::invalid(e, ""))?;
    let options = compiled.settings();
    let mut problems = Vec::new();
    for (field, id, export) in [
        ("transform_plugin", &options.transform_plugin, "transform"),
        ("classify_plugin", &options.classify_plugin, "classify"),
    ] {
        let Some(id) = id else { continue };
        match state.store.plugin(&partner.id, id).await? {
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
    state.store.put_settings(&partner.id, &body, now_ms()).await?;
    state.worker.wake();
    let record = state.store.settings(&partner.id).await?.expect("just saved");
    Ok(Json(view(&record)))
}

async fn show(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    match state.store.settings(&partner.id).await? {
        Some(record) => Ok(Json(view(&record))),
        None => Err(ApiError::not_found(format!(
            "partner {} has no action inquiry settings yet; PUT them first",
            partner.id
        ))),
    }
}

async fn enable(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    let released = state.store.enable(&partner.id, now_ms()).await?;
    state.worker.wake();
    Ok(Json(json!({"enabled": true, "released_deliveries": released})))
}

#[derive(Deserialize)]
struct TestQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// Sends a postback built from a sample event now, and answers with what happened.
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
    let record = state
        .store
        .settings(&partner.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no settings to test; PUT them first"))?;
    let settings: NotificationSettings = serde_json::from_str(&record.body)
        .map_err(|e| ApiError::conflict(format!("the saved settings are unreadable: {e}")))?;
    let compiled = settings.compile().map_err(|e| ApiError::invalid(e, ""))?;
    let event = Event::sample(event_type, &partner.id);
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
    };
    let Exchanged { attempt, verdict } = match exchange::run(&ctx, &event, compiled.render(&event)).await {
        Ok(exchanged) => exchanged,
        Err(failed) => {
            return Ok(Json(json!({
                "event": event.to_json(),
                "request": null,
                "response": null,
                "verdict": "fail",
                "error": failed.to_string(),
                "plugins": {"transform": failed.into_report()},
            })));
        }
    };
    Ok(Json(json!({
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
    })))
}
