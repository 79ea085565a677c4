//! Shipping plugin changes safely: a rollback to an earlier version, a replay diff of a
//! candidate version against the stored traffic, and canaries.
//!
//! - `POST /v1/partners/{partner_id}/settings/action-inquiry/rollback`: attaches the version
//!   before the attached one (or the one named), for the next postback on;
//! - `POST /v1/partners/{partner_id}/plugins/diff`: runs a candidate version on the partner's
//!   last deliveries (their stored events, rendered with today's settings; for classifiers,
//!   the stored answers) beside the attached version, and sends nothing;
//! - `PUT|GET|DELETE /v1/partners/{partner_id}/settings/action-inquiry/canary` and
//!   `POST …/canary/promote`: a candidate serving a share of first attempts, detached by the
//!   workers when it fails more often than the attached version by more than a margin (see
//!   [`rules::canary_step`](crate::store::rules::canary_step)).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{Conflict, NotFound, PartnerPath, TooManyRequests, Unprocessable};
use super::plugins::resolve;
use super::{ApiError, AppState, Partner, parse_json};
use crate::error::FieldError;
use crate::event::Event;
use crate::exchange::{self, Stages};
use crate::plugins::config_text;
use crate::redact;
use crate::request::Request;
use crate::send::Answer;
use crate::settings::{CompiledSettings, NotificationSettings};
use crate::store::{Attempt, CanarySpec, CanaryState, PluginRecord, PluginSlot, now_ms};

const PATH: &str = "/v1/partners/{partner_id}/settings/action-inquiry";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(&format!("{PATH}/rollback"), post(rollback))
        .route(
            &format!("{PATH}/canary"),
            put(start_canary).get(show_canary).delete(stop_canary),
        )
        .route(&format!("{PATH}/canary/promote"), post(promote_canary))
        .route("/v1/partners/{partner_id}/plugins/diff", post(diff))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(rollback, diff, start_canary, show_canary, stop_canary, promote_canary))]
pub(super) struct Doc;

/// Any JSON object.
type Object = serde_json::Map<String, Value>;

/// Largest body of these routes: a few fields.
const BODY_BYTES: usize = 16 << 10;

/// Deliveries a replay diff takes unless told otherwise, and at most.
const DIFF_LAST: (u64, u64) = (50, 500);

fn invalid(field: &str, value: Option<&str>, message: impl Into<String>) -> ApiError {
    ApiError::invalid(FieldError::new(field, value, message).into(), "")
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        Ok(json!({}))
    } else {
        parse_json(body)
    }
}

/// The partner's saved settings as JSON, or 409 saying to save them first.
async fn saved(state: &AppState, partner_id: &str) -> Result<(Value, i64), ApiError> {
    let record = state.store.settings(partner_id).await?.ok_or_else(|| {
        ApiError::conflict(format!(
            "partner {partner_id} has no action inquiry settings yet; save them first \
             (PUT /v1/partners/{partner_id}/settings/action-inquiry)"
        ))
    })?;
    let settings = serde_json::from_str(&record.body)
        .map_err(|e| ApiError::conflict(format!("the saved settings cannot be read: {e}; save them again")))?;
    Ok((settings, record.version))
}

/// `slot` of the input, if given.
fn slot_of(input: &Value) -> Result<Option<PluginSlot>, ApiError> {
    match input.get("slot") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => PluginSlot::parse(name)
            .map(Some)
            .ok_or_else(|| invalid("slot", Some(name), "is not a slot; give transform or classify")),
        Some(other) => Err(invalid(
            "slot",
            Some(&other.to_string()),
            "is not a slot; give transform or classify",
        )),
    }
}

