//! Prometheus metrics: what the worker, the plugins and the store report, read at `GET /metrics`
//! in the Prometheus text format (version 0.0.4).
//!
//! Every series is created once, when [`Metrics`] is; the pipeline then only adds to atomics:
//! no lock, no allocation and no label lookup per postback. The histograms are this module's
//! own ([`Histogram`]: a bucket per atomic), encoded through `prometheus-client`'s encoder,
//! because the crate's histogram takes a lock per observation. Gauges that describe the store
//! (the due deliveries and the oldest one's age) are set by the scrape itself, from one indexed
//! query, so nothing maintains them between scrapes.
//!
//! `docs/operations.md` lists every metric with its labels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The `Content-Type` of the answer of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One label, `name="value"`, both known at compile time.
type Label = [(&'static str, &'static str); 1];
/// Two labels.
type Labels2 = [(&'static str, &'static str); 2];

/// Upper bounds of the attempt latency histogram, in seconds: from a receiver on the same
/// network to the default 15 s timeout.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];
/// Upper bounds of plugin call times, in seconds: the default deadline is 100 ms.
const PLUGIN_TIME_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upper bounds of the fuel a plugin call uses: the default allowance is 50 million.
const FUEL_BOUNDS: &[f64] = &[1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1e7, 2.5e7, 5e7, 1e8, 1e9];
/// Upper bounds of the recorder's commit times, in seconds.
const COMMIT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What became of a delivery after one attempt (or an attempt that could not be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered,
    /// It is tried again later.
    Retry,
    /// It failed for good.
    Failed,
    /// The receiver asked for its endpoint to be disabled.
    Disabled,
}

impl Outcome {
    const ALL: [Outcome; 4] = [Outcome::Delivered, Outcome::Retry, Outcome::Failed, Outcome::Disabled];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
            Outcome::Disabled => "disabled",
        }
    }
}

/// A plugin function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginFunction {
    /// `transform`.
    Transform,
    /// `classify`.
    Classify,
}

impl PluginFunction {
    fn as_str(self) -> &'static str {
        match self {
            PluginFunction::Transform => "transform",
            PluginFunction::Classify => "classify",
        }
    }
}

/// A histogram with fixed buckets, each an atomic counter, and its sum kept as the bits of an
/// `f64`: observing is a few relaxed atomic operations. Clones share the same counts.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One more than `bounds`: the last counts what is above every bound (`+Inf`).
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Counts `value` in the first bucket whose upper bound is at least `value`.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < value);
        inner.counts[bucket].fetch_add(1, Relaxed);
        let _ = inner
            .sum
            .fetch_update(Relaxed, Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.inner.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        // The count is the buckets' total, so that `+Inf` and `_count` always agree.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(inner.sum.load(Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A plugin function's series.
#[derive(Debug, Clone)]
struct PluginSeries {
    ok: Counter,
    error: Counter,
    fuel: Histogram,
    time: Histogram,
}

/// Every metric of one engine. The API shares it with the worker and the plugins.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    deliveries: [Counter; 4],
    attempts: [Counter; 4],
    attempt_duration: Histogram,
    rate_waits: Counter,
    rate_deferrals: Counter,
    transform: PluginSeries,
    classify: PluginSeries,
    /// Plugin loads by where their code came from: `cached`, `compiled`, `rejected`.
    artifacts: [Counter; 3],
    commit: Histogram,
    due_in_store: Gauge,
    due_in_memory: Gauge,
    oldest_due_age: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Makes the histograms of a family, all with the same bounds.
#[derive(Debug, Clone, Copy)]
struct Bounds(&'static [f64]);

impl MetricConstructor<Histogram> for Bounds {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0)
    }
}

/// A family whose every series is a [`Histogram`] with `bounds`.
fn histograms(bounds: &'static [f64]) -> Family<Label, Histogram, Bounds> {
    Family::new_with_constructor(Bounds(bounds))
}

