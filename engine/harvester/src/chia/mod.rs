//! The chia front end: `harvester run --chia-root DIR` serves the plots to chia-blockchain's own
//! farmer, as a drop-in for `chia start harvester`.
//!
//! - [`root`]: what chia's harvester reads from `DIR/config/config.yaml`.
//! - [`farmer`]: one connection (handshake, plot sync, signage points, proofs, signatures).
//! - this module: dialling every farmer of `harvester.farmer_peers` over `wss://host:port/ws`
//!   with the farm's private CA, and re-dialling with backoff.
//!
//! The engine, the plot manager and the metrics are the daemon's, shared with the original
//! protocol's front end (`crate::connection`).

pub mod farmer;
pub mod root;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::{seconds, Config};
use crate::connection::Shared;
use root::{ChiaRoot, FarmerPeer};

/// Largest message accepted from the farmer. chia's own limit is 50 MiB, but nothing a farmer
/// sends a harvester comes near 1 MiB (`harvester_handshake` is limited to 1 MiB by chia).
pub const MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A connection that lasted this long resets the backoff.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(30);

/// Dials every farmer peer and serves each until shutdown.
pub async fn dial_all(
    config: Arc<Config>,
    root: Arc<ChiaRoot>,
    tls: tokio_rustls::TlsConnector,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for peer in root.farmer_peers.clone() {
        let (config, root, tls, shared, shutdown) =
            (config.clone(), root.clone(), tls.clone(), shared.clone(), shutdown.clone());
        tasks.spawn(async move { dial_loop(&config, root, peer, tls, shared, shutdown).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn dial_loop(
    config: &Config,
    root: Arc<ChiaRoot>,
    peer: FarmerPeer,
    tls: tokio_rustls::TlsConnector,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let initial = seconds(config.farmer.reconnect_initial_seconds);
    let max = seconds(config.farmer.reconnect_max_seconds);
    let mut backoff = initial;
    let name = peer.to_string();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        match connect(config, &peer, &tls).await {
            Ok(ws) => {
                tracing::info!(farmer = %name, "connected to the farmer");
                let end =
                    farmer::serve(ws, shared.clone(), root.clone(), name.clone(), shutdown.clone())
                        .await;
                match end {
                    farmer::ChiaEnd::Shutdown => return,
                    end => tracing::warn!(farmer = %name, "connection ended: {end}"),
                }
                if started.elapsed() >= HEALTHY_CONNECTION {
                    backoff = initial;
                }
            }
            Err(e) => {
                tracing::warn!(farmer = %name, "cannot connect: {e}; retrying in {backoff:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// TCP, TLS with the farm's CA, then the WebSocket upgrade on `/ws`.
async fn connect(
    config: &Config,
    peer: &FarmerPeer,
    tls: &tokio_rustls::TlsConnector,
) -> Result<Ws, String> {
    let timeout = seconds(config.farmer.connect_timeout_seconds);
    let attempt = async {
        let tcp =
            TcpStream::connect((peer.host.as_str(), peer.port)).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
            tracing::warn!("cannot set TCP keepalive: {e}");
        }
        // chia checks no name (every node has a certificate of the farm's CA); rustls needs
        // one for SNI, and the verifier ignores it.
        let name = ServerName::try_from(peer.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("chia.net").expect("a valid DNS name"));
        let stream =
            tls.connect(name, tcp).await.map_err(|e| format!("TLS handshake failed: {e}"))?;
        let url = format!("wss://{peer}/ws");
        let mut ws_config = WebSocketConfig::default();
        ws_config.max_message_size = Some(MESSAGE_BYTES_MAX);
        ws_config.max_frame_size = Some(MESSAGE_BYTES_MAX);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config))
                .await
                .map_err(|e| format!("WebSocket upgrade failed: {e}"))?;
        Ok(ws)
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer in {timeout:?}"))?
}

/// The daemon's configuration for a chia root: `base` (the `--config` TOML, or the defaults)
/// with the plot folders, scan and refresh settings of config.yaml.
pub fn config_for(root: &ChiaRoot, base: Option<Config>) -> Config {
    let explicit = base.is_some();
    let mut config = base.unwrap_or_default();
    config.plots.folders = root.plot_directories.clone();
    config.plots.recursive = root.recursive_plot_scan;
    config.plots.refresh_interval_seconds = root.refresh_interval.as_secs_f64().max(0.1);
    config.plots.retry_quarantined_after_seconds = root.retry_invalid.as_secs_f64();
    if !explicit {
        // chia re-dials about every 3 s: a restarted farmer finds us back within seconds.
        config.farmer.reconnect_max_seconds = 5.0;
    }
    config
}
