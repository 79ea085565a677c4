//! The durable store: partners, settings, events, deliveries and attempts.
//!
//! Every state change of a postback is one transaction here, so a process killed at any point
//! loses nothing: an accepted event is committed together with its deliveries; a claimed
//! delivery carries a lease (its `next_at` moves forward by the lease) that simply expires if
//! the worker dies; an attempt and the delivery's new state are committed together, the new
//! state only while the attempt's lease still holds (see [`rules::holds_lease`]).
//!
//! # The seam
//!
//! [`Store`] is what the rest of the engine uses, whatever holds the data: an enum over the
//! backends, each public method handing the call to the backend the store was opened on (a
//! `match`, no dynamic dispatch). [`Store::open`] picks the backend from the URL. The types of
//! this module name no backend's own types: a backend's error reaches callers boxed in
//! [`StoreError::Backend`], converted where the backend is.
//!
//! Backends:
//! - SQLite (`sqlite://FILE`, in `sqlite`): one file in WAL mode, its own writer threads and
//!   the hot statements run on the SQLite handle directly. Everything SQLite needs for speed
//!   stays in that module.
//! - PostgreSQL (`postgres://…`, in `postgres`): one database many processes share; claims lock
//!   the rows they take with `FOR UPDATE SKIP LOCKED`.
//!
//! The schema keeps to types and statements both SQLite and PostgreSQL have (times are Unix
//! milliseconds, ids are text). Adding a backend means a module with the methods [`Store`]
//! hands on, a variant of [`Store`] and its arm in [`Store::open_with`], and a backend in the
//! tests' list.
//!
//! # The delivery rules
//!
//! Which deliveries an event creates and in what status, when they are due, holding and
//! releasing them around a disabled endpoint, when a manual retry is allowed, what a recorded
//! outcome does, and a new partner's signing secret are decided once, in [`rules`], for every
//! backend. A backend calls those rules, or renders their SQL forms where a rule must run inside
//! a bulk statement.
//!
//! The store's tests (in `tests`) run against [`Store`] only, once per backend.

mod postgres;
pub mod rules;
mod seam;
mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use serde::Serialize;

pub use seam::Store;

use crate::event::Event;
use crate::id::{AttemptId, DeliveryId, EventId, KeyId, PartnerId, PluginId};

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A committed event survives the process being killed (WAL, `synchronous=NORMAL`).
    #[default]
    Process,
    /// A committed event also survives power loss (`synchronous=FULL`: an fsync per commit).
    Power,
}

/// The event family whose settings the API's `action-inquiry` routes hold.
pub const ACTION_INQUIRY: &str = "action_inquiry";

/// A partner (tenant).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Partner {
    /// `ptn_…`
    pub id: PartnerId,
    /// A display name.
    pub name: String,
    /// The Standard Webhooks signing secret as stored. Never serialized: a partner's secret is
    /// shown once, in the answer that creates it, and no GET may show it again.
    #[serde(skip)]
    pub secret: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When the operator disabled the partner (Unix ms): its keys stop working and its
    /// postbacks are held until it is enabled again. `None` while enabled.
    pub disabled_at: Option<i64>,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Everything: the operator token made on a first start without a configured one.
    Operator,
    /// One partner's resources, and nothing of other partners'.
    Partner,
    /// Posting events, for every partner or a named set; reading nothing.
    Ingest,
}

impl KeyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Operator => "operator",
            KeyKind::Partner => "partner",
            KeyKind::Ingest => "ingest",
        }
    }

    /// The kind of a stored name.
    pub fn parse(name: &str) -> Option<KeyKind> {
        match name {
            "operator" => Some(KeyKind::Operator),
            "partner" => Some(KeyKind::Partner),
            "ingest" => Some(KeyKind::Ingest),
            _ => None,
        }
    }
}

/// An API key as stored: never its token, which only its creator sees, once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// `key_…`
    pub id: KeyId,
    /// What it may do.
    pub kind: KeyKind,
    /// The partner a partner key acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<PartnerId>,
    /// The partners an ingest key may post events for; `None` for all (and for other kinds).
    pub partners: Option<Vec<PartnerId>>,
    /// The first characters after `pw_live_`, to tell keys apart.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it was revoked; a revoked key never authenticates.
    pub revoked_at: Option<i64>,
    /// When it was last used, to the minute.
    pub last_used_at: Option<i64>,
}

/// A key just created, with its token: the only time the token exists outside its holder.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// `pw_live_…`, shown once.
    pub token: String,
}

