//! Shared helpers for the benches and load tools.
