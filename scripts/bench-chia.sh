#!/usr/bin/env bash
# bench-chia.sh: chia-blockchain's own harvester vs ours, side by side in one run, behind chia's
# real farmer (scripts/chia_farm.py: the farmer in-process, a fake full node that validates every
# declared proof, the harvester under test as a subprocess; everything on 127.0.0.1).
#
# Usage: scripts/bench-chia.sh [options]            (a benchmark an operator runs, not a test)
#   --plots N           distinct k=18 plots (60), cached in fixtures/bench-plots/ (made once by
#                       chia's create_plots, deterministic keys, manifest.json; only missing ones
#                       are plotted: about 1.5 s each here)
#   --signage-points N  SPs of the latency part (40)
#   --sp-gap S          at least S seconds between two SPs of the latency part (0.8)
#   --eligible F        fraction of the qualities under the SP's iterations, latency part (0.015)
#   --disks N           plot folders of the stuck-disk part, one of them behind FUSE (4)
#   --stuck-sps N       SPs of the stuck-disk part (11), one every --sp-interval S seconds (3)
#   --hang-after N      the FUSE disk hangs every read from SP N on (4)
#   --stuck-eligible F  eligible fraction in the stuck-disk part (0.06)
#   --no-stuck          skip the stuck-disk part (it needs root, /dev/fuse, fuse3, python3-fusepy)
#   --harvester-bin B   our harvester (target/release/harvester)
#   --seed N            the SPs' seed (1); both harvesters get the same SPs
#   --json FILE         the combined report (target/bench-chia.json); Markdown goes to stdout
#   --keep              keep the work folder (run folders, logs, per-run JSON)
#
# Parts, each run for chia's harvester and then ours, on the same plots and the same SPs:
#   1. latency and CPU: every plot passes the filter (--filter-bits 0); per SP the farmer's
#      receipt of each new_proof_of_space and of farming_info, the fake node's receipt of each
#      declaration, all from the fake node's send of the SP; the harvester process's CPU time
#      (/proc/PID/stat utime+stime) over the SPs, and idle. p50 / p99, ratios ours/chia.
#      Rates stay under chia's limit of 100 farming_info / new_proof_of_space / respond_signatures
#      per minute (the farmer enforces it on non-local harvesters; ours keeps to it always).
#   2. stuck disk: the plots dealt over --disks folders; folder 0 served through
#      scripts/faultfs.py (FUSE; its own device, so our harvester gives it its own shard), the
#      others in place on the normal disk. SPs every --sp-interval s; from SP --hang-after on,
#      every read of the FUSE disk hangs. Per SP: did farming_info and every proof of the healthy
#      plots arrive within 5 s / 28 s (chia_farm.py --windows)?
# The plots are read once before the runs so both harvesters start with them in the page cache
# (chia's harvester reads through it; ours reads with O_DIRECT by default, so from the device).
#
# Output: Markdown tables on stdout (machine: nproc, memory, uname -r; chia version; the exact
# command; the date) and --json. The default run takes about 4 minutes on 2 cores once the
# plots are cached. Every step is bounded (timeout); on exit (also Ctrl-C) the harness processes
# this script started are stopped, FUSE mounts under the work folder detached, the folder removed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plots=60
sps=40
sp_gap=0.8
eligible=0.015
disks=4
stuck_sps=11
sp_interval=3
hang_after=4
stuck_eligible=0.06
stuck=1
bin="$repo/target/release/harvester"
seed=1
json="$repo/target/bench-chia.json"
keep=0
command_line=$(printf '%q ' "$0" "$@")
command_line=${command_line% }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "bench-chia: $1 needs a value" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --plots) need "$@"; plots=$2; shift 2 ;;
    --signage-points) need "$@"; sps=$2; shift 2 ;;
    --sp-gap) need "$@"; sp_gap=$2; shift 2 ;;
    --eligible) need "$@"; eligible=$2; shift 2 ;;
    --disks) need "$@"; disks=$2; shift 2 ;;
    --stuck-sps) need "$@"; stuck_sps=$2; shift 2 ;;
    --sp-interval) need "$@"; sp_interval=$2; shift 2 ;;
    --hang-after) need "$@"; hang_after=$2; shift 2 ;;
    --stuck-eligible) need "$@"; stuck_eligible=$2; shift 2 ;;
    --no-stuck) stuck=0; shift ;;
    --harvester-bin) need "$@"; bin=$2; shift 2 ;;
    --seed) need "$@"; seed=$2; shift 2 ;;
    --json) need "$@"; json=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-chia: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
