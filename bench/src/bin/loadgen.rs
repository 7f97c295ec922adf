//! `loadgen`: drives the engine (one shard per disk, io_uring) with challenges and reports
//! throughput and latency, as text and JSON (`loadgen --help` lists the options).
//!
//! `--hlog FILE` also writes an HdrHistogram interval log (`shard::hlog`; read it with
//! `HistogramLogProcessor` or `hdrhistogram::serialization::interval_log`): from the first
//! challenge on, every `--hlog-interval-ms` and once at the end, what each shard's four engine
//! histograms (tags `<metric>.<disk>`, e.g. `read_latency_us.vda`) and the per-challenge latency
//! (tag `challenge`) gained in that interval, in microseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use disk_io::{uring::UringBackend, DirectIo};
use hdrhistogram::Histogram;
use plot_format::Mode;
use shard::hlog::{self, HlogRecorder};
use shard::{
    Command, Event, Job, JobStatus, MetricsHandle, MonotonicClock, PlotKey, Shard, ShardConfig,
    Snapshot, Work,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Cache {
    /// Buffered reads, after reading every file once.
    Warm,
    /// O_DIRECT: the page cache is bypassed.
    Cold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LookupMode {
    /// Exactly chiapos' answers.
    Chiapos,
    /// Every table-7 entry of the challenge, also those chiapos misses.
    Complete,
}

/// Drives the engine (one shard per disk, io_uring) with challenges and reports throughput and
/// latency, as text on stdout and, with --json, as JSON.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// A plot file, or a folder searched for *.plot files; repeat for more.
    #[arg(long, value_name = "PATH", required = true)]
    plots: Vec<PathBuf>,
    /// Serve every plot N times (under distinct keys, the same file), so that thousands of
    /// plots fit on a small machine.
    #[arg(long, default_value_t = 1, value_name = "N")]
    copies: usize,
    /// Challenges to send (challenge i is sha256("loadgen" || i as 4 bytes, big-endian)).
    #[arg(long, default_value_t = 100, value_name = "M")]
    challenges: u32,
    /// Most reads in flight per disk (never more than the device queues; shared by the disk's
    /// shards).
    #[arg(long, default_value_t = 64, value_name = "Q")]
    reads_in_flight: usize,
    /// The page cache: warm (buffered) or cold (O_DIRECT).
    #[arg(long, value_enum, default_value_t = Cache::Warm)]
    cache: Cache,
    /// Which answers a lookup finds.
    #[arg(long, value_enum, default_value_t = LookupMode::Chiapos)]
    mode: LookupMode,
    /// Fetch every quality's full proof too.
    #[arg(long)]
    proofs: bool,
    /// Challenges in flight at once.
    #[arg(long, default_value_t = 4, value_name = "C",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    concurrency: usize,
    /// Every challenge job's budget, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "D")]
    deadline_ms: u64,
    /// Each shard thread moves itself into the cgroup-v1 blkio group
    /// /sys/fs/cgroup/blkio/PREFIX-<disk> (<disk> as disk_io::device::disk_of names it, e.g.
    /// loop3) if that folder exists, before its ring is made; a failed move stops loadgen. The
    /// report adds per-disk figures.
    #[arg(long, value_name = "PREFIX")]
    blkio_cgroup_prefix: Option<String>,
    /// Pace the challenges: challenge i no earlier than i / PER_SEC seconds after the start
    /// (still at most --concurrency in flight), to compare with a paced farmer. Default: as
    /// fast as --concurrency allows.
    #[arg(long, value_name = "PER_SEC", value_parser = rate)]
    rate: Option<f64>,
    /// Shards (threads and rings) per disk, splitting its plots and its queue depth: for fast
    /// disks where one decoding thread is the limit.
    #[arg(long, default_value_t = 1, value_name = "S",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    shards_per_disk: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an HdrHistogram interval log here (each shard's engine histograms and the
    /// per-challenge latency, in microseconds).
    #[arg(long, value_name = "FILE")]
    hlog: Option<PathBuf>,
    /// The --hlog interval, in milliseconds.
    #[arg(long, default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    hlog_interval_ms: u64,
}

fn rate(text: &str) -> Result<f64, String> {
    let r: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(r.is_finite() && r > 0.0) {
        return Err("challenges per second, > 0".into());
    }
    Ok(r)
}

fn find_plots(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), out);
                }
            }
        } else if p.extension().is_some_and(|e| e == "plot") {
            out.push(p.to_owned());
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out.sort();
    out
}

