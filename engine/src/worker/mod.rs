//! The worker: claims due deliveries and takes each through the pipeline, in the order the
//! code runs the steps:
//!
//! 1. claim: deliveries leased to this worker wait in a queue in memory for a send slot, in a
//!    line per partner; the lines take turns, and a partner has at most
//!    [`partner_concurrency`](WorkerConfig::partner_concurrency) postbacks in flight, so that
//!    one partner's stalled receiver or slow plugin holds its own places, not the others'.
//!    Those this process accepted a moment ago are [leased as they are recorded](Worker::accept);
//!    the claimer tops the queue up from the store, a batch at a time, ahead of need, so that
//!    sending never waits for the store;
//! 2. rate limit: wait for the endpoint's next slot, or go back to the store due at that slot;
//! 3. render: the event with the settings current now, so a partner who fixes a template fixes
//!    the pending retries too;
//! 4. transform, sign, send, classify: one [`exchange`] with the receiver;
//! 5. record: the attempt and the delivery's next state, committed in batches by one recorder
//!    task, so the store sees few large transactions instead of many small ones.
//!
//! A delivery is marked delivered only after its attempt is committed; a crash before that
//! leaves the lease to expire and the postback to be sent again (at least once, same
//! `webhook-id`).

mod queue;
mod recorder;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use self::queue::{InFlight, Job, Queue};
use self::recorder::{Record, record};
use crate::classify::Verdict;
use crate::event::Event;
use crate::exchange::{self, Context, unsent_attempt};
use crate::id::PartnerId;
use crate::metrics::Metrics;
use crate::plugins::{Plugins, SEND_SLOT, SendSlot};
use crate::ratelimit::RateLimits;
use crate::retry::Schedule;
use crate::sealed::{CannotOpen, SecretKey, is_sealed};
use crate::send::Sender;
use crate::settings::{CompiledSettings, NotificationSettings};
use crate::store::{
    Accepted, Attempt, Canary, CanaryState, Claimed, ClaimedEvent, GiveBack, Lease, Next, Notice, Outcome, RateSlot,
    Store, StoreError, now_ms, rules,
};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Deliveries claimed at once.
    pub batch: usize,
    /// How long a claim lasts: [`finish_within`](Self::finish_within), and room to wait in
    /// the memory queue (see [`WorkerConfig::fit_to`]).
    pub lease: Duration,
    /// How much of its lease a job needs left when it leaves the memory queue, to be sent and
    /// recorded before the lease ends: its wait for a rate slot, two plugin calls, the
    /// exchange, and the recorder's commit (see [`WorkerConfig::time_to_finish`]). A job with
    /// less left is given back to the store, and any worker claims it anew.
    pub finish_within: Duration,
    /// Postbacks in flight at once.
    pub concurrency: usize,
    /// Postbacks one partner may have in flight at once, so that a partner whose receiver
    /// stalls (or whose plugin is slow) holds no more than this many of the `concurrency` slots
    /// (default: a quarter of `concurrency`, at least 1).
    pub partner_concurrency: Option<usize>,
    /// Longest sleep when nothing is due (new events wake the worker at once).
    pub idle_poll: Duration,
    /// How far ahead a rate-limited delivery may wait in memory for its slot.
    pub rate_horizon: Duration,
    /// Retry delays.
    pub schedule: Schedule,
    /// How long in-flight postbacks may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Most deliveries accepted by this process that wait in memory for a send slot; more wait
    /// in the store until they are claimed. Below this, the queue holds at most what the worker
    /// sends in a quarter of the lease (measured as it goes, and at least 4,096), so that a job
    /// queued behind slow receivers is still sent well before its lease ends.
    pub memory_queue: usize,
    /// Opens the partners' stored signing secrets; without one, only secrets stored in plain
    /// text (from before sealing) can sign, and a sealed one fails the attempt.
    pub secret_key: Option<SecretKey>,
    /// Where the worker counts deliveries, attempts, rate-limit waits and commits (default: a
    /// set of its own).
    pub metrics: Arc<Metrics>,
}

impl WorkerConfig {
    /// The postbacks one partner may have in flight at once (see
    /// [`partner_concurrency`](WorkerConfig::partner_concurrency)).
    pub fn partner_cap(&self) -> usize {
        self.partner_concurrency.unwrap_or(self.concurrency / 4).max(1)
    }
}

impl Default for WorkerConfig {
    /// The lease and the time to finish fit the sender's and the plugin host's defaults.
    fn default() -> Self {
        let mut config = WorkerConfig {
            batch: 256,
            lease: Duration::ZERO,
            finish_within: Duration::ZERO,
            concurrency: 256,
            partner_concurrency: None,
            idle_poll: Duration::from_secs(1),
            rate_horizon: Duration::from_secs(2),
            schedule: Schedule::default(),
            shutdown_grace: Duration::from_secs(20),
            memory_queue: 32_768,
            secret_key: None,
            metrics: Arc::new(Metrics::new()),
        };
        config.fit_to(
            crate::send::SendConfig::default().timeout,
            postwire_plugins::Limits::default().deadline,
        );
        config
    }
}

/// What the time to finish allows for the recorder's commit, after the exchange.
const RECORD_MARGIN: Duration = Duration::from_secs(2);

/// The room a lease leaves, beyond the time to finish, for waiting in the memory queue.
const QUEUE_WAIT: Duration = Duration::from_secs(3);

impl WorkerConfig {
    /// The time a job needs once it leaves the memory queue: its wait for a rate slot (at most
    /// the rate horizon), a transform and a classify call (each within the plugin deadline),
    /// the exchange (within the send timeout), and 2 s for the commit.
    pub fn time_to_finish(&self, send_timeout: Duration, plugin_deadline: Duration) -> Duration {
        self.rate_horizon + plugin_deadline * 2 + send_timeout + RECORD_MARGIN
    }