int() { [[ "$2" =~ ^[0-9]+$ ]] || { echo "bench-chia: $1 takes a whole number, not '$2'" >&2; exit 2; }; }
int --plots "$plots"; int --signage-points "$sps"; int --disks "$disks"; int --stuck-sps "$stuck_sps"
int --hang-after "$hang_after"; int --seed "$seed"
((plots >= 2 && plots <= 1000)) || { echo "bench-chia: --plots must be 2..1000" >&2; exit 2; }
((disks >= 2 && disks <= plots)) || { echo "bench-chia: --disks must be 2..--plots" >&2; exit 2; }
((hang_after < stuck_sps)) || { echo "bench-chia: --hang-after must be below --stuck-sps" >&2; exit 2; }
[[ -x "$bin" ]] || {
  echo "bench-chia: $bin is not there; build it: cargo build --release -p harvester" >&2
  exit 2
}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
if ((stuck)); then
  why=""
  if [[ $(id -u) -ne 0 ]]; then why="not root (mounting FUSE needs it)"
  elif [[ ! -e /dev/fuse ]]; then why="/dev/fuse is missing"
  elif ! command -v fusermount3 >/dev/null; then why="fusermount3 is missing (apt-get install -y fuse3 python3-fusepy)"
  elif ! /usr/bin/python3 -c 'import fusepy' 2>/dev/null && ! python3 -c 'import fuse' 2>/dev/null; then
    why="no python3 imports fusepy (apt-get install -y python3-fusepy)"
  fi
  if [[ -n "$why" ]]; then
    echo "bench-chia: the stuck-disk part cannot run: $why; use --no-stuck" >&2
    exit 2
  fi
fi

mkdir -p "$(dirname "$json")"
json=$(cd "$(dirname "$json")" && pwd)/$(basename "$json")
t_start=$(date +%s)
py=$("$repo/scripts/chia-venv.sh" | tail -n 1)
work=$(mktemp -d "$repo/fixtures/.bench-chia.XXXXXX")  # next to the plot cache: hard links work
pids=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    # chia_farm.py stops its harvester and FUSE daemon on SIGTERM; give it 20 s
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # anything still mounted under the work folder (a killed harness): detach it
  if [[ -d "$work" ]]; then
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | while read -r m; do
      umount -l "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
    done
    if ((keep)); then
      echo "bench-chia: work folder kept: $work" >&2
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "bench-chia: $*" >&2; }

# ---- the plots ----
log "plots: $plots k=18 in fixtures/bench-plots (cached)"
mapfile -t plot_files < <(timeout 3600 "$py" "$repo/scripts/chia_plots.py" cache \
  --dir "$repo/fixtures/bench-plots" --count "$plots")
