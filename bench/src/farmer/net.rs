//! The IO around [`Farmer`]: the listening socket, TLS, one reader and one writer task per
//! harvester, the challenge pacer and the drain.
//!
//! - Accept: at most [`RunConfig::connections_max`] connections at once (more are closed at
//!   once); TLS handshakes time out after [`TLS_HANDSHAKE_TIMEOUT`].
//! - Per connection: a reader task (a [`FrameDecoder`] with the protocol's default
//!   [`Limits`]) that hands each message to the farmer and queues the requests it returns, and
//!   a writer task fed by a bounded queue of encoded frames ([`WRITE_QUEUE_FRAMES_MAX`]). A
//!   peer that does not read for [`WRITE_STALL_TIMEOUT`] is disconnected.
//! - Pacing: challenge `i` goes out at `i / rate` after the first (as fast as the write queues
//!   take them with rate 0), but only while [`Farmer::can_send_challenge`].
//! - End: once the challenges are sent, the run ends when nothing is outstanding and no
//!   message arrived for [`RunConfig::idle`], or [`RunConfig::drain`] after the last
//!   challenge at the latest. SIGINT or SIGTERM end it early (reported as interrupted).
//!
//! The farmer sits behind one mutex, held only for its sans-IO calls (which include checking
//! proofs and signatures), never across an `.await`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use harvester::tls::{server_config, CertPaths};
use protocol::{FrameDecoder, Limits, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::keys::FarmerKeys;
use super::report::{Report, RunInfo};
use super::state::{challenge_hash, ConnId, Farmer, FarmerConfig};
use super::SetupError;

/// Frames queued for one connection's writer; senders wait when it is full.
pub const WRITE_QUEUE_FRAMES_MAX: usize = 4096;
/// Bytes one writer gathers from its queue into one write.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// A write that makes no progress this long ends the connection.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a socket at a time.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// A TLS handshake must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often waiting loops look at the state even without a notification.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long connections get to close cleanly at the end.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often progress is logged.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// How harvesters connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Mutual TLS with the certificates in this folder (`harvester certs --dir`): `ca.crt`,
    /// `farmer.crt`, `farmer.key`.
    Tls {
        /// The folder.
        certs_dir: PathBuf,
    },
    /// Plain TCP (`--insecure`).
    Insecure,
}

/// Everything [`run`] needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `--listen`, host:port.
    pub listen: String,
    /// TLS or not.
    pub security: Security,
    /// The farmer's keys.
    pub keys: FarmerKeys,
    /// The farmer's settings.
    pub farmer: FarmerConfig,
    /// Harvesters that must be connected before the first challenge (`--harvesters`).
    pub harvesters_wanted: usize,
    /// How long to wait for them (`--wait-secs`).
    pub harvesters_wait: Duration,
    /// Challenges to send (`--challenges`).
    pub challenges: u64,
    /// Challenges per second; 0 = as fast as possible (`--rate`).
    pub rate_per_sec: f64,
    /// `--seed`: challenge i is sha256(seed_le || i_le).
    pub challenge_seed: u64,
    /// Longest wait for answers after the last challenge (`--drain-secs`).
    pub drain: Duration,
    /// After the last challenge, end once nothing is outstanding and nothing arrived for this
    /// long (`--idle-secs`).
    pub idle: Duration,
    /// Most connections at once.
    pub connections_max: usize,
    /// `--dump FILE`: one JSON line per accepted proof and signature.
    pub dump_path: Option<PathBuf>,
    /// The settings, echoed in the report.
    pub settings: serde_json::Value,
}

/// Runs the farmer until the challenges are sent and answered (see the module docs).
///
/// Errors are setup errors only (certificates, the dump file, the socket); whatever the
/// harvesters do ends up in the [`Report`].
pub async fn run(config: RunConfig) -> Result<Report, SetupError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| SetupError::Listen { addr: config.listen.clone(), source })?;
    run_on(listener, config).await
}

