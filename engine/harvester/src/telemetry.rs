//! Metrics: the daemon's own counters, gauges and latency histograms, the per-disk shard
//! snapshots, their rendering in the Prometheus text format (version 0.0.4), and a minimal
//! HTTP/1.1 server for `GET /metrics`.
//!
//! Invariants:
//! - Recording is a relaxed atomic add or, for a histogram, one short mutex hold around
//!   `saturating_record`; a scrape holds a histogram's mutex only to clone it.
//! - Every metric is in base units with the `harvester_` prefix: latencies in seconds, sizes in
//!   bytes. HdrHistograms (µs) become cumulative Prometheus buckets at `LATENCY_BOUNDS_US`.
//! - The HTTP server bounds everything: request head size, time to read it, time to write the
//!   answer, and connections at once. Every connection is closed after one answer.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// After answering, how long and how much we read and discard before closing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const DRAIN_BYTES_MAX: usize = 64 * 1024;

/// Errors of one metrics HTTP connection. `serve` logs them at debug level and carries on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The request head did not end within `head_bytes_max` bytes.
    #[error("request head longer than {limit_bytes} bytes")]
    HeadTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// The request head did not arrive within `head_read_timeout`.
    #[error("request head not received within {0:?}")]
    HeadTimeout(Duration),
    /// The peer closed before sending a whole request head.
    #[error("connection closed before the request head ended")]
    ClosedEarly,
    /// The answer could not be written within `write_timeout`.
    #[error("response not written within {0:?}")]
    WriteTimeout(Duration),
    /// A socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// An empty latency histogram: microseconds, `HISTOGRAM_LOW_US` ..= `HISTOGRAM_HIGH_US`,
/// `HISTOGRAM_SIGNIFICANT_DIGITS`.
pub fn new_latency_histogram() -> Mutex<Histogram<u64>> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // digits <= 5), so this cannot fail.
    Mutex::new(
        Histogram::new_with_bounds(
            HISTOGRAM_LOW_US,
            HISTOGRAM_HIGH_US,
            HISTOGRAM_SIGNIFICANT_DIGITS,
        )
        .expect("constant histogram bounds are valid"),
    )
}

/// Records one latency; below 1 µs counts as 1 µs, above one hour as one hour. The lock is
/// held only for the record.
pub fn record_latency(histogram: &Mutex<Histogram<u64>>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let mut h = histogram.lock().unwrap_or_else(PoisonError::into_inner);
    h.saturating_record(micros.max(HISTOGRAM_LOW_US));
}

/// A copy of the histogram; the lock is held only for the copy.
fn snapshot_latency(histogram: &Mutex<Histogram<u64>>) -> Histogram<u64> {
    histogram.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The daemon's own metrics (the shards keep theirs). Shared as `Arc<DaemonMetrics>`.
///
/// Counters and gauges are plain atomics: update them with `fetch_add` / `fetch_sub` and
/// `Ordering::Relaxed`. Gauges are signed so that an unpaired decrement shows up as a negative
/// value instead of wrapping to 2^64.
#[derive(Debug)]
pub struct DaemonMetrics {
    /// Challenges (new signage points) received from the farmer.
    pub challenges_total: AtomicU64,
    /// Responses (qualities found) sent for challenges.
    pub challenge_responses_total: AtomicU64,
    /// Proofs sent to the farmer.
    pub proofs_total: AtomicU64,
    /// Proof requests that failed.
    pub proof_errors_total: AtomicU64,
    /// Signatures made for the farmer.
    pub signatures_total: AtomicU64,
    /// Signature requests that failed.
    pub signature_errors_total: AtomicU64,
    /// Lookups answered too late for their deadline.
    pub lookups_timed_out_total: AtomicU64,
    /// Frames from the farmer that were rejected as malformed or unexpected.
    pub frames_rejected_total: AtomicU64,
    /// Connections to the farmer established.
    pub connections_total: AtomicU64,
    /// Connections to the farmer closed because of a protocol error.
    pub protocol_errors_total: AtomicU64,
    /// Connections to the farmer open now.
    pub connections_active: AtomicI64,
    /// Challenges whose lookups are still running.
    pub challenges_in_flight: AtomicI64,
    /// Time to make one signature (µs).
    pub signature_latency_us: Mutex<Histogram<u64>>,
    /// A proof request: request in to response out (µs).
    pub proof_request_latency_us: Mutex<Histogram<u64>>,
    /// A challenge: challenge in to its last response out (µs).
    pub challenge_latency_us: Mutex<Histogram<u64>>,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics {
            challenges_total: AtomicU64::new(0),
            challenge_responses_total: AtomicU64::new(0),
            proofs_total: AtomicU64::new(0),
            proof_errors_total: AtomicU64::new(0),
            signatures_total: AtomicU64::new(0),
            signature_errors_total: AtomicU64::new(0),
            lookups_timed_out_total: AtomicU64::new(0),
            frames_rejected_total: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            protocol_errors_total: AtomicU64::new(0),
            connections_active: AtomicI64::new(0),
            challenges_in_flight: AtomicI64::new(0),
            signature_latency_us: new_latency_histogram(),
            proof_request_latency_us: new_latency_histogram(),
            challenge_latency_us: new_latency_histogram(),
        }
    }
}

