//! The shard against the simulated disk: deterministic faults, virtual time.
//!
//! Proves: every job gets exactly one `JobDone`, never after its deadline (plus one tick);
//! answers equal the plain decoder's when the disk is healthy; a hung disk is reported
//! degraded, rejects new work and recovers after a probe; no buffer is recycled before its
//! completion (the simulated disk asserts it); the shard's counters match the disk's.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use disk_io::Backend;
use plot_format::{Found, Goal, Mode, Plot};
use shard::{Clock, Command, Event, Job, JobStatus, PlotKey, Shard, ShardConfig, Work};
use sim_disk::{Faults, Latency, SimClock, SimConfig, SimDisk, SimHandle};

#[derive(Clone)]
struct VirtualClock(SimClock);

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        self.0.now()
    }
    fn is_real_time(&self) -> bool {
        false
    }
}

struct Fixture {
    path: PathBuf,
    bytes: Vec<u8>,
    plot: Plot,
}

fn fixtures() -> Vec<Fixture> {
    test_support::fixture_plots_named("k18")
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read fixture");
            let (_, plot) = shard::open_plot(&path).expect("valid plot");
            Fixture { path, bytes, plot }
        })
        .collect()
}

/// The plain decoder's answer, from the fixture's bytes in memory.
fn expected(f: &Fixture, challenge: &[u8; 32], goal: Goal, mode: Mode) -> Vec<Found> {
    test_support::plot::lookup_bytes(&f.plot, &f.bytes, challenge, goal, mode).expect("ok")
}

fn challenges(label: &str, n: u32) -> Vec<[u8; 32]> {
    use sha2::{Digest, Sha256};
    (0..n).map(|i| Sha256::digest([label.as_bytes(), &i.to_be_bytes()].concat()).into()).collect()
}

struct Rig {
    shard: Shard<SimDisk, VirtualClock>,
    disk: SimHandle,
    clock: SimClock,
    commands: Sender<Command>,
    events: Receiver<Event>,
}

fn rig(seed: u64, faults: Faults, fixtures: &[Fixture], reads_in_flight_max: usize) -> Rig {
    rig_with(seed, faults, fixtures, reads_in_flight_max, |_| {}, |_| {})
}

fn rig_with(
    seed: u64,
    faults: Faults,
    fixtures: &[Fixture],
    reads_in_flight_max: usize,
    disk_tweak: impl FnOnce(&mut SimConfig),
    tweak: impl FnOnce(&mut ShardConfig),
) -> Rig {
    let clock = SimClock::new();
    let mut config = SimConfig::new(seed, reads_in_flight_max);
    config.faults = faults;
    disk_tweak(&mut config);
    let disk = SimDisk::new(config, clock.clone());
    for f in fixtures {
        disk.add_file(&f.path, f.bytes.clone());
    }
    let handle = disk.handle();
    let (commands, command_rx) = crossbeam_channel::bounded(100_000);
    let (event_tx, events) = crossbeam_channel::bounded(100_000);
    let mut config = ShardConfig {
        name: format!("sim-{seed}"),
        probe_interval: Duration::from_millis(200),
        // Virtual time: never sleep on the command channel.
        idle_wait_max: Duration::ZERO,
        read_stuck_after: Duration::from_millis(90),
        ..ShardConfig::default()
    };
    tweak(&mut config);
    let shard = Shard::new(config, disk, VirtualClock(clock.clone()), command_rx, event_tx);
    for (i, f) in fixtures.iter().enumerate() {
        let plot = Box::new(f.plot.clone());
        commands
            .send(Command::AddPlot { key: PlotKey(i as u64), path: f.path.clone(), plot })
            .expect("send");
    }
    Rig { shard, disk: handle, clock, commands, events }
}

impl Rig {
    /// Ticks until every job is answered, collecting events with their virtual time.
    fn run(&mut self) -> Vec<(Duration, Event)> {
        self.run_while(|shard, _| shard.jobs_pending() > 0)
    }

    /// Ticks until every job is answered and every read has completed.
    fn drain(&mut self) -> Vec<(Duration, Event)> {
        self.run_while(|shard, _| shard.busy())
    }

    /// Ticks until an event matches `stop`.
    fn run_until(&mut self, stop: impl Fn(&Event) -> bool) -> Vec<(Duration, Event)> {
        self.run_while(|_, events| !events.iter().any(|(_, e)| stop(e)))
    }

