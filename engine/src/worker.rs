//! The worker: claims due deliveries and takes each through the pipeline, in this order:
//!
//! 1. claim: deliveries leased to this worker wait in a queue in memory for a send slot.
//!    Those this process accepted a moment ago are [leased as they are recorded](Worker::accept);
//!    the claimer tops the queue up from the store, a batch at a time, ahead of need, so that
//!    sending never waits for the store;
//! 2. render: the event with the settings current now, so a partner who fixes a
//!    template fixes the pending retries too;
//! 3. rate limit: wait for the endpoint's next slot, or go back to the store due at that slot;
//! 4. [`sign`](crate::sign), [`send`](crate::send), [`classify`](mod@crate::classify): one exchange
//!    ([`attempt`]);
//! 5. record: the attempt and the delivery's next state, committed in batches by one recorder
//!    task, so the store sees few large transactions instead of many small ones.
//!
//! A delivery is marked delivered only after its attempt is committed; a crash before that
//! leaves the lease to expire and the postback to be sent again (at least once, same
//! `webhook-id`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::classify::{self, Outcome as Exchange, Response, Verdict};
use crate::event::Event;
use crate::plugins::Plugins;
use crate::ratelimit::RateLimits;
use crate::request::Request;
use crate::retry::Schedule;
use crate::send::Sender;
use crate::settings::{CompiledSettings, NotificationSettings};
use crate::store::{
    Accepted, Attempt, AttemptVerdict, Claimed, ClaimedEvent, Lease, Next, Outcome, Store, StoreError, new_id, now_ms,
};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Deliveries claimed at once.
    pub batch: usize,
    /// How long a claim lasts; longer than the send timeout plus the rate-limit horizon.
    pub lease: Duration,
    /// Postbacks in flight at once.
    pub concurrency: usize,
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch: 256,
            lease: Duration::from_secs(37),
            concurrency: 256,
            idle_poll: Duration::from_secs(1),
            rate_horizon: Duration::from_secs(2),
            schedule: Schedule::default(),
            shutdown_grace: Duration::from_secs(20),
            memory_queue: 32_768,
        }
    }
}

/// A partner's compiled settings, kept while their version is current.
struct Compiled {
    version: i64,
    settings: CompiledSettings,
    secret: String,
}

struct Inner {
    store: Store,
    sender: Sender,
    plugins: Arc<Plugins>,
    config: WorkerConfig,
    limits: RateLimits,
    endpoints: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Set when deliveries may have become due in the store; the claimer then claims.
    store_due: AtomicBool,
    /// Set while the store holds due deliveries that came before any new one: new deliveries
    /// then wait in the store too, behind them, instead of overtaking them from memory.
    backlog: AtomicBool,
    wake: Notify,
    queue: Queue,
    /// Per partner, when an attempt last disabled its endpoint (Unix ms).
    disabled: Mutex<HashMap<String, i64>>,
}

/// A delivery on its way through the pipeline.
struct Job {
    claimed: Claimed,
    /// When it was leased (Unix ms).
    leased_at: i64,
    /// When its lease ends (Unix ms).
    until: i64,
}

/// Deliveries leased to this worker and waiting in memory for a send slot: those accepted by
/// this process a moment ago, leased in the transaction that recorded them (they skip the claim,
/// a store write, and the reading back of their event), and those the claimer took from the
/// store ahead of need, so that sending never waits for a claim. Should the process die, their
/// leases expire and any worker claims them from the store again.
///
/// Its room follows the pace of sending: it holds at most what the worker takes in `horizon`
/// at the rate measured over the last [`PACE_WINDOW`], between [`QUEUE_FLOOR`] and its capacity. A burst that
/// outruns sending for a while stays in memory instead of going the long way through the store
/// (a claim and a reading back of the event for every delivery), while behind slow receivers
/// the queue stays short enough for every job to be sent within its lease.
struct Queue {
    state: Mutex<QueueState>,
    /// Jobs were queued.
    ready: Notify,
    /// The queue fell below its low mark.
    drained: Notify,
    /// Below this many jobs the claimer claims more.
    low: usize,
    /// The queue holds what the worker takes in this long.
    horizon: Duration,
}

