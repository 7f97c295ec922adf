#!/usr/bin/env bash
# The protocol layer's cost, in one run on the same plots: the engine alone (loadgen: challenge
# in -> last result out of the shards, paced like the farmer) against the whole path (farmer-sim -> TLS -> daemon ->
# engine -> TLS -> farmer-sim: challenge sent -> last ChallengeResponse received).
#   1. challenges at a paced rate (both sides open loop): per-challenge latency p50/p99;
#   2. a burst of every challenge at once: time until the last answer.
# The farmer asks for no proofs (thresholds 0), so both sides do the same lookups.
# Usage: scripts/bench-protocol.sh [--copies N] [--challenges M] [--rate R] [--out DIR]
#   --copies N      each selected fixture plot served N times (default 64: 192 plots)
#   --challenges M  challenges per phase (default 300)
#   --rate R        challenges per second in the paced phase (default 20)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
copies=64 challenges=300 rate=20 out="$repo/target/bench-protocol"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --copies) copies=$2; shift 2 ;;
    --challenges) challenges=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bench-protocol: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/make-fixtures.sh >/dev/null
cargo build --release --locked -q -p harvester -p bench --bin harvester --bin farmer-sim --bin loadgen
bin=target/release
rm -rf "$out" && mkdir -p "$out/plots"
for name in k18-og-a k18-og-b k19-og-a; do
  for i in $(seq 1 "$copies"); do
    ln "fixtures/plots/$name.plot" "$out/plots/$name-$i.plot"
  done
done
plots=$(ls "$out/plots" | wc -l)
"$bin/harvester" certs --dir "$out/certs" >/dev/null
cat /proc/loadavg >"$out/loadavg-before"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# $1 = phase name, $2 = rate (0: all at once), $3 = loadgen concurrency
phase() {
  local name=$1 frate=$2 concurrency=$3
  local pace=()
  [[ $frate != 0 ]] && pace=(--rate "$frate")
  "$bin/loadgen" --plots "$out/plots" --challenges "$challenges" --concurrency "$concurrency" \
    "${pace[@]}" --cache warm --mode complete --json "$out/$name-engine.json" >"$out/$name-engine.txt"
  local fport
  fport=$(port)
  cat >"$out/$name.toml" <<EOF
[farmer]
address = "127.0.0.1:$fport"
[tls]
ca_cert = "certs/ca.crt"
cert = "certs/harvester.crt"
key = "certs/harvester.key"
[plots]
folders = ["plots"]
serve_duplicate_ids = true
[engine]
mode = "complete"
direct_io = false
[protocol]
challenges_in_flight_max = 4096
[metrics]
listen = ""
[log]
level = "warn"
EOF
  "$bin/farmer-sim" --listen "127.0.0.1:$fport" --certs "$out/certs" --keys fixtures/farmer-keys.json \
    --challenges "$challenges" --rate "$frate" --seed 7 --pool-share-threshold-secs 0 \
    --propagate-threshold-secs 0 --idle-secs 1 --json "$out/$name-e2e.json" --quiet \
    >"$out/$name-e2e.txt" 2>&1 &
  local fpid=$!
  "$bin/harvester" run --config "$out/$name.toml" 2>"$out/$name-harvester.log" &
  local hpid=$!
  wait "$fpid" || { echo "farmer-sim failed:"; cat "$out/$name-e2e.txt" "$out/$name-harvester.log"; kill "$hpid"; exit 1; }
  kill -TERM "$hpid"; wait "$hpid"
}

phase paced "$rate" 64
phase burst 0 "$challenges"

python3 - "$out" "$plots" "$challenges" "$rate" <<'EOF'
import json, sys
out, plots, challenges, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def load(name):
    return json.load(open(f"{out}/{name}.json"))
pe, pf = load("paced-engine"), load("paced-e2e")
be, bf = load("burst-engine"), load("burst-e2e")
e_lat, f_lat = pe["challenge_ms"], pf["latency_ms"]["challenge_last_response"]
e_burst = be["seconds"] * 1000.0
f_burst = bf["latency_ms"]["challenge_last_response"]["max"]
rows = [
    ("paced: per-challenge p50 (ms)", e_lat["p50"], f_lat["p50"]),
    ("paced: per-challenge p99 (ms)", e_lat["p99"], f_lat["p99"]),
    (f"burst: {challenges} challenges, last answer (ms)", e_burst, f_burst),
]
lines = [f"protocol cost: {plots} plots (warm page cache, complete mode), {challenges} challenges "
         f"per phase, paced at {rate}/s; 2 cores, 24 GiB, noisy",
         f"{'':44} {'engine':>10} {'end-to-end':>11} {'ratio':>7}"]
for label, e, f in rows:
    lines.append(f"{label:44} {e:10.2f} {f:11.2f} {f / e if e else float('nan'):7.3f}")
lines.append(f"e2e answers: {bf['responses']} qualities in the burst, invalid {bf['invalid']}, lost {bf['lost']}")
text = "\n".join(lines)
print(text)
open(f"{out}/summary.txt", "w").write(text + "\n")
EOF