/// The candidate a body names in `field`: one of the partner's plugins, exporting what `slot`
/// needs; without a slot, the one its exports make plain (transform first).
async fn candidate(
    state: &AppState,
    partner_id: &str,
    input: &Value,
    field: &str,
    slot: Option<PluginSlot>,
) -> Result<(PluginRecord, PluginSlot), ApiError> {
    let reference = input.get(field).and_then(Value::as_str).unwrap_or_default();
    if reference.is_empty() {
        return Err(invalid(
            field,
            None,
            "name the candidate version: its id (plg_…), name@version, or a name for its latest version",
        ));
    }
    let plugin = resolve(state, partner_id, reference).await?.ok_or_else(|| {
        invalid(
            field,
            Some(reference),
            "names no plugin of this partner; upload it first (POST /v1/partners/{partner_id}/plugins?name=…)",
        )
    })?;
    let exports = |slot: PluginSlot| plugin.exports.iter().any(|e| e == slot.export());
    let slot = match slot {
        Some(slot) if exports(slot) => slot,
        Some(slot) => {
            return Err(invalid(
                field,
                Some(reference),
                format!(
                    "{} does not export {} (it exports {}); pick a version that does",
                    plugin.label(),
                    slot.export(),
                    plugin.exports.join(", ")
                ),
            ));
        }
        None if exports(PluginSlot::Transform) => PluginSlot::Transform,
        None => PluginSlot::Classify,
    };
    Ok((plugin, slot))
}

/// The id the saved settings attach in `slot`, if any.
fn attached_id(settings: &Value, slot: PluginSlot) -> Option<String> {
    settings.get(slot.field()).and_then(Value::as_str).map(str::to_owned)
}

/// `name@version` of the partner's plugin `id`, or the id when it is gone.
async fn label_of(state: &AppState, partner_id: &str, id: &str) -> Result<String, ApiError> {
    Ok(match state.store.plugin(partner_id, id).await? {
        Some(plugin) => plugin.label(),
        None => id.to_owned(),
    })
}

/// Attaches an earlier version: `{"slot"?, "to"?}`. Without `to`, the latest version of the
/// attached plugin's name that is older than it; without `slot`, the one slot that has a plugin
/// attached. The settings are saved as a `PUT` saves them (validated, a new version), so the
/// next postback runs the version rolled back to.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/rollback",
    operation_id = "rollback_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Option<Object>, description = "`{\"slot\": \"transform\", \"to\": \"reshape@1\"}`; both optional."),
    responses(
        (status = 200, description = "`{slot, from, to, settings}`: the versions, and the settings saved.", body = Object),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ),
)]
async fn rollback(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<BODY_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let input = body_json(&body)?;
    Ok(Json(roll_back(&state, &partner.id, &input).await?))
}

/// What `rollback` does and answers; the console's plugins page rolls back with it.
pub(crate) async fn roll_back(state: &AppState, partner_id: &str, input: &Value) -> Result<Value, ApiError> {
    let (mut settings, _) = saved(state, partner_id).await?;
    let slot = match slot_of(input)? {
        Some(slot) => slot,
        None => {
            let attached: Vec<PluginSlot> = [PluginSlot::Transform, PluginSlot::Classify]
                .into_iter()
                .filter(|slot| attached_id(&settings, *slot).is_some())
                .collect();
            match attached[..] {
                [slot] => slot,
                [] => {
                    return Err(ApiError::conflict(format!(
                        "partner {} has no plugin attached; there is nothing to roll back",
                        partner_id
                    )));
                }
                _ => {
                    return Err(invalid(
                        "slot",
                        None,
                        "both a transform and a classifier are attached; say which to roll back: transform or classify",
                    ));
                }
            }
        }
    };
    let current_id = attached_id(&settings, slot).ok_or_else(|| {
        ApiError::conflict(format!(
            "no plugin is attached in {}; there is nothing to roll back",
            slot.field()
        ))
    })?;
    let plugins = state.store.plugins(partner_id).await?;
    let current = plugins.iter().find(|p| p.id.as_str() == current_id);
    let target = match input.get("to").and_then(Value::as_str) {
        Some(_) => candidate(state, partner_id, input, "to", Some(slot)).await?.0,
        None => {
            let current = current.ok_or_else(|| {
                ApiError::conflict(format!(
                    "the attached plugin {current_id} is gone; name the version to attach in \"to\""
                ))
            })?;
            plugins
                .iter()
                .filter(|p| p.name == current.name && p.version < current.version)
                .filter(|p| p.exports.iter().any(|e| e == slot.export()))
                .max_by_key(|p| p.version)
                .cloned()
                .ok_or_else(|| {
                    ApiError::conflict(format!(
                        "{} is the earliest version of {} kept; there is no earlier version to roll back to",
                        current.label(),
                        current.name
                    ))
                })?
        }
    };
    let from = current.map_or_else(|| current_id.clone(), PluginRecord::label);
    settings[slot.field()] = Value::String(target.id.to_string());
    let record = super::save_settings(state, partner_id, &settings).await?;
    Ok(json!({
        "slot": slot,
        "from": from,
        "to": target.label(),
        "settings": super::settings::view(&record),
    }))
}

