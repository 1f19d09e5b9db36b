//! Prometheus metrics, owned by one struct with its own registry and handed out in app state.
//!
//! Label values come only from the inventory (slot names, campaign ids) or from closed sets
//! (outcomes, reasons, route patterns): nothing a client sends can add a series.
//!
//! The size of a scrape does not depend on the number of campaigns: event counters are
//! labelled by slot (a page's few places, from the inventory), and per-campaign counts are
//! read from the stats API. Per-campaign series are available behind
//! [`EventLabels::SlotAndCampaign`] for deployments with few campaigns: one series per campaign
//! and slot that counted an event, per event kind, for the life of the process.

mod sharded;

pub use self::sharded::{shard, thread_index, Sharded, SHARDS};

use crate::tracking::EventKind;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The labels of the counted-event families (`regie_impressions_total`,
/// `regie_viewable_impressions_total`, `regie_clicks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventLabels {
    /// `{slot}`: as many series as the inventory has slots, whatever its campaigns.
    #[default]
    Slot,
    /// `{slot,campaign}`: one series per campaign and slot that counted an event, which on a
    /// large inventory is more than a Prometheus server should scrape from one target.
    SlotAndCampaign,
}

impl EventLabels {
    /// The labelling that the `metrics_campaign_labels` setting asks for.
    pub fn from_setting(campaign_labels: bool) -> Self {
        if campaign_labels {
            Self::SlotAndCampaign
        } else {
            Self::Slot
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Slot => &["slot"],
            Self::SlotAndCampaign => &["slot", "campaign"],
        }
    }
}

