#!/usr/bin/env bash
# Creates (or checks) the reference oracle: a Python venv with chiapos and blspy pinned.
# Usage: scripts/oracle-venv.sh [--venv DIR]    (default: <repo>/.venv). Prints the python path.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) venv="$2"; shift 2 ;;
    *) echo "usage: $0 [--venv DIR]" >&2; exit 2 ;;
  esac
done
want_chiapos=2.0.12
want_blspy=2.0.3
python="$venv/bin/python"
have() {
  "$python" - "$want_chiapos" "$want_blspy" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("chiapos"), version("blspy")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}
if [[ ! -x "$python" ]] || ! have; then
  echo "oracle-venv: installing chiapos==$want_chiapos blspy==$want_blspy into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "chiapos==$want_chiapos" "blspy==$want_blspy" >&2
  have || { echo "oracle-venv: pinned versions not importable" >&2; exit 1; }
fi
echo "$python"
