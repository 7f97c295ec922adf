//! The fault matrix on the real kernel: the real `harvester run` daemon, a scripted farmer over
//! loopback mutual TLS, and plots on a FUSE file system whose reads fail, hang or vanish on
//! command (`scripts/faultfs.py`), plus plot files truncated, deleted and replaced under the
//! daemon. Each row checks that a fault stays with its plot or disk: the other plots answer
//! every challenge exactly (qualities against the plain decoder, proofs with our verifier), and
//! the log and `/metrics` name what failed.
//!
//! The FUSE rows need root, `/dev/fuse` and fusepy (Debian `fuse3` and `python3-fusepy`, which
//! `.ci/run` installs); without them they print why and pass. A guard unmounts the FUSE file
//! system and kills its daemon, also when a test fails. Nothing sleeps to assert: every wait
//! polls a metric, a log line or a message, with a deadline. The rows run one at a time (they
//! measure latencies on a 2-core machine).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bench::farmer::checks::plot_id;
use plot_format::verify::validate_proof;
use protocol::{Body, Bytes32, ErrorCode, Message};
use support::*;

/// Deadline of every single wait (a message, a metric, a log line).
const WAIT: Duration = Duration::from_secs(20);
/// A quality no plot announces: its proof request, answered `UnknownQuality` behind every frame
/// queued before it, marks the end of the answers.
const BARRIER_QUALITY: Bytes32 = [0xEE; 32];
/// Tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---- The rows ----

#[test]
fn fuse_eio_fails_lookups_names_the_plot_and_quarantines_it_others_unaffected() {
    let Some(python) =
        fuse_python("fuse_eio_fails_lookups_names_the_plot_and_quarantines_it_others_unaffected")
    else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("faults-eio");
    runtime().block_on(async {
        let mut farm = FuseFarm::start(&tmp.0, &python, "plot_errors_max = 2", "").await;
        let all = farm.all_plots();
        // Before the fault the FUSE plot answers: its absence later is the fault's doing.
        let before = challenges_where(1000, 1, |c| !fuse_expected(c).is_empty());
        farm.farmer.ask_exact(&farm.harvester, farm.metrics_port, &before, &all).await;

        farm.fuse.set_mode("eio");
        let during = challenges_where(1100, 6, |c| !fuse_expected(c).is_empty());
        let healthy = farm.healthy.clone();
        // One challenge at a time: sent together, their lookups of the FUSE plot can share one
        // (failing) block read, and the plot would meet fewer errors than it has lookups.
        for c in &during {
            let one = std::slice::from_ref(c);
            farm.farmer.ask_exact(&farm.harvester, farm.metrics_port, one, &healthy).await;
        }
        let eio_reads = farm.fuse.reads("eio");
        assert!(eio_reads >= 2, "only {eio_reads} reads met EIO: the fault did not reach them");

        // The failures name the plot and its disk; after plot_errors_max it is quarantined.
        let path = farm.fuse_plot.display().to_string();
        let disk = farm.fuse_disk.clone();
        let line = wait_for_log(&farm.harvester, "a lookup failure of the FUSE plot", |l| {
            l.contains("lookup failed") && l.contains(&path) && l.contains(&disk)
        });
        assert!(line.contains("I/O error: 5"), "the cause, EIO: {line}");
        wait_for_log(&farm.harvester, "the FUSE plot's quarantine", |l| {
            l.contains("plot quarantined") && l.contains(&path)
        });
        let port = farm.metrics_port;
        wait_for_metric(port, &farm.harvester, "harvester_plots{state=\"quarantined\"}", |v| {
            v >= 1.0
        });
        wait_for_metric(port, &farm.harvester, "harvester_plots{state=\"served\"}", |v| v == 2.0);
        let errors = format!("harvester_read_errors_total{{disk=\"{disk}\"}}");
        wait_for_metric(port, &farm.harvester, &errors, |v| v >= 2.0);

        // Quarantined means left alone: later challenges read nothing from the FUSE disk.
        let reads = farm.fuse.reads("");
        let after = challenges_where(1200, 3, |c| !fuse_expected(c).is_empty());
        farm.farmer.ask_exact(&farm.harvester, farm.metrics_port, &after, &healthy).await;
        assert_eq!(farm.fuse.reads(""), reads, "the quarantined plot was read again");
        farm.stop();
    });
}

