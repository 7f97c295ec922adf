#!/usr/bin/env bash
# The engine against its baselines, on the same files in one go: fio random reads (same mean
# read size, same queue depth, O_DIRECT, io_uring), the engine cold (O_DIRECT) and warm, and
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
for cache in cold warm; do
  for shards in 1 "$cores"; do
    "$loadgen" --plots "$plots" --copies "$copies" --challenges "$challenges" --reads-in-flight "$qd" \
      --concurrency 8 --cache "$cache" --shards-per-disk "$shards" --json "$out/$cache-$shards.json"
  done
done
cp "$out/cold-1.json" "$out/cold.json"
cp "$out/warm-1.json" "$out/warm.json"
mean=$("$python" -c "import json;print(int(json.load(open('$out/cold.json'))['read_bytes_mean']))")
# The nearest multiple of 4 KiB to the engine's mean read (reads are whole 4 KiB blocks).
bs=$(( (mean + 2048) / 4096 * 4096 ))
files=$(ls "$plots"/*.plot | paste -sd:)
fio --name=baseline --filename="$files" --rw=randread --bs="$bs" --direct=1 --ioengine=io_uring \
  --iodepth="$qd" --time_based --runtime=10 --ramp_time=1 --randrepeat=0 --norandommap \
  --output-format=json >"$out/fio.json"
for ((i = 0; i < challenges; i++)); do printf 'loadgen%08d' "$i" | sha256sum | cut -d' ' -f1; done >"$out/challenges.txt"
"$python" "$repo/scripts/oracle.py" bench-prove --threads 30 --copies "$copies" --plots "$plots"/*.plot \
  --challenges-file "$out/challenges.txt" >"$out/chiapos.json"
"$python" -c '
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
' "$plots"/*.plot
"$python" "$repo/scripts/oracle.py" bench-prove --threads 30 --copies "$copies" --no-warm \
  --plots "$plots"/*.plot --challenges-file "$out/challenges.txt" >"$out/chiapos-cold.json"
"$python" - "$out" "$copies" "$cores" <<'PY'
import json, os, sys
out, copies, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cold = json.load(open(f"{out}/cold.json")); warm = json.load(open(f"{out}/warm.json"))
cold_n = json.load(open(f"{out}/cold-{cores}.json")); warm_n = json.load(open(f"{out}/warm-{cores}.json"))
fio = json.load(open(f"{out}/fio.json"))["jobs"][0]["read"]
chia = json.load(open(f"{out}/chiapos.json"))
chia_cold = json.load(open(f"{out}/chiapos-cold.json"))
print(f"machine: {os.cpu_count()} cores; {cold['plots']} plots ({cold['files']} files x {copies}), "
      f"{cold['challenges']} challenges, reads in flight {cold['reads_in_flight_max']}")
print(f"  fio randread bs={fio['bs_mean'] if 'bs_mean' in fio else ''} O_DIRECT io_uring: {fio['iops']:.0f} IOPS")
print(f"  engine cold (O_DIRECT): {cold['read_iops']:.0f} read IOPS (mean read {cold['read_bytes_mean']:.0f} B), "
      f"{cold['lookups_per_second']:.0f} lookups/s -> {cold['read_iops'] / fio['iops']:.2f} of fio")
print(f"  engine cold, {cores} shards per disk: {cold_n['read_iops']:.0f} read IOPS -> "
      f"{cold_n['read_iops'] / fio['iops']:.2f} of fio")
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
