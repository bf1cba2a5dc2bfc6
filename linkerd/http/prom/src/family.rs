use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{
        MetricType, TypedMetric,
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};
use std::{fmt, hash::Hash};

/// Latency buckets in seconds for request and response durations: 1 ms to 10 s.
pub const LATENCY_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Coarse latency buckets in seconds, as Linkerd's outbound route request-duration histogram
/// uses: 50 ms, 500 ms, 1 s and 10 s.
pub const COARSE_SECONDS: &[f64] = &[0.05, 0.5, 1.0, 10.0];

/// A metric wrapper that the registry never omits.
///
/// prometheus-client 0.26 skips a metric whose [`EncodeMetric::is_empty`] is true, so a
/// [`Family`] without samples would have no `# HELP`/`# TYPE` lines until its first request.
/// Registering `NeverEmpty(family)` keeps the description in every scrape; the samples are the
/// family's own.
#[derive(Clone, Default)]
pub struct NeverEmpty<M>(pub M);

/// Builds histograms with fixed bucket bounds for a [`Family`]; cheap to copy.
#[derive(Copy, Clone, Debug)]
pub struct Buckets(pub &'static [f64]);

/// A counter family (registered never-empty).
pub type CounterFamily<L> = Family<L, Counter>;
/// A gauge family (registered never-empty).
pub type GaugeFamily<L> = Family<L, Gauge>;
/// A histogram family with fixed buckets (registered never-empty).
pub type HistogramFamily<L> = Family<L, Histogram, Buckets>;

// === impl NeverEmpty ===

impl<M> NeverEmpty<M> {
    /// The wrapped metric.
    pub fn get_ref(&self) -> &M {
        &self.0
    }
}

impl<M> std::ops::Deref for NeverEmpty<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.0
    }
}

impl<M: fmt::Debug> fmt::Debug for NeverEmpty<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NeverEmpty").field(&self.0).finish()
    }
}

impl<M: EncodeMetric> EncodeMetric for NeverEmpty<M> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl<M: TypedMetric> TypedMetric for NeverEmpty<M> {
    const TYPE: MetricType = M::TYPE;
}

// === impl Buckets ===

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

// === registration helpers ===

/// Registers a counter family named `name` (without `_total`: the encoder adds it; a trailing
/// `_total` is removed rather than left to prometheus-client's debug assertion) and returns a
/// handle sharing its samples.
///
/// Pass `registry.sub_registry_with_prefix("outbound_http_route")` to register under a
/// prefix. The family is wrapped in [`NeverEmpty`], so it is described before any sample.
pub fn register_counter_family<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> CounterFamily<L>
where
    L: EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static,
{
    let family = Family::default();
    let name = name.strip_suffix("_total").unwrap_or(name);
    register_metric(registry, name, help, family.clone());
    family
}

/// Registers a gauge family; see [`register_counter_family`].
pub fn register_gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> GaugeFamily<L>
where
    L: EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static,
{
    let family = Family::default();
    register_metric(registry, name, help, family.clone());
    family
}

/// Registers a histogram family with `buckets` (seconds, for `_seconds` names: no separate
/// unit is registered, so the name is used as given); see [`register_counter_family`].
pub fn register_histogram_family<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    buckets: &'static [f64],
) -> HistogramFamily<L>
where
    L: EncodeLabelSet + Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static,
{
    let family = Family::new_with_constructor(Buckets(buckets));
    register_metric(registry, name, help, family.clone());
    family
}

/// Registers a counter without labels (`_total` handled as in [`register_counter_family`]).
pub fn register_counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    let name = name.strip_suffix("_total").unwrap_or(name);
    registry.register(name, help, counter.clone());
    counter
}

/// Registers a gauge without labels.
pub fn register_gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn register_metric<M>(registry: &mut Registry, name: &str, help: &str, metric: M)
where
    M: EncodeMetric + fmt::Debug + Send + Sync + 'static,
    NeverEmpty<M>: Metric,
{
    registry.register(name, help, NeverEmpty(metric));
}

/// A counter whose value lives in a shared `Arc<AtomicU64>` that another crate increments
/// without depending on prometheus-client (the access log's dropped-records counter).
#[derive(Clone, Debug, Default)]
pub struct SharedCounter(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl SharedCounter {
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shared cell, to hand to the code that increments it.
    pub fn cell(&self) -> &std::sync::Arc<std::sync::atomic::AtomicU64> {
        &self.0
    }
}

impl EncodeMetric for SharedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Registers a [`SharedCounter`] (`_total` handled as in [`register_counter_family`]).
pub fn register_shared_counter(registry: &mut Registry, name: &str, help: &str) -> SharedCounter {
    let counter = SharedCounter::default();
    let name = name.strip_suffix("_total").unwrap_or(name);
    registry.register(name, help, counter.clone());
    counter
}
