//! Metrics: the daemon's own counters, gauges and latency histograms, the per-disk shard
//! snapshots, their rendering in the Prometheus text format (version 0.0.4), and the HTTP
//! endpoint `GET /metrics` (hyper's HTTP/1.1 server).
//!
//! Invariants:
//! - Every metric is registered once, in one `Registry` made by `registry`: the daemon's
//!   (`DaemonMetrics::register`) as prometheus-client metrics, the shards' by a collector that
//!   reads their latest snapshots at each scrape (`DISK_*` below).
//! - Recording is a relaxed atomic add or, for a histogram, one short mutex hold around
//!   `saturating_record`; a scrape holds a histogram's mutex only to clone it.
//! - Every metric is in base units with the `harvester_` prefix: latencies in seconds, sizes in
//!   bytes. HdrHistograms (µs) become cumulative Prometheus buckets at `LATENCY_BOUNDS_US`.
//! - The endpoint bounds everything: request head size, time to read it, time to answer, and
//!   connections at once. Every connection is closed after one answer.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// The `Content-Type` of `render`'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the Prometheus latency buckets, in microseconds (`+Inf` is implied).
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];
const _: () = {
    let mut i = 1;
    while i < LATENCY_BOUNDS_US.len() {
        assert!(LATENCY_BOUNDS_US[i - 1] < LATENCY_BOUNDS_US[i], "bounds must increase");
        i += 1;
    }
    assert!(LATENCY_BOUNDS_US[0] >= HISTOGRAM_LOW_US);
    assert!(LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1] <= HISTOGRAM_HIGH_US);
};

/// Lowest value a latency histogram tracks, in microseconds.
pub const HISTOGRAM_LOW_US: u64 = 1;
/// Highest value a latency histogram tracks (one hour), in microseconds; larger values saturate.
pub const HISTOGRAM_HIGH_US: u64 = 3_600_000_000;
/// Significant decimal digits a latency histogram keeps.
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// Most disks one scrape renders; more are dropped with a warning (bounds the page size).
pub const DISKS_MAX: usize = 1024;
/// Most plot states one scrape renders.
pub const PLOT_STATES_MAX: usize = 64;

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// A latency histogram in microseconds (`HISTOGRAM_LOW_US` ..= `HISTOGRAM_HIGH_US`,
/// `HISTOGRAM_SIGNIFICANT_DIGITS`), exported in seconds at `LATENCY_BOUNDS_US`. Clones share
/// the one histogram (the registry holds a clone).
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Arc<Mutex<Histogram<u64>>>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // digits <= 5), so this cannot fail.
        let histogram = Histogram::new_with_bounds(
            HISTOGRAM_LOW_US,
            HISTOGRAM_HIGH_US,
            HISTOGRAM_SIGNIFICANT_DIGITS,
        )
        .expect("constant histogram bounds are valid");
        LatencyHistogram(Arc::new(Mutex::new(histogram)))
    }
}

impl LatencyHistogram {
    /// Records one latency; below 1 µs counts as 1 µs, above one hour as one hour. The lock is
    /// held only for the record.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut h = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        h.saturating_record(micros.max(HISTOGRAM_LOW_US));
    }

    /// A copy of the histogram; the lock is held only for the copy.
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        Buckets::from_hdr(&self.snapshot()).encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The daemon's own metrics (the shards keep theirs). Shared as `Arc<DaemonMetrics>`; each
/// field is exported under the name and help text `register` gives it.
///
/// Gauges are signed so that an unpaired decrement shows up as a negative value instead of
/// wrapping to 2^64.
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    // Counters.
    pub challenges_total: Counter,
    pub challenge_responses_total: Counter,
    pub proofs_total: Counter,
    pub proof_errors_total: Counter,
    pub signatures_total: Counter,
    pub signature_errors_total: Counter,
    pub lookups_timed_out_total: Counter,
    pub frames_rejected_total: Counter,
    pub connections_total: Counter,
    pub protocol_errors_total: Counter,
    // Gauges.
    pub connections_active: Gauge,
    pub challenges_in_flight: Gauge,
    // Latencies (also in the `--hlog` interval logs, as `<field>.daemon`).
    pub signature_latency_us: LatencyHistogram,
    pub proof_request_latency_us: LatencyHistogram,
    pub challenge_latency_us: LatencyHistogram,
}