/// The room the queue has at least, whatever the pace of sending.
const QUEUE_FLOOR: usize = 4096;

/// How long the pace of sending is measured over before it counts.
const PACE_WINDOW: Duration = Duration::from_millis(250);

struct QueueState {
    /// Only a running worker takes jobs.
    open: bool,
    jobs: VecDeque<Job>,
    /// Places promised to accepts and claims under way.
    reserved: usize,
    capacity: usize,
    /// Jobs taken since `window_start`.
    taken: usize,
    window_start: Instant,
    /// Jobs taken per second over the last full window.
    pace: f64,
}

impl QueueState {
    /// How many jobs the queue may hold now (see [`Queue`]).
    fn limit(&self, horizon: Duration) -> usize {
        let paced = (self.pace * horizon.as_secs_f64()) as usize;
        paced.clamp(QUEUE_FLOOR.min(self.capacity), self.capacity)
    }
}

impl Queue {
    fn new(capacity: usize, low: usize, horizon: Duration) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                open: false,
                jobs: VecDeque::new(),
                reserved: 0,
                capacity,
                taken: 0,
                window_start: Instant::now(),
                pace: 0.0,
            }),
            ready: Notify::new(),
            drained: Notify::new(),
            low,
            horizon,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().expect("never poisoned")
    }

    /// Promises up to `want` places; the promise ends with [`Queue::fill`] or [`Queue::release`].
    fn reserve(&self, want: usize) -> usize {
        let mut state = self.state();
        if !state.open {
            return 0;
        }
        let room = state
            .limit(self.horizon)
            .saturating_sub(state.jobs.len() + state.reserved)
            .min(want);
        state.reserved += room;
        room
    }

    fn release(&self, reserved: usize) {
        self.state().reserved -= reserved;
    }

    /// Queues `jobs` in `reserved` promised places; gives them back when the worker has stopped.
    fn fill(&self, reserved: usize, jobs: Vec<Job>) -> Vec<Job> {
        let mut state = self.state();
        state.reserved -= reserved;
        if !state.open {
            return jobs;
        }
        let any = !jobs.is_empty();
        state.jobs.extend(jobs);
        drop(state);
        if any {
            self.ready.notify_one();
        }
        Vec::new()
    }

    /// Jobs queued or promised.
    fn len(&self) -> usize {
        let state = self.state();
        state.jobs.len() + state.reserved
    }

    /// Up to `max` queued jobs whose leases last at least until `sendable_until`; the others
    /// are left to the store, which hands them out again when their leases end.
    fn take(&self, max: usize, sendable_until: i64) -> Vec<Job> {
        let mut state = self.state();
        let mut jobs = Vec::with_capacity(max.min(state.jobs.len()));
        while jobs.len() < max {
            let Some(job) = state.jobs.pop_front() else { break };
            if job.until >= sendable_until {
                jobs.push(job);
            } else {
                debug!(delivery = %job.claimed.delivery_id, "waited in memory too long; left to the store");
            }
        }
        state.taken += jobs.len();
        let elapsed = state.window_start.elapsed();
        if elapsed >= PACE_WINDOW {
            state.pace = state.taken as f64 / elapsed.as_secs_f64();
            state.taken = 0;
            state.window_start = Instant::now();
        }
        let low = state.jobs.len() + state.reserved < self.low;
        drop(state);
        if low {
            self.drained.notify_one();
        }
        jobs
    }

    fn open(&self) {
        self.state().open = true;
    }

    /// Stops taking jobs; returns those still queued.
    fn close(&self) -> Vec<Job> {
        let mut state = self.state();
        state.open = false;
        state.jobs.drain(..).collect()
    }
}

/// The delivery worker; clones share one worker.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