impl DaemonMetrics {
    /// Records the time one signature took.
    pub fn record_signature(&self, latency: Duration) {
        record_latency(&self.signature_latency_us, latency);
    }

    /// Records one proof request, request in to response out.
    pub fn record_proof_request(&self, latency: Duration) {
        record_latency(&self.proof_request_latency_us, latency);
    }

    /// Records one challenge, challenge in to last response out.
    pub fn record_challenge(&self, latency: Duration) {
        record_latency(&self.challenge_latency_us, latency);
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

/// The metrics of `source` in the Prometheus text format (`CONTENT_TYPE`).
pub fn render(source: &dyn MetricsSource) -> String {
    let mut registry = Registry::with_prefix("harvester");
    registry.register_collector(Box::new(Scrape::collect(source)));
    let mut out = String::new();
    // Writing into a String cannot fail and our collector returns only the writer's errors,
    // so an error here would be a bug in the encoder; serve what was produced rather than panic.
    if let Err(e) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

/// Limits of the metrics HTTP server. `Default` is what `serve` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Longest request head (request line plus headers) accepted.
    pub head_bytes_max: usize,
    /// Time allowed for the whole request head to arrive.
    pub head_read_timeout: Duration,
    /// Time allowed to write the answer.
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
        let source = Arc::clone(&source);
        connections.spawn(async move {
            let _permit = permit;
            if let Err(e) = handle_connection(stream, source.as_ref(), limits).await {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
    connections.shutdown().await;
}

/// One request, one answer, then close.
async fn handle_connection(
    mut stream: TcpStream,
    source: &dyn MetricsSource,
    limits: ServeLimits,
) -> Result<(), TelemetryError> {
    let head = tokio::time::timeout(
        limits.head_read_timeout,
        read_head(&mut stream, limits.head_bytes_max),
    )
    .await
    .map_err(|_| TelemetryError::HeadTimeout(limits.head_read_timeout))?;
    let (response, result) = match head {
        Ok(head) => (route(&head, source), Ok(())),
        Err(e @ TelemetryError::HeadTooLarge { .. }) => {
            (Response::plain(400, "Bad Request", "request head too large\n"), Err(e))
        }
        Err(e) => return Err(e),
    };
    tokio::time::timeout(limits.write_timeout, write_response(&mut stream, &response))
        .await
        .map_err(|_| TelemetryError::WriteTimeout(limits.write_timeout))??;
    // The answer is out; a client that keeps the connection open only costs this much more.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(&mut stream)).await;
    result
}

/// Reads up to and including the blank line that ends the request head. Never buffers more
/// than `limit_bytes`.
async fn read_head(stream: &mut TcpStream, limit_bytes: usize) -> Result<Vec<u8>, TelemetryError> {
    let mut head = vec![0u8; limit_bytes];
    let mut len = 0;
    loop {
        if len == limit_bytes {
            return Err(TelemetryError::HeadTooLarge { limit_bytes });
        }
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Err(TelemetryError::ClosedEarly);
        }
        // Search only where a terminator could newly be, i.e. from 3 bytes before the new data.
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = find_head_end(&head[from..len]) {
            head.truncate(from + end);
            return Ok(head);
        }
    }
}

/// The length of the head up to and including its terminating blank line, if complete.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// An HTTP answer.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    /// HEAD: send the headers of the body but not the body.
    omit_body: bool,
    allow: Option<&'static str>,
}

impl Response {
    fn plain(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            omit_body: false,
            allow: None,
        }
    }

    fn encode_head(&self) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str("Allow: ");
            head.push_str(allow);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

/// Answers a complete request head.
fn route(head: &[u8], source: &dyn MetricsSource) -> Response {
    let Some((method, target)) = parse_request_line(head) else {
        return Response::plain(400, "Bad Request", "bad request\n");
    };
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Response::plain(404, "Not Found", "not found; try /metrics\n");
    }
    match method {
        "GET" | "HEAD" => Response {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            body: render(source),
            omit_body: method == "HEAD",
            allow: None,
        },
        _ => Response {
            allow: Some("GET, HEAD"),
            ..Response::plain(405, "Method Not Allowed", "method not allowed\n")
        },
    }
}

/// `(method, target)` from `METHOD SP TARGET SP HTTP/1.x CRLF`, or `None` if malformed.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    well_formed.then_some((method, target))
}

/// Writes the answer and shuts down our side of the connection.
async fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    stream.write_all(response.encode_head().as_bytes()).await?;
    if !response.omit_body {
        stream.write_all(response.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Discards what the client still sends (at most `DRAIN_BYTES_MAX`) until it closes. Closing
/// a socket with unread data makes the kernel send a reset, which can destroy the answer
/// before the client has read it (e.g. after a 400 for an oversized head).
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_BYTES_MAX {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

// ---- Scrape: a self-contained copy of everything one render needs. ----

/// One metric family in a table: its name (after the `harvester_` prefix and without the
/// `_total` the encoder appends to counters), its help text, and how to read its value.
struct Family<In, Out> {
    name: &'static str,
    help: &'static str,
    read: fn(&In) -> &Out,
}

impl<In, Out> Family<In, Out> {
    const fn new(name: &'static str, help: &'static str, read: fn(&In) -> &Out) -> Self {
        Family { name, help, read }
    }
}

const DISK_COUNTERS: [Family<shard::Counters, u64>; 12] = [
    Family::new("reads", "Plot reads completed on this disk.", |c| &c.reads),
    Family::new("read_bytes", "Bytes read from plots on this disk.", |c| &c.read_bytes),
    Family::new("read_errors", "Plot reads on this disk that failed.", |c| &c.read_errors),
    Family::new(
        "reads_coalesced",
        "Reads answered by an identical read already in flight on this disk.",
        |c| &c.reads_coalesced,
    ),
    Family::new(
        "reads_late",
        "Read completions that arrived after their job was already answered.",
        |c| &c.reads_late,
    ),
    Family::new("lookup_jobs", "Lookup jobs accepted by this disk's shard.", |c| &c.jobs),
    Family::new("lookup_jobs_timed_out", "Lookup jobs that missed their deadline.", |c| {
        &c.jobs_timed_out
    }),
    Family::new(
        "lookup_jobs_rejected",
        "Lookup jobs refused because the shard's queue was full.",
        |c| &c.jobs_rejected,
    ),
    Family::new("qualities", "Qualities found on this disk.", |c| &c.qualities),
    Family::new("plot_errors", "Plot decode or read errors on this disk.", |c| &c.plot_errors),
    Family::new(
        "results_backpressure",
        "Times this disk's shard waited because the results channel was full.",
        |c| &c.results_backpressure,
    ),
    Family::new(
        "disk_degraded_episodes",
        "Times this disk entered the degraded (slow) state.",
        |c| &c.degraded_episodes,
    ),
];

const DISK_GAUGES: [Family<shard::Snapshot, u64>; 3] = [
    Family::new("reads_in_flight", "Reads submitted to this disk and not yet completed.", |s| {
        &s.reads_in_flight
    }),
    Family::new("disk_degraded", "1 while this disk is degraded (too slow), else 0.", |s| {
        if s.degraded {
            &1
        } else {
            &0
        }
    }),
    Family::new("plots_active", "Plots on this disk being served.", |s| &s.plots_active),
];

const DISK_HISTOGRAMS: [Family<shard::Histograms, Histogram<u64>>; 4] = [
    Family::new("read_latency_seconds", "Latency of one plot read, submit to completion.", |h| {
        &h.read_latency_us
    }),
    Family::new(
        "lookup_latency_seconds",
        "Quality lookup: accepted to its last result out.",
        |h| &h.lookup_latency_us,
    ),
    Family::new("proof_latency_seconds", "Proof lookup: accepted to the proof out.", |h| {
        &h.proof_latency_us
    }),
    Family::new(
        "queue_wait_seconds",
        "Time a job waits in the shard's queue before it starts.",
        |h| &h.queue_wait_us,
    ),
];

// Counters are read before the gauges in one scrape: a scraper that sees every challenge
// taken and none in flight knows every lookup ended (the tests' drains rely on it).
const DAEMON_COUNTERS: [Family<DaemonMetrics, AtomicU64>; 10] = [
    Family::new("challenges", "Challenges (signage points) received from the farmer.", |d| {
        &d.challenges_total
    }),
    Family::new("challenge_responses", "Responses sent for challenges.", |d| {
        &d.challenge_responses_total
    }),
    Family::new("proofs", "Proofs sent to the farmer.", |d| &d.proofs_total),
    Family::new("proof_errors", "Proof requests that failed.", |d| &d.proof_errors_total),
    Family::new("signatures", "Signatures made for the farmer.", |d| &d.signatures_total),
    Family::new("signature_errors", "Signature requests that failed.", |d| {
        &d.signature_errors_total
    }),
    Family::new("lookups_timed_out", "Lookups that missed their deadline.", |d| {
        &d.lookups_timed_out_total
    }),
    Family::new(
        "frames_rejected",
        "Frames from the farmer rejected as malformed or unexpected.",
        |d| &d.frames_rejected_total,
    ),
    Family::new("connections", "Connections to the farmer established.", |d| &d.connections_total),
    Family::new("protocol_errors", "Farmer connections closed because of a protocol error.", |d| {
        &d.protocol_errors_total
    }),
];

const DAEMON_GAUGES: [Family<DaemonMetrics, AtomicI64>; 2] = [
    Family::new("connections_active", "Connections to the farmer open now.", |d| {
        &d.connections_active
    }),
    Family::new("challenges_in_flight", "Challenges whose lookups are still running.", |d| {
        &d.challenges_in_flight
    }),
];

const DAEMON_HISTOGRAMS: [Family<DaemonMetrics, Mutex<Histogram<u64>>>; 3] = [
    Family::new("signature_latency_seconds", "Time to make one signature.", |d| {
        &d.signature_latency_us
    }),
    Family::new(
        "proof_request_latency_seconds",
        "Proof request from the farmer: request in to response out.",
        |d| &d.proof_request_latency_us,
    ),
    Family::new(
        "challenge_latency_seconds",
        "Challenge from the farmer: challenge in to its last response out.",
        |d| &d.challenge_latency_us,
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

    fn encode(&self, encoder: &mut MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.sum_seconds,
            self.count,
            &self.per_bucket,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }
}

#[derive(Debug)]
struct DiskScrape {
    disk: String,
    counters: [u64; DISK_COUNTERS.len()],
    gauges: [u64; DISK_GAUGES.len()],
    histograms: [Buckets; DISK_HISTOGRAMS.len()],
}

#[derive(Debug)]
struct Scrape {
    disks: Vec<DiskScrape>,
    plots_by_state: Vec<(&'static str, u64)>,
    daemon_counters: [u64; DAEMON_COUNTERS.len()],
    daemon_gauges: [i64; DAEMON_GAUGES.len()],
    daemon_histograms: [Buckets; DAEMON_HISTOGRAMS.len()],
}

impl Scrape {
    /// Copies what one render needs out of `source`. Disks past `DISKS_MAX` and disks whose
    /// label repeats are dropped (a repeated series would make Prometheus reject the whole
    /// scrape); plot states that repeat are summed.
    fn collect(source: &dyn MetricsSource) -> Scrape {
        let shards = source.shards();
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
            disks.push(DiskScrape {
                counters: DISK_COUNTERS.map(|f| *(f.read)(&s.counters)),
                gauges: DISK_GAUGES.map(|f| *(f.read)(&s)),
                histograms: DISK_HISTOGRAMS.map(|f| Buckets::from_hdr((f.read)(&s.histograms))),
                disk,
            });
        }

        let mut plots_by_state: Vec<(&'static str, u64)> = Vec::new();
        for (state, count) in source.plots_by_state() {
            if let Some((_, total)) = plots_by_state.iter_mut().find(|(s, _)| *s == state) {
                *total = total.saturating_add(count);
            } else if plots_by_state.len() < PLOT_STATES_MAX {
                plots_by_state.push((state, count));
            } else {
                tracing::warn!(state, "metrics: too many plot states, rest not shown");
            }
        }

        let daemon = source.daemon();
        Scrape {
            disks,
            plots_by_state,
            daemon_counters: DAEMON_COUNTERS.map(|f| (f.read)(daemon).load(Ordering::Relaxed)),
            daemon_gauges: DAEMON_GAUGES.map(|f| (f.read)(daemon).load(Ordering::Relaxed)),
            daemon_histograms: DAEMON_HISTOGRAMS
                .map(|f| Buckets::from_hdr(&snapshot_latency((f.read)(daemon)))),
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (i, f) in DISK_HISTOGRAMS.iter().enumerate() {
            let mut metric =
                encoder.encode_descriptor(f.name, f.help, None, MetricType::Histogram)?;
            for disk in &self.disks {
                let labels = [("disk", disk.disk.as_str())];
                disk.histograms[i].encode(&mut metric.encode_family(&labels)?)?;
            }
        }
        for (i, f) in DISK_COUNTERS.iter().enumerate() {
            let mut metric =
                encoder.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
            for disk in &self.disks {
                let labels = [("disk", disk.disk.as_str())];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&disk.counters[i], None)?;
            }
        }
        for (i, f) in DISK_GAUGES.iter().enumerate() {
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, MetricType::Gauge)?;
            for disk in &self.disks {
                let labels = [("disk", disk.disk.as_str())];
                metric.encode_family(&labels)?.encode_gauge(&disk.gauges[i])?;
            }
        }
        let mut plots = encoder.encode_descriptor(
            "plots",
            "Plots known to the harvester, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in &self.plots_by_state {
            plots.encode_family(&[("state", *state)])?.encode_gauge(count)?;
        }
        for (f, value) in DAEMON_COUNTERS.iter().zip(&self.daemon_counters) {
            encoder
                .encode_descriptor(f.name, f.help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, u64, u64>(value, None)?;
        }
        for (f, value) in DAEMON_GAUGES.iter().zip(&self.daemon_gauges) {
            encoder
                .encode_descriptor(f.name, f.help, None, MetricType::Gauge)?
                .encode_gauge(value)?;
        }
        for (f, buckets) in DAEMON_HISTOGRAMS.iter().zip(&self.daemon_histograms) {
            buckets.encode(&mut encoder.encode_descriptor(
                f.name,
                f.help,
                None,
                MetricType::Histogram,
            )?)?;
        }
        Ok(())
    }
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
        daemon.challenges_total.fetch_add(5, Ordering::Relaxed);
        daemon.connections_active.fetch_add(1, Ordering::Relaxed);
        daemon.record_signature(Duration::from_micros(1_500));
        FakeSource {
            shards: vec![("sda".into(), sda), ("s\"db".into(), sdb)],
            plots: vec![("active", 10), ("quarantined", 1)],
            daemon,
        }
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
        let text = render(&fake());
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
        let text = render(&fake());
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
        let text = render(&fake());
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
        let h = new_latency_histogram();
        record_latency(&h, Duration::ZERO);
        record_latency(&h, Duration::from_secs(10 * 3600));
        let snap = snapshot_latency(&h);
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
        let text = render(&source);
        let reads = text.lines().filter(|l| l.starts_with("harvester_reads_total{disk=\"sda\"}"));
        assert_eq!(reads.count(), 1);
        assert_eq!(sample(&text, "harvester_reads_total{disk=\"sda\"}"), 7.0, "first one wins");
        assert_eq!(sample(&text, "harvester_plots{state=\"active\"}"), 15.0);
    }

    #[test]
    fn negative_gauge_renders() {
        let source = fake();
        source.daemon.challenges_in_flight.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(sample(&render(&source), "harvester_challenges_in_flight"), -1.0);
    }

    #[test]
    fn request_line_parsing() {
        assert_eq!(parse_request_line(b"GET /metrics HTTP/1.1\r\n\r\n"), Some(("GET", "/metrics")));
        assert_eq!(
            parse_request_line(b"HEAD /x?y=1 HTTP/1.0\r\nA: b\r\n\r\n"),
            Some(("HEAD", "/x?y=1"))
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 x\r\n\r\n",
            b"\xff /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_request_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
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

    async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(raw).await.expect("write");
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.expect("read");
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
        let head = format!("{head}\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert!(body.contains("harvester_read_latency_seconds_bucket{disk=\"sda\""), "{body}");

        let answer = request(server.addr, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "HEAD has no body");

        let answer = request(server.addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");

        let answer = request(server.addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
        assert!(answer.contains("Allow: GET, HEAD\r\n"), "{answer}");

        let answer = request(server.addr, b"HELLO\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");

        // A head that never ends within 8 KiB.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        huge.resize(20 * 1024, b'a');
        let answer = request(server.addr, &huge).await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");

        stop(server).await;
    }

    #[tokio::test]
    async fn idle_clients_time_out_and_connections_are_capped() {
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
