//! `/v1/partners/{partner_id}/plugins`: upload, list, show, delete and dry-run plugins.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::Body;
use super::openapi::{BadRequest, Conflict, NotFound, PartnerPath, TooLarge, TooManyRequests, Unprocessable};
use super::{ApiError, AppState, Partner, parse_json};
use crate::error::FieldError;
use crate::event::{Event, EventType};
use crate::exchange::{DryRun, dry_run};
use crate::settings::NotificationSettings;
use crate::store::{PluginQuota, PluginRecord, PluginUsage, now_ms};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners/{partner_id}/plugins", post(upload).get(list))
        .route(
            "/v1/partners/{partner_id}/plugins/{plugin_id}",
            get(show).delete(remove),
        )
        .route("/v1/partners/{partner_id}/plugins/{plugin_id}/run", post(run))
}

/// These routes in the OpenAPI document (`api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, list, show, remove, run))]
pub(super) struct Doc;

/// The partner's plugins.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `list` in the OpenAPI document")]
struct Plugins {
    data: Vec<PluginRecord>,
}

/// The body of a dry run; every field is optional.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the body `run` reads, in the OpenAPI document")]
struct RunInput {
    /// The event (default: a sample of `event_type`).
    event: Option<Object>,
    /// The sample's type (default: `action_inquiry.created`).
    event_type: Option<crate::event::EventType>,
    /// `{method, url, headers, body}` (default: rendered by the saved settings).
    request: Option<Object>,
    /// The receiver's answer to classify: `{status, headers, body, duration_ms}`.
    response: Option<Object>,
    /// The plugin's configuration (default: the saved `plugin_config`).
    config: Option<Value>,
}

/// Any JSON object.
type Object = serde_json::Map<String, Value>;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The plugin's name, 1 to 100 characters.
    #[param(required = true, min_length = 1, max_length = 100)]
    name: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct PluginPath {
    /// The plugin's id (`plg_…`), or `name@version`, or a name for its latest version.
    plugin_id: String,
}

/// Largest plugin upload; the host's own binary limit (`--plugin-binary-mib`) is checked when
/// it compiles.
const UPLOAD_BYTES: usize = 64 << 20;

/// Largest dry-run body: an event, a request and a response.
const RUN_BYTES: usize = 2 << 20;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(FieldError::new(field, None, message).into(), "")
}

/// Uploads a plugin: the body is the WebAssembly component's bytes (`application/wasm`),
/// compiled and checked before it is stored. Uploaded under a name the partner's plugins
/// already have, it is the next version of that name; the earlier versions stay. 409 when the partner would keep more plugins, or
/// more bytes of them together, than its quota allows.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/plugins",
    operation_id = "upload_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, UploadQuery),
    request_body(description = "The component's bytes.", content(("application/wasm"))),
    responses(
        (status = 201, description = "The plugin.", body = PluginRecord),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
    ),
)]
async fn upload(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Query(query): Query<UploadQuery>,
    Body(body): Body<UPLOAD_BYTES>,
) -> Result<(StatusCode, Json<PluginRecord>), ApiError> {
    let record = upload_plugin(&state, &partner.id, &query.name.unwrap_or_default(), &body).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Checks, compiles and stores a plugin of the partner: what `upload` and the console's
/// plugins page both do.
pub(crate) async fn upload_plugin(
    state: &AppState,
    partner_id: &str,
    name: &str,
    body: &[u8],
) -> Result<PluginRecord, ApiError> {
    if body.len() > UPLOAD_BYTES {
        return Err(ApiError::too_large(UPLOAD_BYTES));
    }
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "give the plugin a name of 1 to 100 characters: ?name=reshape",
        ));
    }
    // Checked before compiling too, so that a partner at its quota costs no compile; the
    // insert checks again, atomically, for uploads racing this one.
    let quota = state.plugin_quota;
    let usage = state.store.plugin_usage(partner_id).await?;
    if !quota.admits(usage, body.len() as u64) {
        return Err(over_quota(partner_id, quota, usage, body.len()));
    }
    let plugin = state
        .plugins
        .compile(body.to_vec())
        .await
        .map_err(|e| invalid("body", e.to_string()))?;
    let record = state
        .store
        .create_plugin(
            partner_id,
            name,
            plugin.sha256(),
            &plugin.exports().names(),
            body,
            now_ms(),
            quota,
        )
        .await?
        .map_err(|usage| over_quota(partner_id, quota, usage, body.len()))?;
    state.plugins.remember(&record.id, plugin);
    Ok(record)
}