    /// Fits [`finish_within`](Self::finish_within) and the lease to a send timeout and a
    /// plugin deadline: the lease is the time to finish, plus the send timeout and
    /// 3 s for waiting in the memory queue. Longer only delays recovery after a
    /// crash.
    pub fn fit_to(&mut self, send_timeout: Duration, plugin_deadline: Duration) {
        self.finish_within = self.time_to_finish(send_timeout, plugin_deadline);
        self.lease = self.finish_within + send_timeout + QUEUE_WAIT;
    }

    /// How much of its lease a job needs left to be taken from the memory queue:
    /// [`finish_within`](Self::finish_within). A lease set no longer than that could never
    /// be kept; with one, half the lease will do, so that jobs are still sent instead of every
    /// one being given back.
    fn needed_to_finish(&self) -> Duration {
        if self.finish_within < self.lease {
            self.finish_within
        } else {
            self.lease / 2
        }
    }
}

/// Whether the rate limit lets a postback go now.
enum Slot {
    /// Its slot has come.
    Now,
    /// Back to the store, due at this time (Unix ms).
    Later(i64),
}

/// A job taken from the queue, counted among its partner's postbacks in flight until dropped.
struct Ended<'a> {
    queue: &'a Queue,
    in_flight: InFlight,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.queue.done(self.in_flight);
    }
}

/// Slots of a rate limit shared with other processes that one postback takes, each reached
/// late, before it goes back to the store (see [`Worker::wait_for_slot`]).
const SLOTS_TAKEN_LATE: usize = 3;

/// How soon a postback whose endpoint the store failed to load is due again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Why a claimed delivery cannot be sent at all; its attempt fails with this reason, except
/// for a store error, after which it is given back and tried again.
#[derive(Debug, thiserror::Error)]
enum Unsendable {
    /// The store could not be read: a passing failure of the store, not of the postback.
    #[error("{0}")]
    Store(StoreError),
    /// The partner's settings are gone.
    #[error("partner {0} has no notification settings")]
    NoSettings(PartnerId),
    /// The saved settings are not settings.
    #[error("{0}")]
    UnreadableSettings(serde_json::Error),
    /// The saved settings were valid once, and no longer are.
    #[error("the saved settings no longer compile: {0}")]
    SettingsDoNotCompile(crate::error::Invalid),
    /// The stored event cannot be read.
    #[error("{0}")]
    Event(String),
    /// The partner's stored signing secret cannot be opened: nothing is sent unsigned.
    #[error("{0}")]
    Secret(CannotOpen),
}

/// A partner's compiled settings, kept while their version is current.
struct Compiled {
    version: i64,
    settings: CompiledSettings,
    secret: String,
    previous_secret: Option<(String, i64)>,
    /// The partner's running canary, if one runs.
    canary: Option<Canary>,
    /// `name@version` of the partner's plugins by id, for the attempt log.
    labels: HashMap<String, String>,
    /// When they were read from the store.
    loaded: Instant,
}

/// How long a partner's endpoint read from a store other processes share is kept, settings
/// version unchanged: a secret rotated by an API process elsewhere changes no version, and
/// this process is not told of it, so the secrets are read again this often. The previous
/// secret still signs during its grace period, so a receiver sees no gap.
const SHARED_ENDPOINT_FOR: Duration = Duration::from_secs(5);

struct Inner {
    store: Store,
    sender: Sender,
    plugins: Arc<Plugins>,
    config: WorkerConfig,
    limits: RateLimits,
    endpoints: Mutex<HashMap<PartnerId, Arc<Compiled>>>,
    /// Set when deliveries may have become due in the store; the claimer then claims.
    store_due: AtomicBool,
    /// Set while the store holds due deliveries that came before any new one: new deliveries
    /// then wait in the store too, behind them, instead of overtaking them from memory.
    backlog: AtomicBool,
    wake: Notify,
    queue: Queue,
    /// Per partner, when an attempt last disabled its endpoint (Unix ms).
    disabled: Mutex<HashMap<PartnerId, i64>>,
    /// Partners deleted: the outcomes of their postbacks that were on the wire have no
    /// delivery left to record.
    gone: Mutex<std::collections::HashSet<PartnerId>>,
}

