#!/usr/bin/env bash
# Side by side, in one run, warm page cache: chiapos (a 30-thread pool, as the reference
# harvester runs it) and `harvester prove` on the same plots and challenges.
# Usage: scripts/bench-vs-chiapos.sh [--plots 200] [--challenges 50] [--mode chiapos|complete]
#                                    [--runs 5]
# Prints lookups/s and lookups-with-proofs/s for both, and the ratios, as text and JSON.
# chiapos is timed over its lookups (after opening its provers): one run, tens of seconds.
# Ours is timed as a whole process (start, opening every plot, output): a run lasts about a
# second, so a moment of noise on a shared machine moves it by a third; it runs --runs times
# and the median counts (every run is printed).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plots=200
challenges=50
mode=chiapos
runs=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --plots) plots="$2"; shift 2 ;;
    --challenges) challenges="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "usage: $0 [--plots N] [--challenges M] [--mode chiapos|complete] [--runs R]" >&2; exit 2 ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive number" >&2; exit 2; }
python=$("$repo/scripts/oracle-venv.sh" | tail -n 1)
"$repo/scripts/make-fixtures.sh" >/dev/null
cargo build --release --locked -p harvester --manifest-path "$repo/Cargo.toml" --quiet
bin="$repo/target/release/harvester"
work="$repo/target/bench-vs-chiapos"
rm -rf "$work" && mkdir -p "$work/plots"
# N plots: hard links to the k=18 fixtures (several plot ids), so the page cache holds them.
mapfile -t sources < <(ls "$repo"/fixtures/plots/k18-*.plot)
for ((i = 0; i < plots; i++)); do
  ln "${sources[i % ${#sources[@]}]}" "$work/plots/p$i.plot"
done
for ((i = 0; i < challenges; i++)); do printf 'bench-%s' "$i" | sha256sum | cut -d' ' -f1; done >"$work/challenges.txt"
cat "$work"/plots/*.plot >/dev/null # warm the cache

ours() { # $1 = extra flag; prints the seconds of each of $runs runs, comma-separated
  local start end all=()
  for ((r = 0; r < runs; r++)); do
    start=$(date +%s.%N)
    "$bin" prove "$work"/plots/*.plot --challenges-file "$work/challenges.txt" --mode "$mode" $1 >/dev/null 2>"$work/ours.log"
    end=$(date +%s.%N)
    all+=("$(echo "$end - $start" | bc -l)")
  done
  (IFS=,; echo "${all[*]}")
}
chiapos() { # $1 = extra flag; prints JSON
  "$python" "$repo/scripts/oracle.py" bench-prove --threads 30 --plots "$work"/plots/*.plot \
    --challenges-file "$work/challenges.txt" $1
}
lookups=$((plots * challenges))
c_q=$(chiapos "")
o_q=$(ours "")
c_p=$(chiapos "--proofs")
o_p=$(ours "--proofs")
"$python" - "$lookups" "$c_q" "$o_q" "$c_p" "$o_p" "$mode" <<'PY'
import json, os, sys
import statistics
lookups = int(sys.argv[1]); cq = json.loads(sys.argv[2]); cp = json.loads(sys.argv[4]); mode = sys.argv[6]
oq_runs = [lookups / float(s) for s in sys.argv[3].split(",")]
op_runs = [lookups / float(s) for s in sys.argv[5].split(",")]
res = {
    "machine": f"{os.cpu_count()} cores, warm page cache", "plots": cq["plots"], "lookups": lookups,
    "mode": mode,
    "chiapos_lookups_per_second": cq["lookups_per_second"],
    "ours_lookups_per_second": statistics.median(oq_runs),
    "ours_lookups_per_second_runs": [round(x) for x in oq_runs],
    "chiapos_lookups_with_proofs_per_second": cp["lookups_per_second"],
    "ours_lookups_with_proofs_per_second": statistics.median(op_runs),
    "ours_lookups_with_proofs_per_second_runs": [round(x) for x in op_runs],
}
res["ratio_lookups"] = res["ours_lookups_per_second"] / res["chiapos_lookups_per_second"]
res["ratio_lookups_with_proofs"] = (res["ours_lookups_with_proofs_per_second"]
                                    / res["chiapos_lookups_with_proofs_per_second"])
print(f"{lookups} lookups on {cq['plots']} k=18 plots ({res['machine']}), ours in {mode} mode, median of {len(oq_runs)} runs")
print(f"  quality lookups/s:          chiapos {res['chiapos_lookups_per_second']:>10.0f}   ours {res['ours_lookups_per_second']:>10.0f}   ratio {res['ratio_lookups']:.1f}x")
print(f"  lookups + all proofs /s:    chiapos {res['chiapos_lookups_with_proofs_per_second']:>10.0f}   ours {res['ours_lookups_with_proofs_per_second']:>10.0f}   ratio {res['ratio_lookups_with_proofs']:.1f}x")
print(f"  ours, every run:            qualities {min(oq_runs):.0f} to {max(oq_runs):.0f}, with proofs {min(op_runs):.0f} to {max(op_runs):.0f}")
print(json.dumps(res))
PY
