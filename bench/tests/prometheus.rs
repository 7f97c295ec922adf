//! A real Prometheus (Debian's `prometheus` and `promtool`) against the real daemon: the
//! scrape is valid and `up`, per-disk latency quantiles computed by Prometheus agree with the
//! daemon's own histograms and with what farmer-sim measured, the alert rules
//! (`deploy/prometheus/harvester-rules.yml`) pass `promtool` and fire on a real fault, and every
//! query of the Grafana dashboard (`deploy/grafana/harvester.json`) returns data.
//!
//! Prometheus runs as a child of the test (never as a service): a temporary configuration and
//! TSDB, on a free port of 127.0.0.1, scraping every second, killed on drop. Without
//! `prometheus`/`promtool` on `PATH` the tests skip (`facility_missing`), and fail in CI. The
//! stuck-disk test also needs root, `/dev/fuse` and fusepy (`scripts/faultfs.py`), as the FUSE
//! rows of `faults.rs` do.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::{Body, Message};
use serde_json::Value;
use support::*;
use test_support::{facility_missing, wait_until_every};

/// How often the test Prometheus scrapes the daemon and evaluates its rules.
const SCRAPE_INTERVAL: &str = "1s";
/// The rate window of the latency quantiles, at least.
const RATE_WINDOW_SECS: u64 = 30;
/// Longest wait for anything Prometheus should see (a few scrapes and rule evaluations).
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

fn rules_file() -> PathBuf {
    repo().join("deploy/prometheus/harvester-rules.yml")
}

fn rules_test_file() -> PathBuf {
    repo().join("deploy/prometheus/harvester-rules.test.yml")
}

fn dashboard_file() -> PathBuf {
    repo().join("deploy/grafana/harvester.json")
}

/// Whether `prometheus` and `promtool` run; else reports the skip (or fails in CI).
fn have_prometheus(test: &str) -> bool {
    for bin in ["prometheus", "promtool"] {
        let ok = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            facility_missing(test, &format!("no `{bin}` on PATH (apt-get install prometheus)"));
            return false;
        }
    }
    true
}

/// `promtool` with `args`, in `dir`; its exit status and output (stdout then stderr).
fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("promtool stdin");
    }
    let out = child.wait_with_output().expect("promtool finishes");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A Prometheus server, killed on drop (its `Proc`).
struct Prometheus {
    proc: Proc,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `127.0.0.1:metrics_port/metrics` as job
    /// `harvester` every second, with `rules` (if any) evaluated every second; waits until it
    /// is ready.
    fn start(dir: &Path, metrics_port: u16, rules: Option<&Path>) -> Prometheus {
        let rule_files = rules
            .map(|r| format!("rule_files:\n  - {:?}\n", r.display().to_string()))
            .unwrap_or_default();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  \
             evaluation_interval: {SCRAPE_INTERVAL}\n{rule_files}scrape_configs:\n  - job_name: \
             harvester\n    static_configs:\n      - targets: [\"127.0.0.1:{metrics_port}\"]\n"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, &config).expect("prometheus config written");
        let (ok, out) = promtool(dir, &["check", "config", "prometheus.yml"], None);
        assert!(ok, "promtool check config:\n{out}\n{config}");
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null());
        let mut prometheus = Prometheus {
            proc: Proc::spawn("prometheus", &mut cmd, dir.join("prometheus.log")),
            port,
        };
        let ready = wait_until_every(PROMETHEUS_WAIT, POLL, || {
            assert!(
                prometheus.proc.child.try_wait().expect("wait").is_none(),
                "prometheus exited:\n{}",
                prometheus.proc.log()
            );
            get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        assert!(ready, "prometheus not ready in {PROMETHEUS_WAIT:?}:\n{}", prometheus.proc.log());
        prometheus
    }

    /// `GET path` on the HTTP API, parsed; panics unless `status` is `success`.
    fn api(&self, path: &str) -> Value {
        let (status, body) = get(self.port, path)
            .unwrap_or_else(|| panic!("prometheus API {path}: no answer\n{}", self.proc.log()));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus API {path}: {status} {e}: {body}"));
        assert_eq!(v["status"], "success", "prometheus API {path}: {status} {v}");
        v["data"].clone()
    }

    /// The instant vector `query` at `time` (now if None): `(labels, value)` per series.
    fn query_at(&self, query: &str, time: Option<f64>) -> Vec<(Value, f64)> {
        let mut path = format!("/api/v1/query?query={}", encode(query));
        if let Some(t) = time {
            path.push_str(&format!("&time={t:.3}"));
        }
        let data = self.api(&path);
        assert_eq!(data["resultType"], "vector", "{query}: {data}");
        data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().expect("sample value");
                // Prometheus writes NaN and ±Inf as strings Rust parses too.
                (s["metric"].clone(), value.parse::<f64>().expect("number"))
            })
            .collect()
    }

    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        self.query_at(query, None)
    }

    /// Alerts in state `firing` named `name`.
    fn firing(&self, name: &str) -> Vec<Value> {
        let data = self.api("/api/v1/alerts");
        data["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .cloned()
            .collect()
    }
}