    fn run_while(
        &mut self,
        go_on: impl Fn(&Shard<SimDisk, VirtualClock>, &[(Duration, Event)]) -> bool,
    ) -> Vec<(Duration, Event)> {
        let mut out = Vec::new();
        let mut ticks = 0u64;
        loop {
            if self.shard.backend().in_flight() == 0 {
                // Idle shards wait in real time; move virtual time on instead.
                self.clock.advance(Duration::from_millis(1));
            }
            self.shard.tick();
            while let Ok(e) = self.events.try_recv() {
                out.push((self.clock.now(), e));
            }
            if !self.commands.is_empty() || go_on(&self.shard, &out) {
                ticks += 1;
                assert!(ticks < 2_000_000, "the shard must not spin forever");
                continue;
            }
            return out;
        }
    }

    fn send(&self, job: Job) {
        self.commands.send(Command::Job(job)).expect("send");
    }
}

/// Checks exactly one JobDone per job, each no later than its deadline plus `tick` (the
/// shard's tick and the test's idle step).
fn check_outcomes(
    jobs: &HashMap<u64, Duration>,
    events: &[(Duration, Event)],
    tick: Duration,
) -> HashMap<u64, JobStatus> {
    let mut done = HashMap::new();
    for (at, e) in events {
        if let Event::JobDone { job, status } = e {
            assert!(done.insert(*job, status.clone()).is_none(), "job {job} answered twice");
            let deadline = jobs[job];
            assert!(*at <= deadline + tick, "job {job} answered at {at:?}, deadline {deadline:?}");
        }
        if let Event::Found { job, .. } | Event::PlotFailed { job, .. } = e {
            assert!(!done.contains_key(job), "job {job}: an answer after its JobDone");
        }
    }
    assert_eq!(done.len(), jobs.len(), "every job answered exactly once");
    done
}

#[test]
fn healthy_disk_answers_like_the_decoder() {
    let latency =
        Latency::Uniform { min: Duration::from_micros(80), max: Duration::from_millis(3) };
    answers_like_the_decoder(7, latency, "sim-healthy");
}

/// A disk that completes every read as it is submitted (a page cache behind O_DIRECT, say):
/// each refill during a batch finds the reads it submitted at the previous one finished, and
/// takes them into the batch being decoded. The answers and counters stay exact.
#[test]
fn reads_finished_while_a_batch_is_decoded_join_the_batch() {
    answers_like_the_decoder(8, Latency::Fixed(Duration::ZERO), "sim-instant");
}

/// Qualities (chiapos mode) and qualities with proofs (complete mode) of 40 challenges over
/// the k=18 fixtures, through the shard on a simulated disk: equal to the plain decoder's.
fn answers_like_the_decoder(seed: u64, latency: Latency, name: &str) {
    let fx = fixtures();
    let mut rig = rig(seed, Faults::with_latency(latency), &fx, 32);
    let set = challenges(name, 40);
    let mut deadlines = HashMap::new();
    let mut want: Vec<BTreeMap<u64, Vec<Found>>> = Vec::new();
    for (i, c) in set.iter().enumerate() {
        let (mode, proofs) =
            if i % 2 == 0 { (Mode::Chiapos, false) } else { (Mode::Complete, true) };
        let goal = if proofs { Goal::QualitiesAndProofs } else { Goal::Qualities };
        let deadline = Duration::from_secs(600);
        rig.send(Job {
            id: i as u64,
            work: Work::Qualities { challenge: *c, plots: None, mode, proofs },
            deadline,
            reply: None,
        });
        deadlines.insert(i as u64, deadline);
        let mut w = BTreeMap::new();
        for (k, f) in fx.iter().enumerate() {
            let found = expected(f, c, goal, mode);
            if !found.is_empty() {
                w.insert(k as u64, found);
            }
        }
        want.push(w);
    }
    let events = rig.run();
    let statuses = check_outcomes(&deadlines, &events, Duration::from_millis(2));
    assert!(statuses.values().all(|s| *s == JobStatus::Complete));
    let mut got: Vec<BTreeMap<u64, Vec<Found>>> = vec![BTreeMap::new(); set.len()];
    for (_, e) in events {
        match e {
            Event::Found { job, plot, found } => {
                got[job as usize].insert(plot.0, found);
            }
            Event::PlotFailed { job, plot, error } => panic!("job {job} plot {plot:?}: {error}"),
            _ => {}
        }
    }
    assert_eq!(got, want);
    // The shard's counters agree with the disk's.
    let snap = shard_snapshot(&mut rig);
    let stats = rig.disk.stats();
    stats.check();
    assert_eq!(snap.counters.reads, stats.reads_pushed);
    assert_eq!(snap.counters.read_bytes, stats.bytes_read);
    // Every read is in one size bucket, and the buckets bound the bytes from above.
    let sizes = &snap.counters.read_sizes_blocks;
    assert_eq!(sizes.iter().sum::<u64>(), stats.reads_pushed);
    let bucket_bytes: u64 = sizes.iter().zip(1u64..).map(|(n, blocks)| n * blocks * 4096).sum();
    assert!(sizes[sizes.len() - 1] == 0 && bucket_bytes >= stats.bytes_read, "{sizes:?}");
    assert_eq!(snap.counters.read_errors, 0);
    assert_eq!(stats.reads_completed, stats.reads_pushed);
    assert!(stats.in_flight_max_observed <= 32, "reads in flight never exceed the limit");
    assert_eq!(snap.histograms.lookup_latency_us.len(), set.len() as u64);
}