impl DaemonMetrics {
    /// Records the time one signature took.
    pub fn record_signature(&self, latency: Duration) {
        self.signature_latency_us.record(latency);
    }

    /// Records one proof request, request in to response out.
    pub fn record_proof_request(&self, latency: Duration) {
        self.proof_request_latency_us.record(latency);
    }

    /// Records one challenge, challenge in to last response out.
    pub fn record_challenge(&self, latency: Duration) {
        self.challenge_latency_us.record(latency);
    }

    /// Registers every field (a clone sharing its value) under its name, after the registry's
    /// `harvester_` prefix; the encoder appends `_total` to counters and a full stop to help.
    fn register(&self, registry: &mut Registry) {
        // Counters are registered, so read, before the gauges in one scrape: a scraper that
        // sees every challenge taken and none in flight knows every lookup ended (the tests'
        // drains rely on it).
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "challenges",
                "Challenges (signage points) received from the farmer",
                &self.challenges_total,
            ),
            (
                "challenge_responses",
                "Responses sent for challenges",
                &self.challenge_responses_total,
            ),
            ("proofs", "Proofs sent to the farmer", &self.proofs_total),
            ("proof_errors", "Proof requests that failed", &self.proof_errors_total),
            ("signatures", "Signatures made for the farmer", &self.signatures_total),
            ("signature_errors", "Signature requests that failed", &self.signature_errors_total),
            (
                "lookups_timed_out",
                "Lookups that missed their deadline",
                &self.lookups_timed_out_total,
            ),
            (
                "frames_rejected",
                "Frames from the farmer rejected as malformed or unexpected",
                &self.frames_rejected_total,
            ),
            ("connections", "Connections to the farmer established", &self.connections_total),
            (
                "protocol_errors",
                "Farmer connections closed because of a protocol error",
                &self.protocol_errors_total,
            ),
        ];
        let gauges: [(&str, &str, &Gauge); 2] = [
            ("connections_active", "Connections to the farmer open now", &self.connections_active),
            (
                "challenges_in_flight",
                "Challenges whose lookups are still running",
                &self.challenges_in_flight,
            ),
        ];
        let latencies: [(&str, &str, &LatencyHistogram); 3] = [
            ("signature_latency_seconds", "Time to make one signature", &self.signature_latency_us),
            (
                "proof_request_latency_seconds",
                "Proof request from the farmer: request in to response out",
                &self.proof_request_latency_us,
            ),
            (
                "challenge_latency_seconds",
                "Challenge from the farmer: challenge in to its last response out",
                &self.challenge_latency_us,
            ),
        ];
        register_clones(registry, &counters);
        register_clones(registry, &gauges);
        register_clones(registry, &latencies);
    }
}

/// Registers a clone of each metric (sharing its value) as `(name, help, metric)`.
fn register_clones<M: Metric + Clone>(registry: &mut Registry, metrics: &[(&str, &str, &M)]) {
    for &(name, help, metric) in metrics {
        registry.register(name, help, metric.clone());
    }
}

/// What a scrape reads. Implemented by the daemon over its shards and plot registry.
pub trait MetricsSource: Send + Sync {
    /// Each disk's label (unique, e.g. its mount point or device name) and latest snapshot.
    fn shards(&self) -> Vec<(String, shard::Snapshot)>;
    /// How many plots are in each state, e.g. `("active", 120)`, `("quarantined", 1)`.
    fn plots_by_state(&self) -> Vec<(&'static str, u64)>;
    /// The daemon's own metrics.
    fn daemon(&self) -> &DaemonMetrics;
}

/// Every metric of `source`, registered once: the daemon's metrics, and a collector that reads
/// the shards' snapshots and the plot counts at each scrape.
pub fn registry(source: Arc<dyn MetricsSource>) -> Registry {
    let mut registry = Registry::with_prefix("harvester");
    source.daemon().register(&mut registry);
    registry.register_collector(Box::new(SnapshotCollector(source)));
    registry
}

/// The metrics of `registry` in the Prometheus text format (`CONTENT_TYPE`).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail and our metrics return only the writer's errors, so
    // an error here would be a bug in the encoder; serve what was produced rather than panic.
    if let Err(e) = prometheus_text::encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

/// Limits of the metrics HTTP server. `Default` is what `serve` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Longest request head (request line plus headers) accepted; a longer one gets 431.
    pub head_bytes_max: usize,
    /// Time allowed for the whole request head to arrive, from the accept; then the connection
    /// is closed without an answer.
    pub head_read_timeout: Duration,
    /// Time allowed, beyond `head_read_timeout`, to answer: the connection is closed
    /// `head_read_timeout + write_timeout` after the accept, answered or not.
    pub write_timeout: Duration,
    /// Connections handled at once; further ones wait in the listen backlog.
    pub connections_max: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            head_bytes_max: 8 * 1024,
            head_read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            connections_max: 64,
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn MetricsSource>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_limits(listener, source, shutdown, ServeLimits::default()).await;
}

