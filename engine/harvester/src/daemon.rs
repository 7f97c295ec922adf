//! `harvester run`: the plot manager on its refresh thread, the engine, the /metrics endpoint,
//! and the connection to the farmer, dialled and re-dialled with backoff.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rustls::pki_types::ServerName;
use shard::PlotKey;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::chia::root::ChiaRoot;
use crate::config::{seconds, Config};
use crate::connection::{self, ConnectionEnd, Features, PlotStates, Shared};
use crate::engine::Engine;
use crate::plots::{DiskOverride, PlotManager, PlotsConfig};
use crate::telemetry::{DaemonMetrics, MetricsSource};

/// Runtime quarantines waiting for the refresh thread.
const QUARANTINES_QUEUED_MAX: usize = 4096;
/// How soon plot changes waiting for a busy shard are tried again.
const BACKLOG_RETRY: Duration = Duration::from_millis(100);
/// A connection that lasted this long resets the reconnect backoff.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("plots: {0}")]
    Plots(#[from] crate::plots::PlotsError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    ChiaRoot(#[from] crate::chia::root::RootError),
}

/// Which farmer the daemon serves.
enum FrontEnd {
    /// The original protocol (`farmer.address`, `tls.*`).
    Original,
    /// chia-blockchain's farmers of a chia root.
    Chia(Arc<ChiaRoot>),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// The metrics the /metrics endpoint shows.
struct State {
    shared: Arc<Shared>,
    plot_counts: Mutex<Vec<(&'static str, u64)>>,
}

impl MetricsSource for State {
    fn shards(&self) -> Vec<(String, shard::Snapshot)> {
        self.shared.engine.shard_snapshots()
    }

    fn plots_by_state(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.plot_counts.lock().map(|c| c.clone()).unwrap_or_default();
        if let Ok(s) = self.shared.selection_counts.lock() {
            v.extend(s.iter().copied());
        }
        v
    }

    fn daemon(&self) -> &DaemonMetrics {
        &self.shared.metrics
    }
}

/// Sets up logging from the configuration (`RUST_LOG` wins).
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

/// Where and how often to write HdrHistogram interval logs (`harvester run --hlog`).
#[derive(Debug, Clone)]
pub struct HlogOptions {
    pub path: std::path::PathBuf,
    pub interval: Duration,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config_path: &Path, hlog: Option<HlogOptions>) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("net")
        .build()
        .map_err(io("tokio runtime"))?;
    runtime.block_on(run_async(Arc::new(config), hlog, FrontEnd::Original))
}

/// Runs the daemon as chia's harvester of the chia root `root` (None: `$CHIA_ROOT`, then
/// `~/.chia/mainnet`) until SIGINT or SIGTERM; `config_path` adds engine knobs on top.
pub fn run_chia(
    root: Option<&Path>,
    config_path: Option<&Path>,
    hlog: Option<HlogOptions>,
) -> Result<(), DaemonError> {
    let root_dir = crate::chia::root::resolve(root)?;
    let chia = ChiaRoot::load(&root_dir)?;
    let base = config_path.map(Config::load).transpose()?;
    let explicit_log = base.is_some();
    let mut config = crate::chia::config_for(&chia, base);
    if !explicit_log {
        if let Some(level) = chia.log_level.as_deref() {
            config.log.level = chia_log_level(level).to_string();
        }
    }
    init_logging(&config);
    tracing::info!(root = %root_dir.display(), network = %chia.network,
        farmers = chia.farmer_peers.len(), plot_directories = chia.plot_directories.len(),
        "serving chia's farmer");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("net")
        .build()
        .map_err(io("tokio runtime"))?;
    runtime.block_on(run_async(Arc::new(config), hlog, FrontEnd::Chia(Arc::new(chia))))
}

/// chia's log level names (Python's) as tracing's.
fn chia_log_level(level: &str) -> &'static str {
    match level.to_ascii_uppercase().as_str() {
        "CRITICAL" | "ERROR" => "error",
        "WARNING" | "WARN" => "warn",
        "DEBUG" | "NOTSET" => "debug",
        _ => "info",
    }
}