/// 409: one more plugin of `size` bytes would take the partner past its quota. Names the
/// limit, what the partner uses, and the way out.
fn over_quota(partner_id: &str, quota: PluginQuota, usage: PluginUsage, size: usize) -> ApiError {
    let limit = if usage.plugins >= quota.plugins {
        format!(
            "partner {partner_id} already keeps {} plugins; it may keep {} at most",
            usage.plugins, quota.plugins
        )
    } else {
        format!(
            "this plugin's {} would take partner {partner_id}'s plugins to {}, over the {} they may take together \
             ({} in {} plugins now)",
            mib(size as u64),
            mib(usage.bytes.saturating_add(size as u64)),
            mib(quota.bytes),
            mib(usage.bytes),
            usage.plugins
        )
    };
    ApiError::conflict(format!(
        "{limit}; delete plugins it no longer uses (DELETE /v1/partners/{partner_id}/plugins/{{plugin_id}}), \
         or ask the operator to raise --plugins-per-partner / --plugin-mib-per-partner"
    ))
}

/// `64 MiB`, `1.5 MiB`, `120.0 KiB`: sizes as partners read them.
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / (1 << 10) as f64)
    }
}

/// The partner's plugins.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/plugins",
    operation_id = "list_plugins",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath),
    responses(
        (status = 200, description = "The plugins.", body = Plugins),
        (status = 404, response = NotFound),
    ),
)]
async fn list(State(state): State<AppState>, Partner(partner): Partner) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"data": state.store.plugins(&partner.id).await?})))
}

async fn find(state: &AppState, partner_id: &str, id: &str) -> Result<PluginRecord, ApiError> {
    resolve(state, partner_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("partner {partner_id} has no plugin {id}")))
}

/// The partner's plugin a reference names: its id (`plg_…`), `name@version`, or a name alone
/// for the latest version of that name.
pub(crate) async fn resolve(
    state: &AppState,
    partner_id: &str,
    reference: &str,
) -> Result<Option<PluginRecord>, crate::store::StoreError> {
    if reference.starts_with("plg_") {
        return state.store.plugin(partner_id, reference).await;
    }
    let (name, version) = match reference.rsplit_once('@') {
        Some((name, version)) if !name.is_empty() => match version.parse::<i64>() {
            Ok(version) if version > 0 => (name, Some(version)),
            _ => (reference, None),
        },
        _ => (reference, None),
    };
    state.store.plugin_named(partner_id, name, version).await
}

/// One plugin.
#[utoipa::path(
    get,
    path = "/v1/partners/{partner_id}/plugins/{plugin_id}",
    operation_id = "show_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, PluginPath),
    responses(
        (status = 200, description = "The plugin.", body = PluginRecord),
        (status = 404, response = NotFound),
    ),
)]
async fn show(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<PluginPath>,
) -> Result<Json<PluginRecord>, ApiError> {
    Ok(Json(find(&state, &partner.id, &path.plugin_id).await?))
}