/// Every metric regie exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Decisions by slot and outcome (`filled`, `fallback`, `no_fill`), in a shard per
    /// thread.
    pub decisions: Sharded<IntCounterVec>,
    /// The labels of the three counted-event families below.
    event_labels: EventLabels,
    /// Impressions counted (after de-duplication), see [`Metrics::count_event`].
    impressions: IntCounterVec,
    /// Viewable impressions counted (after de-duplication).
    viewable: IntCounterVec,
    /// Clicks counted (after de-duplication).
    clicks: IntCounterVec,
    /// Tracking requests refused, by kind and reason.
    pub tracking_rejected: IntCounterVec,
    /// Invalid traffic counted apart, by kind and reason (closed sets, [`crate::ivt`]).
    pub invalid_traffic: IntCounterVec,
    /// Counter events waiting in memory for the store.
    pub pending_events: IntGauge,
    /// Counter events dropped because the pending buffer was full.
    pub dropped_events: IntCounter,
    /// Viewer histories the embedded store forgot to stay under `REGIE_MAX_VIEWER_HISTORIES`.
    pub viewer_histories_evicted: IntCounter,
    /// Round trips to the store, by operation, in a shard per thread (a frequency-capped
    /// decision makes one).
    pub store_roundtrips: Sharded<IntCounterVec>,
    /// Failed store operations, by operation, in a shard per thread.
    pub store_errors: Sharded<IntCounterVec>,
    /// 1 when the last store operation succeeded.
    pub store_up: IntGauge,
    /// The inventory version being served.
    pub inventory_version: IntGauge,
    /// Seconds since the served inventory was loaded.
    pub inventory_age_seconds: IntGauge,
    /// HTTP request latency by route pattern, method and status, in a shard per thread.
    pub http_duration: Sharded<HistogramVec>,
    /// Time to decide one request's slots, from parsed request to answer, with the frequency
    /// caps' store round trip when there is one; in a shard per thread.
    pub decision_duration: Sharded<Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric, with the process collector; counted events are
    /// labelled by slot only.
    pub fn new() -> Self {
        Self::with_event_labels(EventLabels::Slot)
    }

    /// As [`Metrics::new`], with counted events labelled as `event_labels` says.
    pub fn with_event_labels(event_labels: EventLabels) -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let sharded_counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = Sharded::new(|| {
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
            });
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let decisions = sharded_counter_vec(
            "regie_decisions_total",
            "Ad decisions by slot and outcome.",
            &["slot", "outcome"],
        );
        let labels = event_labels.names();
        let by = format!("by {}", labels.join(" and "));
        let impressions = counter_vec(
            "regie_impressions_total",
            &format!("Impressions counted, {by}."),
            labels,
        );
        let viewable = counter_vec(
            "regie_viewable_impressions_total",
            &format!("Viewable impressions counted, {by}."),
            labels,
        );
        let clicks = counter_vec(
            "regie_clicks_total",
            &format!("Clicks counted, {by}."),
            labels,
        );
        let tracking_rejected = counter_vec(
            "regie_tracking_rejected_total",
            "Tracking requests that counted nothing, by kind and reason.",
            &["kind", "reason"],
        );
        let invalid_traffic = counter_vec(
            "regie_invalid_traffic_total",
            "Invalid decisions and events, counted apart, by kind and reason.",
            &["kind", "reason"],
        );
        // Every possible series from the start, so a rate over them never starts missing.
        for (kind, reason) in crate::ivt::metric_series() {
            invalid_traffic.with_label_values(&[kind, reason.as_str()]);
        }
        let pending_events = gauge(
            "regie_events_pending",
            "Counter events waiting in memory to be written to the store.",
        );
        let dropped_events = counter(
            "regie_events_dropped_total",
            "Counter events dropped because the pending buffer was full.",
        );
        let viewer_histories_evicted = counter(
            "regie_viewer_histories_evicted_total",
            "Viewer histories the embedded store forgot, least recently seen first, to stay \
             under REGIE_MAX_VIEWER_HISTORIES.",
        );
        let store_roundtrips = sharded_counter_vec(
            "regie_store_roundtrips_total",
            "Round trips to the store, by operation.",
            &["op"],
        );
        let store_errors = sharded_counter_vec(
            "regie_store_errors_total",
            "Failed store operations, by operation.",
            &["op"],
        );
        let store_up = gauge(
            "regie_store_up",
            "1 when the last store operation succeeded, else 0.",
        );
        let inventory_version = gauge(
            "regie_inventory_version",
            "The inventory version being served.",
        );
        let inventory_age_seconds = gauge(
            "regie_inventory_age_seconds",
            "Seconds since the served inventory version was loaded.",
        );
        // Buckets from 0.5 ms to 2.5 s: a decision is sub-millisecond, a request that waits on
        // the store can take the response timeout (1 s by default).
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let http_duration = Sharded::new(|| {
            HistogramVec::new(
                HistogramOpts::new(
                    "regie_http_request_duration_seconds",
                    "HTTP request latency by route pattern, method and status.",
                )
                .buckets(latency_buckets.clone()),
                &["route", "method", "status"],
            )
            .expect("valid metric")
        });
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        // Decisions are in-memory work and at most one store round trip: 10 µs to 10 ms.
        let decision_duration = Sharded::new(|| {
            Histogram::with_opts(
                HistogramOpts::new(
                    "regie_decision_duration_seconds",
                    "Time to decide the slots of one request.",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
                ]),
            )
            .expect("valid metric")
        });
        registry
            .register(Box::new(decision_duration.clone()))
            .expect("unique metric");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        Self {
            registry,
            decisions,
            event_labels,
            impressions,
            viewable,
            clicks,
            tracking_rejected,
            invalid_traffic,
            pending_events,
            dropped_events,
            viewer_histories_evicted,
            store_roundtrips,
            store_errors,
            store_up,
            inventory_version,
            inventory_age_seconds,
            http_duration,
            decision_duration,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// Counts one event that the store counted (after de-duplication).
    pub fn count_event(&self, kind: EventKind, slot: &str, campaign: &str) {
        let counter = match kind {
            EventKind::Impression => &self.impressions,
            EventKind::Viewable => &self.viewable,
            EventKind::Click => &self.clicks,
        };
        match self.event_labels {
            EventLabels::Slot => counter.with_label_values(&[slot]),
            EventLabels::SlotAndCampaign => counter.with_label_values(&[slot, campaign]),
        }
        .inc();
    }

    /// Counts one invalid decision request or event; `kind` is one of
    /// [`crate::ivt::METRIC_KINDS`].
    pub fn invalid(&self, kind: &'static str, reason: crate::ivt::Reason) {
        self.invalid_traffic
            .with_label_values(&[kind, reason.as_str()])
            .inc();
    }

    /// Records one store round trip's outcome.
    pub fn store_call(&self, op: &'static str, ok: bool) {
        self.store_roundtrips.local().with_label_values(&[op]).inc();
        if !ok {
            self.store_errors.local().with_label_values(&[op]).inc();
        }
        // Written only when it changes: a write on every call would move its cache line
        // between the workers' cores, as the shared counters did.
        let up = i64::from(ok);
        if self.store_up.get() != up {
            self.store_up.set(up);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of series of a family in the exposition.
    fn series_of(metrics: &Metrics, family: &str) -> usize {
        let prefix = format!("{family}{{");
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    fn count_for_campaigns(metrics: &Metrics, campaigns: usize) {
        for i in 0..campaigns {
            let campaign = format!("c{i}");
            for kind in EventKind::ALL {
                metrics.count_event(kind, "banner", &campaign);
            }
        }
    }

    #[test]
    fn by_default_events_of_many_campaigns_make_one_series_per_slot() {
        let metrics = Metrics::new();

        count_for_campaigns(&metrics, 1_000);

        for family in [
            "regie_impressions_total",
            "regie_viewable_impressions_total",
            "regie_clicks_total",
        ] {
            assert_eq!(series_of(&metrics, family), 1, "{family}");
        }
        assert!(metrics
            .render()
            .contains("regie_clicks_total{slot=\"banner\"} 1000"));
    }

    #[test]
    fn with_campaign_labels_each_campaign_has_its_series() {
        let metrics = Metrics::with_event_labels(EventLabels::SlotAndCampaign);

        count_for_campaigns(&metrics, 1_000);

        assert_eq!(series_of(&metrics, "regie_impressions_total"), 1_000);
        assert!(metrics
            .render()
            .contains("regie_impressions_total{campaign=\"c7\",slot=\"banner\"} 1"));
    }
}
