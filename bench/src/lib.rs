//! The farmer simulator's library ([`farmer`], driven by the `farmer-sim` binary). The
//! benches' and tests' fixtures come from `test-support`.

pub mod farmer;
