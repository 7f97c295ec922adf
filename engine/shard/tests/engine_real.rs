//! The engine on the real kernel: its answers equal the plain decoder's on the fixture plots,
//! through io_uring and pread, with O_DIRECT and with buffered reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use disk_io::{pread::PreadBackend, uring::UringBackend, Backend, DirectIo};
use plot_format::{Found, Goal, Mode, Plot};
use shard::{Command, Event, Job, JobStatus, MonotonicClock, PlotKey, Shard, ShardConfig, Work};

fn open(path: &Path) -> (File, Plot) {
    shard::open_plot(path).expect("valid plot")
}

fn direct(file: &File, plot: &Plot, challenge: &[u8; 32], goal: Goal, mode: Mode) -> Vec<Found> {
    shard::lookup_file(file, plot, challenge, goal, mode)
        .expect("read")
        .expect("fixture lookups succeed")
}

fn challenges(n: u32) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    (0..n)
        .map(|i| Sha256::digest([b"engine".as_slice(), &i.to_be_bytes()].concat()).into())
        .collect()
}

/// Runs jobs through a shard and returns, per job, the found entries by plot.
fn run_engine<B, F>(
    make: F,
    direct_io: DirectIo,
    jobs: Vec<Work>,
    plots: &[PathBuf],
) -> (Vec<BTreeMap<u64, Vec<Found>>>, shard::Counters)
where
    B: Backend + 'static,
    F: FnOnce() -> std::io::Result<B> + Send + 'static,
{
    let config = ShardConfig { name: "test".into(), direct_io, ..ShardConfig::default() };
    let handle =
        Shard::spawn(config, make, MonotonicClock::default(), 64, 1024).expect("shard starts");
    for (i, path) in plots.iter().enumerate() {
        let (_, plot) = open(path);
        handle
            .commands
            .send(Command::AddPlot {
                key: PlotKey(i as u64),
                path: path.clone(),
                plot: Box::new(plot),
            })
            .expect("send");
    }
    let n = jobs.len();
    for (id, work) in jobs.into_iter().enumerate() {
        let deadline = Duration::from_secs(3600);
        handle
            .commands
            .send(Command::Job(Job { id: id as u64, work, deadline, reply: None }))
            .expect("send");
    }
    let mut results = vec![BTreeMap::new(); n];
    let mut done = 0;
    while done < n {
        match handle.events.recv_timeout(Duration::from_secs(60)).expect("events arrive") {
            Event::Found { job, plot, found } => {
                assert!(
                    results[job as usize].insert(plot.0, found).is_none(),
                    "one answer per plot"
                );
            }
            Event::PlotFailed { job, plot, error } => panic!("job {job} plot {plot:?}: {error}"),
            Event::JobDone { status, .. } => {
                assert_eq!(status, JobStatus::Complete);
                done += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(handle.commands);
    handle.thread.join().expect("shard thread");
    (results, handle.metrics.snapshot().counters)
}

fn check_backend<B, F>(make: F, direct_io: DirectIo)
where
    B: Backend + 'static,
    F: FnOnce() -> std::io::Result<B> + Send + 'static,
{
    let plots = test_support::fixture_plots();
    let opened: Vec<(File, Plot)> = plots.iter().map(|p| open(p)).collect();
    let set = challenges(60);
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (i, c) in set.iter().enumerate() {
        let (mode, proofs) =
            if i % 2 == 0 { (Mode::Chiapos, false) } else { (Mode::Complete, true) };
        jobs.push(Work::Qualities { challenge: *c, plots: None, mode, proofs });
        let goal = if proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
        let mut want = BTreeMap::new();
        for (key, (file, plot)) in opened.iter().enumerate() {
            let found = direct(file, plot, c, goal, mode);
            if !found.is_empty() {
                want.insert(key as u64, found);
            }
        }
        expected.push(want);
    }
    // Single proofs by index, as the farmer asks for them.
    for (key, (file, plot)) in opened.iter().enumerate() {
        for c in set.iter().take(10) {
            let found = direct(file, plot, c, Goal::Qualities, Mode::Chiapos);
            for f in found {
                jobs.push(Work::Proof {
                    plot: PlotKey(key as u64),
                    challenge: *c,
                    index: f.index,
                    mode: Mode::Chiapos,
                });
                let proof = direct(file, plot, c, Goal::Proof { index: f.index }, Mode::Chiapos);
                expected.push(BTreeMap::from([(key as u64, proof)]));
            }
        }
    }
    let (got, counters) = run_engine(make, direct_io, jobs, &plots);
    // Lookups running together read bytes of the same blocks (C1/C3/P7 neighbours, adjacent
    // parks of a proof walk): those reads are shared, and the answers stay exact.
    eprintln!("reads {} shared {}", counters.reads, counters.reads_coalesced);
    assert!(counters.reads_coalesced > 0, "no read shared: {counters:?}");
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "job {i}");
    }
}

#[test]
fn uring_direct_equals_the_decoder() {
    check_backend(|| UringBackend::new(64), DirectIo::Prefer);
}

#[test]
fn uring_buffered_equals_the_decoder() {
    check_backend(|| UringBackend::new(64), DirectIo::Off);
}

#[test]
fn pread_equals_the_decoder() {
    check_backend(|| Ok(PreadBackend::new(64)), DirectIo::Prefer);
}
