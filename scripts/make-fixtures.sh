#!/usr/bin/env bash
# The fixture plots, made by the reference plotter (chiapos) with real keys, and their
# manifest.json. Idempotent: when the fixtures are already complete it only checks (< 1 s).
# Usage: scripts/make-fixtures.sh [--out DIR]   (default: <repo>/fixtures, git-ignored)
# Layout and manifest format: `scripts/oracle.py --help`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/fixtures"

usage() {
  sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)
      [[ $# -ge 2 ]] || { echo "make-fixtures: --out needs a directory" >&2; exit 2; }
      out="$2"
      shift 2
      ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "make-fixtures: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { echo "make-fixtures: empty --out" >&2; exit 2; }

python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
exec "$python" "$repo/scripts/oracle.py" make-fixtures --out "$out"
