//! Test support: the fixture plots, the reference oracle (chiapos in a Python venv) and an
//! in-memory driver for the sans-IO lookups (found and run by `test_support`, as in every
//! crate's tests).
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plot_format::{Found, Goal, Mode, Plot, PlotError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use test_support::oracle_python;
pub use test_support::plot::{drive_slices, lookup_bytes, open_bytes};

/// The fixture manifest written by `scripts/oracle.py make-fixtures`.
pub fn manifest() -> Value {
    let path = test_support::fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/make-fixtures.sh", path.display()));
    serde_json::from_str(&text).expect("manifest is JSON")
}

pub struct Fixture {
    pub name: String,
    pub path: PathBuf,
    pub k: u8,
    pub id_matches_memo: bool,
    pub entry: Value,
}

pub fn fixtures() -> Vec<Fixture> {
    let m = manifest();
    m["plots"]
        .as_array()
        .expect("manifest lists plots")
        .iter()
        .map(|p| Fixture {
            name: p["name"].as_str().expect("name").to_string(),
            path: test_support::fixtures().join(p["path"].as_str().expect("path")),
            k: p["k"].as_u64().expect("k") as u8,
            id_matches_memo: p["id_matches_memo"].as_bool().unwrap_or(true),
            entry: p.clone(),
        })
        .collect()
}

/// Runs `scripts/oracle.py <command>` with `input` as JSON on stdin.
pub fn oracle(command: &str, input: &Value) -> Value {
    let mut child = Command::new(oracle_python())
        .arg(test_support::repo().join("scripts/oracle.py"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oracle starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write oracle input");
    let out = child.wait_with_output().expect("oracle runs");
    assert!(out.status.success(), "oracle {command} failed");
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}

/// What chiapos answers for each challenge: qualities and (optionally) proofs, or an error.
pub struct OracleAnswer {
    pub qualities: Vec<String>,
    pub proofs: Vec<String>,
    pub error: Option<String>,
}

pub fn oracle_prove(plot: &Path, challenges: &[[u8; 32]], proofs: bool) -> Vec<OracleAnswer> {
    let input = json!({
        "plot": plot,
        "challenges": challenges.iter().map(hex::encode).collect::<Vec<_>>(),
        "proofs": proofs,
    });
    let out = oracle("prove", &input);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().expect("hex").to_string()).collect())
            .unwrap_or_default()
    };
    out["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| OracleAnswer {
            qualities: strings(&r["qualities"]),
            proofs: strings(&r["proofs"]),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect()
}

pub struct VerifyItem {
    pub id: [u8; 32],
    pub k: u8,
    pub challenge: [u8; 32],
    pub proof: Vec<u8>,
}

pub fn oracle_verify(items: &[VerifyItem]) -> Vec<Option<String>> {
    let input = json!({
        "items": items.iter().map(|i| json!({
            "id": hex::encode(i.id),
            "k": i.k,
            "challenge": hex::encode(i.challenge),
            "proof": hex::encode(&i.proof),
        })).collect::<Vec<_>>(),
    });
    let out = oracle("verify", &input);
    out["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// A plot held in memory, served to the sans-IO state machines.
pub struct MemPlot {
    pub bytes: Vec<u8>,
    pub plot: Plot,
}

impl MemPlot {
    pub fn load(path: &Path) -> MemPlot {
        let bytes = std::fs::read(path).expect("fixture readable");
        let plot = open_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        MemPlot { bytes, plot }
    }

    pub fn lookup(
        &self,
        challenge: &[u8; 32],
        goal: Goal,
        mode: Mode,
    ) -> Result<Vec<Found>, PlotError> {
        lookup_bytes(&self.plot, &self.bytes, challenge, goal, mode)
    }

    /// [`MemPlot::lookup`] with every read supplied alone, in reverse order within each round
    /// (the drivers supply walk reads in twos, which decodes two parks together).
    pub fn lookup_one_by_one(
        &self,
        challenge: &[u8; 32],
        goal: Goal,
        mode: Mode,
    ) -> Result<Vec<Found>, PlotError> {
        let mut lookup = self.plot.lookup(challenge, goal, mode);
        while !lookup.is_done() {
            let round = lookup.round();
            let reads = lookup.reads().to_vec();
            for (i, request) in reads.into_iter().enumerate().rev() {
                if lookup.round() != round {
                    break;
                }
                lookup.supply(i, test_support::plot::read_at(&self.bytes, request));
            }
        }
        lookup.into_outcome().expect("the loop runs the lookup to its outcome")
    }

    /// [`MemPlot::lookup`] handing the lookup slices of the file, no copies (the benches' way).
    pub fn lookup_slices(
        &self,
        challenge: &[u8; 32],
        goal: Goal,
        mode: Mode,
    ) -> Result<Vec<Found>, PlotError> {
        drive_slices(self.plot.lookup(challenge, goal, mode), &self.bytes)
    }
}

/// Deterministic pseudo-random challenges: SHA-256 of a label and a counter.
pub fn challenges(label: &str, n: u32) -> Vec<[u8; 32]> {
    (0..n).map(|i| sha256(&[label.as_bytes(), &i.to_be_bytes()].concat())).collect()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A challenge whose first k bits are `f7` (the rest pseudo-random).
pub fn challenge_for_f7(k: u8, f7: u64, salt: u32) -> [u8; 32] {
    let mut c = sha256(&[b"aim".as_slice(), &f7.to_be_bytes(), &salt.to_be_bytes()].concat());
    let k = u32::from(k);
    for bit in 0..k {
        let mask = 0x80u8 >> (bit % 8);
        let byte = &mut c[(bit / 8) as usize];
        if (f7 >> (k - 1 - bit)) & 1 == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    c
}

/// The C1 checkpoint values of a plot (read from its bytes), for aiming at boundaries.
pub fn c1_values(mem: &MemPlot) -> Vec<u64> {
    let t = mem.plot.tables();
    let e = t.geometry.checkpoint_entry_bytes() as usize;
    let start = t.table_start(8) as usize;
    let end = t.table_start(9) as usize;
    let mut out = Vec::new();
    for (j, chunk) in mem.bytes[start..end].chunks_exact(e).enumerate() {
        let v = plot_format::bits::get_bits(chunk, 0, u32::from(t.k()));
        if j != 0 && v == 0 {
            break;
        }
        out.push(v);
    }
    out
}
