#!/usr/bin/env python3
"""Charts and reports of the benchmark sweeps (scripts/sweep.sh), with matplotlib (pinned in the
scripts' venv by scripts/oracle-venv.sh).

  sweep_chart.py build --knob K --work DIR --out DIR --command C --quick 0|1 --plots-dir P
                       [--load-before L]
      Reads the sweep's raw results (DIR/points.tsv, DIR/params.tsv and the JSON files they
      name: loadgen, fio, chiapos bench-prove), writes OUT/K.csv and OUT/K.json (command,
      machine, fixed parameters), then renders as below.
  sweep_chart.py render OUT K
      From OUT/K.csv and OUT/K.json alone: OUT/K-throughput.png, OUT/K-latency.png, OUT/K.md.
"""
import argparse
import csv
import datetime
import json
import math
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

KNOBS = {
    "reads-in-flight": {
        "title": "Reads in flight per disk (cold, O_DIRECT)",
        "xlabel": "reads in flight per disk (queue depth)",
        "xscale": "log2",
    },
    "batch": {
        "title": "Batch size: challenges in flight (loadgen --concurrency), cold",
        "xlabel": "challenges in flight",
        "xscale": "log2",
        "fio_once": True,
    },
    "plots": {
        "title": "Number of plots (warm page cache)",
        "xlabel": "plots served",
        "xscale": "log10",
    },
    "disks": {
        "title": "Number of disks: loop devices throttled to HDD-like IOPS (cgroup-v1 blkio)",
        "xlabel": "disks (one shard each)",
        "xscale": "linear",
    },
    "direct-io": {
        "title": "O_DIRECT (cold) vs buffered reads (warm page cache)",
        "xlabel": "reads",
        "xscale": "category",
    },
    "mode": {
        "title": "chiapos-compatible vs complete lookups",
        "xlabel": "--mode, cache (, with full proofs)",
        "xscale": "category",
    },
}

COLUMNS = [
    "value", "lookups_per_s", "read_iops",
    "challenge_p50_ms", "challenge_p99_ms", "challenge_p999_ms", "challenge_max_ms",
    "read_p50_ms", "read_p99_ms", "read_p999_ms", "read_max_ms",
    "fio_iops", "fio_block_bytes", "fio_direct", "fio_p50_ms", "fio_p99_ms", "fio_p999_ms",
    "chiapos_lookups_per_s", "chiapos_plots", "chiapos_challenges", "chiapos_cache",
    "limit_iops", "kernel_read_iops",
    "plots", "files", "shards", "challenges", "concurrency", "reads_in_flight", "cache", "mode",
    "seconds", "read_bytes_mean", "qualities_per_lookup", "proofs", "proofs_per_lookup", "timeouts", "rejected",
    "cpu_seconds", "peak_rss_mib", "open_seconds", "per_disk_read_iops",
]


# --------------------------------------------------------------------------------------------
# Collecting


