//! End to end: the real `harvester run` daemon and the real `farmer-sim` (or a scripted farmer
//! in this test) over loopback mutual TLS, with the fixture plots (`scripts/make-fixtures.sh`).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use protocol::{Body, ErrorCode, Message};
use serde_json::Value;
use support::*;
use tokio::io::AsyncReadExt;

#[test]
fn farmer_sim_gets_valid_answers_to_all_nine_messages_for_both_key_kinds() {
    let tmp = TempDir::new("nine");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let (farmer_port, metrics_port) = (free_port(), free_port());
    let config =
        write_config(&tmp.0, "h1", farmer_port, Some(metrics_port), &certs, &plot_folders(), true);
    let json = tmp.0.join("report.json");
    let dump = tmp.0.join("answers.jsonl");
    let mut farmer = Proc::spawn(
        "farmer-sim",
        Command::new(farmer_sim())
            .args(["--listen", &format!("127.0.0.1:{farmer_port}"), "--certs"])
            .arg(&certs)
            .arg("--keys")
            .arg(fixtures().join("farmer-keys.json"))
            .args(["--challenges", "60", "--rate", "0", "--request", "all", "--json"])
            .arg(&json)
            .arg("--dump")
            .arg(&dump),
        tmp.0.join("farmer.log"),
    );
    let hlog = tmp.0.join("harvester.hlog");
    let mut harvester = Proc::spawn(
        "harvester",
        Command::new(harvester_bin())
            .args(["run", "--config"])
            .arg(&config)
            .arg("--hlog")
            .arg(&hlog)
            .args(["--hlog-interval-seconds", "0.5"]),
        tmp.0.join("harvester.log"),
    );
    let status = farmer.wait(Duration::from_secs(180));
    let flog = farmer.log();
    assert!(
        status.success(),
        "farmer-sim failed: {status}\n{flog}\nharvester:\n{}",
        harvester.log()
    );
    let r = report(&json);
    assert_eq!(count(&r, "/invalid"), 0, "{r}");
    assert_eq!(count(&r, "/lost"), 0, "{r}");
    // farmer-sim negotiates harvester/2: a ChallengeDone per challenge, each with the count of
    // the responses before it (a wrong count or a response after it is invalid, checked above).
    assert_eq!(count(&r, "/challenges_done"), count(&r, "/challenges"), "{r}");
    assert!(count(&r, "/proofs/valid") > 0, "no proof: {r}");
    assert_eq!(count(&r, "/proofs/valid"), count(&r, "/proofs/requested"), "{r}");
    assert!(count(&r, "/signatures/header/valid") > 0, "{r}");
    assert!(count(&r, "/signatures/partial/valid") > 0, "{r}");
    assert!(count(&r, "/signatures/kinds/keys_file") > 0, "keys-file plot never signed: {r}");
    assert!(count(&r, "/signatures/kinds/memo") > 0, "memo plot never signed: {r}");

    // The scrape shows the daemon's counters and the engine's per-disk histograms.
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "harvester_challenges_total",
        "harvester_read_latency_seconds_bucket{",
        "harvester_signature_latency_seconds",
        "harvester_plots{",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let status = harvester.terminate(Duration::from_secs(15));
    assert!(status.success(), "harvester exit {status}:\n{}", harvester.log());
    // The interval log has the engine's and the daemon's histograms, with recorded values.
    let log = std::fs::read_to_string(&hlog).expect("the --hlog file");
    assert!(log.starts_with("#[Histogram log format version"), "{}", &log[..log.len().min(300)]);
    for tag in
        ["Tag=read_latency_us.", "Tag=lookup_latency_us.", "Tag=challenge_latency_us.daemon,"]
    {
        assert!(log.contains(tag), "no {tag} in the hlog");
    }
    assert!(
        log.lines().any(|l| l.starts_with("Tag=signature_latency_us.daemon,")
            && l.split(',').nth(3).is_some_and(|max| max != "0.000")),
        "no signature latency recorded in the hlog"
    );

    // Independent check with the reference: chiapos' Verifier and blspy's AugSchemeMPL.
    let out = Command::new(test_support::oracle_python())
        .arg(repo().join("scripts/oracle.py"))
        .args(["check-answers", "--file"])
        .arg(&dump)
        .output()
        .expect("oracle runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oracle check-answers: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Value = serde_json::from_str(text.trim()).expect("oracle json");
    assert!(count(&verdict, "/proofs") > 0 && count(&verdict, "/signatures") > 0, "{verdict}");
    assert_eq!(count(&verdict, "/failed"), 0, "{verdict}");
}

#[test]
fn one_farmer_with_two_harvester_processes() {
    let tmp = TempDir::new("scale");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    // Each "storage node" gets its own plots.
    let plots = selected_fixture_plots();
    let (a, b) = (tmp.0.join("node-a"), tmp.0.join("node-b"));
    for (i, p) in plots.iter().enumerate() {
        let dir = if i % 2 == 0 { &a } else { &b };
        std::fs::create_dir_all(dir).expect("dir");
        std::os::unix::fs::symlink(p, dir.join(p.file_name().expect("name"))).expect("link");
    }
    let farmer_port = free_port();
    let json = tmp.0.join("report.json");
    let mut farmer = Proc::spawn(
        "farmer-sim",
        Command::new(farmer_sim())
            .args(["--listen", &format!("127.0.0.1:{farmer_port}"), "--certs"])
            .arg(&certs)
            .arg("--keys")
            .arg(fixtures().join("farmer-keys.json"))
            .args(["--harvesters", "2", "--challenges", "40", "--rate", "0", "--request", "all"])
            .arg("--json")
            .arg(&json),
        tmp.0.join("farmer.log"),
    );
    let ca = write_config(&tmp.0, "a", farmer_port, None, &certs, std::slice::from_ref(&a), true);
    let cb = write_config(&tmp.0, "b", farmer_port, None, &certs, std::slice::from_ref(&b), true);
    let mut ha = start_harvester(&tmp.0, "harvester-a", &ca);
    let mut hb = start_harvester(&tmp.0, "harvester-b", &cb);
    let status = farmer.wait(Duration::from_secs(180));
    assert!(status.success(), "farmer-sim: {}\n{}\n{}", farmer.log(), ha.log(), hb.log());
    let r = report(&json);
    assert_eq!(count(&r, "/harvesters"), 2, "{r}");
    assert_eq!(count(&r, "/invalid") + count(&r, "/lost"), 0, "{r}");
    assert_eq!(count(&r, "/challenges_done"), 2 * count(&r, "/challenges"), "{r}");
    assert!(count(&r, "/proofs/valid") > 0, "{r}");
    assert!(ha.terminate(Duration::from_secs(15)).success(), "{}", ha.log());
    assert!(hb.terminate(Duration::from_secs(15)).success(), "{}", hb.log());
}

#[test]
fn bad_frames_close_one_connection_and_the_harvester_keeps_serving() {
    let tmp = TempDir::new("frames");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let farmer = ScriptedFarmer::bind(&certs).await;
        let config = write_config(&tmp.0, "h", farmer.port(), None, &certs, &plot_folders(), true);
        let harvester = start_harvester(&tmp.0, "harvester", &config);
        let t = Duration::from_secs(30);

        // 1. Out of order: a challenge before the handshake is refused, the connection stays.
        let mut peer = farmer.accept(t).await;
        peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: challenge(0) } })
            .await;
        let m = peer.recv(t).await.expect("an answer");
        assert!(matches!(m.body, Body::Error { code: ErrorCode::NotReady, .. }), "{m:?}");
        // 2. An unknown quality gets an error with the request's id.
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        let id = peer.request(Body::RequestProofOfSpace { quality: [7; 32] }).await;
        let m = peer.recv(t).await.expect("an answer");
        assert_eq!(m.id, Some(id));
        assert!(matches!(m.body, Body::Error { code: ErrorCode::UnknownQuality, .. }), "{m:?}");
        // 3. A malformed frame (unknown message type): ProtocolViolation, then the close.
        peer.send_raw(&[0, 0, 0, 6, 99, 0, 0, 0, 0, 0]).await;
        let m = peer.recv(t).await.expect("the reason before the close");
        assert!(matches!(m.body, Body::Error { code: ErrorCode::ProtocolViolation, .. }), "{m:?}");
        assert!(peer.recv(t).await.is_none(), "the harvester closes the connection");

        // 4. It dials again; an oversized frame is refused from its length prefix alone.
        let mut peer = farmer.accept(t).await;
        peer.send_raw(&(64u32 << 20).to_be_bytes()).await;
        let m = peer.recv(t).await.expect("the reason before the close");
        assert!(matches!(m.body, Body::Error { code: ErrorCode::ProtocolViolation, .. }), "{m:?}");
        assert!(peer.recv(t).await.is_none());

        // 5. A farmer that leaves mid-challenge: challenges sent, connection dropped at once.
        let mut peer = farmer.accept(t).await;
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        for i in 1..=20 {
            peer.send(Message {
                id: None,
                body: Body::NewChallenge { challenge_hash: challenge(i) },
            })
            .await;
        }
        drop(peer);

        // 6. It comes back: the new connection is served completely and correctly.
        let mut peer = farmer.accept(t).await;
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        let mut total = 0;
        for i in 21..=30 {
            let ch = challenge(i);
            let want = expected_qualities(&ch);
            peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: ch } }).await;
            let mut got = BTreeSet::new();
            while got.len() < want.len() {
                let m = peer.recv(t).await.expect("responses");
                match m.body {
                    Body::ChallengeResponse { challenge_hash, quality, .. } => {
                        assert_eq!(challenge_hash, ch);
                        assert!(got.insert(quality), "quality announced twice");
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(got, want, "qualities of challenge {i}");
            total += got.len();
        }
        assert!(total > 0, "no quality in 10 challenges: the check would be empty");
        drop(harvester);
    });
}