/// Interval logs of every disk's engine histograms and the daemon's own (challenge, proof
/// request, signature latency), tagged `<metric>.<disk>` and `<metric>.daemon`.
fn start_hlog(
    options: &HlogOptions,
    shared: Arc<Shared>,
) -> Result<shard::hlog::HlogRecorder, DaemonError> {
    let step = move |log: &mut shard::hlog::HlogWriter, now: std::time::SystemTime| {
        let shards = shared.engine.shard_snapshots();
        let m = &shared.metrics;
        let daemon = [
            ("challenge_latency_us.daemon", m.challenge_latency_us.snapshot()),
            ("proof_request_latency_us.daemon", m.proof_request_latency_us.snapshot()),
            ("signature_latency_us.daemon", m.signature_latency_us.snapshot()),
        ];
        let mut tagged: Vec<(String, &hdrhistogram::Histogram<u64>)> = Vec::new();
        for (disk, snap) in &shards {
            let disk = shard::hlog::sanitize_tag(disk);
            let h = &snap.histograms;
            tagged.push((format!("read_latency_us.{disk}"), &h.read_latency_us));
            tagged.push((format!("lookup_latency_us.{disk}"), &h.lookup_latency_us));
            tagged.push((format!("proof_latency_us.{disk}"), &h.proof_latency_us));
            tagged.push((format!("queue_wait_us.{disk}"), &h.queue_wait_us));
        }
        for (tag, h) in &daemon {
            tagged.push(((*tag).to_string(), h));
        }
        log.record(now, &tagged)?;
        log.flush()
    };
    let recorder = shard::hlog::spawn_recorder_with(&options.path, options.interval, step)
        .map_err(io(format!("--hlog {}", options.path.display())))?;
    tracing::info!(path = %options.path.display(), interval = ?options.interval,
        "writing HdrHistogram interval logs");
    Ok(recorder)
}