/// The canary's view: the stored canary with its versions' names and when its window ends.
async fn canary_view(state: &AppState, partner_id: &str, canary: &crate::store::Canary) -> Result<Value, ApiError> {
    let mut view = serde_json::to_value(canary).expect("a canary serializes");
    view["candidate"] = json!(label_of(state, partner_id, canary.plugin_id.as_str()).await?);
    let attached = match state.store.settings(partner_id).await? {
        Some(record) => match serde_json::from_str::<Value>(&record.body)
            .ok()
            .and_then(|s| attached_id(&s, canary.slot))
        {
            Some(id) => Some(label_of(state, partner_id, &id).await?),
            None => None,
        },
        None => None,
    };
    view["attached"] = json!(attached);
    view["window_ends_at"] = json!(canary.window_started_at + canary.window_ms);
    Ok(view)
}

/// 409: the partner has no canary running to stop or promote.
fn no_canary_running(partner_id: &str) -> ApiError {
    ApiError::conflict(format!(
        "partner {partner_id} has no canary running; start one with PUT \
         /v1/partners/{partner_id}/settings/action-inquiry/canary"
    ))
}

/// A whole number in `field` of `input`, `default` when absent, within `range`.
fn number(input: &Value, field: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ApiError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
            invalid(
                field,
                Some(&value.to_string()),
                format!("give a whole number from {} to {}", range.start(), range.end()),
            )
        }),
    }
}

/// Starts a canary: `{"candidate", "slot"?, "share_percent"? (5), "window_secs"? (300),
/// "margin_percent"? (10), "min_calls"? (10)}`. The candidate serves `share_percent` of the
/// postbacks' first attempts in its slot; a postback it fails is retried with the attached
/// version. At the end of each window in which the candidate made at least `min_calls` calls,
/// its failure rate (plugin failures, and postbacks that did not succeed) is compared with the
/// attached version's: more than `margin_percent` points above it, and the canary is detached.
/// Replaces an earlier canary.
#[utoipa::path(
    put,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/canary",
    operation_id = "start_canary",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Object, description = "`{\"candidate\": \"reshape@2\", \"share_percent\": 5, \"window_secs\": 300, \"margin_percent\": 10, \"min_calls\": 10}`"),
    responses(
        (status = 200, description = "The canary.", body = crate::store::Canary),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ),
)]
async fn start_canary(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<BODY_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let input = body_json(&body)?;
    Ok(Json(canary_start(&state, &partner.id, &input).await?))
}

/// A canary's settings a start takes unless told otherwise: share (percent), window (seconds),
/// margin (percentage points) and the calls a window needs before it is judged.
pub(crate) const CANARY_DEFAULTS: CanaryDefaults = CanaryDefaults {
    share_percent: 5,
    window_secs: 300,
    margin_percent: 10,
    min_calls: 10,
};

/// See [`CANARY_DEFAULTS`].
pub(crate) struct CanaryDefaults {
    /// Of the postbacks' first attempts, the share the candidate serves.
    pub share_percent: i64,
    /// How long a window lasts.
    pub window_secs: i64,
    /// How far the candidate's failure rate may exceed the attached version's.
    pub margin_percent: i64,
    /// Calls the candidate makes in a window before the window is judged.
    pub min_calls: i64,
}