/// Waits until `proc`'s log contains `needle` (or panics with the log after `timeout`).
fn wait_for_log(proc: &Proc, needle: &str, timeout: Duration) {
    let start = std::time::Instant::now();
    while !proc.log().contains(needle) {
        assert!(start.elapsed() < timeout, "no {needle:?} in {}'s log:\n{}", proc.name, proc.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn peers_with_certificates_from_another_ca_are_refused_both_ways() {
    let tmp = TempDir::new("foreign");
    let (ours, theirs) = (tmp.0.join("ours"), tmp.0.join("theirs"));
    make_certs(&ours);
    make_certs(&theirs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let t = Duration::from_secs(30);
        // A harvester with a foreign certificate: our farmer refuses its handshake.
        let farmer = ScriptedFarmer::bind(&ours).await;
        let config =
            write_config(&tmp.0, "foreign", farmer.port(), None, &theirs, &plot_folders(), true);
        let harvester = start_harvester(&tmp.0, "harvester-foreign", &config);
        for _ in 0..2 {
            let (tcp, _) = tokio::time::timeout(t, farmer.listener.accept())
                .await
                .expect("the harvester dials")
                .expect("accept");
            let refused = farmer.acceptor.accept(tcp).await;
            assert!(refused.is_err(), "a harvester with a foreign certificate got in");
        }
        // It keeps retrying with backoff and says why it cannot connect.
        wait_for_log(&harvester, "cannot connect", t);
        drop(harvester);

        // A farmer with a foreign certificate: our harvester refuses it.
        let impostor = ScriptedFarmer::bind(&theirs).await;
        let config =
            write_config(&tmp.0, "ours", impostor.port(), None, &ours, &plot_folders(), true);
        let harvester = start_harvester(&tmp.0, "harvester-ours", &config);
        let (tcp, _) = tokio::time::timeout(t, impostor.listener.accept())
            .await
            .expect("the harvester dials")
            .expect("accept");
        // The server side may complete its half; the harvester must not accept the farmer.
        if let Ok(mut stream) = impostor.acceptor.accept(tcp).await {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(t, stream.read(&mut buf)).await.expect("closed in time");
            assert!(matches!(n, Ok(0) | Err(_)), "the harvester talked to an impostor: {n:?}");
        }
        wait_for_log(&harvester, "TLS handshake failed", t);
    });
}

#[test]
fn a_later_handshake_reselects_plots_without_a_restart() {
    let tmp = TempDir::new("reselect");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let farmer = ScriptedFarmer::bind(&certs).await;
        let config = write_config(&tmp.0, "h", farmer.port(), None, &certs, &plot_folders(), true);
        let harvester = start_harvester(&tmp.0, "harvester", &config);
        let t = Duration::from_secs(30);
        let mut peer = farmer.accept(t).await;
        // A pool key none of the plots has: nothing is selected, no challenge is answered.
        let stranger = plot_format::keys::key_gen(&[9u8; 32]).expect("key").public_key();
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: vec![stranger] },
        })
        .await;
        let mut asked = 0;
        for i in 100..110 {
            let ch = challenge(i);
            asked += expected_qualities(&ch).len();
            peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: ch } }).await;
        }
        assert!(asked > 0, "the fixture plots have qualities for these challenges");
        if let Some(m) = peer.recv(Duration::from_secs(2)).await {
            panic!("nothing is selected, yet the harvester sent {m:?}");
        }
        // The farmer's real pool keys, on the same connection: now the plots answer.
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        let ch = challenge(200);
        let want = expected_qualities(&ch);
        assert!(!want.is_empty(), "pick a challenge with qualities");
        peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: ch } }).await;
        let mut got = BTreeSet::new();
        while got.len() < want.len() {
            match peer.recv(t).await.expect("responses after the re-handshake").body {
                Body::ChallengeResponse { challenge_hash, quality, .. } => {
                    assert_eq!(challenge_hash, ch);
                    got.insert(quality);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, want);
        // This farmer offered only harvester/1: no ChallengeDone follows the answers.
        if let Some(m) = peer.recv(Duration::from_secs(1)).await {
            panic!("a harvester/1 farmer got {m:?}");
        }
        drop(harvester);
    });
}

