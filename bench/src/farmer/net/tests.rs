//! The IO loop against an in-process harvester that answers from the k18 fixture plot.

use std::collections::HashMap;
use std::path::PathBuf;

use plot_format::keys::{parse_memo, PoolKind};
use plot_format::{Goal, Mode};
use protocol::{Body, Bytes32, ProofOfSpace};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::*;
use crate::farmer::state::RequestMode;
use crate::farmer::testkit::farmer_keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answers everything.
    Honest,
    /// Hangs up instead of answering the first proof request.
    HangUpOnProofRequest,
}

/// A harvester with the first k18 fixture plot (a memo plot): announces every quality, answers
/// proof requests with the proof and signature requests with its local share.
async fn fake_harvester<S: AsyncRead + AsyncWrite + Unpin>(stream: S, behaviour: Behaviour) {
    let (path, _, plot) = test_support::plot::k18_fixture();
    let (file, _) = shard::open_plot(&path).expect("opens");
    let keys = parse_memo(plot.memo()).and_then(|m| m.derive()).expect("memo plot");
    let PoolKind::PublicKey(pool_pk) = *keys.pool() else { panic!("pool key plot expected") };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new(Limits::default());
    let mut proofs: HashMap<Bytes32, ProofOfSpace> = HashMap::new();
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        let n = rd.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let used = decoder.feed(rest);
            rest = &rest[used..];
            while let Some(msg) = decoder.next_message().expect("the farmer's frames decode") {
                let mut out = Vec::new();
                let id = msg.id;
                match msg.body {
                    Body::HarvesterHandshake { pool_pubkeys } => {
                        assert!(pool_pubkeys.contains(&pool_pk))
                    }
                    Body::NewChallenge { challenge_hash } => {
                        let found = shard::lookup_file(
                            &file,
                            &plot,
                            &challenge_hash,
                            Goal::QualitiesAndProofs,
                            Mode::Chiapos,
                        )
                        .expect("reads")
                        .expect("decodes");
                        for f in found {
                            let proof = ProofOfSpace {
                                challenge_hash,
                                pool_pubkey: pool_pk,
                                plot_pubkey: *keys.plot_public_key(),
                                size: plot.k(),
                                proof: f.proof.expect("asked for proofs"),
                            };
                            proofs.insert(f.quality, proof);
                            let body = Body::ChallengeResponse {
                                challenge_hash,
                                quality: f.quality,
                                plot_size: plot.k(),
                            };
                            Message { id: None, body }.encode(&mut out);
                        }
                    }
                    Body::RequestProofOfSpace { quality } => {
                        if behaviour == Behaviour::HangUpOnProofRequest {
                            return;
                        }
                        let proof = proofs[&quality].clone();
                        Message { id, body: Body::RespondProofOfSpace { quality, proof } }
                            .encode(&mut out);
                    }
                    Body::RequestPartialProof { quality, farmer_target_hash } => {
                        let sig = keys.sign_local_share(&farmer_target_hash);
                        let body =
                            Body::RespondPartialProof { quality, farmer_target_signature: sig };
                        Message { id, body }.encode(&mut out);
                    }
                    Body::RequestHeaderSignature { quality, header_hash } => {
                        let sig = keys.sign_local_share(&header_hash);
                        let body =
                            Body::RespondHeaderSignature { quality, header_hash_signature: sig };
                        Message { id, body }.encode(&mut out);
                    }
                    other => panic!("a farmer does not send {other:?}"),
                }
                if wr.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn config(security: Security, allow_disconnects: bool) -> RunConfig {
    RunConfig {
        listen: "127.0.0.1:0".into(),
        security,
        keys: farmer_keys(),
        farmer: FarmerConfig {
            request: RequestMode::All,
            allow_disconnects,
            ..FarmerConfig::default()
        },
        harvesters_wanted: 1,
        harvesters_wait: Duration::from_secs(30),
        challenges: 20,
        rate_per_sec: 0.0,
        challenge_seed: 1,
        drain: Duration::from_secs(30),
        idle: Duration::from_millis(300),
        connections_max: 4,
        dump_path: None,
        settings: serde_json::Value::Null,
    }
}

async fn farmer(config: RunConfig) -> (SocketAddr, tokio::task::JoinHandle<Report>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move { run_on(listener, config).await.expect("setup") });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_harvester_over_plain_tcp_passes() {
    let (addr, farmer) = farmer(config(Security::Insecure, false)).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let harvester = tokio::spawn(fake_harvester(stream, Behaviour::Honest));
    let report = farmer.await.expect("farmer task");
    harvester.await.expect("harvester task");
    let s = &report.stats;
    assert!(report.passed(), "{}", report.text());
    assert_eq!((s.harvesters, s.challenges), (1, 20));
    assert!(s.proofs.valid > 0, "{}", report.text());
    assert_eq!(s.proofs.valid, s.proofs.requested);
    assert_eq!((s.partials.valid, s.partials.memo), (s.proofs.valid, s.proofs.valid));
    assert_eq!((s.headers.valid, s.headers.memo), (s.proofs.valid, s.proofs.valid));
    assert_eq!(s.latency.proof.count(), s.proofs.requested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harvester_hanging_up_loses_its_requests_unless_allowed() {
    for allow in [false, true] {
        let (addr, farmer) = farmer(config(Security::Insecure, allow)).await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let harvester = tokio::spawn(fake_harvester(stream, Behaviour::HangUpOnProofRequest));
        let report = farmer.await.expect("farmer task");
        harvester.await.expect("harvester task");
        let s = &report.stats;
        assert_eq!(s.disconnects, 1, "{}", report.text());
        assert!(s.proofs.requested > 0);
        if allow {
            assert!(report.passed(), "{}", report.text());
            assert_eq!(s.disconnected_requests, s.proofs.requested);
        } else {
            assert!(!report.passed());
            assert_eq!(s.lost.count, s.proofs.requested, "{}", report.text());
            assert!(s.lost.kept[0].contains("disconnected"));
        }
    }
}

/// A folder removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_harvester_certificates() {
    let dir = TempDir(std::env::temp_dir().join(format!("farmer-sim-tls-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let paths = harvester::tls::generate(&dir.0, None, false).expect("certificates");
    let mut cfg = config(Security::Tls { certs_dir: dir.0.clone() }, false);
    cfg.challenges = 5;
    let (addr, farmer) = farmer(cfg).await;

    // A client without a certificate is refused and never counted.
    let roots = {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let pem = std::fs::read(&paths.ca_cert).expect("ca");
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).expect("ca cert");
        }
        roots
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let anonymous = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(harvester::tls::FARMER_SERVER_NAME).expect("name");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    if let Ok(mut tls) = TlsConnector::from(Arc::new(anonymous)).connect(name.clone(), tcp).await {
        // TLS 1.3: the server's refusal arrives with the first read.
        let mut byte = [0u8; 1];
        assert!(!matches!(tls.read(&mut byte).await, Ok(n) if n > 0));
    }

    let client =
        harvester::tls::client_config(&paths.ca_cert, &paths.harvester_cert, &paths.harvester_key)
            .expect("client config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(client).connect(name, tcp).await.expect("mutual TLS");
    let harvester = tokio::spawn(fake_harvester(tls, Behaviour::Honest));
    let report = farmer.await.expect("farmer task");
    harvester.await.expect("harvester task");
    assert!(report.passed(), "{}", report.text());
    assert_eq!(report.stats.harvesters, 1, "{}", report.text());
    assert!(report.stats.challenges == 5 && report.stats.invalid.count == 0);
}

/// The DER certificates of a PEM file (enough PEM for the CA file `generate` writes).
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}
