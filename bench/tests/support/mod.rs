#![allow(dead_code, unreachable_pub)] // each test file uses a part; pub for the test files
//! Shared by the end-to-end and fault tests: the real `harvester run` daemon and the real `farmer-sim` (or a scripted farmer
//! in this test) over loopback mutual TLS, with the fixture plots (`scripts/make-fixtures.sh`).
//!
//! The harvester binary is taken from the same target folder as `farmer-sim`; `cargo test
//! --workspace` (the README's test command) builds both.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plot_format::{Goal, Mode};
use protocol::{Body, FrameDecoder, Limits, Message};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub use test_support::fixtures;

pub fn farmer_sim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_farmer-sim"))
}

pub fn harvester_bin() -> PathBuf {
    let bin = farmer_sim().with_file_name("harvester");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p harvester` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("harvester-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop (also when a test fails).
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = cmd.stdout(file).stderr(err).spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        Proc { name, child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not finish in {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn make_certs(dir: &Path) {
    let out = Command::new(harvester_bin())
        .args(["certs", "--dir"])
        .arg(dir)
        .output()
        .expect("harvester certs runs");
    assert!(out.status.success(), "harvester certs: {}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.crt", "farmer.crt", "farmer.key", "harvester.crt", "harvester.key"] {
        assert!(dir.join(f).exists(), "harvester certs wrote no {f}");
    }
}

/// Writes a daemon configuration and returns its path.
pub fn write_config(
    dir: &Path,
    name: &str,
    farmer_port: u16,
    metrics_port: Option<u16>,
    certs: &Path,
    folders: &[PathBuf],
    with_keys_file: bool,
) -> PathBuf {
    let folders: Vec<String> =
        folders.iter().map(|f| format!("{:?}", f.display().to_string())).collect();
    let keys = if with_keys_file {
        format!("keys_file = {:?}\n", fixtures().join("keys.toml").display().to_string())
    } else {
        String::new()
    };
    let metrics = metrics_port.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
    let text = format!(
        r#"[farmer]
address = "127.0.0.1:{farmer_port}"
reconnect_initial_seconds = 0.1
reconnect_max_seconds = 0.5

[tls]
ca_cert = {ca:?}
cert = {cert:?}
key = {key:?}

[plots]
folders = [{folders}]
{keys}refresh_interval_seconds = 2

[engine]
backend = "uring"
direct_io = false

[metrics]
listen = "{metrics}"

[log]
level = "info"
"#,
        ca = certs.join("ca.crt").display().to_string(),
        cert = certs.join("harvester.crt").display().to_string(),
        key = certs.join("harvester.key").display().to_string(),
        folders = folders.join(", "),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

pub fn start_harvester(dir: &Path, name: &'static str, config: &Path) -> Proc {
    let mut cmd = Command::new(harvester_bin());
    cmd.args(["run", "--config"]).arg(config).env("RUST_LOG", "info").stdin(Stdio::null());
    Proc::spawn(name, &mut cmd, dir.join(format!("{name}.log")))
}

pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("send");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

pub fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("farmer-sim report")).expect("json")
}

pub fn count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has no {pointer}: {v}"))
}

/// The fixture plots a farmer with the fixture pool key selects: pool-public-key memo plots and
/// the keys-file plot; pool-contract plots are not selected.
pub fn selected_fixture_plots() -> Vec<PathBuf> {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    manifest["plots"]
        .as_array()
        .expect("plots")
        .iter()
        .filter(|p| p["id_matches_memo"].as_bool() == Some(true))
        .filter(|p| matches!(p["memo_kind"].as_str(), Some("pool_public_key" | "keys_file")))
        .map(|p| fixtures().join(p["path"].as_str().expect("path")))
        .collect()
}

pub fn plot_folders() -> Vec<PathBuf> {
    vec![fixtures().join("plots"), fixtures().join("keysfile")]
}

/// A scripted farmer: accepts the harvester's TLS connection and speaks frames by hand.
pub struct ScriptedFarmer {
    pub listener: tokio::net::TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

pub struct Peer {
    pub stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    decoder: FrameDecoder,
    next_id: u16,
    pending: std::collections::VecDeque<Message>,
}

impl ScriptedFarmer {
    /// A farmer of the first protocol version: it offers only `harvester/1` (so it never gets
    /// `ChallengeDone`), as farmers written before `harvester/2` do.
    pub async fn bind(certs: &Path) -> ScriptedFarmer {
        Self::bind_alpn(certs, &[harvester::tls::ALPN]).await
    }

    /// A farmer offering these ALPN protocols (in preference order).
    pub async fn bind_alpn(certs: &Path, protocols: &[&[u8]]) -> ScriptedFarmer {
        let config = harvester::tls::server_config_alpn(
            &certs.join("ca.crt"),
            &certs.join("farmer.crt"),
            &certs.join("farmer.key"),
            protocols,
        )
        .expect("server config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ScriptedFarmer { listener, acceptor: tokio_rustls::TlsAcceptor::from(config) }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }

    pub async fn accept(&self, timeout: Duration) -> Peer {
        let (tcp, _) = tokio::time::timeout(timeout, self.listener.accept())
            .await
            .expect("the harvester connects in time")
            .expect("accept");
        let stream = self.acceptor.accept(tcp).await.expect("TLS handshake with the harvester");
        Peer {
            stream,
            decoder: FrameDecoder::new(Limits::default()),
            next_id: 1,
            pending: Default::default(),
        }
    }
}

impl Peer {
    pub async fn send(&mut self, message: Message) {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        self.send_raw(&frame).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    pub async fn request(&mut self, body: Body) -> u16 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(Message { id: Some(id), body }).await;
        id
    }

    /// The next message, or None on end of stream or timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let n =
                tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let used = self.decoder.feed(rest);
                rest = &rest[used..];
                while let Some(m) =
                    self.decoder.next_message().expect("the harvester's frames are valid")
                {
                    self.pending.push_back(m);
                }
            }
        }
    }
}

pub fn pool_keys() -> Vec<[u8; 48]> {
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("farmer-keys.json")).expect("farmer keys"),
    )
    .expect("json");
    keys["pool_public_keys"]
        .as_array()
        .expect("list")
        .iter()
        .map(|k| hex::decode(k.as_str().expect("hex")).expect("hex").try_into().expect("48 bytes"))
        .collect()
}

/// Qualities of `challenge` in the selected fixture plots, by the plain decoder.
pub fn expected_qualities(challenge: &[u8; 32]) -> BTreeSet<[u8; 32]> {
    let mut set = BTreeSet::new();
    for path in selected_fixture_plots() {
        let (file, plot) = shard::open_plot(&path).expect("fixture opens");
        let found = shard::lookup_file(&file, &plot, challenge, Goal::Qualities, Mode::Complete)
            .expect("read")
            .expect("lookup");
        set.extend(found.iter().map(|f| f.quality));
    }
    set
}

pub fn challenge(i: u32) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("e2e-{i}")).into()
}

/// Like [`write_config`], plus extra keys per section: `extra` holds `(section, "key = value"
/// lines)`. A key already in the section is replaced, a new one is added, and a section the
/// base configuration lacks (e.g. `protocol`) is appended.
#[allow(clippy::too_many_arguments)] // write_config's arguments plus `extra`
pub fn write_config_with(
    dir: &Path,
    name: &str,
    farmer_port: u16,
    metrics_port: Option<u16>,
    certs: &Path,
    folders: &[PathBuf],
    with_keys_file: bool,
    extra: &[(&str, &str)],
) -> PathBuf {
    let path = write_config(dir, name, farmer_port, metrics_port, certs, folders, with_keys_file);
    let base = std::fs::read_to_string(&path).expect("config written");
    // (section, lines), in file order; "" is the part before the first header.
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for line in base.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            sections.push((trimmed.trim_matches(|c| c == '[' || c == ']').to_string(), Vec::new()));
        } else if !trimmed.is_empty() {
            sections.last_mut().expect("one section").1.push(line.to_string());
        }
    }
    let key_of = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    for (section, keys) in extra {
        let i = match sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                sections.push((section.to_string(), Vec::new()));
                sections.len() - 1
            }
        };
        for line in keys.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let lines = &mut sections[i].1;
            match lines.iter().position(|l| key_of(l) == key_of(line)) {
                Some(j) => lines[j] = line.to_string(),
                None => lines.push(line.to_string()),
            }
        }
    }
    let mut text = String::new();
    for (section, lines) in &sections {
        if !section.is_empty() {
            text.push_str(&format!("\n[{section}]\n"));
        }
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(&path, text).expect("config written");
    path
}

