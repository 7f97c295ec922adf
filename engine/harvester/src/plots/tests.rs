//! Plot manager tests on real files: the fixture plots (`test_support::fixtures()`, made by the
//! reference plotter, described by `manifest.json`) copied into temporary folders.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

use plot_format::keys::{aggregate_signatures, derive_path, key_gen, verify_aug, FARMER_SK_PATH};
use sha2::{Digest, Sha256};
use test_support::fixtures;

use super::*;

/// A folder under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir()
            .join(format!("harvester-plots-test-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One manifest entry.
struct Fixture {
    path: PathBuf,
    k: u8,
    id: [u8; 32],
    memo_kind: String,
    pool_public_key: Option<[u8; 48]>,
    pool_contract_puzzle_hash: Option<[u8; 32]>,
    plot_public_key: [u8; 48],
    bytes: u64,
}

fn fixture(name: &str) -> Fixture {
    let text = fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let plots = manifest["plots"].as_array().unwrap();
    let e = plots.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no fixture {name}"));
    let bytes = |v: &serde_json::Value| v.as_str().map(|s| hex::decode(s).unwrap());
    Fixture {
        path: fixtures().join(e["path"].as_str().unwrap()),
        k: e["k"].as_u64().unwrap() as u8,
        id: bytes(&e["id"]).unwrap().try_into().unwrap(),
        memo_kind: e["memo_kind"].as_str().unwrap().to_owned(),
        pool_public_key: bytes(&e["pool_public_key"]).map(|b| b.try_into().unwrap()),
        pool_contract_puzzle_hash: bytes(&e["pool_contract_puzzle_hash"])
            .map(|b| b.try_into().unwrap()),
        plot_public_key: bytes(&e["plot_public_key"]).unwrap().try_into().unwrap(),
        bytes: e["bytes"].as_u64().unwrap(),
    }
}

fn copy(name: &str, to: &Path) -> Fixture {
    let f = fixture(name);
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::copy(&f.path, to).unwrap();
    f
}

fn config(folders: &[&Path]) -> PlotsConfig {
    PlotsConfig {
        folders: folders.iter().map(|p| p.to_path_buf()).collect(),
        open_threads: 2,
        ..PlotsConfig::default()
    }
}

fn manager(folders: &[&Path]) -> PlotManager {
    PlotManager::new(config(folders)).unwrap()
}

fn state_of(m: &PlotManager, path: &Path) -> Option<PlotState> {
    m.states().into_iter().find(|(p, _)| p == path).map(|(_, s)| s)
}

fn counts(m: &PlotManager) -> [u64; 4] {
    let c = m.counts_by_state();
    let names: Vec<&str> = c.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["served", "duplicate", "quarantined", "no_keys"]);
    [c[0].1, c[1].1, c[2].1, c[3].1]
}

fn added_key(r: &Refresh, path: &Path) -> PlotKey {
    r.added
        .iter()
        .find(|a| a.info.path == path)
        .unwrap_or_else(|| panic!("{path:?} not added"))
        .info
        .key
}

/// Rewrites the file's modification time (same content).
fn touch(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

#[test]
fn first_refresh_serves_the_fixtures() {
    let tmp = TempDir::new("first");
    let names = ["k18-og-a", "k18-pc-a", "k19-og-a"];
    let fixtures: Vec<Fixture> =
        names.iter().map(|n| copy(n, &tmp.path().join(format!("{n}.plot")))).collect();
    fs::write(tmp.path().join("notes.txt"), b"not a plot").unwrap();
    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    assert_eq!(r.scanned_files, 3);
    assert_eq!(r.added.len(), 3);
    assert!(r.removed.is_empty() && r.problems.is_empty(), "{:?}", r.problems);
    let disk = disk_io::device::disk_of(tmp.path()).unwrap().key;
    for (name, f) in names.iter().zip(&fixtures) {
        let path = tmp.path().join(format!("{name}.plot"));
        let added = r.added.iter().find(|a| a.info.path == path).unwrap();
        let info = &added.info;
        assert_eq!(info.id, f.id, "{name}");
        assert_eq!(added.plot.id(), &f.id);
        assert_eq!(info.k, f.k);
        assert_eq!(info.plot_public_key, f.plot_public_key);
        assert_eq!(info.file_bytes, f.bytes);
        assert_eq!(info.disk, disk);
        assert_eq!(info.key_kind(), "memo");
        match (info.pool, f.memo_kind.as_str()) {
            (PoolKey::PublicKey(pk), "pool_public_key") => assert_eq!(Some(pk), f.pool_public_key),
            (PoolKey::ContractPuzzleHash(ph), "pool_contract") => {
                assert_eq!(Some(ph), f.pool_contract_puzzle_hash)
            }
            (pool, kind) => panic!("{name}: {pool:?} for memo kind {kind}"),
        }
        assert!(Arc::ptr_eq(m.get(info.key).unwrap(), info));
    }
    let keys: HashSet<PlotKey> = r.added.iter().map(|a| a.info.key).collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(m.served().count(), 3);
    assert_eq!(counts(&m), [3, 0, 0, 0]);
    assert!(m.states().iter().all(|(_, s)| *s == PlotState::Served));

    // Debug output never shows the memo's master secret key (nor the derived local key).
    let printed = format!("{r:?} {m:?} {:?}", m.served().collect::<Vec<_>>());
    for added in &r.added {
        let master = hex::encode(&added.plot.memo()[added.plot.memo().len() - 32..]);
        assert!(!printed.contains(&master), "master secret key leaked");
        let Signer::Memo(plot_keys) = &added.info.signer else { panic!("memo plot") };
        let local = hex::encode(plot_keys.local_secret_key().to_bytes().expose_secret());
        assert!(!printed.contains(&local), "local secret key leaked");
    }

    // Nothing changed: nothing to do.
    let again = m.refresh(true);
    assert!(again.added.is_empty() && again.removed.is_empty() && again.problems.is_empty());
    assert_eq!(again.scanned_files, 3);
}

#[test]
fn add_delete_and_replace() {
    let tmp = TempDir::new("churn");
    let a = tmp.path().join("a.plot");
    let b = tmp.path().join("sub/b.plot");
    copy("k18-og-a", &a);
    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    let key_a = added_key(&r, &a);

    let fb = copy("k18-og-b", &b);
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 1);
    let key_b = added_key(&r, &b);
    assert_eq!(r.added[0].info.id, fb.id);
    assert!(r.removed.is_empty());

    fs::remove_file(&a).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.removed, [key_a]);
    assert!(r.added.is_empty());
    assert!(m.get(key_a).is_none());

    // Another plot renamed over b.
    let staged = tmp.path().join("b.plot.tmp");
    let fc = copy("k18-pc-b", &staged);
    fs::rename(&staged, &b).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.removed, [key_b]);
    let key_c = added_key(&r, &b);
    assert!(key_c != key_a && key_c != key_b, "keys are never reused");
    assert_eq!(r.added[0].info.id, fc.id);
    assert_eq!(counts(&m), [1, 0, 0, 0]);

    // The same file rewritten in place (new mtime): a new key too.
    touch(&b, 1_000_000);
    let r = m.refresh(false);
    assert_eq!(r.removed, [key_c]);
    let key_d = added_key(&r, &b);
    assert!(key_d.0 > key_c.0);
}