/// A job with a challenge of its own per plot (chia's pos challenge depends on the plot id)
/// gives each plot the decoder's answers for its own challenge, and only for the listed plots.
#[test]
fn a_challenge_per_plot_answers_like_the_decoder() {
    let fx = fixtures();
    let mut rig =
        rig(11, Faults::with_latency(Latency::Fixed(Duration::from_micros(300))), &fx, 16);
    let set = challenges("sim-each", 60);
    let mut deadlines = HashMap::new();
    let mut want: BTreeMap<u64, BTreeMap<u64, Vec<Found>>> = BTreeMap::new();
    for job in 0..20u64 {
        // Every plot but one, each with its own challenge.
        let skipped = job as usize % fx.len();
        let items: Vec<(PlotKey, [u8; 32])> = (0..fx.len())
            .filter(|i| *i != skipped)
            .map(|i| (PlotKey(i as u64), set[(job as usize * 3 + i) % set.len()]))
            .collect();
        let mut w = BTreeMap::new();
        for (key, challenge) in &items {
            let found = expected(&fx[key.0 as usize], challenge, Goal::Qualities, Mode::Chiapos);
            if !found.is_empty() {
                w.insert(key.0, found);
            }
        }
        want.insert(job, w);
        let deadline = Duration::from_secs(600);
        deadlines.insert(job, deadline);
        rig.send(Job {
            id: job,
            work: Work::QualitiesEach { items, mode: Mode::Chiapos, proofs: false },
            deadline,
            reply: None,
        });
    }
    let events = rig.run();
    let statuses = check_outcomes(&deadlines, &events, Duration::from_millis(2));
    assert!(statuses.values().all(|s| *s == JobStatus::Complete));
    let mut got: BTreeMap<u64, BTreeMap<u64, Vec<Found>>> =
        (0..20).map(|j| (j, BTreeMap::new())).collect();
    for (_, e) in events {
        match e {
            Event::Found { job, plot, found } => {
                assert!(got.get_mut(&job).expect("job").insert(plot.0, found).is_none());
            }
            Event::PlotFailed { job, plot, error } => panic!("job {job} plot {plot:?}: {error}"),
            _ => {}
        }
    }
    assert_eq!(got, want);
    assert!(want.values().map(|w| w.len()).sum::<usize>() > 20, "the run finds qualities");
}

