#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the codec, the session, the plot decoders
# and the verifier: builds the targets, runs each for a fixed time and prints its executions,
# exec/s and coverage. Exit status 1 if any target crashed (its input is printed).
# Usage: scripts/fuzz.sh [--seconds N] [--skip-if-unavailable] [TARGET...]
#   TARGET: frame_codec session (protocol/fuzz); header park lookup verifier
#           (engine/plot-format/fuzz). Default: all six.
#   --seconds N: fuzzing time per target (default 60), not counting the build.
#   --skip-if-unavailable: if cargo-fuzz is missing and cannot be installed, print a SKIP line
#           and exit 0 (CI); without it that is an error.
#
# Stable toolchain: targets are built with `cargo fuzz build -s none` (libFuzzer and
# SanitizerCoverage need no nightly; only the sanitizers do, and both fuzzed crates forbid
# unsafe code). Overflow checks and debug assertions are on. cargo-fuzz comes from PATH or
# target/tools/bin, else it is installed there (`cargo install cargo-fuzz --locked --debug`:
# it only drives cargo, and a debug build installs in half the time, ~40 s).
# The plot-format targets need the fixture plots (scripts/make-fixtures.sh).
# Files: corpora in <crate>/fuzz/corpus/TARGET (git-ignored; each run first writes the target's
# seeds there, made from real frames, plots and proofs by the target itself when
# FUZZ_WRITE_SEEDS is set), crashes in <crate>/fuzz/artifacts/TARGET, builds in target/fuzz,
# logs in target/fuzz/logs/TARGET.log. Replay a crash: cd <crate> && cargo fuzz run -s none
# TARGET ARTIFACT. What each target checks: docs/reliability.md, "Fuzzing".
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

all=(frame_codec session header park lookup verifier)
declare -A crate_of=(
  [frame_codec]=protocol [session]=protocol
  [header]=engine/plot-format [park]=engine/plot-format
  [lookup]=engine/plot-format [verifier]=engine/plot-format
)
# lookup's inputs are a challenge and at most 32 corruption records: start at full size.
declare -A extra_args=([lookup]="-max_len=162 -len_control=0")

usage() { sed -n '5,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
say() { echo "fuzz: $*" >&2; }

seconds=60
skip_if_unavailable=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds)
      [[ $# -ge 2 ]] || { say "--seconds needs a number"; exit 2; }
      seconds="$2"
      shift 2
      ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    --skip-if-unavailable) skip_if_unavailable=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) say "unknown option: $1"; usage >&2; exit 2 ;;
    *)
      [[ -n "${crate_of[$1]:-}" ]] || { say "unknown target: $1 (targets: ${all[*]})"; exit 2; }
      targets+=("$1")
      shift
      ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { say "--seconds must be a positive integer, got '$seconds'"; exit 2; }
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

target_dir="$repo/target/fuzz"
logs="$target_dir/logs"
mkdir -p "$logs"

# cargo-fuzz: from PATH, or installed once into target/tools (see the header).
tools="$repo/target/tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz not found; installing it into $tools (cargo install cargo-fuzz --locked)"
  install_start=$SECONDS
  if ! cargo install cargo-fuzz --locked --debug --root "$tools" >"$logs/install.log" 2>&1; then
    tail -n 20 "$logs/install.log" >&2
    if [[ $skip_if_unavailable == 1 ]]; then
      echo "fuzz: SKIP: cargo-fuzz could not be installed (log: $logs/install.log)"
      exit 0
    fi
    say "cargo-fuzz could not be installed (log: $logs/install.log)"
    exit 1
  fi
  say "installed cargo-fuzz in $((SECONDS - install_start)) s"
fi
say "$(cargo fuzz --version | head -n 1), $(rustc --version)"

for t in "${targets[@]}"; do
  if [[ ${crate_of[$t]} == engine/plot-format ]]; then
    fixture="${HARVESTER_FIXTURES:-$repo/fixtures}/plots/k18-og-a.plot"
    [[ -f "$fixture" ]] || { say "$fixture is missing: run scripts/make-fixtures.sh"; exit 1; }
    break
  fi
done

triple=$(rustc -vV | sed -n 's/^host: //p')
build_start=$SECONDS
built=" "
for t in "${targets[@]}"; do
  crate=${crate_of[$t]}
  [[ "$built" == *" $crate "* ]] && continue
  say "building $crate/fuzz"
  if ! (cd "$repo/$crate" && cargo fuzz build -s none --target "$triple" \
    --target-dir "$target_dir" >"$logs/build-${crate//\//-}.log" 2>&1); then
    tail -n 40 "$logs/build-${crate//\//-}.log" >&2
    say "build of $crate/fuzz failed (log: $logs/build-${crate//\//-}.log)"
    exit 1
  fi
  built+="$crate "
done
say "built in $((SECONDS - build_start)) s; fuzzing ${#targets[@]} target(s) for $seconds s each"

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }
printf '%-12s %8s %12s %9s %6s %7s %7s  %s\n' target seconds executions exec/s cov ft corpus result
crashed=()
for t in "${targets[@]}"; do
  crate="$repo/${crate_of[$t]}/fuzz"
  bin="$target_dir/$triple/release/$t"
  corpus="$crate/corpus/$t"
  artifacts="$crate/artifacts/$t"
  log="$logs/$t.log"
  mkdir -p "$corpus" "$artifacts"
  if ! FUZZ_WRITE_SEEDS="$corpus" "$bin" -runs=0 >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    say "$t: writing its seeds failed (log: $log)"
    crashed+=("$t (seeds)")
    continue
  fi
  start=$SECONDS
  rc=0
  # shellcheck disable=SC2086 # extra_args holds several flags
  "$bin" -artifact_prefix="$artifacts/" -max_total_time="$seconds" -timeout=30 \
    -print_final_stats=1 ${extra_args[$t]:-} "$corpus" >>"$log" 2>&1 || rc=$?
  last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  result=ok
  if [[ $rc != 0 ]]; then
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result="CRASH ${artifact:-(no artifact; exit $rc)}"
    crashed+=("$t")
  fi
  printf '%-12s %8s %12s %9s %6s %7s %7s  %s\n' "$t" "$((SECONDS - start))" \
    "$(stat number_of_executed_units "$log")" "$(stat average_exec_per_sec "$log")" \
    "${cov:--}" "${ft:--}" "${corp:--}" "$result"
  if [[ $rc != 0 ]]; then
    grep -m 1 -A 1 'panicked at' "$log" | sed 's/^/    /' >&2 || true
    say "$t: log $log; replay: cd ${crate_of[$t]} && cargo fuzz run -s none $t ${artifact:-ARTIFACT}"
  fi
done

if [[ ${#crashed[@]} -gt 0 ]]; then
  say "crashed: ${crashed[*]}"
  exit 1
fi
say "no crashes"
