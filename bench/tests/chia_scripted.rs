//! `harvester run --chia-root` against a scripted chia farmer: a WebSocket server over mutual
//! TLS that speaks chia's messages (`protocol::chia`) step by step. It covers what chia's own
//! farmer does not send in `chia_farmer.rs`: request ids on `request_signatures` and
//! `request_plots`, pool difficulties for plot-NFT plots, the v1 signage point of farmers
//! before 0.0.37, a wrong network, an undecodable message; and checks each answer itself
//! (proofs with our verifier, signatures aggregated with the farmer's share).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use plot_format::keys::{aggregate_signatures, sign_aug, verify_aug, SecretKey};
use plot_format::verify::validate_proof;
use protocol::chia::consensus::calculate_pos_challenge;
use protocol::chia::messages::{
    msg, split_plot_identifier, FarmingInfo, Frame, Handshake, HarvesterHandshake, NewProofOfSpace,
    NewSignagePointHarvester, NewSignagePointHarvester2, PlotSyncPlotList2, PlotSyncResponse,
    PoolDifficulty, RequestPlots, RequestSignatures, RespondPlots, RespondPlots2,
    RespondSignatures, B32,
};
use protocol::chia::streamable::{from_bytes, Streamable};
use serde_json::Value;
use support::{fixtures, make_certs, Proc, TempDir};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::WebSocketStream;

type Conn = WebSocketStream<TlsStream<TcpStream>>;

const STEP: Duration = Duration::from_secs(20);

struct Farm {
    dir: TempDir,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    _harvester: Proc,
    manifest: Value,
}

/// A chia root whose farmer is this test, served by a harvester process.
async fn farm(name: &str) -> Farm {
    farm_with(name, 18, |_| fixtures().join("plots")).await
}

/// A farm whose network's `MIN_PLOT_SIZE_V1` is `min_k`, with the plot folder `plots` makes
/// in the farm's folder.
async fn farm_with(name: &str, min_k: u8, plots: impl FnOnce(&Path) -> std::path::PathBuf) -> Farm {
    let dir = TempDir::new(name);
    let plot_dir = plots(&dir.0);
    let certs = dir.0.join("certs");
    make_certs(&certs);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::fs::create_dir_all(dir.0.join("config")).expect("config dir");
    let yaml = format!(
        "network_overrides: &o\n  constants:\n    mainnet:\n      MIN_PLOT_SIZE_V1: {min_k}\n      \
         NUMBER_ZERO_BITS_PLOT_FILTER_V1: 0\n      GENESIS_CHALLENGE: ccd5bb7118\n\
         selected_network: &n mainnet\nprivate_ssl_ca:\n  crt: certs/ca.crt\n\
         harvester:\n  network_overrides: *o\n  selected_network: *n\n  farmer_peers:\n    \
         - host: 127.0.0.1\n      port: {port}\n  plot_directories:\n    - {}\n  \
         plots_refresh_parameter:\n    batch_size: 4\n  ssl:\n    private_crt: \
         certs/harvester.crt\n    private_key: certs/harvester.key\n",
        plot_dir.display()
    );
    std::fs::write(dir.0.join("config/config.yaml"), yaml).expect("config.yaml");
    // No metrics endpoint (tests run side by side); quick re-dials.
    let toml = "[metrics]\nlisten = \"\"\n[farmer]\nreconnect_initial_seconds = 0.1\n\
                reconnect_max_seconds = 0.5\n[log]\nchia_activity_file = \"activity.log\"\n";
    std::fs::write(dir.0.join("harvester.toml"), toml).expect("toml");
    let mut cmd = std::process::Command::new(support::harvester_bin());
    cmd.args(["run", "--chia-root"]).arg(&dir.0).arg("--config").arg(dir.0.join("harvester.toml"));
    let harvester = Proc::spawn("harvester", &mut cmd, dir.0.join("harvester.log"));
    let tls = harvester::tls::server_config(
        &certs.join("ca.crt"),
        &certs.join("farmer.crt"),
        &certs.join("farmer.key"),
    )
    .expect("server tls");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    Farm {
        dir,
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        _harvester: harvester,
        manifest,
    }
}

