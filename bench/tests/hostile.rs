//! Hostile farmers and hostile disks against the real `harvester run` daemon: a farmer that
//! trickles a frame, a farmer that floods challenges, more work than the disks can take, and
//! corrupt plot files. Each test drives the daemon over loopback mutual TLS with a scripted
//! farmer and checks every answer (qualities against the plain decoder, proofs with our
//! verifier, signatures with the farmer's share), then reads `/metrics` and the daemon's log.
//!
//! Nothing here sleeps to assert: every wait polls for an observable condition (a metric, a
//! log line, a message) with a deadline, and a barrier request (a proof request for a quality
//! never announced, answered `UnknownQuality` behind every frame queued before it) marks the
//! end of the answers.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench::farmer::checks::{check_proof, check_signature, plot_id, ProofExpectation};
use bench::farmer::FarmerKeys;
use plot_format::verify::validate_proof;
use plot_format::{Goal, Mode};
use protocol::{Body, Bytes32, ErrorCode, FrameDecoder, Limits, Message, G1};
use sha2::{Digest, Sha256};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Deadline of every single wait (a message, a connection, a metric).
const WAIT: Duration = Duration::from_secs(30);
/// The two tests that load the machine on purpose (an overload, a proof burst) run one at a
/// time: each measures what the harvester does under its own load, not under the other's.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// A quality no plot announces: the barrier request asks for its proof.
const BARRIER_QUALITY: Bytes32 = [0xEE; 32];
/// Resident memory the daemon must stay under, whatever the farmer does.
const RSS_BYTES_MAX: u64 = 200 << 20;
/// Longest wait for a conversation to drain.
const DRAIN_MAX: Duration = Duration::from_secs(45);

// ---- The tests ----

#[test]
fn slow_frame_trickle_is_closed_with_a_reason() {
    let tmp = TempDir::new("hostile-trickle");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = runtime();
    rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            &plot_folders(),
            true,
            &[("protocol", "frame_read_timeout_seconds = 2")],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());

        let mut farmer_side = Duplex::new(farmer.accept(WAIT).await);
        farmer_side.send(handshake()).await.expect("handshake sent");
        // A NewChallenge frame, one byte a second, never its last byte.
        let mut frame = Vec::new();
        new_challenge(&challenge(0)).encode(&mut frame);
        let started = Instant::now();
        let mut sent = 0;
        let answer = loop {
            assert!(
                sent < frame.len() - 1,
                "sent {sent} of {} bytes over {:?} and the harvester still waits; log:\n{}",
                frame.len(),
                started.elapsed(),
                tail(&harvester)
            );
            // The pace of the trickle, not an assertion: the answer is awaited between bytes.
            if farmer_side.send_raw(&frame[sent..=sent]).await.is_err() {
                break farmer_side.next(WAIT).await;
            }
            sent += 1;
            match farmer_side.next(Duration::from_secs(1)).await {
                Next::Quiet => continue,
                other => break other,
            }
        };
        let Next::Message(m) = answer else {
            panic!("no Error before the close ({answer:?}); log:\n{}", tail(&harvester))
        };
        let Body::Error { code: ErrorCode::ProtocolViolation, message, .. } = &m.body else {
            panic!("expected ProtocolViolation, got {m:?}; log:\n{}", tail(&harvester))
        };
        assert!(message.contains("incomplete"), "the reason names the stalled frame: {message}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "closed only after {:?} with frame_read_timeout_seconds = 2",
            started.elapsed()
        );
        assert!(
            matches!(farmer_side.next(WAIT).await, Next::Closed),
            "the harvester closes after the ProtocolViolation; log:\n{}",
            tail(&harvester)
        );
        wait_for_log(&harvester, "closing the connection: a frame stayed incomplete");
        let metrics = scrape(metrics_port).await;
        assert!(
            metric(&metrics, "harvester_frames_rejected_total").unwrap_or(0.0) >= 1.0,
            "the stalled frame is counted:\n{metrics}"
        );

        // It dials again and serves the next connection completely and correctly.
        let mut farmer_side = Duplex::new(farmer.accept(WAIT).await);
        farmer_side.send(handshake()).await.expect("handshake sent");
        let challenges: Vec<Bytes32> = (1..=10).map(challenge).collect();
        for ch in &challenges {
            farmer_side.send(new_challenge(ch)).await.expect("challenge sent");
        }
        let mut got: BTreeMap<Bytes32, BTreeSet<Bytes32>> = BTreeMap::new();
        let mut on_message = |m: Message| match m.body {
            Body::ChallengeResponse { challenge_hash, quality, .. } => {
                assert!(challenges.contains(&challenge_hash), "unknown challenge in {m:?}");
                let fresh = got.entry(challenge_hash).or_default().insert(quality);
                assert!(fresh, "quality announced twice: {}", hex::encode(quality));
            }
            other => panic!("unexpected {other:?}; log:\n{}", tail(&harvester)),
        };
        wait_until_idle(metrics_port, &harvester, challenges.len()).await;
        for m in farmer_side.barrier().await {
            on_message(m);
        }
        let mut total = 0;
        for ch in &challenges {
            let want = expected_qualities(ch);
            let have = got.remove(ch).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "qualities of challenge {}; log:\n{}",
                hex::encode(ch),
                tail(&harvester)
            );
            total += want.len();
        }
        assert!(total > 0, "no quality in 10 challenges: the check would be empty");
        drop(harvester);
    });
}