/// What the recorder writes.
enum Record {
    Outcome(Box<Outcome>),
    /// Back to the store due at this time, no attempt counted.
    Later(String, i64),
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
                queue: Queue::new(config.memory_queue, config.batch * 2, config.lease / 4),
                disabled: Mutex::new(HashMap::new()),
                config,
            }),
        }
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
        let room = if inner.backlog.load(Ordering::Acquire) {
            0
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
            // memory, in which case later ones must not overtake them.
            if handed == room {
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
        let permits = Arc::new(Semaphore::new(inner.config.concurrency));
        let tasks = TaskTracker::new();
        let lease = inner.config.lease.as_millis() as i64;
        let mut last_prune = Instant::now();
        loop {
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = shutdown.cancelled() => break,
            };
            let mut held = vec![first];
            while held.len() < inner.config.batch {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            // A job whose lease ends before it could be sent and recorded is left to the store.
            let jobs = inner.queue.take(held.len(), now_ms() + lease / 2);
            if jobs.is_empty() {
                drop(held);
                tokio::select! {
                    () = inner.queue.ready.notified() => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            for (job, permit) in jobs.into_iter().zip(held.drain(..)) {
                let worker = self.clone();
                let records = records.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    worker.deliver(job, records, shutdown).await;
                    drop(permit);
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
        // Deliveries still waiting in memory are due now for whichever worker runs next.
        for job in inner.queue.close() {
            let _ = records.send(Record::Later(job.claimed.delivery_id, now_ms())).await;
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
            if inner.queue.len() >= inner.queue.low {
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
            match inner.store.claim(now, lease, wanted as i64).await {
                Ok(claimed) => {
                    debug!(count = claimed.len(), "claimed deliveries");
                    if claimed.len() == wanted {
                        inner.store_due.store(true, Ordering::Release);
                    } else {
                        inner.backlog.store(false, Ordering::Release);
                        next_check = tokio::time::Instant::now() + self.idle_after().await;
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

    /// Queues leased `jobs` in `reserved` promised places. Should the worker have stopped
    /// meanwhile, they are given back to the store, due at `now` for whichever worker runs next.
    async fn enqueue(&self, reserved: usize, jobs: Vec<Job>, now: i64) {
        let refused = self.inner.queue.fill(reserved, jobs);
        if refused.is_empty() {
            return;
        }
        let due: Vec<(String, i64)> = refused.into_iter().map(|job| (job.claimed.delivery_id, now)).collect();
        if let Err(e) = self.inner.store.reschedule(&due).await {
            warn!(error = %e, "giving back leases failed; they are sent once the leases end");
        }
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

    /// One delivery through render, rate limit, sign, send, classify; the result goes to the
    /// recorder.
    async fn deliver(&self, job: Job, records: mpsc::Sender<Record>, shutdown: CancellationToken) {
        let inner = &self.inner;
        let Job { claimed, leased_at, .. } = job;
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
        let send_outcome = |attempt: Attempt, next: Next| {
            let records = records.clone();
            async move {
                let _ = records.send(Record::Outcome(Box::new(Outcome { attempt, next }))).await;
            }
        };
        let (compiled, event) = match self
            .prepare(claimed.partner_id.as_str(), claimed.settings_version, claimed.event)
            .await
        {
            Ok(prepared) => prepared,
            Err(reason) => {
                let attempt = unsent_attempt(&claimed.delivery_id, number, &reason, None);
                return send_outcome(attempt, Next::Failed).await;
            }
        };
        if let Some(rate) = compiled.settings.settings().max_requests_per_sec {
            let now = Instant::now();
            match inner
                .limits
                .reserve(&claimed.partner_id, rate, now, inner.config.rate_horizon)
            {
                Ok(slot) if slot > now => {
                    tokio::select! {
                        () = tokio::time::sleep_until(slot.into()) => {}
                        () = shutdown.cancelled() => {
                            let _ = records.send(Record::Later(claimed.delivery_id, now_ms())).await;
                            return;
                        }
                    }
                }
                Ok(_) => {}
                Err(slot) => {
                    let at = now_ms() + slot.duration_since(now).as_millis() as i64;
                    let _ = records.send(Record::Later(claimed.delivery_id, at)).await;
                    return;
                }
            }
            while let Some(until) = inner.limits.admit(&claimed.partner_id, rate, Instant::now()) {
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = shutdown.cancelled() => {
                        let _ = records.send(Record::Later(claimed.delivery_id, now_ms())).await;
                        return;
                    }
                }
            }
        }
        let rendered = compiled.settings.render(&event);
        let (request, transform_report) = match transform(&inner.plugins, &compiled.settings, &event, rendered).await {
            Ok(transformed) => transformed,
            Err((reason, report, host_failure)) => {
                let plugins = Some(json!({ "transform": report }));
                let attempt = unsent_attempt(&claimed.delivery_id, number, &reason, plugins);
                let next = if host_failure {
                    self.retry_at(number, None)
                } else {
                    Next::Failed
                };
                return send_outcome(attempt, next).await;
            }
        };
        let (attempt, verdict) = attempt(
            &inner.sender,
            &inner.plugins,
            &claimed.partner_id,
            &compiled.settings,
            &compiled.secret,
            &request,
            &claimed.delivery_id,
            number,
            transform_report,
        )
        .await;
        let next = match verdict {
            Verdict::Success => Next::Delivered,
            Verdict::Fail { .. } => Next::Failed,
            Verdict::Disable { reason } => {
                inner
                    .disabled
                    .lock()
                    .expect("never poisoned")
                    .insert(claimed.partner_id.clone(), now_ms());
                Next::Disable(reason)
            }
            Verdict::Retry { after, .. } => self.retry_at(number, after),
        };
        send_outcome(attempt, next).await;
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
        partner_id: &str,
        settings_version: i64,
        event: ClaimedEvent,
    ) -> Result<(Arc<Compiled>, Event), String> {
        let compiled = self.compiled(partner_id, settings_version).await?;
        Ok((compiled, event.read()?))
    }

    async fn compiled(&self, partner_id: &str, version: i64) -> Result<Arc<Compiled>, String> {
        let cached = self
            .inner
            .endpoints
            .lock()
            .expect("never poisoned")
            .get(partner_id)
            .cloned();
        if let Some(compiled) = cached.filter(|c| c.version == version) {
            return Ok(compiled);
        }
        let endpoint = self
            .inner
            .store
            .endpoint(partner_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("partner {partner_id} has no notification settings"))?;
        let settings: NotificationSettings = serde_json::from_str(&endpoint.settings).map_err(|e| e.to_string())?;
        let settings = settings
            .compile()
            .map_err(|e| format!("the saved settings no longer compile: {e}"))?;
        let compiled = Arc::new(Compiled {
            version: endpoint.version,
            settings,
            secret: endpoint.secret,
        });
        self.inner
            .endpoints
            .lock()
            .expect("never poisoned")
            .insert(partner_id.to_owned(), compiled.clone());
        Ok(compiled)
    }
}

/// The transform step: the rendered request through the partner's transform plugin, if it has
/// one. `Err((reason, report, host_failure))` when the plugin failed.
pub async fn transform(
    plugins: &Plugins,
    settings: &CompiledSettings,
    event: &Event,
    rendered: Request,
) -> Result<(Request, Option<serde_json::Value>), (String, serde_json::Value, bool)> {
    let options = settings.settings();
    let Some(id) = &options.transform_plugin else {
        return Ok((rendered, None));
    };
    let config = crate::plugins::config_text(options.plugin_config.as_ref());
    let call = plugins
        .transform(&event.partner_id, id, event, &rendered, &config)
        .await;
    match call.result {
        Ok(request) => Ok((request, Some(call.report))),
        Err(e) => Err((format!("transform plugin failed: {e}"), call.report, call.host_failure)),
    }
}

/// One exchange with the receiver: sign, send, classify (by the partner's classify plugin or
/// the default rules). Used by the worker and by test postbacks, so both behave the same.
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    sender: &Sender,
    plugins: &Plugins,
    partner_id: &str,
    settings: &CompiledSettings,
    secret: &str,
    request: &Request,
    delivery_id: &str,
    number: i64,
    transform_report: Option<serde_json::Value>,
) -> (Attempt, Verdict) {
    let started_at = now_ms();
    let mut reports = serde_json::Map::new();
    if let Some(report) = transform_report {
        reports.insert("transform".into(), report);
    }
    let signature = match crate::sign::headers(secret, delivery_id, started_at / 1000, request.body.as_bytes()) {
        Ok(headers) => headers,
        Err(e) => {
            let attempt = unsent_attempt(delivery_id, number, &e.to_string(), None);
            return (attempt, Verdict::Fail { reason: e.to_string() });
        }
    };
    let (result, elapsed) = sender.send(request, &signature).await;
    let options = settings.settings();
    let verdict = match (&result, &options.classify_plugin) {
        (Ok(answer), Some(id)) => {
            let response = postwire_plugins::types::Response {
                status: answer.status,
                headers: answer.headers.clone(),
                body: answer.body.clone(),
                duration_ms: elapsed.as_millis().min(u32::MAX as u128) as u32,
            };
            let config = crate::plugins::config_text(options.plugin_config.as_ref());
            let call = plugins.classify(partner_id, id, request, response, &config).await;
            reports.insert("classify".into(), call.report);
            match call.result {
                Ok(postwire_plugins::types::Verdict::Success) => Verdict::Success,
                Ok(postwire_plugins::types::Verdict::Retry { after_secs, reason }) => Verdict::Retry {
                    after: after_secs.map(|s| Duration::from_secs(s.into())),
                    reason: format!("classify plugin: {reason}"),
                },
                Ok(postwire_plugins::types::Verdict::Fail(reason)) => Verdict::Fail {
                    reason: format!("classify plugin: {reason}"),
                },
                Err(e) => Verdict::Retry {
                    after: None,
                    reason: format!("classify plugin failed: {e}"),
                },
            }
        }
        (Ok(answer), None) => classify::classify(
            Exchange::Response(Response {
                status: answer.status,
                headers: &answer.headers,
                body: &answer.body,
            }),
            options.success_response.as_deref(),
            options.error_response.as_deref(),
            Utc::now(),
        ),
        (Err(e), _) => classify::classify(Exchange::Transport(&e.0), None, None, Utc::now()),
    };
    let (verdict_name, error) = describe(&verdict);
    let attempt = Attempt {
        id: new_id("att"),
        delivery_id: delivery_id.to_owned(),
        number,
        started_at,
        duration_ms: elapsed.as_millis() as i64,
        request: redacted(request, &signature),
        response_status: result.as_ref().ok().map(|a| a.status.into()),
        response_headers: result
            .as_ref()
            .ok()
            .map(|a| serde_json::value::to_raw_value(&a.headers).expect("headers always serialize")),
        response_body: result
            .as_ref()
            .ok()
            .map(|a| String::from_utf8_lossy(&a.body).into_owned()),
        verdict: verdict_name,
        error,
        plugins: (!reports.is_empty()).then(|| serde_json::Value::Object(reports)),
    };
    (attempt, verdict)
}

fn describe(verdict: &Verdict) -> (AttemptVerdict, Option<String>) {
    match verdict {
        Verdict::Success => (AttemptVerdict::Success, None),
        Verdict::Retry { reason, .. } => (AttemptVerdict::Retry, Some(reason.clone())),
        Verdict::Fail { reason } => (AttemptVerdict::Fail, Some(reason.clone())),
        Verdict::Disable { reason } => (AttemptVerdict::Disable, Some(reason.clone())),
    }
}

fn unsent_attempt(delivery_id: &str, number: i64, reason: &str, plugins: Option<serde_json::Value>) -> Attempt {
    Attempt {
        id: new_id("att"),
        delivery_id: delivery_id.to_owned(),
        number,
        started_at: now_ms(),
        duration_ms: 0,
        request: RawValue::NULL.to_owned(),
        response_status: None,
        response_headers: None,
        response_body: None,
        verdict: AttemptVerdict::Fail,
        error: Some(reason.to_owned()),
        plugins,
    }
}

/// Whether a header or query parameter of this name holds a secret: its name holds one of
/// "auth" (and so "authorization"), "cookie", "key", "token", "secret", "password" or
/// "signature", in any case. Our own `webhook-signature` is public.
fn is_secret(name: &str) -> bool {
    !name.eq_ignore_ascii_case("webhook-signature") && has_secret_word(name.as_bytes())
}

/// Whether `text` holds one of the words of [`is_secret`] in any case. Runs for every header of every
/// attempt: one pass, comparing a word only where its first letter is, without a lowercase copy.
fn has_secret_word(text: &[u8]) -> bool {
    (0..text.len()).any(|at| {
        let rest = &text[at..];
        let starts = |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        // "authorization" holds "auth".
        match rest[0].to_ascii_lowercase() {
            b'a' => starts(b"auth"),
            b'c' => starts(b"cookie"),
            b'k' => starts(b"key"),
            b't' => starts(b"token"),
            b's' => starts(b"secret") || starts(b"signature"),
            b'p' => starts(b"password"),
            _ => false,
        }
    })
}

/// The request for the attempt log as JSON text (method, URL, headers, body), with `extra`
/// headers after the request's own, and secret header values and query parameters redacted.
pub fn redacted(request: &Request, extra: &[(&str, String)]) -> Box<RawValue> {
    let url = redacted_url(&request.url);
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(extra.iter().map(|(n, v)| (*n, v.as_str())))
        .map(|(n, v)| (n, if is_secret(n) { "[redacted]" } else { v }))
        .collect();
    #[derive(Serialize)]
    struct Logged<'a> {
        method: &'a str,
        url: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body: &'a str,
    }
    let logged = Logged {
        method: request.method.as_str(),
        url: &url,
        headers,
        body: &request.body,
    };
    serde_json::value::to_raw_value(&logged).expect("a request always serializes")
}

/// The URL with the values of secret query parameters replaced.
fn redacted_url(url: &str) -> std::borrow::Cow<'_, str> {
    // Most URLs have no query parameter that could be secret; they are not parsed.
    let Some((_, query)) = url.split_once('?') else {
        return url.into();
    };
    if !query.contains(['%', '+']) && !has_secret_word(query.as_bytes()) {
        return url.into();
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.query_pairs().any(|(k, _)| is_secret(&k)) => {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if is_secret(&k) {
                        "[redacted]".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
            parsed.to_string().into()
        }
        _ => url.into(),
    }
}

/// The recorder: commits outcomes in batches, retrying the store for a while when it fails.
/// A commit that made deliveries due now (an inquiry's resolved postback once its created one is
/// done, an immediate retry, a delivery given back) wakes the claimer.
async fn record(worker: Worker, mut receiver: mpsc::Receiver<Record>) {
    let store = &worker.inner.store;
    let mut outcomes = Vec::new();
    let mut later = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Record::Outcome(outcome) => outcomes.push(*outcome),
                Record::Later(id, at) => later.push((id, at)),
            }
            next = if outcomes.len() + later.len() < 1024 {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let now = now_ms();
        let due_now = outcomes
            .iter()
            .any(|o| matches!(o.next, Next::RetryAt(at) if at <= now))
            || later.iter().any(|(_, at)| *at <= now);
        // Handed over whole and taken back after, so that the buffer is allocated once.
        let batch = Arc::new(std::mem::take(&mut outcomes));
        let unblocked = persist("recording attempts", || store.record(batch.clone(), now)).await;
        outcomes = Arc::try_unwrap(batch).unwrap_or_default();
        persist("rescheduling rate-limited deliveries", || store.reschedule(&later)).await;
        if due_now || unblocked.is_some_and(|n| n > 0) {
            worker.wake();
        }
        outcomes.clear();
        later.clear();
    }
}

/// Runs a store write, retrying with backoff for a while; if the store stays down, the leases
/// of the deliveries concerned expire and they are sent again.
async fn persist<T, F, Fut>(what: &str, mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    for round in 0..10u32 {
        match write().await {
            Ok(done) => return Some(done),
            Err(e) => {
                warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 << round.min(4))).await;
            }
        }
    }
    error!("{what} failed for good; the leases expire and the postbacks are sent again");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_WORDS: &[&str] = &[
        "authorization",
        "auth",
        "cookie",
        "key",
        "token",
        "secret",
        "password",
        "signature",
    ];

    #[test]
    fn secret_names_are_found_in_any_case() {
        for name in [
            "Authorization",
            "X-API-KEY",
            "x-Auth-Token",
            "Cookie",
            "client_secret",
            "PassWord",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "Content-Type",
            "webhook-signature",
            "Webhook-Signature",
            "X-Partner",
            "k",
            "",
        ] {
            assert!(!is_secret(name), "{name}");
        }
        assert!(is_secret("x-signature"), "signatures other than ours are secrets");
        // The one pass finds what a plain search for every word finds.
        for text in [
            "X-Api-Key",
            "keyless",
            "monkey",
            "x-oauth",
            "TOKENS",
            "tok",
            "sec",
            "secre",
            "Set-Cookie",
            "pass_word",
            "PASSWORD1",
            "aut",
            "x-sig",
            "SIGNATURE",
            "k",
            "",
            "akey",
            "ssecret",
        ] {
            let lower = text.to_ascii_lowercase();
            let plain = SECRET_WORDS.iter().any(|word| lower.contains(word));
            assert_eq!(has_secret_word(text.as_bytes()), plain, "{text}");
        }
    }

    fn job(n: usize, until: i64) -> Job {
        Job {
            claimed: Claimed {
                delivery_id: format!("dlv_{n}"),
                partner_id: "ptn_q".into(),
                attempts: 0,
                event: ClaimedEvent::Stored(String::new()),
                settings_version: 1,
            },
            leased_at: 0,
            until,
        }
    }

    /// The queue's room follows the pace of sending: at least the floor, at most its capacity,
    /// and in between what the worker takes in the horizon.
    #[test]
    fn the_queue_holds_what_is_sent_in_its_horizon() {
        let queue = Queue::new(32_768, 512, Duration::from_secs(9));
        assert_eq!(queue.reserve(10), 0, "a closed queue takes nothing");
        queue.open();
        // No pace measured yet: the floor.
        assert_eq!(queue.reserve(100_000), QUEUE_FLOOR);
        queue.release(QUEUE_FLOOR);
        for (pace, limit) in [(10.0, QUEUE_FLOOR), (1_000.0, 9_000), (30_000.0, 32_768)] {
            queue.state().pace = pace;
            assert_eq!(queue.reserve(100_000), limit, "at {pace} jobs a second");
            queue.release(limit);
        }
        // A capacity below the floor is the limit.
        let small = Queue::new(100, 10, Duration::from_secs(9));
        small.open();
        assert_eq!(small.reserve(1_000), 100);

        // The pace is measured from the jobs taken over a window.
        let queue = Queue::new(32_768, 512, Duration::from_secs(9));
        queue.open();
        let room = queue.reserve(2_000);
        assert!(
            queue
                .fill(room, (0..2_000).map(|n| job(n, i64::MAX)).collect())
                .is_empty()
        );
        // The window began a full window ago, as if the jobs had been queued then.
        queue.state().window_start = Instant::now() - PACE_WINDOW;
        assert_eq!(queue.take(2_000, 0).len(), 2_000);
        let pace = queue.state().pace;
        assert!(pace > 0.0 && pace <= 2_000.0 / PACE_WINDOW.as_secs_f64(), "{pace}");
    }

    /// A job whose lease ends too soon to be sent is left to the store, not taken.
    #[test]
    fn the_queue_leaves_jobs_near_the_end_of_their_lease() {
        let queue = Queue::new(100, 10, Duration::from_secs(9));
        queue.open();
        let room = queue.reserve(3);
        assert!(queue.fill(room, vec![job(1, 50), job(2, 200), job(3, 100)]).is_empty());
        let taken: Vec<String> = queue.take(3, 100).into_iter().map(|j| j.claimed.delivery_id).collect();
        assert_eq!(taken, ["dlv_2", "dlv_3"]);
        assert_eq!(queue.len(), 0);
    }
}