fn hex32(v: &Value) -> B32 {
    hex::decode(v.as_str().expect("hex")).expect("hex").try_into().expect("32 bytes")
}

fn hex48(v: &Value) -> [u8; 48] {
    hex::decode(v.as_str().expect("hex")).expect("hex").try_into().expect("48 bytes")
}

impl Farm {
    /// The served fixture plots (memo plots in fixtures/plots), by plot id.
    fn plots(&self) -> BTreeMap<B32, &Value> {
        self.manifest["plots"]
            .as_array()
            .expect("plots")
            .iter()
            .filter(|p| p["path"].as_str().is_some_and(|s| s.starts_with("plots/")))
            .map(|p| (hex32(&p["id"]), p))
            .collect()
    }

    /// Accepts the harvester's next connection (TLS, then the WebSocket upgrade on /ws).
    async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(STEP, self.listener.accept())
            .await
            .expect("dialled")
            .expect("tcp");
        let tls = self.acceptor.accept(tcp).await.expect("TLS");
        use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
        let path = std::sync::Mutex::new(String::new());
        // tungstenite's callback type returns its (large) error response by value.
        #[allow(clippy::result_large_err)]
        let record = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            *path.lock().expect("lock") = req.uri().path().to_string();
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(tls, record).await.expect("WebSocket upgrade");
        assert_eq!(*path.lock().expect("lock"), "/ws");
        ws
    }
}

async fn send<T: Streamable>(ws: &mut Conn, msg_type: u8, id: Option<u16>, body: &T) {
    ws.send(Ws::Binary(Frame::new(msg_type, id, body).encode().into())).await.expect("send");
}