#[test]
fn challenge_flood_is_bounded_and_nothing_is_lost_or_duplicated() {
    const CHALLENGES: u32 = 2000;
    const IN_FLIGHT_MAX: usize = 8;
    const SAMPLE: usize = 50;
    const BURST: usize = 100;
    let tmp = TempDir::new("hostile-flood");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = runtime();
    let (sent, overloaded, announced, harvester) = rt.block_on(async {
        // challenges_remembered_max above the flood: the session may otherwise forget (and
        // stop announcing) a slow challenge still in flight, which docs/protocol.md allows.
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            &plot_folders(),
            true,
            &[("protocol", "challenges_in_flight_max = 8\nchallenges_remembered_max = 4096")],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());
        let pid = harvester.child.id();
        let mut farmer_side = Duplex::new(farmer.accept(WAIT).await);
        farmer_side.send(handshake()).await.expect("handshake sent");

        let sent: Vec<Bytes32> = (0..CHALLENGES).map(flood_challenge).collect();
        let frames: Vec<Message> = sent.iter().map(new_challenge).collect();
        let index: HashMap<Bytes32, usize> =
            sent.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        let mut flood = Flood { index, ..Flood::default() };
        let mut rss_max = 0;
        // Bursts back to back: the next one leaves as soon as the session has decided on every
        // challenge so far (accepted ones are counted by harvester_challenges_total, refused
        // ones answered), so lookups finish between bursts and the in-flight count goes up and
        // down. Drained when all are decided and none is in flight.
        let mut bursts = frames.chunks(BURST);
        let mut sent_so_far = 0;
        let start = Instant::now();
        loop {
            while let Some(m) = farmer_side.try_next() {
                flood.on_message(m);
            }
            let metrics = scrape(metrics_port).await;
            rss_max = rss_max.max(rss_bytes(pid));
            let in_flight = metric(&metrics, "harvester_challenges_in_flight").unwrap_or(-1.0);
            let accepted = metric(&metrics, "harvester_challenges_total").unwrap_or(0.0);
            assert!(
                (0.0..=IN_FLIGHT_MAX as f64).contains(&in_flight),
                "challenges in flight {in_flight} outside 0..={IN_FLIGHT_MAX}"
            );
            if accepted as usize + flood.overloaded.len() == sent_so_far {
                match bursts.next() {
                    Some(burst) => {
                        farmer_side.send_all(burst).await.expect("flood sent");
                        sent_so_far += burst.len();
                        continue;
                    }
                    None if in_flight == 0.0 => break,
                    None => {}
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "not drained: {accepted} accepted + {} refused of {sent_so_far}, {in_flight} \
                 in flight; log:\n{}",
                flood.overloaded.len(),
                tail(&harvester)
            );
            farmer_side.wait_for_message(Duration::from_millis(10)).await;
        }
        for m in farmer_side.barrier().await {
            flood.on_message(m);
        }
        rss_max = rss_max.max(rss_bytes(pid));
        assert!(
            rss_max < RSS_BYTES_MAX,
            "harvester RSS reached {} MiB (bound {} MiB)",
            rss_max >> 20,
            RSS_BYTES_MAX >> 20
        );
        let metrics = scrape(metrics_port).await;
        assert_eq!(metric(&metrics, "harvester_challenges_in_flight"), Some(0.0), "{metrics}");
        eprintln!("flood: harvester RSS max {} MiB", rss_max >> 20);
        (sent, flood.overloaded, flood.announced, harvester)
    });

    // Refused ones got no quality; accepted ones got exactly the decoder's qualities.
    let accepted: Vec<(usize, Bytes32)> =
        sent.iter().copied().enumerate().filter(|(_, c)| !overloaded.contains(c)).collect();
    assert!(
        accepted.iter().take(IN_FLIGHT_MAX).map(|(i, _)| *i).eq(0..IN_FLIGHT_MAX),
        "the first {IN_FLIGHT_MAX} challenges are always accepted; accepted: {:?}",
        accepted.iter().map(|(i, _)| i).take(20).collect::<Vec<_>>()
    );
    assert!(!overloaded.is_empty(), "a flood of {CHALLENGES} never hit the limit");
    let mut by_challenge: HashMap<Bytes32, BTreeSet<Bytes32>> = HashMap::new();
    for (quality, ch) in &announced {
        assert!(!overloaded.contains(ch), "challenge refused as Overloaded but looked up");
        by_challenge.entry(*ch).or_default().insert(*quality);
    }
    // Every accepted challenge when few, else an even sample with the first ones.
    let step = accepted.len().div_ceil(SAMPLE).max(1);
    let mut checked_qualities = 0;
    for (i, ch) in accepted.iter().step_by(step) {
        let want = expected_qualities(ch);
        let have = by_challenge.get(ch).cloned().unwrap_or_default();
        assert_eq!(have, want, "qualities of accepted challenge #{i}");
        checked_qualities += want.len();
    }
    assert!(checked_qualities > 0, "the sample has no quality: the check would be empty");
    eprintln!(
        "flood: {} accepted, {} Overloaded, {} qualities announced",
        accepted.len(),
        overloaded.len(),
        announced.len()
    );
    drop(harvester);
}