#[test]
fn duplicates_are_served_once_and_promoted() {
    let tmp = TempDir::new("dup");
    let first = tmp.path().join("a/copy-1.plot");
    let second = tmp.path().join("b/copy-2.plot");
    let f = copy("k18-og-a", &second);
    copy("k18-og-a", &first);
    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 1);
    let key_first = added_key(&r, &first);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].0, second);
    assert!(r.problems[0].1.contains("duplicate of"), "{}", r.problems[0].1);
    assert_eq!(state_of(&m, &second), Some(PlotState::Duplicate { of: first.clone() }));
    assert_eq!(counts(&m), [1, 1, 0, 0]);

    // A third copy with a smaller path does not take over: the served copy is stable.
    let zeroth = tmp.path().join("0.plot");
    copy("k18-og-a", &zeroth);
    let r = m.refresh(false);
    assert!(r.added.is_empty() && r.removed.is_empty());
    assert_eq!(state_of(&m, &zeroth), Some(PlotState::Duplicate { of: first.clone() }));
    fs::remove_file(&zeroth).unwrap();
    m.refresh(false);

    fs::remove_file(&first).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.removed, [key_first]);
    assert_eq!(r.added.len(), 1);
    assert_eq!(r.added[0].info.path, second);
    assert_eq!(r.added[0].info.id, f.id);
    assert_eq!(r.added[0].plot.id(), &f.id);
    assert_eq!(state_of(&m, &second), Some(PlotState::Served));
    assert_eq!(counts(&m), [1, 0, 0, 0]);
}