/// What `start_canary` does and answers; the console's plugins page starts canaries with it.
pub(crate) async fn canary_start(state: &AppState, partner_id: &str, input: &Value) -> Result<Value, ApiError> {
    let slot = slot_of(input)?;
    let (plugin, slot) = candidate(state, partner_id, input, "candidate", slot).await?;
    let d = &CANARY_DEFAULTS;
    let spec = CanarySpec {
        slot,
        plugin_id: plugin.id.clone(),
        share_percent: number(input, "share_percent", d.share_percent, 1..=100)?,
        window_ms: number(input, "window_secs", d.window_secs, 1..=7 * 86_400)? * 1000,
        margin_percent: number(input, "margin_percent", d.margin_percent, 0..=100)?,
        min_calls: number(input, "min_calls", d.min_calls, 1..=1_000_000)?,
    };
    let (settings, _) = saved(state, partner_id).await?;
    if attached_id(&settings, slot).as_deref() == Some(plugin.id.as_str()) {
        return Err(invalid(
            "candidate",
            Some(&plugin.label()),
            format!(
                "is the version attached in {} already; a canary needs another",
                slot.field()
            ),
        ));
    }
    let canary = state
        .store
        .start_canary(partner_id, &spec, now_ms())
        .await?
        .ok_or_else(|| ApiError::conflict(format!("partner {partner_id} has no action inquiry settings yet")))?;
    state.worker.forget_endpoint(partner_id);
    canary_view(state, partner_id, &canary).await
}

/// The partner's canary: the running one with its window's counts, or the last one with how
/// it ended (`detached` with the reason, `stopped` or `promoted`).
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/canary",
    operation_id = "show_canary",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The canary.", body = crate::store::Canary),
        (status = 404, response = NotFound),
    ),
)]
async fn show_canary(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    let canary = canary_status(&state, &partner.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("partner {} has had no canary", partner.id)))?;
    Ok(Json(canary))
}

/// What `show_canary` answers, `None` when the partner has had no canary; the console's
/// plugins page shows the same.
pub(crate) async fn canary_status(state: &AppState, partner_id: &str) -> Result<Option<Value>, ApiError> {
    match state.store.canary(partner_id).await? {
        Some(canary) => Ok(Some(canary_view(state, partner_id, &canary).await?)),
        None => Ok(None),
    }
}

/// Stops the running canary: every postback runs the attached version again.
#[utoipa::path(
    delete,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/canary",
    operation_id = "stop_canary",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The canary, stopped.", body = crate::store::Canary),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn stop_canary(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    Ok(Json(canary_stop(&state, &partner.id).await?))
}

/// What `stop_canary` does and answers; the console's stop button does the same.
pub(crate) async fn canary_stop(state: &AppState, partner_id: &str) -> Result<Value, ApiError> {
    let canary = state
        .store
        .end_canary(
            partner_id,
            CanaryState::Stopped,
            Some("stopped by the partner"),
            now_ms(),
        )
        .await?
        .ok_or_else(|| no_canary_running(partner_id))?;
    state.worker.forget_endpoint(partner_id);
    canary_view(state, partner_id, &canary).await
}

/// Attaches the running canary's candidate in its slot (the settings saved as a `PUT` saves
/// them) and ends the canary as `promoted`.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/settings/action-inquiry/canary/promote",
    operation_id = "promote_canary",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The canary, promoted.", body = crate::store::Canary),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn promote_canary(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    Ok(Json(canary_promote(&state, &partner.id).await?))
}

/// What `promote_canary` does and answers; the console's promote button does the same.
pub(crate) async fn canary_promote(state: &AppState, partner_id: &str) -> Result<Value, ApiError> {
    let running = state
        .store
        .canary(partner_id)
        .await?
        .filter(|c| c.state == CanaryState::Running)
        .ok_or_else(|| no_canary_running(partner_id))?;
    let (mut settings, _) = saved(state, partner_id).await?;
    settings[running.slot.field()] = Value::String(running.plugin_id.to_string());
    super::save_settings(state, partner_id, &settings).await?;
    let label = label_of(state, partner_id, running.plugin_id.as_str()).await?;
    let canary = state
        .store
        .end_canary(
            partner_id,
            CanaryState::Promoted,
            Some(&format!("{label} was attached in {}", running.slot.field())),
            now_ms(),
        )
        .await?
        .unwrap_or(running);
    state.worker.forget_endpoint(partner_id);
    canary_view(state, partner_id, &canary).await
}

