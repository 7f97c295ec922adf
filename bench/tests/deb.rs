//! The Debian package (`scripts/build-deb.sh`, cargo-deb): built, installed with `dpkg -i` on
//! this machine, checked (the binary, both systemd units through `systemd-analyze verify` and
//! their hardening, the conffile, the service user, the Prometheus rules and the Grafana
//! dashboard), then removed (`dpkg -r`: only the conffile stays) and purged (`dpkg -P`: nothing
//! stays). And, without root, the default configuration against the code's defaults.
//!
//! The package test needs root, dpkg and systemd-analyze (Debian `systemd`, which `.ci/run`
//! installs when it is missing); without them it skips (`test_support::facility_missing`: it
//! fails in CI instead). It takes about a minute when the release build is fresh, a few more
//! for a release build from nothing. A guard purges the package also when the test fails, and an
//! flock(1) lock keeps two runs on one machine (other checkouts) from mixing their dpkg steps.
//! Every command has a timeout.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harvester::config::Config;

const PACKAGE: &str = "harvester";
/// The build: a release build of the harvester from nothing takes minutes on 2 cores.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// Any other single command (dpkg, systemd-analyze, the binary).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Machine-wide: one package test at a time, whichever checkout it runs from.
const LOCK_FILE: &str = "/run/lock/harvester-deb-test.lock";