#[test]
fn bad_files_are_quarantined() {
    let tmp = TempDir::new("bad");
    let good = tmp.path().join("good.plot");
    copy("k18-og-a", &good);
    let truncated = tmp.path().join("truncated.plot");
    let bytes = fs::read(&good).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = tmp.path().join("garbage.plot");
    fs::write(&garbage, vec![0x5a; 10_000]).unwrap();
    let empty = tmp.path().join("empty.plot");
    fs::write(&empty, b"").unwrap();
    let v2 = tmp.path().join("new.plot2");
    fs::write(&v2, b"v2").unwrap();
    fs::write(tmp.path().join("._good.plot"), b"AppleDouble").unwrap();

    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    assert_eq!(r.scanned_files, 5);
    assert_eq!(r.added.len(), 1);
    assert_eq!(r.problems.len(), 4, "{:?}", r.problems);
    let reason = |path: &Path| match state_of(&m, path) {
        Some(PlotState::Quarantined { reason }) => reason,
        other => panic!("{path:?}: {other:?}"),
    };
    let t = reason(&truncated);
    assert!(t.contains("truncated") || t.contains("bytes"), "{t}");
    assert!(!t.contains(tmp.path().to_str().unwrap()), "the path is not repeated: {t}");
    assert!(reason(&garbage).contains("not a plot"), "{}", reason(&garbage));
    assert!(!reason(&empty).is_empty());
    assert_eq!(reason(&v2), V2_REASON);
    assert_eq!(state_of(&m, &tmp.path().join("._good.plot")), None);
    assert_eq!(counts(&m), [1, 0, 4, 0]);

    // Not retried until they change (retry_quarantined_after is 1200 s).
    let r = m.refresh(false);
    assert!(r.problems.is_empty() && r.added.is_empty());

    // The truncated copy completes: it is now a duplicate of good.plot.
    fs::write(&truncated, &bytes).unwrap();
    let r = m.refresh(false);
    assert!(r.added.is_empty());
    assert_eq!(state_of(&m, &truncated), Some(PlotState::Duplicate { of: good.clone() }));
}

#[test]
fn quarantine_keeps_a_plot_out_until_it_changes() {
    let tmp = TempDir::new("quarantine");
    let a = tmp.path().join("a.plot");
    copy("k18-og-b", &a);
    let mut m = manager(&[tmp.path()]);
    let key = added_key(&m.refresh(false), &a);
    m.quarantine(key, "3 read errors".into());
    m.quarantine(PlotKey(9999), "unknown".into()); // ignored
    assert_eq!(state_of(&m, &a), Some(PlotState::Quarantined { reason: "3 read errors".into() }));
    assert_eq!(m.served().count(), 0);
    assert!(m.get(key).is_none());
    let r = m.refresh(false);
    assert!(r.added.is_empty() && r.removed.is_empty(), "the caller removed it already");
    touch(&a, 2_000_000);
    let r = m.refresh(false);
    assert!(r.removed.is_empty());
    let new_key = added_key(&r, &a);
    assert_ne!(new_key, key);

    // Gone while quarantined: not in `removed` (the caller removed it when quarantining).
    m.quarantine(new_key, "again".into());
    fs::remove_file(&a).unwrap();
    let r = m.refresh(false);
    assert!(r.removed.is_empty());
    assert!(m.states().is_empty());
}