((${#plot_files[@]} == plots)) || { log "chia_plots.py gave ${#plot_files[@]} plots, want $plots"; exit 1; }
link() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
mkdir -p "$work/all"
for f in "${plot_files[@]}"; do link "$f" "$work/all/"; done
for ((d = 0; d < disks; d++)); do mkdir -p "$work/disk$d"; done
i=0
for f in "${plot_files[@]}"; do link "$f" "$work/disk$((i % disks))/"; i=$((i + 1)); done
fuse_plots=$(find "$work/disk0" -name '*.plot' | wc -l)
cat "${plot_files[@]}" >/dev/null  # page cache warm for both harvesters alike

# ---- one harness run ----
# run NAME HARVESTER TIMEOUT ARGS...: chia_farm.py in the background (so the trap can stop it),
# its output in $work/NAME.out, its report in $work/NAME.json. Its exit status is kept, not fatal.
run() {
  local name=$1 harvester=$2 limit=$3
  shift 3
  local args=(--harvester "$harvester" --seed "$seed" --timeout "$limit" --workdir "$work/runs"
    --json "$work/$name.json")
  [[ "$harvester" == ours ]] && args+=(--harvester-bin "$bin")
  log "$name: chia_farm.py ${args[*]} $*"
  timeout -k 10 $((limit + 60)) "$py" "$repo/scripts/chia_farm.py" "${args[@]}" "$@" >"$work/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  pids=()
  head -n 3 "$work/$name.out" | sed "s/^/  [$name] /" >&2
  ((rc == 0)) || log "$name: chia_farm.py exited $rc (see the report's failures)"
}

latency_args=(--bench --idle-seconds 4 --plots none --extra-plots "$work/all" --signage-points "$sps" --sp-gap "$sp_gap"
  --sub-slot-iters "eligible:$eligible" --sp-timeout 15)
run latency-chia chia 240 "${latency_args[@]}"
run latency-ours ours 240 "${latency_args[@]}"

if ((stuck)); then
  stuck_args=(--plots none --fuse-plots "$work/disk0" --hang-after "$hang_after" --sp-interval "$sp_interval"
    --signage-points "$stuck_sps" --sp-timeout 30 --windows 5,28 --filter-bits 0
    --sub-slot-iters "eligible:$stuck_eligible")
  for ((d = 1; d < disks; d++)); do stuck_args+=(--extra-plots "$work/disk$d"); done
  run stuck-chia chia 240 "${stuck_args[@]}"
  run stuck-ours ours 240 "${stuck_args[@]}"
fi

# ---- the report ----
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
plot_fs=$(df -P "$repo/fixtures/bench-plots" | awk 'NR == 2 { print $1 }')
chia_version=$("$py" -c 'from importlib.metadata import version; print(version("chia-blockchain"))')
harvester_version=$("$bin" --version 2>/dev/null | head -n 1 || echo unknown)
git_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]]; then git_rev="$git_rev (with uncommitted changes)"; fi
elapsed=$(($(date +%s) - t_start))
BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) BENCH_COMMAND=$command_line BENCH_ELAPSED=$elapsed \
  BENCH_NPROC=$(nproc) BENCH_MEM=$mem BENCH_KERNEL=$(uname -r) BENCH_CPU=$cpu_model BENCH_FS=$plot_fs \
  BENCH_CHIA=$chia_version BENCH_BIN=$bin BENCH_BIN_VERSION=$harvester_version BENCH_GIT=$git_rev \
  BENCH_PARAMS="$plots $sps $sp_gap $eligible $disks $fuse_plots $stuck_sps $sp_interval $hang_after $stuck_eligible $seed $stuck" \
  "$py" - "$work/meta.json" <<'PY'
import json, os, sys
e = os.environ
p = e["BENCH_PARAMS"].split()
json.dump({
    "date": e["BENCH_DATE"],
    "command": e["BENCH_COMMAND"],
    "elapsed_seconds_before_report": int(e["BENCH_ELAPSED"]),
    "machine": {"nproc": int(e["BENCH_NPROC"]), "memory": e["BENCH_MEM"], "kernel": e["BENCH_KERNEL"],
                "cpu_model": e["BENCH_CPU"], "plot_fs": e["BENCH_FS"]},
    "chia_version": e["BENCH_CHIA"],
    "harvester_bin": e["BENCH_BIN"],
    "harvester_version": e["BENCH_BIN_VERSION"],
    "git": e["BENCH_GIT"],
    "params": {"plots": int(p[0]), "signage_points": int(p[1]), "sp_gap": float(p[2]), "eligible": float(p[3]),
               "disks": int(p[4]), "fuse_plots": int(p[5]), "stuck_sps": int(p[6]), "sp_interval": float(p[7]),
               "hang_after": int(p[8]), "stuck_eligible": float(p[9]), "stuck_sp_timeout": 30, "seed": int(p[10]),
               "stuck": p[11] == "1"},
}, open(sys.argv[1], "w"), indent=1)
PY
report=(--meta "$work/meta.json" --json "$json" --latency-chia "$work/latency-chia.json"
  --latency-ours "$work/latency-ours.json")
((stuck)) && report+=(--stuck-chia "$work/stuck-chia.json" --stuck-ours "$work/stuck-ours.json")
"$py" "$repo/scripts/bench_chia_report.py" "${report[@]}"
echo
echo "Took ${elapsed} s. JSON: $json"