#[test]
fn overload_beyond_the_disks_is_bounded_and_counted() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    const CHALLENGES: u32 = 500;
    const COPIES_PER_PLOT: usize = 100;
    const PACE_BURST: usize = 10;
    const PACE_IN_FLIGHT: f64 = 8.0;
    const PROOF_JOBS_QUEUED_MAX: usize = 4;
    let tmp = TempDir::new("hostile-overload");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    // 300 hard links to the three memo plots (the keys-file plot is named by its file name).
    let folder = tmp.0.join("links");
    std::fs::create_dir_all(&folder).expect("dir");
    let memo_plots: Vec<PathBuf> = selected_fixture_plots()
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("plots")))
        .collect();
    assert_eq!(memo_plots.len(), 3, "three selected memo plots: {memo_plots:?}");
    for copy in 0..COPIES_PER_PLOT {
        for plot in &memo_plots {
            let name = plot.file_name().expect("name").to_string_lossy();
            let link = folder.join(format!("copy-{copy:03}-{name}"));
            if std::fs::hard_link(plot, &link).is_err() {
                std::fs::copy(plot, &link).expect("copy of a fixture plot");
            }
        }
    }
    let served = memo_plots.len() * COPIES_PER_PLOT;
    let fresh = flood_challenge(CHALLENGES);
    let fresh_qualities: BTreeSet<Bytes32> = memo_plots
        .iter()
        .flat_map(|p| qualities_of(p, std::slice::from_ref(&fresh)))
        .map(|(q, _)| q)
        .collect();
    assert!(
        fresh_qualities.len() <= PROOF_JOBS_QUEUED_MAX,
        "the fresh challenge's proofs must fit the proof queue at once"
    );
    // Proofs have their own, small queue here, so that the overload refuses some of them too.
    let engine = format!(
        "backend = \"pread\"\ndirect_io = true\nreads_in_flight_max = 2\n\
         lookup_deadline_seconds = 1\nproof_deadline_seconds = 1\n\
         jobs_queued_max = 4\nlookups_active_max = 64\n\
         proof_jobs_queued_max = {PROOF_JOBS_QUEUED_MAX}"
    );
    let pool_pubkeys = pool_keys();
    let rt = runtime();
    let mut harvester = rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            std::slice::from_ref(&folder),
            false,
            &[
                ("plots", "serve_duplicate_ids = true\nopen_threads = 2"),
                ("engine", &engine),
                ("protocol", "challenges_in_flight_max = 4096\nchallenges_remembered_max = 4096"),
            ],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());
        // Every copy served before the farmer speaks, so each challenge meets 300 plots.
        wait_for_metric(metrics_port, &harvester, "harvester_plots{state=\"served\"}", |v| {
            v == served as f64
        })
        .await;
        let peer = farmer.accept(WAIT).await;
        let mut talk = Talk::new(peer, metrics_port, harvester, false).await;

        // Half the challenges at once (most are refused by the full disk queue), then the rest
        // in small bursts whenever fewer than PACE_IN_FLIGHT are in flight, so lookups, proof
        // fetches and new challenges keep competing for the disk's queue.
        let frames: Vec<Message> =
            (0..CHALLENGES).map(|i| new_challenge(&flood_challenge(i))).collect();
        let (flood, paced) = frames.split_at(frames.len() / 2);
        talk.farmer_side.send_all(flood).await.expect("flood sent");
        for burst in paced.chunks(PACE_BURST) {
            let start = Instant::now();
            while talk.scrape_value("harvester_challenges_in_flight").await >= PACE_IN_FLIGHT {
                talk.pump().await;
                assert!(start.elapsed() < WAIT, "challenges stay in flight:\n{}", talk.tail());
                talk.farmer_side.wait_for_message(Duration::from_millis(10)).await;
            }
            talk.farmer_side.send_all(burst).await.expect("burst sent");
        }
        talk.drain(frames.len()).await;
        assert!(talk.alive(), "the harvester died under overload; log:\n{}", talk.tail());
        let overload = talk.ledger.check(&pool_pubkeys, None);

        // Shed work is counted (the disk's counters are published every 100 ms, so poll).
        let shed = [
            "harvester_lookup_jobs_rejected_total{",
            "harvester_lookup_jobs_timed_out_total{",
            "harvester_lookups_timed_out_total",
        ];
        wait_for_metric_text(metrics_port, &talk.harvester, |text| {
            shed.iter().any(|name| metric(text, name).unwrap_or(0.0) > 0.0)
        })
        .await;

        // Recovery: the disk is idle again. Every proof refused under overload is served
        // now (asked a queue's worth at a time), and then a fresh challenge gets exactly the
        // decoder's qualities, each proven.
        let refused = talk.ledger.refused_proofs();
        let mut retries = Vec::new();
        for chunk in refused.chunks(PROOF_JOBS_QUEUED_MAX) {
            for quality in chunk {
                retries.push(talk.ledger.ask_proof(&mut talk.farmer_side, *quality).await);
            }
            talk.drain(frames.len()).await;
        }
        talk.farmer_side.send(new_challenge(&fresh)).await.expect("fresh challenge sent");
        talk.drain(frames.len() + 1).await;
        for id in &retries {
            let answer = talk.ledger.answers[id].first();
            assert!(
                matches!(answer, Some(Body::RespondProofOfSpace { .. })),
                "a proof refused under overload is still refused when idle: {answer:?}; log:\n{}",
                talk.tail()
            );
        }
        let fresh_got: BTreeSet<Bytes32> = talk
            .ledger
            .announced
            .iter()
            .filter(|(_, a)| a.challenge == fresh)
            .map(|(q, _)| *q)
            .collect();
        if fresh_got != fresh_qualities {
            let text = scrape(metrics_port).await;
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.contains("_bucket") && !l.contains("seconds"))
                .collect();
            panic!(
                "qualities of a challenge after the overload: got {} want {}\nmetrics:\n{}\nlog:\n{}",
                fresh_got.len(),
                fresh_qualities.len(),
                lines.join("\n"),
                std::fs::read_to_string(&talk.harvester.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.contains("shard overloaded"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        for quality in &fresh_got {
            let answer = talk.ledger.proof_answer(quality);
            assert!(
                matches!(answer, Some(Body::RespondProofOfSpace { .. })),
                "proof of a quality after the overload: {answer:?}; log:\n{}",
                talk.tail()
            );
        }
        let total = talk.ledger.check(&pool_pubkeys, None);
        assert!(!fresh_got.is_empty(), "the fresh challenge has no quality: the check is empty");
        talk.check_rss();
        let metrics = scrape(metrics_port).await;
        let counts = shed.map(|name| (name, metric(&metrics, name).unwrap_or(0.0)));
        eprintln!(
            "overload: {} qualities; under overload {overload:?}; in all {total:?}; {} refused \
             proofs retried; {counts:?}; RSS max {} MiB",
            talk.ledger.announced.len(),
            retries.len(),
            talk.rss_max >> 20
        );
        talk.harvester
    });
    let status = harvester.terminate(Duration::from_secs(15));
    assert!(status.success(), "harvester exit {status}; log:\n{}", tail(&harvester));
}

/// A farmer that asks for the proof of every quality at once: a burst up to the disk's proof
/// queue (`proof_jobs_queued_max`) gets every proof; a larger burst gets a proof or `Busy` for
/// each request, never a disk error, and every `Busy` request is served when asked again.
#[test]
fn a_proof_burst_gets_every_proof_and_busy_beyond_the_queue() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    const CHALLENGES: u32 = 150;
    const QUEUE: usize = 64;
    let tmp = TempDir::new("hostile-burst");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let plots: Vec<PathBuf> = selected_fixture_plots()
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("plots")))
        .collect();
    let challenges: Vec<Bytes32> =
        (0..CHALLENGES).map(|i| digest(b"burst", &i.to_be_bytes())).collect();
    let expected: HashMap<Bytes32, (Bytes32, &PathBuf)> = plots
        .iter()
        .flat_map(|p| qualities_of(p, &challenges).into_iter().map(move |(q, c)| (q, (c, p))))
        .collect();
    assert!(expected.len() > 3 * QUEUE, "enough qualities for a burst: {}", expected.len());
    let engine = format!(
        "backend = \"pread\"\nreads_in_flight_max = 1\nproof_deadline_seconds = 60\n\
         proof_jobs_queued_max = {QUEUE}"
    );
    let rt = runtime();
    rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            &[fixtures().join("plots")],
            false,
            &[
                ("engine", &engine),
                ("protocol", "challenges_in_flight_max = 4096\nchallenges_remembered_max = 4096"),
            ],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());
        let mut d = Duplex::new(farmer.accept(WAIT).await);
        d.send(handshake()).await.expect("handshake");
        let frames: Vec<Message> = challenges.iter().map(new_challenge).collect();
        d.send_all(&frames).await.expect("challenges");
        let mut announced: Vec<Bytes32> = Vec::new();
        while announced.len() < expected.len() {
            match d.next(WAIT).await {
                Next::Message(Message {
                    body: Body::ChallengeResponse { quality, .. }, ..
                }) => {
                    if expected.contains_key(&quality) {
                        announced.push(quality);
                    }
                }
                other => panic!("waiting for qualities: {other:?}\n{}", tail(&harvester)),
            }
        }
        // Asks for every proof of `qualities` in one write; returns each one's answer.
        async fn burst(d: &mut Duplex, qualities: &[Bytes32]) -> HashMap<Bytes32, Body> {
            let mut ids = HashMap::new();
            let mut frames = Vec::new();
            for q in qualities {
                let id = d.next_id;
                d.next_id += 1;
                ids.insert(id, *q);
                frames.push(Message {
                    id: Some(id),
                    body: Body::RequestProofOfSpace { quality: *q },
                });
            }
            d.send_all(&frames).await.expect("burst sent");
            let mut answers = HashMap::new();
            while answers.len() < qualities.len() {
                match d.next(WAIT).await {
                    Next::Message(Message { id: Some(id), body }) if ids.contains_key(&id) => {
                        let before = answers.insert(ids[&id], body);
                        assert!(before.is_none(), "two answers to one request");
                    }
                    Next::Message(m) => panic!("unexpected {m:?}"),
                    other => panic!("{} of {} answered: {other:?}", answers.len(), qualities.len()),
                }
            }
            answers
        }
        let check = |quality: &Bytes32, body: &Body| match body {
            Body::RespondProofOfSpace { quality: q, proof } => {
                assert_eq!(q, quality);
                let (challenge, path) = expected[quality];
                assert_eq!(proof.challenge_hash, challenge);
                let id = plot_id(&proof.pool_pubkey, &proof.plot_pubkey);
                let (_, plot) = shard::open_plot(path).expect("plot");
                assert_eq!(&id, plot.id(), "the proof names its plot");
                assert_eq!(validate_proof(&id, proof.size, &challenge, &proof.proof), Ok(*quality));
                true
            }
            Body::Error { code: ErrorCode::Busy, .. } => false,
            other => panic!("a proof or Busy, never {other:?}"),
        };
        // At the queue's size: every proof.
        let (first, rest) = announced.split_at(QUEUE);
        for (q, body) in burst(&mut d, first).await {
            assert!(check(&q, &body), "a burst that fits the queue gets every proof");
        }
        // Beyond it: a proof or Busy for each; then the Busy ones, a queue's worth at a time.
        let mut busy: Vec<Bytes32> = Vec::new();
        for (q, body) in burst(&mut d, rest).await {
            if !check(&q, &body) {
                busy.push(q);
            }
        }
        assert!(!busy.is_empty(), "{} requests at once on a one-read-at-a-time disk", rest.len());
        for chunk in busy.chunks(QUEUE) {
            for (q, body) in burst(&mut d, chunk).await {
                assert!(check(&q, &body), "a Busy request is served when asked again");
            }
        }
        let text = scrape(metrics_port).await;
        assert_eq!(metric(&text, "harvester_proofs_total"), Some(announced.len() as f64));
    });
}

