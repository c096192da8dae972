//! Prometheus metrics (`GET /metrics`): every series the daemon exports is declared in this
//! file — the daemon's own counters (kept as atomics in [`Metrics`]) and the per-partition
//! series ([`COUNTERS`], [`GAUGES`]: one line each, reading the partition's
//! [`PartitionStatus`] — what `/v1/status` shows, and the sequencer's whole `Stats` behind
//! it — so a series of anything already counted is one line here). A scrape collects the partitions'
//! statuses and encodes them with a collector of its own: concurrent scrapes share nothing
//! mutable.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::status::PartitionStatus;

type Labels = [(&'static str, &'static str); 1];

/// Requests of one read of one connection, by kind; added to [`Metrics`] once per read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestCounts {
    pub(crate) next: u64,
    pub(crate) peek: u64,
    /// Every other command (PING, INFO, HELLO, ...).
    pub(crate) other: u64,
    pub(crate) errors: u64,
    pub(crate) busy: u64,
    pub(crate) auth_failures: u64,
}

/// The daemon's own counters, read at once (for `INFO`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) next: u64,
    pub(crate) peek: u64,
    pub(crate) other: u64,
    pub(crate) errors: u64,
    pub(crate) busy: u64,
    pub(crate) auth_failures: u64,
    pub(crate) connections_accepted: u64,
    pub(crate) connections_rejected: u64,
}

/// The daemon's metrics registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    next: Counter,
    peek: Counter,
    other: Counter,
    errors: Counter,
    busy: Counter,
    auth_failures: Counter,
    pub(crate) connections: Gauge,
    pub(crate) connections_total: Counter,
    pub(crate) connections_rejected: Counter,
    pub(crate) http_requests: Counter,
    pub(crate) pending_refusals: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "seqd_requests",
            "Protocol requests by command",
            requests.clone(),
        );
        let next = requests.get_or_create(&[("command", "next")]).clone();
        let peek = requests.get_or_create(&[("command", "peek")]).clone();
        let other = requests.get_or_create(&[("command", "other")]).clone();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let errors = counter(
            &mut registry,
            "seqd_request_errors",
            "Requests answered -ERR",
        );
        let busy = counter(
            &mut registry,
            "seqd_busy_replies",
            "Requests answered -BUSY or HTTP 503 (retry later)",
        );
        let auth_failures = counter(&mut registry, "seqd_auth_failures", "Failed AUTH attempts");
        let connections_total = counter(
            &mut registry,
            "seqd_connections_accepted",
            "Connections accepted",
        );
        let connections_rejected = counter(
            &mut registry,
            "seqd_connections_rejected",
            "Connections refused at --max-connections",
        );
        let http_requests = counter(&mut registry, "seqd_http_requests", "HTTP admin requests");
        let pending_refusals = counter(
            &mut registry,
            "seqd_pending_bytes_refusals",
            "Connections closed because --max-pending-bytes was used up",
        );
        let connections = Gauge::default();
        registry.register(
            "seqd_connections",
            "Open protocol connections",
            connections.clone(),
        );
        Metrics {
            registry,
            next,
            peek,
            other,
            errors,
            busy,
            auth_failures,
            connections,
            connections_total,
            connections_rejected,
            http_requests,
            pending_refusals,
        }
    }

    pub(crate) fn add_requests(&self, c: &RequestCounts) {
        for (counter, n) in [
            (&self.next, c.next),
            (&self.peek, c.peek),
            (&self.other, c.other),
            (&self.errors, c.errors),
            (&self.busy, c.busy),
            (&self.auth_failures, c.auth_failures),
        ] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    /// The counters `INFO` reports.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            next: self.next.get(),
            peek: self.peek.get(),
            other: self.other.get(),
            errors: self.errors.get(),
            busy: self.busy.get(),
            auth_failures: self.auth_failures.get(),
            connections_accepted: self.connections_total.get(),
            connections_rejected: self.connections_rejected.get(),
        }
    }

    /// One `503 Service Unavailable` of the HTTP API (busy, retry): counted with the
    /// protocol's `-BUSY` replies.
    pub(crate) fn add_http_busy(&self) {
        self.busy.inc();
    }

    /// The Prometheus text exposition, with the partitions as of `statuses` (this scrape's
    /// own: nothing is kept between scrapes).
    pub(crate) fn render(&self, statuses: Vec<PartitionStatus>, node: NodeSeries) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut partitions = Registry::default();
        partitions.register_collector(Box::new(PartitionCollector { statuses }));
        partitions.register_collector(Box::new(node));
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &partitions))
            .and_then(|()| encode_eof(&mut out));
        if encoded.is_err() {
            out.clear();
            out.push_str("# encoding metrics failed\n");
        }
        out
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Node-wide series read at scrape time (cluster mode): (name, help, value).
#[derive(Debug, Default)]
pub(crate) struct NodeSeries {
    pub(crate) counters: Vec<(&'static str, &'static str, u64)>,
    pub(crate) gauges: Vec<(&'static str, &'static str, i64)>,
}