#[test]
fn quarantine_is_retried_after_the_delay() {
    let tmp = TempDir::new("retry");
    let a = tmp.path().join("a.plot");
    let b = tmp.path().join("b.plot");
    copy("k18-og-b", &a);
    copy("k18-og-b", &b);
    let mut m = PlotManager::new(PlotsConfig {
        retry_quarantined_after: Duration::ZERO,
        ..config(&[tmp.path()])
    })
    .unwrap();
    let key = added_key(&m.refresh(false), &a);
    assert_eq!(state_of(&m, &b), Some(PlotState::Duplicate { of: a.clone() }));
    m.quarantine(key, "read errors".into());
    // b takes over at once; a is retried (delay 0) and becomes b's duplicate.
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 1);
    assert_eq!(r.added[0].info.path, b);
    assert!(r.removed.is_empty());
    assert_eq!(state_of(&m, &a), Some(PlotState::Duplicate { of: b.clone() }));
}

#[test]
fn id_mismatch_with_the_memo_is_quarantined() {
    let tmp = TempDir::new("mismatch");
    let path = tmp.path().join("k18-mismatch.plot");
    copy("k18-mismatch", &path);
    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    assert!(r.added.is_empty());
    match state_of(&m, &path) {
        Some(PlotState::Quarantined { reason }) => {
            assert!(reason.contains("plot id does not match the memo"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_file_plots() {
    let tmp = TempDir::new("keysfile");
    let kf = tmp.path().join("plots/k18-kf-a.plot");
    let f = copy("k18-kf-a", &kf);
    let og = tmp.path().join("plots/k18-og-a.plot");
    copy("k18-og-a", &og);

    // Without the keys file the plot has no keys (its memo is empty).
    let mut m = manager(&[&tmp.path().join("plots")]);
    m.refresh(false);
    assert!(matches!(state_of(&m, &kf), Some(PlotState::NoKeys { .. })), "{:?}", m.states());
    assert_eq!(counts(&m), [1, 0, 0, 1]);

    let mut m = PlotManager::new(PlotsConfig {
        keys_file: Some(fixtures().join("keys.toml")),
        ..config(&[&tmp.path().join("plots")])
    })
    .unwrap();
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 2, "{:?}", r.problems);
    let info = &r.added.iter().find(|a| a.info.path == kf).unwrap().info;
    assert_eq!(info.key_kind(), "keys_file");
    assert_eq!(info.id, f.id);
    assert_eq!(info.pool, PoolKey::PublicKey(f.pool_public_key.unwrap()));
    assert_eq!(info.plot_public_key, f.plot_public_key);
    let msg = [7u8; 32];
    let sig = info.sign(&msg);
    assert!(verify_aug(&info.plot_public_key, &msg, &sig), "the whole signature");
    let secret = fs::read_to_string(fixtures().join("keys.toml")).unwrap();
    let secret = secret.split("plot_secret_key = \"").nth(1).unwrap()[..64].to_owned();
    assert!(!format!("{info:?}").contains(&secret), "Debug must not print the secret key");
    assert!(!format!("{m:?}").contains(&secret));
}

#[test]
fn keys_file_entry_that_does_not_match_is_quarantined() {
    let tmp = TempDir::new("keysfile-mismatch");
    let og = tmp.path().join("plots/k18-og-a.plot");
    let f = copy("k18-og-a", &og);
    let sk = key_gen(&[42u8; 32]).unwrap();
    let keys = tmp.path().join("keys.toml");
    fs::write(
        &keys,
        format!(
            "[[plot]]\nfile = \"{}\"\nplot_secret_key = \"{}\"\npool_public_key = \"{}\"\n",
            og.display(),
            hex::encode(sk.to_bytes().expose_secret()),
            hex::encode(f.pool_public_key.unwrap())
        ),
    )
    .unwrap();
    let mut m = PlotManager::new(PlotsConfig {
        keys_file: Some(keys.clone()),
        ..config(&[&tmp.path().join("plots")])
    })
    .unwrap();
    m.refresh(false);
    match state_of(&m, &og) {
        Some(PlotState::Quarantined { reason }) => assert_eq!(
            reason,
            format!("keys file entry for {} does not match the plot id", og.display())
        ),
        other => panic!("{other:?}"),
    }

    fs::write(
        &keys,
        "[[plot]]\nfile = \"x.plot\"\nplot_secret_key = \"zz\"\npool_public_key = \"\"\n",
    )
    .unwrap();
    let err =
        PlotManager::new(PlotsConfig { keys_file: Some(keys.clone()), ..config(&[]) }).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PlotsError::KeysFileEntry { index: 1, .. }), "{err:?}");
    assert!(text.contains(&keys.display().to_string()) && text.contains("x.plot"), "{text}");

    let missing = tmp.path().join("missing.toml");
    let err = PlotManager::new(PlotsConfig { keys_file: Some(missing), ..config(&[]) });
    assert!(matches!(err, Err(PlotsError::KeysFileRead { .. })));
}

#[test]
fn memo_plot_signatures_complete_with_the_farmer_share() {
    let tmp = TempDir::new("sign");
    let og = tmp.path().join("og.plot");
    let pc = tmp.path().join("pc.plot");
    copy("k18-og-a", &og);
    copy("k20-pc-a", &pc);
    let mut m = manager(&[tmp.path()]);
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 2);

    let seed: [u8; 32] = Sha256::digest(b"harvester-fixture/farmer").into();
    let farmer_sk = derive_path(&key_gen(&seed).unwrap(), &FARMER_SK_PATH);
    let farmer_keys = fs::read_to_string(fixtures().join("farmer-keys.json")).unwrap();
    assert!(farmer_keys.contains(&hex::encode(farmer_sk.to_bytes().expose_secret())));

    let msg: [u8; 32] = Sha256::digest(b"a block to sign").into();
    for added in &r.added {
        let info = &added.info;
        let Signer::Memo(plot_keys) = &info.signer else { panic!("memo plot") };
        assert_eq!(plot_keys.farmer_public_key(), &farmer_sk.public_key());
        let share = info.sign(&msg);
        let farmer_share = keys::sign_aug(&farmer_sk, &msg, &info.plot_public_key);
        let mut shares = vec![share, farmer_share];
        if let PoolKey::ContractPuzzleHash(_) = info.pool {
            // The farmer adds the taproot share for pool-contract plots.
            let taproot = plot_keys.taproot_secret_key().unwrap();
            shares.push(keys::sign_aug(taproot, &msg, &info.plot_public_key));
        }
        let signature = aggregate_signatures(&shares).unwrap();
        assert!(verify_aug(&info.plot_public_key, &msg, &signature), "{:?}", info.path);
        assert!(!verify_aug(&info.plot_public_key, &msg, &share), "a share alone is not enough");
    }
}

#[test]
fn disks_overrides_and_missing_folders() {
    let tmp = TempDir::new("disks");
    let top = tmp.path().join("shelf/top.plot");
    let inner = tmp.path().join("shelf/inner/inner.plot");
    copy("k18-og-a", &top);
    copy("k18-og-b", &inner);
    let missing = tmp.path().join("not-mounted");
    let mut m = PlotManager::new(PlotsConfig {
        disks: vec![
            DiskOverride { name: "shelf".into(), paths: vec![tmp.path().join("shelf")] },
            DiskOverride { name: "inner".into(), paths: vec![tmp.path().join("shelf/inner")] },
            DiskOverride {
                name: "prefix-not-component".into(),
                paths: vec![tmp.path().join("sh")],
            },
        ],
        ..config(&[&missing, tmp.path()])
    })
    .unwrap();
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 2);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].0, missing);
    let disk = |p: &Path| r.added.iter().find(|a| a.info.path == p).unwrap().info.disk.clone();
    assert_eq!(disk(&top), "shelf");
    assert_eq!(disk(&inner), "inner");
}

