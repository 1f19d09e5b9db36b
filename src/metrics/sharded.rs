//! Metrics that every request updates, kept in one shard per thread and added up when scraped.
//!
//! A Prometheus counter or histogram is a few atomics that every update writes: shared by the
//! workers, their cache lines pass from one core to the other on every request (a histogram's
//! observation writes three of them, and finding a labelled child takes its vector's lock).
//! Each thread updates its own shard instead, and a scrape merges the shards' samples: the same
//! series, the same values, as one metric would give.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily};

/// Shards of each metric: threads beyond as many share them, two to a shard and so on.
pub const SHARDS: usize = 8;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The calling thread's number, in the order threads first asked.
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The calling thread's number, the same on every call: state split per thread (these
/// metrics, the counters' pending counts) takes it modulo its number of shards.
pub fn thread_index() -> usize {
    THREAD.with(|thread| *thread)
}

/// The shard of the calling thread, in `0..SHARDS`.
pub fn shard() -> usize {
    thread_index() % SHARDS
}

/// One metric (a counter, a histogram, or a vector of either) in [`SHARDS`] shards, registered
/// as one: [`Sharded::local`] is the calling thread's.
#[derive(Clone)]
pub struct Sharded<M> {
    shards: Arc<[M]>,
}

impl<M: Collector> Sharded<M> {
    /// The metric `make` builds, once per shard (each with the same name, help and labels).
    pub fn new(make: impl Fn() -> M) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| make()).collect(),
        }
    }

    /// The calling thread's shard.
    pub fn local(&self) -> &M {
        &self.shards[shard()]
    }

    /// Every shard.
    pub fn shards(&self) -> &[M] {
        &self.shards
    }
}

impl<M: Collector> Collector for Sharded<M> {
    fn desc(&self) -> Vec<&Desc> {
        self.shards[0].desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        merge(self.shards.iter().map(Collector::collect))
    }
}

/// The label values of a series, which identify it within its family.
fn series_key(metric: &Metric) -> Vec<(String, String)> {
    metric
        .get_label()
        .iter()
        .map(|l: &LabelPair| (l.name().to_owned(), l.value().to_owned()))
        .collect()
}

/// The families of every shard as one: each series' counter values, histogram counts, sums
/// and buckets added up, series sorted by their labels.
fn merge(shards: impl Iterator<Item = Vec<MetricFamily>>) -> Vec<MetricFamily> {
    let mut merged: Vec<MetricFamily> = Vec::new();
    let mut index: Vec<HashMap<Vec<(String, String)>, usize>> = Vec::new();
    for families in shards {
        for mut family in families {
            let at = match merged.iter().position(|f| f.name() == family.name()) {
                Some(at) => at,
                None => {
                    let mut empty = family.clone();
                    empty.mut_metric().clear();
                    merged.push(empty);
                    index.push(HashMap::new());
                    merged.len() - 1
                }
            };
            for metric in family.take_metric() {
                let key = series_key(&metric);
                match index[at].get(&key) {
                    Some(&i) => add(&mut merged[at].mut_metric()[i], &metric),
                    None => {
                        index[at].insert(key, merged[at].get_metric().len());
                        merged[at].mut_metric().push(metric);
                    }
                }
            }
        }
    }
    for family in &mut merged {
        family.mut_metric().sort_by_cached_key(series_key);
    }
    merged
}

/// Adds the samples of `from` into `into`, a series of the same family and labels.
fn add(into: &mut Metric, from: &Metric) {
    if let (Some(into), Some(from)) = (into.counter.as_mut(), from.counter.as_ref()) {
        into.set_value(into.value() + from.value());
    }
    if let (Some(into), Some(from)) = (into.histogram.as_mut(), from.histogram.as_ref()) {
        into.set_sample_count(into.sample_count() + from.sample_count());
        into.set_sample_sum(into.sample_sum() + from.sample_sum());
        for (into, from) in into.bucket.iter_mut().zip(&from.bucket) {
            into.set_cumulative_count(into.cumulative_count() + from.cumulative_count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{
        Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
    };

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_scrape_gives_what_one_metric_would_have_whichever_threads_updated_it() {
        let opts = || HistogramOpts::new("t_seconds", "Time.").buckets(vec![0.1, 1.0]);
        let single_opts = || HistogramOpts::new("u_seconds", "Time.").buckets(vec![0.1, 1.0]);
        let sharded = Sharded::new(|| HistogramVec::new(opts(), &["route"]).unwrap());
        let counters =
            Sharded::new(|| IntCounterVec::new(Opts::new("t_total", "Count."), &["slot"]).unwrap());
        let single =
            Sharded::new(|| Histogram::with_opts(single_opts().const_label("k", "v")).unwrap());
        let sharded_registry = Registry::new();
        sharded_registry
            .register(Box::new(sharded.clone()))
            .unwrap();
        sharded_registry
            .register(Box::new(counters.clone()))
            .unwrap();
        sharded_registry.register(Box::new(single.clone())).unwrap();
        let plain = HistogramVec::new(opts(), &["route"]).unwrap();
        let plain_counters = IntCounterVec::new(Opts::new("t_total", "Count."), &["slot"]).unwrap();
        let plain_single = Histogram::with_opts(single_opts().const_label("k", "v")).unwrap();
        let plain_registry = Registry::new();
        plain_registry.register(Box::new(plain.clone())).unwrap();
        plain_registry
            .register(Box::new(plain_counters.clone()))
            .unwrap();
        plain_registry
            .register(Box::new(plain_single.clone()))
            .unwrap();

        // More threads than shards, so that some share one.
        std::thread::scope(|scope| {
            for t in 0..(SHARDS + 3) {
                let (sharded, counters, single) = (&sharded, &counters, &single);
                let (plain, plain_counters, plain_single) =
                    (&plain, &plain_counters, &plain_single);
                scope.spawn(move || {
                    for i in 0..(10 + t) {
                        let route = ["a", "b", "c"][(t + i) % 3];
                        // Halves: their sums are exact in any order.
                        let seconds = (i % 4) as f64 * 0.5;
                        sharded.local().with_label_values(&[route]).observe(seconds);
                        plain.with_label_values(&[route]).observe(seconds);
                        let slot = ["x", "y"][i % 2];
                        counters.local().with_label_values(&[slot]).inc();
                        plain_counters.with_label_values(&[slot]).inc();
                        single.local().observe(seconds);
                        plain_single.observe(seconds);
                    }
                });
            }
        });

        let merged = text(&sharded_registry);
        assert!(merged.contains("t_seconds_count{route=\"a\"}"), "{merged}");
        assert_eq!(merged, text(&plain_registry));
    }

    #[test]
    fn a_thread_keeps_its_shard() {
        let first = shard();
        assert!(first < SHARDS);
        assert_eq!(shard(), first);
    }
}