/// `serve` with explicit limits. In-flight connections are aborted on shutdown.
pub async fn serve_with_limits(
    listener: TcpListener,
    source: Arc<dyn MetricsSource>,
    mut shutdown: watch::Receiver<bool>,
    limits: ServeLimits,
) {
    assert!(limits.connections_max > 0 && limits.head_bytes_max > 0);
    let registry = Arc::new(registry(source));
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if *shutdown.borrow_and_update() {
            break;
        }
        // Take a permit before accepting, so excess connections wait in the backlog.
        let permit = tokio::select! {
            biased;
            changed = shutdown.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // The semaphore is never closed.
            },
        };
        let stream = tokio::select! {
            biased;
            changed = shutdown.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = Arc::clone(&registry);
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, registry, limits).await;
        });
    }
    connections.shutdown().await;
}

/// One request, one answer, then close. Errors (a bad or slow request, a reset) are logged at
/// debug level: they concern only this client.
async fn serve_connection(stream: TcpStream, registry: Arc<Registry>, limits: ServeLimits) {
    let service = service_fn(move |request| {
        std::future::ready(Ok::<_, Infallible>(answer(&request, &registry)))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_read_timeout)
        .max_header_size(limits.head_bytes_max)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let deadline = limits.head_read_timeout + limits.write_timeout;
    match tokio::time::timeout(deadline, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection"),
        Err(_) => tracing::debug!(?deadline, "metrics connection: not answered in time"),
    }
}

/// `/metrics` for GET and HEAD (hyper leaves out HEAD's body), 405 for other methods, 404 for
/// other paths (the query is ignored).
fn answer<B>(request: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(render(registry))));
    response.headers_mut().insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

// ---- The shards' metrics: read from their latest snapshots at each scrape. ----

/// One per-disk metric: its name (after the `harvester_` prefix and without the `_total` the
/// encoder appends to counters), its help text, and how to read its value from a snapshot.
struct SnapshotField<In, Out> {
    name: &'static str,
    help: &'static str,
    read: fn(&In) -> &Out,
}

impl<In, Out> SnapshotField<In, Out> {
    const fn new(name: &'static str, help: &'static str, read: fn(&In) -> &Out) -> Self {
        SnapshotField { name, help, read }
    }
}

const DISK_COUNTERS: [SnapshotField<shard::Counters, u64>; 12] = [
    SnapshotField::new("reads", "Plot reads completed on this disk.", |c| &c.reads),
    SnapshotField::new("read_bytes", "Bytes read from plots on this disk.", |c| &c.read_bytes),
    SnapshotField::new("read_errors", "Plot reads on this disk that failed.", |c| &c.read_errors),
    SnapshotField::new(
        "reads_coalesced",
        "Reads answered by an identical read already in flight on this disk.",
        |c| &c.reads_coalesced,
    ),
    SnapshotField::new(
        "reads_late",
        "Read completions that arrived after their job was already answered.",
        |c| &c.reads_late,
    ),
    SnapshotField::new("lookup_jobs", "Lookup jobs accepted by this disk's shard.", |c| &c.jobs),
    SnapshotField::new("lookup_jobs_timed_out", "Lookup jobs that missed their deadline.", |c| {
        &c.jobs_timed_out
    }),
    SnapshotField::new(
        "lookup_jobs_rejected",
        "Lookup jobs refused because the shard's queue was full.",
        |c| &c.jobs_rejected,
    ),
    SnapshotField::new("qualities", "Qualities found on this disk.", |c| &c.qualities),
    SnapshotField::new("plot_errors", "Plot decode or read errors on this disk.", |c| {
        &c.plot_errors
    }),
    SnapshotField::new(
        "results_backpressure",
        "Times this disk's shard waited because the results channel was full.",
        |c| &c.results_backpressure,
    ),
    SnapshotField::new(
        "disk_degraded_episodes",
        "Times this disk entered the degraded (slow) state.",
        |c| &c.degraded_episodes,
    ),
];

