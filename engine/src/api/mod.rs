//! The HTTP API (axum): one router per resource, one error type, one partner extractor.
//!
//! Every partner-scoped route takes a [`Partner`] extractor, so a handler cannot run without the
//! partner it acts for, and every query it makes is scoped to that partner. Authentication will
//! live in that extractor.

mod body;
mod deliveries;
mod error;
mod events;
mod partners;
mod plugins;
mod settings;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::{Router, routing::get};

pub use error::ApiError;

use std::sync::Arc;

use crate::plugins::Plugins;
use crate::send::Sender;
use crate::store::{self, Store};
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
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(partners::router())
        .merge(plugins::router())
        .merge(settings::router())
        .merge(events::router())
        .merge(deliveries::router())
        .with_state(state)
}

/// Liveness, with the plugin artifact cache's counters.
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.plugins.host().cache_stats();
    axum::Json(serde_json::json!({
        "status": "ok",
        "plugin_cache": {"hits": stats.hits.load(Relaxed), "compiles": stats.compiles.load(Relaxed)},
    }))
}

/// Liveness: the process is up and answers.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store answers a query and its migrations are applied; 503 otherwise.
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

/// The partner a request acts for, from the `{partner_id}` in its path.
pub struct Partner(pub store::Partner);

impl FromRequestParts<AppState> for Partner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let id = params
            .get("partner_id")
            .ok_or_else(|| ApiError::bad_request("the route names no partner"))?;
        match state.store.partner(id).await? {
            Some(partner) => Ok(Partner(partner)),
            None => Err(ApiError::not_found(format!("no partner {id}"))),
        }
    }
}

/// Parses a JSON request body, with the parser's line and column on failure.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}