/// Proofs are worth more than lookups: a full lookup queue never refuses a proof, proofs
/// have their own limit, and a proof's reads go ahead of every queued lookup read.
#[test]
fn proofs_go_ahead_of_lookups_and_have_their_own_limit() {
    let fx = fixtures();
    let latency =
        Latency::Uniform { min: Duration::from_micros(200), max: Duration::from_millis(1) };
    let mut rig = rig_with(
        3,
        Faults::with_latency(latency),
        &fx,
        1,
        |_| {},
        |c| {
            c.jobs_queued_max = 2;
            c.proof_jobs_queued_max = 3;
        },
    );
    // Proofs to fetch: the first entries the decoder finds for some challenges.
    let mut proofs = Vec::new();
    for c in challenges("sim-priority", 200) {
        for (k, f) in fx.iter().enumerate() {
            if let Some(found) = expected(f, &c, Goal::QualitiesAndProofs, Mode::Complete).first() {
                proofs.push((k, c, found.clone()));
            }
        }
        if proofs.len() >= 4 {
            break;
        }
    }
    proofs.truncate(4);
    assert_eq!(proofs.len(), 4, "the fixtures answer some of 200 challenges");
    let deadline = Duration::from_secs(600);
    let lookups = challenges("sim-priority-lookups", 3);
    for (i, c) in lookups.iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Complete, proofs: false };
        rig.send(Job { id: i as u64, work, deadline, reply: None });
    }
    for (i, (k, c, found)) in proofs.iter().enumerate() {
        let work = Work::Proof {
            plot: PlotKey(*k as u64),
            challenge: *c,
            index: found.index,
            mode: Mode::Complete,
        };
        rig.send(Job { id: 10 + i as u64, work, deadline, reply: None });
    }
    let events = rig.run();
    let done: Vec<(u64, JobStatus)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::JobDone { job, status } => Some((*job, status.clone())),
            _ => None,
        })
        .collect();
    let status = |job: u64| done.iter().find(|(j, _)| *j == job).map(|(_, s)| s.clone());
    // The third lookup is refused (two queued already); the fourth proof is refused (three
    // queued); the others are served.
    assert!(
        matches!(status(2), Some(JobStatus::Rejected { reason: shard::Rejection::LookupsFull })),
        "{done:?}"
    );
    assert!(matches!(status(13), Some(JobStatus::Rejected { .. })), "{done:?}");
    for job in [0, 1, 10, 11, 12] {
        assert_eq!(status(job), Some(JobStatus::Complete), "job {job}: {done:?}");
    }
    // Every proof finished before either lookup, though they came after.
    let order: Vec<u64> =
        done.iter().filter(|(_, s)| *s == JobStatus::Complete).map(|(j, _)| *j).collect();
    assert_eq!(&order[..3], &[10, 11, 12], "proofs first: {order:?}");
    for (i, (k, _, want)) in proofs.iter().take(3).enumerate() {
        let got = events.iter().find_map(|(_, e)| match e {
            Event::Found { job, plot, found } if *job == 10 + i as u64 => {
                Some((*plot, found.clone()))
            }
            _ => None,
        });
        let (plot, found) = got.expect("a proof job answers with its entry");
        assert_eq!(plot, PlotKey(*k as u64));
        let proof = found.iter().find(|f| f.index == want.index).and_then(|f| f.proof.clone());
        assert_eq!(proof, want.proof, "proof {i} equals the decoder's");
    }
    rig.disk.stats().check();
}

fn shard_snapshot(rig: &mut Rig) -> shard::Snapshot {
    // Publishing happens on ticks; force one with time moved past the publish interval.
    rig.clock.advance(Duration::from_secs(1));
    rig.shard.tick();
    rig.shard.metrics().snapshot()
}

/// Many jobs under every fault: exactly one outcome each, before its deadline; errors name
/// the plot; hung reads make the disk degraded; the buffer contract holds throughout.
#[test]
fn faults_never_break_the_one_outcome_rule() {
    let fx = fixtures();
    for seed in 1..=6u64 {
        let faults = Faults {
            latency: Latency::LongTail {
                min: Duration::from_micros(100),
                max: Duration::from_millis(4),
                slow_probability: 0.02,
                slow_min: Duration::from_millis(50),
                slow_max: Duration::from_millis(400),
            },
            eio_probability: 0.01,
            short_read_probability: 0.05,
            hang_probability: if seed % 2 == 0 { 0.002 } else { 0.0 },
            corrupt_probability: 0.0,
        };
        let mut rig = rig(seed, faults, &fx, 16);
        let set = challenges(&format!("sim-faults-{seed}"), 60);
        let mut deadlines = HashMap::new();
        for (i, c) in set.iter().enumerate() {
            let deadline = Duration::from_millis(50 + (i as u64 % 7) * 100);
            let work = if i % 5 == 0 {
                Work::Proof {
                    plot: PlotKey(i as u64 % fx.len() as u64),
                    challenge: *c,
                    index: 0,
                    mode: Mode::Complete,
                }
            } else {
                Work::Qualities {
                    challenge: *c,
                    plots: None,
                    mode: Mode::Complete,
                    proofs: i % 3 == 0,
                }
            };
            rig.send(Job { id: i as u64, work, deadline, reply: None });
            deadlines.insert(i as u64, deadline);
        }
        let events = rig.run();
        let statuses = check_outcomes(&deadlines, &events, Duration::from_millis(2));
        let timed_out =
            statuses.values().filter(|s| matches!(s, JobStatus::TimedOut { .. })).count();
        let errors = events.iter().filter(|(_, e)| matches!(e, Event::PlotFailed { .. })).count();
        let degraded = events.iter().any(|(_, e)| matches!(e, Event::DiskDegraded { .. }));
        eprintln!("seed {seed}: {} jobs, {timed_out} timed out, {errors} plot errors, degraded {degraded}", set.len());
        assert!(errors > 0, "EIO must surface as plot errors");
        if seed % 2 == 0 {
            // A few lost reads among many that complete: their jobs time out; the disk is
            // degraded only if lost reads fill its queue (then nothing completes).
            assert!(timed_out > 0, "hung reads must time their jobs out");
        }
        rig.disk.unhang();
        rig.drain();
        rig.disk.stats().check();
    }
}

