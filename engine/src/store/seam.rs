//! [`Store`]: the one store type the engine uses, over every backend.

use std::sync::Arc;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{
    Accepted, ApiKey, Attempt, Canary, CanarySpec, CanaryState, Claimed, Deleted, Delivery, DeliveryFilter, Durability,
    Endpoint, GiveBack, KeyKind, Lease, Leased, NewKey, Notice, Outcome, OutcomeCount, Partner, PluginQuota,
    PluginRecord, PluginUsage, Pruned, RateSlot, SettingsRecord, Status, StoreError, rules,
};
use crate::event::Event;
use crate::id::{DeliveryId, PartnerId};

type Result<T> = std::result::Result<T, StoreError>;

/// The store, on the backend it was opened on (see the [module](super) docs).
///
/// Cloning it is cheap and shares the backend.
#[derive(Debug, Clone)]
pub enum Store {
    /// An SQLite database file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database, which many processes share.
    Postgres(PgStore),
}

/// Hands a call to the store's backend.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it: `sqlite://FILE`, or
    /// `postgres://…` (`postgresql://…`) for a PostgreSQL database that must exist; any other
    /// URL is [`StoreError::Unsupported`].
    pub async fn open(url: &str, durability: Durability) -> Result<Store> {
        Store::open_with(url, durability, 0).await
    }

    /// [`Store::open`], with the writes no client waits for (recordings, claims, give-backs)
    /// run `background_niceness` nice steps below the ones a client waits for (accepts); `serve`
    /// passes its async runtime's niceness. See docs/performance.md for why.
    pub async fn open_with(url: &str, durability: Durability, background_niceness: i32) -> Result<Store> {
        if url.starts_with("sqlite:") {
            return Ok(Store::Sqlite(
                SqliteStore::open_with(url, durability, background_niceness).await?,
            ));
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Ok(Store::Postgres(PgStore::open(url, durability).await?));
        }
        Err(StoreError::Unsupported(url.to_owned()))
    }

    /// Closes the store, waiting for queries under way.
    pub async fn close(&self) {
        dispatch!(self, store => store.close().await)
    }

    /// Whether the store answers a query and every migration this build knows is applied.
    pub async fn ready(&self) -> Result<()> {
        dispatch!(self, store => store.ready().await)
    }

    /// Creates a partner with a fresh signing secret (see [`rules::new_partner`](super::rules::new_partner)),
    /// stored as `seal` makes it (the store keeps that text as it is, without reading it). The
    /// answer holds the secret itself, to show once.
    pub async fn create_partner(&self, name: &str, seal: impl FnOnce(&str) -> String) -> Result<Partner> {
        dispatch!(self, store => store.create_partner(name, seal).await)
    }

    /// Every partner's stored signing secret, as stored.
    pub async fn partner_secrets(&self) -> Result<Vec<(crate::id::PartnerId, String)>> {
        dispatch!(self, store => store.partner_secrets().await)
    }

    /// Gives a partner a new signing secret, `stored` (opaque text, as for
    /// [`create_partner`](Self::create_partner)), keeping the current one as the previous
    /// secret until `previous_until` (Unix ms). Returns whether the partner exists.
    pub async fn rotate_secret(&self, partner_id: &str, stored: &str, previous_until: i64) -> Result<bool> {
        dispatch!(self, store => store.rotate_secret(partner_id, stored, previous_until).await)
    }

    /// Drops the previous signing secrets whose grace period ended by `now` (Unix ms); returns
    /// how many.
    pub async fn drop_previous_secrets(&self, now: i64) -> Result<u64> {
        dispatch!(self, store => store.drop_previous_secrets(now).await)
    }

    /// Replaces a partner's stored signing secret with `stored` (the same secret, stored anew).
    pub async fn set_partner_secret(&self, partner_id: &str, stored: &str) -> Result<()> {
        dispatch!(self, store => store.set_partner_secret(partner_id, stored).await)
    }

    /// A partner by id.
    pub async fn partner(&self, id: &str) -> Result<Option<Partner>> {
        dispatch!(self, store => store.partner(id).await)
    }

    /// Partners, newest first, `limit` at a time after the cursor `before` (a partner id).
    pub async fn partners(&self, before: Option<&str>, limit: i64) -> Result<Vec<Partner>> {
        dispatch!(self, store => store.partners(before, limit).await)
    }

    /// Disables a partner: its keys stop working, its pending deliveries are held, and those
    /// of events accepted from now on too, until it is enabled. Returns how many were held, or
    /// `None` without such a partner.
    pub async fn disable_partner(&self, id: &str, now: i64) -> Result<Option<u64>> {
        dispatch!(self, store => store.set_partner_disabled(id, true, now).await)
    }

    /// Enables a disabled partner and releases its held deliveries, due now, if its endpoint
    /// can send (it has settings, not disabled). Returns how many, or `None` without such a
    /// partner.
    pub async fn enable_partner(&self, id: &str, now: i64) -> Result<Option<u64>> {
        dispatch!(self, store => store.set_partner_disabled(id, false, now).await)
    }

    /// Deletes a partner with all its data (attempts, deliveries, events, settings, keys and
    /// plugins) in one transaction. `None` without such a partner.
    pub async fn delete_partner(&self, id: &str) -> Result<Option<Deleted>> {
        dispatch!(self, store => store.delete_partner(id).await)
    }

    /// Creates an API key of `kind` (see [`rules::new_key`]) and stores only its token's hash;
    /// the token is in the answer, and nowhere else from then on.
    pub async fn create_key(
        &self,
        kind: KeyKind,
        partner_id: Option<&str>,
        partners: Option<Vec<crate::id::PartnerId>>,
        now: i64,
    ) -> Result<NewKey> {
        let (key, token) = rules::new_key(kind, partner_id.map(Into::into), partners, now);
        let hash = rules::token_hash(&token);
        dispatch!(self, store => store.create_key(&key, &hash).await)?;
        Ok(NewKey { key, token })
    }

    /// The key a token belongs to, if it lets its holder in ([`rules::authenticates`]): looked
    /// up by the token's hash, so tokens are never compared.
    pub async fn authenticate(&self, token: &str) -> Result<Option<ApiKey>> {
        self.authenticate_hash(&rules::token_hash(token)).await
    }

    /// [`Store::authenticate`] with the token's hash ([`rules::token_hash`]) already made.
    pub async fn authenticate_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let key = dispatch!(self, store => store.key_by_hash(hash).await)?;
        Ok(key.filter(rules::authenticates))
    }

    /// Keys of `kind` (of one partner when given), revoked ones too, newest first.
    pub async fn keys(&self, kind: KeyKind, partner_id: Option<&str>) -> Result<Vec<ApiKey>> {
        dispatch!(self, store => store.keys(kind, partner_id).await)
    }

    /// Revokes a key of `kind` (of one partner when given): false when there is no such key not
    /// yet revoked.
    pub async fn revoke_key(&self, kind: KeyKind, partner_id: Option<&str>, id: &str, now: i64) -> Result<bool> {
        dispatch!(self, store => store.revoke_key(kind, partner_id, id, now).await)
    }

    /// Records that a key was used at `at` (callers throttle this: see
    /// [`rules::LAST_USE_EVERY_MS`]).
    pub async fn key_used(&self, id: &str, at: i64) -> Result<()> {
        dispatch!(self, store => store.key_used(id, at).await)
    }

    /// Saves validated settings; saving re-enables a disabled endpoint and releases its held
    /// deliveries, since a partner saving settings has looked at them. Returns the new version.
    pub async fn put_settings(&self, partner_id: &str, body: &str, now: i64) -> Result<i64> {
        dispatch!(self, store => store.put_settings(partner_id, body, now).await)
    }

    /// A partner's saved settings.
    pub async fn settings(&self, partner_id: &str) -> Result<Option<SettingsRecord>> {
        dispatch!(self, store => store.settings(partner_id).await)
    }

    /// Re-enables a disabled endpoint and releases its held deliveries; returns how many.
    pub async fn enable(&self, partner_id: &str, now: i64) -> Result<u64> {
        dispatch!(self, store => store.enable(partner_id, now).await)
    }

    /// Deletes a partner's settings. Its pending deliveries are held, not failed, and go when
    /// settings are saved again; events accepted meanwhile make no deliveries. Returns how many
    /// were held, or `None` when it had no settings.
    pub async fn delete_settings(&self, partner_id: &str, now: i64) -> Result<Option<u64>> {
        dispatch!(self, store => store.delete_settings(partner_id, now).await)
    }

    /// Disables a partner's endpoint with `reason`, holding its pending deliveries until it is
    /// enabled (or its settings saved). Returns how many were held, or `None` without settings.
    pub async fn disable_endpoint(&self, partner_id: &str, reason: &str, now: i64) -> Result<Option<u64>> {
        dispatch!(self, store => store.disable_endpoint(partner_id, reason, now).await)
    }

    /// Records events and their deliveries in one transaction: all of them, or none.
    ///
    /// An event whose id the partner sent before is not recorded again; its first deliveries are
    /// returned. A `resolved` postback waits (status `blocked`) while the `created` postback of
    /// the same inquiry is still on its way, and a `created` postback that arrives second goes
    /// before a `resolved` one that has not been tried yet (see [`rules`](super::rules)).
    pub async fn accept(&self, events: &[Event], now: i64) -> Result<Vec<Accepted>> {
        Ok(self
            .accept_leasing(Arc::new(events.to_vec()), now, Lease::NONE)
            .await?
            .0)
    }

    /// [`Store::accept`], leasing up to `lease.max` of the new deliveries that are due now to the
    /// caller in the same transaction, so that it can send them without claiming them.
    pub async fn accept_leasing(
        &self,
        events: Arc<Vec<Event>>,
        now: i64,
        lease: Lease,
    ) -> Result<(Vec<Accepted>, Vec<Leased>)> {
        dispatch!(self, store => store.accept_leasing(events, now, lease).await)
    }

    /// Claims up to `limit` due deliveries for `lease_ms`: until the lease ends no other worker
    /// claims them, and if this worker dies they become due again when it does.
    pub async fn claim(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
        self.claim_except(now, lease_ms, limit, &[]).await
    }

    /// [`Store::claim`], leaving out the deliveries of the partners in `skip` (those the caller
    /// has no room for), so that they stay in the store for a later claim.
    pub async fn claim_except(&self, now: i64, lease_ms: i64, limit: i64, skip: &[PartnerId]) -> Result<Vec<Claimed>> {
        dispatch!(self, store => store.claim(now, lease_ms, limit, skip).await)
    }

    /// When the earliest pending delivery is due, if any is. On PostgreSQL a delivery a worker
    /// holds is left out (its lease ends only if that worker dies; the idle poll finds it then).
    pub async fn next_due(&self) -> Result<Option<i64>> {
        dispatch!(self, store => store.next_due().await)
    }

    /// How many pending deliveries are due at `now` (Unix ms) and not claimed, and when the
    /// earliest of them fell due; read on a read connection, off the writer.
    pub async fn due(&self, now: i64) -> Result<(i64, Option<i64>)> {
        dispatch!(self, store => store.due(now).await)
    }

    /// The attempts started from `since` (Unix ms) on, across partners, counted per partner and
    /// per span of `span_ms` (the first span begins at `since`) as delivered, failed and
    /// retried: the operator's delivery rates. Read along the attempts' primary key, whose ids
    /// sort by time ([`rules::attempts_from`](super::rules::attempts_from)).
    pub async fn outcome_counts(&self, since: i64, span_ms: i64) -> Result<Vec<OutcomeCount>> {
        dispatch!(self, store => store.outcome_counts(since, span_ms).await)
    }

    /// Whether other processes may use the store at the same time (PostgreSQL), so that what
    /// this process keeps from it in memory may go stale without this process changing it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Tells the workers of every process sharing the store that deliveries may be due now (a
    /// retry, a replay, released deliveries), so that they claim without waiting for their idle
    /// poll. Nothing on SQLite, whose one process wakes its own worker.
    pub async fn notify_due(&self) -> Result<()> {
        self.notify(&Notice::Due).await
    }

    /// Tells the workers of every process sharing the store `notice` (see [`Store::watch`]).
    /// Nothing on SQLite, whose one process tells its own worker.
    pub async fn notify(&self, notice: &Notice) -> Result<()> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(store) => store.notify(notice).await,
        }
    }

    /// Calls `on` with every notice of the processes sharing the store ([`Store::notify`], and
    /// [`Notice::Due`] from an accept that leaves deliveries due), until `shutdown` is
    /// cancelled. A lost connection to the database is made again; since notices sent meanwhile
    /// are lost, `on` gets [`Notice::Due`] whenever listening starts. `None` on SQLite, where no
    /// other process changes the store.
    pub fn watch(
        &self,
        on: impl Fn(Notice) + Send + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(store) => Some(store.watch(on, shutdown)),
        }
    }

    /// Takes the next send slot of `partner_id`'s rate limit, `rate` postbacks per second,
    /// counted for every process sharing the store, if it comes within `horizon`; beyond it no
    /// slot is taken and the answer says when the first free one is. `None` where the store is
    /// one process's (SQLite): the caller limits the rate in memory.
    pub async fn reserve_rate_slot(
        &self,
        partner_id: &str,
        rate: u32,
        horizon: std::time::Duration,
    ) -> Result<Option<RateSlot>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(store) => store.reserve_rate_slot(partner_id, rate, horizon).await.map(Some),
        }
    }

    /// A partner's settings and secret for sending.
    pub async fn endpoint(&self, partner_id: &str) -> Result<Option<Endpoint>> {
        dispatch!(self, store => store.endpoint(partner_id).await)
    }

    /// Records attempts and moves their deliveries on, outcome after outcome, in order (see
    /// [`rules::settle`](super::rules::settle)). Accepts, which a client waits for, go first.
    ///
    /// An outcome moves its delivery only while the lease it was made under still holds it
    /// ([`rules::holds_lease`]): once a lapsed lease was claimed again, the newer claim's
    /// outcome is kept whichever is recorded first, and the older attempt is logged (and
    /// counted) with [`Attempt::superseded`] set.
    /// Returns how many deliveries that waited for the finished ones may go now.
    pub async fn record(&self, outcomes: Arc<Vec<Outcome>>, now: i64) -> Result<u64> {
        dispatch!(self, store => store.record(outcomes, now).await)
    }

    /// Moves claimed deliveries to new due times without counting an attempt (rate limiting,
    /// shutdown, a store that failed to load what sending needs); the last time given for a
    /// delivery wins. A delivery claimed again since its lease lapsed is left to the newer
    /// claim (see [`rules::holds_lease`]).
    pub async fn reschedule(&self, due: &[GiveBack]) -> Result<()> {
        dispatch!(self, store => store.reschedule(due).await)
    }

    /// A partner's deliveries, newest first, `limit` at a time after the cursor `before`.
    pub async fn deliveries(
        &self,
        partner_id: &str,
        status: Option<Status>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let filter = DeliveryFilter {
            status,
            ..DeliveryFilter::default()
        };
        self.deliveries_where(partner_id, &filter, before, limit).await
    }

    /// A partner's deliveries that pass `filter`, newest first, `limit` at a time after the
    /// cursor `before`; served by an index whatever the filter.
    pub async fn deliveries_where(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        dispatch!(self, store => store.deliveries(partner_id, filter, before, limit).await)
    }

    /// Replays a partner's done deliveries ([`rules::REPLAYABLE`], or those of
    /// `filter.status`) that pass `filter`: each is due now again, with its own id (the same
    /// `webhook-id`) and a new attempt. Oldest first, after the cursor `after` (a delivery id),
    /// at most `limit`; returns the ids queued. Pending, blocked and held deliveries are on
    /// their way already and are left be; while the endpoint may not send, the replayed ones are
    /// held until it can.
    pub async fn replay(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        after: Option<&str>,
        limit: i64,
        now: i64,
    ) -> Result<Vec<DeliveryId>> {
        dispatch!(self, store => store.replay(partner_id, filter, after, limit, now).await)
    }

    /// One delivery with its attempts, oldest attempt first.
    pub async fn delivery(&self, partner_id: &str, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        dispatch!(self, store => store.delivery(partner_id, id).await)
    }

    /// Makes a delivery due now again (a manual retry or replay). Refused (`Ok(None)`) unless
    /// [`rules::may_retry`](super::rules::may_retry) allows it.
    pub async fn retry(&self, partner_id: &str, id: &str, now: i64) -> Result<Option<Delivery>> {
        dispatch!(self, store => store.retry(partner_id, id, now).await)
    }

    /// Removes what retention lets go at the cutoff `older_than` (Unix ms): deliveries done
    /// for good whose last activity is older (see [`rules::prunable`]), their attempts, and
    /// events left without deliveries. Deliveries still on their way stay, however old.
    ///
    /// Works in transactions of about `batch` rows, each letting waiting writes in before it,
    /// so that a large backlog never holds up accepts and recordings for long, and each when
    /// `pace` lets it (see [`Pace`](super::Pace)).
    pub async fn prune(&self, older_than: i64, batch: usize, pace: &super::Pace) -> Result<Pruned> {
        dispatch!(self, store => store.prune(older_than, batch, pace).await)
    }

    /// Stores an uploaded, validated plugin if the partner's plugins stay within `quota` with
    /// it, checked and inserted at once; otherwise `Ok(Err(usage))`, what they use now.
    #[allow(
        clippy::too_many_arguments,
        reason = "the columns of one row, and the quota it must fit"
    )]
    pub async fn create_plugin(
        &self,
        partner_id: &str,
        name: &str,
        sha256: &str,
        exports: &[&str],
        wasm: &[u8],
        now: i64,
        quota: PluginQuota,
    ) -> Result<std::result::Result<PluginRecord, PluginUsage>> {
        dispatch!(self, store => store.create_plugin(partner_id, name, sha256, exports, wasm, now, quota).await)
    }

    /// How many plugins a partner keeps, and their binaries' bytes together.
    pub async fn plugin_usage(&self, partner_id: &str) -> Result<PluginUsage> {
        dispatch!(self, store => store.plugin_usage(partner_id).await)
    }

    /// A partner's plugins, newest first.
    pub async fn plugins(&self, partner_id: &str) -> Result<Vec<PluginRecord>> {
        dispatch!(self, store => store.plugins(partner_id).await)
    }

    /// One of a partner's plugins.
    pub async fn plugin(&self, partner_id: &str, id: &str) -> Result<Option<PluginRecord>> {
        dispatch!(self, store => store.plugin(partner_id, id).await)
    }

    /// A plugin's binary, by id (workers load plugins by the id the settings name).
    pub async fn plugin_wasm(&self, id: &str) -> Result<Option<Vec<u8>>> {
        dispatch!(self, store => store.plugin_wasm(id).await)
    }

    /// Deletes a plugin unless settings name it: `Ok(Err(()))` when in use, `Ok(Ok(false))`
    /// when there is no such plugin.
    pub async fn delete_plugin(&self, partner_id: &str, id: &str) -> Result<std::result::Result<bool, ()>> {
        dispatch!(self, store => store.delete_plugin(partner_id, id).await)
    }

    /// A partner's plugin by name: `version`, or the latest without one.
    pub async fn plugin_named(
        &self,
        partner_id: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<PluginRecord>> {
        dispatch!(self, store => store.plugin_named(partner_id, name, version).await)
    }

    /// Starts a canary for the partner, in place of any earlier one, and moves its settings'
    /// version so that every worker sees it; `None` when the partner has no settings.
    pub async fn start_canary(&self, partner_id: &str, spec: &CanarySpec, now: i64) -> Result<Option<Canary>> {
        dispatch!(self, store => store.start_canary(partner_id, spec, now).await)
    }

    /// The partner's canary: the running one, or the last one with how it ended.
    pub async fn canary(&self, partner_id: &str) -> Result<Option<Canary>> {
        dispatch!(self, store => store.canary(partner_id).await)
    }

    /// Ends the partner's running canary as `state`, for `reason`, moving the settings'
    /// version. `None` when no canary runs.
    pub async fn end_canary(
        &self,
        partner_id: &str,
        state: CanaryState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Option<Canary>> {
        dispatch!(self, store => store.end_canary(partner_id, state, reason, now).await)
    }

    /// Counts one call of the canary started at `started_at` and judges it at its window's end
    /// ([`rules::canary_step`](super::rules::canary_step)): the next window starts, or a
    /// candidate failing too often is detached (and the settings' version moves). Returns the
    /// canary after, or `None` when that canary no longer runs.
    pub async fn tally_canary(
        &self,
        partner_id: &str,
        started_at: i64,
        candidate: bool,
        failed: bool,
        now: i64,
    ) -> Result<Option<Canary>> {
        dispatch!(self, store => store.tally_canary(partner_id, started_at, candidate, failed, now).await)
    }

    /// The stored text of one of a partner's events (an event pruned with its deliveries is
    /// gone).
    pub async fn event_body(&self, partner_id: &str, event_id: &str) -> Result<Option<String>> {
        dispatch!(self, store => store.event_body(partner_id, event_id).await)
    }
}