/// A farmer that offers `harvester/2` gets a `ChallengeDone` after the last `ChallengeResponse`
/// of each challenge, with the count of responses, the disks and how long it took.
#[test]
fn challenge_done_ends_each_challenge_when_negotiated() {
    let tmp = TempDir::new("challenge-done");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let protocols: [&[u8]; 2] = [harvester::tls::ALPN_V2, harvester::tls::ALPN];
        let farmer = ScriptedFarmer::bind_alpn(&certs, &protocols).await;
        let config = write_config(&tmp.0, "h", farmer.port(), None, &certs, &plot_folders(), true);
        let harvester = start_harvester(&tmp.0, "harvester", &config);
        let t = Duration::from_secs(30);
        let mut peer = farmer.accept(t).await;
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        for i in [200u32, 201, 202] {
            let ch = challenge(i);
            let want = expected_qualities(&ch);
            peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: ch } }).await;
            let mut got = BTreeSet::new();
            loop {
                match peer.recv(t).await.expect("answers").body {
                    Body::ChallengeResponse { challenge_hash, quality, .. } => {
                        assert_eq!(challenge_hash, ch);
                        got.insert(quality);
                    }
                    Body::ChallengeDone {
                        challenge_hash,
                        responses,
                        disks,
                        disks_incomplete,
                        elapsed_us,
                    } => {
                        assert_eq!(challenge_hash, ch);
                        assert_eq!(responses as usize, got.len(), "the count of what came before");
                        assert!(disks >= 1 && disks_incomplete == 0, "{disks} {disks_incomplete}");
                        assert!(elapsed_us > 0);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(got, want, "every quality came before ChallengeDone");
        }
        drop(harvester);
    });
}

