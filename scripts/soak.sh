#!/usr/bin/env bash
# Soak: the daemon serving N plots (hard links of the selected fixture plots, both key kinds)
# while farmer-sim sends M challenges at a steady rate and asks for every proof and both
# signatures; a sample of the accepted answers is re-checked with the reference (oracle.py).
# The harvester's RSS and open files are sampled every second. Exits 1 on any invalid, lost or
# refused answer, a failed reference check, or RSS / open files not flat. docs/reliability.md
# has the arithmetic behind the defaults and the recorded figures.
# Usage: scripts/soak.sh [--plots N] [--challenges M] [--rate R] [--request all|formula]
#                        [--difficulty D] [--disks G] [--sample S] [--out DIR]
#   --plots N       plot files served (default 10000): k18-og-a, k18-og-b, k19-og-a (memo) and
#                   k18-kf-a (keys file) in turn
#   --challenges M  challenges sent (default 1000)
#   --rate R        challenges per second (default 1.2: about 14 minutes with the defaults)
#   --request K     all (default): a proof, a partial and a header signature for every quality;
#                   formula: the original farmer's choice (with --difficulty D, default 1)
#   --disks G       [[disks]] groups the plots are split into, one shard thread each (default 2)
#   --sample S      dumped answers re-checked with the reference (default 500)
#   --out DIR       work folder, kept (default ${CARGO_TARGET_DIR:-target}/soak)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
plots=10000 challenges=1000 rate=1.2 request=all difficulty=1 disks=2 sample=500
target=${CARGO_TARGET_DIR:-$repo/target}
out="$target/soak"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --plots) plots=$2; shift 2 ;;
    --challenges) challenges=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --request) request=$2; shift 2 ;;
    --difficulty) difficulty=$2; shift 2 ;;
    --disks) disks=$2; shift 2 ;;
    --sample) sample=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $request == all || $request == formula ]] || { echo "soak: --request all|formula" >&2; exit 2; }
for v in "$plots" "$challenges" "$disks" "$sample" "$difficulty"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "soak: $v is not a positive integer" >&2; exit 2; }
done

# The daemon keeps every plot open: raise the soft limit of open files if it is too low.
want_fds=$((plots + 1024))
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $want_fds ]]; then
  ulimit -n "$want_fds" 2>/dev/null || {
    echo "soak: $plots plots need ulimit -n >= $want_fds (hard limit $(ulimit -Hn))" >&2
    exit 2
  }
fi

scripts/make-fixtures.sh >/dev/null
cargo build --release --locked -q -p harvester -p bench --bin harvester --bin farmer-sim
bin="$target/release"
python_ref="$repo/.venv/bin/python"

