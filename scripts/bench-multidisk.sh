#!/usr/bin/env bash
# The engine over several throttled loop "disks" (root only): N loop devices (ext4 on image files
# under target/bench-multidisk), each with two k=18 fixture plots and its own cgroup-v1 blkio
# group limited to --iops read IOPS; loadgen (cold, O_DIRECT, one shard per disk, each shard
# thread in its disk's cgroup) runs over 1 disk, then all N, then all N with the last disk stuck
# (1 byte/s) and a short job deadline. Prints read IOPS against the sum of the limits, per disk.
# Last, one slow disk (--slow-iops) among the others, chiapos against the engine: the same
# challenges all at once on the same plots (one copy each), both given --slow-seconds; chiapos
# (30 threads, its page cache kept cold) in a cgroup with the same per-disk limits. Prints the
# lookups each answered per second, on the healthy disks and on the slow one.
# Usage: sudo scripts/bench-multidisk.sh [--disks 4] [--iops 150] [--challenges 40] [--copies 20]
#             [--concurrency 4] [--deadline-ms 15000] [--slow-iops 3] [--slow-seconds 30]
# Everything made carries the prefix bench-multidisk (images and mounts under
# target/bench-multidisk, cgroups /sys/fs/cgroup/blkio/bench-multidisk-loopN); a trap removes it
# on exit, also on failure, and a run first removes what a killed run left. Reports (JSON) stay in
# target/bench-multidisk-results. Two runs at once on one machine are not supported.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
disks=4
iops=150
challenges=40
copies=20
concurrency=4
deadline_ms=15000
slow_iops=3
slow_seconds=30
usage() { sed -n '11,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { usage >&2; exit 2; }
  case "$1" in
    --disks) disks="$2" ;;
    --iops) iops="$2" ;;
    --challenges) challenges="$2" ;;
    --copies) copies="$2" ;;
    --concurrency) concurrency="$2" ;;
    --deadline-ms) deadline_ms="$2" ;;
    --slow-iops) slow_iops="$2" ;;
    --slow-seconds) slow_seconds="$2" ;;
    *) usage >&2; exit 2 ;;
  esac
  shift 2
done
for v in "$disks" "$iops" "$challenges" "$copies" "$concurrency" "$deadline_ms" "$slow_iops" "$slow_seconds"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench-multidisk: not a positive number: $v" >&2; exit 2; }
done
# shellcheck source=lib/loopdisk.sh
source "$repo/scripts/lib/loopdisk.sh"
say() { echo "bench-multidisk: $*" >&2; }
why=$(loopdisk_unusable)
[[ -z "$why" ]] || { say "$why"; exit 1; }
cg_root=$loopdisk_cg_root

prefix=bench-multidisk
lab="$repo/target/$prefix"
out="$repo/target/$prefix-results"