/// [`run`] on a socket already bound (`config.listen` is then only echoed in logs).
pub async fn run_on(listener: TcpListener, config: RunConfig) -> Result<Report, SetupError> {
    let acceptor = match &config.security {
        Security::Tls { certs_dir } => {
            let p = CertPaths::in_dir(certs_dir);
            Some(TlsAcceptor::from(server_config(&p.ca_cert, &p.farmer_cert, &p.farmer_key)?))
        }
        Security::Insecure => None,
    };
    let dump = match &config.dump_path {
        Some(path) => Some(BufWriter::new(
            File::create(path).map_err(|source| SetupError::File { path: path.clone(), source })?,
        )),
        None => None,
    };
    let local = listener.local_addr().map_or(config.listen.clone(), |a| a.to_string());
    info!(
        "listening on {local} ({}), waiting for {} harvester(s)",
        if acceptor.is_some() { "mutual TLS" } else { "plain TCP, insecure" },
        config.harvesters_wanted
    );

    let farmer_config = FarmerConfig { dump: dump.is_some(), ..config.farmer };
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            farmer: Farmer::new(farmer_config, config.keys.clone()),
            routes: HashMap::new(),
            dump,
            dump_error: None,
            last_message_at: Duration::ZERO,
            finished: false,
        }),
        changed: Notify::new(),
        start: Instant::now(),
        interrupted: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(
        listener,
        acceptor,
        Arc::clone(&shared),
        stop_rx,
        config.connections_max,
    ));
    let signals = tokio::spawn(watch_signals(Arc::clone(&shared)));

    let (first_challenge_at, mut interrupted) = drive(&shared, &config).await;

    let now = shared.now();
    let (stats, dump_error) = {
        let mut inner = shared.lock();
        inner.finished = true;
        let stats = inner.farmer.finish(now);
        inner.routes.clear();
        if let Some(mut dump) = inner.dump.take() {
            if let Err(e) = dump.flush() {
                inner.dump_error.get_or_insert(e);
            }
        }
        (stats, inner.dump_error.take())
    };
    if let (Some(e), Some(path)) = (dump_error, &config.dump_path) {
        interrupted.get_or_insert(format!("writing {}: {e}", path.display()));
    }
    // The receiver lives in the accept loop; if it already ended there is nobody to stop.
    let _ = stop_tx.send(true);
    signals.abort();
    if timeout(SHUTDOWN_GRACE * 2, accept).await.is_err() {
        warn!("connections did not close within {:?}", SHUTDOWN_GRACE * 2);
    }
    let elapsed = first_challenge_at.map_or(Duration::ZERO, |t| now.saturating_sub(t));
    Ok(Report {
        stats,
        info: RunInfo {
            harvesters_wanted: config.harvesters_wanted as u64,
            elapsed,
            interrupted,
            settings: config.settings.clone(),
        },
    })
}

struct Shared {
    inner: Mutex<Inner>,
    /// Notified after every message and connection change, and on a signal.
    changed: Notify,
    start: Instant,
    interrupted: AtomicBool,
}

struct Inner {
    farmer: Farmer,
    routes: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    dump: Option<BufWriter<File>>,
    dump_error: Option<std::io::Error>,
    last_message_at: Duration,
    /// The report is taken: later messages and connections are ignored.
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoned only if a task panicked while holding it, which is a bug: propagate it.
        self.inner.lock().expect("farmer state lock poisoned by a panic")
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// Sleeps until `deadline`, a notification, or [`POLL_INTERVAL`], whichever comes first.
    async fn wait(&self, deadline: Instant) {
        let until = deadline.min(Instant::now() + POLL_INTERVAL);
        let _ = timeout_at(until, self.changed.notified()).await;
    }

    /// Queues each message on its connection's writer (waiting while a queue is full). A
    /// connection that has gone is skipped: its requests are accounted for at disconnect.
    async fn send(&self, out: Vec<(ConnId, Message)>) {
        if out.is_empty() {
            return;
        }
        let frames: Vec<(mpsc::Sender<Vec<u8>>, Vec<u8>)> = {
            let inner = self.lock();
            out.into_iter()
                .filter_map(|(conn, msg)| {
                    inner.routes.get(&conn).map(|tx| (tx.clone(), msg.to_frame()))
                })
                .collect()
        };
        for (tx, frame) in frames {
            // Err: the writer is gone (connection closing); nothing to do.
            let _ = tx.send(frame).await;
        }
    }
}

