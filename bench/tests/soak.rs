//! The soak, short version for CI (`scripts/soak.sh` is the long one; docs/reliability.md,
//! "Soak"): the real daemon serving 300 plot files (hard links of the selected fixture plots,
//! both key kinds, `serve_duplicate_ids`) in two disk groups, a plot rescan every 2 s, and
//! farmer-sim sending 60 challenges at 4/s and asking for every proof and both signatures.
//! Zero invalid, lost or refused answers; a sample of the answers re-checked with the reference;
//! the daemon's RSS and open files, sampled from /proc while it runs, flat after a warm-up.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const PLOTS: usize = 300;
const CHALLENGES: u64 = 60;
const RATE: &str = "4";
/// Dumped answers re-checked with the reference (chiapos' Verifier, blspy).
const SAMPLE: usize = 200;

/// `n` hard links of the selected fixture plots in turn, split into two folders (one disk group
/// each), as `scripts/soak.sh` makes them. The keys-file plot is matched by its file name, so
/// each of its copies keeps the name in a folder of its own.
fn link_plots(dir: &Path, n: usize) -> [PathBuf; 2] {
    let kinds = [
        ("plots/k18-og-a.plot", false),
        ("plots/k18-og-b.plot", false),
        ("plots/k19-og-a.plot", false),
        ("keysfile/k18-kf-a.plot", true),
    ];
    let disks = [dir.join("disk0"), dir.join("disk1")];
    for i in 0..n {
        let (source, keys_file) = kinds[i % kinds.len()];
        let disk = &disks[(i / kinds.len()) % disks.len()];
        let name = Path::new(source).file_name().expect("file name").to_str().expect("utf-8");
        let path = if keys_file {
            disk.join(format!("kf/{i:06}")).join(name)
        } else {
            disk.join(format!("{}-{i:06}.plot", name.trim_end_matches(".plot")))
        };
        std::fs::create_dir_all(path.parent().expect("parent")).expect("plot folder");
        std::fs::hard_link(fixtures().join(source), &path).expect("hard link");
    }
    disks
}

struct Sample {
    secs: f64,
    rss_mib: f64,
    fds: usize,
}