# --- Cleanup, by prefix (scripts/lib/loopdisk.sh): cgroups, mounts, loop devices, the lab ---
clean() { loopdisk_clean "$prefix" "$lab"; }
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  clean
  exit "$rc"
}
clean # what a killed run left
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Fixtures and loadgen ---
fixtures="$repo/fixtures/plots"
mapfile -t plots < <(ls "$fixtures"/k18-*.plot 2>/dev/null | head -n 2)
if [[ ${#plots[@]} -lt 2 ]]; then
  "$repo/scripts/make-fixtures.sh" >/dev/null
  mapfile -t plots < <(ls "$fixtures"/k18-*.plot | head -n 2)
fi
cargo build --release --locked -p bench --bin loadgen --manifest-path "$repo/Cargo.toml" --quiet
loadgen="$repo/target/release/loadgen"
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)

# --- The disks: image, loop device, ext4, mount, plots, a throttled cgroup ---
mkdir -p "$lab" "$out"
for ((i = 0; i < disks; i++)); do loopdisk_add "$prefix" "$lab" "$i" "$iops" "${plots[@]}"; done
mounts=("${loopdisk_mounts[@]}") devnos=("${loopdisk_devnos[@]}")
cgroups=("${loopdisk_cgroups[@]}") names=("${loopdisk_names[@]}")
say "disks: ${names[*]} (${iops} read IOPS each), plots: ${plots[*]##*/} x $copies copies"

# Reads the kernel serviced for each disk in its cgroup (blkio.throttle.io_serviced, Read).
serviced() {
  local i
  for ((i = 0; i < disks; i++)); do
    awk -v d="${devnos[$i]}" '$1 == d && $2 == "Read" { n = $3 } END { printf "%s=%d ", "'"${names[$i]}"'", n }' \
      "${cgroups[$i]}/blkio.throttle.io_serviced"
  done
}
run() { # run NAME MOUNTS... [-- EXTRA LOADGEN FLAGS]
  local tag=$1 before start
  shift
  local args=()
  while [[ $# -gt 0 && "$1" != -- ]]; do args+=(--plots "$1"); shift; done
  [[ $# -gt 0 ]] && shift
  before=$(serviced)
  start=$(date +%s%N)
  "$loadgen" "${args[@]}" --copies "$copies" --challenges "$challenges" --concurrency "$concurrency" \
    --cache cold --blkio-cgroup-prefix "$prefix" --json "$out/$tag.json" "$@"
  echo "  loadgen process: $((($(date +%s%N) - start) / 1000000)) ms wall; kernel reads per cgroup before: $before after: $(serviced)"
}

echo "== 1 disk"
run one "${mounts[0]}"
echo "== $disks disks"
run all "${mounts[@]}"
echo "== $disks disks, ${names[$((disks - 1))]} stuck (1 byte/s), job deadline $deadline_ms ms"
echo "${devnos[$((disks - 1))]} 1" >"${cgroups[$((disks - 1))]}/blkio.throttle.read_bps_device"
run stuck "${mounts[@]}" -- --deadline-ms "$deadline_ms"
echo "${devnos[$((disks - 1))]} 0" >"${cgroups[$((disks - 1))]}/blkio.throttle.read_bps_device"

# --- One slow disk: chiapos and the engine, same plots, same challenges, same time ---
last=$((disks - 1))
# 8 challenges a second is about what the healthy disks can serve (3 x 150 IOPS / 9 reads per
# lookup / 6 plots), so both have more work than the window.
slow_challenges=$((slow_seconds * 8))
echo "== $disks disks, ${names[$last]} slow ($slow_iops read IOPS): chiapos vs the engine, $slow_challenges challenges at once, ${slow_seconds} s each"
echo "${devnos[$last]} $slow_iops" >"${cgroups[$last]}/blkio.throttle.read_iops_device"
# loadgen's challenges, for chiapos too.
"$python" -c 'import hashlib, sys
for i in range(int(sys.argv[1])): print(hashlib.sha256(b"loadgen" + i.to_bytes(4, "big")).hexdigest())' \
  "$slow_challenges" >"$out/slow-challenges.txt"
plot_args=() slow_plots=()
for m in "${mounts[@]}"; do plot_args+=(--plots "$m"); slow_plots+=("$m"/*.plot); done
# The engine: every challenge in flight at once, the slow disk's jobs answered at the end of
# the window (their deadline), so both count what they answered in the same time.
"$loadgen" "${plot_args[@]}" --copies 1 --challenges "$slow_challenges" \
  --concurrency "$slow_challenges" --deadline-ms "$((slow_seconds * 1000))" --cache cold \
  --blkio-cgroup-prefix "$prefix" --json "$out/slow-engine.json" >/dev/null
# chiapos: one process in one cgroup with the same limit on each device.
cg_chiapos="$cg_root/$prefix-chiapos"
mkdir "$cg_chiapos"
for ((i = 0; i < disks; i++)); do
  limit=$iops
  [[ $i == "$last" ]] && limit=$slow_iops
  echo "${devnos[$i]} $limit" >"$cg_chiapos/blkio.throttle.read_iops_device"
done
sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg_chiapos" "$python" "$repo/scripts/oracle.py" \
  bench-prove --threads 30 --keep-cold --seconds "$slow_seconds" --plots "${slow_plots[@]}" \
  --challenges-file "$out/slow-challenges.txt" >"$out/slow-chiapos.json"
echo "${devnos[$last]} 0" >"${cgroups[$last]}/blkio.throttle.read_iops_device"
echo "${devnos[$last]} $iops" >"${cgroups[$last]}/blkio.throttle.read_iops_device"

python3 - "$out" "$disks" "$iops" "${names[$((disks - 1))]}" "${mounts[$last]}" "$slow_iops" <<'PY'
import json, os, sys
out, n, iops, stuck_disk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slow_mount, slow_iops = sys.argv[5], int(sys.argv[6])
r = {t: json.load(open(f"{out}/{t}.json")) for t in ("one", "all", "stuck")}
def per_disk(j, skip=None):
    return ", ".join(f"{d['disk']} {d['read_iops']:.0f}" for d in j["disks"] if d["disk"] != skip)
print(f"\nmachine: {os.cpu_count()} cores; {n} loop disks x {iops} read IOPS (blk-throttle), "
      f"{r['one']['plots']} plots per disk, {r['one']['challenges']} challenges, {r['one']['concurrency']} at a time, cold (O_DIRECT)")
for t, disks in (("one", 1), ("all", n)):
    j = r[t]
    limit = disks * iops
    print(f"  {disks} disk(s): {j['read_iops']:.0f} read IOPS of {limit} limit ({j['read_iops'] / limit:.2f}), "
          f"{j['lookups_per_second']:.0f} lookups/s, challenge p50 {j['challenge_ms']['p50']:.0f} ms max {j['challenge_ms']['max']:.0f} ms, "
          f"timeouts {j['timeouts']}; per disk: {per_disk(j)}")
print(f"  scaling {n} disks / 1 disk: read IOPS {r['all']['read_iops'] / r['one']['read_iops']:.2f}x, "
      f"lookups/s {r['all']['lookups_per_second'] / r['one']['lookups_per_second']:.2f}x")
s, a = r["stuck"], r["all"]
healthy = lambda j: sum(d["read_iops"] for d in j["disks"] if d["disk"] != stuck_disk)
stuck = next(d for d in s["disks"] if d["disk"] == stuck_disk)
print(f"  {stuck_disk} stuck, deadline {s['deadline_ms']} ms: the other {n - 1} disks {healthy(s):.0f} read IOPS of "
      f"{(n - 1) * iops} limit, {healthy(s) / healthy(a):.2f} of what they did in the {n}-disk run ({healthy(a):.0f}); "
      f"run {s['seconds']:.1f} s vs {a['seconds']:.1f} s; challenge p50 {s['challenge_ms']['p50']:.0f} ms max {s['challenge_ms']['max']:.0f} ms; "
      f"jobs timed out {s['timeouts']}, rejected {s['rejected']}; {stuck_disk}: {stuck['reads']} reads, degraded {stuck['degraded_episodes']}x; "
      f"per disk: {per_disk(s, stuck_disk)}")
e, c = json.load(open(f"{out}/slow-engine.json")), json.load(open(f"{out}/slow-chiapos.json"))
e_slow = sum(d["lookups_answered"] for d in e["disks"] if d["disk"] == stuck_disk)
e_healthy = e["lookups_answered"] - e_slow
c_slow = sum(v for p, v in c["lookups_by_plot"].items() if p.startswith(slow_mount + "/"))
c_healthy = c["lookups"] - c_slow
es, cs = e["seconds"], c["seconds"]
print(f"  {stuck_disk} slow ({slow_iops} read IOPS), {e['challenges']} challenges x {e['plots']} plots submitted at once:")
print(f"    lookups answered per second on the {n - 1} healthy disks: engine {e_healthy / es:.1f}, chiapos (30 threads) "
      f"{c_healthy / cs:.1f} -> {(e_healthy / es) / max(c_healthy / cs, 1e-9):.1f}x")
print(f"    on the slow disk: engine {e_slow / es:.2f}, chiapos {c_slow / cs:.2f}; in all: engine {e['lookups_answered'] / es:.1f}, "
      f"chiapos {c['lookups'] / cs:.1f} -> {(e['lookups_answered'] / es) / max(c['lookups'] / cs, 1e-9):.1f}x "
      f"(engine {es:.1f} s, chiapos {cs:.1f} s; chiapos finished {c['lookups']} of {c['lookups_submitted']})")
print("JSON: " + " ".join(f"{out}/{t}.json" for t in [*r, "slow-engine", "slow-chiapos"]))
PY