#[test]
fn corrupt_plots_are_quarantined_and_never_yield_a_wrong_proof() {
    const CHALLENGES: u32 = 200;
    let tmp = TempDir::new("hostile-corrupt");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let CorruptFarm { folder, intact, at_scan, at_lookup } = corrupt_farm(&tmp.0);
    let challenges: Vec<Bytes32> = (0..CHALLENGES).map(challenge).collect();
    // What the plain decoder says each lookup-time corruption does on these challenges: when
    // it yields a decoder error or a proof that does not verify, the daemon must notice.
    let noticeable: Vec<(PathBuf, Option<String>)> =
        at_lookup.iter().map(|p| (p.clone(), first_symptom(p, &challenges))).collect();
    let intact_qualities = qualities_of(&intact, &challenges);
    assert!(!intact_qualities.is_empty(), "the intact plot has no quality in 200 challenges");
    let pool_pubkeys = pool_keys();
    let farmer_keys = FarmerKeys::load(&fixtures().join("farmer-keys.json")).expect("keys");
    let plot_pubkeys = fixture_plot_pubkeys();

    let rt = runtime();
    let mut harvester = rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            std::slice::from_ref(&folder),
            true,
            &[
                ("protocol", "challenges_in_flight_max = 256"),
                // Short deadlines bound the test if a lookup were ever left unanswered.
                ("engine", "lookup_deadline_seconds = 5\nproof_deadline_seconds = 5"),
            ],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());
        // The scan: the header, pointer and truncation files are quarantined with a reason
        // naming what is wrong; the other four are served.
        wait_for_metric(metrics_port, &harvester, "harvester_plots{state=\"served\"}", |v| {
            v == 4.0
        })
        .await;
        let metrics = scrape(metrics_port).await;
        let quarantined = metric(&metrics, "harvester_plots{state=\"quarantined\"}");
        assert_eq!(quarantined, Some(3.0), "{metrics}");
        let reasons: [&[&str]; 3] = [&["magic"], &["past the end"], &["past the end", "truncated"]];
        for (path, reasons) in at_scan.iter().zip(reasons) {
            let line = wait_for_quarantine(&harvester, path);
            let named = reasons.iter().any(|r| line.contains(r));
            assert!(named, "{} quarantined for one of {reasons:?}: {line}", path.display());
        }

        let peer = farmer.accept(WAIT).await;
        let mut talk = Talk::new(peer, metrics_port, harvester, true).await;
        let frames: Vec<Message> = challenges.iter().map(new_challenge).collect();
        talk.farmer_side.send_all(&frames).await.expect("challenges sent");
        talk.drain(frames.len()).await;
        assert!(talk.ledger.overloaded.is_empty(), "no challenge refused below the limit");

        // Every proof verifies with its quality, every signature verifies; Errors are allowed.
        let signing = Signing { farmer_keys: &farmer_keys, plot_pubkeys: &plot_pubkeys };
        let verdict = talk.ledger.check(&pool_pubkeys, Some(&signing));
        // The intact plot answered every one of its qualities with a proof.
        for (quality, ch) in &intact_qualities {
            let announced = talk.ledger.announced.get(quality).map(|a| a.challenge);
            assert_eq!(
                announced,
                Some(*ch),
                "intact plot's quality {} of challenge {} not announced; log:\n{}",
                hex::encode(quality),
                hex::encode(ch),
                talk.tail()
            );
            let proof = talk.ledger.proof_answer(quality);
            assert!(
                matches!(proof, Some(Body::RespondProofOfSpace { .. })),
                "intact plot's quality {} not proven: {proof:?}",
                hex::encode(quality)
            );
        }
        // Corruption the decoder shows on these challenges is noticed and quarantined.
        for (path, symptom) in &noticeable {
            match symptom {
                Some(symptom) => {
                    let line = wait_for_quarantine(&talk.harvester, path);
                    eprintln!("{}: {symptom}\n  daemon: {line}", path.display());
                }
                None => eprintln!("{}: no symptom on these challenges", path.display()),
            }
        }
        let expected = 3 + noticeable.iter().filter(|(_, s)| s.is_some()).count();
        wait_for_metric(
            metrics_port,
            &talk.harvester,
            "harvester_plots{state=\"quarantined\"}",
            |v| v == expected as f64,
        )
        .await;
        eprintln!("corrupt: {} qualities, answers {verdict:?}", talk.ledger.announced.len());
        assert!(talk.alive(), "the harvester died; log:\n{}", talk.tail());
        talk.harvester
    });
    let status = harvester.terminate(Duration::from_secs(15));
    assert!(status.success(), "harvester exit {status}; log:\n{}", tail(&harvester));
}