/// Waits for the harvesters, sends the challenges, drains. Returns when the first challenge
/// went out and why the run stopped early, if it did.
async fn drive(shared: &Shared, config: &RunConfig) -> (Option<Duration>, Option<String>) {
    // 1. The harvesters.
    let wait_deadline = Instant::now() + config.harvesters_wait;
    loop {
        let ready = shared.lock().farmer.harvesters_ready();
        if ready >= config.harvesters_wanted {
            break;
        }
        if shared.interrupted() {
            return (None, Some("interrupted by a signal while waiting for harvesters".into()));
        }
        if Instant::now() >= wait_deadline {
            return (
                None,
                Some(format!(
                    "only {ready} of {} harvester(s) connected within {:?}",
                    config.harvesters_wanted, config.harvesters_wait
                )),
            );
        }
        shared.wait(wait_deadline).await;
    }

    // 2. The challenges.
    let first_at = Instant::now();
    let first_challenge_at = Some(shared.now());
    info!("sending {} challenges", config.challenges);
    let mut progress_at = Instant::now() + PROGRESS_INTERVAL;
    for i in 0..config.challenges {
        if config.rate_per_sec > 0.0 {
            let due = first_at + Duration::from_secs_f64(i as f64 / config.rate_per_sec);
            while Instant::now() < due && !shared.interrupted() {
                shared.wait(due).await;
            }
        }
        while !shared.lock().farmer.can_send_challenge() && !shared.interrupted() {
            shared.wait(Instant::now() + POLL_INTERVAL).await;
        }
        if shared.interrupted() {
            return (
                first_challenge_at,
                Some(format!("interrupted by a signal after {i} challenges")),
            );
        }
        let out = {
            let mut inner = shared.lock();
            inner.farmer.on_challenge(challenge_hash(config.challenge_seed, i), shared.now())
        };
        shared.send(out).await;
        if Instant::now() >= progress_at {
            progress_at = Instant::now() + PROGRESS_INTERVAL;
            log_progress(shared, i + 1, config.challenges);
        }
    }

    // 3. The drain.
    let last_sent = shared.now();
    let drain_deadline = Instant::now() + config.drain;
    loop {
        let (outstanding, last_message_at) = {
            let inner = shared.lock();
            (inner.farmer.outstanding(), inner.last_message_at)
        };
        let now = shared.now();
        let quiet_since = last_message_at.max(last_sent);
        if outstanding == 0 && now.saturating_sub(quiet_since) >= config.idle {
            return (first_challenge_at, None);
        }
        if Instant::now() >= drain_deadline {
            if outstanding > 0 {
                warn!(
                    "drain time ({:?}) passed with {outstanding} request(s) outstanding",
                    config.drain
                );
            }
            return (first_challenge_at, None);
        }
        if shared.interrupted() {
            return (first_challenge_at, Some("interrupted by a signal while draining".into()));
        }
        if Instant::now() >= progress_at {
            progress_at = Instant::now() + PROGRESS_INTERVAL;
            log_progress(shared, config.challenges, config.challenges);
        }
        shared.wait(drain_deadline).await;
    }
}

fn log_progress(shared: &Shared, sent: u64, total: u64) {
    let inner = shared.lock();
    let s = inner.farmer.stats();
    info!(
        "challenges {sent}/{total}, harvesters {}, responses {}, proofs {}/{}, \
         outstanding {}, invalid {}",
        inner.farmer.harvesters_ready(),
        s.responses,
        s.proofs.valid,
        s.proofs.requested,
        inner.farmer.outstanding(),
        s.invalid.count
    );
}