/// The next chia message, skipping WebSocket control frames; `None` when the harvester closed.
async fn recv(ws: &mut Conn, wait: Duration) -> Option<Frame> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => panic!("no message within {wait:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Ws::Close(_)))) => return None,
            Ok(Some(Ok(Ws::Binary(b)))) => return Some(Frame::decode(&b).expect("a chia frame")),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn farmer_handshake(version: &str, network: &str) -> Handshake {
    Handshake {
        network_id: network.into(),
        protocol_version: version.into(),
        software_version: "scripted".into(),
        server_port: 8447,
        node_type: 3,
        capabilities: vec![(1, "1".into()), (2, "1".into()), (3, "1".into())],
    }
}

/// Handshakes both ways; checks the harvester's.
async fn handshake(ws: &mut Conn, version: &str, network: &str) {
    let hello = recv(ws, STEP).await.expect("the harvester's handshake");
    assert_eq!(hello.msg_type, msg::HANDSHAKE);
    let h: Handshake = hello.body().expect("handshake");
    assert_eq!(
        (h.network_id.as_str(), h.protocol_version.as_str(), h.node_type, h.server_port),
        ("mainnet", "0.0.38", 2, 0)
    );
    assert_eq!(h.capabilities, [(1, "1".into()), (2, "1".into()), (3, "1".into())]);
    send(ws, msg::HANDSHAKE, None, &farmer_handshake(version, network)).await;
}

/// Answers a whole plot sync; returns the plots loaded.
async fn plot_sync(ws: &mut Conn) -> Vec<protocol::chia::messages::Plot2> {
    let mut loaded = Vec::new();
    loop {
        let f = recv(ws, STEP).await.expect("plot sync");
        assert!((78..=84).contains(&f.msg_type) || f.msg_type == 112, "type {}", f.msg_type);
        if f.msg_type == msg::PLOT_SYNC_LOADED2 {
            let l: PlotSyncPlotList2 = f.body().expect("loaded2");
            assert!(l.data.len() <= 4, "batch_size is respected");
            loaded.extend(l.data);
        }
        let identifier = from_bytes(&f.data[..24]).expect("identifier");
        let r = PlotSyncResponse { identifier, message_type: i16::from(f.msg_type), error: None };
        send(ws, msg::PLOT_SYNC_RESPONSE, None, &r).await;
        if f.msg_type == msg::PLOT_SYNC_DONE {
            return loaded;
        }
    }
}

fn keys_message(farm: &Farm) -> HarvesterHandshake {
    let any = farm.plots().into_values().next().expect("a plot");
    HarvesterHandshake {
        farmer_public_keys: vec![hex48(&any["farmer_public_key"])],
        pool_public_keys: farm
            .plots()
            .values()
            .filter_map(|p| p["pool_public_key"].as_str().map(|_| hex48(&p["pool_public_key"])))
            .take(1)
            .collect(),
    }
}

/// Collects `new_proof_of_space` until `farming_info`.
async fn answers(ws: &mut Conn) -> (Vec<NewProofOfSpace>, FarmingInfo) {
    let mut proofs = Vec::new();
    loop {
        let f = recv(ws, STEP).await.expect("answers");
        match f.msg_type {
            msg::NEW_PROOF_OF_SPACE => proofs.push(f.body().expect("new_proof_of_space")),
            msg::FARMING_INFO => return (proofs, f.body().expect("farming_info")),
            t => panic!("unexpected message type {t}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_farmer_gets_every_message_answered() {
    let farm = farm("chia-scripted").await;
    let plots = farm.plots();
    let mut ws = farm.accept().await;
    handshake(&mut ws, "0.0.38", "mainnet").await;
    send(&mut ws, msg::HARVESTER_HANDSHAKE, None, &keys_message(&farm)).await;
    let loaded = plot_sync(&mut ws).await;
    assert_eq!(loaded.len(), plots.len(), "every fixture plot synced");
    for p in &loaded {
        let m = plots.get(&p.plot_id).expect("a fixture plot");
        assert_eq!(p.size as u64, m["k"].as_u64().expect("k"));
        assert!(Path::new(&p.filename).is_absolute() && p.filename.ends_with(".plot"));
        assert_eq!(p.plot_public_key, hex48(&m["plot_public_key"]));
        assert_eq!(
            p.pool_contract_puzzle_hash.is_some(),
            m["pool_contract_puzzle_hash"].is_string()
        );
    }

    // request_plots with a request id: the answer carries it.
    send(&mut ws, msg::REQUEST_PLOTS, Some(0x8001), &RequestPlots {}).await;
    let f = recv(&mut ws, STEP).await.expect("respond_plots2");
    assert_eq!((f.msg_type, f.id), (msg::RESPOND_PLOTS2, Some(0x8001)));
    let r: RespondPlots2 = f.body().expect("respond_plots2");
    assert_eq!(r.plots.len(), plots.len());

    // A signage point where every quality is eligible, except that the plot-NFT plots' pool
    // asks for an impossible difficulty.
    let contract = plots
        .values()
        .find_map(|p| {
            p["pool_contract_puzzle_hash"].as_str().map(|_| hex32(&p["pool_contract_puzzle_hash"]))
        })
        .expect("a pool-contract fixture");
    let (challenge_hash, sp_hash) = ([0x11; 32], [0x22; 32]);
    let sp = NewSignagePointHarvester2 {
        challenge_hash,
        difficulty: 1,
        sub_slot_iters: 1 << 57,
        signage_point_index: 7,
        sp_hash,
        pool_difficulties: vec![PoolDifficulty {
            difficulty: u64::MAX / 4,
            sub_slot_iters: 1 << 57,
            pool_contract_puzzle_hash: contract,
        }],
        peak_height: 100,
        last_tx_height: 99,
        filter_challenge: None,
    };
    send(&mut ws, msg::NEW_SIGNAGE_POINT_HARVESTER, None, &sp).await;
    let (proofs, info) = answers(&mut ws).await;
    assert_eq!((info.challenge_hash, info.sp_hash), (challenge_hash, sp_hash));
    assert_eq!(info.total_plots as usize, plots.len());
    assert_eq!(info.passed as usize, plots.len(), "0 filter bits: every plot passes");
    assert_eq!(info.proofs as usize, proofs.len());
    assert!(!proofs.is_empty(), "the fixtures have qualities for this signage point");
    for p in &proofs {
        assert_eq!(
            (p.challenge_hash, p.sp_hash, p.signage_point_index),
            (challenge_hash, sp_hash, 7)
        );
        let (quality, path) = split_plot_identifier(&p.plot_identifier).expect("identifier");
        assert!(path.ends_with(".plot"));
        let pos = &p.proof;
        assert!(pos.pool_contract_puzzle_hash.is_none(), "no plot-NFT proof at that difficulty");
        let (id, m) = plots
            .iter()
            .find(|(_, m)| hex48(&m["plot_public_key"]) == pos.plot_public_key)
            .expect("a served plot");
        assert_eq!(pos.challenge, calculate_pos_challenge(id, &challenge_hash, &sp_hash));
        assert_eq!(pos.size as u64, m["k"].as_u64().expect("k"));
        assert_eq!(
            validate_proof(id, pos.size, &pos.challenge, &pos.proof).expect("valid"),
            quality
        );
    }

    // The signage point's line in the chia-style activity log, read as a log monitor written
    // for chia reads it (its regular expression, run by Python's re).
    let monitor = r#"
import re, sys, json
pattern = re.compile(
    r"([0-9:.]*) (?:[-0-9a-zA-Z.]+ )?harvester (?:src|chia).harvester.harvester(?:\s?): INFO\s*([0-9]+) plots were "
    r"eligible for farming ([0-9a-z.]*) Found ([0-9]+) proofs. Time: ([0-9.]*) s. "
    r"Total ([0-9]*) plots")
print(json.dumps(pattern.findall(open(sys.argv[1]).read())))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", monitor])
        .arg(farm.dir.0.join("activity.log"))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(lines.len(), 1, "one line per signage point: {lines:?}");
    let l = &lines[0];
    assert_eq!(l[1], info.passed.to_string());
    assert_eq!(l[2], format!("{}...", &hex::encode(challenge_hash)[..10]));
    assert_eq!(l[3], info.proofs.to_string());
    assert_eq!(l[5], info.total_plots.to_string());

    // request_signatures with an id: the reply echoes it, and the local share aggregated with
    // the farmer's verifies under the plot key.
    let proof = &proofs[0];
    let messages = vec![[0x33; 32], [0x44; 32]];
    let request = RequestSignatures {
        plot_identifier: proof.plot_identifier.clone(),
        challenge_hash,
        sp_hash,
        messages: messages.clone(),
        message_data: None,
        rc_block_unfinished: protocol::chia::messages::RawRest(vec![0]),
    };
    send(&mut ws, msg::REQUEST_SIGNATURES, Some(0x8002), &request).await;
    let f = recv(&mut ws, STEP).await.expect("respond_signatures");
    assert_eq!((f.msg_type, f.id), (msg::RESPOND_SIGNATURES, Some(0x8002)));
    let r: RespondSignatures = f.body().expect("respond_signatures");
    assert_eq!(r.plot_identifier, proof.plot_identifier);
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("farmer-keys.json")).expect("keys"),
    )
    .expect("json");
    let farmer_sk = SecretKey::from_bytes(&hex32(&keys["farmer_secret_key"])).expect("sk");
    assert_eq!(r.farmer_pk, farmer_sk.public_key());
    let plot_pk = proof.proof.plot_public_key;
    assert_eq!(r.message_signatures.len(), messages.len());
    for ((m, share), want) in r.message_signatures.iter().zip(&messages) {
        assert_eq!(m, want);
        let farmer_share = sign_aug(&farmer_sk, m, &plot_pk);
        let whole = aggregate_signatures(&[*share, farmer_share]).expect("aggregate");
        assert!(verify_aug(&plot_pk, m, &whole), "the aggregated signature verifies");
    }
    // Without an id: the reply has none. For a plot we do not serve: no reply, as chia.
    let unknown = RequestSignatures {
        plot_identifier: protocol::chia::messages::plot_identifier(&[0; 32], "/nowhere.plot"),
        ..request.clone()
    };
    send(&mut ws, msg::REQUEST_SIGNATURES, None, &unknown).await;
    send(&mut ws, msg::REQUEST_SIGNATURES, None, &request).await;
    let f = recv(&mut ws, STEP).await.expect("respond_signatures");
    assert_eq!((f.msg_type, f.id), (msg::RESPOND_SIGNATURES, None));
    let r: RespondSignatures = f.body().expect("respond_signatures");
    assert_eq!(r.plot_identifier, request.plot_identifier, "nothing for the unknown plot");

    // An undecodable message closes this connection (logged); the harvester dials again.
    send(&mut ws, msg::NEW_SIGNAGE_POINT_HARVESTER, None, &vec![1u8, 2, 3]).await;
    assert!(recv(&mut ws, STEP).await.is_none(), "closed after the bad message");

    // A farmer on another network is refused.
    let mut ws = farm.accept().await;
    handshake(&mut ws, "0.0.38", "testnet11").await;
    assert!(recv(&mut ws, STEP).await.is_none(), "closed: wrong network");

    // A farmer before 0.0.37 sends the v1 signage point (its own filter bits) and gets Plot
    // lists.
    let mut ws = farm.accept().await;
    handshake(&mut ws, "0.0.36", "mainnet").await;
    send(&mut ws, msg::HARVESTER_HANDSHAKE, None, &keys_message(&farm)).await;
    let mut v1_loaded = 0;
    loop {
        let f = recv(&mut ws, STEP).await.expect("plot sync");
        assert_ne!(f.msg_type, msg::PLOT_SYNC_LOADED2, "old farmers get Plot, not Plot2");
        if f.msg_type == msg::PLOT_SYNC_LOADED {
            let l: protocol::chia::messages::PlotSyncPlotList = f.body().expect("loaded");
            v1_loaded += l.data.len();
        }
        let identifier = from_bytes(&f.data[..24]).expect("identifier");
        let r = PlotSyncResponse { identifier, message_type: i16::from(f.msg_type), error: None };
        send(&mut ws, msg::PLOT_SYNC_RESPONSE, None, &r).await;
        if f.msg_type == msg::PLOT_SYNC_DONE {
            break;
        }
    }
    assert_eq!(v1_loaded, plots.len());
    let sp = NewSignagePointHarvester {
        challenge_hash,
        difficulty: 1,
        sub_slot_iters: 1 << 57,
        signage_point_index: 8,
        sp_hash,
        pool_difficulties: Vec::new(),
        filter_prefix_bits: 0,
    };
    send(&mut ws, msg::NEW_SIGNAGE_POINT_HARVESTER, None, &sp).await;
    let (v1_proofs, info) = answers(&mut ws).await;
    assert_eq!(info.passed as usize, plots.len());
    // Without the pool's difficulty, the plot-NFT plots' proofs come too (so the first
    // signage point's pool difficulty is what kept them out).
    assert!(v1_proofs.iter().any(|p| p.proof.pool_contract_puzzle_hash.is_some()));
    assert_eq!(
        v1_proofs.iter().filter(|p| p.proof.pool_contract_puzzle_hash.is_none()).count(),
        proofs.len()
    );
    send(&mut ws, msg::REQUEST_PLOTS, None, &RequestPlots {}).await;
    let f = recv(&mut ws, STEP).await.expect("respond_plots");
    assert_eq!(f.msg_type, msg::RESPOND_PLOTS);
    let r: RespondPlots = f.body().expect("respond_plots");
    assert_eq!(r.plots.len(), plots.len());
}

/// What the farmer's plot list says about each kind of file: a plot below the network's
/// `MIN_PLOT_SIZE_V1`, a v2 plot, a truncated plot are invalid; a second file with a served
/// plot's id is a duplicate; a plot whose pool key the farmer did not send has its keys
/// missing; and a later `harvester_handshake` re-sorts them with a full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plot_sync_sorts_every_kind_of_file() {
    let farm = farm_with("chia-states", 19, |dir| {
        let plots = dir.join("plots");
        std::fs::create_dir_all(&plots).expect("plots dir");
        let fx = fixtures().join("plots");
        std::fs::hard_link(fx.join("k18-og-a.plot"), plots.join("small.plot")).expect("link");
        std::fs::hard_link(fx.join("k19-og-a.plot"), plots.join("k19.plot")).expect("link");
        std::fs::hard_link(fx.join("k19-og-a.plot"), plots.join("k19-copy.plot")).expect("link");
        std::fs::write(plots.join("new.plot2"), b"v2").expect("plot2");
        let bytes = std::fs::read(fx.join("k18-og-b.plot")).expect("read");
        std::fs::write(plots.join("cut.plot"), &bytes[..bytes.len() / 3]).expect("cut");
        plots
    })
    .await;
    let mut ws = farm.accept().await;
    handshake(&mut ws, "0.0.38", "mainnet").await;
    send(&mut ws, msg::HARVESTER_HANDSHAKE, None, &keys_message(&farm)).await;
    let lists = sync_lists(&mut ws).await;
    let names = |v: &Vec<String>| -> Vec<String> {
        let mut n: Vec<String> = v
            .iter()
            .map(|p| Path::new(p).file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    // One of the two files of the k=19 plot is served, the other is its duplicate.
    let (served, duplicate) = (names(&lists.loaded), names(&lists.duplicates));
    assert_eq!((served.len(), duplicate.len()), (1, 1), "{lists:?}");
    let mut both = [served[0].clone(), duplicate[0].clone()];
    both.sort();
    assert_eq!(both, ["k19-copy.plot", "k19.plot"], "{lists:?}");
    assert_eq!(names(&lists.invalid), ["cut.plot", "new.plot2", "small.plot"], "{lists:?}");
    assert!(lists.keys_missing.is_empty(), "{lists:?}");

    // The farmer's keys without the pool's: the plot's keys are missing now.
    let mut keys = keys_message(&farm);
    keys.pool_public_keys.clear();
    send(&mut ws, msg::HARVESTER_HANDSHAKE, None, &keys).await;
    let lists = sync_lists(&mut ws).await;
    assert!(lists.initial, "a new selection is a full sync");
    assert!(lists.loaded.is_empty(), "{lists:?}");
    assert_eq!(names(&lists.keys_missing), served, "{lists:?}");
}

#[derive(Debug, Default)]
struct SyncLists {
    initial: bool,
    loaded: Vec<String>,
    invalid: Vec<String>,
    keys_missing: Vec<String>,
    duplicates: Vec<String>,
}

/// Answers a whole plot sync; returns its lists.
async fn sync_lists(ws: &mut Conn) -> SyncLists {
    let mut lists = SyncLists::default();
    loop {
        let f = recv(ws, STEP).await.expect("plot sync");
        match f.msg_type {
            msg::PLOT_SYNC_START => {
                let s: protocol::chia::messages::PlotSyncStart = f.body().expect("start");
                lists.initial = s.initial;
            }
            msg::PLOT_SYNC_LOADED2 => {
                let l: PlotSyncPlotList2 = f.body().expect("loaded2");
                lists.loaded.extend(l.data.into_iter().map(|p| p.filename));
            }
            msg::PLOT_SYNC_INVALID | msg::PLOT_SYNC_KEYS_MISSING | msg::PLOT_SYNC_DUPLICATES => {
                let l: protocol::chia::messages::PlotSyncPathList = f.body().expect("paths");
                let list = match f.msg_type {
                    msg::PLOT_SYNC_INVALID => &mut lists.invalid,
                    msg::PLOT_SYNC_KEYS_MISSING => &mut lists.keys_missing,
                    _ => &mut lists.duplicates,
                };
                list.extend(l.data);
            }
            _ => {}
        }
        let identifier = from_bytes(&f.data[..24]).expect("identifier");
        let r = PlotSyncResponse { identifier, message_type: i16::from(f.msg_type), error: None };
        send(ws, msg::PLOT_SYNC_RESPONSE, None, &r).await;
        if f.msg_type == msg::PLOT_SYNC_DONE {
            return lists;
        }
    }
}
