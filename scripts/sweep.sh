#!/usr/bin/env bash
# Benchmark sweeps of the engine (loadgen), one knob at a time, with fio and chiapos beside it
# where they apply. Each sweep writes DIR/KNOB.csv (one row per point), DIR/KNOB-throughput.png,
# DIR/KNOB-latency.png, DIR/KNOB.json (command, machine, fixed parameters) and DIR/KNOB.md.
# Usage: scripts/sweep.sh KNOB|all [--quick] [--out DIR]
#   KNOB: reads-in-flight | batch | plots | disks | direct-io | mode   (disks needs root)
#   --quick: tiny sizes, a test of the script (under a minute each); default DIR then
#            target/sweeps-quick, so quick figures never replace the reports in docs/sweeps.
#   --out DIR: default docs/sweeps.
# Charts and report again from a CSV: .venv/bin/python scripts/sweep_chart.py render DIR KNOB
#
# What each sweep runs (the full sizes; docs/sweeps/README.md says more):
#   reads-in-flight  loadgen --reads-in-flight 1..128, cold (O_DIRECT), 300 plots, 8 challenges at
#                    a time; fio randread (O_DIRECT, io_uring) at the same depth and mean read size.
#   batch            loadgen --concurrency 1..64 (challenges in flight), cold, 30 plots, 64 reads in
#                    flight; fio at depth 64 as the ceiling.
#   plots            loadgen --copies: 6..10,002 plots (the 6 fixture files served N times), warm;
#                    chiapos (oracle.py bench-prove --threads 30) up to 1,800 plots.
#   disks            1..4 loop disks (ext4 on image files), each in its own cgroup-v1 blkio group
#                    limited to 150 read IOPS, one shard each, cold; the sum of the limits and fio
#                    (one job per disk, in its group) beside it.
#   direct-io        cold (O_DIRECT) vs warm (buffered) reads; fio direct=1 / direct=0 and chiapos
#                    from a cold page cache / warm beside them.
#   mode             --mode chiapos vs complete, warm and cold, qualities only and with full
#                    proofs; chiapos itself beside them.
# Raw JSON of every run stays in target/sweep/KNOB. The disks sweep makes everything with the
# prefix sweep-disks (images and mounts under target/sweep-disks, cgroups
# /sys/fs/cgroup/blkio/sweep-disks-loopN) and a trap removes it on exit, also on failure.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
knobs=(reads-in-flight batch plots disks direct-io mode)
# Expected duration of a full sweep in seconds: measured with --quick and calibration runs on a
# busy 2-core machine (the quiet machine is faster); see docs/sweeps/README.md.
declare -A expected=([reads-in-flight]=190 [batch]=110 [plots]=170 [disks]=180 [direct-io]=70 [mode]=150)

usage() { sed -n '5,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
say() { echo "sweep: $*" >&2; }

knob=""
quick=0
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out)
      [[ $# -ge 2 ]] || { usage >&2; exit 2; }
      out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) say "unknown flag $1"; usage >&2; exit 2 ;;
    *)
      [[ -z "$knob" ]] || { say "one knob at a time (or all)"; exit 2; }
      knob="$1"; shift ;;
  esac
done
[[ -n "$knob" ]] || { usage >&2; exit 2; }
if [[ "$knob" != all && ! " ${knobs[*]} " =~ " $knob " ]]; then
  say "unknown knob $knob (one of: ${knobs[*]} all)"
  exit 2
fi
if [[ -z "$out" ]]; then
  if [[ $quick -eq 1 ]]; then out="$repo/target/sweeps-quick"; else out="$repo/docs/sweeps"; fi
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
command_line="scripts/sweep.sh $knob$( ((quick)) && echo ' --quick' || true)"

