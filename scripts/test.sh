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
# Tests whose facility is missing (root, loop devices, FUSE, ...) skip and list themselves
# here; with HARVESTER_REQUIRE_FACILITIES=1 (CI) they fail instead.
export HARVESTER_SKIP_LOG="$repo/target/test-skips.log"
mkdir -p "$repo/target"
: >"$HARVESTER_SKIP_LOG"
cargo test --workspace --locked
skipped=$(wc -l <"$HARVESTER_SKIP_LOG")
echo "== tests that skipped for a missing facility: $skipped"
cat "$HARVESTER_SKIP_LOG"

echo "== fuzzing: each cargo-fuzz target for 10 s (docs/reliability.md, \"Fuzzing\")"
if [[ "${HARVESTER_REQUIRE_FACILITIES:-}" == 1 ]]; then
  scripts/fuzz.sh --seconds 10
else
  scripts/fuzz.sh --seconds 10 --skip-if-unavailable
fi

echo "== all tests passed"
