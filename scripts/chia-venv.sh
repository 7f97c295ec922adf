#!/usr/bin/env bash
# chia-blockchain's Python, for the tests that run chia's own farmer (and chia's harvester as the
# baseline) and for the consensus oracle: a venv with chia-blockchain pinned, made with python3
# from PATH. Idempotent: when the venv already imports the pinned version it only checks.
# Usage: scripts/chia-venv.sh [--venv DIR]     (default: <repo>/.chia-venv)
# The last line of stdout is the venv's python (absolute path); progress goes to stderr.
set -euo pipefail

chia_version=2.7.5

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.chia-venv"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv)
      [[ $# -ge 2 ]] || { echo "chia-venv: --venv needs a directory" >&2; exit 2; }
      venv="$2"
      shift 2
      ;;
    --venv=*) venv="${1#--venv=}"; shift ;;
    -h | --help) sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "chia-venv: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$venv" == /* ]] || venv="$PWD/$venv"
python="$venv/bin/python"

pinned() {
  "$python" - "$chia_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import chia.farmer.farmer, chia_rs, chiapos  # the compiled modules load, not just the metadata
sys.exit(0 if version("chia-blockchain") == sys.argv[1] else 1)
PY
}

if pinned; then
  echo "$python"
  exit 0
fi
command -v python3 >/dev/null || { echo "chia-venv: python3 not found on PATH" >&2; exit 1; }
if ! "$python" -c '' >/dev/null 2>&1; then
  if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]] && [[ -n "$(ls -A "$venv" 2>/dev/null)" ]]; then
    echo "chia-venv: $venv exists and is not a venv; refusing to touch it" >&2
    exit 1
  fi
  echo "chia-venv: creating $venv with $(python3 --version 2>&1)" >&2
  python3 -m venv --clear "$venv"
fi
echo "chia-venv: installing chia-blockchain==$chia_version into $venv (about 2 minutes)" >&2
"$python" -m pip install --disable-pip-version-check --quiet "chia-blockchain==$chia_version" >&2
if ! pinned; then
  echo "chia-venv: $python still does not import chia-blockchain $chia_version" >&2
  exit 1
fi
echo "$python"