/// A seeded run replays exactly: the same seed gives the same events at the same virtual
/// times, in the same order, under every fault (the shard iterates no map in hash order and
/// never sleeps in real time under the virtual clock).
#[test]
fn a_seed_replays_the_same_event_log() {
    let fx = fixtures();
    let run = |seed: u64| -> Vec<String> {
        let faults = Faults {
            latency: Latency::LongTail {
                min: Duration::from_micros(100),
                max: Duration::from_millis(4),
                slow_probability: 0.05,
                slow_min: Duration::from_millis(50),
                slow_max: Duration::from_millis(400),
            },
            eio_probability: 0.02,
            short_read_probability: 0.05,
            hang_probability: 0.01,
            corrupt_probability: 0.0,
        };
        let mut rig = rig(seed, faults, &fx, 8);
        for (i, c) in challenges("sim-replay", 40).iter().enumerate() {
            // Many jobs share a deadline, so several expire in one tick.
            let deadline = Duration::from_millis(100 * (1 + i as u64 % 3));
            let work =
                Work::Qualities { challenge: *c, plots: None, mode: Mode::Complete, proofs: false };
            rig.send(Job { id: 1000 - i as u64, work, deadline, reply: None });
        }
        let events = rig.run();
        rig.disk.unhang();
        let mut log: Vec<String> = events.iter().map(|(t, e)| format!("{t:?} {e:?}")).collect();
        log.extend(rig.drain().iter().map(|(t, e)| format!("{t:?} {e:?}")));
        log
    };
    let first = run(42);
    let timed_out = first.iter().filter(|l| l.contains("TimedOut")).count();
    assert!(timed_out >= 2, "the run expires several jobs together ({timed_out})");
    assert_eq!(first, run(42), "the same seed gives the same event log");
    assert_ne!(first, run(43), "another seed gives another");
}

/// Slow is not stuck: a disk that serves one read at a time (an HDD) in 20 to 40 ms, with 32
/// reads queued, keeps reads waiting about 1 s, far past `read_stuck_after` (90 ms here), but
/// completes one every 30 ms. It is never marked degraded, nothing is rejected and every job
/// completes with the decoder's answers. (Before, the first read older than `read_stuck_after`
/// flagged such a disk, and it flapped under load.)
#[test]
fn a_slow_disk_that_keeps_completing_reads_is_not_degraded() {
    let fx = fixtures();
    let latency =
        Latency::Uniform { min: Duration::from_millis(20), max: Duration::from_millis(40) };
    let hdd = |d: &mut SimConfig| d.device_reads_max = Some(1);
    let mut rig = rig_with(5, Faults::with_latency(latency), &fx, 32, hdd, |_| {});
    let set = challenges("sim-slow", 12);
    let mut deadlines = HashMap::new();
    for (i, c) in set.iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Complete, proofs: false };
        let deadline = Duration::from_secs(120);
        rig.send(Job { id: i as u64, work, deadline, reply: None });
        deadlines.insert(i as u64, deadline);
    }
    let events = rig.run();
    let statuses = check_outcomes(&deadlines, &events, Duration::from_millis(2));
    assert!(statuses.values().all(|s| *s == JobStatus::Complete), "{statuses:?}");
    assert!(
        !events.iter().any(|(_, e)| matches!(e, Event::DiskDegraded { .. })),
        "a slow disk that completes reads was flagged degraded"
    );
    for (i, c) in set.iter().enumerate() {
        for (k, f) in fx.iter().enumerate() {
            let want = expected(f, c, Goal::Qualities, Mode::Complete);
            let got = events.iter().find_map(|(_, e)| match e {
                Event::Found { job, plot, found } if *job == i as u64 && plot.0 == k as u64 => {
                    Some(found.clone())
                }
                _ => None,
            });
            assert_eq!(got.unwrap_or_default(), want, "challenge {i} plot {k}");
        }
    }
    rig.disk.stats().check();
}