/// Regression: a plot removed from its shard (RemovePlot after a runtime quarantine) used to
/// leave its lookups in progress unanswered, so every challenge reading it waited for its
/// deadline (20 s). The shard now answers them when the plot leaves.
#[test]
fn a_quarantine_does_not_hold_other_challenges_until_their_deadline() {
    const CHALLENGES: u32 = 200;
    let tmp = TempDir::new("hostile-quarantine-stall");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let CorruptFarm { folder, at_lookup, .. } = corrupt_farm(&tmp.0);
    let challenges: Vec<Bytes32> = (0..CHALLENGES).map(challenge).collect();
    for path in &at_lookup {
        assert!(first_symptom(path, &challenges).is_some(), "{} looks intact", path.display());
    }
    let pool_pubkeys = pool_keys();
    let rt = runtime();
    let mut harvester = rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            std::slice::from_ref(&folder),
            true,
            &[("protocol", "challenges_in_flight_max = 256")],
        )
        .await;
        let _log = LogOnPanic(harvester.log.clone());
        wait_for_metric(metrics_port, &harvester, "harvester_plots{state=\"served\"}", |v| {
            v == 4.0
        })
        .await;
        let peer = farmer.accept(WAIT).await;
        let mut talk = Talk::new(peer, metrics_port, harvester, false).await;
        let frames: Vec<Message> = challenges.iter().map(new_challenge).collect();
        let start = Instant::now();
        talk.farmer_side.send_all(&frames).await.expect("challenges sent");
        talk.drain(frames.len()).await;
        let elapsed = start.elapsed();
        let verdict = talk.ledger.check(&pool_pubkeys, None);
        let log = talk.harvester.log();
        let stalled: Vec<&str> =
            log.lines().filter(|l| l.contains("lookup deadline passed")).collect();
        let late = metric(&scrape(metrics_port).await, "harvester_reads_late_total{");
        // The disk needs well under a second for 200 challenges x 4 plots; the deadline is 20 s.
        assert!(
            stalled.is_empty() && elapsed < Duration::from_secs(10),
            "{} challenges were answered only by the 20 s lookup deadline (drained after \
             {elapsed:?}; answers {verdict:?}; reads completed after their lookup was gone: \
             {late:?}); first:\n{}\nquarantines:\n{}",
            stalled.len(),
            stalled.iter().take(3).copied().collect::<Vec<_>>().join("\n"),
            log.lines()
                .filter(|l| l.contains("quarantined"))
                .take(6)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!verdict.errors.contains_key("Proof/TimedOut"), "{verdict:?}");
        talk.harvester
    });
    let status = harvester.terminate(Duration::from_secs(15));
    assert!(status.success(), "harvester exit {status}; log:\n{}", tail(&harvester));
}

// ---- The farmer's side of a connection ----

/// What the reader task saw next.
#[derive(Debug)]
enum Next {
    Message(Message),
    /// The harvester closed the connection.
    Closed,
    /// Nothing arrived in time.
    Quiet,
}

/// A farmer connection split in two: a reader task decodes frames into a channel while the
/// test writes, so a flood never deadlocks on full socket buffers.
struct Duplex {
    wr: tokio::io::WriteHalf<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    rx: mpsc::UnboundedReceiver<Result<Message, String>>,
    /// A message taken by `wait_for_message`, handed out first.
    peeked: Option<Message>,
    next_id: u16,
}

