//! Who is calling: the three credentials, each checked by an extractor, so a handler cannot run
//! without the one its route needs.
//!
//! Every credential is a bearer token (`Authorization: Bearer pw_live_…`):
//! - the **operator** token may do everything: the one configured (`admin_token`), or else the
//!   one `serve` made on its first start;
//! - an **ingest** key may post events, for every partner or for the partners it names, and
//!   read nothing;
//! - a **partner** key may use its own partner's routes, and nothing else: another partner's
//!   resources answer 404, exactly as if they did not exist.
//!
//! Keys are looked up by their token's SHA-256, never compared as tokens, and kept in memory once
//! found, so that a request with a known key (every accept of the platform's ingest key) costs no
//! query; revoking a key through the API drops it from memory before answering. Over a store
//! other processes share, their revocations arrive as notices ([`Auth::follow`]), and a key is
//! read again after a few seconds in any case, should a notice be lost. A missing or unknown
//! credential answers 401 with `WWW-Authenticate: Bearer`; a known one on a route its kind may
//! not use answers 403.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::id::KeyId;
use crate::store::{self, ApiKey, KeyKind, Notice, now_ms, rules};

/// What the API knows of credentials besides the store: the configured operator token's hash,
/// the keys found so far, and when each key's last use was written.
#[derive(Debug, Default)]
pub struct Auth {
    /// SHA-256 of the configured operator token; when set, it is the only operator token.
    operator_hash: Option<String>,
    /// Keys that authenticated, by their token's hash.
    known: Mutex<Known>,
    /// When each key's last use was last written (Unix ms), so that it is written at most once
    /// per [`rules::LAST_USE_EVERY_MS`] per key.
    written: Mutex<HashMap<KeyId, i64>>,
    /// Whether `GET /metrics` answers without a credential.
    public_metrics: bool,
}

/// Keys found in the store, each with when it was read, and how many revocations there have
/// been: a key read before a revocation is not kept after it, since it may be the revoked one.
#[derive(Debug, Default)]
struct Known {
    keys: HashMap<String, (ApiKey, Instant)>,
    revocations: u64,
}

/// How long a key read from a store other processes share is kept: a revocation there reaches
/// this process as a notice ([`Notice::Revoked`](crate::store::Notice)), and should the notice
/// be lost, the key is read again after this long anyway.
const SHARED_KEY_FOR: Duration = Duration::from_secs(5);

impl Auth {
    /// With `operator_hash`, the hash of the configured operator token, if one is configured.
    pub fn new(operator_hash: Option<String>) -> Auth {
        Auth {
            operator_hash,
            ..Auth::default()
        }
    }

    /// Lets `GET /metrics` answer without a credential, for scrapers that cannot send one.
    pub fn with_public_metrics(mut self, public: bool) -> Auth {
        self.public_metrics = public;
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a key just revoked, and keeps no key read before now: a lookup under way may have
    /// read it before the revocation committed.
    pub(crate) fn forget(&self, id: &str) {
        let mut known = self.known();
        known.keys.retain(|_, (key, _)| key.id != id);
        known.revocations += 1;
    }

    /// Forgets every key found so far, and keeps no key read before now: revocations made by
    /// other processes may have gone unheard (see [`Notice::Missed`](crate::store::Notice)).
    pub(crate) fn forget_all(&self) {
        let mut known = self.known();
        known.keys.clear();
        known.revocations += 1;
    }

    /// Forgets the keys of a partner just deleted or disabled, and keeps no key read before
    /// now (see [`Auth::forget`]).
    pub(crate) fn forget_partner(&self, partner_id: &str) {
        let mut known = self.known();
        known
            .keys
            .retain(|_, (key, _)| key.partner_id.as_deref() != Some(partner_id));
        known.revocations += 1;
    }

    /// Follows what the other processes sharing `store` say of keys and partners, so that a key
    /// revoked or a partner disabled or deleted there is refused here at once, until `shutdown`
    /// is cancelled. `None` where no other process shares the store.
    pub fn follow(
        self: &std::sync::Arc<Self>,
        store: &store::Store,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let auth = self.clone();
        store.watch(
            move |notice| match notice {
                Notice::Revoked(key) => auth.forget(&key),
                Notice::Held(partner) | Notice::Gone(partner) => auth.forget_partner(&partner),
                Notice::Missed => auth.forget_all(),
                Notice::Due => {}
            },
            shutdown,
        )
    }

    /// The key whose token hashes to `hash`: from memory, else from the store.
    async fn key(&self, store: &store::Store, hash: String) -> Result<Option<ApiKey>, ApiError> {
        let shared = store.is_shared();
        let revocations = {
            let known = self.known();
            if let Some((key, read)) = known.keys.get(&hash)
                && !(shared && read.elapsed() >= SHARED_KEY_FOR)
            {
                return Ok(Some(key.clone()));
            }
            known.revocations
        };
        let key = store.authenticate_hash(&hash).await?;
        let mut known = self.known();
        match &key {
            Some(key) if known.revocations == revocations => {
                known.keys.insert(hash, (key.clone(), Instant::now()));
            }
            // Revoked, or its partner deleted, in another process.
            None => {
                known.keys.remove(&hash);
            }
            Some(_) => {}
        }
        Ok(key)
    }
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator.
    Operator,
    /// A stored key (a partner key, an ingest key, or the operator token made on a first start).
    Key(ApiKey),
}

impl Caller {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            Caller::Operator => KeyKind::Operator,
            Caller::Key(key) => key.kind,
        }
    }

    /// Whether this caller may post events for `partner` (see [`rules::may_post_for`]).
    pub fn may_post_for(&self, partner: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Key(key) => rules::may_post_for(key, partner),
        }
    }
}

