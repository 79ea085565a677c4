//! Plugins in the pipeline: the engine's side of the `postwire-plugins` host.
//!
//! Loads a partner's plugins from the store once (the host keeps compiled artifacts by sha256,
//! checked before they are loaded) and keeps at most [`LOADED`] of them loaded, the least
//! recently used dropped first; runs calls in the postback's own task, where a call gives its
//! thread back every 100,000 instructions and at every epoch tick, so a slow plugin delays the
//! other tasks a slice at a time; lets each partner run at most [`PER_PARTNER`] calls at once (its lane) so one partner's
//! hostile plugin cannot take every core from the others, and turns each call into a report for
//! the attempt log.
//!
//! Failure semantics:
//! - a transform that fails (traps, runs out of fuel, refuses, returns a malformed request or
//!   one that sets a header Postwire writes itself) fails the delivery with the plugin's
//!   message: sending what the partner did not want is worse than not sending; once the plugin
//!   is fixed, a manual retry replays it;
//! - a classifier that fails is recorded and the attempt is retried on the schedule: the
//!   postback did reach the receiver, only its meaning is unknown;
//! - a failure of the host itself (a broken artifact, memory the system refuses) is retried;
//!   a plugin's own doing never counts as one: a stored plugin that breaks the limits now, or
//!   cannot be instantiated within a call's, fails as the plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postwire_plugins::types::{self as wit, LogLine, Run};
use postwire_plugins::{EventSource, Host, Origin, Plugin, PluginError};
use serde_json::{Value, json};

use crate::catalogue::{CATALOGUE, Source};
use crate::event::{Event, format_timestamp};
use crate::metrics::{Metrics, PluginFunction};
use crate::request::{Method, Request, is_reserved};
use crate::store::Store;

/// Plugin calls one partner may have running at once.
pub const PER_PARTNER: usize = 2;

/// Plugins loaded at once unless told otherwise ([`Plugins::with_loaded_capacity`]): each keeps
/// its compiled code in memory, so the least recently used beyond this many are dropped, and
/// loaded again (from the artifact cache, without compiling) when next called.
pub const LOADED: usize = 256;

/// Loaded plugins by id, at most `capacity` of them, the least recently used dropped first.
struct LoadedPlugins {
    capacity: usize,
    /// Counts uses; an entry's stamp is the count at its last use.
    clock: u64,
    plugins: HashMap<String, (Plugin, u64)>,
}

impl LoadedPlugins {
    fn new(capacity: usize) -> LoadedPlugins {
        LoadedPlugins {
            capacity: capacity.max(1),
            clock: 0,
            plugins: HashMap::new(),
        }
    }

    fn get(&mut self, id: &str) -> Option<Plugin> {
        self.clock += 1;
        let (plugin, used) = self.plugins.get_mut(id)?;
        *used = self.clock;
        Some(plugin.clone())
    }

    /// Keeps `plugin`, dropping the least recently used others beyond the capacity when
    /// `bounded` (plugins that cannot be loaded again, the local runner's, are all kept).
    /// Calls under way keep their own reference to a dropped plugin.
    fn insert(&mut self, id: &str, plugin: Plugin, bounded: bool) {
        self.clock += 1;
        self.plugins.insert(id.to_owned(), (plugin, self.clock));
        // A scan per insert: inserts are loads, rare next to calls, and the map is small.
        while bounded && self.plugins.len() > self.capacity {
            let Some(oldest) = self
                .plugins
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.plugins.remove(&oldest);
        }
    }

    fn remove(&mut self, id: &str) {
        self.plugins.remove(id);
    }
}

/// The engine's plugin runtime.
pub struct Plugins {
    host: Arc<Host>,
    /// Where binaries are loaded from; `None` for the local runner, which loads files itself.
    store: Option<Store>,
    loaded: Mutex<LoadedPlugins>,
    /// One loader per plugin id, so that postbacks arriving together for a plugin not loaded
    /// yet (after a restart) load it once, not once each.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    /// Where calls are counted, with their fuel and time.
    metrics: Arc<Metrics>,
}