def read_tsv(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def fio_figures(paths):
    """Sum of IOPS over the files (one job each); latency percentiles of the slowest."""
    reads = [json.load(open(p))["jobs"][0]["read"] for p in paths]
    iops = sum(r["iops"] for r in reads)

    def pct(key):
        vals = []
        for r in reads:
            p = (r.get("lat_ns") or {}).get("percentile") or r["clat_ns"].get("percentile", {})
            if key in p:
                vals.append(p[key] / 1e6)
        return max(vals) if vals else None

    return {"fio_iops": iops, "fio_p50_ms": pct("50.000000"), "fio_p99_ms": pct("99.000000"),
            "fio_p999_ms": pct("99.900000")}


def fio_options(path):
    opts = json.load(open(path))["jobs"][0]["job options"]
    return int(opts["bs"]), int(opts.get("direct", 0))


def row_of(work, fields):
    value, label, lg, fio, chia, limit, kreads = (fields + ["-"] * 7)[:7]
    j = json.load(open(os.path.join(work, lg)))
    row = {
        "value": value, "lookups_per_s": j["lookups_per_second"], "read_iops": j["read_iops"],
        "challenge_p50_ms": j["challenge_ms"]["p50"], "challenge_p99_ms": j["challenge_ms"]["p99"],
        "challenge_p999_ms": j["challenge_ms"].get("p999"),
        "challenge_max_ms": j["challenge_ms"]["max"],
        "read_p50_ms": j["read_ms"]["p50"], "read_p99_ms": j["read_ms"]["p99"],
        "read_p999_ms": j["read_ms"].get("p999"), "read_max_ms": j["read_ms"].get("max"),
        "plots": j["plots"], "files": j["files"], "shards": j["shards"],
        "challenges": j["challenges"], "concurrency": j["concurrency"],
        "reads_in_flight": j["reads_in_flight_max"], "cache": j["cache"], "mode": j["mode"],
        "seconds": j["seconds"], "read_bytes_mean": j["read_bytes_mean"],
        "qualities_per_lookup": j["qualities"] / max(1, j["lookups"]),
        "proofs": "yes" if j.get("proofs") else "no",
        "proofs_per_lookup": j.get("proofs_found", 0) / max(1, j["lookups"]),
        "timeouts": j["timeouts"], "rejected": j["rejected"], "cpu_seconds": j["cpu_seconds"],
        "peak_rss_mib": j["peak_rss_bytes"] / 2**20, "open_seconds": j["open_and_index_seconds"],
        "per_disk_read_iops": "; ".join(f"{d['disk']} {d['read_iops']:.0f}" for d in j["disks"])
        if len(j["disks"]) > 1 else "",
    }
    # loadgen's JSON has had p999 since the engine bench; older ones lack it (left empty).
    if fio != "-":
        paths = [os.path.join(work, p) for p in fio.split(",")]
        row.update(fio_figures(paths))
        row["fio_block_bytes"], row["fio_direct"] = fio_options(paths[0])
    if chia != "-":
        c = json.load(open(os.path.join(work, chia)))
        row.update({"chiapos_lookups_per_s": c["lookups_per_second"], "chiapos_plots": c["plots"],
                    "chiapos_challenges": c["challenges"],
                    "chiapos_cache": "warm" if c.get("warmed") else "cold page cache, buffered"})
    if limit != "-":
        row["limit_iops"] = float(limit)
    if kreads != "-":
        row["kernel_read_iops"] = float(kreads) / j["seconds"]
    return row


def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def describe_disk(path):
    st = os.stat(path)
    sys_dev = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not os.path.isdir(sys_dev):
        return {"name": "unknown"}
    if os.path.exists(os.path.join(sys_dev, "partition")):
        sys_dev = os.path.dirname(sys_dev)
    name = os.path.basename(sys_dev)
    dev = os.path.join(sys_dev, "device")
    driver = os.path.basename(os.path.realpath(os.path.join(dev, "driver"))) \
        if os.path.exists(os.path.join(dev, "driver")) else ""
    model = " ".join(x for x in (read_file(os.path.join(dev, "vendor")),
                                 read_file(os.path.join(dev, "model"))) if x)
    size = int(read_file(os.path.join(sys_dev, "size"), "0")) * 512
    return {"name": name, "model": model or "no model string", "driver": driver,
            "rotational": read_file(os.path.join(sys_dev, "queue/rotational")),
            "nr_requests": read_file(os.path.join(sys_dev, "queue/nr_requests")),
            "scheduler": read_file(os.path.join(sys_dev, "queue/scheduler")),
            "size_gib": round(size / 2**30, 1)}


def describe_machine(plots_dir):
    cpu = ""
    virtual = False
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name") and not cpu:
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and " hypervisor" in line:
            virtual = True
    mem = 0
    for line in read_file("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return {"cores": os.cpu_count(), "cpu": cpu, "virtual": virtual,
            "memory_gib": round(mem / 2**30, 1), "kernel": os.uname().release,
            "disk": describe_disk(plots_dir)}


def git_commit(repo):
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt_csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def build(args):
    rows = [row_of(args.work, f) for f in read_tsv(os.path.join(args.work, "points.tsv"))]
    params = dict(read_tsv(os.path.join(args.work, "params.tsv")))
    seconds = params.pop("seconds", "")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    meta = {
        "knob": args.knob, "command": args.command, "quick": bool(int(args.quick)),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(repo), "seconds": int(seconds) if seconds else None,
        "load_before": args.load_before, "load_after": " ".join(read_file("/proc/loadavg").split()[:3]),
        "machine": describe_machine(args.plots_dir), "params": params,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.knob}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([fmt_csv(r.get(c)) for c in COLUMNS])
    with open(os.path.join(args.out, f"{args.knob}.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    render(args.out, args.knob)


# --------------------------------------------------------------------------------------------
# Rendering


def load(out, knob):
    with open(os.path.join(out, f"{knob}.csv")) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k in ("value", "cache", "mode", "chiapos_cache", "per_disk_read_iops", "proofs"):
                continue
            r[k] = float(v) if v not in ("", None) else None
    if KNOBS[knob]["xscale"] != "category":
        for r in rows:
            r["value"] = float(r["value"])
    with open(os.path.join(out, f"{knob}.json")) as f:
        meta = json.load(f)
    return rows, meta


def machine_line(m):
    d = m["disk"]
    disk = f"{d['name']}" + (f" ({d['driver']}, {d['model']})" if d.get("driver") else "")
    return (f"{m['cores']} cores ({m['cpu']}{', virtual machine' if m['virtual'] else ''}), "
            f"{m['memory_gib']:g} GiB, Linux {m['kernel']}, plots on {disk}")


def num(v, digits=0):
    if v is None:
        return "-"
    if digits == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def col(rows, key):
    return [r.get(key) for r in rows]


def has(rows, key):
    return any(r.get(key) is not None for r in rows)


def set_x(ax, rows, spec):
    xs = col(rows, "value")
    if spec["xscale"] == "log2":
        ax.set_xscale("log", base=2)
    elif spec["xscale"] == "log10":
        ax.set_xscale("log", base=10)
    ax.set_xticks(xs)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{x:,.0f}" for x in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_xlabel(spec["xlabel"])


def plain(v, _=None):
    return f"{v:,.0f}" if v >= 10 else f"{v:g}"


def auto_log_y(ax, values, threshold=20):
    """A log y axis when the values span more than `threshold` times, else linear from 0; tick
    labels as plain numbers (minor ones at 2 and 5 when the axis spans under two decades)."""
    vals = [v for v in values if v is not None and v > 0]
    if vals and max(vals) / min(vals) > threshold:
        ax.set_yscale("log")
        few = max(vals) / min(vals) < 100

        def minor(v, _):
            mant = v / 10 ** math.floor(math.log10(v) + 1e-9)
            return plain(v) if few and round(mant) in (2, 5) and abs(mant - round(mant)) < 1e-6 else ""

        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.set_ylim(0, max(vals) * 1.1 if vals else 1)
    ax.yaxis.set_major_formatter(FuncFormatter(plain))


PCTS = [("p50", "p50", "o", 1.0), ("p99", "p99", "s", 0.8), ("p999", "p99.9", "^", 0.6)]
COLORS = {"p50": "tab:blue", "p99": "tab:orange", "p999": "tab:red"}


def chart_numeric(rows, meta, spec, out, knob):
    title = f"{spec['title']}{' [--quick]' if meta['quick'] else ''}\n{machine_line(meta['machine'])}"
    # Throughput
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5))
    xs = col(rows, "value")
    a1.plot(xs, col(rows, "lookups_per_s"), "o-", label="ours (loadgen)")
    ys = col(rows, "lookups_per_s")
    if has(rows, "chiapos_lookups_per_s"):
        pts = [(r["value"], r["chiapos_lookups_per_s"]) for r in rows if r["chiapos_lookups_per_s"]]
        a1.plot(*zip(*pts), "s--", color="tab:green", label="chiapos (bench-prove, 30 threads)")
        ys += [p[1] for p in pts]
    set_x(a1, rows, spec)
    auto_log_y(a1, ys)
    a1.set_ylabel("lookups per second" + (" (log scale)" if a1.get_yscale() == "log" else ""))
    a1.set_title("lookups/s (plots x challenges / run time)")
    a2.plot(xs, col(rows, "read_iops"), "o-", label="ours: engine reads/s")
    ys = col(rows, "read_iops")
    if has(rows, "fio_iops"):
        f = col(rows, "fio_iops")
        if spec.get("fio_once"):
            a2.axhline(f[0], color="tab:purple", ls="--",
                       label=f"fio, depth {rows[0]['reads_in_flight']:.0f} (ceiling)")
        else:
            a2.plot(xs, f, "D--", color="tab:purple", label="fio randread, same depth and block size")
        ys += f
    if has(rows, "kernel_read_iops"):
        a2.plot(xs, col(rows, "kernel_read_iops"), "x:", color="tab:brown",
                label="reads counted by the throttle (blkio io_serviced)")
        ys += col(rows, "kernel_read_iops")
    if has(rows, "limit_iops"):
        a2.plot(xs, col(rows, "limit_iops"), "-", color="black", lw=1, label="sum of the IOPS limits")
        ys += col(rows, "limit_iops")
    set_x(a2, rows, spec)
    auto_log_y(a2, ys)
    a2.set_ylabel("read I/O per second" + (" (log scale)" if a2.get_yscale() == "log" else ""))
    a2.set_title("read IOPS")
    for a in (a1, a2):
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{knob}-throughput.png"), dpi=100)
    plt.close(fig)
    # Latency
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5))
    for key, name, marker, _ in PCTS:
        a1.plot(xs, col(rows, f"challenge_{key}_ms"), marker + "-", color=COLORS[key], label=f"ours {name}")
        a2.plot(xs, col(rows, f"read_{key}_ms"), marker + "-", color=COLORS[key], label=f"ours {name}")
        if has(rows, f"fio_{key}_ms"):
            f = col(rows, f"fio_{key}_ms")
            if spec.get("fio_once"):
                a2.axhline(f[0], color=COLORS[key], ls="--", lw=1, label=f"fio {name} (depth {rows[0]['reads_in_flight']:.0f})")
            else:
                a2.plot(xs, f, marker + "--", color=COLORS[key], mfc="none", label=f"fio {name}")
    a1.set_title("challenge latency (all of a challenge's lookups answered)")
    a2.set_title("read latency (submit to completion)")
    lat = [[r.get(f"challenge_{k}_ms") for r in rows for k, *_ in PCTS],
           [r.get(f"{w}_{k}_ms") for r in rows for k, *_ in PCTS for w in ("read", "fio")]]
    for a, vals in zip((a1, a2), lat):
        set_x(a, rows, spec)
        auto_log_y(a, vals, threshold=10)
        a.set_ylabel("milliseconds" + (" (log scale)" if a.get_yscale() == "log" else ""))
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{knob}-latency.png"), dpi=100)
    plt.close(fig)