rm -rf "$out" && mkdir -p "$out"
out=$(cd "$out" && pwd)
farmer_pid="" harvester_pid="" sampler_pid=""
cleanup() {
  for pid in $sampler_pid $farmer_pid $harvester_pid; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "== $plots plot files (hard links) in $out/plots, $disks disk groups"
python3 - "$repo/fixtures" "$out/plots" "$plots" "$disks" <<'EOF'
import os, sys
fixtures, dest, n, groups = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# (source, keys-file plot): a keys-file plot is matched by its file name, so each copy keeps
# the name and gets its own folder.
kinds = [("plots/k18-og-a.plot", False), ("plots/k18-og-b.plot", False),
         ("plots/k19-og-a.plot", False), ("keysfile/k18-kf-a.plot", True)]
for i in range(n):
    src, keys_file = kinds[i % len(kinds)]
    disk = f"{dest}/disk{(i // len(kinds)) % groups}"
    name = os.path.basename(src)
    path = f"{disk}/kf/{i:06d}/{name}" if keys_file else f"{disk}/{name[:-5]}-{i:06d}.plot"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.link(f"{fixtures}/{src}", path)
EOF
"$bin/harvester" certs --dir "$out/certs" >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fport=$(port)
mport=$(port)
{
  cat <<EOF
[farmer]
address = "127.0.0.1:$fport"
[tls]
ca_cert = "certs/ca.crt"
cert = "certs/harvester.crt"
key = "certs/harvester.key"
[plots]
folders = ["plots"]
keys_file = "$repo/fixtures/keys.toml"
serve_duplicate_ids = true
plots_max = $((plots + 16))
EOF
  for g in $(seq 0 $((disks - 1))); do
    printf '[[disks]]\nname = "soak-%d"\npaths = ["%s/plots/disk%d"]\n' "$g" "$out" "$g"
  done
  cat <<EOF
[engine]
mode = "complete"
direct_io = false
[protocol]
challenges_in_flight_max = 256
[metrics]
listen = "127.0.0.1:$mport"
[log]
level = "info"
EOF
} >"$out/harvester.toml"

formula=()
[[ $request == formula ]] && formula=(--difficulty "$difficulty")
echo "== farmer-sim: $challenges challenges at $rate/s, --request $request ${formula[*]}"
"$bin/farmer-sim" --listen "127.0.0.1:$fport" --certs "$out/certs" \
  --keys fixtures/farmer-keys.json --challenges "$challenges" --rate "$rate" --seed 1 \
  --request "$request" "${formula[@]}" --json "$out/report.json" --dump "$out/dump.jsonl" \
  --quiet >"$out/farmer-sim.txt" 2>&1 &
farmer_pid=$!

echo "== harvester run --config $out/harvester.toml (log: $out/harvester.log)"
"$bin/harvester" run --config "$out/harvester.toml" 2>"$out/harvester.log" &
harvester_pid=$!

# One line a second: seconds since the harvester started, VmRSS (KiB), open files, threads,
# CPU seconds used so far (user + system).
(
  pid=$harvester_pid t0=${EPOCHREALTIME/./}
  tick=$(getconf CLK_TCK)
  echo "t_secs,rss_kib,fds,threads,cpu_secs"
  while [[ -r /proc/$pid/status ]]; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || break
    [[ -n $rss && -n $ticks ]] || break
    ds=$(((${EPOCHREALTIME/./} - t0) / 100000))
    printf '%d.%d,%s,%s,%s,%s.%02d\n' $((ds / 10)) $((ds % 10)) "$rss" "$fds" "$threads" \
      $((ticks / tick)) $((ticks % tick * 100 / tick))
    sleep 1
  done
) >"$out/samples.csv" &
sampler_pid=$!

started=$SECONDS
fstatus=0
wait "$farmer_pid" || fstatus=$?
farmer_pid=""
elapsed=$((SECONDS - started))
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

curl -fsS "http://127.0.0.1:$mport/metrics" >"$out/metrics.txt" || echo "soak: /metrics unreachable" >&2
kill -TERM "$harvester_pid"
hstatus=0
wait "$harvester_pid" || hstatus=$?
harvester_pid=""

# The reference re-checks a random sample of the dumped answers (the dump may be large).
python3 - "$out/dump.jsonl" "$out/dump-sample.jsonl" "$sample" <<'EOF'
import random, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
random.seed(1)
open(sys.argv[2], "w").writelines(random.sample(lines, min(int(sys.argv[3]), len(lines))))
EOF
ostatus=0
"$python_ref" scripts/oracle.py check-answers --file "$out/dump-sample.jsonl" \
  >"$out/oracle.json" 2>"$out/oracle.err" || ostatus=$?

python3 - "$out" "$plots" "$challenges" "$rate" "$request" "$elapsed" "$fstatus" "$hstatus" \
  "$ostatus" <<'EOF'
import csv, json, re, statistics, sys
out, plots, challenges, rate, request, elapsed = sys.argv[1:7]
fstatus, hstatus, ostatus = map(int, sys.argv[7:10])
r = json.load(open(f"{out}/report.json"))
try:
    metrics = open(f"{out}/metrics.txt").read()
except OSError:
    metrics = ""
served = re.search(r'^harvester_plots\{[^}]*state="served"[^}]*\} (\S+)', metrics, re.M)
served = int(float(served.group(1))) if served else None
try:
    oracle = json.load(open(f"{out}/oracle.json"))
except (OSError, ValueError):
    oracle = {"proofs": 0, "signatures": 0, "failed": "?"}
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
t = [float(x["t_secs"]) for x in rows]
rss = [int(x["rss_kib"]) / 1024 for x in rows]
fds = [int(x["fds"]) for x in rows]
cpu = [float(x["cpu_secs"]) for x in rows]
# Ready: every plot open (the first scan done). Warm-up: from ready, 10% of the rest of the
# run, at least 10 s (buffers, maps and caches sized).
ready = next((i for i, n in enumerate(fds) if n >= int(plots)), len(t) - 1)
warm_until = t[ready] + max(10.0, 0.1 * (t[-1] - t[ready]))
warm = next((i for i in range(ready, len(t)) if t[i] >= warm_until), len(t) - 1)
rss_ref, fds_ref = rss[warm], fds[warm]
after_rss, after_fds = rss[warm:], fds[warm:]
rss_growth = max(after_rss) / rss_ref - 1
# Least-squares slope of RSS after the warm-up, MiB per hour.
n = len(after_rss)
if n > 2:
    tm, rm = statistics.fmean(t[warm:]), statistics.fmean(after_rss)
    den = sum((x - tm) ** 2 for x in t[warm:])
    slope = sum((x - tm) * (y - rm) for x, y in zip(t[warm:], after_rss)) / den * 3600
else:
    slope = 0.0
rss_flat = rss_growth < 0.10
fds_flat = max(after_fds) - min(after_fds) <= 16 and fds[-1] == fds_ref

sig = r["signatures"]
lat = r["latency_ms"]
checks = {
    "farmer-sim passed": fstatus == 0 and r["passed"],
    "no invalid answers": r["invalid"] == 0,
    "no lost answers": r["lost"] == 0,
    "no Error answers": r["errors"]["total"] == 0,
    "no disconnects": r["disconnects"] == 0,
    "all plots served": served == int(plots),
    "reference check of the sample": ostatus == 0 and oracle.get("failed") == 0,
    "RSS flat (growth after warm-up < 10%)": rss_flat,
    "open files flat (constant after warm-up)": fds_flat,
    "harvester stopped cleanly": hstatus == 0,
}
def lat_row(name):
    l = lat[name]
    return f"{l['count']:>8} {l['p50']:>9.2f} {l['p99']:>9.2f} {l['p99_9']:>9.2f} {l['max']:>9.2f}"
lines = [
    f"soak: {plots} plots, {challenges} challenges at {rate}/s, --request {request}, "
    f"{elapsed} s",
    f"  plots served             {served}",
    f"  challenges               {r['challenges']}",
    f"  qualities (distinct)     {r['qualities']}   (responses {r['responses']})",
    f"  proofs valid/requested   {r['proofs']['valid']}/{r['proofs']['requested']}",
    f"  partials valid/requested {sig['partial']['valid']}/{sig['partial']['requested']}",
    f"  headers valid/requested  {sig['header']['valid']}/{sig['header']['requested']}",
    f"  signatures by kind       keys_file {sig['kinds']['keys_file']}, memo {sig['kinds']['memo']}",
    f"  invalid                  {r['invalid']}",
    f"  lost                     {r['lost']}",
    f"  Error answers            {r['errors']['total']}",
    f"  reference check          {oracle.get('proofs')} proofs + {oracle.get('signatures')} "
    f"signatures sampled, {oracle.get('failed')} failed",
    f"  latency (ms)                  count       p50       p99     p99.9       max",
    f"    challenge, first answer  {lat_row('challenge_first_response')}",
    f"    challenge, last answer   {lat_row('challenge_last_response')}",
    f"    proof                    {lat_row('proof')}",
    f"    signature                {lat_row('signature')}",
    f"  RSS MiB    first {rss[0]:.1f}  after warm-up ({t[warm]:.0f} s) {rss_ref:.1f}  "
    f"last {rss[-1]:.1f}  max {max(rss):.1f}  growth {rss_growth * 100:+.1f}%  "
    f"slope {slope:+.2f} MiB/h",
    f"  open files first {fds[0]}  after warm-up {fds_ref}  last {fds[-1]}  max {max(fds)}  "
    f"min after warm-up {min(after_fds)}",
    f"  harvester CPU {cpu[-1]:.0f} s in all, {cpu[ready]:.0f} s until every plot was open "
    f"({t[ready]:.0f} s), then {(cpu[-1] - cpu[ready]) / max(1, r['challenges']):.3f} s "
    f"per challenge",
    f"  samples    {len(rows)} ({out}/samples.csv)",
]
lines += [f"  {'ok  ' if ok else 'FAIL'} {name}" for name, ok in checks.items()]
text = "\n".join(lines)
print(text)
open(f"{out}/summary.txt", "w").write(text + "\n")
if not all(checks.values()):
    print(f"soak FAILED; logs in {out}", file=sys.stderr)
    sys.exit(1)
EOF
