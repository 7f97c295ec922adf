//! Sans-IO reader, prover and verifier for chiapos "v1" plot files.
//!
//! Nothing in this crate performs I/O: opening a plot ([`PlotOpener`]) and every lookup
//! ([`Lookup`]) are state machines that hand out [`ReadRequest`]s (offset, length) and take the
//! bytes back. The same code runs under the `pread` driver of the CLI, the io_uring shards, the
//! benches and the fuzzers.
//!
//! Format reference: `docs/plot-format.md`.
#![forbid(unsafe_code)]

pub mod bits;
mod error;
pub mod fse;
pub mod header;
pub mod keys;
pub mod layout;
pub mod lookup;
pub mod park;
mod plot;
pub mod verify;

pub use error::PlotError;
pub use header::{Header, HeaderKind};
pub use lookup::{
    drive, drive_many, supply_batch, Found, Goal, Lookup, Mode, Outcome, PairKey, Supply,
};
pub use plot::{c2_read, Plot, PlotOpener, Tables};

/// One read a state machine asks for: `len` bytes at byte `offset` of the plot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    pub offset: u64,
    pub len: u32,
}

impl ReadRequest {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}