def bars(ax, labels, series, log_y, ylabel):
    """series: [(name, values, style dict)]; one group of bars per label."""
    n = len(series)
    width = 0.8 / n
    allv = []
    for i, (name, values, style) in enumerate(series):
        pos = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        vals = [v if v is not None else 0 for v in values]
        b = ax.bar(pos, vals, width, label=name, **style)
        ax.bar_label(b, labels=[num(v, 2) if v else "" for v in values], fontsize=7, rotation=90,
                     padding=2)
        allv += [v for v in values if v]
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    if log_y:
        ax.set_yscale("log")
        ax.set_ylim(min(allv) / 2, max(allv) * 8)
        ax.yaxis.set_major_formatter(FuncFormatter(plain))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, max(allv) * 1.3)
        ax.yaxis.set_major_formatter(FuncFormatter(plain))
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def chart_category(rows, meta, spec, out, knob):
    title = f"{spec['title']}{' [--quick]' if meta['quick'] else ''}\n{machine_line(meta['machine'])}"
    labels = [v.replace(", ", "\n") for v in col(rows, "value")]

    def figure():
        if len(labels) > 4:  # many groups: one panel above the other
            return plt.subplots(2, 1, figsize=(13, 10))
        return plt.subplots(1, 2, figsize=(13, 5))

    fig, (a1, a2) = figure()
    s1 = [("ours (loadgen)", col(rows, "lookups_per_s"), {"color": "tab:blue"})]
    if has(rows, "chiapos_lookups_per_s"):
        s1.append(("chiapos (bench-prove, 30 threads)", col(rows, "chiapos_lookups_per_s"),
                   {"color": "tab:green"}))
    bars(a1, labels, s1, True, "lookups per second (log scale)")
    a1.set_title("lookups/s")
    s2 = [("ours: engine reads/s", col(rows, "read_iops"), {"color": "tab:blue"})]
    if has(rows, "fio_iops"):
        s2.append(("fio randread, depth 64, same block size", col(rows, "fio_iops"),
                   {"color": "tab:purple"}))
    bars(a2, labels, s2, True, "read I/O per second (log scale)")
    a2.set_title("read IOPS")
    for a in (a1, a2):
        a.set_xlabel(spec["xlabel"])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{knob}-throughput.png"), dpi=100)
    plt.close(fig)
    fig, (a1, a2) = figure()
    bars(a1, labels, [(f"ours {name}", col(rows, f"challenge_{key}_ms"), {"color": COLORS[key]})
                      for key, name, _, _ in PCTS], True, "milliseconds (log scale)")
    a1.set_title("challenge latency")
    s = [(f"ours {name}", col(rows, f"read_{key}_ms"), {"color": COLORS[key]}) for key, name, _, _ in PCTS]
    if has(rows, "fio_p50_ms"):
        s += [(f"fio {name}", col(rows, f"fio_{key}_ms"),
               {"color": COLORS[key], "alpha": 0.45, "hatch": "//"}) for key, name, _, _ in PCTS]
    bars(a2, labels, s, True, "milliseconds (log scale)")
    a2.set_title("read latency (submit to completion)")
    for a in (a1, a2):
        a.set_xlabel(spec["xlabel"])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{knob}-latency.png"), dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# The report's sentences, computed from the rows