/// An HTTP/1.0 GET (so the answer is never chunked) on 127.0.0.1: the status and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

/// The daemon's `/metrics` body (asserting a 200).
fn scrape(port: u16) -> String {
    let answer = http_get(port, "/metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The cumulative buckets `(le, count)` of histogram `family` for `disk`, in `le` order.
fn buckets(text: &str, family: &str, disk: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{family}_bucket{{disk=\"{disk}\",le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (le, value) = rest.split_once("\"} ").expect("bucket line");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") };
            (le, value.parse().expect("bucket count"))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// What `histogram_quantile(q, ...)` gives for these cumulative buckets, and the bounds of the
/// bucket holding the quantile: Prometheus' interpolation, redone from the daemon's scrape.
fn quantile_of(q: f64, buckets: &[(f64, f64)]) -> (f64, f64, f64) {
    let total = buckets.last().expect("buckets").1;
    let rank = q * total;
    let i = buckets.iter().position(|&(_, c)| c >= rank).expect("rank within the total");
    let (upper, count) = buckets[i];
    let (lower, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    if upper.is_infinite() {
        return (lower, lower, lower);
    }
    (lower + (upper - lower) * (rank - below) / (count - below), lower, upper)
}

/// Writes the rules with every `for:` shortened to `for_` (the real Prometheus then shows an
/// alert within seconds) and returns the copy's path.
fn rules_with_short_for(dir: &Path, for_: &str) -> PathBuf {
    let text = std::fs::read_to_string(rules_file()).expect("rules file");
    let short: Vec<String> = text
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: {for_}"),
            _ => l.to_string(),
        })
        .collect();
    let path = dir.join("harvester-rules.yml");
    std::fs::write(&path, short.join("\n") + "\n").expect("rules copy written");
    path
}

/// Every `expr` of the dashboard's panels (rows included), with Grafana's variables replaced
/// by what a query of the whole farm uses.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_file()).expect("dashboard"))
            .expect("dashboard json");
    let mut exprs = Vec::new();
    let mut panels: Vec<Value> = dashboard["panels"].as_array().expect("panels").clone();
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner.iter().cloned());
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let expr = expr
                .replace("$__rate_interval", &format!("{RATE_WINDOW_SECS}s"))
                .replace("$__interval", "5s")
                .replace("$instance", ".*")
                .replace("$disk", ".*");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            exprs.push((panel["title"].as_str().unwrap_or("?").to_string(), expr));
        }
    }
    exprs
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    if !have_prometheus("promtool_checks_and_tests_the_rules") {
        return;
    }
    let dir = rules_file().parent().expect("dir").to_path_buf();
    let (ok, out) = promtool(&dir, &["check", "rules", "harvester-rules.yml"], None);
    assert!(ok && out.contains("SUCCESS"), "promtool check rules:\n{out}");
    let (ok, out) = promtool(&dir, &["test", "rules", "harvester-rules.test.yml"], None);
    assert!(
        ok && out.contains("SUCCESS") && !out.contains("FAILED"),
        "promtool test rules:\n{out}"
    );
    // Every alert has a unit test that names it.
    let rules = std::fs::read_to_string(rules_file()).expect("rules");
    let tests = std::fs::read_to_string(rules_test_file()).expect("rule tests");
    let alerts: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.lines().any(|l| l.trim() == format!("- alertname: {alert}")),
            "{alert} has no test in {}",
            rules_test_file().display()
        );
    }
}

