#!/usr/bin/env bash
# The whole test suite: the reference oracle, the fixture plots, lints, every test.
# Usage: scripts/test.sh            (what CI runs; about 10 minutes on 2 cores)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

echo "== reference oracle, chia-blockchain (its farmer, harvester and consensus code) and fixture plots"
scripts/oracle-venv.sh >/dev/null
scripts/chia-venv.sh >/dev/null
scripts/make-fixtures.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== fuzzing: each cargo-fuzz target for 10 s (docs/reliability.md, \"Fuzzing\")"
scripts/fuzz.sh --seconds 10 --skip-if-unavailable

echo "== all tests passed"