/// Sets the interrupted flag on SIGINT or SIGTERM.
async fn watch_signals(shared: Arc<Shared>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    warn!("signal received: stopping");
    shared.interrupted.store(true, Ordering::Relaxed);
    shared.changed.notify_waiters();
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    connections_max: usize,
) {
    let mut tasks = JoinSet::new();
    let mut next_conn = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while tasks.try_join_next().is_some() {}
                    if tasks.len() >= connections_max {
                        warn!("refusing {peer}: {connections_max} connections already");
                        continue;
                    }
                    // Small frames: do not wait to coalesce them.
                    let _ = stream.set_nodelay(true);
                    next_conn += 1;
                    tasks.spawn(serve(
                        Arc::clone(&shared),
                        ConnId(next_conn),
                        stream,
                        peer,
                        acceptor.clone(),
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    warn!("accept: {e}");
                    tokio::time::sleep(POLL_INTERVAL * 2).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let all_closed = async { while tasks.join_next().await.is_some() {} };
    if timeout(SHUTDOWN_GRACE, all_closed).await.is_err() {
        tasks.abort_all();
    }
}

/// A byte stream: TLS or plain TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve(
    shared: Arc<Shared>,
    conn: ConnId,
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let io: Box<dyn Io> = match acceptor {
        None => Box::new(stream),
        Some(acceptor) => {
            let handshake = timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => {
                        warn!("{peer}: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        warn!("{peer}: TLS handshake timed out after {TLS_HANDSHAKE_TIMEOUT:?}");
                        return;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    };
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE_FRAMES_MAX);
    {
        let mut inner = shared.lock();
        if inner.finished {
            return;
        }
        let handshake = inner.farmer.on_connect(conn, shared.now());
        // The queue is new and empty: the handshake fits, and goes before any challenge
        // (the route, the only way to reach the queue, is published below, under the lock).
        let queued = tx.try_send(handshake.to_frame());
        debug_assert!(queued.is_ok());
        inner.routes.insert(conn, tx.clone());
    }
    shared.changed.notify_waiters();
    info!("{conn} connected from {peer}");
    let writer = tokio::spawn(write_loop(wr, rx));

    let why = read_loop(&shared, conn, rd, &tx, &mut stop).await;

    drop(tx);
    {
        let mut inner = shared.lock();
        inner.routes.remove(&conn);
        if !inner.finished {
            inner.farmer.on_disconnect(conn, shared.now());
        }
    }
    shared.changed.notify_waiters();
    if *stop.borrow() {
        info!("{conn} closed: {why}");
    } else {
        warn!("{conn} ({peer}) disconnected: {why}");
    }
    // The writer ends once every sender is gone (flushing what is queued), or on a stall.
    if let Ok(Ok(Err(e))) = timeout(SHUTDOWN_GRACE, writer).await {
        info!("{conn}: {e}");
    }
}

/// Reads frames until the connection ends; returns why it ended.
async fn read_loop(
    shared: &Shared,
    conn: ConnId,
    mut rd: tokio::io::ReadHalf<Box<dyn Io>>,
    tx: &mpsc::Sender<Vec<u8>>,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let mut decoder = FrameDecoder::new(Limits::default());
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => return "closed by the harvester".into(),
                Ok(n) => n,
                Err(e) => return format!("read failed: {e}"),
            },
            _ = tx.closed() => return "write failed or stalled".into(),
            _ = stop.changed() => return "run finished".into(),
        };
        let now = shared.now();
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let used = decoder.feed(rest);
            rest = &rest[used..];
            loop {
                let msg = match decoder.next_message() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        let reason = e.to_string();
                        let mut inner = shared.lock();
                        if !inner.finished {
                            inner.farmer.on_protocol_violation(conn, &reason);
                        }
                        return format!("protocol violation: {reason}");
                    }
                };
                let out = {
                    let mut inner = shared.lock();
                    if inner.finished {
                        return "run finished".into();
                    }
                    inner.last_message_at = now;
                    let out = inner.farmer.on_message(conn, msg, now);
                    write_dump(&mut inner);
                    out
                };
                shared.changed.notify_waiters();
                shared.send(out).await;
            }
            if used == 0 {
                // Every complete frame was taken above and the decoder has not failed, so
                // `feed` must take at least one of the bytes left (its contract).
                debug_assert!(false, "FrameDecoder made no progress");
                return "frame decoder made no progress".into();
            }
        }
    }
}

fn write_dump(inner: &mut Inner) {
    let records = inner.farmer.take_dump();
    let Some(dump) = inner.dump.as_mut() else {
        return;
    };
    for r in records {
        if let Err(e) = writeln!(dump, "{}", r.json()) {
            inner.dump_error.get_or_insert(e);
            inner.dump = None;
            return;
        }
    }
}

async fn write_loop(
    mut wr: tokio::io::WriteHalf<Box<dyn Io>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut batch = Vec::with_capacity(WRITE_BATCH_BYTES_MAX);
    while let Some(frame) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        let write = async {
            wr.write_all(&batch).await?;
            wr.flush().await
        };
        match timeout(WRITE_STALL_TIMEOUT, write).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("write stalled for {WRITE_STALL_TIMEOUT:?}"),
                ))
            }
        }
    }
    // Every sender is gone: close cleanly (TLS close_notify).
    let _ = timeout(SHUTDOWN_GRACE, wr.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests;