#[test]
fn config_is_checked() {
    for bad in [
        PlotsConfig { open_threads: 0, ..PlotsConfig::default() },
        PlotsConfig { plots_max: 0, ..PlotsConfig::default() },
        PlotsConfig {
            disks: vec![DiskOverride { name: String::new(), paths: vec!["/".into()] }],
            ..PlotsConfig::default()
        },
    ] {
        assert!(matches!(PlotManager::new(bad), Err(PlotsError::Config(_))));
    }
    let d = PlotsConfig::default();
    assert!(d.recursive);
    assert_eq!((d.open_threads, d.plots_max), (8, 100_000));
    assert_eq!(d.retry_quarantined_after, Duration::from_secs(1200));
}

/// Links `count` names to one fixture plot (hard links if the file system allows, else
/// symlinks, else copies), spread over subfolders.
fn many_links(dir: &Path, count: usize) -> Vec<PathBuf> {
    let source = dir.join("source.plot.orig");
    copy("k18-og-a", &source);
    (0..count)
        .map(|i| {
            let path = dir.join(format!("d{:02}/p{i:04}.plot", i % 37));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::hard_link(&source, &path)
                .or_else(|_| std::os::unix::fs::symlink(&source, &path))
                .or_else(|_| fs::copy(&source, &path).map(drop))
                .unwrap();
            path
        })
        .collect()
}