def ratio(a, b):
    return a / b if a and b else float("nan")


def findings(knob, rows):
    first, last = rows[0], rows[-1]
    s = []
    if knob == "reads-in-flight":
        best = max(rows, key=lambda r: r["read_iops"])
        knee = next(r for r in rows if r["read_iops"] >= 0.9 * best["read_iops"])
        rs = [ratio(r["read_iops"], r["fio_iops"]) for r in rows]
        s.append(f"Read IOPS go from {num(first['read_iops'])} at depth {first['value']:.0f} to "
                 f"{num(best['read_iops'])} at depth {best['value']:.0f} (90% of that from depth "
                 f"{knee['value']:.0f}); lookups/s from {num(first['lookups_per_s'])} to "
                 f"{num(max(col(rows, 'lookups_per_s')))}.")
        s.append(f"Against fio at the same depth and block size the engine reaches {min(rs):.2f} to "
                 f"{max(rs):.2f} of fio's IOPS ({rs[-1]:.2f} at depth {last['value']:.0f}).")
        s.append(f"Read p50 / p99 go from {num(first['read_p50_ms'], 3)} / {num(first['read_p99_ms'], 2)} ms at "
                 f"depth {first['value']:.0f} to {num(knee['read_p50_ms'], 3)} / {num(knee['read_p99_ms'], 2)} ms "
                 f"at depth {knee['value']:.0f} and {num(last['read_p50_ms'], 3)} / {num(last['read_p99_ms'], 2)} ms "
                 f"at depth {last['value']:.0f}; challenge p50 from {num(first['challenge_p50_ms'], 1)} ms to "
                 f"{num(last['challenge_p50_ms'], 1)} ms.")
    elif knob == "batch":
        best = max(rows, key=lambda r: r["lookups_per_s"])
        knee = next(r for r in rows if r["lookups_per_s"] >= 0.9 * best["lookups_per_s"])
        s.append(f"A batch here is one challenge over all {first['plots']:.0f} plots (loadgen applies "
                 f"no plot filter), so {first['plots']:.0f} lookups; lookups/s go from "
                 f"{num(first['lookups_per_s'])} with 1 challenge in flight to {num(best['lookups_per_s'])} "
                 f"at {best['value']:.0f} (90% of that from {knee['value']:.0f}).")
        if best.get("fio_iops"):
            s.append(f"Read IOPS peak at {num(max(col(rows, 'read_iops')))}, "
                     f"{max(col(rows, 'read_iops')) / best['fio_iops']:.2f} of fio's {num(best['fio_iops'])} at depth "
                     f"{best['reads_in_flight']:.0f}.")
        s.append(f"Challenge p50 goes from {num(first['challenge_p50_ms'], 1)} ms with 1 in flight to "
                 f"{num(knee['challenge_p50_ms'], 1)} ms at {knee['value']:.0f} and "
                 f"{num(last['challenge_p50_ms'], 1)} ms at {last['value']:.0f} (p99.9 "
                 f"{num(last['challenge_p999_ms'], 1)} ms): past the knee, more challenges in flight add "
                 "waiting, not throughput (Little's law).")
    elif knob == "plots":
        s.append(f"Warm, lookups/s go from {num(first['lookups_per_s'])} at {first['value']:,.0f} plots to "
                 f"{num(last['lookups_per_s'])} at {last['value']:,.0f} (CPU-bound: one shard thread).")
        both = [r for r in rows if r.get("chiapos_lookups_per_s")]
        if both:
            rs = [r["lookups_per_s"] / r["chiapos_lookups_per_s"] for r in both]
            s.append(f"chiapos (30 threads) gives {num(min(col(both, 'chiapos_lookups_per_s')))} to "
                     f"{num(max(col(both, 'chiapos_lookups_per_s')))} lookups/s up to {both[-1]['value']:,.0f} "
                     f"plots: ours is {min(rs):.1f}x to {max(rs):.1f}x that.")
        s.append(f"At {last['value']:,.0f} plots loadgen opened and indexed them in "
                 f"{num(last['open_seconds'], 2)} s with a peak RSS of {num(last['peak_rss_mib'], 1)} MiB; "
                 f"challenge p50 grows with the plots each challenge covers, from "
                 f"{num(first['challenge_p50_ms'], 2)} ms to {num(last['challenge_p50_ms'], 1)} ms.")
    elif knob == "disks":
        parts = ", ".join(f"{r['value']:.0f}: {num(r['read_iops'])} of {num(r['limit_iops'])} "
                          f"({r['read_iops'] / r['limit_iops']:.2f})" for r in rows)
        s.append(f"Total engine read IOPS against the sum of the limits, per disk count: {parts}; "
                 f"{last['value']:.0f} disks give {last['read_iops'] / first['read_iops']:.2f}x the read IOPS "
                 f"and {last['lookups_per_s'] / first['lookups_per_s']:.2f}x the lookups/s of one.")
        if has(rows, "kernel_read_iops"):
            s.append(f"The throttle itself counted {num(last['kernel_read_iops'])} reads/s at "
                     f"{last['value']:.0f} disks ({last['kernel_read_iops'] / last['limit_iops']:.2f} of the "
                     "limit; some engine reads reach it as two I/Os)"
                     + (f"; fio got {num(last['fio_iops'])} IOPS from the same disks." if last.get('fio_iops') else "."))
        s.append(f"Read p50 / p99: {num(first['read_p50_ms'], 1)} / {num(first['read_p99_ms'], 1)} ms "
                 f"with 1 disk, {num(last['read_p50_ms'], 1)} / {num(last['read_p99_ms'], 1)} ms with "
                 f"{last['value']:.0f} (each shard queues only on its own disk).")
    elif knob == "direct-io":
        cold, warm = rows[0], rows[-1]
        s.append(f"Cold with O_DIRECT: {num(cold['lookups_per_s'])} lookups/s at {num(cold['read_iops'])} read IOPS "
                 f"({ratio(cold['read_iops'], cold['fio_iops']):.2f} of fio direct=1); warm buffered: "
                 f"{num(warm['lookups_per_s'])} lookups/s, {ratio(warm['lookups_per_s'], cold['lookups_per_s']):.1f}x.")
        if cold.get("chiapos_lookups_per_s") and warm.get("chiapos_lookups_per_s"):
            s.append(f"chiapos: {num(cold['chiapos_lookups_per_s'])} lookups/s from a cold page cache (buffered, "
                     f"warming as it runs) and {num(warm['chiapos_lookups_per_s'])} warm; ours is "
                     f"{ratio(cold['lookups_per_s'], cold['chiapos_lookups_per_s']):.1f}x and "
                     f"{ratio(warm['lookups_per_s'], warm['chiapos_lookups_per_s']):.1f}x that.")
        s.append(f"Read p50 / p99: {num(cold['read_p50_ms'], 2)} / {num(cold['read_p99_ms'], 2)} ms cold, "
                 f"{num(warm['read_p50_ms'], 3)} / {num(warm['read_p99_ms'], 3)} ms warm.")
    elif knob == "mode":
        by = {r["value"]: r for r in rows}
        for cache in ("warm", "cold"):
            c, k = by.get(f"chiapos, {cache}"), by.get(f"complete, {cache}")
            if c and k:
                s.append(f"{cache.capitalize()}: --mode chiapos {num(c['lookups_per_s'])} lookups/s, complete "
                         f"{num(k['lookups_per_s'])} ({ratio(k['lookups_per_s'], c['lookups_per_s']):.2f}x), "
                         f"qualities per lookup {c['qualities_per_lookup']:.3f} vs {k['qualities_per_lookup']:.3f}; "
                         f"chiapos itself {num(c.get('chiapos_lookups_per_s'))} lookups/s.")
        for cache in ("warm", "cold"):
            c, k = by.get(f"chiapos, {cache}, proofs"), by.get(f"complete, {cache}, proofs")
            if c and k:
                s.append(f"With full proofs, {cache}: --mode chiapos {num(c['lookups_per_s'])} lookups/s, complete "
                         f"{num(k['lookups_per_s'])} ({ratio(k['lookups_per_s'], c['lookups_per_s']):.2f}x), "
                         f"proofs per lookup {c['proofs_per_lookup']:.3f} vs {k['proofs_per_lookup']:.3f}; "
                         f"chiapos itself {num(c.get('chiapos_lookups_per_s'))} lookups/s.")
        pairs = [(by[v], by[v.replace("chiapos", "complete", 1)]) for v in by
                 if v.startswith("chiapos") and v.replace("chiapos", "complete", 1) in by]
        if pairs:
            same = all(abs(c["qualities_per_lookup"] - k["qualities_per_lookup"]) < 1e-9
                       and abs(c["proofs_per_lookup"] - k["proofs_per_lookup"]) < 1e-9 for c, k in pairs)
            s.append("Both modes found the same qualities and proofs per lookup on these plots (complete "
                     "finds a superset of chiapos' in general)." if same else
                     "Complete mode found more per lookup where the columns differ (a superset of chiapos').")
    return s


