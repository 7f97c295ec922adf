#!/usr/bin/env bash
# The engine against its baselines, on the same files in one go: fio random reads (the
# engine's mix of read sizes, same queue depth, O_DIRECT, io_uring), the engine cold (O_DIRECT) and warm, and
# chiapos (30-thread pool) warm and from a cold page cache. Prints the ratios.
# Every run serves the same plots: the fixtures, each `--copies` times (loadgen opens the file
# once per copy under distinct keys; chiapos gets one DiskProver per copy). The engine runs with
# one shard per disk and with one per core (`--shards-per-disk`, the daemon's
# `engine.shards_per_disk`), since a warm lookup is CPU-bound.
# chiapos "cold" starts with the plots evicted from the page cache (POSIX_FADV_DONTNEED) and
# reads buffered, so the cache warms up during its run: an upper bound for chiapos on cold
# disks. The engine's cold run reads every byte with O_DIRECT, so it stays cold throughout.
# Usage: scripts/bench-engine.sh [--copies 50] [--challenges 100] [--reads-in-flight 64]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
copies=50
challenges=100
qd=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --copies) copies="$2"; shift 2 ;;
    --challenges) challenges="$2"; shift 2 ;;
    --reads-in-flight) qd="$2"; shift 2 ;;
    *) echo "usage: $0 [--copies N] [--challenges M] [--reads-in-flight Q]" >&2; exit 2 ;;
  esac
done
command -v fio >/dev/null || { echo "bench-engine: needs fio (apt-get install fio)" >&2; exit 1; }
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
"$repo/scripts/make-fixtures.sh" >/dev/null
cargo build --release --locked -p bench --bin loadgen --manifest-path "$repo/Cargo.toml" --quiet
out="$repo/target/bench-engine"
mkdir -p "$out"
plots="$repo/fixtures/plots"
loadgen="$repo/target/release/loadgen"

