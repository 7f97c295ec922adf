#!/usr/bin/env bash
# The reference oracle's Python: a venv with chiapos, blspy and matplotlib (the sweeps' charts)
# pinned, made with python3 from PATH. Idempotent: when the venv already imports the pinned
# versions it only checks (about 0.3 s); otherwise it creates or repairs the venv and installs them.
# Usage: scripts/oracle-venv.sh [--venv DIR]     (default: <repo>/.venv)
# The last line of stdout is the venv's python (absolute path); progress goes to stderr.
set -euo pipefail

chiapos_version=2.0.12
blspy_version=2.0.3
matplotlib_version=3.11.2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"

usage() {
  sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv)
      [[ $# -ge 2 ]] || { echo "oracle-venv: --venv needs a directory" >&2; exit 2; }
      venv="$2"
      shift 2
      ;;
    --venv=*) venv="${1#--venv=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "oracle-venv: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n "$venv" ]] || { echo "oracle-venv: empty --venv" >&2; exit 2; }
[[ "$venv" == /* ]] || venv="$PWD/$venv"
python="$venv/bin/python"

# True when the venv's python runs and imports exactly the pinned versions.
pinned() {
  "$python" - "$chiapos_version" "$blspy_version" "$matplotlib_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import blspy, chiapos, matplotlib  # the compiled modules load, not just the metadata
sys.exit(0 if (version("chiapos"), version("blspy"), version("matplotlib")) == tuple(sys.argv[1:4]) else 1)
PY
}

if pinned; then
  echo "$python"
  exit 0
fi

command -v python3 >/dev/null || { echo "oracle-venv: python3 not found on PATH" >&2; exit 1; }

if ! "$python" -c '' >/dev/null 2>&1; then
  # No venv, or one whose interpreter is gone (python3 moved or upgraded): (re)create it, but
  # never wipe a directory that is not a venv.
  if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]] && [[ -n "$(ls -A "$venv" 2>/dev/null)" ]]; then
    echo "oracle-venv: $venv exists and is not a venv; refusing to touch it" >&2
    exit 1
  fi
  echo "oracle-venv: creating $venv with $(python3 --version 2>&1) ($(command -v python3))" >&2
  python3 -m venv --clear "$venv"
fi

echo "oracle-venv: installing chiapos==$chiapos_version blspy==$blspy_version matplotlib==$matplotlib_version into $venv" >&2
"$python" -m pip install --disable-pip-version-check --quiet \
  "chiapos==$chiapos_version" "blspy==$blspy_version" "matplotlib==$matplotlib_version" >&2

if ! pinned; then
  echo "oracle-venv: $python still does not import chiapos $chiapos_version, blspy $blspy_version and matplotlib $matplotlib_version" >&2
  exit 1
fi
echo "$python"