/// Saved settings with their state.
#[derive(Debug, Clone)]
pub struct SettingsRecord {
    /// The settings JSON as validated.
    pub body: String,
    /// Grows on every save.
    pub version: i64,
    /// Why the endpoint is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<i64>,
    /// When the settings were last saved.
    pub updated_at: i64,
}

/// The state of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its time, or being sent.
    Pending,
    /// Waiting for the created postback of the same inquiry to succeed or fail for good.
    Blocked,
    /// The endpoint is disabled; sent again once it is re-enabled.
    Held,
    /// The receiver accepted it.
    Delivered,
    /// Given up for good.
    Failed,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Blocked => "blocked",
            Status::Held => "held",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Blocked,
            Status::Held,
            Status::Delivered,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One postback of one event to one partner.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `dlv_…`; also the `webhook-id` the receiver sees on every attempt.
    pub id: DeliveryId,
    /// The partner.
    pub partner_id: PartnerId,
    /// The event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// The inquiry the event is about.
    pub inquiry_id: String,
    /// The event's `OrderId`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Attempts made so far, [superseded](Attempt::superseded) ones included: each is a
    /// request its receiver saw.
    pub attempts: i64,
    /// When it is due next (Unix ms); meaningful while pending.
    pub next_at: i64,
    /// The delivery it waits for, while blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<DeliveryId>,
    /// The last failure, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// Which of a partner's deliveries a listing or a replay takes; every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Of this status.
    pub status: Option<Status>,
    /// Of this event type (`action_inquiry.created`, ...).
    pub event_type: Option<String>,
    /// Created at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Created before this time (Unix ms).
    pub until: Option<i64>,
    /// About this inquiry.
    pub inquiry_id: Option<String>,
    /// Of an event with this `OrderId`.
    pub order_id: Option<String>,
}

/// What deleting a partner removed, so that the caller can drop what it keeps in memory.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// The partner's keys.
    pub keys: Vec<KeyId>,
    /// The partner's plugins.
    pub plugins: Vec<PluginId>,
    /// How many deliveries went with it.
    pub deliveries: u64,
}

/// What an attempt meant for its delivery, as the attempt log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptVerdict {
    /// The receiver accepted the postback.
    Success,
    /// Tried again later.
    Retry,
    /// Given up for good (or not sent: the attempt could not be made).
    Fail,
    /// The receiver asked for the endpoint to be disabled (410 Gone).
    Disable,
}

impl AttemptVerdict {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptVerdict::Success => "success",
            AttemptVerdict::Retry => "retry",
            AttemptVerdict::Fail => "fail",
            AttemptVerdict::Disable => "disable",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<AttemptVerdict> {
        [
            AttemptVerdict::Success,
            AttemptVerdict::Retry,
            AttemptVerdict::Fail,
            AttemptVerdict::Disable,
        ]
        .into_iter()
        .find(|v| v.as_str() == name)
    }
}

/// One attempt as recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    /// `att_…`
    pub id: AttemptId,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt.
    pub number: i64,
    /// Unix ms.
    pub started_at: i64,
    /// How long the exchange took.
    pub duration_ms: i64,
    /// The request as sent (method, url, headers with secrets redacted, body); null when no
    /// request was made.
    #[schema(value_type = Option<Object>)]
    pub request: Box<serde_json::value::RawValue>,
    /// The status the receiver answered, if it answered.
    pub response_status: Option<i64>,
    /// The receiver's headers, as a JSON list of `[name, value]` pairs.
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub response_headers: Option<Box<serde_json::value::RawValue>>,
    /// The receiver's body, cut at the capture limit.
    pub response_body: Option<String>,
    /// What the attempt meant for the delivery.
    pub verdict: AttemptVerdict,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// What plugins did: per plugin, its output or error, fuel used, peak memory, time and logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<serde_json::Value>,
    /// True when the delivery had been claimed again (its lease having lapsed) by the time
    /// this attempt was recorded: the receiver saw the request, so it is logged and counted,
    /// but it did not move the delivery, which keeps the newer claim's outcome. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

/// How many plugins, and how many bytes of binaries together, one partner may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginQuota {
    /// Plugins one partner may keep.
    pub plugins: u64,
    /// Bytes of plugin binaries one partner may keep, all its plugins together.
    pub bytes: u64,
}

impl PluginQuota {
    /// Plugins a partner may keep unless the operator says otherwise: several versions of a
    /// transform and a classifier each, with room to spare.
    pub const DEFAULT_PLUGINS: u64 = 20;
    /// Bytes of binaries a partner may keep unless the operator says otherwise: four binaries
    /// at the default size cap, or many times what a real plugin weighs.
    pub const DEFAULT_BYTES: u64 = 64 << 20;