impl Duplex {
    /// Takes a freshly accepted peer (nothing received on it yet).
    fn new(peer: Peer) -> Duplex {
        let (mut rd, wr) = tokio::io::split(peer.stream);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(Limits::default());
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let used = decoder.feed(rest);
                    rest = &rest[used..];
                    loop {
                        let item = match decoder.next_message() {
                            Ok(Some(m)) => Ok(m),
                            Ok(None) => break,
                            Err(e) => Err(format!("the harvester sent a bad frame: {e}")),
                        };
                        let stop = item.is_err();
                        if tx.send(item).is_err() || stop {
                            return;
                        }
                    }
                }
            }
        });
        Duplex { wr, rx, peeked: None, next_id: 1 }
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.wr.write_all(bytes).await?;
        self.wr.flush().await
    }

    async fn send(&mut self, message: Message) -> std::io::Result<()> {
        self.send_all(std::slice::from_ref(&message)).await
    }

    /// Sends the frames back to back in one write.
    async fn send_all(&mut self, messages: &[Message]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for m in messages {
            m.encode(&mut bytes);
        }
        self.send_raw(&bytes).await
    }

    async fn request(&mut self, body: Body) -> u16 {
        let id = self.next_id;
        self.next_id = id.checked_add(1).expect("fewer than 65,535 requests per connection");
        self.send(Message { id: Some(id), body }).await.expect("request sent");
        id
    }

    fn unwrap(item: Option<Result<Message, String>>) -> Next {
        match item {
            Some(Ok(m)) => Next::Message(m),
            Some(Err(e)) => panic!("{e}"),
            None => Next::Closed,
        }
    }

    async fn next(&mut self, timeout: Duration) -> Next {
        if let Some(m) = self.peeked.take() {
            return Next::Message(m);
        }
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(item) => Duplex::unwrap(item),
            Err(_) => Next::Quiet,
        }
    }

    /// A message already received, if any.
    fn try_next(&mut self) -> Option<Message> {
        if let Some(m) = self.peeked.take() {
            return Some(m);
        }
        match self.rx.try_recv() {
            Ok(item) => match Duplex::unwrap(Some(item)) {
                Next::Message(m) => Some(m),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// Waits up to `timeout` for a message to arrive (it stays queued for `try_next`).
    async fn wait_for_message(&mut self, timeout: Duration) {
        if self.peeked.is_none() {
            if let Next::Message(m) = self.next(timeout).await {
                self.peeked = Some(m);
            }
        }
    }

    /// Asks for the proof of a quality never announced; its `UnknownQuality` answer comes
    /// after every frame queued before it. Returns the messages that came first.
    async fn barrier(&mut self) -> Vec<Message> {
        let id = self.request(Body::RequestProofOfSpace { quality: BARRIER_QUALITY }).await;
        let mut before = Vec::new();
        loop {
            match self.next(WAIT).await {
                Next::Message(m) if m.id == Some(id) => {
                    assert!(
                        matches!(m.body, Body::Error { code: ErrorCode::UnknownQuality, .. }),
                        "barrier answered with {m:?}"
                    );
                    return before;
                }
                Next::Message(m) => before.push(m),
                other => panic!("no answer to the barrier request: {other:?}"),
            }
        }
    }
}

/// One farmer connection with its ledger, plus the daemon it talks to (for `/metrics`, its
/// memory and its log).
struct Talk {
    farmer_side: Duplex,
    ledger: Ledger,
    metrics_port: u16,
    harvester: Proc,
    /// Also ask for both signatures of every quality.
    sign: bool,
    rss_max: u64,
}

impl Talk {
    /// Sends the handshake on a freshly accepted connection.
    async fn new(peer: Peer, metrics_port: u16, harvester: Proc, sign: bool) -> Talk {
        let mut farmer_side = Duplex::new(peer);
        farmer_side.send(handshake()).await.expect("handshake sent");
        let ledger = Ledger::default();
        Talk { farmer_side, ledger, metrics_port, harvester, sign, rss_max: 0 }
    }

    fn tail(&self) -> String {
        tail(&self.harvester)
    }

    fn alive(&mut self) -> bool {
        harvester_alive(&mut self.harvester)
    }

    fn check_rss(&mut self) {
        self.rss_max = self.rss_max.max(rss_bytes(self.harvester.child.id()));
        assert!(
            self.rss_max < RSS_BYTES_MAX,
            "harvester RSS reached {} MiB (bound {} MiB); log:\n{}",
            self.rss_max >> 20,
            RSS_BYTES_MAX >> 20,
            self.tail()
        );
    }

    /// Records every message already received (asking for the proofs of new qualities).
    async fn pump(&mut self) {
        while let Some(m) = self.farmer_side.try_next() {
            self.ledger.on_message(m, &mut self.farmer_side, self.sign).await;
        }
    }

    async fn scrape_value(&mut self, name: &str) -> f64 {
        let text = self.scrape().await;
        metric(&text, name).unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
    }

    async fn scrape(&mut self) -> String {
        self.check_rss();
        scrape(self.metrics_port).await
    }

    /// Waits until the daemon has decided on `challenges` challenges in all (taken or
    /// refused), none is in flight and every request is answered; then a barrier flushes what
    /// was queued (answers in it may ask for more, so it repeats until nothing is new).
    async fn drain(&mut self, challenges: usize) {
        let start = Instant::now();
        loop {
            self.pump().await;
            // One scrape, which reads the challenges taken before those in flight: read apart,
            // in flight could be read before the daemon took the challenges and taken after,
            // and the drain would end before any lookup had.
            let text = self.scrape().await;
            let value = |name: &str| {
                metric(&text, name).unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
            };
            let taken = value("harvester_challenges_total") as usize;
            let in_flight = value("harvester_challenges_in_flight");
            let decided = taken + self.ledger.overloaded.len() == challenges;
            if decided && in_flight == 0.0 && self.ledger.unanswered() == 0 {
                for m in self.farmer_side.barrier().await {
                    self.ledger.on_message(m, &mut self.farmer_side, self.sign).await;
                }
                if self.ledger.unanswered() == 0 {
                    return;
                }
            }
            assert!(
                start.elapsed() < DRAIN_MAX,
                "not drained: {taken} taken + {} refused of {challenges}, {in_flight} in flight, \
                 {} requests unanswered; log:\n{}",
                self.ledger.overloaded.len(),
                self.ledger.unanswered(),
                self.tail()
            );
            self.farmer_side.wait_for_message(Duration::from_millis(20)).await;
        }
    }
}

// ---- What the farmer asked and what it got ----

/// The flood's answers: challenges refused, qualities announced.
#[derive(Default)]
struct Flood {
    /// Challenge hash -> its number in the flood.
    index: HashMap<Bytes32, usize>,
    overloaded: HashSet<Bytes32>,
    /// Quality -> its challenge.
    announced: HashMap<Bytes32, Bytes32>,
}

impl Flood {
    fn on_message(&mut self, m: Message) {
        match m.body {
            Body::Error { code: ErrorCode::Overloaded, data: Some(data), .. } => {
                let ch: Bytes32 = data.as_slice().try_into().expect("data is a challenge hash");
                let i = self.index.get(&ch).expect("Overloaded for a challenge never sent");
                assert!(self.overloaded.insert(ch), "two Overloaded for challenge #{i}");
            }
            Body::ChallengeResponse { challenge_hash, quality, .. } => {
                assert!(self.index.contains_key(&challenge_hash), "answer to an unknown challenge");
                let before = self.announced.insert(quality, challenge_hash);
                assert!(before.is_none(), "quality {} announced twice", hex::encode(quality));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Announced {
    challenge: Bytes32,
    plot_size: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Proof,
    Header,
    Partial,
}

/// Every challenge refused, quality announced, request sent and answer received.
#[derive(Default)]
struct Ledger {
    overloaded: HashSet<Bytes32>,
    announced: HashMap<Bytes32, Announced>,
    /// Request id -> (quality, what was asked, message to sign).
    requests: HashMap<u16, (Bytes32, Asked, Bytes32)>,
    answers: HashMap<u16, Vec<Body>>,
}

#[derive(Debug, Default)]
struct Verdict {
    proofs_valid: usize,
    signatures_valid: usize,
    errors: BTreeMap<String, usize>,
}

/// What signature checks need: the farmer's secret key and the plot keys that may sign.
struct Signing<'a> {
    farmer_keys: &'a FarmerKeys,
    plot_pubkeys: &'a [G1],
}

impl Ledger {
    /// Records `m`; a new quality is asked for its proof (and with `sign`, both signatures).
    async fn on_message(&mut self, m: Message, farmer_side: &mut Duplex, sign: bool) {
        match (m.id, m.body) {
            (None, Body::Error { code: ErrorCode::Overloaded, data: Some(data), .. }) => {
                let ch: Bytes32 = data.as_slice().try_into().expect("data is a challenge hash");
                assert!(self.overloaded.insert(ch), "two Overloaded for one challenge");
            }
            (None, Body::ChallengeResponse { challenge_hash, quality, plot_size }) => {
                let new = Announced { challenge: challenge_hash, plot_size };
                let before = self.announced.insert(quality, new);
                assert!(before.is_none(), "quality {} announced twice", hex::encode(quality));
                self.ask_proof(farmer_side, quality).await;
                if sign {
                    let header_hash = digest(b"header", &quality);
                    let body = Body::RequestHeaderSignature { quality, header_hash };
                    let id = farmer_side.request(body).await;
                    self.requests.insert(id, (quality, Asked::Header, header_hash));
                    let farmer_target_hash = digest(b"partial", &quality);
                    let body = Body::RequestPartialProof { quality, farmer_target_hash };
                    let id = farmer_side.request(body).await;
                    self.requests.insert(id, (quality, Asked::Partial, farmer_target_hash));
                }
            }
            (Some(id), body) if self.requests.contains_key(&id) => {
                self.answers.entry(id).or_default().push(body);
            }
            (id, body) => panic!("unexpected message id {id:?}: {body:?}"),
        }
    }

    async fn ask_proof(&mut self, farmer_side: &mut Duplex, quality: Bytes32) -> u16 {
        let id = farmer_side.request(Body::RequestProofOfSpace { quality }).await;
        self.requests.insert(id, (quality, Asked::Proof, [0; 32]));
        id
    }

    /// Qualities whose proof request was answered with an Error.
    fn refused_proofs(&self) -> Vec<Bytes32> {
        let refused = self.requests.iter().filter(|(id, r)| {
            r.1 == Asked::Proof
                && matches!(self.answers.get(id).and_then(|a| a.first()), Some(Body::Error { .. }))
        });
        let mut qualities: Vec<Bytes32> = refused.map(|(_, r)| r.0).collect();
        qualities.sort();
        qualities
    }

    fn unanswered(&self) -> usize {
        self.requests.keys().filter(|id| !self.answers.contains_key(id)).count()
    }

    /// The answer to the last proof request for `quality`.
    fn proof_answer(&self, quality: &Bytes32) -> Option<&Body> {
        let asked = self.requests.iter().filter(|(_, r)| r.0 == *quality && r.1 == Asked::Proof);
        let (id, _) = asked.max_by_key(|(id, _)| **id)?;
        self.answers.get(id)?.first()
    }

    /// Checks every answer: exactly one per request, proofs verify with their quality,
    /// signatures verify (when `signing`), Errors have a code a request may get.
    fn check(&self, pool_pubkeys: &[G1], signing: Option<&Signing<'_>>) -> Verdict {
        let mut verdict = Verdict::default();
        let mut plot_of: HashMap<Bytes32, G1> = HashMap::new();
        let mut ids: Vec<&u16> = self.requests.keys().collect();
        ids.sort_by_key(|id| self.requests[id].1 != Asked::Proof); // proofs first: plot keys
        for id in ids {
            let (quality, asked, message) = self.requests[id];
            let answers = self.answers.get(id).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(answers.len(), 1, "request {id} ({asked:?}) answered {answers:?}");
            let announced = self.announced[&quality];
            match (&answers[0], asked) {
                (Body::RespondProofOfSpace { quality: q, proof }, Asked::Proof) => {
                    let expected = ProofExpectation {
                        quality,
                        challenge: announced.challenge,
                        plot_size: announced.plot_size,
                    };
                    if let Err(e) = check_proof(&expected, pool_pubkeys, q, proof) {
                        panic!("a wrong proof left the harvester: {e}");
                    }
                    plot_of.insert(quality, proof.plot_pubkey);
                    verdict.proofs_valid += 1;
                }
                (
                    Body::RespondHeaderSignature { quality: q, header_hash_signature: sig },
                    Asked::Header,
                )
                | (
                    Body::RespondPartialProof { quality: q, farmer_target_signature: sig },
                    Asked::Partial,
                ) => {
                    assert_eq!(*q, quality, "signature answers another quality");
                    let signing = signing.expect("signatures were asked for");
                    // The plot's key from its proof, else any plot key that may have signed.
                    let candidates: Vec<G1> = match plot_of.get(&quality) {
                        Some(pk) => vec![*pk],
                        None => signing.plot_pubkeys.to_vec(),
                    };
                    let sk = &signing.farmer_keys.farmer_sk;
                    let ok = candidates
                        .iter()
                        .any(|pk| check_signature("header", sk, pk, &message, sig).is_ok());
                    assert!(ok, "{asked:?} signature for {} does not verify", hex::encode(quality));
                    verdict.signatures_valid += 1;
                }
                (Body::Error { code, message, .. }, _) => {
                    assert!(
                        matches!(
                            code,
                            ErrorCode::LookupFailed
                                | ErrorCode::TimedOut
                                | ErrorCode::PlotUnavailable
                        ),
                        "request {id} ({asked:?}) got Error {code:?}: {message}"
                    );
                    *verdict.errors.entry(format!("{asked:?}/{code:?}")).or_default() += 1;
                }
                (other, _) => panic!("request {id} ({asked:?}) answered with {other:?}"),
            }
        }
        verdict
    }
}

// ---- Corrupt plot files ----

#[derive(Debug, Clone, Copy)]
enum Corruption {
    /// The first byte of the "Proof of Space Plot" magic.
    Magic,
    /// Table pointer 7 (P7) set past the end of the file.
    Pointer,
    /// The file cut to 60% of its length.
    Truncate,
    /// 4 KiB inverted at this percentage of the file (inside the parks of tables 1..6).
    Flip(u64),
    /// 4 KiB inverted in the middle of the C3 table (after the C1 and C2 checkpoints).
    C3,
}

const FLIP_BYTES: u64 = 4096;

/// Writes a corrupt copy of `source` at `target`; returns `target`.
fn corrupt(source: &Path, target: &Path, how: Corruption) -> PathBuf {
    let mut bytes = std::fs::read(source).expect("fixture plot");
    let len = bytes.len() as u64;
    let header = plot_format::header::parse_header(&bytes, len).expect("fixture header");
    let flip = |bytes: &mut Vec<u8>, at: u64| {
        let at = usize::try_from(at).expect("offset");
        bytes[at..at + FLIP_BYTES as usize].iter_mut().for_each(|b| *b = !*b);
    };
    match how {
        Corruption::Magic => bytes[0] ^= 0x20,
        Corruption::Pointer => {
            // Pointers are the last 80 bytes of the header, u64 big-endian, P1 first.
            let at = usize::try_from(header.header_len).expect("len") - 80 + 6 * 8;
            bytes[at..at + 8].copy_from_slice(&(len + (1 << 20)).to_be_bytes());
        }
        Corruption::Truncate => bytes.truncate(usize::try_from(len * 6 / 10).expect("len")),
        Corruption::Flip(percent) => {
            let at = len * percent / 100;
            let parks = header.table_pointers[0]..header.table_pointers[6];
            assert!(parks.contains(&at) && parks.contains(&(at + FLIP_BYTES)), "{at} in parks");
            flip(&mut bytes, at);
        }
        Corruption::C3 => {
            let c3 = header.table_pointers[9];
            assert!(len - c3 > 2 * FLIP_BYTES, "C3 holds more than the flipped bytes");
            flip(&mut bytes, c3 + (len - c3) / 2 - FLIP_BYTES / 2);
        }
    }
    std::fs::write(target, &bytes).expect("corrupt copy written");
    target.to_path_buf()
}

/// A plot folder with one intact plot and six corrupt copies of the selected fixtures.
struct CorruptFarm {
    folder: PathBuf,
    intact: PathBuf,
    /// Header magic, a table pointer past the end, truncation: refused when opened.
    at_scan: [PathBuf; 3],
    /// Parks at 30% and 50% of the file, the C3 table: seen only by lookups.
    at_lookup: [PathBuf; 3],
}

/// Writes the corrupt farm under `dir`. One corruption per file, and each plot id served at
/// most once, so every quality maps to one file. The keys-file copy keeps its name: the keys
/// file finds it by name.
fn corrupt_farm(dir: &Path) -> CorruptFarm {
    let folder = dir.join("plots");
    std::fs::create_dir_all(&folder).expect("dir");
    let fixture = |name: &str| {
        selected_fixture_plots()
            .into_iter()
            .find(|p| p.file_name().is_some_and(|f| f == name))
            .unwrap_or_else(|| panic!("fixture {name} is not a selected plot"))
    };
    let intact = folder.join("intact-k19-og-a.plot");
    std::fs::copy(fixture("k19-og-a.plot"), &intact).expect("copy");
    let at_scan = [
        corrupt(&fixture("k18-og-a.plot"), &folder.join("bad-magic.plot"), Corruption::Magic),
        corrupt(&fixture("k18-og-b.plot"), &folder.join("bad-pointer.plot"), Corruption::Pointer),
        corrupt(&fixture("k18-kf-a.plot"), &folder.join("truncated.plot"), Corruption::Truncate),
    ];
    let at_lookup = [
        corrupt(&fixture("k18-og-a.plot"), &folder.join("parks-30.plot"), Corruption::Flip(30)),
        corrupt(&fixture("k18-og-b.plot"), &folder.join("parks-50.plot"), Corruption::Flip(50)),
        corrupt(&fixture("k18-kf-a.plot"), &folder.join("k18-kf-a.plot"), Corruption::C3),
    ];
    CorruptFarm { folder, intact, at_scan, at_lookup }
}

/// The first sign, on these challenges, that the plot at `path` is corrupt as the daemon
/// would see it: a decoder error that means corruption, or a proof that does not verify with
/// its quality. None when the corruption stays invisible on them.
fn first_symptom(path: &Path, challenges: &[Bytes32]) -> Option<String> {
    let (file, plot) = shard::open_plot(path).expect("lookup-time corruption opens");
    for (i, ch) in challenges.iter().enumerate() {
        let found = match shard::lookup_file(&file, &plot, ch, Goal::Qualities, Mode::Complete)
            .expect("read")
        {
            Ok(found) => found,
            Err(e) => return Some(format!("challenge {i}: quality lookup: {e}")),
        };
        for f in found {
            let goal = Goal::Proof { index: f.index };
            let proof =
                match shard::lookup_file(&file, &plot, ch, goal, Mode::Complete).expect("read") {
                    Ok(list) => list.into_iter().find(|p| p.index == f.index).and_then(|p| p.proof),
                    Err(e) => return Some(format!("challenge {i}: proof {}: {e}", f.index)),
                };
            let Some(proof) = proof else {
                return Some(format!("challenge {i}: entry {} has no proof", f.index));
            };
            match validate_proof(plot.id(), plot.k(), ch, &proof) {
                Ok(q) if q == f.quality => {}
                other => return Some(format!("challenge {i}: proof verifies as {other:?}")),
            }
        }
    }
    None
}

/// Every quality of `challenges` in the plot at `path`, with its challenge.
fn qualities_of(path: &Path, challenges: &[Bytes32]) -> Vec<(Bytes32, Bytes32)> {
    let (file, plot) = shard::open_plot(path).expect("plot opens");
    let mut out = Vec::new();
    for ch in challenges {
        let found = shard::lookup_file(&file, &plot, ch, Goal::Qualities, Mode::Complete)
            .expect("read")
            .expect("lookup");
        out.extend(found.into_iter().map(|f| (f.quality, *ch)));
    }
    out
}

/// Plot public keys of the selected fixture plots (from the manifest).
fn fixture_plot_pubkeys() -> Vec<G1> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let selected: Vec<PathBuf> = selected_fixture_plots();
    manifest["plots"]
        .as_array()
        .expect("plots")
        .iter()
        .filter(|p| selected.contains(&fixtures().join(p["path"].as_str().expect("path"))))
        .map(|p| {
            let pk = hex::decode(p["plot_public_key"].as_str().expect("hex")).expect("hex");
            let pk: G1 = pk.try_into().expect("48 bytes");
            let pool = hex::decode(p["pool_public_key"].as_str().expect("hex")).expect("hex");
            let pool: G1 = pool.try_into().expect("48 bytes");
            assert_eq!(hex::encode(plot_id(&pool, &pk)), p["id"].as_str().expect("id"));
            pk
        })
        .collect()
}

// ---- Small helpers ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn handshake() -> Message {
    Message { id: None, body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() } }
}

fn new_challenge(challenge_hash: &Bytes32) -> Message {
    Message { id: None, body: Body::NewChallenge { challenge_hash: *challenge_hash } }
}

fn flood_challenge(i: u32) -> Bytes32 {
    digest(b"hostile-flood", &i.to_be_bytes())
}

fn digest(tag: &[u8], bytes: &[u8]) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(bytes);
    h.finalize().into()
}

/// Prints the end of the daemon's log when the test fails (whatever assertion failed).
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- harvester log {} ----\n{}", self.0.display(), log_tail(&self.0));
        }
    }
}