tokio::task_local! {
    /// The send slot of the postback whose plugins run in this task, when the worker runs it:
    /// given back once a call waits for its partner's lane or runs on past its first poll.
    pub(crate) static SEND_SLOT: SendSlot;
}

/// A postback's place among the postbacks in flight at once. A plugin call gives it back once it
/// waits for its partner's lane or runs on past its first poll (a slice of at most 100,000
/// instructions), and so does a wait for the endpoint's rate limit slot; each takes one again
/// before the postback goes on, so that postbacks queued behind a partner's slow plugin hold
/// none of the places the others send in (what they hold is their partner's own count of
/// postbacks in flight).
pub(crate) struct SendSlot {
    slots: Arc<tokio::sync::Semaphore>,
    held: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl SendSlot {
    /// A slot of `slots`, held as `permit`.
    pub(crate) fn new(slots: Arc<tokio::sync::Semaphore>, permit: tokio::sync::OwnedSemaphorePermit) -> SendSlot {
        SendSlot {
            slots,
            held: Mutex::new(Some(permit)),
        }
    }

    /// Gives this task's slot back, if it runs a postback; returns where to take one again.
    pub(crate) fn give_back() -> Option<Arc<tokio::sync::Semaphore>> {
        SEND_SLOT
            .try_with(|slot| {
                slot.held.lock().expect("never poisoned").take();
                slot.slots.clone()
            })
            .ok()
    }

    /// Takes a slot of `slots` again for this task's postback.
    pub(crate) async fn take_again(slots: Arc<tokio::sync::Semaphore>) {
        // The worker never closes its semaphore; were it closed, the postback goes on without.
        let permit = slots.acquire_owned().await.ok();
        let _ = SEND_SLOT.try_with(|slot| *slot.held.lock().expect("never poisoned") = permit);
    }
}

/// One partner's plugin calls: at most [`PER_PARTNER`] run at once, the others wait their turn.
type Lane = tokio::sync::Semaphore;

/// One plugin call as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct Call<T> {
    /// The output, or the error in words.
    pub result: Result<T, String>,
    /// True when the host, not the plugin, failed.
    pub host_failure: bool,
    /// For the attempt log: plugin id, output or error, fuel, memory, time, logs.
    pub report: Value,
}

impl Plugins {
    /// A runtime over `host`, loading plugin binaries from `store`.
    pub fn new(host: Host, store: Store) -> Plugins {
        Plugins::with_store(host, Some(store))
    }

    /// A runtime without a store: plugins are only those [`Plugins::remember`]ed (the local
    /// runner's case).
    pub fn local(host: Host) -> Plugins {
        Plugins::with_store(host, None)
    }