/// A hung disk: jobs time out on their deadline, the disk is reported degraded, new jobs are
/// rejected at once, and after the disk heals a probe read brings it back.
/// Jobs running when the disk is found stuck cannot progress: they are answered then, with
/// what they have, not at their (far) deadline; the disk is reported degraded once.
#[test]
fn jobs_running_on_a_stuck_disk_end_when_it_is_found_stuck() {
    let fx = fixtures();
    let mut hang = Faults::none();
    hang.hang_probability = 1.0;
    let mut rig = rig(12, hang, &fx, 16);
    for (i, c) in challenges("sim-stuck-running", 3).iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Chiapos, proofs: false };
        rig.send(Job { id: i as u64, work, deadline: Duration::from_secs(10), reply: None });
    }
    let events = rig.run();
    let degraded: Vec<Duration> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::DiskDegraded { .. }))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(degraded.len(), 1, "{events:?}");
    for (at, e) in &events {
        if let Event::JobDone { status, .. } = e {
            assert!(matches!(status, JobStatus::TimedOut { .. }), "{status:?}");
            assert_eq!(*at, degraded[0], "answered when the disk was found stuck");
        }
    }
    // read_stuck_after (90 ms) after the reads went out, far before the 10 s deadline.
    assert!(degraded[0] < Duration::from_millis(200), "{:?}", degraded[0]);
}

#[test]
fn hung_disk_degrades_rejects_and_recovers() {
    let fx = fixtures();
    let mut hang = Faults::none();
    hang.hang_probability = 1.0;
    let mut rig = rig(11, hang, &fx, 16);
    let c = challenges("sim-hang", 1)[0];
    let work = Work::Qualities { challenge: c, plots: None, mode: Mode::Chiapos, proofs: false };
    rig.send(Job { id: 1, work: work.clone(), deadline: Duration::from_millis(100), reply: None });
    let events = rig.run_until(|e| matches!(e, Event::JobDone { job: 1, .. }));
    let (at, status) = events
        .iter()
        .find_map(|(at, e)| match e {
            Event::JobDone { job: 1, status } => Some((*at, status.clone())),
            _ => None,
        })
        .expect("job 1 answered");
    assert!(
        matches!(status, JobStatus::TimedOut { unanswered } if unanswered == fx.len() as u32),
        "{status:?}"
    );
    // At its deadline (100 ms), or earlier when the disk is found stuck first (a read out for
    // read_stuck_after, 90 ms, with nothing completed).
    assert!(
        at >= Duration::from_millis(90) && at <= Duration::from_millis(101),
        "answered at {at:?}"
    );
    assert!(events.iter().any(|(_, e)| matches!(e, Event::DiskDegraded { .. })));

    // New work is held back while degraded.
    rig.send(Job {
        id: 2,
        work: work.clone(),
        deadline: rig.clock.now() + Duration::from_secs(1),
        reply: None,
    });
    let events = rig.run_until(|e| matches!(e, Event::JobDone { job: 2, .. }));
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, Event::JobDone { job: 2, status: JobStatus::Rejected { .. } })));

    // The disk heals: the hung reads finish (late, ignored) and a probe read succeeds.
    rig.disk.set_faults(Faults::none());
    rig.disk.unhang();
    let events = rig.run_until(|e| matches!(e, Event::DiskRecovered { .. }));
    assert!(events.iter().any(|(_, e)| matches!(e, Event::DiskRecovered { .. })));
    rig.send(Job { id: 3, work, deadline: rig.clock.now() + Duration::from_secs(1), reply: None });
    let events = rig.run_until(|e| matches!(e, Event::JobDone { job: 3, .. }));
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, Event::JobDone { job: 3, status: JobStatus::Complete })));
    let snap = shard_snapshot(&mut rig);
    assert!(snap.counters.reads_late > 0, "the hung reads completed after their job");
    rig.disk.stats().check();
}