const DISK_GAUGES: [SnapshotField<shard::Snapshot, u64>; 3] = [
    SnapshotField::new(
        "reads_in_flight",
        "Reads submitted to this disk and not yet completed.",
        |s| &s.reads_in_flight,
    ),
    SnapshotField::new("disk_degraded", "1 while this disk is degraded (too slow), else 0.", |s| {
        if s.degraded {
            &1
        } else {
            &0
        }
    }),
    SnapshotField::new("plots_active", "Plots on this disk being served.", |s| &s.plots_active),
];

const DISK_HISTOGRAMS: [SnapshotField<shard::Histograms, Histogram<u64>>; 4] = [
    SnapshotField::new(
        "read_latency_seconds",
        "Latency of one plot read, submit to completion.",
        |h| &h.read_latency_us,
    ),
    SnapshotField::new(
        "lookup_latency_seconds",
        "Quality lookup: accepted to its last result out.",
        |h| &h.lookup_latency_us,
    ),
    SnapshotField::new("proof_latency_seconds", "Proof lookup: accepted to the proof out.", |h| {
        &h.proof_latency_us
    }),
    SnapshotField::new(
        "queue_wait_seconds",
        "Time a job waits in the shard's queue before it starts.",
        |h| &h.queue_wait_us,
    ),
];

/// A histogram reduced to Prometheus buckets.
#[derive(Debug, Clone, PartialEq)]
struct Buckets {
    /// `(upper bound in seconds, count in this bucket alone)`, ending with `+Inf`. The
    /// encoder makes them cumulative.
    per_bucket: [(f64, u64); LATENCY_BOUNDS_US.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Buckets {
    /// A recorded value lands in the first bucket whose bound is at least the lowest value
    /// of its HdrHistogram bin, so a value exactly at a bound is counted at that bound; a
    /// value up to one bin width (0.1% at 3 digits) above it may be too.
    fn from_hdr(h: &Histogram<u64>) -> Buckets {
        let mut per_bucket = [(f64::INFINITY, 0u64); LATENCY_BOUNDS_US.len() + 1];
        for (slot, bound_us) in per_bucket.iter_mut().zip(LATENCY_BOUNDS_US) {
            slot.0 = bound_us as f64 / MICROS_PER_SECOND;
        }
        for bin in h.iter_recorded() {
            let low = h.lowest_equivalent(bin.value_iterated_to());
            let index = LATENCY_BOUNDS_US.partition_point(|&bound| bound < low);
            per_bucket[index].1 += bin.count_at_value();
        }
        let count = h.len();
        debug_assert_eq!(per_bucket.iter().map(|b| b.1).sum::<u64>(), count);
        Buckets { per_bucket, sum_seconds: h.mean() * count as f64 / MICROS_PER_SECOND, count }
    }

    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.sum_seconds,
            self.count,
            &self.per_bucket,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }
}

/// Encodes the shards' and the plots' metrics from `MetricsSource` at each scrape.
struct SnapshotCollector(Arc<dyn MetricsSource>);

impl fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCollector")
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let disks = distinct_disks(self.0.shards());
        for f in &DISK_HISTOGRAMS {
            let mut metric =
                encoder.encode_descriptor(f.name, f.help, None, MetricType::Histogram)?;
            for (disk, s) in &disks {
                let buckets = Buckets::from_hdr((f.read)(&s.histograms));
                buckets.encode(metric.encode_family(&[("disk", disk.as_str())])?)?;
            }
        }
        for f in &DISK_COUNTERS {
            let mut metric =
                encoder.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
            for (disk, s) in &disks {
                metric
                    .encode_family(&[("disk", disk.as_str())])?
                    .encode_counter::<NoLabelSet, u64, u64>((f.read)(&s.counters), None)?;
            }
        }
        for f in &DISK_GAUGES {
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, MetricType::Gauge)?;
            for (disk, s) in &disks {
                metric.encode_family(&[("disk", disk.as_str())])?.encode_gauge((f.read)(s))?;
            }
        }
        let mut plots = encoder.encode_descriptor(
            "plots",
            "Plots known to the harvester, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in merged_plot_states(self.0.plots_by_state()) {
            plots.encode_family(&[("state", state)])?.encode_gauge(&count)?;
        }
        Ok(())
    }
}