#[test]
fn a_thousand_files() {
    let tmp = TempDir::new("thousand");
    let paths = many_links(tmp.path(), 1000);
    let mut m = PlotManager::new(PlotsConfig { open_threads: 4, ..config(&[tmp.path()]) }).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.scanned_files, 1000);
    assert_eq!(r.added.len(), 1);
    assert_eq!(r.problems.len(), 999);
    assert_eq!(counts(&m), [1, 999, 0, 0]);
    let served = r.added[0].info.path.clone();
    assert_eq!(&served, paths.iter().min().unwrap(), "the first path is served");
    let r = m.refresh(false);
    assert!(r.added.is_empty() && r.removed.is_empty() && r.problems.is_empty());

    // plots_max caps the files tracked.
    let mut m = PlotManager::new(PlotsConfig { plots_max: 500, ..config(&[tmp.path()]) }).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.scanned_files, 1000);
    assert_eq!(m.states().len(), 500);
    assert_eq!(counts(&m).iter().sum::<u64>(), 500);
}

#[test]
fn serve_duplicate_ids_serves_every_copy_under_its_own_key() {
    let tmp = TempDir::new("dup-serve");
    let paths: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("copy-{i}.plot"))).collect();
    for p in &paths {
        copy("k18-og-a", p);
    }
    let mut m =
        PlotManager::new(PlotsConfig { serve_duplicate_ids: true, ..config(&[tmp.path()]) })
            .unwrap();
    let r = m.refresh(false);
    assert_eq!(r.added.len(), 3);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(counts(&m), [3, 0, 0, 0]);
    let key = added_key(&r, &paths[1]);
    fs::remove_file(&paths[1]).unwrap();
    let r = m.refresh(false);
    assert_eq!(r.removed, [key]);
    assert!(r.added.is_empty());
    assert_eq!(counts(&m), [2, 0, 0, 0]);
}