/// A replay diff: `{"candidate", "last"? (50, at most 500), "slot"?}`. Runs the candidate on
/// the partner's last deliveries beside the version the settings attach (or, with none
/// attached, what the settings do without a plugin), without sending anything:
/// - a transform on each delivery's stored event, rendered with today's settings: `identical`,
///   `changed` (with the differences of method, URL, headers and body), or `failed`;
/// - a classifier on each delivery's last stored answer: the two verdicts, compared.
///
/// Requests are shown redacted, as the attempt log shows them; fuel and time for both sides. A
/// diff takes one of the partner's tries (`--tries-per-minute`), as a dry run does.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/plugins/diff",
    operation_id = "diff_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    request_body(content = Object, description = "`{\"candidate\": \"reshape@2\", \"last\": 50}`"),
    responses(
        (status = 200, description = "`{candidate, attached, slot, deliveries, identical, changed, failed, results}`.", body = Object),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
    ),
)]
async fn diff(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Body(body): Body<BODY_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let input = body_json(&body)?;
    Ok(Json(replay_diff(&state, &partner.id, &input).await?))
}

/// What `diff` answers; the console's plugins page shows the same.
pub(crate) async fn replay_diff(state: &AppState, partner_id: &str, input: &Value) -> Result<Value, ApiError> {
    let slot = slot_of(input)?;
    let (plugin, slot) = candidate(state, partner_id, input, "candidate", slot).await?;
    let last = number(input, "last", DIFF_LAST.0 as i64, 1..=DIFF_LAST.1 as i64)?;
    let (settings_json, _) = saved(state, partner_id).await?;
    let settings: NotificationSettings = serde_json::from_value(settings_json.clone())
        .map_err(|e| ApiError::conflict(format!("the saved settings cannot be read: {e}; save them again")))?;
    let config = config_text(settings.plugin_config.as_ref());
    let compiled = settings
        .compile()
        .map_err(|e| ApiError::conflict(format!("the saved settings no longer compile: {e}; save them again")))?;
    let attached = match attached_id(&settings_json, slot) {
        Some(id) => state.store.plugin(partner_id, &id).await?,
        None => None,
    };
    // A diff runs up to twice `last` plugin calls: it takes one of the partner's tries, as a
    // dry run does, once the request is known to be valid.
    state.take_try(partner_id)?;
    // Loaded before the loop, so that one that cannot be loaded says so once.
    state
        .plugins
        .get(plugin.id.as_str())
        .await
        .map_err(|e| invalid("candidate", Some(&plugin.label()), e))?;
    let deliveries = state.store.deliveries(partner_id, None, None, last).await?;
    let mut results = Vec::with_capacity(deliveries.len());
    let (mut identical, mut changed, mut failed) = (0, 0, 0);
    for delivery in &deliveries {
        let mut result = json!({
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
        });
        let compared = match slot {
            PluginSlot::Transform => {
                let Some(text) = state.store.event_body(partner_id, delivery.event_id.as_str()).await? else {
                    result["outcome"] = json!("skipped");
                    result["reason"] = json!("its event is no longer stored");
                    results.push(result);
                    continue;
                };
                let event = match Event::from_json(&text) {
                    Ok(event) => std::sync::Arc::new(event),
                    Err(e) => {
                        result["outcome"] = json!("skipped");
                        result["reason"] = json!(format!("its stored event cannot be read: {e}"));
                        results.push(result);
                        continue;
                    }
                };
                compare_transforms(
                    state,
                    partner_id,
                    &compiled,
                    &config,
                    attached.as_ref(),
                    &plugin,
                    &event,
                )
                .await
            }
            PluginSlot::Classify => {
                let (_, attempts) = state
                    .store
                    .delivery(partner_id, delivery.id.as_str())
                    .await?
                    .unwrap_or_else(|| (delivery.clone(), Vec::new()));
                let Some(answered) = attempts.iter().rev().find(|a| a.response_status.is_some()) else {
                    result["outcome"] = json!("skipped");
                    result["reason"] = json!("no attempt of it got an answer to classify");
                    results.push(result);
                    continue;
                };
                compare_classifiers(
                    state,
                    partner_id,
                    &compiled,
                    &config,
                    attached.as_ref(),
                    &plugin,
                    answered,
                )
                .await
            }
        };
        match compared["outcome"].as_str() {
            Some("identical") => identical += 1,
            Some("changed") => changed += 1,
            _ => failed += 1,
        }
        if let Value::Object(fields) = compared {
            result.as_object_mut().expect("an object").extend(fields);
        }
        results.push(result);
    }
    Ok(json!({
        "slot": slot,
        "candidate": plugin.label(),
        "candidate_id": plugin.id,
        "attached": attached.as_ref().map(PluginRecord::label),
        "attached_id": attached.as_ref().map(|p| p.id.clone()),
        "deliveries": deliveries.len(),
        "identical": identical,
        "changed": changed,
        "failed": failed,
        "results": results,
    }))
}