impl Metrics {
    /// Every series, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postwire");

        let deliveries = Family::<Label, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries by what the attempt made of them (delivered, retry, failed, disabled), counted when committed",
            deliveries.clone(),
        );
        let attempts = Family::<Label, Counter>::default();
        registry.register(
            "attempts",
            "Attempts by verdict (success, retry, fail, disable), including attempts that could not send",
            attempts.clone(),
        );
        let attempt_duration = Histogram::new(LATENCY_BOUNDS);
        registry.register(
            "attempt_duration_seconds",
            "Time of one exchange with a receiver, from sending the request to its answer",
            attempt_duration.clone(),
        );
        let rate_limit = Family::<Label, Counter>::default();
        registry.register(
            "rate_limit_waits",
            "Postbacks held by a partner's max_requests_per_sec: waited in memory, or rescheduled in the store",
            rate_limit.clone(),
        );
        let plugin_calls = Family::<Labels2, Counter>::default();
        registry.register(
            "plugin_calls",
            "Plugin calls by function (transform, classify) and result (ok, error)",
            plugin_calls.clone(),
        );
        let plugin_fuel = histograms(FUEL_BOUNDS);
        registry.register(
            "plugin_fuel",
            "Fuel (roughly, instructions) one plugin call used, by function",
            plugin_fuel.clone(),
        );
        let plugin_time = histograms(PLUGIN_TIME_BOUNDS);
        registry.register(
            "plugin_call_duration_seconds",
            "Wall-clock time of one plugin call, instantiation included, by function",
            plugin_time.clone(),
        );
        let plugin_artifacts = Family::<Label, Counter>::default();
        registry.register(
            "plugin_artifacts",
            "Plugin loads by where their compiled code came from: cached (the artifact, checked), compiled (no artifact), rejected (an artifact that failed its check, compiled again)",
            plugin_artifacts.clone(),
        );
        let commit = Histogram::new(COMMIT_BOUNDS);
        registry.register(
            "store_commit_duration_seconds",
            "Time the store took to commit one batch of attempts and delivery states",
            commit.clone(),
        );
        let queue = Family::<Label, Gauge>::default();
        registry.register(
            "queue_depth",
            "Deliveries due now: waiting in the store for a claim, or claimed and waiting in memory for a send slot",
            queue.clone(),
        );
        let oldest_due_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_due_delivery_age_seconds",
            "How long the longest-waiting due delivery in the store has been due (0 when none is)",
            oldest_due_age.clone(),
        );

        let outcome = |family: &Family<Label, Counter>, name: &'static str, value: &'static str| {
            family.get_or_create_owned(&[(name, value)])
        };
        let plugin = |function: PluginFunction| {
            let f = function.as_str();
            PluginSeries {
                ok: plugin_calls.get_or_create_owned(&[("function", f), ("result", "ok")]),
                error: plugin_calls.get_or_create_owned(&[("function", f), ("result", "error")]),
                fuel: plugin_fuel.get_or_create_owned(&[("function", f)]),
                time: plugin_time.get_or_create_owned(&[("function", f)]),
            }
        };
        Metrics {
            deliveries: Outcome::ALL.map(|o| outcome(&deliveries, "outcome", o.as_str())),
            attempts: ["success", "retry", "fail", "disable"].map(|v| outcome(&attempts, "verdict", v)),
            attempt_duration,
            rate_waits: outcome(&rate_limit, "where", "memory"),
            rate_deferrals: outcome(&rate_limit, "where", "store"),
            transform: plugin(PluginFunction::Transform),
            classify: plugin(PluginFunction::Classify),
            artifacts: ["cached", "compiled", "rejected"].map(|v| outcome(&plugin_artifacts, "result", v)),
            commit,
            due_in_store: queue.get_or_create_owned(&[("place", "store")]),
            due_in_memory: queue.get_or_create_owned(&[("place", "memory")]),
            oldest_due_age,
            registry,
        }
    }

    /// A delivery's outcome, committed.
    pub fn delivery(&self, outcome: Outcome) {
        self.deliveries[outcome as usize].inc();
    }

    /// An attempt with its verdict (`success`, `retry`, `fail` or `disable`, by index in that
    /// order), and the exchange's time when something was sent.
    pub fn attempt(&self, verdict: usize, sent: Option<Duration>) {
        self.attempts[verdict.min(3)].inc();
        if let Some(duration) = sent {
            self.attempt_duration.observe_duration(duration);
        }
    }

    /// A postback that waited in memory for its endpoint's rate-limit slot.
    pub fn rate_limit_wait(&self) {
        self.rate_waits.inc();
    }

    /// A postback sent back to the store, due at its endpoint's later rate-limit slot.
    pub fn rate_limit_deferral(&self) {
        self.rate_deferrals.inc();
    }

    /// One plugin call, with the fuel and time it took.
    pub fn plugin_call(&self, function: PluginFunction, ok: bool, fuel: u64, time: Duration) {
        let series = match function {
            PluginFunction::Transform => &self.transform,
            PluginFunction::Classify => &self.classify,
        };
        if ok { &series.ok } else { &series.error }.inc();
        series.fuel.observe(fuel as f64);
        series.time.observe_duration(time);
    }

    /// One plugin loaded, by where its compiled code came from.
    pub fn plugin_artifact(&self, origin: &postwire_plugins::Origin) {
        let index = match origin {
            postwire_plugins::Origin::Cached => 0,
            postwire_plugins::Origin::Compiled => 1,
            postwire_plugins::Origin::Recompiled(_) => 2,
        };
        self.artifacts[index].inc();
    }

    /// One committed batch of the recorder.
    pub fn store_commit(&self, time: Duration) {
        self.commit.observe_duration(time);
    }

    /// The metrics as Prometheus text, with the queue as it is now: `in_store` due deliveries
    /// in the store, the oldest due since `oldest_due_age`, and `in_memory` in the memory queue.
    pub fn encode(&self, in_store: i64, oldest_due_age: Duration, in_memory: i64) -> String {
        self.due_in_store.set(in_store);
        self.due_in_memory.set(in_memory);
        self.oldest_due_age.set(oldest_due_age.as_secs_f64());
        let mut text = String::with_capacity(8 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.0, 1.5, 3.0] {
            histogram.observe(value);
        }
        assert_eq!(histogram.count(), 4);
        let counts: Vec<u64> = histogram.inner.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(f64::from_bits(histogram.inner.sum.load(Relaxed)), 6.0);
    }

    #[test]
    fn the_text_names_every_series_with_its_labels() {
        let metrics = Metrics::new();
        metrics.delivery(Outcome::Delivered);
        metrics.delivery(Outcome::Delivered);
        metrics.attempt(0, Some(Duration::from_millis(3)));
        metrics.plugin_call(PluginFunction::Classify, false, 1234, Duration::from_micros(50));
        let text = metrics.encode(7, Duration::from_secs(2), 3);
        for line in [
            "postwire_deliveries_total{outcome=\"delivered\"} 2",
            "postwire_deliveries_total{outcome=\"failed\"} 0",
            "postwire_attempts_total{verdict=\"success\"} 1",
            "postwire_attempt_duration_seconds_bucket{le=\"0.005\"} 1",
            "postwire_attempt_duration_seconds_count 1",
            "postwire_plugin_calls_total{function=\"classify\",result=\"error\"} 1",
            "postwire_plugin_fuel_count{function=\"classify\"} 1",
            "postwire_queue_depth{place=\"store\"} 7",
            "postwire_queue_depth{place=\"memory\"} 3",
            "postwire_oldest_due_delivery_age_seconds 2.0",
            "postwire_plugin_artifacts_total{result=\"rejected\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} is missing from:\n{text}");
        }
    }
}