    /// Whether one more plugin of `size` bytes fits beside `usage`.
    pub fn admits(&self, usage: PluginUsage, size: u64) -> bool {
        usage.plugins < self.plugins && usage.bytes.saturating_add(size) <= self.bytes
    }
}

impl Default for PluginQuota {
    fn default() -> Self {
        PluginQuota {
            plugins: PluginQuota::DEFAULT_PLUGINS,
            bytes: PluginQuota::DEFAULT_BYTES,
        }
    }
}

/// What a partner's plugins use of its [`PluginQuota`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginUsage {
    /// Plugins kept.
    pub plugins: u64,
    /// Bytes of their binaries together.
    pub bytes: u64,
}

/// An uploaded plugin (without its binary).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginRecord {
    /// `plg_…`
    pub id: PluginId,
    /// Its owner.
    pub partner_id: PartnerId,
    /// The name it was uploaded with.
    pub name: String,
    /// Its version among the partner's plugins of that name: 1 for the first upload of a
    /// name, one more for each later one. `name@version` names it as well as its id does.
    pub version: i64,
    /// The sha256 of the binary, hex.
    pub sha256: String,
    /// The binary's size in bytes.
    pub size: i64,
    /// `transform`, `classify` or both.
    pub exports: Vec<String>,
    /// Unix ms.
    pub created_at: i64,
}

impl PluginRecord {
    /// `name@version`, as settings, canaries and the attempt log name a version.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Which of the settings' plugins a canary or a rollback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginSlot {
    /// `transform_plugin`.
    Transform,
    /// `classify_plugin`.
    Classify,
}

impl PluginSlot {
    /// The export a plugin needs for this slot.
    pub fn export(self) -> &'static str {
        match self {
            PluginSlot::Transform => "transform",
            PluginSlot::Classify => "classify",
        }
    }

    /// The settings field that names the slot's plugin.
    pub fn field(self) -> &'static str {
        match self {
            PluginSlot::Transform => "transform_plugin",
            PluginSlot::Classify => "classify_plugin",
        }
    }

    /// The slot of a stored name.
    pub fn parse(name: &str) -> Option<PluginSlot> {
        match name {
            "transform" => Some(PluginSlot::Transform),
            "classify" => Some(PluginSlot::Classify),
            _ => None,
        }
    }
}

/// Where a canary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CanaryState {
    /// The candidate serves its share of postbacks.
    Running,
    /// Detached automatically: the candidate failed more often than the attached version by
    /// more than the margin (the reason says by how much).
    Detached,
    /// Stopped by the partner.
    Stopped,
    /// The candidate was attached in place of the attached version.
    Promoted,
}

impl CanaryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Running => "running",
            CanaryState::Detached => "detached",
            CanaryState::Stopped => "stopped",
            CanaryState::Promoted => "promoted",
        }
    }

    /// The state of a stored name.
    pub fn parse(name: &str) -> Option<CanaryState> {
        match name {
            "running" => Some(CanaryState::Running),
            "detached" => Some(CanaryState::Detached),
            "stopped" => Some(CanaryState::Stopped),
            "promoted" => Some(CanaryState::Promoted),
            _ => None,
        }
    }
}

/// What a canary is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySpec {
    /// The slot the candidate stands in for.
    pub slot: PluginSlot,
    /// The candidate version.
    pub plugin_id: PluginId,
    /// Of the postbacks' first attempts, the share the candidate serves (1 to 100).
    pub share_percent: i64,
    /// How long a window is (ms): the failure rates are compared at each window's end.
    pub window_ms: i64,
    /// How many percentage points the candidate's failure rate may exceed the attached
    /// version's before it is detached.
    pub margin_percent: i64,
    /// Calls the candidate must have made in a window before it is judged.
    pub min_calls: i64,
}