impl Collector for NodeSeries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, v) in &self.counters {
            let metric = ConstCounter::new(*v);
            let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(family)?;
        }
        for (name, help, v) in &self.gauges {
            let metric = ConstGauge::new(*v);
            let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(family)?;
        }
        Ok(())
    }
}

/// One scrape's partition series.
#[derive(Debug)]
struct PartitionCollector {
    statuses: Vec<PartitionStatus>,
}

type Field = fn(&PartitionStatus) -> u64;

/// The per-partition counters: (name, help, the status field it reads).
const COUNTERS: &[(&str, &str, Field)] = &[
    ("seqd_numbers_issued", "Numbers handed out", |s| {
        s.numbers_issued
    }),
    (
        "seqd_reservations",
        "Reservations written (sync: per NEXT; lease: per window)",
        |s| s.reservations,
    ),
    ("seqd_flush_batches", "Flush writes that succeeded", |s| {
        s.flush_batches
    }),
    ("seqd_flushed_values", "Values written by flushes", |s| {
        s.flushed_values
    }),
    ("seqd_flush_errors", "Flush writes that failed", |s| {
        s.flush_errors
    }),
    (
        "seqd_flush_give_ups",
        "Batches given up (each led to an actualization)",
        |s| s.flush_give_ups,
    ),
    (
        "seqd_actualizations",
        "Actualizations, the recovery at start included",
        |s| s.actualizations,
    ),
    (
        "seqd_partition_busy_replies",
        "Requests a partition answered -BUSY",
        |s| s.busy_replies,
    ),
    ("seqd_cache_hits", "Workspace cache hits", |s| s.cache_hits),
    ("seqd_cache_misses", "Workspace cache misses", |s| {
        s.cache_misses
    }),
    ("seqd_cache_evictions", "Workspace cache evictions", |s| {
        s.cache_evictions
    }),
    ("seqd_commits", "Sequencer transactions committed", |s| {
        s.sequencer.commits
    }),
    (
        "seqd_flush_retries",
        "Flush writes retried after a failure",
        |s| s.sequencer.flush_retries,
    ),
    (
        "seqd_backpressure_rejections",
        "Transactions refused while too many values waited for storage",
        |s| s.sequencer.busy_rejections,
    ),
    (
        "seqd_actualize_errors",
        "Storage errors met (and retried) while actualizing",
        |s| s.sequencer.actualize_errors,
    ),
    (
        "seqd_replayed_events",
        "PLog events replayed by actualizations",
        |s| s.sequencer.replayed_events,
    ),
    (
        "seqd_lease_evictions",
        "Leases evicted to stay within --max-leases (their unused ranges parked)",
        |s| s.lease_evictions,
    ),
    (
        "seqd_dropped_lease_ranges",
        "Parked ranges of evicted leases given up (a gap of at most one window each)",
        |s| s.dropped_lease_ranges,
    ),
];

/// The per-partition gauges: (name, help, the status field it reads).
const GAUGES: &[(&str, &str, Field)] = &[
    ("seqd_unflushed", "Values committed, not yet durable", |s| {
        s.unflushed as u64
    }),
    ("seqd_resident_workspaces", "Workspaces in the cache", |s| {
        s.resident_workspaces as u64
    }),
    ("seqd_leases", "Sequences holding a lease", |s| {
        s.leases as u64
    }),
    (
        "seqd_parked_leases",
        "Unused ranges of evicted leases, kept to resume from",
        |s| s.parked_leases as u64,
    ),
    (
        "seqd_checkpoint_offset",
        "Every commit at or below this offset is durable",
        |s| s.checkpoint_offset,
    ),
    (
        "seqd_last_flush_latency_microseconds",
        "Duration of the last flush write",
        |s| s.last_flush_latency_us,
    ),
    (
        "seqd_mean_flush_latency_microseconds",
        "Mean duration of flush writes",
        |s| s.mean_flush_latency_us,
    ),
    (
        "seqd_max_flush_latency_microseconds",
        "Duration of the slowest flush write",
        |s| micros(s.sequencer.max_flush_latency),
    ),
    (
        "seqd_largest_batch",
        "The most values one flush write carried",
        |s| s.sequencer.largest_batch,
    ),
    (
        "seqd_partition_ready",
        "1 when the partition is recovered and can acknowledge numbers",
        |s| u64::from(s.ready),
    ),
    (
        "seqd_storage_failing",
        "1 while the partition's writes to storage fail (retrying)",
        |s| u64::from(s.storage_failing),
    ),
];

impl Collector for PartitionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = &self.statuses;
        for (name, help, field) in COUNTERS {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for s in snap.iter() {
                let labels = [("partition", s.partition.to_string())];
                ConstCounter::new(field(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, field) in GAUGES {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for s in snap.iter() {
                let labels = [("partition", s.partition.to_string())];
                let v = i64::try_from(field(s)).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
