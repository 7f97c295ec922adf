#!/usr/bin/env bash
# `harvester prove` against chiapos on fresh plots that no test has seen: random plot ids,
# chosen k, both modes. Usage: scripts/compare-chiapos.sh [--k 18,19,21] [--challenges 300]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ks=18,19,21
challenges=300
while [[ $# -gt 0 ]]; do
  case "$1" in
    --k) ks="$2"; shift 2 ;;
    --challenges) challenges="$2"; shift 2 ;;
    *) echo "usage: $0 [--k LIST] [--challenges N]" >&2; exit 2 ;;
  esac
done
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
cargo build --release --locked -p harvester --manifest-path "$repo/Cargo.toml" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plots=()
for k in ${ks//,/ }; do
  id=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "plotting k=$k id=$id" >&2
  "$python" "$repo/scripts/oracle.py" make-plot --out "$work/k$k-$id.plot" --k "$k" --id "$id" >/dev/null
  plots+=("$work/k$k-$id.plot")
done
"$python" "$repo/scripts/oracle.py" compare-prove --harvester "$repo/target/release/harvester" \
  --plots "${plots[@]}" --challenges "$challenges"
