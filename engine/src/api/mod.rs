//! The HTTP API (axum): one router per resource, one error type, one extractor per credential.
//!
//! Every route but the health probes (`/health`, `/healthz`, `/readyz`) and the OpenAPI document
//! (`/openapi.json`, see `openapi`) takes one of the credential extractors of `auth`:
//! [`Operator`], [`Ingest`] or [`Partner`]; `/metrics` takes [`MetricsReader`], the operator
//! unless the metrics are made public. Every partner-scoped route takes [`Partner`], so a handler cannot
//! run without the partner it acts for, checked against the caller's credential, and every query
//! it makes is scoped to that partner.

mod auth;
mod body;
mod deliveries;
mod error;
mod events;
mod keys;
mod openapi;
mod partners;
mod plugins;
mod rollout;
mod settings;
mod tries;

use axum::{Router, routing::get};

pub use auth::{Auth, Caller, Ingest, MetricsReader, Operator, Partner};
pub(crate) use auth::{caller_by_hash, partner_for};
pub(crate) use deliveries::retry_delivery;
pub use error::ApiError;
pub(crate) use partners::create_partner;
pub(crate) use plugins::{run_plugin, upload_plugin};
pub(crate) use rollout::{
    CANARY_DEFAULTS, canary_promote, canary_start, canary_status, canary_stop, replay_diff, roll_back,
};
pub(crate) use settings::{preview_request, save_settings, test_postback};
pub use tries::Tries;

use std::sync::Arc;

use crate::plugins::Plugins;
use crate::send::Sender;
use crate::store::Store;
use crate::worker::Worker;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The worker, woken when deliveries become due.
    pub worker: Worker,
    /// Sends test postbacks, with the same rules as the worker.
    pub sender: Sender,
    /// Runs partners' plugins.
    pub plugins: Arc<Plugins>,
    /// The configured operator token and keys' last uses.
    pub auth: Arc<Auth>,
    /// Seals new signing secrets and opens stored ones for test postbacks.
    pub secret_key: crate::sealed::SecretKey,
    /// Test postbacks and plugin dry runs left to each partner.
    pub tries: Arc<Tries>,
    /// How many plugins, and bytes of them, each partner may keep.
    pub plugin_quota: crate::store::PluginQuota,
}

impl AppState {
    /// Wakes the workers after deliveries became due: this process's, and those of every process
    /// sharing the store ([`Store::notify_due`]). The change is committed already; should the
    /// notice fail, the workers' idle poll finds the deliveries a moment later.
    pub(crate) async fn wake_workers(&self) {
        self.worker.wake();
        if let Err(e) = self.store.notify_due().await {
            tracing::warn!(error = %e, "cannot wake the other processes' workers; their idle poll finds the deliveries");
        }
    }

    /// Keeps the partner's postbacks that workers hold in memory from being sent, in this
    /// process ([`Worker::hold`]) and in every process sharing the store: the store holds them
    /// now. Should the notice fail, postbacks already claimed elsewhere may still go once.
    pub(crate) async fn hold_everywhere(&self, partner_id: &str) {
        self.worker.hold(partner_id);
        self.tell_others(crate::store::Notice::Held(partner_id.into())).await;
    }

    /// Forgets a partner about to be deleted, in this process ([`Worker::forget_partner`]) and
    /// in every process sharing the store, so that no worker records outcomes for deliveries
    /// that are gone.
    pub(crate) async fn forget_everywhere(&self, partner_id: &str) {
        self.worker.forget_partner(partner_id);
        self.tell_others(crate::store::Notice::Gone(partner_id.into())).await;
    }

    /// Refuses a key just revoked, in this process ([`Auth::forget`]) and in every process
    /// sharing the store. Should the notice fail, the others read the key again within seconds.
    pub(crate) async fn revoked_everywhere(&self, key_id: &str) {
        self.auth.forget(key_id);
        self.tell_others(crate::store::Notice::Revoked(key_id.into())).await;
    }

    async fn tell_others(&self, notice: crate::store::Notice) {
        if let Err(e) = self.store.notify(&notice).await {
            tracing::warn!(error = %e, ?notice, "cannot tell the other processes");
        }
    }

    /// Takes one of the partner's test postbacks or plugin dry runs, or answers 429 with when
    /// the next one is allowed.
    pub(crate) fn take_try(&self, partner_id: &str) -> Result<(), ApiError> {
        self.tries.take(partner_id).map_err(|wait| {
            ApiError::too_many_requests(
                format!(
                    "partner {partner_id} made too many test postbacks and plugin dry runs; try again in {} s",
                    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
                ),
                wait,
            )
        })
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(partners::router())
        .merge(keys::router())
        .merge(plugins::router())
        .merge(rollout::router())
        .merge(settings::router())
        .merge(events::router())
        .merge(deliveries::router())
        .with_state(state)
}

/// What a worker process serves on its listen address: the health probes and `/metrics`, none
/// of the API's routes.
pub fn probes(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Liveness, with the plugin artifact cache's counters.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses((status = 200, description = "The process is up.", body = Health)),
)]
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.plugins.host().cache_stats();
    axum::Json(serde_json::json!({
        "status": "ok",
        "plugin_cache": {"hits": stats.hits.load(Relaxed), "compiles": stats.compiles.load(Relaxed)},
    }))
}

/// Liveness: the process is up and answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "The process is up.", body = Probe)),
)]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store answers a query and its migrations are applied; 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "The store answers and is migrated.", body = Probe),
        (status = 503, response = openapi::Unavailable),
    ),
)]
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state
        .store
        .ready()
        .await
        .map_err(|e| ApiError::unavailable(format!("not ready: {e}")))?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

/// The metrics in the Prometheus text format, with the queue measured now: due deliveries in the
/// store (one indexed query on a read connection) and in the worker's memory queue.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    security(("operator_token" = [])),
    responses((
        status = 200,
        description = "The metrics in the Prometheus text format (version 0.0.4). Needs the operator \
token unless `serve` runs with `--metrics-public`.",
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String,
    )),
)]
async fn metrics(
    _: MetricsReader,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let now = crate::store::now_ms();
    let (due, oldest) = state.store.due(now).await?;
    let age = oldest.map_or(std::time::Duration::ZERO, |at| {
        std::time::Duration::from_millis((now - at).max(0) as u64)
    });
    let text = state.worker.metrics().encode(due, age, state.worker.queued() as i64);
    Ok(([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// The answer of `GET /health`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of `health` in the OpenAPI document")]
struct Health {
    /// `ok`.
    status: String,
    /// The plugin artifact cache: plugins found compiled, and compiles.
    plugin_cache: CacheStats,
}

/// The plugin artifact cache's counters.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes part of the answer of `health` in the OpenAPI document"
)]
struct CacheStats {
    hits: u64,
    compiles: u64,
}

/// The answer of the probes: `ok`, or `ready`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the answer of the probes in the OpenAPI document")]
struct Probe {
    status: String,
}

/// Parses a JSON request body, with the parser's line and column on failure.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}