/// A partner's canary as stored: what it was asked to do, where it stands, and the calls and
/// failures of both versions in the current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Canary {
    /// The slot the candidate stands in for.
    pub slot: PluginSlot,
    /// The candidate version.
    pub plugin_id: PluginId,
    /// Of the postbacks' first attempts, the share the candidate serves, in percent.
    pub share_percent: i64,
    /// How long a window is, in milliseconds.
    pub window_ms: i64,
    /// How many percentage points the candidate's failure rate may exceed the attached
    /// version's.
    pub margin_percent: i64,
    /// Calls the candidate must have made in a window before it is judged.
    pub min_calls: i64,
    /// Where it stands.
    pub state: CanaryState,
    /// Why it ended, when it did.
    pub reason: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    /// When the current window began (Unix ms).
    pub window_started_at: i64,
    /// The candidate's calls in the current window.
    pub candidate_calls: i64,
    /// Those that failed: the plugin failed, or the postback it served did not succeed.
    pub candidate_failures: i64,
    /// The attached version's calls in the current window.
    pub attached_calls: i64,
    /// Those that failed.
    pub attached_failures: i64,
    /// When it ended (Unix ms).
    pub ended_at: Option<i64>,
}

/// What the attempts of one partner made in one span of time, across partners (see
/// [`Store::outcome_counts`]): the operator's delivery rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    /// The partner.
    pub partner_id: PartnerId,
    /// When the span began (Unix ms): `since` plus a whole number of spans.
    pub at: i64,
    /// Attempts the receiver accepted.
    pub delivered: i64,
    /// Attempts that gave their postback up (failed for good, or the endpoint disabled).
    pub failed: i64,
    /// Attempts to be tried again.
    pub retried: i64,
}

/// An accepted event and what it became.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The event id.
    pub event_id: EventId,
    /// The deliveries made for it (none when the partner has no settings for its type).
    pub delivery_ids: Vec<DeliveryId>,
    /// True when the event had been accepted before; nothing new was recorded.
    pub duplicate: bool,
}

/// A delivery claimed by a worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The partner.
    pub partner_id: PartnerId,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The event.
    pub event: ClaimedEvent,
    /// The version of the partner's settings now.
    pub settings_version: i64,
    /// The claim's fencing token (see [`rules::holds_lease`]), carried by its
    /// [`Outcome`].
    pub lease_seq: i64,
}

/// The event of a claimed delivery.
#[derive(Debug, Clone)]
pub enum ClaimedEvent {
    /// Read already (it was accepted by this process a moment ago).
    Read(Box<Event>),
    /// Its stored text, read by whoever sends the delivery, so that reading a batch of claimed
    /// events is spread over the postbacks instead of holding up the claim.
    Stored(String),
}

impl ClaimedEvent {
    /// The event, or why its stored text cannot be read.
    pub fn read(self) -> std::result::Result<Event, String> {
        match self {
            ClaimedEvent::Read(event) => Ok(*event),
            ClaimedEvent::Stored(text) => {
                Event::from_json(&text).map_err(|e| format!("the stored event is unreadable: {e}"))
            }
        }
    }
}

/// How many of the deliveries an accept records are leased to this process's worker right
/// away, and until when. A leased delivery is sent from memory without being claimed; if the
/// process dies first, its lease expires and any worker claims it from the store.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// When the lease ends (Unix ms).
    pub until: i64,
    /// The most deliveries to lease.
    pub max: usize,
}

impl Lease {
    /// No delivery is leased.
    pub const NONE: Lease = Lease { until: 0, max: 0 };
}

/// A delivery leased at accept (see [`Lease`]).
#[derive(Debug, Clone)]
pub struct Leased {
    /// The position of its event in the accepted batch.
    pub event: usize,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The version of the partner's settings it was accepted under.
    pub settings_version: i64,
    /// The lease's fencing token (see [`rules::holds_lease`]).
    pub lease_seq: i64,
}

/// A partner's settings and secret, as a worker needs them.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The settings JSON.
    pub settings: String,
    /// Its version.
    pub version: i64,
    /// The signing secret, as stored.
    pub secret: String,
    /// After a rotation, the previous secret as stored and until when (Unix ms) postbacks carry
    /// its signature too.
    pub previous_secret: Option<(String, i64)>,
}

/// A claimed delivery given back to the store without an attempt (see
/// [`Store::reschedule`]).
#[derive(Debug, Clone)]
pub struct GiveBack {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it is held under ([`Claimed::lease_seq`]): once the delivery was claimed
    /// again, the newer claim holds it and nothing is given back.
    pub lease_seq: i64,
    /// When it is due again (Unix ms).
    pub due: i64,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Delivered: done.
    Delivered,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Failed for good.
    Failed,
    /// Hold it and disable the partner's endpoint, with this reason.
    Disable(String),
}

/// An attempt to record, with the delivery's next state.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The attempt.
    pub attempt: Attempt,
    /// The delivery's next state, taken only while the lease the attempt was made under still
    /// holds (see [`rules::holds_lease`]); the attempt is logged either way.
    pub next: Next,
    /// The fencing token of the lease the attempt was made under ([`Claimed::lease_seq`]).
    pub lease_seq: i64,
}