/// The last lines of the daemon's log (the whole log of a flood is long).
fn tail(proc: &Proc) -> String {
    log_tail(&proc.log)
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn harvester_alive(proc: &mut Proc) -> bool {
    proc.child.try_wait().expect("wait").is_none()
}

async fn scrape(port: u16) -> String {
    try_scrape(port).await.expect("the metrics endpoint answers")
}

/// `/metrics`, or None while the endpoint does not listen yet.
async fn try_scrape(port: u16) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        Some(http_get(port, "/metrics"))
    })
    .await
    .expect("scrape")
}

/// Polls `/metrics` until `name` satisfies `ok`.
async fn wait_for_metric(port: u16, proc: &Proc, name: &str, ok: impl Fn(f64) -> bool) {
    let start = Instant::now();
    loop {
        let text = try_scrape(port).await.unwrap_or_default();
        if metric(&text, name).is_some_and(&ok) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{name} never reached the expected value:\n{text}\nlog:\n{}",
            tail(proc)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/metrics` until `ok` holds for its text.
async fn wait_for_metric_text(port: u16, proc: &Proc, ok: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let text = try_scrape(port).await.unwrap_or_default();
        if ok(&text) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "/metrics never as expected:\n{text}\nlog:\n{}",
            tail(proc)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the daemon has taken `challenges` challenges in all and none is in flight.
async fn wait_until_idle(port: u16, proc: &Proc, challenges: usize) {
    wait_for_metric(port, proc, "harvester_challenges_total", |v| v == challenges as f64).await;
    wait_for_metric(port, proc, "harvester_challenges_in_flight", |v| v == 0.0).await;
}

fn wait_for_log(proc: &Proc, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = proc.log().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(start.elapsed() < WAIT, "no {needle:?} in the log:\n{}", tail(proc));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first "plot quarantined" log line naming `path` (with the reason).
fn wait_for_quarantine(proc: &Proc, path: &Path) -> String {
    let start = Instant::now();
    let name = path.display().to_string();
    loop {
        let log = proc.log();
        let line = log.lines().find(|l| l.contains("plot quarantined") && l.contains(&name));
        if let Some(line) = line {
            return line.to_string();
        }
        assert!(start.elapsed() < WAIT, "{name} never quarantined; log:\n{}", tail(proc));
        std::thread::sleep(Duration::from_millis(50));
    }
}
