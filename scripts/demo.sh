#!/usr/bin/env bash
# The main job on a small built-in example: make the sample plots with the reference plotter
# (cached), then check them with the harvester and answer a few challenges.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/make-fixtures.sh
cargo build --release --locked -p harvester
bin=target/release/harvester
echo "== harvester check fixtures/plots"
"$bin" check fixtures/plots --challenges 30
echo "== harvester prove (5 challenges, with proofs, complete mode)"
challenges=$(mktemp)
trap 'rm -f "$challenges"' EXIT
for i in 1 2 3 4 5; do printf 'demo-%s' "$i" | sha256sum | cut -d' ' -f1; done >"$challenges"
"$bin" prove fixtures/plots/*.plot --challenges-file "$challenges" --proofs | head -n 5 | cut -c1-200
echo "== the mismatched fixture is reported as bad (expected):"
"$bin" check fixtures/mismatch --challenges 5 || true
