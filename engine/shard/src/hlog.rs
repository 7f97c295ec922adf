//! HdrHistogram interval logs (`.hlog`): the shards' cumulative histograms, written as one
//! interval histogram per tag per period, in the format of the Java `HistogramLogWriter`
//! (V2 histograms, deflated: the `HISTF...` lines), which its `HistogramLogProcessor` and
//! `hdrhistogram::serialization::interval_log` read.
//!
//! ```text
//! #[Histogram log format version 1.3]
//! #[Units: microseconds (histogram values and Interval_Max)]
//! #[StartTime: 1795742283.117 (seconds since epoch)]
//! #[BaseTime: 1795742283.117 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=read_latency_us.vda,0.000,1.001,8383.000,HISTFAAAAC...
//! ```
//!
//! Each line after the header is one interval of one tag: its start in seconds since BaseTime,
//! its length in seconds, its largest value, and the histogram (V2 + deflate, base64). An
//! interval runs from the previous [`HlogWriter::record`] call (the first: from the log's
//! creation) to this one, and holds what the tag's cumulative histogram gained in that time.
//! Values stay in microseconds (no max-value divisor).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{
    IntervalLogWriterBuilder, IntervalLogWriterError, Tag,
};
use hdrhistogram::serialization::{V2DeflateSerializeError, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::Snapshot;

/// Distinct tags one log may carry. Each keeps a copy of its last cumulative histogram
/// (auto-sized to the largest value seen: about 60 KiB for latencies up to 100 ms at 3
/// significant digits).
pub const TAGS_MAX: usize = 4 * 1024;
/// A longer tag is cut to this length (at a character boundary).
pub const TAG_BYTES_MAX: usize = 200;

/// The column legend the Java `HistogramLogWriter` writes after the header.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// An interval log being written.
pub struct HlogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// Interval start timestamps are offsets from this (the `#[BaseTime]` line).
    base_time: SystemTime,
    /// The end of the last interval written, the start of the next.
    previous_time: SystemTime,
    /// Per (sanitized) tag: its cumulative histogram at the last record.
    previous: HashMap<String, Histogram<u64>>,
    /// Reused for each interval's difference.
    scratch: Histogram<u64>,
}

impl HlogWriter {
    /// Creates `path` (truncating it) and writes the header, with `now` as the log's start.
    pub fn create(path: &Path) -> io::Result<HlogWriter> {
        HlogWriter::create_at(path, SystemTime::now())
    }

