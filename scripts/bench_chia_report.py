#!/usr/bin/env python3
"""bench_chia_report.py: the tables of scripts/bench-chia.sh from its chia_farm.py reports.

    bench_chia_report.py --meta META.json [--latency-chia R.json --latency-ours R.json]
                         [--stuck-chia R.json --stuck-ours R.json] --json OUT.json

Prints Markdown on stdout and writes OUT.json (the machine, the command, the parameters, each
harvester's figures, the ratios ours/chia and the per-SP stuck-disk rows). Standard library only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def load(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return {"ok": False, "error": f"no report {path}: {e}"}


def ratio(ours: float | None, chia: float | None) -> float | None:
    if ours is None or chia is None or chia == 0:
        return None
    return ours / chia


def fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{1000 * seconds:.1f}"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"


def run_state(report: dict[str, Any] | None) -> str:
    if report is None:
        return "not run"
    if report.get("ok"):
        return "PASS"
    reasons = ([report["error"]] if report.get("error") else []) + list(report.get("failures", []))
    return "FAIL: " + "; ".join(str(r).splitlines()[0] for r in reasons[:3])


def latency(chia: dict[str, Any] | None, ours: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    cb = (chia or {}).get("bench") or {}
    ob = (ours or {}).get("bench") or {}
    rows: list[tuple[str, Any, Any]] = []
    out: dict[str, Any] = {"chia": cb, "ours": ob, "ratios_ours_over_chia": {}}

    def get(b: dict[str, Any], key: str, stat: str) -> float | None:
        v = (b.get(key) or {}).get(stat)
        return None if v is None else float(v)

    metrics = [
        ("SP → farming_info at the farmer", "sp_to_farming_info_seconds"),
        ("SP → each new_proof_of_space at the farmer", "sp_to_new_proof_of_space_seconds"),
        ("SP → first new_proof_of_space of the SP", "sp_to_first_new_proof_of_space_seconds"),
        ("SP → each declare_proof_of_space at the node", "sp_to_declare_seconds"),
        ("lookup_time the harvester reports (its clock)", "harvester_lookup_time_seconds"),
    ]
    lines = ["| metric | chia | ours | ours/chia |", "|---|---:|---:|---:|"]
    for label, key in metrics:
        for stat in ("p50", "p99"):
            c, o = get(cb, key, stat), get(ob, key, stat)
            r = ratio(o, c)
            out["ratios_ours_over_chia"][f"{key}.{stat}"] = None if r is None else round(r, 4)
            lines.append(f"| {label}, {stat} (ms) | {fmt_ms(c)} | {fmt_ms(o)} | {fmt_ratio(r)} |")
    for label, key, scale, unit in (
        ("harvester CPU per SP", "cpu_ms_per_sp", 1, "ms"),
        ("harvester CPU per SP, idle rate subtracted", "cpu_ms_per_sp_minus_idle", 1, "ms"),
        ("harvester CPU when idle", "idle_cpu_seconds_per_second", 1000, "ms/s"),
    ):
        c = (cb.get("cpu") or {}).get(key)
        o = (ob.get("cpu") or {}).get(key)
        c = None if c is None else c * scale
        o = None if o is None else o * scale
        r = ratio(o, c)
        out["ratios_ours_over_chia"][f"cpu.{key}"] = None if r is None else round(r, 4)
        lines.append(f"| {label} ({unit}) | {'—' if c is None else f'{c:.1f}'} | "
                     f"{'—' if o is None else f'{o:.1f}'} | {fmt_ratio(r)} |")
    c_n = (cb.get("sp_to_new_proof_of_space_seconds") or {}).get("count")
    o_n = (ob.get("sp_to_new_proof_of_space_seconds") or {}).get("count")
    lines.append(f"| new_proof_of_space received (count) | {c_n} | {o_n} | |")
    lines.append(f"| farming_info received (count) | {(cb.get('sp_to_farming_info_seconds') or {}).get('count')} | "
                 f"{(ob.get('sp_to_farming_info_seconds') or {}).get('count')} | |")
    lines.append(f"| chia_farm.py verdict | {run_state(chia)} | {run_state(ours)} | |")
    return lines, out


def stuck(chia: dict[str, Any] | None, ours: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    cs = (chia or {}).get("stuck_disk") or {}
    os_ = (ours or {}).get("stuck_disk") or {}
    windows = cs.get("windows_seconds") or os_.get("windows_seconds") or []
    ws = [f"{w:g}" for w in windows]
    out = {"chia": cs, "ours": os_}
    lines = []
    lines.append("| | " + " | ".join(f"chia ≤{w} s | ours ≤{w} s" for w in ws) + " |")
    lines.append("|---|" + "---:|---:|" * len(ws))
    for part, label in (("before_hang", "before the hang"), ("after_hang", "after the hang")):
        c = (cs.get("summary") or {}).get(part) or {}
        o = (os_.get("summary") or {}).get(part) or {}
        n_c, n_o = c.get("signage_points"), o.get("signage_points")
        cells = []
        for w in ws:
            cells += [f"{c.get(f'answered_within_{w}s')}/{n_c}", f"{o.get(f'answered_within_{w}s')}/{n_o}"]
        lines.append(f"| SPs answered {label} (farming_info + every healthy proof) | " + " | ".join(cells) + " |")
        cells = []
        for w in ws:
            cells += [f"{c.get(f'farming_info_within_{w}s')}/{n_c}", f"{o.get(f'farming_info_within_{w}s')}/{n_o}"]
        lines.append(f"| farming_info {label} | " + " | ".join(cells) + " |")
        cells = []
        for w in ws:
            cells += [f"{c.get(f'healthy_declared_within_{w}s')}/{c.get('healthy_expected')}",
                      f"{o.get(f'healthy_declared_within_{w}s')}/{o.get('healthy_expected')}"]
        lines.append(f"| healthy-disk proofs declared {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Per signage point (farming_info: seconds after the SP, at the farmer; healthy: proofs of "
                 "plots not on the hung disk declared / expected; hung disk: declared / expected):")
    lines.append("")
    lines.append("| SP | hung | chia farming_info s | chia healthy | chia hung disk | ours farming_info s | "
                 "ours healthy | ours hung disk |")
    lines.append("|---:|:---:|---:|---:|---:|---:|---:|---:|")
    c_rows = {r["number"]: r for r in cs.get("per_sp", [])}
    o_rows = {r["number"]: r for r in os_.get("per_sp", [])}

    def cell(r: dict[str, Any] | None) -> list[str]:
        if r is None:
            return ["—", "—", "—"]
        fi = r["farming_info_seconds"]
        last = r.get("healthy_last_declare_seconds")
        healthy = f"{r['healthy_declared']}/{r['healthy_expected']}"
        if last is not None:
            healthy += f" (last {last:.2f} s)"
        return ["none" if fi is None else f"{fi:.2f}", healthy, f"{r['fuse_declared']}/{r['fuse_expected']}"]

    for n in sorted(set(c_rows) | set(o_rows)):
        hung = (c_rows.get(n) or o_rows.get(n) or {}).get("after_hang")
        lines.append(f"| {n} | {'yes' if hung else ''} | " + " | ".join(cell(c_rows.get(n)) + cell(o_rows.get(n)))
                     + " |")
    lines.append("")
    lines.append(f"chia_farm.py verdicts (validity only; misses after the hang are measured): chia {run_state(chia)}, "
                 f"ours {run_state(ours)}. Reads that reached the hang: chia "
                 f"{(cs.get('hang') or {}).get('fuse_reads_hung')}, ours {(os_.get('hang') or {}).get('fuse_reads_hung')}.")
    return lines, out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta", required=True)
    p.add_argument("--latency-chia")
    p.add_argument("--latency-ours")
    p.add_argument("--stuck-chia")
    p.add_argument("--stuck-ours")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    meta = json.loads(Path(a.meta).read_text())
    lc, lo, sc, so = (load(x) for x in (a.latency_chia, a.latency_ours, a.stuck_chia, a.stuck_ours))
    m = meta.get("machine", {})
    print(f"# chia harvester vs ours, one run ({meta.get('date')})")
    print()
    print(f"- machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('memory')} memory, "
          f"Linux {m.get('kernel')}; plots on {m.get('plot_fs')}")
    print(f"- chia-blockchain {meta.get('chia_version')} (farmer in-process, its harvester as a subprocess); "
          f"ours: {meta.get('harvester_bin')} ({meta.get('harvester_version')}), repo {meta.get('git')}")
    print(f"- command: `{meta.get('command')}`")
    params = meta.get("params", {})
    print(f"- plots: {params.get('plots')} distinct k=18 plots (fixtures/bench-plots, made by chia's create_plots)")
    result: dict[str, Any] = {**meta}
    if lc is not None or lo is not None:
        lines, out = latency(lc, lo)
        print()
        print(f"## Latency and CPU ({params.get('signage_points')} SPs, every plot passes the filter, about "
              f"{params.get('eligible')} of the qualities eligible, at least {params.get('sp_gap')} s between SPs)")
        print()
        print("Times from the fake full node's send of the SP (the farmer forwards it to the harvester); the "
              "farmer, the fake node and the harness share one Python event loop, so every figure includes "
              "the farmer's own work. p99 is nearest-rank (with fewer than 100 values: the maximum).")
        print()
        print("\n".join(lines))
        result["latency"] = out
    if sc is not None or so is not None:
        lines, out = stuck(sc, so)
        print()
        print(f"## Stuck disk ({params.get('disks')} plot folders, {params.get('fuse_plots')} plots behind FUSE; "
              f"SP every {params.get('sp_interval')} s, reads of the FUSE disk hang from SP {params.get('hang_after')} "
              f"on, {params.get('stuck_sps')} SPs, each watched {params.get('stuck_sp_timeout')} s)")
        print()
        print("Windows: 5 s, the lookup time chia's harvester long warned about (\"should be below 5 seconds\"; "
              "8 s in 2.7.5): a later answer leaves little time for the signatures, the unfinished block and its "
              "propagation; 28 s, the hard bound: the infusion point is at least NUM_SP_INTERVALS_EXTRA = 3 SP "
              "intervals (3 x 9.375 s = 28.1 s) after the signage point, so a later proof can never be infused.")
        print()
        print("\n".join(lines))
        result["stuck_disk"] = out
    result["runs"] = {
        name: {"ok": r.get("ok"), "error": r.get("error"), "failures": r.get("failures", [])[:20],
               "notes": r.get("notes", []), "elapsed_seconds": r.get("elapsed_seconds"),
               "totals": r.get("totals"), "seed": (r.get("config") or {}).get("seed")}
        for name, r in (("latency_chia", lc), ("latency_ours", lo), ("stuck_chia", sc), ("stuck_ours", so))
        if r is not None
    }
    Path(a.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