/// A side of a comparison: its report's fuel, memory, time, and error if it failed.
fn side(report: Option<&Value>, label: Option<String>, error: Option<&str>, elapsed: Duration) -> Value {
    let mut side = json!({"version": label});
    match report {
        Some(report) => {
            for key in ["fuel_used", "peak_memory", "duration_us", "logs"] {
                if let Some(value) = report.get(key) {
                    side[key] = value.clone();
                }
            }
        }
        None => side["duration_us"] = json!(elapsed.as_micros() as u64),
    }
    if let Some(error) = error {
        side["error"] = json!(error);
    }
    side
}

async fn compare_transforms(
    state: &AppState,
    partner_id: &str,
    compiled: &CompiledSettings,
    config: &str,
    attached: Option<&PluginRecord>,
    candidate: &PluginRecord,
    event: &std::sync::Arc<Event>,
) -> Value {
    let rendered = compiled.render(event);
    let run = async |id: Option<&str>| {
        let started = Instant::now();
        let stages = Stages {
            plugins: &state.plugins,
            partner_id,
            transform_plugin: id,
            classify_plugin: None,
            config: Cow::Borrowed(config),
            success_response: None,
            error_response: None,
        };
        let out = exchange::transform(&stages, event, rendered.clone()).await;
        (out, started.elapsed())
    };
    let (before, before_took) = run(attached.map(|p| p.id.as_str())).await;
    let (after, after_took) = run(Some(candidate.id.as_str())).await;
    let (before_report, before_error, before_request) = match &before {
        Ok(t) => (t.report.as_ref(), None, Some(&t.request)),
        Err(e) => (Some(e.report()), Some(e.to_string()), None),
    };
    let (after_report, after_error, after_request) = match &after {
        Ok(t) => (t.report.as_ref(), None, Some(&t.request)),
        Err(e) => (Some(e.report()), Some(e.to_string()), None),
    };
    let mut out = json!({
        "attached": side(before_report, attached.map(PluginRecord::label), before_error.as_deref(), before_took),
        "candidate": side(after_report, Some(candidate.label()), after_error.as_deref(), after_took),
    });
    match (before_request, after_request) {
        (_, None) => out["outcome"] = json!("failed"),
        (None, Some(_)) => out["outcome"] = json!("changed"),
        (Some(before), Some(after)) => {
            let diff = request_diff(before, after);
            out["outcome"] = json!(if diff.is_empty() { "identical" } else { "changed" });
            if !diff.is_empty() {
                out["diff"] = Value::Object(diff);
            }
        }
    }
    out
}

