//! The harvester daemon's library: configuration, plot management, TLS, metrics and the
//! connection to the farmer. The `harvester` binary (`main.rs`) is a thin front end over it; the
//! farmer simulator in `bench/` reuses its TLS set-up.
#![forbid(unsafe_code)]
pub mod activity;
pub mod chia;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod engine;
pub mod limits;
pub mod plots;
pub mod telemetry;
pub mod tls;
