//! The farmer simulator behind `farmer-sim`: it listens for harvesters, broadcasts challenges,
//! asks for proofs and signatures, checks every answer, and reports counts and latencies.
//!
//! ```text
//!  net (tokio: accept, TLS, one reader task + one writer task per harvester, the challenge
//!   │   pacer, the drain)                                   ── the only module doing IO
//!   ▼
//!  state::Farmer (sans-IO: on_connect / on_challenge / on_message / on_disconnect, `now` in)
//!   ├── formula  (which qualities are worth a proof, a partial, a header signature)
//!   ├── checks   (proofs of space, signatures of both key kinds)
//!   └── report   (counts, HDR latency histograms, text and JSON)
//!  keys (the --keys file)
//! ```
//!
//! Errors: [`SetupError`] for what stops farmer-sim before or outside the run (files, TLS,
//! the socket: exit 2); a wrong answer from a harvester is data, [`checks::Invalid`], counted
//! in the report (exit 1).

use std::path::PathBuf;

pub mod checks;
pub mod formula;
pub mod keys;
pub mod net;
pub mod report;
pub mod state;
#[cfg(test)]
mod testkit;

pub use checks::{Invalid, SignatureKind};
pub use formula::FormulaParams;
pub use keys::FarmerKeys;
pub use net::{run, run_on, RunConfig, Security};
pub use report::{Report, Stats};
pub use state::{challenge_hash, ConnId, DumpRecord, Farmer, FarmerConfig, RequestMode};

/// What keeps farmer-sim from running (exit code 2). Every variant names its file or address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The keys file is malformed.
    #[error("{}: {reason}", path.display())]
    Keys {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never key material).
        reason: String,
    },
    /// A file could not be read, created or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificates could not be loaded (the error names the file).
    #[error("TLS: {0}")]
    Tls(#[from] harvester::tls::TlsError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `--listen`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}