    fn with_store(host: Host, store: Option<Store>) -> Plugins {
        Plugins {
            host: Arc::new(host),
            store,
            loaded: Mutex::new(LoadedPlugins::new(LOADED)),
            loading: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Counts calls in `metrics` (default: a set of its own).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Plugins {
        self.metrics = metrics;
        self
    }

    /// Keeps at most `capacity` plugins loaded (default: [`LOADED`]).
    pub fn with_loaded_capacity(self, capacity: usize) -> Plugins {
        *self.loaded.lock().expect("never poisoned") = LoadedPlugins::new(capacity);
        self
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// How many plugins are loaded now.
    pub fn loaded(&self) -> usize {
        self.loaded.lock().expect("never poisoned").plugins.len()
    }

    /// Validates and compiles an upload (on a blocking thread: compiling takes a while).
    ///
    /// A cached artifact that failed its check is logged and counted here: the plugin was
    /// compiled again, but a cache that corrupts files is the operator's to look at.
    pub async fn compile(&self, wasm: Vec<u8>) -> Result<Plugin, PluginError> {
        let host = self.host.clone();
        let plugin = tokio::task::spawn_blocking(move || host.load(&wasm))
            .await
            .unwrap_or_else(|e| Err(PluginError::Host(e.to_string())))?;
        if let Origin::Recompiled(reason) = plugin.origin() {
            tracing::warn!(
                sha256 = plugin.sha256(),
                reason = reason.as_str(),
                "a cached plugin artifact failed its check and was not loaded; compiled the plugin again"
            );
        }
        self.metrics.plugin_artifact(plugin.origin());
        Ok(plugin)
    }

    /// Keeps a loaded plugin under its id.
    pub fn remember(&self, id: &str, plugin: Plugin) {
        self.loaded
            .lock()
            .expect("never poisoned")
            .insert(id, plugin, self.store.is_some());
    }

    /// Forgets a deleted plugin.
    pub fn forget(&self, id: &str) {
        self.loaded.lock().expect("never poisoned").remove(id);
    }

    /// The plugin with this id, loaded from the store the first time.
    pub async fn get(&self, id: &str) -> Result<Plugin, String> {
        self.load(id).await.map_err(|unloaded| unloaded.reason)
    }

    /// [`Plugins::get`], telling a plugin that cannot be loaded (one stored before the limits
    /// it breaks, refused now: the plugin's failure) from a host that cannot load it.
    async fn load(&self, id: &str) -> Result<Plugin, Unloaded> {
        if let Some(plugin) = self.loaded.lock().expect("never poisoned").get(id) {
            return Ok(plugin);
        }
        let loader = self
            .loading
            .lock()
            .expect("never poisoned")
            .entry(id.to_owned())
            .or_default()
            .clone();
        let loaded = {
            let _loading = loader.lock().await;
            self.load_once(id).await
        };
        // The loader goes once nobody else holds it; clones are taken under this lock, so none
        // can appear meanwhile, and the map does not grow with every plugin ever loaded.
        let mut loading = self.loading.lock().expect("never poisoned");
        if Arc::strong_count(&loader) == 2 {
            loading.remove(id);
        }
        loaded
    }

    /// Loads plugin `id` from the store unless another load did while this one waited.
    async fn load_once(&self, id: &str) -> Result<Plugin, Unloaded> {
        let host = |reason: String| Unloaded { reason, host: true };
        if let Some(plugin) = self.loaded.lock().expect("never poisoned").get(id) {
            return Ok(plugin);
        }
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| host(format!("plugin {id} is not loaded")))?;
        let wasm = store
            .plugin_wasm(id)
            .await
            .map_err(|e| host(e.to_string()))?
            .ok_or_else(|| host(format!("plugin {id} does not exist (was it deleted?)")))?;
        let plugin = self.compile(wasm).await.map_err(|e| Unloaded {
            // A stored build of another contract version is the upgrade's doing, not the
            // plugin's: its postbacks wait on the retry schedule for the partner's rebuilt
            // one (or for a process of the version it was built for).
            host: e.is_host_failure() || matches!(e, PluginError::OtherContract(_)),
            reason: e.to_string(),
        })?;
        self.remember(id, plugin.clone());
        Ok(plugin)
    }

    fn lane(&self, partner_id: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("never poisoned");
        if let Some(lane) = lanes.get(partner_id) {
            return lane.clone();
        }
        lanes
            .entry(partner_id.to_owned())
            .or_insert_with(|| Arc::new(Lane::new(PER_PARTNER)))
            .clone()
    }

    /// Runs `call` with plugin `id` in `partner_id`'s lane, giving the postback's send slot
    /// back once it waits for its turn or runs past its first slice.
    async fn run<T>(
        &self,
        function: PluginFunction,
        partner_id: &str,
        id: &str,
        call: impl AsyncFnOnce(&Host, &Plugin) -> Run<T>,
    ) -> Result<Run<T>, Unloaded> {
        let plugin = self.load(id).await?;
        let lane = self.lane(partner_id);
        let mut turn = std::pin::pin!(async {
            // The semaphore is never closed.
            let _turn = lane.acquire().await.ok();
            call(&self.host, &plugin).await
        });
        // The slot is given back the first time the call waits (for its lane, a pool slot, or
        // after a slice of instructions): most calls end in their first poll, and giving the
        // slot back and taking it again costs about as much as a small call.
        let mut given_back = None;
        let run = std::future::poll_fn(|cx| {
            let polled = turn.as_mut().poll(cx);
            if polled.is_pending() && given_back.is_none() {
                given_back = Some(SendSlot::give_back());
            }
            polled
        })
        .await;
        if let Some(Some(slots)) = given_back {
            SendSlot::take_again(slots).await;
        }
        self.metrics
            .plugin_call(function, run.result.is_ok(), run.fuel_used, run.duration);
        Ok(run)
    }

    /// Runs `transform` of plugin `id` for `partner_id`.
    pub async fn transform(
        &self,
        partner_id: &str,
        id: &str,
        event: &Arc<Event>,
        mut request: Request,
        config: &str,
    ) -> Call<Request> {
        // The body goes to the plugin rather than a copy of it: what comes back is checked
        // against the given URL and headers only.
        let input = wit::Request {
            method: request.method.as_str().to_owned(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: std::mem::take(&mut request.body),
        };
        let event = plugin_event(event);
        let mut run = match self
            .run(PluginFunction::Transform, partner_id, id, async |host, plugin| {
                host.transform_async(plugin, event, input, config).await
            })
            .await
        {
            Ok(run) => run,
            Err(e) => return unavailable(id, e),
        };
        let checked = match &mut run.result {
            Ok(out) => checked_request(std::mem::take(out), Some(&request)).map_err(|e| match e {
                RequestError::Reserved(name) => {
                    format!("it set the header {name}, which Postwire writes itself; remove it")
                }
                other => format!("transform returned an unusable request: {other}"),
            }),
            Err(e) => Err(e.to_string()),
        };
        // The transformed request is the attempt's request (as sent, with its signature), so the
        // report does not repeat it.
        finish(id, &run, checked, None)
    }

    /// Runs `classify` of plugin `id` for `partner_id`.
    pub async fn classify(
        &self,
        partner_id: &str,
        id: &str,
        request: &Request,
        response: wit::Response,
        config: &str,
    ) -> Call<wit::Verdict> {
        let input = plugin_request(request);
        let run = match self
            .run(PluginFunction::Classify, partner_id, id, async |host, plugin| {
                host.classify_async(plugin, input, response, config).await
            })
            .await
        {
            Ok(run) => run,
            Err(e) => return unavailable(id, e),
        };
        let output = run.result.as_ref().ok().map(verdict_json);
        let result = run.result.clone().map_err(|e| e.to_string());
        finish(id, &run, result, output)
    }
}

/// A plugin that could not be run, and whether the host is to blame.
struct Unloaded {
    reason: String,
    host: bool,
}

fn unavailable<T>(id: &str, unloaded: Unloaded) -> Call<T> {
    Call {
        report: json!({"plugin": id, "error": unloaded.reason}),
        result: Err(unloaded.reason),
        host_failure: unloaded.host,
    }
}

fn finish<T, U>(id: &str, run: &Run<U>, result: Result<T, String>, output: Option<Value>) -> Call<T> {
    let host_failure = matches!(&run.result, Err(e) if e.is_host_failure());
    let mut report = report(run);
    report["plugin"] = json!(id);
    if let Some(output) = output {
        report["output"] = output;
    }
    if let Err(error) = &result {
        report["error"] = json!(error);
    }
    Call {
        result,
        host_failure,
        report,
    }
}

/// Fuel, memory, time and logs of a call, as shown to partners and plugin authors.
pub fn report<T>(run: &Run<T>) -> Value {
    json!({
        "fuel_used": run.fuel_used,
        "peak_memory": run.peak_memory,
        "duration_us": run.duration.as_micros() as u64,
        "logs": run.logs.iter().map(log_json).collect::<Vec<_>>(),
    })
}

fn log_json(line: &LogLine) -> Value {
    json!({"level": line.level, "message": line.message})
}

/// A verdict as JSON: `{"verdict": "retry", "after_secs": 30, "reason": "..."}`.
pub fn verdict_json(verdict: &wit::Verdict) -> Value {
    match verdict {
        wit::Verdict::Success => json!({"verdict": "success"}),
        wit::Verdict::Retry { after_secs, reason } => {
            json!({"verdict": "retry", "after_secs": after_secs, "reason": reason})
        }
        wit::Verdict::Fail(reason) => json!({"verdict": "fail", "reason": reason}),
    }
}

/// The event as plugins read it: its envelope and the data fields it carries, each formatted as
/// text when the plugin reads it, so a plugin that reads nothing costs nothing here. It shares
/// the postback's event rather than copying it.
#[derive(Debug, Clone)]
pub struct PluginEvent(Arc<Event>);

/// The event `event` as plugins read it.
pub fn plugin_event(event: &Arc<Event>) -> PluginEvent {
    PluginEvent(event.clone())
}

impl PluginEvent {
    fn text(value: &crate::event::Value) -> String {
        let mut text = String::new();
        value.write_text(&mut text);
        text
    }
}

impl EventSource for PluginEvent {
    fn id(&self) -> String {
        self.0.id.as_str().to_owned()
    }

    fn event_type(&self) -> String {
        self.0.event_type.as_str().to_owned()
    }

    fn partner_id(&self) -> String {
        self.0.partner_id.as_str().to_owned()
    }

    fn occurred_at(&self) -> String {
        format_timestamp(&self.0.occurred_at)
    }

    fn field(&self, name: &str) -> Option<String> {
        let field = crate::catalogue::lookup(name).filter(|&field| CATALOGUE[field].source == Source::Data)?;
        self.0.value(field).map(PluginEvent::text)
    }

    fn fields(&self) -> Vec<(String, String)> {
        CATALOGUE
            .iter()
            .filter(|p| p.source == Source::Data)
            .filter_map(|p| Some((p.name.to_owned(), PluginEvent::text(self.0.get(p.name)?))))
            .collect()
    }
}

/// The engine's request as plugins see it.
pub fn plugin_request(request: &Request) -> wit::Request {
    wit::Request {
        method: request.method.as_str().to_owned(),
        url: request.url.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    }
}

/// Why a plugin's request cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not GET, POST or PUT (the method as given, in upper case).
    #[error("method {0:?} is not GET, POST or PUT")]
    Method(String),
    /// Not an http(s) URL with a host.
    #[error("url {0:?} is not an http(s) URL with a host")]
    Url(String),
    /// A header name that is not a valid HTTP header name.
    #[error("header name {0:?} is not valid")]
    HeaderName(String),
    /// A header (named) whose value is not a valid single-line value.
    #[error("the value of header {0} is not a valid single-line header value")]
    HeaderValue(String),
    /// A header Postwire writes itself ([`crate::request::is_reserved`]).
    #[error("header {0} is set by Postwire itself")]
    Reserved(String),
    /// A GET request with a body.
    #[error("a GET request carries no body")]
    GetBody,
}

/// A plugin's request checked the way settings are: a known method, an http(s) URL with a
/// host, valid header names and single-line values, no body on GET, no header Postwire writes
/// itself.
pub fn engine_request(request: wit::Request) -> Result<Request, RequestError> {
    checked_request(request, None)
}

/// [`engine_request`] for what a transform returned for `given`: a URL or a header (name and
/// value, at the same place) it left as they were is what the engine would have sent without a
/// plugin, so only what the plugin changed is checked again. Most transforms rewrite the body
/// and keep the rest, and parsing the URL was a good part of what a call cost besides the call.
fn checked_request(request: wit::Request, given: Option<&Request>) -> Result<Request, RequestError> {
    let method = match request.method.as_str() {
        m if m.eq_ignore_ascii_case("GET") => Method::Get,
        m if m.eq_ignore_ascii_case("POST") => Method::Post,
        m if m.eq_ignore_ascii_case("PUT") => Method::Put,
        other => return Err(RequestError::Method(other.to_ascii_uppercase())),
    };
    if given.is_none_or(|given| given.url != request.url) {
        match url::Url::parse(&request.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            _ => return Err(RequestError::Url(request.url.clone())),
        }
    }
    for (at, (name, value)) in request.headers.iter().enumerate() {
        if given.is_some_and(|given| given.headers.get(at).is_some_and(|(n, v)| n == name && v == value)) {
            continue;
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(RequestError::HeaderName(name.clone()));
        }
        if http::HeaderValue::from_bytes(value.as_bytes()).is_err() || value.contains(['\r', '\n']) {
            return Err(RequestError::HeaderValue(name.clone()));
        }
        if is_reserved(name) {
            return Err(RequestError::Reserved(name.clone()));
        }
    }
    if method == Method::Get && !request.body.is_empty() {
        return Err(RequestError::GetBody);
    }
    Ok(Request {
        method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    })
}

/// `plugin_config` as the JSON text plugins receive (`{}` when unset).
pub fn config_text(config: Option<&Value>) -> String {
    config.map_or_else(|| "{}".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An event that counts the calls reading it at once: a call counts from its first read
    /// until its store, which holds the event, is dropped at the call's end.
    struct Counted {
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        read: std::sync::atomic::AtomicBool,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            if *self.read.get_mut() {
                self.running.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    impl EventSource for Counted {
        fn id(&self) -> String {
            "evt_1".into()
        }
        fn event_type(&self) -> String {
            "action_inquiry.created".into()
        }
        fn partner_id(&self) -> String {
            "ptn_1".into()
        }
        fn occurred_at(&self) -> String {
            "2026-11-20T14:03:00Z".into()
        }
        fn field(&self, _: &str) -> Option<String> {
            None
        }
        fn fields(&self) -> Vec<(String, String)> {
            if !self.read.swap(true, Ordering::SeqCst) {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
            }
            Vec::new()
        }
    }

    /// A partner's calls run in its lane, never more than `PER_PARTNER` at once, and give their
    /// thread back every slice of instructions: on a runtime of one thread, another partner's
    /// call goes through while the first partner's calls run (each reads the event until it runs
    /// out of fuel), which a call holding the thread to its end would not let happen.
    ///
    /// Fuel, not the clock, ends the busy calls: a deadline would make the outcome depend on how
    /// busy the machine is, while a slice of fuel is the same work however long it takes.
    #[tokio::test(flavor = "current_thread")]
    async fn a_partner_runs_at_most_per_partner_calls_at_once_and_others_go_beside() {
        let limits = postwire_plugins::Limits {
            fuel: 2_000_000,
            deadline: std::time::Duration::from_secs(600),
            ..postwire_plugins::Limits::default()
        };
        let plugins = Arc::new(Plugins::local(Host::new(limits, None).unwrap()));
        for name in ["reread", "trivial"] {
            let plugin = plugins.compile(postwire_test_plugins::bytes(name)).await.unwrap();
            plugins.remember(name, plugin);
        }
        let request = wit::Request {
            method: "POST".into(),
            url: "https://partner.example/pb".into(),
            headers: Vec::new(),
            body: "{}".into(),
        };
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let ended = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..6 {
            let (plugins, request, ended) = (plugins.clone(), request.clone(), ended.clone());
            let event = Counted {
                running: running.clone(),
                most: most.clone(),
                read: false.into(),
            };
            calls.push(tokio::spawn(async move {
                let run = plugins
                    .run(PluginFunction::Transform, "busy", "reread", async |host, plugin| {
                        host.transform_async(plugin, event, request, "1000000000").await
                    })
                    .await;
                ended.fetch_add(1, Ordering::SeqCst);
                run.ok().expect("the plugin is loaded")
            }));
        }
        while running.load(Ordering::SeqCst) < PER_PARTNER {
            tokio::task::yield_now().await;
        }
        // A task of its own, so that it takes its turns with the busy calls, one poll each.
        let beside = tokio::spawn({
            let (plugins, ended) = (plugins.clone(), ended.clone());
            async move {
                let event = Counted {
                    running: Arc::default(),
                    most: Arc::default(),
                    read: false.into(),
                };
                let run = plugins
                    .run(PluginFunction::Transform, "calm", "trivial", async |host, plugin| {
                        host.transform_async(plugin, event, request, "{}").await
                    })
                    .await
                    .ok()
                    .expect("the plugin is loaded");
                (run, ended.load(Ordering::SeqCst))
            }
        });
        let (beside, ended_before) = beside.await.unwrap();
        assert!(beside.result.is_ok(), "{:?}", beside.result);
        assert_eq!(
            ended_before, 0,
            "the other partner's call waited for the busy partner's"
        );
        for call in calls {
            let run = call.await.unwrap();
            assert!(
                matches!(run.result, Err(PluginError::OutOfFuel { .. })),
                "{:?}",
                run.result
            );
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            PER_PARTNER,
            "calls ran side by side, up to the limit"
        );
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    /// What a transform changed is checked as a plugin's request always is; what it left as
    /// given is not checked again, and comes through as it was.
    #[test]
    fn a_transformed_request_is_checked_where_the_plugin_changed_it() {
        let given = Request {
            method: Method::Post,
            url: "https://partner.example/pb?id=1".to_owned(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: "{}".to_owned(),
        };
        let out = |edit: fn(&mut wit::Request)| {
            let mut out = plugin_request(&given);
            edit(&mut out);
            checked_request(out, Some(&given))
        };
        assert_eq!(out(|_| {}), Ok(given.clone()));
        let body = out(|r| r.body = "{\"a\":1}".to_owned()).expect("a new body is fine");
        assert_eq!(
            (body.url.as_str(), body.body.as_str()),
            (given.url.as_str(), "{\"a\":1}")
        );
        assert_eq!(
            out(|r| r.url = "ftp://partner.example/".to_owned()),
            Err(RequestError::Url("ftp://partner.example/".to_owned()))
        );
        assert_eq!(
            out(|r| r.headers[0].1 = "a\r\nX-Injected: 1".to_owned()),
            Err(RequestError::HeaderValue("Content-Type".to_owned()))
        );
        assert_eq!(
            out(|r| r.headers.push(("Webhook-Signature".to_owned(), "v1,x".to_owned()))),
            Err(RequestError::Reserved("Webhook-Signature".to_owned()))
        );
        // A header removed moves the ones after it: each is checked where it now stands.
        assert_eq!(
            out(|r| r.headers = vec![("Bad Name".to_owned(), "x".to_owned())]),
            Err(RequestError::HeaderName("Bad Name".to_owned()))
        );
        assert_eq!(
            out(|r| r.method = "DELETE".to_owned()),
            Err(RequestError::Method("DELETE".to_owned()))
        );
    }

    /// A store in `dir` with one partner named `partner`.
    async fn store_with_partner(dir: &std::path::Path, partner: &str) -> (Store, crate::store::Partner) {
        let url = format!("sqlite://{}", dir.join("pw.db").display());
        let store = Store::open(&url, crate::store::Durability::Process).await.unwrap();
        let partner = store.create_partner(partner, str::to_owned).await.unwrap();
        (store, partner)
    }

    /// Stores `wasm` as the partner's transform plugin `name`, as an upload does once checked;
    /// its id.
    async fn store_plugin(store: &Store, partner: &crate::store::Partner, name: &str, wasm: &[u8]) -> String {
        let record = store
            .create_plugin(
                &partner.id,
                name,
                &Host::sha256(wasm),
                &["transform"],
                wasm,
                crate::store::now_ms(),
                crate::store::PluginQuota::default(),
            )
            .await
            .unwrap()
            .unwrap();
        record.id.to_string()
    }

    /// A stored plugin built against the contract before this one fails as the host, so its
    /// postbacks are retried (and the partner told what to rebuild with), not failed for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_build_of_the_old_contract_is_retried_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, partner) = store_with_partner(dir.path(), "upgraded").await;
        // Stored as an earlier version would have stored it; uploads refuse it now.
        let id = store_plugin(&store, &partner, "old", &postwire_test_plugins::bytes("contract-0-1")).await;
        let host = Host::new(postwire_plugins::Limits::default(), None).unwrap();
        let plugins = Plugins::new(host, store.clone());
        let event = Arc::new(Event::sample(
            crate::event::EventType::ActionInquiryCreated,
            partner.id.as_str(),
        ));
        let request = Request {
            method: Method::Post,
            url: "https://partner.example/pb".into(),
            headers: Vec::new(),
            body: "{}".into(),
        };
        let call = plugins.transform(partner.id.as_str(), &id, &event, request, "{}").await;
        assert!(call.host_failure, "{call:?}");
        let reason = call.result.unwrap_err();
        assert!(
            reason.contains("built against postwire:plugin@0.1.0") && reason.contains("postwire-sdk 0.2.0"),
            "{reason}"
        );
        store.close().await;
    }

    /// Plugins stay loaded up to the capacity, the least recently used dropped first; a
    /// dropped one loads again (from its checked artifact, without compiling) when called.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loaded_plugins_stay_within_the_capacity_dropping_the_least_recently_used() {
        use std::sync::atomic::Ordering::Relaxed;

        let dir = tempfile::tempdir().unwrap();
        let (store, partner) = store_with_partner(dir.path(), "loaded").await;
        let wasm = postwire_test_plugins::bytes("trivial");
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(store_plugin(&store, &partner, &format!("p{i}"), &wasm).await);
        }
        let host = Host::new(postwire_plugins::Limits::default(), Some(dir.path().join("artifacts"))).unwrap();
        let plugins = Plugins::new(host, store.clone()).with_loaded_capacity(2);
        let is_loaded = |id: &str| plugins.loaded.lock().unwrap().plugins.contains_key(id);
        for id in &ids {
            plugins.get(id).await.unwrap();
            assert!(plugins.loaded() <= 2, "{} loaded", plugins.loaded());
        }
        assert!(is_loaded(&ids[3]) && is_loaded(&ids[4]));
        // 3 is used again, so 4 is the least recently used when 0 comes back.
        plugins.get(&ids[3]).await.unwrap();
        plugins.get(&ids[0]).await.unwrap();
        assert_eq!(plugins.loaded(), 2);
        assert!(is_loaded(&ids[3]) && is_loaded(&ids[0]) && !is_loaded(&ids[4]));
        // One compile in all: every other load found the artifact.
        assert_eq!(plugins.host().cache_stats().compiles.load(Relaxed), 1);
        assert!(plugins.loading.lock().unwrap().is_empty(), "no loader is left behind");
        let dropped = plugins.get(&ids[4]).await.unwrap();
        let run = plugins.host().transform(
            &dropped,
            postwire_plugins::types::Event {
                id: "evt_1".into(),
                event_type: "action_inquiry.created".into(),
                partner_id: partner.id.to_string(),
                occurred_at: "2026-11-20T14:03:00Z".into(),
                data: vec![],
            },
            &postwire_plugins::types::Request {
                method: "POST".into(),
                url: "https://partner.example/pb".into(),
                headers: vec![],
                body: "{}".into(),
            },
            "{}",
        );
        assert!(run.result.is_ok(), "{:?}", run.result);
        store.close().await;
    }
}