/// `shards_per_disk = 3`: one disk's plots split over three shards (threads and rings) answer
/// exactly what the decoder finds, every proof checks out whichever shard holds its plot, and
/// /metrics names the three shards.
#[test]
fn a_disk_split_over_three_shards_answers_every_quality_and_proof() {
    use bench::farmer::checks::{check_proof, ProofExpectation};
    use std::collections::HashMap;

    let tmp = TempDir::new("shards");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            &plot_folders(),
            true,
            &[("engine", "shards_per_disk = 3")],
        )
        .await;
        let t = Duration::from_secs(30);
        let mut peer = farmer.accept(t).await;
        let pool = pool_keys();
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool.clone() },
        })
        .await;
        let challenges: Vec<[u8; 32]> = (300..340).map(challenge).collect();
        let mut want = BTreeSet::new();
        for ch in &challenges {
            want.extend(expected_qualities(ch).into_iter().map(|q| (*ch, q)));
        }
        assert!(want.len() >= 10, "the fixtures answer these challenges: {}", want.len());
        for ch in &challenges {
            peer.send(Message { id: None, body: Body::NewChallenge { challenge_hash: *ch } }).await;
        }
        let mut got = BTreeSet::new();
        let mut sizes = HashMap::new();
        while got.len() < want.len() {
            match peer.recv(t).await.expect("a response for every quality").body {
                Body::ChallengeResponse { challenge_hash, quality, plot_size } => {
                    assert!(got.insert((challenge_hash, quality)), "a quality announced twice");
                    sizes.insert(quality, plot_size);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, want);
        let mut asked = HashMap::new();
        for (ch, q) in &got {
            let id = peer.request(Body::RequestProofOfSpace { quality: *q }).await;
            asked.insert(id, ProofExpectation { quality: *q, challenge: *ch, plot_size: sizes[q] });
        }
        let mut plots = BTreeSet::new();
        while !asked.is_empty() {
            let m = peer.recv(t).await.expect("an answer to every proof request");
            let expected =
                asked.remove(&m.id.expect("answers carry the request id")).expect("asked");
            match m.body {
                Body::RespondProofOfSpace { quality, proof } => {
                    let id = check_proof(&expected, &pool, &quality, &proof)
                        .unwrap_or_else(|e| panic!("invalid proof: {e:?}"));
                    plots.insert(id);
                }
                other => panic!("proof request answered with {other:?}"),
            }
        }
        assert!(plots.len() >= 2, "proofs from more than one plot (so more than one shard)");
        // Three shards of the one disk, each serving some of its plots.
        let text = http_get(metrics_port, "/metrics");
        let shards: BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("harvester_plots_active{"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert_eq!(shards.len(), 3, "three shards in /metrics: {shards:?}");
        for (i, name) in shards.iter().enumerate() {
            assert!(name.ends_with(&format!("#{i}")), "shard names disk#i: {shards:?}");
        }
        drop(harvester);
    });
}