# --- Tools: the venv (matplotlib, chiapos), the fixtures, loadgen, fio ---
command -v fio >/dev/null || { say "needs fio (apt-get install fio)"; exit 1; }
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
"$repo/scripts/make-fixtures.sh" >/dev/null
target="${CARGO_TARGET_DIR:-$repo/target}"
cargo build --release --locked -p bench --bin loadgen --manifest-path "$repo/Cargo.toml" --quiet
loadgen="$target/release/loadgen"
fixtures="$repo/fixtures/plots"
mapfile -t fixture_files < <(ls "$fixtures"/*.plot)
# One descriptor per plot: 10,002 plots need more than the usual 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"

# --- Helpers. Every sweep appends its points to $work/points.tsv:
# value, label, loadgen JSON, fio JSON(s, comma-separated), chiapos JSON, limit IOPS, kernel reads
work=""
new_work() {
  work="$repo/target/sweep/$1"
  rm -rf "$work"
  mkdir -p "$work"
  : >"$work/points.tsv"
  : >"$work/params.tsv"
}
param() { printf '%s\t%s\n' "$1" "$2" >>"$work/params.tsv"; } # fixed parameters, for the report
point() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$work/points.tsv"; }

# lg TAG LOADGEN-ARGS...: one loadgen run, JSON to $work/TAG.json, its text to $work/TAG.txt.
lg() {
  local tag=$1
  shift
  "$loadgen" "$@" --json "$work/$tag.json" >"$work/$tag.txt"
  say "  $tag: $(head -n 1 "$work/$tag.txt" | sed 's/^[^:]*: //; s/; CPU.*//')"
}
# The mix of read sizes of a loadgen run, as fio's --bssplit (whole 4 KiB blocks), so that fio
# moves the same bytes per read as the engine.
read_mix() {
  "$python" -c "import json,sys;print(json.load(open(sys.argv[1]))['fio_bssplit'] or '4k')" "$1"
}
# fio_run TAG DEPTH BS DIRECT FILES: random reads over FILES (colon-separated), io_uring.
fio_run() {
  local tag=$1 qd=$2 bs=$3 direct=$4 files=$5
  fio --name="$tag" --filename="$files" --rw=randread --bssplit="$bs" --direct="$direct" --ioengine=io_uring \
    --iodepth="$qd" --time_based --runtime="$fio_seconds" --ramp_time="$fio_ramp" --randrepeat=0 \
    --norandommap --lat_percentiles=1 --output-format=json >"$work/$tag.json"
  say "  $tag: $("$python" -c "import json,sys;r=json.load(open(sys.argv[1]))['jobs'][0]['read'];print(f\"{r['iops']:.0f} IOPS\")" "$work/$tag.json") (fio depth $qd, bs $bs, direct=$direct)"
}
# The challenges loadgen sends (sha256("loadgen" || i as 4 bytes big-endian)), for chiapos.
challenges_file() { # N FILE
  "$python" -c '
import hashlib, sys
with open(sys.argv[2], "w") as f:
    for i in range(int(sys.argv[1])):
        f.write(hashlib.sha256(b"loadgen" + i.to_bytes(4, "big")).hexdigest() + "\n")' "$1" "$2"
}
# chiapos_run TAG CHALLENGES COPIES [--no-warm]: bench-prove, 30 threads, over the fixture files
# served COPIES times (one DiskProver each, as loadgen's copies).
chiapos_run() {
  local tag=$1 n=$2 copies=$3 i
  shift 3
  local plots=()
  for ((i = 0; i < copies; i++)); do plots+=("${fixture_files[@]}"); done
  challenges_file "$n" "$work/$tag.challenges"
  "$python" "$repo/scripts/oracle.py" bench-prove --threads 30 "$@" --plots "${plots[@]}" \
    --challenges-file "$work/$tag.challenges" >"$work/$tag.json"
  say "  $tag: $("$python" -c "import json,sys;r=json.load(open(sys.argv[1]));print(f\"{r['lookups_per_second']:.0f} lookups/s ({r['plots']} plots, {r['challenges']} challenges)\")" "$work/$tag.json") (chiapos $*)"
}
evict() { # drop the fixture files from the page cache
  "$python" -c '
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "${fixture_files[@]}"
}
files_colon() { local IFS=:; echo "$*"; }

# --- The sweeps ---
sweep_reads_in_flight() {
  local copies=50 challenges=150 values=(1 2 4 8 16 32 64 128) q bs
  [[ $quick -eq 0 ]] || { copies=2; challenges=8; }
  param plots "$((copies * ${#fixture_files[@]})) (${#fixture_files[@]} fixture files x $copies)"
  param challenges "$challenges, 8 at a time"
  param cache "cold (O_DIRECT)"
  param mode chiapos
  param fio "randread, O_DIRECT, io_uring, same files, depth = reads in flight, block sizes = the engine's mix (--bssplit), ${fio_seconds} s (+${fio_ramp} s ramp)"
  for q in "${values[@]}"; do
    lg "q$q" --plots "$fixtures" --copies "$copies" --challenges "$challenges" --reads-in-flight "$q" \
      --concurrency 8 --cache cold
    bs=$(read_mix "$work/q$q.json")
    fio_run "fio-q$q" "$q" "$bs" 1 "$(files_colon "${fixture_files[@]}")"
    point "$q" "$q" "q$q.json" "fio-q$q.json" - - -
  done
}