#[test]
fn prometheus_scrapes_the_daemon_and_its_quantiles_agree_with_the_histograms() {
    let test = "prometheus_scrapes_the_daemon_and_its_quantiles_agree_with_the_histograms";
    if !have_prometheus(test) {
        return;
    }
    let tmp = TempDir::new("prometheus-scrape");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let (farmer_port, metrics_port) = (free_port(), free_port());
    let config =
        write_config(&tmp.0, "h", farmer_port, Some(metrics_port), &certs, &plot_folders(), true);
    let harvester = start_harvester(&tmp.0, "harvester", &config);
    let up = wait_until_every(PROMETHEUS_WAIT, POLL, || {
        TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
    });
    assert!(up, "no /metrics:\n{}", harvester.log());
    let rules = rules_with_short_for(&tmp.0, "1s");
    let prometheus = Prometheus::start(&tmp.0, metrics_port, Some(&rules));

    // A baseline: Prometheus has a scrape with no lookup yet, so a rate window reaching back
    // to it covers every lookup the load makes.
    let lookups = "sum(harvester_lookup_latency_seconds_count)";
    let baseline = wait_until_every(PROMETHEUS_WAIT, POLL, || {
        prometheus.query(lookups).first().is_some_and(|(_, v)| *v == 0.0)
    });
    assert!(baseline, "no zero baseline scraped:\n{}", prometheus.proc.log());
    let load_started = now();

    let json = tmp.0.join("report.json");
    let mut farmer = Proc::spawn(
        "farmer-sim",
        Command::new(farmer_sim())
            .args(["--listen", &format!("127.0.0.1:{farmer_port}"), "--certs"])
            .arg(&certs)
            .arg("--keys")
            .arg(fixtures().join("farmer-keys.json"))
            .args(["--challenges", "80", "--rate", "20", "--request", "all", "--json"])
            .arg(&json),
        tmp.0.join("farmer.log"),
    );
    let status = farmer.wait(Duration::from_secs(120));
    assert!(status.success(), "farmer-sim: {status}\n{}\n{}", farmer.log(), harvester.log());
    let report = report(&json);
    assert_eq!(count(&report, "/invalid") + count(&report, "/lost"), 0, "{report}");

    // The daemon's own view, once the load is over (the histograms no longer change).
    let text = scrape(metrics_port);
    let (ok, out) = promtool(&tmp.0, &["check", "metrics"], Some(&text));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");
    let direct = metric(&text, "harvester_lookup_latency_seconds_count{").expect("lookup count");
    assert!(direct > 0.0, "no lookups recorded:\n{text}");

    // Prometheus has the same final values, and the target is up.
    let caught_up = wait_until_every(PROMETHEUS_WAIT, POLL, || {
        prometheus.query(lookups).first().is_some_and(|(_, v)| *v == direct)
    });
    assert!(caught_up, "prometheus never saw {direct} lookups: {:?}", prometheus.query(lookups));
    let up = prometheus.query("up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].0["job"], "harvester", "{up:?}");
    assert_eq!(up[0].0["instance"], format!("127.0.0.1:{metrics_port}"), "{up:?}");
    assert_eq!(up[0].1, 1.0, "target down: {up:?}");

    // Per-disk median lookup latency: Prometheus' estimate over a window from the baseline to
    // the end equals the interpolation in the daemon's own buckets, in the same bucket.
    let at = now();
    let window = RATE_WINDOW_SECS.max((at - load_started).ceil() as u64 + 3);
    let per_disk = prometheus.query_at(
        &format!(
            "histogram_quantile(0.5, sum by (le, disk) \
             (rate(harvester_lookup_latency_seconds_bucket[{window}s])))"
        ),
        Some(at),
    );
    let mut compared = 0;
    for (labels, value) in &per_disk {
        let disk = labels["disk"].as_str().expect("disk label");
        let b = buckets(&text, "harvester_lookup_latency_seconds", disk);
        assert_eq!(b.len(), 18, "{disk}: {b:?}");
        if b.last().expect("+Inf").1 == 0.0 {
            assert!(value.is_nan(), "{disk}: no lookups, yet a median of {value}");
            continue;
        }
        let (expected, lower, upper) = quantile_of(0.5, &b);
        eprintln!(
            "disk {disk}: prometheus p50 {value:.6} s, from the daemon's buckets {expected:.6} s \
             in ({lower}, {upper}]"
        );
        assert!(
            (lower..=upper).contains(value),
            "{disk}: p50 {value} outside its bucket ({lower}, {upper}]: {b:?}"
        );
        assert!(
            (value - expected).abs() <= 1e-9 + 1e-6 * expected,
            "{disk}: prometheus {value} vs the daemon's buckets {expected}: {b:?}"
        );
        compared += 1;
    }
    assert!(compared > 0, "no disk with lookups: {per_disk:?}");

    // The challenge median, as Prometheus computes it from the daemon's histogram, against the
    // median farmer-sim measured itself (which adds the loopback round trip): within a
    // bucket width.
    let challenge = prometheus.query_at(
        &format!(
            "histogram_quantile(0.5, sum by (le) \
             (rate(harvester_challenge_latency_seconds_bucket[{window}s])))"
        ),
        Some(at),
    );
    assert_eq!(challenge.len(), 1, "{challenge:?}");
    let prom_p50 = challenge[0].1;
    let sim_p50 = report["latency_ms"]["challenge_last_response"]["p50"]
        .as_f64()
        .unwrap_or_else(|| panic!("no challenge p50 in {report}"))
        / 1000.0;
    // The wider of the bucket Prometheus' estimate is in and the one farmer-sim's is in.
    let bucket_width = {
        let b = buckets_unlabelled(&text, "harvester_challenge_latency_seconds");
        let (_, lower, upper) = quantile_of(0.5, &b);
        let holding = |x: f64| {
            let i = b.iter().position(|&(le, _)| x <= le).expect("+Inf holds all");
            b[i].0 - if i == 0 { 0.0 } else { b[i - 1].0 }
        };
        (upper - lower).max(holding(sim_p50))
    };
    eprintln!(
        "challenge p50: prometheus {prom_p50:.6} s, farmer-sim {sim_p50:.6} s, bucket width \
         {bucket_width:.6} s"
    );
    assert!(
        (prom_p50 - sim_p50).abs() <= bucket_width,
        "challenge p50: prometheus {prom_p50} s vs farmer-sim {sim_p50} s (bucket width \
         {bucket_width} s)"
    );

    // Every query of the Grafana dashboard returns data from this Prometheus.
    check_dashboard(&prometheus);
}

/// The cumulative buckets of an unlabelled histogram.
fn buckets_unlabelled(text: &str, family: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{family}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (le, value) = rest.split_once("\"} ").expect("bucket line");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") };
            (le, value.parse().expect("bucket count"))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn check_dashboard(prometheus: &Prometheus) {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut empty = Vec::new();
    for (title, expr) in &exprs {
        if prometheus.query(expr).is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "dashboard queries without data:\n{}", empty.join("\n"));
    eprintln!("dashboard: {} queries, each with data", exprs.len());
}

#[test]
fn quarantined_and_vanished_plots_fire_their_alerts_in_prometheus() {
    let test = "quarantined_and_vanished_plots_fire_their_alerts_in_prometheus";
    if !have_prometheus(test) {
        return;
    }
    let tmp = TempDir::new("prometheus-alerts");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    // A plot folder of links to the selected fixtures, so plots can come and go.
    let folder = tmp.0.join("plots");
    std::fs::create_dir_all(&folder).expect("plot folder");
    let plots = selected_fixture_plots();
    for p in &plots {
        std::os::unix::fs::symlink(p, folder.join(p.file_name().expect("name"))).expect("link");
    }
    let (farmer_port, metrics_port) = (free_port(), free_port());
    let config = write_config(
        &tmp.0,
        "h",
        farmer_port,
        Some(metrics_port),
        &certs,
        std::slice::from_ref(&folder),
        true,
    );
    let harvester = start_harvester(&tmp.0, "harvester", &config);
    let rules = rules_with_short_for(&tmp.0, "1s");
    let prometheus = Prometheus::start(&tmp.0, metrics_port, Some(&rules));

    let served = "sum(harvester_plots{state=\"served\"})";
    let all_served = plots.len() as f64;
    let seen = wait_until_every(PROMETHEUS_WAIT, POLL, || {
        prometheus.query(served).first().is_some_and(|(_, v)| *v == all_served)
    });
    assert!(
        seen,
        "{all_served} plots never served: {:?}\n{}",
        prometheus.query(served),
        harvester.log()
    );
    for alert in ["HarvesterPlotsQuarantined", "HarvesterPlotCountDropped", "HarvesterDiskDegraded"]
    {
        assert!(prometheus.firing(alert).is_empty(), "{alert} fires on a healthy farm");
    }

    // A plot with a corrupt header appears: the daemon quarantines it at its next scan.
    let mut bytes = std::fs::read(&plots[0]).expect("fixture plot");
    bytes[0] ^= 0x20; // the magic
    std::fs::write(folder.join("bad-magic.plot"), &bytes).expect("corrupt plot written");
    let fired = wait_until_every(PROMETHEUS_WAIT, POLL, || {
        !prometheus.firing("HarvesterPlotsQuarantined").is_empty()
    });
    assert!(
        fired,
        "HarvesterPlotsQuarantined never fired; plots {:?}\n{}",
        prometheus.query("harvester_plots"),
        harvester.log()
    );
    let alert = &prometheus.firing("HarvesterPlotsQuarantined")[0];
    assert_eq!(alert["labels"]["state"], "quarantined", "{alert}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(alert["value"].as_str().map(|v| v.parse::<f64>()), Some(Ok(1.0)), "{alert}");

    // A served plot vanishes: the plot count drops, for the farm and for its disk.
    std::fs::remove_file(folder.join(plots[1].file_name().expect("name"))).expect("unlink");
    for alert in ["HarvesterPlotCountDropped", "HarvesterDiskPlotsVanished"] {
        let fired =
            wait_until_every(PROMETHEUS_WAIT, POLL, || !prometheus.firing(alert).is_empty());
        assert!(
            fired,
            "{alert} never fired; plots {:?}\n{}",
            prometheus.query("harvester_plots"),
            harvester.log()
        );
    }
    let dropped = &prometheus.firing("HarvesterPlotCountDropped")[0];
    assert_eq!(
        dropped["value"].as_str().map(|v| v.parse::<f64>()),
        Some(Ok(all_served - 1.0)),
        "{dropped}"
    );
    // No farmer ever connected: that alert fires too (its `for` is 1 s here).
    assert!(!prometheus.firing("HarvesterNoFarmer").is_empty(), "HarvesterNoFarmer");
}

#[test]
fn a_stuck_disk_fires_the_degraded_alert_in_prometheus() {
    let test = "a_stuck_disk_fires_the_degraded_alert_in_prometheus";
    if !have_prometheus(test) {
        return;
    }
    let Some(python) = fuse_python(test) else {
        return;
    };
    let tmp = TempDir::new("prometheus-stuck");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    // Two plots on the regular disk, one behind a FUSE mount whose reads can hang.
    let healthy_dir = tmp.0.join("healthy");
    let fuse_source = tmp.0.join("fuse-source");
    for (folder, names) in [
        (&healthy_dir, &["k18-og-a.plot", "k19-og-a.plot"][..]),
        (&fuse_source, &["k18-og-b.plot"]),
    ] {
        std::fs::create_dir_all(folder).expect("plot folder");
        for name in names {
            let plot = fixtures().join("plots").join(name);
            std::os::unix::fs::symlink(&plot, folder.join(name)).expect("link");
        }
    }
    let fuse = FaultFs::mount(&python, &fuse_source, &tmp.0);
    let fuse_plot = fuse.mountpoint.join("k18-og-b.plot");
    let fuse_disk = disk_io::device::disk_of(&fuse_plot).expect("disk of the mount").key;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let engine = "lookup_deadline_seconds = 3\nproof_deadline_seconds = 3\n\
                      read_stuck_after_seconds = 1";
        let ScriptedFarm { farmer, metrics_port, harvester } = scripted_farm(
            &tmp.0,
            &certs,
            &[healthy_dir.clone(), fuse.mountpoint.clone()],
            false,
            &[("engine", engine)],
        )
        .await;
        // The FUSE daemon goes first on drop: a read hung in it would hold the daemon's exit.
        let farm = StuckFarm { fuse, harvester };
        let rules = rules_with_short_for(&tmp.0, "1s");
        let prometheus = Prometheus::start(&tmp.0, metrics_port, Some(&rules));
        let mut peer = farmer.accept(PROMETHEUS_WAIT).await;
        peer.send(Message {
            id: None,
            body: Body::HarvesterHandshake { pool_pubkeys: pool_keys() },
        })
        .await;
        let degraded = format!("harvester_disk_degraded{{disk=\"{fuse_disk}\"}}");
        let healthy_seen = wait_until_every(PROMETHEUS_WAIT, POLL, || {
            prometheus.query(&degraded).first().is_some_and(|(_, v)| *v == 0.0)
                && prometheus
                    .query("harvester_plots{state=\"served\"}")
                    .first()
                    .is_some_and(|(_, v)| *v == 3.0)
        });
        assert!(healthy_seen, "{degraded} never 0 with 3 plots:\n{}", farm.harvester.log());
        assert!(prometheus.firing("HarvesterDiskDegraded").is_empty(), "degraded at the start");

        // Every read of the FUSE disk hangs; challenges keep coming until the alert fires.
        farm.fuse.set_mode("hang");
        let started = Instant::now();
        let mut i = 0;
        while prometheus.firing("HarvesterDiskDegraded").is_empty() {
            assert!(
                started.elapsed() < PROMETHEUS_WAIT,
                "HarvesterDiskDegraded never fired: {:?}\n{}",
                prometheus.query("harvester_disk_degraded"),
                farm.harvester.log()
            );
            peer.send(Message {
                id: None,
                body: Body::NewChallenge { challenge_hash: challenge(i) },
            })
            .await;
            i += 1;
            while peer.recv(Duration::from_millis(250)).await.is_some() {}
        }
        let alert = &prometheus.firing("HarvesterDiskDegraded")[0];
        assert_eq!(alert["labels"]["disk"], fuse_disk.as_str(), "{alert}");
        eprintln!(
            "stuck disk {fuse_disk}: HarvesterDiskDegraded fired after {:?}",
            started.elapsed()
        );

        // The disk answers again: it recovers and the alert resolves.
        farm.fuse.set_mode("ok");
        let resolved = wait_until_every(PROMETHEUS_WAIT, POLL, || {
            prometheus.firing("HarvesterDiskDegraded").is_empty()
        });
        assert!(resolved, "HarvesterDiskDegraded never resolved:\n{}", farm.harvester.log());
        drop(peer);
        drop(farm);
    });
}

/// The daemon and the FUSE mount under it; fields drop in order, the FUSE daemon first.
struct StuckFarm {
    fuse: FaultFs,
    harvester: Proc,
}

/// A mounted `scripts/faultfs.py` (as in faults.rs). Dropping it kills the FUSE daemon and
/// detaches the mount.
struct FaultFs {
    child: Child,
    mountpoint: PathBuf,
    mode_file: PathBuf,
    output: PathBuf,
}

impl FaultFs {
    /// Mounts a read-only view of `source` at `dir/fuse`, in mode `ok`.
    fn mount(python: &Path, source: &Path, dir: &Path) -> FaultFs {
        let mountpoint = dir.join("fuse");
        std::fs::create_dir_all(&mountpoint).expect("mount point");
        let (mode_file, output) = (dir.join("fuse-mode"), dir.join("fuse-output.log"));
        std::fs::write(&mode_file, "ok\n").expect("mode file");
        let out = std::fs::File::create(&output).expect("output file");
        let child = Command::new(python)
            .arg(repo().join("scripts/faultfs.py"))
            .arg("--source")
            .arg(source)
            .arg("--mountpoint")
            .arg(&mountpoint)
            .arg("--mode-file")
            .arg(&mode_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output file"))
            .stderr(out)
            .spawn()
            .expect("faultfs.py starts");
        let mut fs = FaultFs { child, mountpoint, mode_file, output };
        // Mounted when the mount point's device differs from its parent's.
        let parent = std::fs::metadata(dir).expect("dir").dev();
        let mounted = wait_until_every(PROMETHEUS_WAIT, Duration::from_millis(20), || {
            if let Some(status) = fs.child.try_wait().expect("wait") {
                panic!("faultfs.py exited ({status}):\n{}", fs.output());
            }
            std::fs::metadata(&fs.mountpoint).map(|m| m.dev()).unwrap_or(parent) != parent
        });
        assert!(mounted, "faultfs.py did not mount:\n{}", fs.output());
        fs
    }

    /// Sets the mode of every later read (`ok`, `eio`, `hang`, `delay:MS`), by rename.
    fn set_mode(&self, mode: &str) {
        let tmp = self.mode_file.with_extension("new");
        std::fs::write(&tmp, format!("{mode}\n")).expect("mode written");
        std::fs::rename(&tmp, &self.mode_file).expect("mode renamed");
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // Killing the FUSE daemon fails every read still waiting in it (ENOTCONN); then the
        // mount is detached even while open.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let detached = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !detached {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The Python that runs `scripts/faultfs.py`, or None (the skip reported) when this machine
/// cannot mount it: not root, no `/dev/fuse`, or no fusepy.
fn fuse_python(test: &str) -> Option<PathBuf> {
    let euid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse::<u32>().ok()
    });
    let reason = if euid != Some(0) {
        "not running as root (mounting FUSE needs it)"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing"
    } else {
        let probe = "try:\n import fusepy as f\nexcept ImportError:\n import fuse as f\n\
                     f.FUSE, f.Operations";
        let found = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
            Command::new(python)
                .args(["-c", probe])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        match found {
            Some(python) => return Some(PathBuf::from(python)),
            None => "python3 cannot import fusepy (Debian: apt-get install fuse3 python3-fusepy)",
        }
    };
    facility_missing(test, reason);
    None
}
