#!/usr/bin/env bash
# The main job end to end on a small built-in example: sample plots made by the reference
# plotter (cached), a private CA and certificates, the farmer simulator and the harvester
# daemon on loopback (mutual TLS), a batch of challenges with every proof and signature
# requested and checked, the latency summary, a look at /metrics, and a clean shutdown.
# Usage: scripts/demo.sh [CHALLENGES]   (default 200)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
challenges=${1:-200}

scripts/make-fixtures.sh
cargo build --release --locked -p harvester -p bench --bin harvester --bin farmer-sim
bin=target/release

work=$(mktemp -d -t harvester-demo.XXXXXX)
farmer_pid=""
harvester_pid=""
cleanup() {
  for pid in $farmer_pid $harvester_pid; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
farmer_port=$(free_port)
metrics_port=$(free_port)

echo "== harvester certs (private CA, farmer and harvester certificates)"
"$bin/harvester" certs --dir "$work/certs" | sed 's/^/   /'

cat >"$work/harvester.toml" <<EOF
[farmer]
address = "127.0.0.1:$farmer_port"

[tls]
ca_cert = "certs/ca.crt"
cert = "certs/harvester.crt"
key = "certs/harvester.key"

[plots]
folders = ["$repo/fixtures/plots", "$repo/fixtures/keysfile"]
keys_file = "$repo/fixtures/keys.toml"

[metrics]
listen = "127.0.0.1:$metrics_port"
EOF

echo "== farmer-sim on 127.0.0.1:$farmer_port: $challenges challenges, requesting every proof and signature"
"$bin/farmer-sim" --listen "127.0.0.1:$farmer_port" --certs "$work/certs" \
  --keys fixtures/farmer-keys.json --challenges "$challenges" --rate 50 --request all \
  --json "$work/report.json" &
farmer_pid=$!

echo "== harvester run --config $work/harvester.toml (log: $work/harvester.log)"
"$bin/harvester" run --config "$work/harvester.toml" 2>"$work/harvester.log" &
harvester_pid=$!

status=0
wait "$farmer_pid" || status=$?
farmer_pid=""
if [[ $status -ne 0 ]]; then
  echo "farmer-sim failed (exit $status); harvester log:" >&2
  cat "$work/harvester.log" >&2
  exit "$status"
fi

echo
echo "== /metrics is at http://127.0.0.1:$metrics_port/metrics (a few lines):"
exec 3<>"/dev/tcp/127.0.0.1/$metrics_port"
printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
grep -E '^harvester_(challenges_total|challenge_responses_total|proofs_total|signatures_total|plots)[ {]' <&3 \
  | sed 's/^/   /' || true
exec 3<&-

echo
echo "== stopping the harvester (SIGTERM)"
kill -TERM "$harvester_pid"
hstatus=0
wait "$harvester_pid" || hstatus=$?
harvester_pid=""
tail -n 3 "$work/harvester.log" | sed 's/^/   /'
if [[ $hstatus -ne 0 ]]; then
  echo "harvester exited with $hstatus" >&2
  exit "$hstatus"
fi
echo "done: every answer verified, both processes stopped cleanly"