/// The first `DISKS_MAX` disks, each label once: a repeated series would make Prometheus
/// reject the whole scrape, so a repeated label keeps its first snapshot.
fn distinct_disks(shards: Vec<(String, shard::Snapshot)>) -> Vec<(String, shard::Snapshot)> {
    let mut seen = HashSet::new();
    let mut disks = Vec::with_capacity(shards.len().min(DISKS_MAX));
    for (disk, s) in shards {
        if disks.len() == DISKS_MAX {
            tracing::warn!(limit = DISKS_MAX, "metrics: too many disks, rest not shown");
            break;
        }
        if !seen.insert(disk.clone()) {
            tracing::warn!(disk, "metrics: disk label repeated, shown once");
            continue;
        }
        disks.push((disk, s));
    }
    disks
}

/// The plot counts with repeated states summed, at most `PLOT_STATES_MAX` states.
fn merged_plot_states(states: Vec<(&'static str, u64)>) -> Vec<(&'static str, u64)> {
    let mut merged: Vec<(&'static str, u64)> = Vec::new();
    for (state, count) in states {
        if let Some((_, total)) = merged.iter_mut().find(|(s, _)| *s == state) {
            *total = total.saturating_add(count);
        } else if merged.len() < PLOT_STATES_MAX {
            merged.push((state, count));
        } else {
            tracing::warn!(state, "metrics: too many plot states, rest not shown");
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    struct FakeSource {
        shards: Vec<(String, shard::Snapshot)>,
        plots: Vec<(&'static str, u64)>,
        daemon: DaemonMetrics,
    }

    impl MetricsSource for FakeSource {
        fn shards(&self) -> Vec<(String, shard::Snapshot)> {
            self.shards.clone()
        }
        fn plots_by_state(&self) -> Vec<(&'static str, u64)> {
            self.plots.clone()
        }
        fn daemon(&self) -> &DaemonMetrics {
            &self.daemon
        }
    }

    fn fake() -> FakeSource {
        let mut sda = shard::Snapshot::default();
        for (us, n) in [(100, 2), (101, 1), (1_000, 1), (30_000_000, 1), (40_000_000, 1)] {
            sda.histograms.read_latency_us.record_n(us, n).expect("record");
        }
        sda.histograms.lookup_latency_us.record(2_500).expect("record");
        sda.counters.reads = 7;
        sda.counters.read_bytes = 7 * 8192;
        sda.counters.jobs_timed_out = 2;
        sda.reads_in_flight = 3;
        sda.plots_active = 10;
        sda.degraded = true;
        let sdb = shard::Snapshot::default();
        let daemon = DaemonMetrics::default();
        daemon.challenges_total.inc_by(5);
        daemon.connections_active.inc();
        daemon.record_signature(Duration::from_micros(1_500));
        FakeSource {
            shards: vec![("sda".into(), sda), ("s\"db".into(), sdb)],
            plots: vec![("active", 10), ("quarantined", 1)],
            daemon,
        }
    }

    fn render_source(source: FakeSource) -> String {
        render(&registry(Arc::new(source)))
    }

    fn sample(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"));
        line[series.len() + 1..].parse().expect("sample value")
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_in_seconds() {
        let text = render_source(fake());
        let b = |le: &str| {
            sample(
                &text,
                &format!("harvester_read_latency_seconds_bucket{{disk=\"sda\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(b("0.0001"), 2.0, "100 µs counts at its own bound");
        assert_eq!(b("0.00025"), 3.0, "101 µs goes to the next bound");
        assert_eq!(b("0.0005"), 3.0);
        assert_eq!(b("0.001"), 4.0);
        assert_eq!(b("1"), 4.0);
        assert_eq!(b("2.5"), 4.0);
        assert_eq!(b("30"), 5.0);
        assert_eq!(b("+Inf"), 6.0);
        assert_eq!(sample(&text, "harvester_read_latency_seconds_count{disk=\"sda\"}"), 6.0);
        let sum = sample(&text, "harvester_read_latency_seconds_sum{disk=\"sda\"}");
        let expected = (2.0 * 100.0 + 101.0 + 1_000.0 + 30e6 + 40e6) / 1e6;
        assert!((sum - expected).abs() / expected < 1e-3, "{sum} vs {expected}");
        // The lookup histogram: 2.5 ms exactly at a bound.
        let lookup = |le: &str| {
            sample(
                &text,
                &format!("harvester_lookup_latency_seconds_bucket{{disk=\"sda\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(lookup("0.001"), 0.0);
        assert_eq!(lookup("0.0025"), 1.0);
        // An empty disk still has every series, all zero.
        assert_eq!(sample(&text, "harvester_read_latency_seconds_count{disk=\"s\\\"db\"}"), 0.0);
    }

    #[test]
    fn counters_gauges_and_labels() {
        let text = render_source(fake());
        for (series, value) in [
            ("harvester_reads_total{disk=\"sda\"}", 7.0),
            ("harvester_read_bytes_total{disk=\"sda\"}", 57_344.0),
            ("harvester_lookup_jobs_timed_out_total{disk=\"sda\"}", 2.0),
            ("harvester_reads_in_flight{disk=\"sda\"}", 3.0),
            ("harvester_disk_degraded{disk=\"sda\"}", 1.0),
            ("harvester_disk_degraded{disk=\"s\\\"db\"}", 0.0),
            ("harvester_plots_active{disk=\"sda\"}", 10.0),
            ("harvester_plots{state=\"quarantined\"}", 1.0),
            ("harvester_challenges_total", 5.0),
            ("harvester_proofs_total", 0.0),
            ("harvester_connections_active", 1.0),
            ("harvester_signature_latency_seconds_count", 1.0),
            ("harvester_signature_latency_seconds_bucket{le=\"0.001\"}", 0.0),
            ("harvester_signature_latency_seconds_bucket{le=\"0.0025\"}", 1.0),
        ] {
            assert_eq!(sample(&text, series), value, "{series}");
        }
        for line in [
            "# HELP harvester_reads_total Plot reads completed on this disk.",
            "# TYPE harvester_reads_total counter",
            "# TYPE harvester_read_latency_seconds histogram",
            "# TYPE harvester_plots gauge",
            "harvester_plots{state=\"active\"} 10",
        ] {
            assert!(text.lines().any(|l| l == line), "missing line {line:?} in\n{text}");
        }
    }

    /// Every line is HELP, TYPE or a sample; every sample belongs to a family declared with
    /// both; no family is declared twice.
    #[test]
    fn output_is_well_formed_text_format() {
        let text = render_source(fake());
        assert!(text.ends_with('\n'));
        let mut helped = HashSet::new();
        let mut typed: HashMap<String, String> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("help text");
                assert!(!help.is_empty(), "{line}");
                assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("type");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none(), "{line}");
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample");
                value.parse::<f64>().unwrap_or_else(|_| panic!("value in {line}"));
                let name = series.split('{').next().expect("name");
                assert!(name.starts_with("harvester_"), "{line}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                    })
                    .unwrap_or(name);
                assert!(typed.contains_key(family), "undeclared family: {line}");
                if let Some(labels) = series.strip_prefix(name) {
                    assert!(
                        labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                        "{line}"
                    );
                }
            }
        }
        assert!(typed.len() >= 30, "{} families", typed.len());
    }

    #[test]
    fn latency_recording_clamps() {
        let h = LatencyHistogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(10 * 3600));
        let snap = h.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap.min(), 1);
        assert!(snap.max() >= HISTOGRAM_HIGH_US);
        let buckets = Buckets::from_hdr(&snap);
        assert_eq!(buckets.per_bucket[0].1, 1);
        assert_eq!(buckets.per_bucket[LATENCY_BOUNDS_US.len()], (f64::INFINITY, 1));
    }

    #[test]
    fn repeated_labels_are_merged_or_dropped() {
        let mut source = fake();
        source.shards.push(("sda".into(), shard::Snapshot::default()));
        source.plots.push(("active", 5));
        let text = render_source(source);
        let reads = text.lines().filter(|l| l.starts_with("harvester_reads_total{disk=\"sda\"}"));
        assert_eq!(reads.count(), 1);
        assert_eq!(sample(&text, "harvester_reads_total{disk=\"sda\"}"), 7.0, "first one wins");
        assert_eq!(sample(&text, "harvester_plots{state=\"active\"}"), 15.0);
    }

    #[test]
    fn negative_gauge_renders() {
        let source = Arc::new(fake());
        let registry = registry(Arc::clone(&source) as Arc<dyn MetricsSource>);
        source.daemon.challenges_in_flight.dec_by(2);
        assert_eq!(sample(&render(&registry), "harvester_challenges_in_flight"), -2.0);
        source.daemon.challenges_total.inc();
        assert_eq!(sample(&render(&registry), "harvester_challenges_total"), 6.0, "live values");
    }

    struct Server {
        addr: std::net::SocketAddr,
        shutdown: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: ServeLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve_with_limits(listener, Arc::new(fake()), rx, limits));
        Server { addr, shutdown, task }
    }

    /// The whole answer to `raw`. A server that refuses a request before reading all of it
    /// may reset the connection after answering: what arrived before the reset counts.
    async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(raw).await.expect("write");
            let mut answer = Vec::new();
            if let Err(e) = stream.read_to_end(&mut answer).await {
                assert!(!answer.is_empty(), "read: {e}");
            }
            String::from_utf8(answer).expect("utf-8")
        };
        tokio::time::timeout(TEST_TIMEOUT, exchange).await.expect("request timed out")
    }

    async fn stop(server: Server) {
        server.shutdown.send(true).expect("server alive");
        tokio::time::timeout(TEST_TIMEOUT, server.task)
            .await
            .expect("serve did not stop")
            .expect("serve panicked");
    }

    #[tokio::test]
    async fn serves_metrics_and_errors() {
        let server = start(ServeLimits::default()).await;

        let answer = request(server.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("head");
        // Header names are case-insensitive; hyper writes them in lower case.
        let head = format!("{}\r\n", head.to_ascii_lowercase());
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains(&format!("content-type: {CONTENT_TYPE}\r\n")), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert!(body.contains("harvester_read_latency_seconds_bucket{disk=\"sda\""), "{body}");

        let answer = request(server.addr, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "HEAD has no body");

        let answer = request(server.addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");

        let answer = request(server.addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("allow: get, head\r\n"), "{answer}");

        let answer = request(server.addr, b"HELLO\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");

        // A head that never ends within 8 KiB, and one that ends just past it.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        huge.resize(20 * 1024, b'a');
        let answer = request(server.addr, &huge).await;
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
        huge.truncate(8 * 1024);
        huge.extend_from_slice(b"\r\n\r\n");
        let answer = request(server.addr, &huge).await;
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");

        stop(server).await;
    }

    #[tokio::test]
    async fn slow_clients_time_out_and_connections_are_capped() {
        let limits = ServeLimits {
            head_read_timeout: Duration::from_millis(300),
            connections_max: 1,
            ..ServeLimits::default()
        };
        let server = start(limits).await;
        // An idle client holds the only slot until its head times out; it then gets closed
        // without an answer.
        let mut idle = TcpStream::connect(server.addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = tokio::time::Instant::now();
        let answer = request(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(started.elapsed() >= Duration::from_millis(200), "second client waited");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(TEST_TIMEOUT, idle.read_to_end(&mut rest))
            .await
            .expect("idle closed")
            .expect("read");
        assert_eq!(n, 0);

        // The head timeout counts from the accept, not per read: a client that trickles its
        // head is closed without an answer too.
        let mut slow = TcpStream::connect(server.addr).await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.expect("write");
        let started = tokio::time::Instant::now();
        let trickle = async {
            let mut answer = Vec::new();
            loop {
                if slow.write_all(b"X").await.is_err() {
                    break;
                }
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut byte)).await {
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(_)) => answer.push(byte[0]),
                    Err(_) => {}
                }
            }
            answer
        };
        let answer = tokio::time::timeout(TEST_TIMEOUT, trickle).await.expect("closed");
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3));
        stop(server).await;
    }

    #[tokio::test]
    async fn shutdown_ends_serve_with_a_connection_open() {
        let server = start(ServeLimits::default()).await;
        let _open = TcpStream::connect(server.addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop(server).await;
    }

    #[tokio::test]
    async fn dropped_sender_ends_serve() {
        let server = start(ServeLimits::default()).await;
        drop(server.shutdown);
        tokio::time::timeout(TEST_TIMEOUT, server.task)
            .await
            .expect("serve did not stop")
            .expect("serve panicked");
    }
}