fn rusage() -> (f64, u64) {
    // CPU seconds and peak RSS from /proc (no unsafe here).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, hwm * 1024)
}

/// Moves the calling thread into the cgroup-v1 group `dir` (its TID into `tasks`).
fn join_cgroup(dir: &Path) -> std::io::Result<()> {
    let link = std::fs::read_link("/proc/thread-self")?;
    let tid = link.file_name().and_then(|t| t.to_str()).unwrap_or_default();
    let tasks = dir.join("tasks");
    std::fs::write(&tasks, tid).map_err(|e| {
        std::io::Error::new(e.kind(), format!("writing TID {tid} to {}: {e}", tasks.display()))
    })
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    let cold = args.cache == Cache::Cold;
    let mode = match args.mode {
        LookupMode::Chiapos => Mode::Chiapos,
        LookupMode::Complete => Mode::Complete,
    };
    let deadline = Duration::from_millis(args.deadline_ms);
    // The engine's warnings (submit failures, O_DIRECT fallbacks) on stderr; RUST_LOG for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let files = find_plots(&args.plots);
    if files.is_empty() {
        eprintln!("no plots found");
        std::process::exit(2);
    }
    if !cold {
        for f in &files {
            let _ = std::fs::read(f);
        }
    }
    // Group files by disk: one shard each.
    let mut by_disk: HashMap<String, (usize, Vec<PathBuf>)> = HashMap::new();
    for f in &files {
        let (key, depth) = match disk_io::device::disk_of(f) {
            Ok(d) => (d.key, d.queue_depth_max as usize),
            Err(_) => ("unknown".into(), args.reads_in_flight),
        };
        by_disk.entry(key).or_insert_with(|| (depth, Vec::new())).1.push(f.clone());
    }
    // One clock for every shard and for the deadlines written here.
    let clock = MonotonicClock::default();
    let open_started = Instant::now();
    let mut shards = Vec::new();
    // Per shard: plots served and the cgroup its thread joined.
    let mut shard_info: Vec<(u64, Option<PathBuf>)> = Vec::new();
    let mut plot_count = 0u64;
    let parts = args.shards_per_disk;
    for ((disk, (device_depth, paths)), part) in
        by_disk.into_iter().flat_map(|d| (0..parts).map(move |p| (d.clone(), p)))
    {
        // Never more reads in flight than the device queues (shared by the disk's shards).
        let depth = args.reads_in_flight.min(device_depth.max(1)).div_ceil(parts).max(1);
        let name = if parts > 1 { format!("{disk}#{part}") } else { disk.clone() };
        let config = ShardConfig {
            name: name.clone(),
            direct_io: if cold { DirectIo::Prefer } else { DirectIo::Off },
            ..ShardConfig::default()
        };
        let cgroup = args
            .blkio_cgroup_prefix
            .as_ref()
            .map(|p| PathBuf::from(format!("/sys/fs/cgroup/blkio/{p}-{disk}")))
            .filter(|dir| dir.is_dir());
        let joins = cgroup.clone();
        let make = move || {
            if let Some(dir) = &joins {
                join_cgroup(dir)?;
            }
            UringBackend::new(depth)
        };
        let handle = Shard::spawn(config, make, clock, 1024, 65536)
            .unwrap_or_else(|e| panic!("shard for {name}: {e}"));
        let plots_before = plot_count;
        for (i, path) in paths.iter().enumerate() {
            for copy in 0..args.copies {
                // With several shards per disk, each takes every `parts`-th plot.
                if (i * args.copies + copy) % parts != part {
                    continue;
                }
                // Every copy is opened and indexed on its own, as distinct files would be.
                let plot = match shard::open_plot(path).map(|(_, plot)| plot) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        break;
                    }
                };
                let key = PlotKey(plot_count);
                plot_count += 1;
                let cmd = Command::AddPlot { key, path: path.clone(), plot: Box::new(plot) };
                handle.commands.send(cmd).expect("shard alive");
            }
        }
        shards.push(handle);
        shard_info.push((plot_count - plots_before, cgroup));
    }
    // A job over no plots: its answer means every AddPlot before it was handled.
    for s in &shards {
        let work =
            Work::Qualities { challenge: [0; 32], plots: Some(Vec::new()), mode, proofs: false };
        let job = Job { id: u64::MAX, work, deadline: Duration::from_secs(3600), reply: None };
        s.commands.send(Command::Job(job)).expect("shard alive");
        loop {
            if let Ok(Event::JobDone { job: u64::MAX, .. }) = s.events.recv() {
                break;
            }
        }
    }
    let open_seconds = open_started.elapsed().as_secs_f64();
    let (cpu0, _) = rusage();
    let challenges: Vec<[u8; 32]> = (0..args.challenges)
        .map(|i| {
            use sha2::{Digest, Sha256};
            Sha256::digest([b"loadgen".as_slice(), &i.to_be_bytes()].concat()).into()
        })
        .collect();
    let per_challenge = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    // Shared with the --hlog recorder thread.
    let per_challenge = Arc::new(Mutex::new(per_challenge));
    let hlog = args.hlog.as_ref().map(|path| {
        hlog_start(path, Duration::from_millis(args.hlog_interval_ms), &shards, &per_challenge)
            .unwrap_or_else(|e| panic!("--hlog {}: {e}", path.display()))
    });
    let started = Instant::now();
    let mut next = 0usize;
    let mut in_flight: HashMap<u64, (Instant, usize)> = HashMap::new();
    let (mut qualities, mut proofs, mut timeouts, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut rejected = 0u64;
    // Per shard: lookups its jobs left unanswered (timed out or rejected).
    let mut unanswered_by_shard = vec![0u64; shards.len()];
    let sel = crossbeam_channel_select(&shards);
    while next < challenges.len() || !in_flight.is_empty() {
        // With --rate, challenge i is sent no earlier than i / rate seconds after the start.
        let due = |i: usize| args.rate.map(|r| started + Duration::from_secs_f64(i as f64 / r));
        while next < challenges.len()
            && in_flight.len() < args.concurrency
            && due(next).is_none_or(|t| Instant::now() >= t)
        {
            let id = next as u64;
            let work = Work::Qualities {
                challenge: challenges[next],
                plots: None,
                mode,
                proofs: args.proofs,
            };
            for s in &shards {
                let job = Job {
                    id,
                    work: work.clone(),
                    deadline: shard::Clock::now(&clock) + deadline,
                    reply: None,
                };
                s.commands.send(Command::Job(job)).expect("shard alive");
            }
            in_flight.insert(id, (Instant::now(), shards.len()));
            next += 1;
        }
        let wake = if next < challenges.len() && in_flight.len() < args.concurrency {
            due(next)
        } else {
            None
        };
        if in_flight.is_empty() {
            if let Some(t) = wake {
                std::thread::sleep(t.saturating_duration_since(Instant::now()));
            }
            continue;
        }
        let Some((from, event)) = sel(&shards, wake) else { continue };
        match event {
            Event::Found { found, .. } => {
                qualities += found.len() as u64;
                proofs += found.iter().filter(|f| f.proof.is_some()).count() as u64;
            }
            Event::PlotFailed { .. } => errors += 1,
            Event::JobDone { job, status } => {
                match status {
                    JobStatus::TimedOut { unanswered } => {
                        timeouts += 1;
                        unanswered_by_shard[from] += u64::from(unanswered);
                    }
                    JobStatus::Rejected { .. } => {
                        rejected += 1;
                        unanswered_by_shard[from] += shard_info[from].0;
                    }
                    _ => {}
                }
                if let Some(entry) = in_flight.get_mut(&job) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        let us = entry.0.elapsed().as_micros() as u64;
                        lock(&per_challenge).saturating_record(us.max(1));
                        in_flight.remove(&job);
                    }
                }
            }
            _ => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu1, rss) = rusage();
    let per_challenge = lock(&per_challenge).clone();
    let mut reads = 0u64;
    let mut read_bytes = 0u64;
    let mut read_sizes = [0u64; shard::READ_SIZE_BUCKETS];
    let mut read_hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let mut disks = Vec::new();
    // Let each shard publish its final metrics.
    std::thread::sleep(Duration::from_millis(250));
    if let Some(recorder) = hlog {
        // The last interval: the shards' final metrics.
        if let Err(e) = recorder.finish() {
            eprintln!("--hlog: {e}");
        }
    }
    let mut lookups_answered = 0u64;
    for ((s, (plots, cgroup)), unanswered) in
        shards.iter().zip(&shard_info).zip(&unanswered_by_shard)
    {
        // Lookups answered by this shard (an entry list or an error, before the deadline).
        let answered = (plots * u64::from(args.challenges)).saturating_sub(*unanswered);
        lookups_answered += answered;
        let snap = s.metrics.snapshot();
        let c = &snap.counters;
        reads += c.reads;
        read_bytes += c.read_bytes;
        for (sum, n) in read_sizes.iter_mut().zip(c.read_sizes_blocks) {
            *sum += n;
        }
        let h = &snap.histograms.read_latency_us;
        let _ = read_hist.add(h);
        disks.push(serde_json::json!({
            "disk": s.name, "cgroup": cgroup, "plots": plots, "reads": c.reads,
            "read_iops": c.reads as f64 / seconds, "read_ms_p50": q(h, 0.5), "read_ms_p99": q(h, 0.99),
            "jobs_timed_out": c.jobs_timed_out, "jobs_rejected": c.jobs_rejected,
            "degraded_episodes": c.degraded_episodes,
            "lookups_answered": answered, "lookups_answered_per_second": answered as f64 / seconds,
        }));
    }
    disks.sort_by(|a, b| a["disk"].as_str().cmp(&b["disk"].as_str()));
    let lookups = plot_count * u64::from(args.challenges);
    let report = serde_json::json!({
        "plots": plot_count, "files": files.len(), "shards": shards.len(),
        "challenges": args.challenges, "cache": if cold { "cold (O_DIRECT)" } else { "warm" },
        "mode": format!("{mode:?}"), "proofs": args.proofs,
        "reads_in_flight_max": args.reads_in_flight, "concurrency": args.concurrency,
        "deadline_ms": args.deadline_ms,
        "seconds": seconds, "lookups": lookups, "lookups_per_second": lookups as f64 / seconds,
        "lookups_answered": lookups_answered,
        "lookups_answered_per_second": lookups_answered as f64 / seconds,
        "challenges_per_second": f64::from(args.challenges) / seconds,
        "reads": reads, "read_iops": reads as f64 / seconds,
        "read_bytes_mean": read_bytes as f64 / (reads.max(1) as f64),
        "read_sizes_blocks": read_sizes, "fio_bssplit": fio_bssplit(&read_sizes),
        "qualities": qualities, "proofs_found": proofs, "timeouts": timeouts, "rejected": rejected, "plot_errors": errors,
        "challenge_ms": {"p50": q(&per_challenge, 0.5), "p99": q(&per_challenge, 0.99), "p999": q(&per_challenge, 0.999), "max": per_challenge.max() as f64 / 1000.0},
        "read_ms": {"p50": q(&read_hist, 0.5), "p99": q(&read_hist, 0.99), "p999": q(&read_hist, 0.999), "max": read_hist.max() as f64 / 1000.0},
        "cpu_seconds": cpu1 - cpu0, "peak_rss_bytes": rss, "open_files": open_files(),
        "open_and_index_seconds": open_seconds, "disks": disks,
    });
    println!(
        "{} plots ({} files, {} shards), {} challenges, {}: {:.0} lookups/s, {:.0} read IOPS, challenge p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms; read p50 {:.3} ms p99 {:.3} ms; CPU {:.2} s, peak RSS {:.1} MiB, {} open files, opened in {:.2} s",
        plot_count, files.len(), shards.len(), args.challenges, report["cache"].as_str().unwrap_or(""),
        lookups as f64 / seconds, reads as f64 / seconds,
        q(&per_challenge, 0.5), q(&per_challenge, 0.99), q(&per_challenge, 0.999), per_challenge.max() as f64 / 1000.0,
        q(&read_hist, 0.5), q(&read_hist, 0.99), cpu1 - cpu0, rss as f64 / 1048576.0, open_files(), open_seconds,
    );
    if timeouts + rejected > 0 {
        println!("jobs timed out {timeouts}, rejected {rejected}");
    }
    for d in &disks {
        println!(
            "  disk {} (cgroup {}): {} plots, {} reads, {:.0} read IOPS, read p50 {:.2} ms p99 {:.2} ms, timed out {}, rejected {}, degraded {}x",
            d["disk"].as_str().unwrap_or(""), d["cgroup"].as_str().unwrap_or("none"), d["plots"], d["reads"],
            d["read_iops"].as_f64().unwrap_or(0.0), d["read_ms_p50"].as_f64().unwrap_or(0.0),
            d["read_ms_p99"].as_f64().unwrap_or(0.0), d["jobs_timed_out"], d["jobs_rejected"], d["degraded_episodes"],
        );
    }
    if let Some(path) = args.json {
        std::fs::write(&path, report.to_string())
            .unwrap_or_else(|e| eprintln!("{}: {e}", path.display()));
    }
    for s in shards {
        drop(s.commands);
        let _ = s.thread.join();
    }
}

