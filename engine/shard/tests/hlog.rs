//! `shard::hlog`: logs written from known cumulative histograms, read back with the
//! hdrhistogram crate's own interval-log parser and deserializer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use shard::hlog::{self, HlogWriter};
use shard::Snapshot;

/// One interval as read back.
#[derive(Debug)]
struct Interval {
    tag: String,
    start: Duration,
    length: Duration,
    max: f64,
    histogram: Histogram<u64>,
}

/// The StartTime, BaseTime and intervals of the log at `path`.
fn read_log(path: &Path) -> (Vec<Duration>, Vec<Duration>, Vec<Interval>) {
    let bytes = std::fs::read(path).unwrap();
    let (mut start_times, mut base_times, mut intervals) = (Vec::new(), Vec::new(), Vec::new());
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.unwrap() {
            LogEntry::StartTime(t) => start_times.push(t),
            LogEntry::BaseTime(t) => base_times.push(t),
            LogEntry::Interval(i) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let histogram = Deserializer::new().deserialize(&mut encoded.as_slice()).unwrap();
                intervals.push(Interval {
                    tag: i.tag().expect("every interval is tagged").to_string(),
                    start: i.start_timestamp(),
                    length: i.duration(),
                    max: i.max(),
                    histogram,
                });
            }
        }
    }
    (start_times, base_times, intervals)
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shard-hlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The engine's histogram shape: 1 us .. 1 hour, 3 significant digits.
fn histogram_us() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn recorded(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

/// `interval` holds exactly `expected`: same counts per value, same quantiles, same max.
fn check_same(interval: &Interval, expected: &Histogram<u64>) {
    let h = &interval.histogram;
    assert_eq!(h.len(), expected.len(), "{}", interval.tag);
    assert_eq!(recorded(h), recorded(expected), "{}", interval.tag);
    for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(h.value_at_quantile(q), expected.value_at_quantile(q), "{} q{q}", interval.tag);
    }
    assert_eq!(h.max(), expected.max());
    assert_eq!(interval.max, expected.max() as f64, "Interval_Max is in microseconds");
}

#[test]
fn two_intervals_hold_the_differences() {
    let path = temp_path("two.hlog");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_742_283_117);
    let mut log = HlogWriter::create_at(&path, t0).unwrap();

    let mut read = histogram_us();
    let mut challenge = histogram_us();
    for v in [10, 20, 20, 300, 4_000] {
        read.record(v).unwrap();
    }
    challenge.record_n(1_500, 3).unwrap();
    let read_1 = read.clone();
    let challenge_1 = challenge.clone();
    fn tags<'h>(
        read: &'h Histogram<u64>,
        challenge: &'h Histogram<u64>,
    ) -> Vec<(String, &'h Histogram<u64>)> {
        vec![("disk=vda;read latency,us".to_string(), read), ("challenge".to_string(), challenge)]
    }
    log.record(t0 + Duration::from_secs(1), &tags(&read, &challenge)).unwrap();

    for v in [20, 50_000, 50_000, 7] {
        read.record(v).unwrap();
    }
    // `challenge` gains nothing in the second interval.
    log.record(t0 + Duration::from_millis(2_500), &tags(&read, &challenge)).unwrap();
    log.flush().unwrap();
    drop(log);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#[Histogram log format version 1.3]");
    assert_eq!(lines[1], "#[Units: microseconds (histogram values and Interval_Max)]");
    assert_eq!(lines[2], "#[StartTime: 1795742283.117 (seconds since epoch)]");
    assert_eq!(lines[3], "#[BaseTime: 1795742283.117 (seconds since epoch)]");
    assert_eq!(
        lines[4],
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    );
    assert_eq!(lines.len(), 5 + 4);
    // Interval_Max is the highest value equivalent to 4,000 at 3 significant digits.
    assert!(lines[5].starts_with("Tag=disk=vda;read_latency_us,0.000,1.000,4001.000,HISTF"));

    let (start_times, base_times, intervals) = read_log(&path);
    let t0_epoch = t0.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(start_times, [t0_epoch]);
    assert_eq!(base_times, [t0_epoch]);
    let tags: Vec<&str> = intervals.iter().map(|i| i.tag.as_str()).collect();
    assert_eq!(tags, ["disk=vda;read_latency_us", "challenge"].repeat(2));

    let mut read_2 = read.clone();
    read_2.subtract(&read_1).unwrap();
    assert_eq!(read_2.len(), 4);
    let challenge_2 = histogram_us();
    check_same(&intervals[0], &read_1);
    check_same(&intervals[1], &challenge_1);
    check_same(&intervals[2], &read_2);
    check_same(&intervals[3], &challenge_2);

    for i in &intervals[..2] {
        assert_eq!((i.start, i.length), (Duration::ZERO, Duration::from_secs(1)));
    }
    for i in &intervals[2..] {
        assert_eq!((i.start, i.length), (Duration::from_secs(1), Duration::from_millis(1_500)));
    }
}