/// What differs between two requests, as the attempt log shows them (redacted): method and URL
/// as both values, headers as those only one side has (by name and value), and the body as
/// both texts and a unified diff of lines (JSON bodies pretty-printed with sorted keys first,
/// so that a changed value is a line).
fn request_diff(before: &Request, after: &Request) -> Object {
    let (a, b) = (redact::request_value(before), redact::request_value(after));
    let mut diff = Object::new();
    for key in ["method", "url"] {
        if a[key] != b[key] {
            diff.insert(key.into(), json!({"attached": a[key], "candidate": b[key]}));
        }
    }
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| {
                Some((
                    pair.get(0)?.as_str()?.to_ascii_lowercase(),
                    pair.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect()
    };
    let (ha, hb) = (pairs(&a), pairs(&b));
    let removed: Vec<_> = ha.iter().filter(|h| !hb.contains(h)).collect();
    let added: Vec<_> = hb.iter().filter(|h| !ha.contains(h)).collect();
    if !removed.is_empty() || !added.is_empty() {
        diff.insert("headers".into(), json!({"removed": removed, "added": added}));
    }
    if before.body != after.body {
        // JSON bodies are compared with their keys sorted: a plugin that parses and writes the
        // body back may reorder them, which changes no value a receiver reads.
        let lines = |body: &str| match serde_json::from_str::<Value>(body) {
            Ok(value) => serde_json::to_string_pretty(&sorted(value)).unwrap_or_else(|_| body.to_owned()) + "\n",
            Err(_) => body.to_owned() + "\n",
        };
        let (la, lb) = (lines(&before.body), lines(&after.body));
        let text = if la == lb {
            "the same JSON: only the order of its keys or its spacing differs\n".to_owned()
        } else {
            similar::TextDiff::from_lines(&la, &lb)
                .unified_diff()
                .context_radius(2)
                .header("attached", "candidate")
                .to_string()
        };
        diff.insert(
            "body".into(),
            json!({"attached": before.body, "candidate": after.body, "unified": text}),
        );
    }
    diff
}

/// `value` with the keys of every object in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

async fn compare_classifiers(
    state: &AppState,
    partner_id: &str,
    compiled: &CompiledSettings,
    config: &str,
    attached: Option<&PluginRecord>,
    candidate: &PluginRecord,
    answered: &Attempt,
) -> Value {
    let request_json: Value = serde_json::from_str(answered.request.get()).unwrap_or(Value::Null);
    let request = super::plugins::parse_request(&request_json).unwrap_or_else(|_| Request {
        method: crate::request::Method::Post,
        url: String::new(),
        headers: Vec::new(),
        body: String::new(),
    });
    let headers: Vec<(String, String)> = answered
        .response_headers
        .as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let answer = Answer {
        status: answered.response_status.unwrap_or(0).clamp(0, u16::MAX.into()) as u16,
        headers,
        body: answered.response_body.clone().unwrap_or_default().into_bytes(),
    };
    let elapsed = Duration::from_millis(answered.duration_ms.max(0) as u64);
    let options = compiled.settings();
    let run = async |id: Option<&str>| {
        let started = Instant::now();
        let stages = Stages {
            plugins: &state.plugins,
            partner_id,
            transform_plugin: None,
            classify_plugin: id,
            config: Cow::Borrowed(config),
            success_response: options.success_response.as_deref(),
            error_response: options.error_response.as_deref(),
        };
        let classified = exchange::classify(&stages, &request, Ok(&answer), elapsed).await;
        (classified, started.elapsed())
    };
    let (before, before_took) = run(attached.map(|p| p.id.as_str())).await;
    let (after, after_took) = run(Some(candidate.id.as_str())).await;
    let error = |report: Option<&Value>| {
        report
            .and_then(|r| r.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let after_error = error(after.report.as_ref());
    let mut out = json!({
        "attempt": answered.number,
        "response_status": answered.response_status,
        "attached": side(before.report.as_ref(), attached.map(PluginRecord::label), error(before.report.as_ref()).as_deref(), before_took),
        "candidate": side(after.report.as_ref(), Some(candidate.label()), after_error.as_deref(), after_took),
    });
    let (va, vb) = (
        serde_json::to_value(&before.verdict).unwrap_or_default(),
        serde_json::to_value(&after.verdict).unwrap_or_default(),
    );
    out["attached"]["verdict"] = va.clone();
    out["candidate"]["verdict"] = vb.clone();
    out["outcome"] = json!(if after_error.is_some() {
        "failed"
    } else if va == vb {
        "identical"
    } else {
        "changed"
    });
    out
}