sweep_batch() {
  local copies=5 challenges=2000 values=(1 2 4 8 16 32 64) c bs
  [[ $quick -eq 0 ]] || { copies=1; challenges=64; }
  param plots "$((copies * ${#fixture_files[@]})) (${#fixture_files[@]} fixture files x $copies); every challenge looks up every plot (no plot filter)"
  param challenges "$challenges"
  param reads_in_flight 64
  param cache "cold (O_DIRECT)"
  param mode chiapos
  param fio "randread, O_DIRECT, io_uring, depth 64, block sizes = the engine's mix (--bssplit), ${fio_seconds} s (+${fio_ramp} s ramp): the disk's ceiling at the engine's depth"
  for c in "${values[@]}"; do
    lg "c$c" --plots "$fixtures" --copies "$copies" --challenges "$challenges" --reads-in-flight 64 \
      --concurrency "$c" --cache cold
  done
  bs=$(read_mix "$work/c8.json")
  fio_run fio-q64 64 "$bs" 1 "$(files_colon "${fixture_files[@]}")"
  for c in "${values[@]}"; do point "$c" "$c" "c$c.json" fio-q64.json - - -; done
}

sweep_plots() {
  # Lookups per point (ours, chiapos): the challenges follow from the plot count.
  local lookups=150000 chia_lookups=30000 chia_max=1800 values=(6 30 120 600 1800 6000 10002)
  [[ $quick -eq 0 ]] || { lookups=3000 chia_lookups=3000 chia_max=60 values=(6 60 600); }
  local n copies ch cch chia
  local nf=${#fixture_files[@]}
  param plots "the $nf fixture files served N/$nf times each (each copy opened and indexed on its own)"
  param challenges "about $lookups lookups per point (challenges = $lookups / plots, at least 20), 8 at a time"
  param cache "warm (buffered, files read once before)"
  param reads_in_flight 64
  param mode chiapos
  param chiapos "oracle.py bench-prove --threads 30 (one DiskProver per plot, warm), same challenges, about $chia_lookups lookups per point, up to $chia_max plots"
  for n in "${values[@]}"; do
    copies=$(((n + nf - 1) / nf))
    ch=$(((lookups + n - 1) / n))
    ((ch >= 20)) || ch=20
    lg "p$n" --plots "$fixtures" --copies "$copies" --challenges "$ch" --concurrency 8 --cache warm
    chia=-
    if ((n <= chia_max)); then
      cch=$(((chia_lookups + n - 1) / n))
      ((cch >= 5)) || cch=5
      chiapos_run "chiapos-p$n" "$cch" "$copies"
      chia="chiapos-p$n.json"
    fi
    point "$((copies * nf))" "$((copies * nf))" "p$n.json" - "$chia" - -
  done
}

direct_io_and_mode_common() {
  local copies=$1
  param plots "$((copies * ${#fixture_files[@]})) (${#fixture_files[@]} fixture files x $copies)"
  param reads_in_flight 64
}

sweep_direct_io() {
  local copies=50 challenges=400 chia_ch=50 bs files
  [[ $quick -eq 0 ]] || { copies=2; challenges=20; chia_ch=10; }
  files=$(files_colon "${fixture_files[@]}")
  direct_io_and_mode_common "$copies"
  param challenges "$challenges, 8 at a time"
  param mode chiapos
  param fio "randread, io_uring, depth 64, block sizes = the engine's cold mix (--bssplit), direct=1 beside cold, direct=0 on a warm cache beside warm"
  param chiapos "oracle.py bench-prove --threads 30, $chia_ch challenges: from a cold page cache (evicted first, buffered reads: the cache warms up as it runs, an upper bound for chiapos on cold disks) beside cold, warm beside warm"
  lg cold --plots "$fixtures" --copies "$copies" --challenges "$challenges" --concurrency 8 --cache cold
  bs=$(read_mix "$work/cold.json")
  fio_run fio-direct 64 "$bs" 1 "$files"
  evict
  chiapos_run chiapos-cold "$chia_ch" "$copies" --no-warm
  lg warm --plots "$fixtures" --copies "$copies" --challenges "$challenges" --concurrency 8 --cache warm
  fio_run fio-buffered 64 "$bs" 0 "$files"
  chiapos_run chiapos-warm "$chia_ch" "$copies"
  point "O_DIRECT (cold)" "O_DIRECT, cold" cold.json fio-direct.json chiapos-cold.json - -
  point "buffered (warm)" "buffered, warm" warm.json fio-buffered.json chiapos-warm.json - -
}

sweep_mode() {
  local copies=50 challenges=300 proof_ch=30 chia_ch=50 chia_proof_ch=3 cache m
  [[ $quick -eq 0 ]] || { copies=2; challenges=20; proof_ch=4; chia_ch=10; chia_proof_ch=2; }
  direct_io_and_mode_common "$copies"
  param challenges "$challenges, 8 at a time, for quality lookups; $proof_ch with full proofs (--proofs: every quality's proof too)"
  param chiapos "oracle.py bench-prove --threads 30 (chiapos finds what --mode chiapos finds), $chia_ch challenges ($chia_proof_ch with --proofs); cold = page cache evicted first, buffered, warming as it runs"
  for cache in warm cold; do
    for m in chiapos complete; do
      lg "ours-$m-$cache" --plots "$fixtures" --copies "$copies" --challenges "$challenges" --concurrency 8 \
        --cache "$cache" --mode "$m"
    done
  done
  for cache in warm cold; do
    for m in chiapos complete; do
      lg "ours-$m-$cache-proofs" --plots "$fixtures" --copies "$copies" --challenges "$proof_ch" \
        --concurrency 8 --cache "$cache" --mode "$m" --proofs
    done
  done
  chiapos_run chiapos-lib-warm "$chia_ch" "$copies"
  chiapos_run chiapos-lib-warm-proofs "$chia_proof_ch" "$copies" --proofs
  evict
  chiapos_run chiapos-lib-cold "$chia_ch" "$copies" --no-warm
  evict
  chiapos_run chiapos-lib-cold-proofs "$chia_proof_ch" "$copies" --no-warm --proofs
  for p in "" -proofs; do
    for cache in warm cold; do
      for m in chiapos complete; do
        point "$m, $cache${p:+, proofs}" "$m, $cache${p:+, proofs}" "ours-$m-$cache$p.json" - \
          "chiapos-lib-$cache$p.json" - -
      done
    done
  done
}

# --- disks: loop devices throttled with cgroup-v1 blkio (scripts/lib/loopdisk.sh) ---
# shellcheck source=lib/loopdisk.sh
source "$repo/scripts/lib/loopdisk.sh"
prefix=sweep-disks
lab="$repo/target/$prefix"
clean_disks() { loopdisk_clean "$prefix" "$lab"; }
disks_made=0
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null; done # this script's own fio jobs
  wait 2>/dev/null
  if [[ $disks_made -eq 1 ]]; then clean_disks; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sweep_disks() {
  local ndisks=4 iops=150 copies=5 challenges=60 qd=16 conc=4 i n
  [[ $quick -eq 0 ]] || { copies=1; challenges=4; }
  local why
  why=$(loopdisk_unusable)
  [[ -z "$why" ]] || { say "disks: $why"; return 1; }
  local plots=()
  mapfile -t plots < <(ls "$fixtures"/k18-*.plot | head -n 2)
  param disks "loop devices (ext4 on 64 MiB image files on the machine's disk), each in its own cgroup-v1 blkio group limited to $iops read IOPS (blkio.throttle.read_iops_device), one shard per disk whose thread joins its disk's group"
  param plots "per disk: ${#plots[@]} k=18 fixture files x $copies = $((copies * ${#plots[@]}))"
  param challenges "$challenges, $conc at a time (every challenge goes to every disk)"
  param reads_in_flight "$qd per disk"
  param cache "cold (O_DIRECT)"
  param mode chiapos
  param fio "one randread job per disk (O_DIRECT, io_uring, depth $qd, block sizes = the engine's mix (--bssplit), ${fio_seconds} s + ${fio_ramp} s ramp), each in its disk's group, all at once; IOPS summed, latency of the slowest disk"
  param kernel_read_iops "reads the throttle counted (blkio.throttle.io_serviced) / loadgen's run time: some engine reads reach it as two I/Os"
  clean_disks # what a killed run left
  disks_made=1
  mkdir -p "$lab"
  for ((i = 0; i < ndisks; i++)); do loopdisk_add "$prefix" "$lab" "$i" "$iops" "${plots[@]}"; done
  local mounts=("${loopdisk_mounts[@]}") devnos=("${loopdisk_devnos[@]}")
  local cgroups=("${loopdisk_cgroups[@]}")
  say "disks: ${mounts[*]##*/} ($iops read IOPS each)"
  serviced() { # reads the throttle counted, all groups of the first $1 disks
    local j total=0 v
    for ((j = 0; j < $1; j++)); do
      v=$(awk -v d="${devnos[$j]}" '$1 == d && $2 == "Read" { n = $3 } END { print n + 0 }' "${cgroups[$j]}/blkio.throttle.io_serviced")
      total=$((total + v))
    done
    echo "$total"
  }
  local args before after bs fios pids
  for ((n = 1; n <= ndisks; n++)); do
    args=()
    for ((i = 0; i < n; i++)); do args+=(--plots "${mounts[$i]}"); done
    before=$(serviced "$n")
    lg "d$n" "${args[@]}" --copies "$copies" --challenges "$challenges" --concurrency "$conc" \
      --reads-in-flight "$qd" --cache cold --blkio-cgroup-prefix "$prefix"
    after=$(serviced "$n")
    bs=$(read_mix "$work/d$n.json")
    fios=() pids=()
    for ((i = 0; i < n; i++)); do
      (
        echo "$BASHPID" >"${cgroups[$i]}/tasks"
        exec fio --name="d$n-disk$i" --filename="$(files_colon "${mounts[$i]}"/*.plot)" --rw=randread \
          --bssplit="$bs" --direct=1 --ioengine=io_uring --iodepth="$qd" --time_based --runtime="$fio_seconds" \
          --ramp_time="$fio_ramp" --randrepeat=0 --norandommap --lat_percentiles=1 --output-format=json \
          >"$work/fio-d$n-$i.json"
      ) &
      pids+=($!)
      fios+=("fio-d$n-$i.json")
    done
    for i in "${pids[@]}"; do wait "$i"; done
    say "  fio-d$n: $("$python" -c "import json,sys;print(f\"{sum(json.load(open(p))['jobs'][0]['read']['iops'] for p in sys.argv[1:]):.0f} IOPS\")" "${fios[@]/#/$work/}") ($n disk(s), depth $qd per disk, bs $bs)"
    point "$n" "$n" "d$n.json" "$(IFS=,; echo "${fios[*]}")" - "$((n * iops))" "$((after - before))"
  done
  clean_disks
  disks_made=0
}

run_sweep() {
  local k=$1 start
  start=$(date +%s)
  fio_seconds=5 fio_ramp=1
  [[ $quick -eq 0 ]] || { fio_seconds=1; fio_ramp=0; }
  new_work "$k"
  if [[ $quick -eq 1 ]]; then
    say "$k --quick (tiny sizes; the full sweep takes about $((expected[$k] / 60)) min $((expected[$k] % 60)) s)"
  else
    say "$k: expected duration about $((expected[$k] / 60)) min $((expected[$k] % 60)) s (2 cores; more on a busy machine)"
  fi
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  "sweep_${k//-/_}"
  local seconds=$(($(date +%s) - start))
  param seconds "$seconds"
  "$python" "$repo/scripts/sweep_chart.py" build --knob "$k" --work "$work" --out "$out" \
    --command "$command_line" --quick "$quick" --plots-dir "$fixtures" --load-before "$load"
  say "$k: done in $seconds s: $out/$k.md $out/$k.csv $out/$k-throughput.png $out/$k-latency.png"
}

if [[ "$knob" == all ]]; then
  total=0
  for k in "${knobs[@]}"; do total=$((total + expected[$k])); done
  [[ $quick -eq 1 ]] || say "all: expected duration about $((total / 60)) min"
  failed=()
  for k in "${knobs[@]}"; do
    "${BASH_SOURCE[0]}" "$k" $([[ $quick -eq 1 ]] && echo --quick) --out "$out" || failed+=("$k")
  done
  [[ ${#failed[@]} -eq 0 ]] || { say "failed: ${failed[*]}"; exit 1; }
else
  run_sweep "$knob"
fi