/// A scripted farmer and a `harvester run` daemon ("h") dialling it, with `/metrics` on a free
/// port; configured by [`write_config_with`] in `dir`.
pub struct ScriptedFarm {
    pub farmer: ScriptedFarmer,
    pub metrics_port: u16,
    pub harvester: Proc,
}

pub async fn scripted_farm(
    dir: &Path,
    certs: &Path,
    folders: &[PathBuf],
    with_keys_file: bool,
    extra: &[(&str, &str)],
) -> ScriptedFarm {
    let farmer = ScriptedFarmer::bind(certs).await;
    let metrics_port = free_port();
    let config = write_config_with(
        dir,
        "h",
        farmer.port(),
        Some(metrics_port),
        certs,
        folders,
        with_keys_file,
        extra,
    );
    let harvester = start_harvester(dir, "harvester", &config);
    ScriptedFarm { farmer, metrics_port, harvester }
}

/// The value of a Prometheus sample in `/metrics` text: the line `name value` exactly, or with
/// `name` ending in `{`, the sum over every labelled series of that family. None if absent.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let matches = if name.ends_with('{') {
            line.starts_with(name)
        } else {
            line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' '))
        };
        if matches {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("metric line without a number: {line}"));
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

/// Resident memory of process `pid` (VmRSS in /proc/PID/status), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("VmRSS unreadable: {line}"));
    kib * 1024
}

/// Qualities of `challenge` in the plots at `paths` (any plots, selected or not), by the plain
/// decoder.
pub fn expected_qualities_of(paths: &[PathBuf], challenge: &[u8; 32]) -> BTreeSet<[u8; 32]> {
    let mut set = BTreeSet::new();
    for path in paths {
        let (file, plot) =
            shard::open_plot(path).unwrap_or_else(|e| panic!("{} opens: {e}", path.display()));
        let found = shard::lookup_file(&file, &plot, challenge, Goal::Qualities, Mode::Complete)
            .expect("read")
            .expect("lookup");
        set.extend(found.iter().map(|f| f.quality));
    }
    set
}

/// Open file descriptors of process `pid` (entries of /proc/PID/fd).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("process fd folder").count()
}

/// CPU time used so far by process `pid` (user + system, /proc/PID/stat), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}