async fn run_async(
    config: Arc<Config>,
    hlog: Option<HlogOptions>,
    front: FrontEnd,
) -> Result<(), DaemonError> {
    // Signals first: a SIGTERM during start-up still stops the daemon cleanly.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    // TLS material first: a daemon that cannot talk to its farmer should fail at once.
    let chia_tls = match &front {
        FrontEnd::Chia(root) => Some(tokio_rustls::TlsConnector::from(
            crate::tls::chia_client_config(&root.ca_cert, &root.cert, &root.key)?,
        )),
        FrontEnd::Original => None,
    };
    let tls = if chia_tls.is_some() {
        None
    } else if config.farmer.insecure {
        tracing::warn!("farmer.insecure = true: plain TCP, no authentication, no encryption");
        None
    } else {
        Some(tokio_rustls::TlsConnector::from(crate::tls::client_config(
            &config.tls.ca_cert,
            &config.tls.cert,
            &config.tls.key,
        )?))
    };
    let plots_config = PlotsConfig {
        folders: config.plots.folders.clone(),
        recursive: config.plots.recursive,
        keys_file: config.plots.keys_file.clone(),
        open_threads: config.plots.open_threads,
        plots_max: config.plots.plots_max,
        disks: config
            .disks
            .iter()
            .map(|d| DiskOverride { name: d.name.clone(), paths: d.paths.clone() })
            .collect(),
        retry_quarantined_after: seconds(config.plots.retry_quarantined_after_seconds),
        serve_duplicate_ids: config.plots.serve_duplicate_ids,
    };
    let manager = PlotManager::new(plots_config)?;
    let (quarantine_tx, quarantine_rx) = crossbeam_channel::bounded(QUARANTINES_QUEUED_MAX);
    let engine =
        Engine::start(config.engine.clone(), quarantine_tx.clone()).map_err(io("engine"))?;
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        metrics: Arc::new(DaemonMetrics::default()),
        config: config.clone(),
        quarantine: quarantine_tx,
        selection_counts: Mutex::new(Vec::new()),
        plot_states: Mutex::new(Arc::new(PlotStates::default())),
        activity: match &config.log.chia_activity_file {
            None => None,
            Some(path) => Some(
                crate::activity::ActivityLog::open(path)
                    .map_err(io(format!("log.chia_activity_file {}", path.display())))?,
            ),
        },
    });
    let state = Arc::new(State { shared: shared.clone(), plot_counts: Mutex::new(Vec::new()) });
    let hlog = hlog.map(|o| start_hlog(&o, shared.clone())).transpose()?;

    // The plot manager lives on its own thread: scans never block lookups.
    let (first_scan_tx, first_scan_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let refresher = {
        let engine = engine.clone();
        let state = state.clone();
        let interval = seconds(config.plots.refresh_interval_seconds);
        std::thread::Builder::new()
            .name("plots".into())
            .spawn(move || {
                refresh_loop(
                    manager,
                    engine,
                    state,
                    interval,
                    quarantine_rx,
                    stop_rx,
                    first_scan_tx,
                )
            })
            .map_err(io("plot refresh thread"))?
    };

    let metrics_task = if config.metrics.listen.is_empty() {
        None
    } else {
        // Validated at load time.
        let addr: SocketAddr = config.metrics.listen.parse().map_err(|e| DaemonError::Io {
            what: "metrics.listen".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("metrics endpoint {addr}")))?;
        let local = listener.local_addr().map_err(io("metrics endpoint"))?;
        tracing::info!("metrics at http://{local}/metrics");
        let source: Arc<dyn MetricsSource> = state.clone();
        Some(tokio::spawn(crate::telemetry::serve(listener, source, shutdown_rx.clone())))
    };

    let mut shutdown = shutdown_rx.clone();
    tokio::select! {
        _ = first_scan_rx => {}
        _ = shutdown.changed() => {}
    }
    if !*shutdown.borrow() {
        match (front, chia_tls) {
            (FrontEnd::Chia(root), Some(tls)) => {
                crate::chia::dial_all(config.clone(), root, tls, shared, shutdown_rx.clone()).await
            }
            _ => dial_loop(&config, tls, shared, shutdown_rx.clone()).await,
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::task::spawn_blocking(move || refresher.join()).await;
    engine.shutdown();
    if let Some(recorder) = hlog {
        // Records the last interval and flushes; waits for the file system, not for disks.
        let _ = tokio::task::spawn_blocking(move || drop(recorder)).await;
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn refresh_loop(
    mut manager: PlotManager,
    engine: Arc<Engine>,
    state: Arc<State>,
    interval: Duration,
    quarantined: Receiver<(PlotKey, String)>,
    stop: Receiver<()>,
    first_scan: tokio::sync::oneshot::Sender<()>,
) {
    let mut first_scan = Some(first_scan);
    loop {
        let progress = first_scan.is_some() && std::io::stderr().is_terminal();
        let refresh = manager.refresh(progress);
        let (added, removed) = (refresh.added.len(), refresh.removed.len());
        engine.apply(refresh.added, &refresh.removed);
        publish_states(&manager, &state);
        if let Some(tx) = first_scan.take() {
            let served = manager.counts_by_state();
            tracing::info!(?served, files = refresh.scanned_files, elapsed = ?refresh.elapsed,
                "first plot scan done");
            let _ = tx.send(());
        } else if added + removed > 0 {
            tracing::info!(added, removed, "plots changed");
        }
        let next = Instant::now() + interval;
        loop {
            let mut wait = next.saturating_duration_since(Instant::now());
            // Plot changes that waited for a busy shard go as soon as it has room.
            if engine.flush_backlog() > 0 {
                wait = wait.min(BACKLOG_RETRY);
            }
            crossbeam_channel::select! {
                recv(quarantined) -> q => match q {
                    Ok((key, reason)) => {
                        manager.quarantine(key, reason);
                        engine.apply(Vec::new(), &[key]);
                        publish_states(&manager, &state);
                    }
                    Err(_) => return,
                },
                recv(stop) -> _ => return,
                default(wait) => if Instant::now() >= next { break },
            }
        }
    }
}

/// Publishes the plot counts (metrics) and, when they changed, every file's state (plot sync).
fn publish_states(manager: &PlotManager, state: &State) {
    if let Ok(mut c) = state.plot_counts.lock() {
        *c = manager.counts_by_state();
    }
    let states = manager.states();
    if let Ok(mut s) = state.shared.plot_states.lock() {
        if s.states != states {
            *s = Arc::new(PlotStates { generation: s.generation + 1, states });
        }
    }
}

async fn dial_loop(
    config: &Config,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let initial = seconds(config.farmer.reconnect_initial_seconds);
    let max = seconds(config.farmer.reconnect_max_seconds);
    let mut backoff = initial;
    let address = config.farmer.address.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        match connect(config, &tls).await {
            Ok((stream, features)) => {
                tracing::info!(farmer = %address, tls = tls.is_some(),
                    challenge_done = features.challenge_done, "connected to the farmer");
                let end = connection::serve(
                    stream,
                    shared.clone(),
                    address.clone(),
                    features,
                    shutdown.clone(),
                )
                .await;
                match end {
                    ConnectionEnd::Shutdown => return,
                    end => tracing::warn!(farmer = %address, "connection ended: {end}"),
                }
                if started.elapsed() >= HEALTHY_CONNECTION {
                    backoff = initial;
                }
            }
            Err(e) => {
                tracing::warn!(farmer = %address, "cannot connect: {e}; retrying in {backoff:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// A byte stream to the farmer: TLS over TCP, or plain TCP when insecure.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

async fn connect(
    config: &Config,
    tls: &Option<tokio_rustls::TlsConnector>,
) -> Result<(Box<dyn Stream>, Features), String> {
    let timeout = seconds(config.farmer.connect_timeout_seconds);
    let attempt = async {
        let tcp = TcpStream::connect(&config.farmer.address).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        // A farmer host that disappears without closing is noticed in about a minute.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
            tracing::warn!("cannot set TCP keepalive: {e}");
        }
        let Some(connector) = tls else {
            return Ok((Box::new(tcp) as Box<dyn Stream>, Features::default()));
        };
        let name = ServerName::try_from(config.farmer.server_name.clone())
            .map_err(|e| format!("farmer.server_name {:?}: {e}", config.farmer.server_name))?;
        let stream =
            connector.connect(name, tcp).await.map_err(|e| format!("TLS handshake failed: {e}"))?;
        let features = Features {
            challenge_done: stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_V2),
        };
        Ok((Box::new(stream) as Box<dyn Stream>, features))
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer in {timeout:?}"))?
}