/// Starts the `--hlog` recorder: each interval, every shard's engine histograms (in disk order)
/// and the per-challenge latency, as one `record` call.
fn hlog_start(
    path: &Path,
    interval: Duration,
    shards: &[shard::ShardHandle],
    per_challenge: &Arc<Mutex<Histogram<u64>>>,
) -> std::io::Result<HlogRecorder> {
    let mut metrics: Vec<(String, MetricsHandle)> =
        shards.iter().map(|s| (s.name.clone(), s.metrics.clone())).collect();
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    let per_challenge = Arc::clone(per_challenge);
    hlog::spawn_recorder_with(path, interval, move |log, now| {
        let snapshots: Vec<(String, Snapshot)> =
            metrics.iter().map(|(disk, m)| (disk.clone(), m.snapshot())).collect();
        let challenge = lock(&per_challenge).clone();
        let mut tags = hlog::shard_tags(&snapshots);
        tags.push(("challenge".to_string(), &challenge));
        log.record(now, &tags)
    })
}

/// The per-challenge histogram; a panic elsewhere leaves it usable (it is only counts).
fn lock(h: &Mutex<Histogram<u64>>) -> MutexGuard<'_, Histogram<u64>> {
    h.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits for the next event of any shard.
/// Waits for the next event of any shard, until `until` at the latest (then `None`).
fn crossbeam_channel_select(
    _: &[shard::ShardHandle],
) -> impl Fn(&[shard::ShardHandle], Option<Instant>) -> Option<(usize, Event)> {
    |shards: &[shard::ShardHandle], until: Option<Instant>| {
        let mut sel = crossbeam_channel::Select::new();
        for s in shards {
            sel.recv(&s.events);
        }
        let op = match until {
            Some(t) => sel.select_deadline(t).ok()?,
            None => sel.select(),
        };
        let i = op.index();
        let event = op.recv(&shards[i].events).expect("shard alive");
        Some((i, event))
    }
}