/// How a pass of retention shares the store's writer with delivery (see [`Store::prune`]).
///
/// Retention is the one write nobody waits for, so it goes last: while `busy` says postbacks
/// are waiting to be sent, a pass takes one step at most every `busy_gap` and otherwise waits,
/// the way PostgreSQL's autovacuum sleeps between pages under its cost limit. Under load it
/// costs delivery next to nothing; when the queue empties it catches up at full speed. A
/// pipeline that is never idle still gets one step (500 rows, as `serve` runs it) per
/// `busy_gap`: retention keeps up with 500 postbacks a second on average (43 million a day)
/// without the queue ever emptying.
#[derive(Clone)]
pub struct Pace {
    busy: Option<std::sync::Arc<dyn Fn() -> bool + Send + Sync>>,
    busy_gap: std::time::Duration,
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("yields", &self.busy.is_some())
            .field("busy_gap", &self.busy_gap)
            .finish()
    }
}

impl Pace {
    /// How often a waiting step looks again whether delivery is still busy.
    const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(20);

    /// Steps one after another, waiting only for the accepts under way (tests, and tools that
    /// prune a store nothing delivers from).
    pub fn unpaced() -> Pace {
        Pace {
            busy: None,
            busy_gap: std::time::Duration::ZERO,
        }
    }

    /// Steps aside while `busy` is true, taking one step at most every `busy_gap` then.
    pub fn yielding(busy: impl Fn() -> bool + Send + Sync + 'static, busy_gap: std::time::Duration) -> Pace {
        Pace {
            busy: Some(std::sync::Arc::new(busy)),
            busy_gap,
        }
    }

    /// Waits until the next step may run; `last` is when the previous one started.
    pub(crate) async fn before_step(&self, last: &mut Option<tokio::time::Instant>) {
        if let Some(busy) = &self.busy {
            while busy() {
                let Some(since) = last.map(|at| at.elapsed()) else {
                    break;
                };
                if since >= self.busy_gap {
                    break;
                }
                tokio::time::sleep(Self::LOOK_AGAIN.min(self.busy_gap - since)).await;
            }
        }
        *last = Some(tokio::time::Instant::now());
    }
}

/// What a process tells the other processes sharing the store, whose workers and API keep
/// some of it in memory (see [`Store::notify`] and [`Store::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Deliveries may be due now.
    Due,
    /// The partner's postbacks are held by the store (the partner or its endpoint disabled, its
    /// settings deleted): those a worker keeps in memory are not sent, and the API reads the
    /// partner's keys again.
    Held(PartnerId),
    /// The partner is being deleted: its postbacks in memory are not sent, the outcomes of
    /// those on the wire are not recorded, since their deliveries are gone, and its keys no
    /// longer authenticate.
    Gone(PartnerId),
    /// The API key was revoked: no process lets it in any longer.
    Revoked(KeyId),
    /// Notices may have been lost (the connection they come on was made again): whatever a
    /// process keeps from the store is read again, and deliveries may be due. Only
    /// [`Store::watch`] gives it; it is never sent.
    Missed,
}

/// A send slot of a partner's rate limit as every process sharing the store counts it (see
/// [`Store::reserve_rate_slot`]). Durations are measured on the store's clock from when it
/// took or refused the slot, so that processes need not agree on the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlot {
    /// The slot is taken: send after this long.
    Wait(std::time::Duration),
    /// The first free slot is this far away, beyond the horizon: none was taken.
    Beyond(std::time::Duration),
}

/// What one pass of retention removed (see [`Store::prune`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Deliveries removed.
    pub deliveries: u64,
    /// Their attempts.
    pub attempts: u64,
    /// Events removed: with the last of their deliveries, or having made none.
    pub events: u64,
}

impl Pruned {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.events += other.events;
    }
}

/// Errors of the store, the same whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed: the database, its migrations, or a thread of the store's own.
    #[error("{what}: {source}")]
    Backend {
        /// What failed, in a few words ("database error").
        what: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store is shut down (or the task that was using it was stopped).
    #[error("the store is closed")]
    Closed,
    /// No such partner.
    #[error("no partner {0}")]
    UnknownPartner(String),
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://USER@HOST/DATABASE")]
    Unsupported(String),
}

impl StoreError {
    /// A backend's error, described by `what`.
    pub fn backend(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Backend {
            what,
            source: source.into(),
        }
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
