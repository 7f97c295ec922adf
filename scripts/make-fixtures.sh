#!/usr/bin/env bash
# Makes the fixture plots with the reference plotter (cached; fast when already made).
# Usage: scripts/make-fixtures.sh [--out DIR]   (default: <repo>/fixtures, git-ignored)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/fixtures"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
"$python" "$repo/scripts/oracle.py" make-fixtures --out "$out"