cores=$(nproc)
engine() { # cache shards json
  "$loadgen" --plots "$plots" --copies "$copies" --challenges "$challenges" --reads-in-flight "$qd" \
    --concurrency 8 --cache "$1" --shards-per-disk "$2" --json "$3"
}
for shards in 1 "$cores"; do engine warm "$shards" "$out/warm-$shards.json"; done
cp "$out/warm-1.json" "$out/warm.json"
# Cold: this virtual disk's speed drifts by 20 % within a minute, so fio and the engine take
# turns, three rounds of fio then the engine at 1 and at nproc shards; each ratio is against
# the fio run just before it, and the report gives every round and the median.
files=$(ls "$plots"/*.plot | paste -sd:)
rounds=3
for ((r = 1; r <= rounds; r++)); do
  if [[ $r == 1 ]]; then
    engine cold 1 "$out/cold-1-r1.json"
    # fio replays the engine's mix of read sizes (whole 4 KiB blocks: 4k/20:8k/56:12k/20:16k/4
    # on the fixtures), so both move the same bytes per read.
    bssplit=$("$python" -c "import json;print(json.load(open('$out/cold-1-r1.json'))['fio_bssplit'])")
  fi
  fio --name=baseline --filename="$files" --rw=randread --bssplit="$bssplit" --direct=1 --ioengine=io_uring \
    --iodepth="$qd" --time_based --runtime=5 --ramp_time=1 --randrepeat=0 --norandommap \
    --output-format=json >"$out/fio-r$r.json"
  [[ $r == 1 ]] || engine cold 1 "$out/cold-1-r$r.json"
  engine cold "$cores" "$out/cold-$cores-r$r.json"
done
cp "$out/cold-1-r1.json" "$out/cold.json"
# loadgen's challenges: sha256("loadgen" || i as 4 bytes, big-endian).
"$python" -c 'import hashlib, sys
for i in range(int(sys.argv[1])): print(hashlib.sha256(b"loadgen" + i.to_bytes(4, "big")).hexdigest())' \
  "$challenges" >"$out/challenges.txt"
"$python" "$repo/scripts/oracle.py" bench-prove --threads 30 --copies "$copies" --plots "$plots"/*.plot \
  --challenges-file "$out/challenges.txt" >"$out/chiapos.json"
"$python" -c '
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
' "$plots"/*.plot
"$python" "$repo/scripts/oracle.py" bench-prove --threads 30 --copies "$copies" --no-warm \
  --plots "$plots"/*.plot --challenges-file "$out/challenges.txt" >"$out/chiapos-cold.json"
"$python" - "$out" "$copies" "$cores" "$rounds" <<'PY'
import json, os, statistics, sys
out, copies, cores, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cold = json.load(open(f"{out}/cold.json")); warm = json.load(open(f"{out}/warm.json"))
warm_n = json.load(open(f"{out}/warm-{cores}.json"))
load = lambda name: json.load(open(f"{out}/{name}.json"))
fios = [load(f"fio-r{r}")["jobs"][0]["read"]["iops"] for r in range(1, rounds + 1)]
fio_bw = [load(f"fio-r{r}")["jobs"][0]["read"]["bw_bytes"] for r in range(1, rounds + 1)]
ones = [load(f"cold-1-r{r}")["read_iops"] for r in range(1, rounds + 1)]
ns = [load(f"cold-{cores}-r{r}")["read_iops"] for r in range(1, rounds + 1)]
chia = json.load(open(f"{out}/chiapos.json"))
chia_cold = json.load(open(f"{out}/chiapos-cold.json"))
print(f"machine: {os.cpu_count()} cores; {cold['plots']} plots ({cold['files']} files x {copies}), "
      f"{cold['challenges']} challenges, reads in flight {cold['reads_in_flight_max']}")
print(f"  cold read IOPS by round (fio randread O_DIRECT io_uring, --bssplit={cold['fio_bssplit']}: "
      f"the engine's mix, mean {cold['read_bytes_mean']:.0f} B; the engine just after):")
for r in range(rounds):
    print(f"    round {r + 1}: fio {fios[r]:.0f} ({fio_bw[r] / 1e6:.0f} MB/s); engine 1 shard {ones[r]:.0f} -> "
          f"{ones[r] / fios[r]:.2f}; {cores} shards {ns[r]:.0f} -> {ns[r] / fios[r]:.2f}")
print(f"  engine cold read IOPS / fio, median of {rounds}: 1 shard per disk "
      f"{statistics.median(o / f for o, f in zip(ones, fios)):.2f}, {cores} shards per disk "
      f"{statistics.median(n / f for n, f in zip(ns, fios)):.2f}")
print(f"  chiapos warm (30 threads, {chia['plots']} provers): {chia['lookups_per_second']:.0f} lookups/s")
print(f"  engine warm, 1 shard per disk: {warm['lookups_per_second']:.0f} lookups/s -> "
      f"{warm['lookups_per_second'] / chia['lookups_per_second']:.1f}x chiapos")
print(f"  engine warm, {cores} shards per disk: {warm_n['lookups_per_second']:.0f} lookups/s -> "
      f"{warm_n['lookups_per_second'] / chia['lookups_per_second']:.1f}x chiapos")
print(f"  engine cold: {cold['lookups_per_second']:.0f} lookups/s; chiapos from a cold cache (30 threads, "
      f"cache warming as it runs): {chia_cold['lookups_per_second']:.0f} lookups/s -> "
      f"{cold['lookups_per_second'] / chia_cold['lookups_per_second']:.1f}x")
print(f"  challenge latency cold p50/p99/p99.9/max ms: {cold['challenge_ms']['p50']:.1f} / {cold['challenge_ms']['p99']:.1f} / "
      f"{cold['challenge_ms']['p999']:.1f} / {cold['challenge_ms']['max']:.1f}; read p50/p99 ms {cold['read_ms']['p50']:.2f} / {cold['read_ms']['p99']:.2f}")
print(f"  peak RSS {cold['peak_rss_bytes'] / 2**20:.1f} MiB, open files {cold['open_files']}, CPU {cold['cpu_seconds']:.2f} s")
PY