const UNITS: [&str; 2] = ["harvester.service", "harvester-chia.service"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const CONFFILE: &str = "/etc/harvester/harvester.toml";
/// Installed file -> its source in the repository.
const SHARED: [(&str, &str); 2] = [
    (
        "/usr/share/harvester/prometheus/harvester-rules.yml",
        "deploy/prometheus/harvester-rules.yml",
    ),
    ("/usr/share/harvester/grafana/harvester.json", "deploy/grafana/harvester.json"),
];
/// Directives both units must carry, as `Key=value` lines.
const HARDENING: [&str; 22] = [
    "Restart=on-failure",
    "LimitNOFILE=1048576",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
];

fn repo() -> PathBuf {
    test_support::repo()
}

/// `program args` under timeout(1); the output, whatever the exit status.
fn run_for(limit: Duration, program: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let output = Command::new("timeout")
        .args(["--kill-after=10", &limit.as_secs().to_string(), program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if output.status.code() == Some(124) || output.status.code() == Some(137) {
        panic!(
            "{program} {args:?} timed out after {:?}\nstderr: {}",
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// `program args`, which must succeed; its stdout.
fn run_ok(limit: Duration, program: &str, args: &[&str]) -> String {
    let output = run_for(limit, program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// dpkg knows the package (installed, or removed with its conffiles left).
fn dpkg_status() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Holds the machine-wide lock (flock(1) on [`LOCK_FILE`]) until dropped or until this
/// process dies: the lock is the child's, which exits when its stdin closes.
struct MachineLock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl MachineLock {
    fn take() -> MachineLock {
        let mut child = Command::new("flock")
            .args(["-w", "1800", LOCK_FILE, "-c", "echo locked; exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("flock");
        assert_eq!(line.trim(), "locked", "{LOCK_FILE}: not locked within 30 min");
        MachineLock { child, stdin }
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Purges the package when dropped (the test failed midway) unless disarmed.
struct Installed {
    armed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.armed && dpkg_status().is_some() {
            let out = run_for(STEP_TIMEOUT, "dpkg", &["-P", PACKAGE]);
            let _ = writeln!(
                std::io::stderr(),
                "cleanup: dpkg -P {PACKAGE}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn assert_gone(path: &str) {
    assert!(!Path::new(path).exists(), "{path} is still there");
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_deb_installs_verifies_and_purges_cleanly() {
    const TEST: &str = "deb::the_deb_installs_verifies_and_purges_cleanly";
    if !is_root() {
        return test_support::facility_missing(TEST, "dpkg -i needs root");
    }
    for tool in ["dpkg", "dpkg-deb", "flock", "timeout", "runuser", "systemd-analyze"] {
        if !have(tool) {
            return test_support::facility_missing(
                TEST,
                &format!("{tool} is missing (systemd-analyze: apt-get install systemd)"),
            );
        }
    }
    let started = Instant::now();
    let _lock = MachineLock::take();

    // Build.
    let script = repo().join("scripts/build-deb.sh");
    let stdout = run_ok(BUILD_TIMEOUT, script.to_str().unwrap(), &["--fast"]);
    let deb = stdout.lines().last().expect("build-deb.sh printed no path").trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "not a .deb: {deb:?}");
    let built = started.elapsed();
    let fields = run_ok(STEP_TIMEOUT, "dpkg-deb", &["-f", &deb, "Package", "Version", "Depends"]);
    assert!(fields.contains(&format!("Package: {PACKAGE}\n")), "{fields}");
    assert!(fields.contains(&format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"))), "{fields}");
    assert!(fields.contains("adduser"), "the postinst runs adduser: {fields}");

    // Install (over a leftover of an earlier run, purged first).
    if dpkg_status().is_some() {
        run_ok(STEP_TIMEOUT, "dpkg", &["-P", PACKAGE]);
    }
    let mut guard = Installed { armed: true };
    run_ok(STEP_TIMEOUT, "dpkg", &["-i", &deb]);
    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));

    // The binary, and both units' ExecStart as the CLI takes them.
    let version = run_ok(STEP_TIMEOUT, "/usr/bin/harvester", &["--version"]);
    assert_eq!(version.trim(), format!("harvester {}", env!("CARGO_PKG_VERSION")));
    let passwd = run_ok(STEP_TIMEOUT, "getent", &["passwd", "harvester"]);
    assert!(passwd.contains(":/usr/sbin/nologin"), "the service user: {passwd}");
    // As the service user, the default configuration is read and the daemon stops at the
    // certificates it names (none yet): arguments, configuration and permissions are right.
    let out = run_for(
        STEP_TIMEOUT,
        "runuser",
        &["-u", "harvester", "--", "/usr/bin/harvester", "run", "--config", CONFFILE],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/etc/harvester/certs/ca.crt"),
        "harvester run --config {CONFFILE}: {}: {stderr}",
        out.status
    );

    // The units: systemd's own check, then what they must (and must not) say.
    let unit_paths: Vec<String> = UNITS.iter().map(|u| format!("{UNIT_DIR}/{u}")).collect();
    let mut verify_args = vec!["verify"];
    verify_args.extend(unit_paths.iter().map(String::as_str));
    let out = run_for(STEP_TIMEOUT, "systemd-analyze", &verify_args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (unit, path) in UNITS.iter().zip(&unit_paths) {
        let text = read(path);
        assert_eq!(text, read(repo().join("deploy/systemd").join(unit)), "{path}");
        let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
        for directive in HARDENING {
            assert!(lines.contains(directive), "{unit}: no {directive}");
        }
        // io_uring must stay allowed: only deny lists, none naming it or its group.
        for line in text.lines().filter(|l| l.starts_with("SystemCallFilter=")) {
            let filter = &line["SystemCallFilter=".len()..];
            assert!(filter.starts_with('~'), "{unit}: an allow list could drop io_uring: {line}");
            assert!(!filter.contains("io_uring") && !filter.contains("@aio"), "{unit}: {line}");
        }
        assert!(!text.contains("\nPrivateNetwork="), "{unit}: it dials the farmer");
    }
    let main = read(&unit_paths[0]);
    assert!(main
        .contains("\nExecStart=/usr/bin/harvester run --config /etc/harvester/harvester.toml\n"));
    assert!(main.contains("\nUser=harvester\n"), "{main}");
    let chia = read(&unit_paths[1]);
    assert!(
        chia.contains("\nExecStart=/usr/bin/harvester run --chia-root /home/chia/.chia/mainnet\n")
    );
    assert!(chia.contains("\nUser=chia\n"), "{chia}");

    // The conffile and the shared files.
    let conffiles = run_ok(STEP_TIMEOUT, "dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(conffiles.contains(CONFFILE), "not a conffile: {conffiles}");
    assert_eq!(read(CONFFILE), read(repo().join("deploy/harvester.toml")));
    for (installed, source) in SHARED {
        assert_eq!(read(installed), read(repo().join(source)), "{installed}");
    }

    // Remove: everything but the conffile goes.
    run_ok(STEP_TIMEOUT, "dpkg", &["-r", PACKAGE]);
    assert_eq!(dpkg_status().as_deref(), Some("deinstall ok config-files"));
    assert_gone("/usr/bin/harvester");
    unit_paths.iter().for_each(|p| assert_gone(p));
    SHARED.iter().for_each(|(p, _)| assert_gone(p));
    assert_gone("/usr/share/harvester");
    assert!(Path::new(CONFFILE).is_file(), "dpkg -r keeps the conffile");

    // Purge: nothing stays (the system user does, as Debian keeps system users).
    run_ok(STEP_TIMEOUT, "dpkg", &["-P", PACKAGE]);
    guard.armed = false;
    assert_eq!(dpkg_status(), None);
    assert_gone("/etc/harvester");
    for unit in UNITS {
        assert_gone(&format!("/etc/systemd/system/{unit}"));
        assert_gone(&format!("/etc/systemd/system/multi-user.target.wants/{unit}"));
    }
    let _ = writeln!(
        std::io::stderr(),
        "deb: built in {built:?}, installed, checked, removed and purged in {:?}",
        started.elapsed()
    );
}

/// The shipped `/etc/harvester/harvester.toml` lists every key the daemon reads, each with
/// the daemon's default: uncommenting every key gives exactly `Config::default()`, and the file
/// as shipped (everything commented) parses too.
#[test]
fn the_default_configuration_lists_every_key_with_its_default() {
    let path = repo().join("deploy/harvester.toml");
    let text = read(&path);
    let shipped = Config::parse(&text, &path).expect("the shipped file parses");
    let defaults = format!("{:?}", Config::default());
    assert_eq!(format!("{shipped:?}"), defaults);

    // Examples without a default (optional keys, the [[disks]] override, the keys file's
    // entries) stay commented.
    const EXAMPLES: [&str; 7] = [
        "keys_file",
        "chia_activity_file",
        "name",
        "paths",
        "file",
        "plot_secret_key",
        "pool_public_key",
    ];
    let mut keys = BTreeSet::new();
    let uncommented: String = text
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else { return line.to_owned() };
            let Some((key, _)) = rest.split_once(" = ") else { return line.to_owned() };
            let is_key =
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !is_key || EXAMPLES.contains(&key) {
                return line.to_owned();
            }
            assert!(keys.insert(key.to_owned()), "{key} twice");
            rest.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let all = Config::parse(&uncommented, &path)
        .unwrap_or_else(|e| panic!("every key uncommented: {e}\n{uncommented}"));
    assert_eq!(format!("{all:?}"), defaults, "a key's value in the file is not its default");

    // Every field of the configuration (names in the Debug form) is in the file.
    let mut fields = BTreeSet::new();
    for word in defaults.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if let Some(name) = word.strip_suffix(':') {
            if name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && !name.is_empty() {
                fields.insert(name.to_owned());
            }
        }
    }
    let sections = ["farmer", "tls", "plots", "disks", "engine", "protocol", "metrics", "log"];
    for field in &fields {
        let listed = keys.contains(field)
            || EXAMPLES.contains(&field.as_str())
            || sections.contains(&field.as_str());
        assert!(listed, "the key {field} is not in {}", path.display());
    }
    for section in sections.iter().filter(|s| **s != "disks") {
        assert!(text.contains(&format!("\n[{section}]")), "no [{section}]");
    }
    assert!(text.contains("\n# [[disks]]\n"), "no [[disks]] example");
    assert!(keys.len() > 40, "only {} keys found", keys.len());
}