/// The bearer token of a request, if it sends one.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("this route needs a credential: Authorization: Bearer <token>"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be Bearer <token>",
        ));
    }
    Ok(token)
}

/// The caller of a request: its credential checked against the configured operator token, then
/// looked up among stored keys by hash.
async fn caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    caller_by_hash(state, rules::token_hash(bearer(parts)?)).await
}

/// The caller whose token hashes to `hash`, checked as a bearer token is: the console keeps a
/// signed-in token's hash (never the token) and asks again on every request, so that a revoked
/// key ends its sessions at once.
pub(crate) async fn caller_by_hash(state: &AppState, hash: String) -> Result<Caller, ApiError> {
    if state.auth.operator_hash.as_deref() == Some(hash.as_str()) {
        return Ok(Caller::Operator);
    }
    let key = state
        .auth
        .key(&state.store, hash)
        .await?
        // A stored operator token stands only when none is configured.
        .filter(|key| key.kind != KeyKind::Operator || state.auth.operator_hash.is_none())
        .ok_or_else(|| ApiError::unauthorized("the credential is unknown or revoked"))?;
    used(state, &key);
    Ok(Caller::Key(key))
}

/// Records a key's use, at most once a minute per key and off the request's path.
fn used(state: &AppState, key: &ApiKey) {
    let now = now_ms();
    {
        let mut written = state
            .auth
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match written.get_mut(&key.id) {
            Some(at) if now - *at < rules::LAST_USE_EVERY_MS => return,
            Some(at) => *at = now,
            None => {
                written.insert(key.id.clone(), now);
            }
        }
    }
    let (store, id) = (state.store.clone(), key.id.clone());
    tokio::spawn(async move {
        if let Err(error) = store.key_used(&id, now).await {
            tracing::warn!(key = %id, %error, "the key's last use was not recorded");
        }
    });
}

fn forbidden(caller: &Caller) -> ApiError {
    ApiError::forbidden(format!("a {} key may not use this route", caller.kind().as_str()))
}

/// The operator: routes that create partners and manage keys take this.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match caller(parts, state).await? {
            Caller::Operator => Ok(Operator),
            Caller::Key(key) if key.kind == KeyKind::Operator => Ok(Operator),
            other => Err(forbidden(&other)),
        }
    }
}

/// A caller that may read the metrics: the operator, or anyone when the metrics are public
/// (`--metrics-public`). The metrics name no partner, but they tell the engine's load and
/// health, which is the operator's business.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.auth.public_metrics {
            return Ok(MetricsReader);
        }
        Operator::from_request_parts(parts, state).await.map(|_| MetricsReader)
    }
}

/// A caller that may post events: an ingest key or the operator. Which partners' events it may
/// post is [`Caller::may_post_for`].
pub struct Ingest(pub Caller);

impl FromRequestParts<AppState> for Ingest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = caller(parts, state).await?;
        match caller.kind() {
            KeyKind::Operator | KeyKind::Ingest => Ok(Ingest(caller)),
            KeyKind::Partner => Err(forbidden(&caller)),
        }
    }
}

/// The partner a request acts for, from the `{partner_id}` in its path: the caller is that
/// partner's key, or the operator. Another partner's key gets 404, as if the partner did not
/// exist; the partner's own key gets 403 while the operator has the partner disabled.
pub struct Partner(pub store::Partner);

impl FromRequestParts<AppState> for Partner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = caller(parts, state).await?;
        let id = partner_in_path(parts, state).await?;
        partner_for(state, &caller, &id).await.map(Partner)
    }
}

/// The partner `id` as `caller` may act for it: its own partner key, or the operator. Another
/// partner's key gets 404, as if the partner did not exist; the partner's own key gets 403
/// while the operator has the partner disabled. The one check of tenant scoping, for the API's
/// routes and the console's pages alike.
pub(crate) async fn partner_for(state: &AppState, caller: &Caller, id: &str) -> Result<store::Partner, ApiError> {
    let allowed = match caller {
        Caller::Operator => true,
        Caller::Key(key) => match key.kind {
            KeyKind::Operator => true,
            KeyKind::Partner => key.partner_id.as_deref() == Some(id),
            KeyKind::Ingest => return Err(forbidden(caller)),
        },
    };
    let partner = if allowed { state.store.partner(id).await? } else { None };
    let partner = partner.ok_or_else(|| ApiError::not_found(format!("no partner {id}")))?;
    if partner.disabled_at.is_some() && matches!(caller, Caller::Key(key) if key.kind == KeyKind::Partner) {
        return Err(ApiError::forbidden(format!(
            "partner {id} is disabled by the operator; its keys work again once it is enabled"
        )));
    }
    Ok(partner)
}

/// The `{partner_id}` of the route.
pub(super) async fn partner_in_path(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    params
        .remove("partner_id")
        .ok_or_else(|| ApiError::bad_request("the route names no partner"))
}
