//! The CLI contract (`prove`, `verify`, `check`) end to end, against the reference oracle.

use std::path::PathBuf;
use std::process::Command;

use test_support::{fixtures, oracle_python, repo};

fn harvester() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harvester"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harvester-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A plot no test has seen (a fresh random id), compared with chiapos in both modes.
#[test]
fn prove_matches_chiapos_on_an_unseen_plot() {
    let dir = scratch("unseen");
    let id: [u8; 32] = std::array::from_fn(|i| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        (nanos >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(37)
    });
    let plot = dir.join("unseen.plot");
    let oracle = repo().join("scripts/oracle.py");
    let made = Command::new(oracle_python())
        .args([oracle.as_os_str(), "make-plot".as_ref(), "--out".as_ref(), plot.as_os_str()])
        .args(["--k", "18", "--id", &hex::encode(id)])
        .output()
        .expect("oracle runs");
    assert!(made.status.success(), "make-plot: {}", String::from_utf8_lossy(&made.stderr));
    let out = Command::new(oracle_python())
        .args([oracle.as_os_str(), "compare-prove".as_ref(), "--harvester".as_ref()])
        .arg(env!("CARGO_BIN_EXE_harvester"))
        .args(["--plots".as_ref(), plot.as_os_str(), "--challenges".as_ref(), "150".as_ref()])
        .output()
        .expect("oracle runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(totals["qualities"].as_u64().expect("count") > 50, "{totals}");
}

#[test]
fn verify_prints_the_quality_or_the_reason() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let entry = &manifest["plots"][0];
    let plot = fixtures().join(entry["path"].as_str().expect("path"));
    let dir = scratch("verify");
    let challenges = dir.join("challenges.txt");
    let lines: String =
        (0..20u32).map(|i| format!("{:064x}\n", u128::from(i) * 0x9e37_79b9_7f4a_7c15)).collect();
    std::fs::write(&challenges, lines).expect("write");
    let out = harvester()
        .arg("prove")
        .arg(&plot)
        .arg("--challenges-file")
        .arg(&challenges)
        .arg("--proofs")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let first = String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .next()
        .map(str::to_string)
        .expect("a proof among 20 challenges");
    let row: serde_json::Value = serde_json::from_str(&first).expect("json line");
    let (challenge, proof, quality) = (
        row["challenge"].as_str().expect("c"),
        row["proof"].as_str().expect("p"),
        row["quality"].as_str().expect("q"),
    );
    let id = entry["id"].as_str().expect("id");
    let k = entry["k"].to_string();
    let good = harvester()
        .args(["verify", "--id", id, "--k", &k, "--challenge", challenge, "--proof", proof])
        .output()
        .expect("runs");
    assert_eq!(good.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&good.stdout).trim(), quality);
    let mut bad = proof.to_string();
    bad.replace_range(0..1, if &proof[..1] == "0" { "1" } else { "0" });
    let rejected = harvester()
        .args(["verify", "--id", id, "--k", &k, "--challenge", challenge, "--proof", &bad])
        .output()
        .expect("runs");
    assert_eq!(rejected.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rejected.stdout).contains("invalid proof"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_bad_plots_and_exits_non_zero() {
    let good = harvester()
        .arg("check")
        .arg(fixtures().join("plots"))
        .args(["--challenges", "10"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{text}");
    assert!(text.contains("6 good, 0 bad"), "{text}");

    // A mismatched id, a truncated copy and a .plot2 file, beside a good plot.
    let dir = scratch("check");
    let source = fixtures().join("plots/k18-og-a.plot");
    std::fs::copy(&source, dir.join("good.plot")).expect("copy");
    let bytes = std::fs::read(&source).expect("read");
    std::fs::write(dir.join("truncated.plot"), &bytes[..bytes.len() / 2]).expect("write");
    std::fs::write(dir.join("new.plot2"), b"v2").expect("write");
    std::fs::copy(fixtures().join("mismatch/k18-mismatch.plot"), dir.join("mismatch.plot"))
        .expect("copy");
    let out =
        harvester().arg("check").arg(&dir).args(["--challenges", "5"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 good, 3 bad"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("BAD")
            && l.contains("truncated.plot")
            && l.contains("truncated")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("BAD") && l.contains("mismatch.plot") && l.contains("id")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("BAD")
            && l.contains("new.plot2")
            && l.contains("not supported")),
        "{text}"
    );
}

#[test]
fn check_takes_the_keys_file_for_plots_without_a_memo() {
    let keysfile = fixtures().join("keysfile");
    let run = |keys: Option<PathBuf>| {
        let mut cmd = harvester();
        cmd.arg("check").arg(&keysfile).args(["--challenges", "5"]);
        if let Some(k) = keys {
            cmd.arg("--keys-file").arg(k);
        }
        cmd.output().expect("runs")
    };
    // Without the keys file the empty memo gives no keys.
    let out = run(None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("memo is 0 bytes"), "{text}");
    // With it, the id is checked against sha256(pool key ++ plot key) of the entry.
    let out = run(Some(fixtures().join("keys.toml")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("plot id matches the keys file entry"), "{text}");
    // An entry whose keys give another id is reported.
    let dir = scratch("keys-file");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let pool = manifest["plots"][0]["pool_public_key"].as_str().expect("pool key");
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        format!(
            "[[plot]]\nfile = \"k18-kf-a.plot\"\nplot_secret_key = \"{}\"\npool_public_key = \"{pool}\"\n",
            "11".repeat(32)
        ),
    )
    .expect("write");
    let out = run(Some(wrong));
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the keys file entry gives plot id"), "{text}");
}

/// `check --chia-root` checks the plot directories of the chia root's config.yaml (relative
/// to the root, anchors followed), alone or beside paths; a root without directories is an
/// error naming the key.
#[test]
fn check_takes_the_plot_directories_of_a_chia_root() {
    let dir = scratch("chia-root");
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    std::os::unix::fs::symlink(fixtures().join("plots"), dir.join("plots")).expect("link");
    let yaml = "selected_network: &net mainnet\nharvester:\n  selected_network: *net\n  \
                farmer_peers:\n    - host: localhost\n      port: 8447\n  \
                plot_directories:\n    - plots\n  unused: {a: 1}\n";
    std::fs::write(dir.join("config/config.yaml"), yaml).expect("config.yaml");
    let out = harvester()
        .arg("check")
        .args(["--challenges", "3", "--chia-root"])
        .arg(&dir)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("6 good, 0 bad"), "{text}");

    let empty = yaml.replace("  plot_directories:\n    - plots\n", "");
    std::fs::write(dir.join("config/config.yaml"), empty).expect("config.yaml");
    let out = harvester().args(["check", "--chia-root"]).arg(&dir).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("plot_directories"), "{err}");
}

/// A folder holding one plot and a link to its parent (issue 11): `check` checks the plot once.
/// It walks as the daemon does, each folder and each file once (by device and inode), so
/// neither the link nor naming the plot again checks it twice (the tools' own walk followed
/// the link until the kernel's 40-link limit: 41 checks of one plot).
#[test]
fn check_checks_a_plot_once_through_a_link_to_its_parent() {
    let dir = scratch("link-to-parent");
    let folder = dir.join("plots");
    std::fs::create_dir_all(&folder).expect("plot folder");
    std::os::unix::fs::symlink(fixtures().join("plots/k18-og-a.plot"), folder.join("a.plot"))
        .expect("link to a plot");
    std::os::unix::fs::symlink("..", folder.join("up")).expect("link to the parent");
    let out = harvester()
        .arg("check")
        .arg(&folder)
        .arg(folder.join("up/plots/a.plot"))
        .args(["--challenges", "2"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 plots checked: 1 good, 0 bad"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK")).count(), 1, "{text}");
}

/// A path `check` cannot read fails the check, named with the reason, beside the plots it did
/// check.
#[test]
fn check_fails_on_a_path_it_cannot_read() {
    let missing = scratch("missing").join("missing.plot");
    let out = harvester()
        .arg("check")
        .arg(fixtures().join("plots/k18-og-a.plot"))
        .arg(&missing)
        .args(["--challenges", "2"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(missing.parent().expect("scratch dir"));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 plots checked: 1 good, 0 bad"), "{text}");
    let line = format!("  unchecked: {}: cannot read: ", missing.display());
    assert!(text.lines().any(|l| l.starts_with(&line)), "{text}");
}