/// Deletes a plugin version that is not attached: neither the settings nor a running canary
/// name it.
#[utoipa::path(
    delete,
    path = "/v1/partners/{partner_id}/plugins/{plugin_id}",
    operation_id = "delete_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, PluginPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<PluginPath>,
) -> Result<StatusCode, ApiError> {
    let plugin = find(&state, &partner.id, &path.plugin_id).await?;
    match state.store.delete_plugin(&partner.id, &plugin.id).await? {
        Ok(true) => {
            state.plugins.forget(&plugin.id);
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(ApiError::not_found(format!(
            "partner {} has no plugin {}",
            partner.id, path.plugin_id
        ))),
        Err(()) => Err(ApiError::conflict(format!(
            "plugin {} ({}) is attached: the partner's settings name it, or its canary runs; attach another \
             version (or none) in transform_plugin / classify_plugin, or stop the canary, first",
            plugin.id,
            plugin.label()
        ))),
    }
}

/// A dry run: `{"event"?, "event_type"?, "request"?, "response"?, "config"?}`. Without an event,
/// a sample of `event_type` is used; without a request, the saved settings render one; without
/// a config, the saved `plugin_config` is used.
#[utoipa::path(
    post,
    path = "/v1/partners/{partner_id}/plugins/{plugin_id}/run",
    operation_id = "run_plugin",
    tag = "plugins",
    security(("partner_key" = []), ("operator_token" = [])),
    params(PartnerPath, PluginPath),
    request_body(content = Option<RunInput>, description = "Optional; an empty body runs on a sample event."),
    responses(
        (status = 200, description = "What each export of the plugin did: output or error, fuel, memory, time and logs.", body = Object),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
    ),
)]
async fn run(
    State(state): State<AppState>,
    Partner(partner): Partner,
    Path(path): Path<PluginPath>,
    Body(body): Body<RUN_BYTES>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(run_plugin(&state, &partner.id, &path.plugin_id, &body).await?))
}

/// A dry run of the partner's plugin on `body`, the JSON the `run` route reads (empty for a
/// sample event): what `run` and the console's plugin page both do, with the same checks, the
/// same count against `--tries-per-minute` and the same messages.
pub(crate) async fn run_plugin(
    state: &AppState,
    partner_id: &str,
    plugin_id: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    if body.len() > RUN_BYTES {
        return Err(ApiError::too_large(RUN_BYTES));
    }
    let plugin = find(state, partner_id, plugin_id).await?;
    state.take_try(partner_id)?;
    let input = if body.is_empty() { json!({}) } else { parse_json(body)? };
    let saved = match state.store.settings(partner_id).await? {
        Some(record) => serde_json::from_str::<NotificationSettings>(&record.body).ok(),
        None => None,
    };
    let event = match input.get("event") {
        Some(event) => Event::from_value(event).map_err(|e| ApiError::invalid(e, "event."))?,
        None => {
            let ty = match input.get("event_type").and_then(Value::as_str) {
                None => EventType::ActionInquiryCreated,
                Some(name) => EventType::parse(name)
                    .ok_or_else(|| invalid("event_type", format!("{name:?} is not an event type")))?,
            };
            Event::sample(ty, partner_id)
        }
    };
    let event = std::sync::Arc::new(event);
    let request = match input.get("request") {
        Some(request) => parse_request(request)?,
        None => {
            let settings = saved.clone().ok_or_else(|| {
                invalid(
                    "request",
                    "the partner has no settings to render a request from; give a request",
                )
            })?;
            settings
                .compile()
                .map_err(|e| ApiError::invalid(e, "settings."))?
                .render(&event)
        }
    };
    let response = input.get("response").map(parse_response).transpose()?;
    let config = match input.get("config") {
        Some(config) => config.to_string(),
        None => crate::plugins::config_text(saved.as_ref().and_then(|s| s.plugin_config.as_ref())),
    };
    dry_run(
        &state.plugins,
        partner_id,
        &plugin.id,
        DryRun {
            event: &event,
            request,
            response,
            config,
        },
    )
    .await
    .map_err(|e| invalid("response", e))
}

pub(super) fn headers(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_owned(), pair.get(1)?.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn parse_request(value: &Value) -> Result<crate::request::Request, ApiError> {
    let plugin_request = postwire_plugins::types::Request {
        method: value.get("method").and_then(Value::as_str).unwrap_or("POST").to_owned(),
        url: value.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        headers: headers(value.get("headers")),
        body: value.get("body").and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    crate::plugins::engine_request(plugin_request).map_err(|e| invalid("request", e.to_string()))
}

fn parse_response(value: &Value) -> Result<postwire_plugins::types::Response, ApiError> {
    let status = value
        .get("status")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| invalid("response.status", "give the receiver's status, 100 to 599"))?;
    Ok(postwire_plugins::types::Response {
        status: status as u16,
        headers: headers(value.get("headers")),
        body: value
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        duration_ms: value.get("duration_ms").and_then(Value::as_u64).unwrap_or(0) as u32,
    })
}