/// Two shards on their own threads: one disk hangs, the other answers every job in full.
#[test]
fn a_stuck_disk_does_not_hold_back_another() {
    let fx = fixtures();
    let spawn = |seed: u64, faults: Faults| {
        let clock = SimClock::new();
        let mut config = SimConfig::new(seed, 16);
        config.faults = faults;
        let disk = SimDisk::new(config, clock.clone());
        for f in &fx {
            disk.add_file(&f.path, f.bytes.clone());
        }
        let handle = disk.handle();
        let shard_config = ShardConfig { name: format!("sim-{seed}"), ..ShardConfig::default() };
        let h = Shard::spawn(shard_config, move || Ok(disk), VirtualClock(clock), 1024, 1024)
            .expect("spawn");
        for (i, f) in fx.iter().enumerate() {
            let cmd = Command::AddPlot {
                key: PlotKey(i as u64),
                path: f.path.clone(),
                plot: Box::new(f.plot.clone()),
            };
            h.commands.send(cmd).expect("send");
        }
        (h, handle)
    };
    let mut hang = Faults::none();
    hang.hang_probability = 1.0;
    let (stuck, stuck_disk) = spawn(1, hang);
    let (healthy, _) = spawn(2, Faults::none());
    let set = challenges("sim-two", 30);
    for (i, c) in set.iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Complete, proofs: true };
        for h in [&stuck, &healthy] {
            h.commands
                .send(Command::Job(Job {
                    id: i as u64,
                    work: work.clone(),
                    deadline: Duration::from_secs(5),
                    reply: None,
                }))
                .expect("send");
        }
    }
    // The healthy shard finishes everything while the stuck one still waits.
    let mut complete = 0;
    while complete < set.len() {
        match healthy.events.recv_timeout(Duration::from_secs(30)).expect("healthy shard answers") {
            Event::JobDone { status, .. } => {
                assert_eq!(status, JobStatus::Complete);
                complete += 1;
            }
            Event::PlotFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    // The stuck shard answers nothing; every job of it ends timed out, or rejected once the
    // disk is known degraded (its virtual clock runs ahead, so that may come early).
    let mut timed_out = 0;
    while timed_out < set.len() {
        match stuck.events.recv_timeout(Duration::from_secs(60)).expect("stuck shard times out") {
            Event::JobDone { status, .. } => {
                assert!(
                    matches!(
                        status,
                        JobStatus::TimedOut { .. }
                            | JobStatus::Rejected { reason: shard::Rejection::DiskDegraded }
                    ),
                    "{status:?}"
                );
                timed_out += 1;
            }
            Event::Found { .. } => panic!("the stuck disk answered"),
            _ => {}
        }
    }
    stuck_disk.unhang();
    for h in [stuck, healthy] {
        drop(h.commands);
        h.thread.join().expect("shard thread");
    }
    stuck_disk.stats().check();
}

/// The job limit holds: beyond `jobs_queued_max`, jobs are rejected at once (never dropped),
/// and `lookups_active_max` only delays jobs (all still answered in full).
#[test]
fn limits_reject_or_delay_but_never_drop() {
    let fx = fixtures();
    let clock = SimClock::new();
    let disk = SimDisk::new(SimConfig::new(5, 8), clock.clone());
    for f in &fx {
        disk.add_file(&f.path, f.bytes.clone());
    }
    let (commands, command_rx) = crossbeam_channel::bounded(1000);
    let (event_tx, events) = crossbeam_channel::bounded(100_000);
    let config = ShardConfig {
        name: "limits".into(),
        jobs_queued_max: 4,
        // Fewer lookup slots than one job needs plots: jobs run one at a time.
        lookups_active_max: 2,
        idle_wait_max: Duration::ZERO,
        ..ShardConfig::default()
    };
    let mut shard = Shard::new(config, disk, VirtualClock(clock.clone()), command_rx, event_tx);
    for (i, f) in fx.iter().enumerate() {
        let plot = Box::new(f.plot.clone());
        commands
            .send(Command::AddPlot { key: PlotKey(i as u64), path: f.path.clone(), plot })
            .expect("send");
    }
    for (i, c) in challenges("limits", 10).iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Complete, proofs: false };
        commands
            .send(Command::Job(Job {
                id: i as u64,
                work,
                deadline: Duration::from_secs(60),
                reply: None,
            }))
            .expect("send");
    }
    let mut statuses = HashMap::new();
    for _ in 0..1_000_000 {
        shard.tick();
        for e in events.try_iter() {
            if let Event::JobDone { job, status } = e {
                assert!(statuses.insert(job, status).is_none(), "one answer per job");
            }
        }
        if statuses.len() == 10 {
            break;
        }
    }
    let rejected = statuses
        .values()
        .filter(|s| matches!(s, JobStatus::Rejected { reason: shard::Rejection::LookupsFull }))
        .count();
    let complete = statuses.values().filter(|s| **s == JobStatus::Complete).count();
    assert_eq!((complete, rejected), (4, 6), "{statuses:?}");
}

