//! Every metric the hub exports, in one place (`GET /metrics`, Prometheus/OpenMetrics text).
//! Names follow Prometheus conventions: `iochub_` prefix, `_total` counters, `_seconds` units.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ingest::RunReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub pipeline: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasetLabels {
    pub dataset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnitLabels {
    pub unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabels {
    pub subscription: String,
    pub target: String,
}

fn feed_labels(subscription: &str, target: &str) -> FeedLabels {
    FeedLabels {
        subscription: subscription.to_string(),
        target: target.to_string(),
    }
}

type DurationFamily = Family<PipelineLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.05 s to about 14 minutes.
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    runs_skipped: Family<PipelineLabels, Counter>,
    records_accepted: Family<PipelineLabels, Counter>,
    records_rejected: Family<PipelineLabels, Counter>,
    run_duration: DurationFamily,
    freshness: Family<DatasetLabels, Gauge<f64, AtomicU64>>,
    stale: Family<DatasetLabels, Gauge>,
    http_requests: Family<HttpLabels, Counter>,
    share_requests_overdue: Gauge,
    overdue: Family<UnitLabels, Gauge>,
    feed_position: Family<FeedLabels, Gauge>,
    feed_pending: Family<FeedLabels, Gauge>,
    feed_parked: Family<FeedLabels, Gauge>,
    feed_lag: Family<FeedLabels, Gauge<f64, AtomicU64>>,
    feed_delivered: Family<FeedLabels, Counter>,
    feed_failures: Family<FeedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("iochub");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Pipeline runs by outcome", runs.clone());
        let runs_skipped = Family::<PipelineLabels, Counter>::default();
        registry.register(
            "runs_skipped",
            "Scheduled fires skipped because the pipeline was still running",
            runs_skipped.clone(),
        );
        let records_accepted = Family::<PipelineLabels, Counter>::default();
        registry.register(
            "records_accepted",
            "Records stored in the dataset",
            records_accepted.clone(),
        );
        let records_rejected = Family::<PipelineLabels, Counter>::default();
        registry.register(
            "records_rejected",
            "Records sent to quarantine",
            records_rejected.clone(),
        );
        let run_duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "run_duration_seconds",
            "Duration of pipeline runs",
            run_duration.clone(),
        );
        let freshness = Family::<DatasetLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "dataset_freshness_seconds",
            "Seconds since the dataset's last successful ingest",
            freshness.clone(),
        );
        let stale = Family::<DatasetLabels, Gauge>::default();
        registry.register(
            "dataset_stale",
            "1 when the dataset is older than its max_staleness",
            stale.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let share_requests_overdue = Gauge::default();
        registry.register(
            "share_requests_overdue",
            "Special-share requests still undecided after their decision deadline",
            share_requests_overdue.clone(),
        );
        let overdue = Family::<UnitLabels, Gauge>::default();
        registry.register(
            "overdue",
            "Open items past their deadline (citizen reports), per handling unit",
            overdue.clone(),
        );
        let feed_position = Family::<FeedLabels, Gauge>::default();
        registry.register(
            "feed_position",
            "Last change sequence acknowledged by the subscriber",
            feed_position.clone(),
        );
        let feed_pending = Family::<FeedLabels, Gauge>::default();
        registry.register(
            "feed_pending",
            "Changes committed but not yet acknowledged by the subscriber",
            feed_pending.clone(),
        );
        let feed_parked = Family::<FeedLabels, Gauge>::default();
        registry.register(
            "feed_parked",
            "1 when delivery is parked until an admin resumes it",
            feed_parked.clone(),
        );
        let feed_lag = Family::<FeedLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "feed_lag_seconds",
            "Age of the oldest change not yet acknowledged (as of the last status read)",
            feed_lag.clone(),
        );
        let feed_delivered = Family::<FeedLabels, Counter>::default();
        registry.register(
            "feed_events_delivered",
            "Events acknowledged by subscribers",
            feed_delivered.clone(),
        );
        let feed_failures = Family::<FeedLabels, Counter>::default();
        registry.register(
            "feed_delivery_failures",
            "Failed attempts to deliver a feed batch",
            feed_failures.clone(),
        );
        Metrics {
            feed_position,
            feed_pending,
            feed_parked,
            feed_lag,
            feed_delivered,
            feed_failures,
            share_requests_overdue,
            overdue,
            registry,
            runs,
            runs_skipped,
            records_accepted,
            records_rejected,
            run_duration,
            freshness,
            stale,
            http_requests,
        }
    }

    pub fn observe_run(&self, run: &RunReport) {
        let pipeline = PipelineLabels {
            pipeline: run.pipeline.clone(),
        };
        self.runs
            .get_or_create(&RunLabels {
                pipeline: run.pipeline.clone(),
                status: run.status.as_str().to_string(),
            })
            .inc();
        self.records_accepted
            .get_or_create(&pipeline)
            .inc_by(run.accepted as u64);
        self.records_rejected
            .get_or_create(&pipeline)
            .inc_by(run.rejected as u64);
        self.run_duration
            .get_or_create(&pipeline)
            .observe(run.duration_seconds());
    }

    pub fn observe_skip(&self, pipeline: &str) {
        self.runs_skipped
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_string(),
            })
            .inc();
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
    }

    pub fn set_freshness(&self, dataset: &str, seconds: Option<f64>, stale: bool) {
        let labels = DatasetLabels {
            dataset: dataset.to_string(),
        };
        if let Some(s) = seconds {
            self.freshness.get_or_create(&labels).set(s);
        }
        self.stale.get_or_create(&labels).set(i64::from(stale));
    }

    pub fn set_feed_position(&self, subscription: &str, target: &str, position: i64, parked: bool) {
        let labels = feed_labels(subscription, target);
        self.feed_position.get_or_create(&labels).set(position);
        self.feed_parked
            .get_or_create(&labels)
            .set(i64::from(parked));
    }

    pub fn set_feed_pending(&self, subscription: &str, target: &str, pending: i64) {
        self.feed_pending
            .get_or_create(&feed_labels(subscription, target))
            .set(pending.max(0));
    }

    pub fn set_feed_lag(&self, subscription: &str, target: &str, seconds: f64) {
        self.feed_lag
            .get_or_create(&feed_labels(subscription, target))
            .set(seconds);
    }

    pub fn observe_feed_delivered(&self, subscription: &str, target: &str, events: u64) {
        self.feed_delivered
            .get_or_create(&feed_labels(subscription, target))
            .inc_by(events);
    }

    pub fn observe_feed_failure(&self, subscription: &str, target: &str) {
        self.feed_failures
            .get_or_create(&feed_labels(subscription, target))
            .inc();
    }

    /// The overdue count of every unit now; units no longer listed drop out.
    pub fn set_overdue(&self, by_unit: &std::collections::BTreeMap<String, usize>) {
        self.overdue.clear();
        for (unit, count) in by_unit {
            self.overdue
                .get_or_create(&UnitLabels { unit: unit.clone() })
                .set(*count as i64);
        }
    }

    pub fn set_overdue_share_requests(&self, count: usize) {
        self.share_requests_overdue.set(count as i64);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