    /// [`HlogWriter::create`] with the start time given: the StartTime and BaseTime of the
    /// header, and the start of the first interval.
    pub fn create_at(path: &Path, start: SystemTime) -> io::Result<HlogWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        let log = IntervalLogWriterBuilder::new()
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[Units: microseconds (histogram values and Interval_Max)]")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut serializer)?;
        drop(log);
        writeln!(out, "{LEGEND}")?;
        Ok(HlogWriter {
            out,
            serializer,
            base_time: start,
            previous_time: start,
            previous: HashMap::new(),
            scratch: empty_like(1, 3),
        })
    }

    /// Writes one interval, ending at `now`, for every `(tag, cumulative histogram)`: what the
    /// histogram gained since the previous call (the first call for a tag: all of it; a
    /// histogram that went back, i.e. its source restarted: all of it). Tags are sanitized with
    /// [`sanitize_tag`]; two equal tags in one call, or more than [`TAGS_MAX`] distinct tags in
    /// the log, are refused (`InvalidInput`) before anything is written. A `now` before the
    /// previous call's counts as the previous call's (intervals never go back).
    pub fn record(
        &mut self,
        now: SystemTime,
        cumulative: &[(String, &Histogram<u64>)],
    ) -> io::Result<()> {
        let tags: Vec<String> = cumulative.iter().map(|(tag, _)| sanitize_tag(tag)).collect();
        let mut seen = HashSet::with_capacity(tags.len());
        let mut tags_new = 0;
        for tag in &tags {
            if !seen.insert(tag.as_str()) {
                return Err(invalid_input(format!("hlog: tag {tag} twice in one interval")));
            }
            tags_new += usize::from(!self.previous.contains_key(tag));
        }
        if self.previous.len() + tags_new > TAGS_MAX {
            return Err(invalid_input(format!("hlog: more than {TAGS_MAX} tags")));
        }

        let end = now.max(self.previous_time);
        let start_offset = self.previous_time.duration_since(self.base_time).unwrap_or_default();
        let length = end.duration_since(self.previous_time).unwrap_or_default();
        // A builder with no header lines writes nothing: it only wraps `out` for the intervals.
        let mut log =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        for (tag, (_, histogram)) in tags.iter().zip(cumulative) {
            let (low, sigfig) = (histogram.low(), histogram.sigfig());
            if (self.scratch.low(), self.scratch.sigfig()) != (low, sigfig) {
                self.scratch = empty_like(low, sigfig);
            }
            let previous =
                self.previous.entry(tag.clone()).or_insert_with(|| empty_like(low, sigfig));
            if (previous.low(), previous.sigfig()) != (low, sigfig) {
                *previous = empty_like(low, sigfig);
            }
            difference(&mut self.scratch, previous, histogram)?;
            previous.reset();
            previous.add(*histogram).map_err(invalid_data)?;
            debug_assert_eq!(previous.len(), histogram.len());
            // `sanitize_tag` removed every character a Tag refuses.
            let tag = Tag::new(tag).expect("sanitized tag");
            log.write_histogram(&self.scratch, start_offset, length, Some(tag))
                .map_err(write_error)?;
        }
        drop(log);
        self.previous_time = end;
        Ok(())
    }

    /// Records the four engine histograms of each `(disk, snapshot)` under the tags
    /// `<metric>.<disk>` (see [`shard_tags`]).
    pub fn record_shards(
        &mut self,
        now: SystemTime,
        shards: &[(String, Snapshot)],
    ) -> io::Result<()> {
        self.record(now, &shard_tags(shards))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The tags [`HlogWriter::record_shards`] uses: `<metric>.<disk>` for the four engine
/// histograms of each `(disk, snapshot)`, in that order.
pub fn shard_tags(shards: &[(String, Snapshot)]) -> Vec<(String, &Histogram<u64>)> {
    let mut tags = Vec::with_capacity(shards.len() * 4);
    for (disk, snapshot) in shards {
        let h = &snapshot.histograms;
        tags.push((format!("read_latency_us.{disk}"), &h.read_latency_us));
        tags.push((format!("lookup_latency_us.{disk}"), &h.lookup_latency_us));
        tags.push((format!("proof_latency_us.{disk}"), &h.proof_latency_us));
        tags.push((format!("queue_wait_us.{disk}"), &h.queue_wait_us));
    }
    tags
}

/// `tag` as an interval-log Tag allows it: ',' (the column separator), whitespace and control
/// characters become '_', an empty tag becomes "_", and it is cut to [`TAG_BYTES_MAX`] bytes.
pub fn sanitize_tag(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len().min(TAG_BYTES_MAX));
    for c in tag.chars() {
        let c = if c == ',' || c.is_whitespace() || c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() > TAG_BYTES_MAX {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    debug_assert!(Tag::new(&out).is_some());
    out
}

/// Records into a log from a background thread every `interval`, until the returned guard is
/// dropped (or [`HlogRecorder::finish`]ed): then a last interval, a flush, and the thread is
/// joined. Each interval records `source()` with [`HlogWriter::record_shards`].
pub fn spawn_recorder<F>(path: &Path, interval: Duration, mut source: F) -> io::Result<HlogRecorder>
where
    F: FnMut() -> Vec<(String, Snapshot)> + Send + 'static,
{
    spawn_recorder_with(path, interval, move |log, now| log.record_shards(now, &source()))
}

/// [`spawn_recorder`] with the recording step given: `step(log, now)` is called each interval
/// and once more at the end, and must make one [`HlogWriter::record`] call (two calls at one
/// `now` would give the second an empty interval). The log is flushed after each step. The
/// first error stops the thread; [`HlogRecorder::finish`] returns it.
pub fn spawn_recorder_with<F>(path: &Path, interval: Duration, step: F) -> io::Result<HlogRecorder>
where
    F: FnMut(&mut HlogWriter, SystemTime) -> io::Result<()> + Send + 'static,
{
    if interval.is_zero() {
        return Err(invalid_input("hlog: the recording interval must be > 0".into()));
    }
    let log = HlogWriter::create(path)?;
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("hlog".into())
        .spawn(move || recorder_run(log, interval, &stopped, step))?;
    Ok(HlogRecorder { stop: Some(stop), thread: Some(thread) })
}

/// A running [`spawn_recorder`] thread; dropping it stops it (see there).
pub struct HlogRecorder {
    /// Never sent on: dropping it is the signal to stop.
    stop: Option<mpsc::Sender<Infallible>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl HlogRecorder {
    /// Stops the thread as dropping does, and returns the first error it met.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        drop(self.stop.take());
        match self.thread.take() {
            Some(thread) => {
                thread.join().unwrap_or_else(|_| Err(io::Error::other("hlog: panicked")))
            }
            None => Ok(()),
        }
    }
}

impl Drop for HlogRecorder {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

fn recorder_run<F>(
    mut log: HlogWriter,
    interval: Duration,
    stopped: &mpsc::Receiver<Infallible>,
    mut step: F,
) -> io::Result<()>
where
    F: FnMut(&mut HlogWriter, SystemTime) -> io::Result<()>,
{
    let mut next = Instant::now() + interval;
    loop {
        match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Ok(never) => match never {},
        }
        step(&mut log, SystemTime::now())?;
        log.flush()?;
        // Ticks missed (a slow step) are skipped, not caught up.
        next = (next + interval).max(Instant::now());
    }
    step(&mut log, SystemTime::now())?;
    log.flush()
}

/// An empty histogram with the bucket layout of histograms with this `low` and `sigfig`, which
/// grows as values are added (so it is only as large as the largest value seen needs).
fn empty_like(low: u64, sigfig: u8) -> Histogram<u64> {
    // `low` and `sigfig` come from a valid histogram (or are 1 and 3), and `high` is 2 * low:
    // the bounds `new_with_bounds` accepts.
    let mut h = Histogram::new_with_bounds(low, low.saturating_mul(2), sigfig)
        .expect("bounds of a valid histogram");
    h.auto(true);
    h
}

/// Sets `target` to `cumulative - previous`, or to `cumulative` when that is not a
/// difference (`previous` has counts `cumulative` lacks: the source restarted).
fn difference(
    target: &mut Histogram<u64>,
    previous: &Histogram<u64>,
    cumulative: &Histogram<u64>,
) -> io::Result<()> {
    target.reset();
    target.add(cumulative).map_err(invalid_data)?;
    if target.subtract(previous).is_err() {
        target.reset();
        target.add(cumulative).map_err(invalid_data)?;
    }
    debug_assert!(target.len() <= cumulative.len());
    Ok(())
}

fn write_error(e: IntervalLogWriterError<V2DeflateSerializeError>) -> io::Error {
    match e {
        IntervalLogWriterError::IoError(e) => e,
        IntervalLogWriterError::SerializeError(e) => io::Error::other(format!("hlog: {e}")),
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn invalid_data(e: impl std::fmt::Debug) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("hlog: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("shard-hlog-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// (tag, start, length) of each interval line.
    fn columns(path: &Path) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        let rows = text.lines().filter(|l| l.starts_with("Tag="));
        rows.map(|l| {
            let c: Vec<&str> = l.trim_start_matches("Tag=").split(',').collect();
            (c[0].to_string(), c[1].to_string(), c[2].to_string())
        })
        .collect()
    }

    #[test]
    fn tags_lose_what_the_format_refuses() {
        assert_eq!(sanitize_tag("disk=vda;read_latency_us"), "disk=vda;read_latency_us");
        assert_eq!(sanitize_tag("a b,c\td\r\ne"), "a_b_c_d__e");
        assert_eq!(sanitize_tag(""), "_");
        let long = sanitize_tag(&"é".repeat(TAG_BYTES_MAX));
        assert_eq!(long.len(), TAG_BYTES_MAX);
        let odd = sanitize_tag(&format!("x{}", "é".repeat(TAG_BYTES_MAX)));
        assert_eq!(odd.len(), TAG_BYTES_MAX - 1, "cut at a character boundary");
        assert!(Tag::new(&odd).is_some());
    }

    #[test]
    fn difference_or_everything_after_a_restart() {
        let mut previous = Histogram::<u64>::new(3).unwrap();
        previous.record_n(10, 4).unwrap();
        let mut cumulative = previous.clone();
        cumulative.record_n(1_000, 2).unwrap();
        let mut target = empty_like(1, 3);
        difference(&mut target, &previous, &cumulative).unwrap();
        assert_eq!((target.len(), target.min(), target.max()), (2, 1_000, 1_000));

        let mut restarted = Histogram::<u64>::new(3).unwrap();
        restarted.record(10).unwrap();
        difference(&mut target, &previous, &restarted).unwrap();
        assert_eq!((target.len(), target.max()), (1, 10));
    }

    #[test]
    fn refused_tags_write_nothing() {
        let path = temp_path("refused.hlog");
        let mut log = HlogWriter::create(&path).unwrap();
        let h = Histogram::<u64>::new(1).unwrap();
        log.flush().unwrap();
        let header_bytes = std::fs::metadata(&path).unwrap().len();

        let twice = [("a b".to_string(), &h), ("a_b".to_string(), &h)];
        let err = log.record(SystemTime::now(), &twice).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let tags: Vec<(String, &Histogram<u64>)> =
            (0..TAGS_MAX).map(|i| (format!("t{i}"), &h)).collect();
        log.record(SystemTime::now(), &tags).unwrap();
        // The same tags again are fine, one more is not.
        log.record(SystemTime::now(), &tags).unwrap();
        let one_more = [("t0".to_string(), &h), ("new".to_string(), &h)];
        let err = log.record(SystemTime::now(), &one_more).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        log.flush().unwrap();
        assert_eq!(columns(&path).len(), 2 * TAGS_MAX);
        assert!(std::fs::metadata(&path).unwrap().len() > header_bytes);
    }

    #[test]
    fn a_clock_going_back_gives_an_empty_interval() {
        let path = temp_path("back.hlog");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut log = HlogWriter::create_at(&path, t0).unwrap();
        let h = Histogram::<u64>::new(3).unwrap();
        log.record(t0 + Duration::from_secs(2), &[("x".into(), &h)]).unwrap();
        log.record(t0 + Duration::from_secs(1), &[("x".into(), &h)]).unwrap();
        log.record(t0 + Duration::from_secs(3), &[("x".into(), &h)]).unwrap();
        log.flush().unwrap();
        let starts_lengths: Vec<(String, String)> =
            columns(&path).into_iter().map(|(_, s, l)| (s, l)).collect();
        let expected = [("0.000", "2.000"), ("2.000", "0.000"), ("2.000", "1.000")];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(s, l)| (s.to_string(), l.to_string())).collect();
        assert_eq!(starts_lengths, expected);
    }
}