def md_table(rows, knob):
    cols = [("value", KNOBS[knob]["xlabel"], None), ("lookups_per_s", "lookups/s", 0),
            ("read_iops", "read IOPS", 0), ("challenge_p50_ms", "challenge p50 ms", 1),
            ("challenge_p99_ms", "p99", 1), ("challenge_p999_ms", "p99.9", 1),
            ("read_p50_ms", "read p50 ms", 3), ("read_p99_ms", "p99", 3), ("read_p999_ms", "p99.9", 3),
            ("fio_iops", "fio IOPS", 0), ("fio_p50_ms", "fio p50 ms", 3), ("fio_p99_ms", "p99", 3),
            ("fio_p999_ms", "p99.9", 3), ("chiapos_lookups_per_s", "chiapos lookups/s", 0),
            ("limit_iops", "sum of limits", 0), ("kernel_read_iops", "throttle reads/s", 0),
            ("qualities_per_lookup", "qualities per lookup", 3), ("proofs_per_lookup", "proofs per lookup", 3),
            ("challenges", "challenges", 0)]
    cols = [c for c in cols if c[0] == "value" or has(rows, c[0])]
    if knob != "mode":
        cols = [c for c in cols if not c[0].endswith("_per_lookup")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        cells = []
        for key, _, d in cols:
            v = r.get(key)
            cells.append((f"{v:,.0f}" if isinstance(v, float) else str(v)) if d is None else num(v, d))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows, meta, knob, out):
    spec = KNOBS[knob]
    m = meta["machine"]
    d = m["disk"]
    disk = (f"`{d['name']}`: {d.get('driver') or 'driver unknown'}, {d.get('model', '')}, "
            f"{d.get('size_gib', '?')} GiB, rotational={d.get('rotational', '?')}, "
            f"nr_requests {d.get('nr_requests', '?')}, scheduler {d.get('scheduler', '?')}")
    dur = f"{meta['seconds']} s" if meta.get("seconds") is not None else "?"
    lines = [f"# Sweep: {spec['title']}", ""]
    if meta["quick"]:
        lines += ["**Quick run** (`--quick`, tiny sizes): it tests the script; its figures say little.", ""]
    lines += [
        f"Command: `{meta['command']}` (one command: runs the sweep, writes this report, the CSV and "
        f"the charts; `scripts/sweep_chart.py render DIR {knob}` redraws them from the CSV). "
        f"Run {meta['date']} at commit {meta['commit']}, {dur}.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}{', virtual machine' if m['virtual'] else ''}), "
        f"{m['memory_gib']:g} GiB memory, Linux {m['kernel']}; plots on {disk}. Load average "
        f"before / after: {meta.get('load_before') or '?'} / {meta.get('load_after') or '?'}.",
        "",
        "Fixed for every point:",
        "",
    ]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in meta["params"].items()]
    lines += ["", md_table(rows, knob), "", f"CSV: [`{knob}.csv`]({knob}.csv) (every column, one row per point).", "",
              f"![throughput]({knob}-throughput.png)", "", f"![latency]({knob}-latency.png)", "",
              "What it shows: " + " ".join(findings(knob, rows)), ""]
    with open(os.path.join(out, f"{knob}.md"), "w") as f:
        f.write("\n".join(lines))


def render(out, knob):
    rows, meta = load(out, knob)
    spec = KNOBS[knob]
    if spec["xscale"] == "category":
        chart_category(rows, meta, spec, out, knob)
    else:
        chart_numeric(rows, meta, spec, out, knob)
    report(rows, meta, knob, out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--knob", required=True, choices=sorted(KNOBS))
    b.add_argument("--work", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--command", required=True)
    b.add_argument("--quick", default="0")
    b.add_argument("--plots-dir", required=True)
    b.add_argument("--load-before", default="")
    r = sub.add_parser("render")
    r.add_argument("out")
    r.add_argument("knob", choices=sorted(KNOBS))
    a = p.parse_args()
    if a.cmd == "build":
        build(a)
    else:
        render(a.out, a.knob)


if __name__ == "__main__":
    sys.exit(main())