#[test]
fn fuse_hang_times_out_degrades_the_disk_and_recovers() {
    let Some(python) = fuse_python("fuse_hang_times_out_degrades_the_disk_and_recovers") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("faults-hang");
    let deadline = Duration::from_secs(3);
    let prompt = Duration::from_secs(2); // well below the deadline
    runtime().block_on(async {
        let engine = "lookup_deadline_seconds = 3\nproof_deadline_seconds = 3\n\
                      read_stuck_after_seconds = 1";
        let mut farm = FuseFarm::start(&tmp.0, &python, engine, "").await;
        let (port, all, healthy) = (farm.metrics_port, farm.all_plots(), farm.healthy.clone());
        let disk = farm.fuse_disk.clone();
        let degraded = format!("harvester_disk_degraded{{disk=\"{disk}\"}}");
        let timed_out = format!("harvester_lookup_jobs_timed_out_total{{disk=\"{disk}\"}}");
        let both = |c: &Bytes32| {
            !fuse_expected(c).is_empty() && !expected_qualities_of(&healthy, c).is_empty()
        };
        let before = challenges_where(2000, 1, both);
        farm.farmer.ask_exact(&farm.harvester, port, &before, &all).await;
        assert_eq!(metric(&scrape(port), &degraded), Some(0.0), "healthy at the start");

        // A hung read: the healthy disk answers at once, the hung one when it is found stuck.
        farm.fuse.set_mode("hang");
        let hung = challenges_where(2100, 1, both)[0];
        let want = expected_qualities_of(&healthy, &hung);
        let sent = Instant::now();
        farm.farmer.challenge(&hung).await;
        let took = farm.farmer.until_qualities(&farm.harvester, &hung, &want).await;
        assert!(took < prompt, "the healthy plots answered after {took:?}, behind the hung disk");
        farm.fuse.wait_reads("hang", 1);
        while metric(&scrape(port), "harvester_challenges_in_flight") != Some(0.0) {
            assert!(
                sent.elapsed() < deadline * 2,
                "the challenge on the hung disk did not end at its {deadline:?} deadline (still \
                 in flight after {:?}); log:\n{}",
                sent.elapsed(),
                tail(&farm.harvester)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let done = sent.elapsed();
        // It ends when the disk is found stuck (a read out for read_stuck_after, 1 s, with
        // nothing completed), not at its deadline: the farmer is not held up for a dead disk.
        assert!(
            done >= Duration::from_secs(1) && done < deadline,
            "the challenge ended after {done:?}: not when the disk was found stuck"
        );
        wait_for_metric(port, &farm.harvester, &degraded, |v| v == 1.0);
        wait_for_log(&farm.harvester, "the degraded disk", |l| {
            l.contains("disk degraded") && l.contains(&disk)
        });
        wait_for_metric(port, &farm.harvester, &timed_out, |v| v >= 1.0);
        wait_for_log(&farm.harvester, "the timed-out job", |l| {
            l.contains("lookup deadline passed") && l.contains(&disk)
        });

        // While degraded the disk takes no work: a new challenge ends at once, answered by
        // the healthy plots.
        let next = challenges_where(2200, 1, both)[0];
        let want = expected_qualities_of(&healthy, &next);
        let sent = Instant::now();
        farm.farmer.challenge(&next).await;
        let took = farm.farmer.until_qualities(&farm.harvester, &next, &want).await;
        assert!(took < prompt, "healthy answers took {took:?} while the other disk is degraded");
        wait_for_metric(port, &farm.harvester, "harvester_challenges_in_flight", |v| v == 0.0);
        assert!(sent.elapsed() < prompt, "a degraded disk held a challenge {:?}", sent.elapsed());
        farm.farmer.settle(&farm.harvester, port).await;
        farm.farmer.assert_exact(&[hung, next], &healthy);

        // The disk comes back: a probe read heals it, and the FUSE plot answers again.
        farm.fuse.set_mode("ok");
        wait_for_metric(port, &farm.harvester, &degraded, |v| v == 0.0);
        wait_for_log(&farm.harvester, "the recovery", |l| {
            l.contains("disk recovered") && l.contains(&disk)
        });
        let after = challenges_where(2300, 2, |c| !fuse_expected(c).is_empty());
        farm.farmer.ask_exact(&farm.harvester, port, &after, &all).await;
        farm.stop();
    });
}

#[test]
fn fuse_vanish_removes_the_plots_of_that_disk_only() {
    let Some(python) = fuse_python("fuse_vanish_removes_the_plots_of_that_disk_only") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("faults-vanish");
    runtime().block_on(async {
        let mut farm = FuseFarm::start(&tmp.0, &python, "", "refresh_interval_seconds = 1").await;
        let (port, all, healthy) = (farm.metrics_port, farm.all_plots(), farm.healthy.clone());
        let before = challenges_where(3000, 1, |c| !fuse_expected(c).is_empty());
        farm.farmer.ask_exact(&farm.harvester, port, &before, &all).await;
        let active = format!("harvester_plots_active{{disk=\"{}\"}}", farm.fuse_disk);
        assert_eq!(metric(&scrape(port), &active), Some(1.0), "the FUSE disk serves its plot");

        // The disk vanishes: every access to the mount fails with ENOTCONN.
        farm.fuse.kill();
        // (Attributes may still come from the kernel's cache; opening asks the dead daemon.)
        let err = std::fs::File::open(&farm.fuse_plot).expect_err("the mount is gone");
        assert_eq!(err.raw_os_error(), Some(107), "ENOTCONN expected, got {err}");
        let mountpoint = farm.fuse.mountpoint.display().to_string();
        wait_for_log(&farm.harvester, "the refresh failing to read the mount", |l| {
            l.contains(&mountpoint) && l.contains("cannot read plot folder")
        });
        wait_for_metric(port, &farm.harvester, "harvester_plots{state=\"served\"}", |v| v == 2.0);
        wait_for_metric(port, &farm.harvester, &active, |v| v == 0.0);
        wait_for_log(&farm.harvester, "the removal", |l| {
            l.contains("plots changed") && l.contains("removed=1")
        });

        // The other disk keeps answering every challenge exactly.
        let after = challenges_where(3100, 4, |c| !fuse_expected(c).is_empty());
        farm.farmer.ask_exact(&farm.harvester, port, &after, &healthy).await;
        farm.stop();
    });
}

#[test]
fn plot_truncated_deleted_replaced_while_served() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = TempDir::new("faults-files");
    let certs = tmp.0.join("certs");
    make_certs(&certs);
    let farm_dir = tmp.0.join("farm");
    std::fs::create_dir_all(&farm_dir).expect("farm dir");
    // Copies, never links: the fixtures must survive the truncation.
    let copy = |fixture: &str, name: &str| {
        let target = farm_dir.join(name);
        std::fs::copy(fixtures().join(fixture), &target).expect("plot copied");
        target
    };
    let truncated = copy("plots/k18-og-a.plot", "a.plot");
    let deleted = copy("keysfile/k18-kf-a.plot", "k18-kf-a.plot"); // the keys file's name
    let replaced = copy("plots/k19-og-a.plot", "c.plot");
    let staged = copy("plots/k18-og-b.plot", "c.plot.new"); // not a plot name: not served
    let source = |p: &str| fixtures().join(p);
    let (src_a, src_kf) = (source("plots/k18-og-a.plot"), source("keysfile/k18-kf-a.plot"));
    let (src_c, src_new) = (source("plots/k19-og-a.plot"), source("plots/k18-og-b.plot"));
    let everything = vec![src_a.clone(), src_kf.clone(), src_c.clone(), src_new.clone()];
    runtime().block_on(async {
        let ScriptedFarm { farmer: scripted, metrics_port, mut harvester } = scripted_farm(
            &tmp.0,
            &certs,
            std::slice::from_ref(&farm_dir),
            true,
            &[("plots", "refresh_interval_seconds = 1")],
        )
        .await;
        let mut farmer = Farmer::connect(&scripted, &harvester, metrics_port).await;
        let port = metrics_port;
        wait_for_metric(port, &harvester, "harvester_plots{state=\"served\"}", |v| v == 3.0);

        // Before: every plot answers; remember the qualities of the two that go away.
        let of = |p: &PathBuf, c: &Bytes32| expected_qualities_of(std::slice::from_ref(p), c);
        let base =
            challenges_where(4000, 6, |c| !of(&src_a, c).is_empty() || !of(&src_kf, c).is_empty());
        let three = vec![src_a.clone(), src_kf.clone(), src_c.clone()];
        farmer.ask_exact(&harvester, port, &base, &three).await;
        let pairs = |p: &PathBuf| -> Vec<(Bytes32, Bytes32)> {
            base.iter().flat_map(|c| of(p, c).into_iter().map(move |q| (*c, q))).collect()
        };
        let (of_a, of_kf) = (pairs(&src_a), pairs(&src_kf));
        assert!(!of_a.is_empty() && !of_kf.is_empty(), "pick challenges with qualities");

        // (a) Truncated in place: its reads hit the end of the file. Its proofs are valid or
        // refused, never wrong, and the others answer in full.
        let file = std::fs::OpenOptions::new().write(true).open(&truncated).expect("open");
        file.set_len(file.metadata().expect("size").len() / 2).expect("truncate");
        drop(file);
        farmer.ask_proofs(&harvester, &of_a).await;
        let during = challenges_where(4100, 4, |_| true);
        let rest = vec![src_kf.clone(), src_c.clone()];
        farmer.ask_within(&harvester, port, &during, &rest, &everything).await;
        let name = truncated.display().to_string();
        wait_for_log(&harvester, "a failure naming the truncated plot", |l| {
            l.contains(&name) && (l.contains("lookup failed") || l.contains("plot quarantined"))
        });
        wait_for_metric(port, &harvester, "harvester_plots{state=\"served\"}", |v| v == 2.0);
        let refused = farmer.ask_proofs(&harvester, &of_a).await;
        assert_eq!(refused, of_a.len(), "a plot no longer served still gave proofs");

        // (b) Deleted: its open file still reads until the refresh drops it; after that its
        // qualities are refused.
        std::fs::remove_file(&deleted).expect("delete");
        farmer.ask_proofs(&harvester, &of_kf).await;
        wait_for_metric(port, &harvester, "harvester_plots{state=\"served\"}", |v| v == 1.0);
        let refused = farmer.ask_proofs(&harvester, &of_kf).await;
        assert_eq!(refused, of_kf.len(), "a deleted plot still gave proofs after the refresh");
        let during = challenges_where(4200, 3, |_| true);
        farmer.ask_exact(&harvester, port, &during, std::slice::from_ref(&src_c)).await;

        // (c) Replaced by a rename: the new plot is served after a refresh, the old one not.
        let replacements = |log: &str| {
            log.lines().filter(|l| l.contains("plots changed") && l.contains("added=1")).count()
        };
        let before = replacements(&harvester.log());
        std::fs::rename(&staged, &replaced).expect("rename");
        // Challenges asked while the refresh notices get the old plot's qualities or the new
        // one's, nothing else.
        let during = challenges_where(4300, 2, |_| true);
        let both = vec![src_c.clone(), src_new.clone()];
        farmer.ask_within(&harvester, port, &during, &[], &both).await;
        wait_for_log(&harvester, "the refresh serving the replacement", |_| {
            replacements(&harvester.log()) > before
        });
        let last = challenges_where(4400, 3, |c| !of(&src_new, c).is_empty());
        farmer.ask_exact(&harvester, port, &last, std::slice::from_ref(&src_new)).await;
        let proofs: Vec<(Bytes32, Bytes32)> = last
            .into_iter()
            .flat_map(|c| of(&src_new, &c).into_iter().map(move |q| (c, q)))
            .collect();
        let refused = farmer.ask_proofs(&harvester, &proofs).await;
        assert_eq!(refused, 0, "the replacement's proofs were refused; log:\n{}", tail(&harvester));

        assert!(harvester.child.try_wait().expect("wait").is_none(), "the daemon died");
        drop(farmer);
        let status = harvester.terminate(WAIT);
        assert!(status.success(), "exit {status}; log:\n{}", tail(&harvester));
    });
}

// ---- The FUSE farm: a healthy folder and a FUSE folder, one plot each side ----

/// The daemon serving a regular folder (links to two fixture plots) and a FUSE mount (one
/// other fixture plot), with a farmer that has done its handshake.
struct FuseFarm {
    /// Dropped before the daemon: a daemon read hung in FUSE would hold the dying daemon in
    /// the kernel until the FUSE daemon answers or dies.
    fuse: FaultFs,
    harvester: Proc,
    farmer: Farmer,
    metrics_port: u16,
    /// The FUSE plot, as the daemon sees it (under the mount point).
    fuse_plot: PathBuf,
    /// Its disk: `dev-MAJ:MIN` of the mount.
    fuse_disk: String,
    /// Sources of the plots in the healthy folder.
    healthy: Vec<PathBuf>,
    /// Keeps the farmer's listening socket open.
    _listener: ScriptedFarmer,
}

impl FuseFarm {
    async fn start(dir: &Path, python: &Path, engine: &str, plots: &str) -> FuseFarm {
        let certs = dir.join("certs");
        make_certs(&certs);
        let healthy =
            vec![fixtures().join("plots/k18-og-a.plot"), fixtures().join("plots/k19-og-a.plot")];
        let healthy_dir = dir.join("healthy");
        let fuse_source = dir.join("fuse-source");
        for (folder, plots) in
            [(&healthy_dir, healthy.clone()), (&fuse_source, vec![fuse_fixture()])]
        {
            std::fs::create_dir_all(folder).expect("plot folder");
            for plot in plots {
                let name = plot.file_name().expect("file name");
                std::os::unix::fs::symlink(&plot, folder.join(name)).expect("link");
            }
        }
        let fuse = FaultFs::mount(python, &fuse_source, dir);
        let fuse_plot = fuse.mountpoint.join(fuse_fixture().file_name().expect("name"));
        let fuse_disk = disk_io::device::disk_of(&fuse_plot).expect("disk of the mount").key;
        assert!(fuse_disk.starts_with("dev-"), "a FUSE mount has no block device: {fuse_disk}");

        let ScriptedFarm { farmer: listener, metrics_port, harvester } = scripted_farm(
            dir,
            &certs,
            &[healthy_dir, fuse.mountpoint.clone()],
            false,
            &[("engine", engine), ("plots", plots)],
        )
        .await;
        let farmer = Farmer::connect(&listener, &harvester, metrics_port).await;
        wait_for_metric(metrics_port, &harvester, "harvester_plots{state=\"served\"}", |v| {
            v == 3.0
        });
        FuseFarm {
            fuse,
            harvester,
            farmer,
            metrics_port,
            fuse_plot,
            fuse_disk,
            healthy,
            _listener: listener,
        }
    }

    fn all_plots(&self) -> Vec<PathBuf> {
        let mut all = self.healthy.clone();
        all.push(fuse_fixture());
        all
    }

    /// The daemon is still running, and stops cleanly on SIGTERM.
    fn stop(&mut self) {
        let alive = self.harvester.child.try_wait().expect("wait").is_none();
        assert!(alive, "the daemon died; log:\n{}", tail(&self.harvester));
        let status = self.harvester.terminate(WAIT);
        assert!(status.success(), "exit {status}; log:\n{}", tail(&self.harvester));
    }
}

/// The plot behind the FUSE mount; the healthy folder holds other plot ids.
fn fuse_fixture() -> PathBuf {
    fixtures().join("plots/k18-og-b.plot")
}

fn fuse_expected(challenge: &Bytes32) -> BTreeSet<Bytes32> {
    expected_qualities_of(&[fuse_fixture()], challenge)
}

// ---- scripts/faultfs.py ----

/// A mounted `scripts/faultfs.py`. Dropping it kills the FUSE daemon and detaches the mount.
struct FaultFs {
    child: Child,
    mountpoint: PathBuf,
    mode_file: PathBuf,
    /// One line per read: mode, path, offset, length.
    reads_log: PathBuf,
    /// The FUSE daemon's stdout and stderr.
    output: PathBuf,
}

impl FaultFs {
    /// Mounts a read-only view of `source` at `dir/fuse`, in mode `ok`.
    fn mount(python: &Path, source: &Path, dir: &Path) -> FaultFs {
        let mountpoint = dir.join("fuse");
        std::fs::create_dir_all(&mountpoint).expect("mount point");
        let (mode_file, reads_log, output) =
            (dir.join("fuse-mode"), dir.join("fuse-reads.log"), dir.join("fuse-output.log"));
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
            .arg("--log")
            .arg(&reads_log)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output file"))
            .stderr(out)
            .spawn()
            .expect("faultfs.py starts");
        let mut fs = FaultFs { child, mountpoint, mode_file, reads_log, output };
        // Mounted when the mount point's device differs from its parent's.
        let parent = std::fs::metadata(dir).expect("dir").dev();
        let start = Instant::now();
        while std::fs::metadata(&fs.mountpoint).map(|m| m.dev()).unwrap_or(parent) == parent {
            if let Some(status) = fs.child.try_wait().expect("wait") {
                panic!("faultfs.py exited ({status}):\n{}", fs.output());
            }
            assert!(start.elapsed() < WAIT, "faultfs.py did not mount:\n{}", fs.output());
            std::thread::sleep(Duration::from_millis(20));
        }
        fs
    }

    /// Sets the mode of every later read (`ok`, `eio`, `hang`, `delay:MS`). Written by rename,
    /// so a read never sees a half-written mode.
    fn set_mode(&self, mode: &str) {
        let tmp = self.mode_file.with_extension("new");
        std::fs::write(&tmp, format!("{mode}\n")).expect("mode written");
        std::fs::rename(&tmp, &self.mode_file).expect("mode renamed");
    }

    /// Reads logged so far whose mode starts with `mode` ("" counts every read; a hung read
    /// counts once as `hang` and once with the mode it ended with).
    fn reads(&self, mode: &str) -> usize {
        let log = std::fs::read_to_string(&self.reads_log).unwrap_or_default();
        log.lines().filter(|l| l.starts_with(mode)).count()
    }

    fn wait_reads(&self, mode: &str, at_least: usize) {
        let start = Instant::now();
        while self.reads(mode) < at_least {
            assert!(start.elapsed() < WAIT, "no {at_least} {mode} reads reached faultfs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the disk vanishes; the mount stays, every access fails with ENOTCONN.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // Killing the daemon first fails every read still waiting in FUSE (ENOTCONN), so
        // nothing stays stuck on the mount; then the mount is detached even while open.
        self.kill();
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

/// The Python that runs `scripts/faultfs.py`, or None (with the reason printed) when this
/// machine cannot run the FUSE rows: not root, no `/dev/fuse`, or no fusepy.
fn fuse_python(test: &str) -> Option<PathBuf> {
    let reason = if effective_uid() != Some(0) {
        "not running as root (mounting FUSE needs it)".to_string()
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing".to_string()
    } else {
        // Debian's python3-fusepy installs for the system Python, which may not be first on
        // PATH; its module is `fusepy`, the PyPI one's `fuse`.
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
            None => "python3 cannot import fusepy (Debian: apt-get install fuse3 \
                     python3-fusepy)"
                .to_string(),
        }
    };
    test_support::facility_missing(test, &reason);
    None
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// ---- The scripted farmer's side of the conversation ----

/// A farmer connection that files every message: qualities by challenge, replies by request
/// id. Any other message fails the test.
struct Farmer {
    peer: Peer,
    metrics_port: u16,
    qualities: BTreeMap<Bytes32, BTreeSet<Bytes32>>,
    replies: HashMap<u16, Body>,
    challenges_sent: usize,
}

impl Farmer {
    /// Accepts the daemon's connection and sends the handshake with the fixture pool keys.
    async fn connect(listener: &ScriptedFarmer, harvester: &Proc, metrics_port: u16) -> Farmer {
        let peer = tokio::select! {
            peer = listener.accept(WAIT) => peer,
            () = exited(harvester) => panic!("the daemon exited; log:\n{}", tail(harvester)),
        };
        let mut farmer = Farmer {
            peer,
            metrics_port,
            qualities: BTreeMap::new(),
            replies: HashMap::new(),
            challenges_sent: 0,
        };
        let handshake = Body::HarvesterHandshake { pool_pubkeys: pool_keys() };
        farmer.peer.send(Message { id: None, body: handshake }).await;
        farmer
    }

    async fn challenge(&mut self, challenge: &Bytes32) {
        let body = Body::NewChallenge { challenge_hash: *challenge };
        self.peer.send(Message { id: None, body }).await;
        self.challenges_sent += 1;
    }

    /// Receives one message and files it; false if none came within `timeout`.
    async fn receive(&mut self, harvester: &Proc, timeout: Duration) -> bool {
        let Some(m) = self.peer.recv(timeout).await else { return false };
        match m.body {
            Body::ChallengeResponse { challenge_hash, quality, .. } => {
                let fresh = self.qualities.entry(challenge_hash).or_default().insert(quality);
                assert!(fresh, "quality {} announced twice", hex::encode(quality));
            }
            body => {
                let Some(id) = m.id else {
                    panic!("unrequested message {body:?}; log:\n{}", tail(harvester))
                };
                assert!(self.replies.insert(id, body).is_none(), "request {id} answered twice");
            }
        }
        true
    }

    /// Receives until `challenge` has at least the qualities `want`; returns how long it took.
    async fn until_qualities(
        &mut self,
        harvester: &Proc,
        challenge: &Bytes32,
        want: &BTreeSet<Bytes32>,
    ) -> Duration {
        let start = Instant::now();
        while !self.qualities.get(challenge).map_or(want.is_empty(), |got| got.is_superset(want)) {
            let left = WAIT.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero() && self.receive(harvester, left).await,
                "challenge {} never got its {} qualities (got {:?}); log:\n{}",
                hex::encode(challenge),
                want.len(),
                self.qualities.get(challenge).map(BTreeSet::len),
                tail(harvester)
            );
        }
        start.elapsed()
    }

    /// Waits until the daemon has finished every challenge sent (their qualities are queued
    /// for the writer by then), then receives everything up to a barrier request's answer.
    async fn settle(&mut self, harvester: &Proc, port: u16) {
        let sent = self.challenges_sent as f64;
        wait_for_metric(port, harvester, "harvester_challenges_total", |v| v == sent);
        wait_for_metric(port, harvester, "harvester_challenges_in_flight", |v| v == 0.0);
        let id = self.request(Body::RequestProofOfSpace { quality: BARRIER_QUALITY }).await;
        match self.reply(harvester, id).await {
            Body::Error { code: ErrorCode::UnknownQuality, .. } => {}
            other => panic!("the barrier request got {other:?}"),
        }
    }

    async fn request(&mut self, body: Body) -> u16 {
        self.peer.request(body).await
    }

    async fn reply(&mut self, harvester: &Proc, id: u16) -> Body {
        let start = Instant::now();
        loop {
            if let Some(body) = self.replies.remove(&id) {
                return body;
            }
            let left = WAIT.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero() && self.receive(harvester, left).await,
                "request {id} unanswered; log:\n{}",
                tail(harvester)
            );
        }
    }

    /// Sends `challenges`, waits for the qualities of `plots` in each, and checks that each got
    /// exactly those (no more arrive before the barrier).
    async fn ask_exact(
        &mut self,
        harvester: &Proc,
        port: u16,
        challenges: &[Bytes32],
        plots: &[PathBuf],
    ) {
        self.ask_within(harvester, port, challenges, plots, plots).await;
    }

    /// Sends `challenges`; each must get at least the qualities of `required` and nothing
    /// outside those of `allowed`. Waits for the end of the answers.
    async fn ask_within(
        &mut self,
        harvester: &Proc,
        port: u16,
        challenges: &[Bytes32],
        required: &[PathBuf],
        allowed: &[PathBuf],
    ) {
        assert_eq!(port, self.metrics_port);
        for c in challenges {
            assert!(!self.qualities.contains_key(c), "challenge {} asked twice", hex::encode(c));
            self.challenge(c).await;
        }
        for c in challenges {
            let want = expected_qualities_of(required, c);
            self.until_qualities(harvester, c, &want).await;
        }
        self.settle(harvester, port).await;
        for c in challenges {
            let got = self.qualities.get(c).cloned().unwrap_or_default();
            let allowed = expected_qualities_of(allowed, c);
            let wrong: Vec<String> = got.difference(&allowed).map(hex::encode).collect();
            assert!(
                wrong.is_empty(),
                "challenge {}: qualities of no allowed plot: {wrong:?}; log:\n{}",
                hex::encode(c),
                tail(harvester)
            );
        }
    }

    /// Checks that the challenges already asked got exactly the qualities of `plots`.
    fn assert_exact(&self, challenges: &[Bytes32], plots: &[PathBuf]) {
        for c in challenges {
            let got = self.qualities.get(c).cloned().unwrap_or_default();
            assert_eq!(got, expected_qualities_of(plots, c), "challenge {}", hex::encode(c));
        }
    }

    /// Asks the proof of every (challenge, quality). Each answer is a proof that our verifier
    /// accepts with that quality, or an error saying the plot failed or went away (never a
    /// wrong proof, never another kind of error). Returns how many were refused.
    async fn ask_proofs(&mut self, harvester: &Proc, asked: &[(Bytes32, Bytes32)]) -> usize {
        let mut refused = 0;
        for (challenge, quality) in asked {
            let id = self.request(Body::RequestProofOfSpace { quality: *quality }).await;
            match self.reply(harvester, id).await {
                Body::RespondProofOfSpace { quality: q, proof } => {
                    assert_eq!(q, *quality, "the proof answers another quality");
                    assert_eq!(proof.challenge_hash, *challenge, "the proof of another challenge");
                    let id = plot_id(&proof.pool_pubkey, &proof.plot_pubkey);
                    let verdict = validate_proof(&id, proof.size, challenge, &proof.proof);
                    assert_eq!(verdict.ok(), Some(*quality), "a wrong proof left the daemon");
                }
                Body::Error { code, message, .. } => {
                    assert!(
                        matches!(code, ErrorCode::LookupFailed | ErrorCode::PlotUnavailable),
                        "proof request refused with {code:?}: {message}"
                    );
                    refused += 1;
                }
                other => panic!("a proof request got {other:?}"),
            }
        }
        refused
    }
}

// ---- Small helpers ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The first `n` challenges from `challenge(start)` on for which `pick` holds.
fn challenges_where(start: u32, n: usize, pick: impl Fn(&Bytes32) -> bool) -> Vec<Bytes32> {
    let found: Vec<Bytes32> =
        (start..start + 500).map(challenge).filter(|c| pick(c)).take(n).collect();
    assert_eq!(found.len(), n, "fewer than {n} fitting challenges from {start}");
    found
}

/// Resolves when `proc` has exited (polled).
async fn exited(proc: &Proc) {
    let pid = proc.child.id();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of the daemon's log, and where each of its threads waits (a shard thread
/// blocked in the kernel, e.g. in `request_wait_answer` on a hung FUSE read, shows here).
fn tail(proc: &Proc) -> String {
    let log = proc.log();
    let lines: Vec<&str> = log.lines().collect();
    let mut text = lines[lines.len().saturating_sub(60)..].join("\n");
    text.push_str("\nthreads (name, kernel wait channel):");
    let tasks = std::fs::read_dir(format!("/proc/{}/task", proc.child.id()));
    for task in tasks.into_iter().flatten().flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        text.push_str(&format!("\n  {} {}", read("comm").trim(), read("wchan").trim()));
    }
    text
}

/// `/metrics`, or "" while the endpoint does not listen yet.
fn scrape(port: u16) -> String {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(_) => http_get(port, "/metrics"),
        Err(_) => String::new(),
    }
}

/// Polls `/metrics` until the sample `name` satisfies `ok`; returns its value.
fn wait_for_metric(port: u16, proc: &Proc, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    loop {
        let text = scrape(port);
        if let Some(v) = metric(&text, name).filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "{name} never as expected (now {:?}); log:\n{}",
            metric(&text, name),
            tail(proc)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls the daemon's log until a line satisfies `ok`; returns the line.
fn wait_for_log(proc: &Proc, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = proc.log().lines().find(|l| ok(l)) {
            return line.to_string();
        }
        assert!(start.elapsed() < WAIT, "no log line for {what}; log:\n{}", tail(proc));
        std::thread::sleep(Duration::from_millis(50));
    }
}