/// A consumer slower than the shard, behind a results channel of 2 events: the shard waits
/// for room (counted as backpressure) and drops nothing. Every job still ends with exactly one
/// JobDone after its answers, and the answers equal the decoder's.
#[test]
fn a_slow_consumer_slows_the_shard_and_loses_nothing() {
    let fx = fixtures();
    let clock = SimClock::new();
    let latency =
        Latency::Uniform { min: Duration::from_micros(80), max: Duration::from_millis(1) };
    let mut disk_config = SimConfig::new(21, 32);
    disk_config.faults = Faults::with_latency(latency);
    let disk = SimDisk::new(disk_config, clock.clone());
    for f in &fx {
        disk.add_file(&f.path, f.bytes.clone());
    }
    let (commands, command_rx) = crossbeam_channel::bounded(1000);
    let (event_tx, events) = crossbeam_channel::bounded(2);
    let config = ShardConfig { name: "slow-consumer".into(), ..ShardConfig::default() };
    let shard = Shard::new(config, disk, VirtualClock(clock), command_rx, event_tx);
    let metrics = shard.metrics();
    for (i, f) in fx.iter().enumerate() {
        let plot = Box::new(f.plot.clone());
        commands
            .send(Command::AddPlot { key: PlotKey(i as u64), path: f.path.clone(), plot })
            .expect("send");
    }
    let set = challenges("slow-consumer", 12);
    let mut want: BTreeMap<u64, BTreeMap<u64, Vec<Found>>> = BTreeMap::new();
    for (i, c) in set.iter().enumerate() {
        let work =
            Work::Qualities { challenge: *c, plots: None, mode: Mode::Chiapos, proofs: false };
        commands
            .send(Command::Job(Job {
                id: i as u64,
                work,
                deadline: Duration::from_secs(600),
                reply: None,
            }))
            .expect("send");
        let w = want.entry(i as u64).or_default();
        for (k, f) in fx.iter().enumerate() {
            let found = expected(f, c, Goal::Qualities, Mode::Chiapos);
            if !found.is_empty() {
                w.insert(k as u64, found);
            }
        }
    }
    drop(commands); // the shard ends once every job is answered
    let thread = std::thread::spawn(move || shard.run());
    let mut got: BTreeMap<u64, BTreeMap<u64, Vec<Found>>> = BTreeMap::new();
    let mut done = HashMap::new();
    for e in events.iter() {
        std::thread::sleep(Duration::from_micros(300));
        match e {
            Event::Found { job, plot, found } => {
                assert!(!done.contains_key(&job), "job {job}: an answer after its JobDone");
                got.entry(job).or_default().insert(plot.0, found);
            }
            Event::JobDone { job, status } => {
                assert!(done.insert(job, status).is_none(), "job {job} answered twice");
            }
            Event::PlotFailed { job, plot, error } => panic!("job {job} plot {plot:?}: {error}"),
            _ => {}
        }
    }
    thread.join().expect("shard thread");
    assert_eq!(done.len(), set.len(), "every job answered");
    assert!(done.values().all(|s| *s == JobStatus::Complete), "{done:?}");
    want.retain(|_, w| !w.is_empty());
    assert_eq!(got, want);
    let counters = metrics.snapshot().counters;
    assert!(counters.results_backpressure > 0, "the full channel was counted: {counters:?}");
}