/// The mix of read sizes as fio's `--bssplit` (`4k/62:8k/31:12k/7`): whole percents that add
/// up to 100. Rounding goes to the commonest size (the smallest on ties); sizes under half a
/// percent are left out. The last bucket (16 blocks and more) stands for 16 blocks.
fn fio_bssplit(read_sizes_blocks: &[u64]) -> String {
    let total: u64 = read_sizes_blocks.iter().sum();
    if total == 0 {
        return String::new();
    }
    let mut parts: Vec<(u64, u64)> = read_sizes_blocks
        .iter()
        .zip(1u64..)
        .map(|(&n, blocks)| (blocks, (n * 100 + total / 2) / total))
        .filter(|&(_, pct)| pct > 0)
        .collect();
    let sum: u64 = parts.iter().map(|p| p.1).sum();
    let top = parts.iter().map(|p| p.1).max().unwrap_or(0);
    if let Some(top) = parts.iter_mut().find(|p| p.1 == top) {
        // The rounding error of at most one percent per bucket; `sum` is near 100.
        top.1 = (top.1 + 100).saturating_sub(sum);
    }
    parts
        .iter()
        .map(|(blocks, pct)| format!("{}k/{pct}", blocks * shard::READ_SIZE_BLOCK_BYTES / 1024))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::fio_bssplit;

    #[test]
    fn bssplit_adds_up_to_100() {
        assert_eq!(fio_bssplit(&[]), "");
        assert_eq!(fio_bssplit(&[3, 0, 1]), "4k/75:12k/25");
        assert_eq!(fio_bssplit(&[1, 1, 1]), "4k/34:8k/33:12k/33");
        assert_eq!(fio_bssplit(&[1000, 2, 500]), "4k/67:12k/33");
        let split = fio_bssplit(&[7, 11, 13, 17, 19, 23]);
        let sum: u64 = split
            .split(':')
            .map(|p| p.split('/').nth(1).expect("k/pct").parse::<u64>().expect("pct"))
            .sum();
        assert_eq!(sum, 100, "{split}");
    }
}
