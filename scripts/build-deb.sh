#!/usr/bin/env bash
# Builds the Debian package of the harvester (cargo-deb): the release binary, the systemd units
# (deploy/systemd), the commented default configuration /etc/harvester/harvester.toml
# (deploy/harvester.toml, a conffile), the Prometheus rules and the Grafana dashboard
# (/usr/share/harvester) and the operator's documents. The package metadata is
# [package.metadata.deb] in engine/harvester/Cargo.toml; docs/operations.md, "Installing".
# Usage: scripts/build-deb.sh [--fast]
#   --fast: faster, larger compression (the tests use it).
# Prints the path of the .deb on its last line (stdout); the debug symbols go into a
# harvester-dbgsym .ddeb next to it. Build log on stderr.
#
# cargo-deb comes from PATH or target/tools/bin, else it is installed there
# (`cargo install cargo-deb --locked --debug`: it only drives cargo, dpkg-shlibdeps and strip;
# a debug build installs in ~30 s).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "build-deb: $*" >&2; }
usage() { sed -n '7,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

deb_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fast) deb_args+=(--fast); shift ;;
    -h | --help) usage; exit 0 ;;
    *) say "unknown argument: $1"; usage >&2; exit 2 ;;
  esac
done

tools="$repo/target/tools"
export PATH="$tools/bin:$PATH"
if ! cargo deb --version >/dev/null 2>&1; then
  say "cargo-deb not found; installing it into $tools (cargo install cargo-deb --locked)"
  mkdir -p "$tools"
  if ! cargo install cargo-deb --locked --debug --version '^3.8' --root "$tools" \
    >"$tools/cargo-deb-install.log" 2>&1; then
    tail -n 20 "$tools/cargo-deb-install.log" >&2
    say "cargo-deb could not be installed (log: $tools/cargo-deb-install.log)"
    exit 1
  fi
fi
say "$(cargo deb --version)"

say "cargo build --release -p harvester"
cargo build --release --locked -p harvester >&2

out="$repo/target/debian"
mkdir -p "$out"
rm -f "$out"/harvester_*.deb "$out"/harvester-dbgsym_*.ddeb
cargo deb -p harvester --no-build "${deb_args[@]}" --output "$out" >"$out.log" 2>&1 || {
  cat "$out.log" >&2
  say "cargo deb failed"
  exit 1
}
cat "$out.log" >&2
deb=$(ls "$out"/harvester_*.deb)
say "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