#[test]
fn a_histogram_that_went_back_is_logged_whole() {
    let path = temp_path("restart.hlog");
    let t0 = SystemTime::now();
    let mut log = HlogWriter::create_at(&path, t0).unwrap();
    let mut before = histogram_us();
    before.record_n(100, 10).unwrap();
    log.record(t0 + Duration::from_secs(1), &[("x".into(), &before)]).unwrap();
    // The source restarted: fewer counts than before.
    let mut after = histogram_us();
    after.record_n(100, 2).unwrap();
    after.record(9).unwrap();
    log.record(t0 + Duration::from_secs(2), &[("x".into(), &after)]).unwrap();
    after.record(9).unwrap();
    log.record(t0 + Duration::from_secs(3), &[("x".into(), &after)]).unwrap();
    drop(log);

    let (_, _, intervals) = read_log(&path);
    assert_eq!(intervals.len(), 3);
    check_same(&intervals[0], &before);
    check_same(&intervals[1], &{
        let mut h = histogram_us();
        h.record_n(100, 2).unwrap();
        h.record(9).unwrap();
        h
    });
    check_same(&intervals[2], &{
        let mut h = histogram_us();
        h.record(9).unwrap();
        h
    });
}

#[test]
fn shard_snapshots_log_four_metrics_per_disk() {
    let path = temp_path("shards.hlog");
    let t0 = SystemTime::now();
    let mut log = HlogWriter::create_at(&path, t0).unwrap();
    let mut vda = Snapshot::default();
    vda.histograms.read_latency_us.record(250).unwrap();
    vda.histograms.queue_wait_us.record(3).unwrap();
    let mut nvme = Snapshot::default();
    nvme.histograms.lookup_latency_us.record_n(900, 5).unwrap();
    nvme.histograms.proof_latency_us.record(70_000).unwrap();
    let shards = vec![("vda".to_string(), vda.clone()), ("nvme 0n1".to_string(), nvme.clone())];
    log.record_shards(t0 + Duration::from_secs(1), &shards).unwrap();
    log.record_shards(t0 + Duration::from_secs(2), &shards).unwrap();
    drop(log);

    let (_, _, intervals) = read_log(&path);
    let tags: Vec<&str> = intervals.iter().map(|i| i.tag.as_str()).collect();
    let expected = [
        "read_latency_us.vda",
        "lookup_latency_us.vda",
        "proof_latency_us.vda",
        "queue_wait_us.vda",
        "read_latency_us.nvme_0n1",
        "lookup_latency_us.nvme_0n1",
        "proof_latency_us.nvme_0n1",
        "queue_wait_us.nvme_0n1",
    ];
    assert_eq!(tags, expected.repeat(2));
    check_same(&intervals[0], &vda.histograms.read_latency_us);
    check_same(&intervals[3], &vda.histograms.queue_wait_us);
    check_same(&intervals[5], &nvme.histograms.lookup_latency_us);
    check_same(&intervals[6], &nvme.histograms.proof_latency_us);
    // Nothing new in the second interval.
    assert!(intervals[8..].iter().all(|i| i.histogram.is_empty() && i.max == 0.0));
}

#[test]
fn recorder_writes_every_interval_and_a_last_one() {
    let path = temp_path("recorder.hlog");
    let calls = Arc::new(AtomicUsize::new(0));
    let source_calls = Arc::clone(&calls);
    let mut snapshot = Snapshot::default();
    let source = move || {
        let n = source_calls.fetch_add(1, Ordering::SeqCst) as u64;
        snapshot.histograms.read_latency_us.record(100 + n).unwrap();
        vec![("vda".to_string(), snapshot.clone())]
    };
    let recorder = hlog::spawn_recorder(&path, Duration::from_millis(50), source).unwrap();
    // No timing assumption: wait (bounded) for two intervals, however slow the machine.
    test_support::wait_for("two intervals recorded", Duration::from_secs(30), || {
        calls.load(Ordering::SeqCst) >= 2
    });
    recorder.finish().unwrap();

    let calls = calls.load(Ordering::SeqCst);
    assert!(calls >= 3, "two intervals and the last one, got {calls}");
    let (_, _, intervals) = read_log(&path);
    let reads: Vec<&Interval> =
        intervals.iter().filter(|i| i.tag == "read_latency_us.vda").collect();
    assert_eq!(reads.len(), calls);
    assert_eq!(intervals.len(), 4 * calls);
    // One new value per interval; timestamps never go back.
    for (n, i) in reads.iter().enumerate() {
        assert_eq!(recorded(&i.histogram), [(100 + n as u64, 1)]);
    }
    for pair in reads.windows(2) {
        assert!(pair[1].start >= pair[0].start + pair[0].length - Duration::from_millis(2));
        assert!(pair[1].start > pair[0].start || pair[0].length.is_zero());
    }
}

#[test]
fn recorder_refuses_a_zero_interval() {
    let path = temp_path("zero.hlog");
    let err = hlog::spawn_recorder(&path, Duration::ZERO, Vec::new).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