#[test]
fn soak_short_every_answer_valid_and_rss_and_open_files_flat() {
    let started = Instant::now();
    let tmp = TempDir::new("soak");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let disks = link_plots(&tmp.0.join("plots"), PLOTS);

    let farmer_port = free_port();
    let metrics_port = free_port();
    let config = write_config_with(
        &tmp.0,
        "soak",
        farmer_port,
        Some(metrics_port),
        &certs,
        &[tmp.0.join("plots")],
        true,
        &[("plots", "serve_duplicate_ids = true"), ("protocol", "challenges_in_flight_max = 256")],
    );
    let mut text = std::fs::read_to_string(&config).expect("config");
    for (i, disk) in disks.iter().enumerate() {
        text.push_str(&format!(
            "\n[[disks]]\nname = \"soak-{i}\"\npaths = [{:?}]\n",
            disk.display().to_string()
        ));
    }
    std::fs::write(&config, text).expect("config written");

    let report_path = tmp.0.join("report.json");
    let dump = tmp.0.join("dump.jsonl");
    let mut farmer = Proc::spawn(
        "farmer-sim",
        Command::new(farmer_sim())
            .args(["--listen", &format!("127.0.0.1:{farmer_port}"), "--certs"])
            .arg(&certs)
            .arg("--keys")
            .arg(fixtures().join("farmer-keys.json"))
            .args(["--challenges", &CHALLENGES.to_string(), "--rate", RATE, "--seed", "3"])
            .args(["--request", "all", "--quiet", "--json"])
            .arg(&report_path)
            .arg("--dump")
            .arg(&dump),
        tmp.0.join("farmer-sim.log"),
    );
    let mut harvester = start_harvester(&tmp.0, "harvester", &config);
    let pid = harvester.child.id();

    // Sample the daemon every 250 ms until the farmer is done.
    let mut samples = Vec::new();
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = farmer.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            harvester.child.try_wait().expect("wait").is_none(),
            "the harvester exited during the run; log:\n{}",
            harvester.log()
        );
        samples.push(Sample {
            secs: t0.elapsed().as_secs_f64(),
            rss_mib: rss_bytes(pid) as f64 / f64::from(1 << 20),
            fds: open_files(pid),
        });
        assert!(t0.elapsed() < Duration::from_secs(120), "farmer-sim still running after 120 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    let cpu = cpu_secs(pid);
    let metrics = http_get(metrics_port, "/metrics");
    let stopped = harvester.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "farmer-sim failed; its log:\n{}\nharvester log:\n{}",
        farmer.log(),
        harvester.log()
    );
    assert!(stopped.success(), "harvester exit: {stopped}; log:\n{}", harvester.log());

    // Every answer valid, none lost or refused; every plot served.
    let r = report(&report_path);
    assert_eq!(count(&r, "/challenges"), CHALLENGES, "{r}");
    assert_eq!(count(&r, "/invalid"), 0, "{r}");
    assert_eq!(count(&r, "/lost"), 0, "{r}");
    assert_eq!(count(&r, "/errors/total"), 0, "{r}");
    assert_eq!(count(&r, "/disconnects"), 0, "{r}");
    let proofs = count(&r, "/proofs/valid");
    assert_eq!(proofs, count(&r, "/proofs/requested"), "{r}");
    assert_eq!(proofs, count(&r, "/qualities"), "every quality's proof asked for: {r}");
    assert!(proofs >= 100, "a few hundred proofs expected, {proofs}: {r}");
    for kind in ["partial", "header"] {
        assert_eq!(count(&r, &format!("/signatures/{kind}/valid")), proofs, "{r}");
    }
    assert!(count(&r, "/signatures/kinds/keys_file") > 0, "{r}");
    assert!(count(&r, "/signatures/kinds/memo") > 0, "{r}");
    assert_eq!(
        metric(&metrics, "harvester_plots{state=\"served\"}"),
        Some(PLOTS as f64),
        "{metrics}"
    );

    // A random sample of the accepted answers, re-checked with the reference.
    let lines: Vec<String> = std::fs::read_to_string(&dump)
        .expect("dump")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let step = lines.len().div_ceil(SAMPLE).max(1);
    let offset = (std::process::id() as usize) % step;
    let sample: Vec<&str> = lines.iter().skip(offset).step_by(step).map(String::as_str).collect();
    let sample_path = tmp.0.join("dump-sample.jsonl");
    std::fs::write(&sample_path, sample.join("\n") + "\n").expect("sample written");
    let out = Command::new(test_support::oracle_python())
        .arg(repo().join("scripts/oracle.py"))
        .args(["check-answers", "--file"])
        .arg(&sample_path)
        .output()
        .expect("oracle runs");
    let verdict = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oracle check-answers: {verdict}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Flat: from every plot open (the first scan done) plus a 3 s warm-up to the end, RSS grows
    // less than 25% + 8 MiB (generous: a short run on a noisy machine) and the open files stay
    // within the transient ones of the 2 s rescans (open_threads = 8) of the warm-up value.
    let ready = samples
        .iter()
        .position(|s| s.fds >= PLOTS)
        .unwrap_or_else(|| panic!("the daemon never had {PLOTS} files open"));
    let warm_secs = samples[ready].secs + 3.0;
    let warm = samples.iter().position(|s| s.secs >= warm_secs).expect("samples after the warm-up");
    let after = &samples[warm..];
    assert!(after.len() >= 20, "too few samples after the warm-up: {}", after.len());
    let (rss_ref, fds_ref) = (samples[warm].rss_mib, samples[warm].fds);
    let rss_max = after.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let rss_last = after.last().expect("samples").rss_mib;
    let fds_min = after.iter().map(|s| s.fds).min().expect("samples");
    let fds_max = after.iter().map(|s| s.fds).max().expect("samples");
    let fds_last = after.last().expect("samples").fds;
    let figures = format!(
        "soak (short): {PLOTS} plots, {CHALLENGES} challenges at {RATE}/s, {proofs} proofs, \
         reference {}; RSS MiB warm {rss_ref:.1} last {rss_last:.1} max {rss_max:.1}; open \
         files warm {fds_ref} last {fds_last} min {fds_min} max {fds_max}; {} samples; \
         harvester CPU {cpu:.1} s; {:.1} s in all",
        verdict.trim(),
        samples.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{figures}");
    assert!(rss_max <= rss_ref * 1.25 + 8.0, "RSS not flat: {figures}");
    assert!(fds_min + 8 >= fds_ref && fds_max <= fds_ref + 16, "open files not flat: {figures}");
    assert!(fds_last <= fds_ref + 8, "open files not back: {figures}");
}