/// The delivery worker; clones share one worker.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl Worker {
    /// A worker over `store`, sending with `sender`, running plugins with `plugins`.
    pub fn new(store: Store, sender: Sender, plugins: Arc<Plugins>, config: WorkerConfig) -> Worker {
        Worker {
            inner: Arc::new(Inner {
                store,
                sender,
                plugins,
                limits: RateLimits::default(),
                endpoints: Mutex::new(HashMap::new()),
                store_due: AtomicBool::new(true),
                backlog: AtomicBool::new(false),
                wake: Notify::new(),
                queue: Queue::new(
                    config.memory_queue,
                    config.batch * 2,
                    config.lease / 4,
                    config.partner_cap(),
                ),
                disabled: Mutex::new(HashMap::new()),
                gone: Mutex::default(),
                config,
            }),
        }
    }

    /// Drops the partner's cached endpoint, so that the next postback loads its signing secrets
    /// anew (after a rotation; settings changes are seen by their version).
    pub fn forget_endpoint(&self, partner_id: &str) {
        self.inner.endpoints.lock().expect("never poisoned").remove(partner_id);
    }

    /// Drops every cached endpoint, so that each partner's next postback reads its settings and
    /// secrets anew.
    pub fn forget_endpoints(&self) {
        self.inner.endpoints.lock().expect("never poisoned").clear();
    }

    /// Keeps the partner's postbacks already in memory from being sent, and drops its cached
    /// endpoint: its partner was disabled or deleted, or its endpoint disabled or its settings
    /// deleted, and the store holds (or no longer has) those deliveries. Postbacks on the wire
    /// finish.
    pub fn hold(&self, partner_id: &str) {
        self.inner
            .disabled
            .lock()
            .expect("never poisoned")
            .insert(partner_id.into(), now_ms());
        self.forget_endpoint(partner_id);
    }

    /// Forgets a partner about to be deleted: its postbacks in memory are not sent, and the
    /// outcomes of those on the wire are not recorded, since their deliveries are gone.
    pub fn forget_partner(&self, partner_id: &str) {
        self.inner
            .gone
            .lock()
            .expect("never poisoned")
            .insert(partner_id.into());
        self.hold(partner_id);
    }

    /// The metrics the worker reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.config.metrics
    }

    /// How many claimed deliveries wait in memory for a send slot.
    pub fn queued(&self) -> usize {
        self.inner.queue.queued()
    }

    /// Whether postbacks are waiting to be sent: claimed ones waiting in memory for a send
    /// slot, or due ones left in the store behind them. Work that can wait, such as retention,
    /// steps aside meanwhile (see [`Pace`](crate::store::Pace)).
    pub fn busy(&self) -> bool {
        self.inner.queue.queued() > 0 || self.inner.backlog.load(Ordering::Acquire)
    }

    /// Tells the worker that deliveries may be due now (new events, a retry, an enabled endpoint).
    pub fn wake(&self) {
        self.inner.store_due.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// Accepts events ([`Store::accept`]). New deliveries that are due now are leased to this
    /// worker in the same transaction and queued in memory, as many as it has room for, unless
    /// earlier deliveries are waiting in the store; the others wait in the store for a claim.
    ///
    /// Runs to the end even if the caller stops waiting (a client that hung up), so that what
    /// was leased is queued and the places promised in the queue are taken or given back.
    pub async fn accept(&self, events: Vec<Event>) -> Result<Vec<Accepted>, StoreError> {
        let worker = self.clone();
        match tokio::spawn(async move { worker.accept_now(events).await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    async fn accept_now(&self, events: Vec<Event>) -> Result<Vec<Accepted>, StoreError> {
        let inner = &self.inner;
        let now = now_ms();
        // Whether the partner's line, not the queue, kept some of the batch out of memory.
        let mut line_full = false;
        let room = if inner.backlog.load(Ordering::Acquire) {
            0
        } else if let Some(first) = events.first()
            && events.iter().all(|e| e.partner_id == first.partner_id)
        {
            // One partner's batch (the usual case): no more leased than its line has room for.
            let (room, line_bound) = inner.queue.reserve_for(events.len(), &first.partner_id);
            line_full = line_bound;
            room
        } else {
            inner.queue.reserve(events.len())
        };
        let lease = Lease {
            until: now + inner.config.lease.as_millis() as i64,
            max: room,
        };
        let events = Arc::new(events);
        let (accepted, leased) = match inner.store.accept_leasing(events.clone(), now, lease).await {
            Ok(done) => done,
            Err(e) => {
                inner.queue.release(room);
                return Err(e);
            }
        };
        // The store has let go of its reference by now; the copy is only a fallback.
        let events = Arc::try_unwrap(events).unwrap_or_else(|shared| (*shared).clone());
        let new: usize = accepted
            .iter()
            .filter(|a| !a.duplicate)
            .map(|a| a.delivery_ids.len())
            .sum();
        let mut events: Vec<Option<Event>> = events.into_iter().map(Some).collect();
        let jobs: Vec<Job> = leased
            .into_iter()
            // An event has one delivery; were there a second, it would wait for its lease to end.
            .filter_map(|leased| {
                let mut event = events[leased.event].take()?;
                event.forget_text();
                Some(Job {
                    claimed: Claimed {
                        delivery_id: leased.delivery_id,
                        partner_id: event.partner_id.clone(),
                        attempts: 0,
                        event: ClaimedEvent::Read(Box::new(event)),
                        settings_version: leased.settings_version,
                        lease_seq: leased.lease_seq,
                    },
                    leased_at: now,
                    until: lease.until,
                })
            })
            .collect();
        let handed = jobs.len();
        self.enqueue(room, jobs, now).await;
        if new > handed {
            // Some wait in the store: due later, blocked, held, or due now but without room in
            // memory, in which case later ones must not overtake them. Those left out only for
            // their partner's full line hold up no other partner's.
            if handed == room && !line_full {
                inner.backlog.store(true, Ordering::Release);
            }
            self.wake();
        }
        Ok(accepted)
    }

    /// Runs until `shutdown` is cancelled, then stops claiming, lets postbacks in flight finish
    /// (within the grace period) and commits what they recorded.
    pub async fn run(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let (records, receiver) = mpsc::channel::<Record>(inner.config.batch * 4);
        let recorder = tokio::spawn(record(self.clone(), receiver));
        inner.queue.open();
        let claimer = tokio::spawn({
            let (worker, shutdown) = (self.clone(), shutdown.clone());
            async move { worker.claim(shutdown).await }
        });
        // Other processes sharing the store accept events and release deliveries: their notices
        // wake the claimer at once, and the idle poll is only the fallback. They also disable
        // and delete partners whose postbacks this worker may hold in memory.
        let watcher = {
            let worker = self.clone();
            inner.store.watch(
                move |notice| match notice {
                    Notice::Due => worker.wake(),
                    Notice::Held(partner_id) => worker.hold(&partner_id),
                    Notice::Gone(partner_id) => worker.forget_partner(&partner_id),
                    Notice::Revoked(_) => {}
                    // What was missed may be a disabled endpoint or a rotated secret: every
                    // endpoint is read again before its next postback.
                    Notice::Missed => {
                        worker.forget_endpoints();
                        worker.wake();
                    }
                },
                shutdown.clone(),
            )
        };
        let permits = Arc::new(Semaphore::new(inner.config.concurrency));
        let tasks = TaskTracker::new();
        let needed = inner.config.needed_to_finish().as_millis() as i64;
        let mut last_prune = Instant::now();
        loop {
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = shutdown.cancelled() => break,
            };
            // No more slots than there are jobs to send now: jobs may wait only for their
            // partners' caps while most slots are free.
            let ready = inner.queue.ready_now(inner.config.batch);
            if ready == 0 {
                drop(first);
                tokio::select! {
                    () = inner.queue.ready.notified() => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            let mut held = vec![first];
            while held.len() < ready {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            // A job whose lease ends before it could be sent and recorded is left to the store.
            let jobs = inner.queue.take(held.len(), now_ms() + needed);
            if jobs.is_empty() {
                drop(held);
                tokio::select! {
                    () = inner.queue.ready.notified() => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            for ((job, in_flight), permit) in jobs.into_iter().zip(held.drain(..)) {
                let worker = self.clone();
                let records = records.clone();
                let shutdown = shutdown.clone();
                let slot = SendSlot::new(permits.clone(), permit);
                tasks.spawn(async move {
                    // Ends the partner's count however the attempt ends, a panic included.
                    let ended = Ended {
                        queue: &worker.inner.queue,
                        in_flight,
                    };
                    // The slot ends with the scope, after the partner's count, so that the slot
                    // freed next finds the partner's line taking turns again.
                    SEND_SLOT
                        .scope(slot, async {
                            worker.deliver(job, records, shutdown).await;
                            drop(ended);
                        })
                        .await;
                });
            }
            drop(held);
            if last_prune.elapsed() > Duration::from_secs(60) {
                inner.limits.prune(Instant::now());
                last_prune = Instant::now();
            }
        }
        if claimer.await.is_err() {
            error!("the claimer stopped abnormally");
        }
        if let Some(watcher) = watcher
            && watcher.await.is_err()
        {
            error!("listening for due deliveries stopped abnormally");
        }
        // Deliveries still waiting in memory are due now for whichever worker runs next.
        for job in inner.queue.close() {
            let _ = records.send(Record::Later(job.give_back(now_ms()))).await;
        }
        tasks.close();
        if tokio::time::timeout(inner.config.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            warn!("postbacks still in flight at shutdown; their leases expire and they are sent again");
        }
        drop(records);
        if recorder.await.is_err() {
            error!("the recorder stopped abnormally");
        }
        info!("worker stopped");
    }

    /// The claimer: while the store may hold due deliveries, keeps at least the queue's low mark
    /// of them waiting in memory, claiming up to `2 * batch` at a time.
    async fn claim(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let lease = inner.config.lease.as_millis() as i64;
        // The store is asked at least this often, so that retries fall due while deliveries
        // from memory keep every place busy.
        let mut next_check = tokio::time::Instant::now();
        loop {
            if inner.queue.takeable() >= inner.queue.low {
                tokio::select! {
                    () = inner.queue.drained.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            if tokio::time::Instant::now() >= next_check {
                inner.store_due.store(true, Ordering::Release);
            }
            if !inner.store_due.swap(false, Ordering::AcqRel) {
                tokio::select! {
                    () = inner.wake.notified() => {}
                    () = tokio::time::sleep_until(next_check) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            let wanted = inner.queue.reserve(inner.config.batch * 2);
            if wanted == 0 {
                inner.store_due.store(true, Ordering::Release);
                tokio::select! {
                    () = inner.queue.drained.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            // Not cancelled by shutdown: what is claimed is queued, or given back below.
            let now = now_ms();
            let full = inner.queue.full_partners();
            match inner.store.claim_except(now, lease, wanted as i64, &full).await {
                Ok(claimed) => {
                    debug!(count = claimed.len(), "claimed deliveries");
                    if claimed.len() == wanted {
                        inner.store_due.store(true, Ordering::Release);
                    } else {
                        inner.backlog.store(false, Ordering::Release);
                        // The full lines' deliveries are due and left in the store: the next
                        // claim waits for the idle poll (or a wake), instead of finding them due
                        // again at once.
                        let idle = if full.is_empty() {
                            self.idle_after().await
                        } else {
                            inner.config.idle_poll
                        };
                        next_check = tokio::time::Instant::now() + idle;
                    }
                    let jobs = claimed
                        .into_iter()
                        .map(|claimed| Job {
                            claimed,
                            leased_at: now,
                            until: now + lease,
                        })
                        .collect();
                    self.enqueue(wanted, jobs, now).await;
                }
                Err(e) => {
                    inner.queue.release(wanted);
                    error!(error = %e, "claiming deliveries failed; trying again");
                    inner.store_due.store(true, Ordering::Release);
                    next_check = tokio::time::Instant::now() + Duration::from_secs(1);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Queues leased `jobs` in `reserved` promised places. Those the queue leaves out (beyond
    /// their partner's line limit, or all of them should the worker have stopped meanwhile) are
    /// given back to the store without an attempt, due at `now` for whichever claim comes next.
    async fn enqueue(&self, reserved: usize, jobs: Vec<Job>, now: i64) {
        let refused = self.inner.queue.fill(reserved, jobs);
        if refused.is_empty() {
            return;
        }
        debug!(
            count = refused.len(),
            "left out of the memory queue; given back to the store"
        );
        let due: Vec<GiveBack> = refused.into_iter().map(|job| job.give_back(now)).collect();
        if let Err(e) = self.inner.store.reschedule(&due).await {
            warn!(error = %e, "giving back leases failed; they are sent once the leases end");
        }
        self.wake();
    }

    /// How long the claimer may wait before the store has due deliveries again, at most the idle
    /// poll.
    async fn idle_after(&self) -> Duration {
        let poll = self.inner.config.idle_poll;
        match self.inner.store.next_due().await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, poll.as_millis() as i64) as u64),
            _ => poll,
        }
    }

    /// One delivery in a span of its own (see [`Worker::attempt`]).
    async fn deliver(&self, job: Job, records: mpsc::Sender<Record>, shutdown: CancellationToken) {
        use tracing::Instrument;
        // At debug level: with the default `info` filter the span is never built, which costs
        // one relaxed load per postback. Field values are only formatted for a live span.
        let claimed = &job.claimed;
        let span = tracing::debug_span!(
            target: "postwire::attempt",
            "attempt",
            partner_id = %claimed.partner_id,
            delivery_id = %claimed.delivery_id,
            // Known once the event is read (claimed ones are read by the attempt).
            event_id = tracing::field::Empty,
            attempt = claimed.attempts + 1,
        );
        self.attempt(job, records, shutdown, span.clone())
            .instrument(span)
            .await
    }

    /// One delivery through rate limit, render and the exchange (transform, sign, send,
    /// classify); the result goes to the recorder.
    async fn attempt(&self, job: Job, records: mpsc::Sender<Record>, shutdown: CancellationToken, span: tracing::Span) {
        let inner = &self.inner;
        let Job {
            claimed,
            leased_at,
            until,
        } = job;
        let disabled_at = inner
            .disabled
            .lock()
            .expect("never poisoned")
            .get(&claimed.partner_id)
            .copied();
        if disabled_at.is_some_and(|at| at >= leased_at) {
            // The store holds it with the endpoint's other deliveries until it is enabled again.
            debug!(delivery = %claimed.delivery_id, "the endpoint was disabled after the claim; not sent");
            return;
        }
        let number = claimed.attempts + 1;
        let lease_seq = claimed.lease_seq;
        let send_outcome = |attempt: Attempt, next: Next| {
            let records = records.clone();
            let partner_id = claimed.partner_id.clone();
            async move {
                let outcome = Outcome {
                    attempt,
                    next,
                    lease_seq,
                };
                let _ = records.send(Record::Outcome(Box::new(outcome), partner_id)).await;
            }
        };
        let (compiled, event) = match self
            .prepare(&claimed.partner_id, claimed.settings_version, claimed.event)
            .await
        {
            Ok(prepared) => prepared,
            Err(Unsendable::Store(e)) => {
                // Nothing was sent, and nothing is wrong with the postback: it goes back to the
                // store without an attempt, due again shortly. Should the store stay down, the
                // give-back fails too and the lease's end brings it back.
                warn!(error = %e, delivery = %claimed.delivery_id, "loading the endpoint failed; the postback goes back to the store");
                let back = GiveBack {
                    delivery_id: claimed.delivery_id,
                    lease_seq,
                    due: now_ms() + STORE_RETRY.as_millis() as i64,
                };
                let _ = records.send(Record::Later(back)).await;
                return;
            }
            Err(unsendable) => {
                let attempt = unsent_attempt(&claimed.delivery_id, number, &unsendable.to_string(), None);
                inner.config.metrics.attempt(verdict_index(attempt.verdict), None);
                return send_outcome(attempt, Next::Failed).await;
            }
        };
        if !span.is_disabled() {
            span.record("event_id", tracing::field::display(&event.id));
        }
        if let Some(rate) = compiled.settings.settings().max_requests_per_sec
            && let Slot::Later(at) = self.wait_for_slot(&claimed.partner_id, rate, &shutdown).await
        {
            inner.config.metrics.rate_limit_deferral();
            let back = GiveBack {
                delivery_id: claimed.delivery_id,
                lease_seq,
                due: at,
            };
            let _ = records.send(Record::Later(back)).await;
            return;
        }
        // What is left to do must end within the lease: a postback sent after it ended could be
        // claimed and sent by another worker as well. Waits for a send slot given back (for
        // the rate limit, for a plugin lane) have no bound of their own, so the lease is looked
        // at again here; one too short to finish in goes back to the store, unsent.
        let still_needed = inner.config.finish_within.saturating_sub(inner.config.rate_horizon);
        if now_ms() + still_needed.as_millis() as i64 > until {
            debug!(delivery = %claimed.delivery_id, "too little of the lease left to send; given back");
            let back = GiveBack {
                delivery_id: claimed.delivery_id,
                lease_seq,
                due: now_ms(),
            };
            let _ = records.send(Record::Later(back)).await;
            return;
        }
        let rendered = compiled.settings.render(&event);
        // Only first attempts are the canary's: its candidate serves its share of them, and
        // both versions' failures are counted on them alike.
        let canary = compiled.canary.as_ref().filter(|_| number == 1);
        let candidate = canary.filter(|c| rules::canary_serves(c, claimed.delivery_id.as_str(), number));
        let ctx = Context {
            sender: &inner.sender,
            plugins: &inner.plugins,
            partner_id: &claimed.partner_id,
            settings: &compiled.settings,
            secret: &compiled.secret,
            previous_secret: compiled.previous_secret.as_ref().map(|(s, until)| (s.as_str(), *until)),
            delivery_id: &claimed.delivery_id,
            number,
            serve: candidate.map(|c| (c.slot, c.plugin_id.as_str())),
        };
        let exchanged = match exchange::run(&ctx, &event, rendered).await {
            Ok(exchanged) => exchanged,
            Err(failed) => {
                let host_failure = failed.is_host_failure();
                let mut attempt = failed.into_attempt(&claimed.delivery_id, number);
                label(&mut attempt, &compiled, candidate);
                let next = if host_failure {
                    self.retry_at(number, None)
                } else if candidate.is_some() {
                    // The candidate's failure is not the postback's: the attached version
                    // sends it, as soon as a retry may go.
                    self.retry_at(number, Some(Duration::ZERO))
                } else {
                    Next::Failed
                };
                if let Some(canary) = canary
                    && !host_failure
                {
                    self.tally(&claimed.partner_id, canary, candidate.is_some(), true).await;
                }
                inner.config.metrics.attempt(verdict_index(attempt.verdict), None);
                return send_outcome(attempt, next).await;
            }
        };
        let mut attempt = exchanged.attempt;
        label(&mut attempt, &compiled, candidate);
        // An attempt that sent something has a request; one stopped before sending has none.
        let sent = (attempt.request.get() != "null").then(|| Duration::from_millis(attempt.duration_ms as u64));
        inner.config.metrics.attempt(verdict_index(attempt.verdict), sent);
        debug!(
            target: "postwire::attempt",
            verdict = attempt.verdict.as_str(),
            duration_ms = attempt.duration_ms,
            "attempt made"
        );
        let succeeded = matches!(exchanged.verdict, Verdict::Success);
        if let Some(canary) = canary {
            self.tally(&claimed.partner_id, canary, candidate.is_some(), !succeeded)
                .await;
        }
        let next = match exchanged.verdict {
            // A postback the candidate served and that did not succeed goes again as soon as a
            // retry may go, with the attached version, unless its endpoint is gone.
            Verdict::Retry { .. } | Verdict::Fail { .. } if candidate.is_some() => {
                self.retry_at(number, Some(Duration::ZERO))
            }
            verdict => self.next_after(&claimed.partner_id, number, verdict),
        };
        send_outcome(attempt, next).await;
    }

    /// Counts a first attempt's call in the partner's canary. Once the canary is detached, the
    /// endpoint is read again, so that the next postback goes without it; a tally that fails
    /// is logged and the postback goes on (the canary is judged on the calls counted).
    async fn tally(&self, partner_id: &PartnerId, canary: &Canary, candidate: bool, failed: bool) {
        let tallied = self
            .inner
            .store
            .tally_canary(partner_id, canary.started_at, candidate, failed, now_ms())
            .await;
        match tallied {
            Ok(Some(now)) if now.state == CanaryState::Running => {}
            Ok(Some(ended)) => {
                warn!(partner = %partner_id, reason = ended.reason.as_deref().unwrap_or(""), "canary detached");
                self.forget_endpoint(partner_id);
            }
            Ok(None) => self.forget_endpoint(partner_id),
            Err(e) => warn!(error = %e, partner = %partner_id, "counting a canary call failed"),
        }
    }

    /// The rate limit stage: waits for the endpoint's next slot when it is near enough, else
    /// says when to come back (the delivery goes back to the store, due then). Shutdown ends
    /// the wait: the delivery goes back due at once.
    ///
    /// Where the store is shared by several processes, the slot is taken in the store, so that
    /// the limit holds for all their workers together; otherwise in memory.
    async fn wait_for_slot(&self, partner_id: &str, rate: u32, shutdown: &CancellationToken) -> Slot {
        let inner = &self.inner;
        let interval = Duration::from_secs(1) / rate.max(1);
        // Slots taken again after a late one still end within the horizon: the lease allows
        // for one horizon's wait, and a postback sent after its lease ended could be sent by
        // another worker too.
        let horizon_ends = Instant::now() + inner.config.rate_horizon;
        for _ in 0..SLOTS_TAKEN_LATE {
            let asked = Instant::now();
            match inner
                .store
                .reserve_rate_slot(partner_id, rate, inner.config.rate_horizon)
                .await
            {
                Ok(None) => return self.wait_for_local_slot(partner_id, rate, shutdown).await,
                Ok(Some(RateSlot::Wait(wait))) => {
                    // The slot is `wait` after the store ran the statement, which it did between
                    // the question and the answer. Timed from the answer, the postback leaves no
                    // earlier than its slot on the store's clock, whatever this machine's clock
                    // says.
                    let at = Instant::now() + wait;
                    if at > horizon_ends {
                        return Slot::Later(now_ms() + wait.as_millis() as i64);
                    }
                    if !wait.is_zero() {
                        inner.config.metrics.rate_limit_wait();
                        if !wait_aside(at, shutdown).await {
                            return Slot::Later(now_ms());
                        }
                    }
                    // Timed from the question, it leaves at most half an interval after it. A
                    // slot reached later (a slow answer, a busy machine) would leave together
                    // with other workers' next slots, which this process cannot count: it is let
                    // go and another taken.
                    if Instant::now() <= asked + wait + interval / 2 {
                        return self.admit(partner_id, rate, shutdown).await;
                    }
                    debug!(partner = %partner_id, "a rate slot was reached late; taking another");
                }
                Ok(Some(RateSlot::Beyond(after))) => return Slot::Later(now_ms() + after.as_millis() as i64),
                Err(e) => {
                    // Sending without a slot could break the limit the other workers keep.
                    warn!(error = %e, partner = %partner_id, "taking a rate slot failed; the postback goes back to the store");
                    return Slot::Later(now_ms() + STORE_RETRY.as_millis() as i64);
                }
            }
        }
        // Every slot was reached late: the machine is too busy to keep to them now.
        Slot::Later(now_ms() + STORE_RETRY.as_millis() as i64)
    }

    /// [`Worker::wait_for_slot`] with the slots of this process's memory.
    async fn wait_for_local_slot(&self, partner_id: &str, rate: u32, shutdown: &CancellationToken) -> Slot {
        let inner = &self.inner;
        let now = Instant::now();
        match inner.limits.reserve(partner_id, rate, now, inner.config.rate_horizon) {
            Ok(slot) if slot > now => {
                inner.config.metrics.rate_limit_wait();
                if !wait_aside(slot, shutdown).await {
                    return Slot::Later(now_ms());
                }
            }
            Ok(_) => {}
            Err(slot) => return Slot::Later(now_ms() + slot.duration_since(now).as_millis() as i64),
        }
        self.admit(partner_id, rate, shutdown).await
    }

    /// Lets a postback whose slot has come leave once fewer than `rate` left in the last second
    /// from this process (see [`RateLimits::admit`]).
    async fn admit(&self, partner_id: &str, rate: u32, shutdown: &CancellationToken) -> Slot {
        let inner = &self.inner;
        while let Some(until) = inner.limits.admit(partner_id, rate, Instant::now()) {
            if !wait_aside(until, shutdown).await {
                return Slot::Later(now_ms());
            }
        }
        Slot::Now
    }

    /// What a receiver's verdict makes of the delivery. A disabling verdict is also remembered
    /// here, so that the endpoint's deliveries already in memory are not sent.
    fn next_after(&self, partner_id: &PartnerId, number: i64, verdict: Verdict) -> Next {
        match verdict {
            Verdict::Success => Next::Delivered,
            Verdict::Fail { .. } => Next::Failed,
            Verdict::Disable { reason } => {
                self.inner
                    .disabled
                    .lock()
                    .expect("never poisoned")
                    .insert(partner_id.clone(), now_ms());
                Next::Disable(reason)
            }
            Verdict::Retry { after, .. } => self.retry_at(number, after),
        }
    }

    /// The next attempt's time after `attempts` attempts, or failure when the schedule is spent.
    fn retry_at(&self, attempts: i64, after: Option<Duration>) -> Next {
        match self.inner.config.schedule.next_delay(attempts as usize, after) {
            Some(delay) => Next::RetryAt(now_ms() + delay.as_millis() as i64),
            None => Next::Failed,
        }
    }

    /// The partner's current settings (compiled once per version) and the event.
    async fn prepare(
        &self,
        partner_id: &PartnerId,
        settings_version: i64,
        event: ClaimedEvent,
    ) -> Result<(Arc<Compiled>, Arc<Event>), Unsendable> {
        let compiled = self.compiled(partner_id, settings_version).await?;
        // Shared, so that a plugin reading it needs no copy of its own.
        Ok((compiled, Arc::new(event.read().map_err(Unsendable::Event)?)))
    }

    async fn compiled(&self, partner_id: &PartnerId, version: i64) -> Result<Arc<Compiled>, Unsendable> {
        let cached = self
            .inner
            .endpoints
            .lock()
            .expect("never poisoned")
            .get(partner_id)
            .cloned();
        let shared = self.inner.store.is_shared();
        if let Some(compiled) =
            cached.filter(|c| c.version == version && !(shared && c.loaded.elapsed() >= SHARED_ENDPOINT_FOR))
        {
            return Ok(compiled);
        }
        let endpoint = self
            .inner
            .store
            .endpoint(partner_id)
            .await
            .map_err(Unsendable::Store)?
            .ok_or_else(|| Unsendable::NoSettings(partner_id.clone()))?;
        let settings: NotificationSettings =
            serde_json::from_str(&endpoint.settings).map_err(Unsendable::UnreadableSettings)?;
        let settings = settings.compile().map_err(Unsendable::SettingsDoNotCompile)?;
        let open = |stored: String| match &self.inner.config.secret_key {
            Some(key) => key.open(&stored).map_err(Unsendable::Secret),
            None if is_sealed(&stored) => Err(Unsendable::Secret(CannotOpen)),
            None => Ok(stored),
        };
        let secret = open(endpoint.secret)?;
        let previous_secret = match endpoint.previous_secret {
            Some((stored, until)) if until > now_ms() => Some((open(stored)?, until)),
            _ => None,
        };
        let store = &self.inner.store;
        let canary = store
            .canary(partner_id)
            .await
            .map_err(Unsendable::Store)?
            .filter(|canary| canary.state == CanaryState::Running);
        let options = settings.settings();
        let labels = if canary.is_some() || options.transform_plugin.is_some() || options.classify_plugin.is_some() {
            let plugins = store.plugins(partner_id).await.map_err(Unsendable::Store)?;
            plugins.into_iter().map(|p| (p.id.to_string(), p.label())).collect()
        } else {
            HashMap::new()
        };
        let compiled = Arc::new(Compiled {
            version: endpoint.version,
            settings,
            secret,
            previous_secret,
            canary,
            labels,
            loaded: Instant::now(),
        });
        self.inner
            .endpoints
            .lock()
            .expect("never poisoned")
            .insert(partner_id.clone(), compiled.clone());
        Ok(compiled)
    }
}

/// Writes into the attempt's plugin reports which version served each (`name@version`), and
/// marks the one a canary's candidate served.
fn label(attempt: &mut Attempt, compiled: &Compiled, candidate: Option<&Canary>) {
    let Some(serde_json::Value::Object(reports)) = attempt.plugins.as_mut() else {
        return;
    };
    for (slot, report) in reports.iter_mut() {
        let Some(id) = report.get("plugin").and_then(serde_json::Value::as_str) else {
            continue;
        };
        if let Some(label) = compiled.labels.get(id) {
            report["version"] = serde_json::Value::String(label.clone());
        }
        if candidate.is_some_and(|c| c.slot.export() == slot) {
            report["canary"] = serde_json::Value::Bool(true);
        }
    }
}

/// The attempts counter's index of a verdict (see [`Metrics::attempt`]).
fn verdict_index(verdict: crate::store::AttemptVerdict) -> usize {
    use crate::store::AttemptVerdict;
    match verdict {
        AttemptVerdict::Success => 0,
        AttemptVerdict::Retry => 1,
        AttemptVerdict::Fail => 2,
        AttemptVerdict::Disable => 3,
    }
}

/// Waits until `until` for a rate limit slot, or until shutdown (then `false`). The postback
/// waits for its endpoint's turn, not for a place to send from: its send slot goes to the other
/// partners meanwhile (its partner's own count of postbacks in flight still holds it), and it
/// takes one again before it goes on.
async fn wait_aside(until: Instant, shutdown: &CancellationToken) -> bool {
    let slots = SendSlot::give_back();
    tokio::select! {
        () = tokio::time::sleep_until(until.into()) => {}
        () = shutdown.cancelled() => return false,
    }
    if let Some(slots) = slots {
        SendSlot::take_again(slots).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint a worker over `store` sends `partner_id`'s postbacks with, when a copy
    /// holding `secret` was read `age` ago.
    async fn endpoint_after(store: &Store, partner_id: &PartnerId, secret: &str, age: Duration) -> String {
        let host = postwire_plugins::Host::with_allocator(
            postwire_plugins::Limits::default(),
            None,
            postwire_plugins::Allocator::OnDemand,
        )
        .expect("a plugin host");
        let plugins = Arc::new(Plugins::new(host, store.clone()));
        let sender = Sender::new(crate::send::Guard::new(Vec::new()), crate::send::SendConfig::default());
        let worker = Worker::new(store.clone(), sender, plugins, WorkerConfig::default());
        let saved = store.settings(partner_id).await.expect("settings").expect("saved");
        let settings: NotificationSettings = serde_json::from_str(&saved.body).expect("settings");
        let kept = Compiled {
            version: saved.version,
            settings: settings.compile().expect("they compile"),
            secret: secret.to_owned(),
            previous_secret: None,
            canary: None,
            labels: HashMap::new(),
            loaded: Instant::now() - age,
        };
        worker
            .inner
            .endpoints
            .lock()
            .unwrap()
            .insert(partner_id.clone(), Arc::new(kept));
        let Ok(compiled) = worker.compiled(partner_id, saved.version).await else {
            panic!("the endpoint loads");
        };
        compiled.secret.clone()
    }

    /// A worker keeps a partner's endpoint while its settings version is current; on a store
    /// other processes share, it reads it again after a while, since a secret rotated elsewhere
    /// changes no version. On SQLite every rotation goes through this process, which forgets
    /// the endpoint then.
    #[tokio::test]
    async fn an_endpoint_of_a_shared_store_is_read_again_after_a_while() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut urls = vec![format!("sqlite://{}", dir.path().join("w.db").display())];
        if let Some(url) = crate::store::tests::postgres_url() {
            urls.push(crate::store::tests::postgres_schema(&url).await);
        }
        for url in urls {
            let store = Store::open(&url, crate::store::Durability::Process)
                .await
                .expect("the store opens");
            let partner = store.create_partner("w", str::to_owned).await.expect("a partner");
            let settings = NotificationSettings::validate(&serde_json::json!({
                "url": "https://partner.example/hook",
                "body_template": "{}",
            }))
            .expect("valid settings");
            let body = serde_json::to_string(settings.settings()).expect("settings serialize");
            store.put_settings(&partner.id, &body, now_ms()).await.expect("saved");
            store
                .rotate_secret(&partner.id, "whsec_rotatedelsewhere", now_ms() + 60_000)
                .await
                .expect("rotated");
            assert_eq!(
                endpoint_after(&store, &partner.id, "whsec_kept", Duration::ZERO).await,
                "whsec_kept",
                "a fresh copy is kept ({url})"
            );
            let aged = endpoint_after(&store, &partner.id, "whsec_kept", SHARED_ENDPOINT_FOR).await;
            if store.is_shared() {
                assert_eq!(aged, "whsec_rotatedelsewhere", "read again ({url})");
            } else {
                assert_eq!(aged, "whsec_kept", "kept ({url})");
            }
            store.close().await;
        }
    }

    /// A queued job whose lease ends at `until`.
    fn job(n: usize, until: i64) -> Job {
        Job {
            claimed: Claimed {
                delivery_id: format!("dlv_{n}").into(),
                partner_id: "ptn_w".into(),
                attempts: 0,
                event: ClaimedEvent::Stored(String::new()),
                settings_version: 1,
                lease_seq: 1,
            },
            leased_at: 0,
            until,
        }
    }

    /// A job leaves the memory queue only with time left for all that may follow before its
    /// lease ends: a rate slot, two plugin calls, the exchange and the commit. The lease leaves
    /// room to wait in the queue besides.
    #[test]
    fn a_job_is_taken_only_with_time_left_to_finish() {
        let defaults = WorkerConfig::default();
        // 2 s rate horizon, two 100 ms plugin calls, a 15 s exchange, 2 s to commit.
        assert_eq!(defaults.finish_within, Duration::from_millis(19_200));
        assert_eq!(defaults.lease, Duration::from_millis(19_200 + 15_000 + 3_000));
        assert_eq!(defaults.needed_to_finish(), defaults.finish_within);

        let mut config = WorkerConfig::default();
        config.fit_to(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(
            config.finish_within,
            Duration::from_secs(2 + 10 + 1 + 2),
            "slow plugins count"
        );
        assert_eq!(config.lease, Duration::from_secs(15 + 1 + 3));

        let queue = Queue::new(100, 10, config.lease / 4, config.partner_cap());
        queue.open();
        let now = 1_000_000;
        let needed = config.needed_to_finish().as_millis() as i64;
        let jobs = vec![job(1, now + needed - 1), job(2, now + needed), job(3, now + needed * 2)];
        let room = queue.reserve(jobs.len());
        assert!(queue.fill(room, jobs).is_empty());
        let taken: Vec<String> = queue
            .take(3, now + needed)
            .into_iter()
            .map(|(job, _)| job.claimed.delivery_id.to_string())
            .collect();
        assert_eq!(taken, ["dlv_2", "dlv_3"], "dlv_1 is left to the store");

        // A lease set shorter than the time to finish still sends, with half of it left.
        let short = WorkerConfig {
            lease: Duration::from_secs(4),
            ..config
        };
        assert_eq!(short.needed_to_finish(), Duration::from_secs(2));
    }
}
