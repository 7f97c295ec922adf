#!/usr/bin/env python3
"""chia_plots.py: k=18 plots made as `chia plots create` makes them, for scripts/chia_farm.py
(--fresh-plots) and scripts/bench-chia.sh (a cached set of distinct plots).

Run it with the chia venv's python (the last line printed by scripts/chia-venv.sh).

Every plot is made by chia-blockchain's own chia.plotting.create_plots.create_plots (so the
memo, the plot public key, the plot id and the file name are exactly chia's: the memo is
pool public key | pool contract puzzle hash, farmer public key, local master secret key; the id is
calculate_plot_id_pk / calculate_plot_id_ph of the plot public key with the taproot for contract
plots), with chiapos' DiskPlotter, the fixture farmer key (and the fixture pool key for
pool-public-key plots; see fixture_keys() in scripts/oracle.py) and a local master secret key
given by the caller (chia's create_plots takes it as test_private_keys; `chia plots create` draws it
at random). Scratch files and the finished plot live in a temporary folder inside the target
folder (same file system); the plot is renamed into place when complete, so a harvester scanning
the folder never sees half a plot.

    PY=$(scripts/chia-venv.sh | tail -1)
    $PY scripts/chia_plots.py cache --dir fixtures/bench-plots --count 60

`cache` keeps DIR holding the deterministic bench plots 0..COUNT-1 (keys from index; even
indexes pool-public-key plots, odd ones pool-contract plots), re-plots only missing or damaged
ones, records them in DIR/manifest.json and prints the paths of plots 0..COUNT-1, one a line.
Plots of a larger earlier COUNT stay in the folder and the manifest. A lock file (DIR/.lock)
serialises concurrent callers.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chia_rs import AugSchemeMPL, G1Element, PrivateKey
from chia_rs.sized_bytes import bytes32

from chia.plotting.create_plots import PlotKeys, create_plots
from chia.plotting.util import Params
from chia.types.blockchain_format.proof_of_space import (
    calculate_plot_id_ph,
    calculate_plot_id_pk,
    generate_plot_public_key,
)
from chia.util.bech32m import encode_puzzle_hash
from chia.wallet.derive_keys import master_sk_to_farmer_sk, master_sk_to_local_sk, master_sk_to_pool_sk

# The DiskPlotter settings of scripts/oracle.py (PLOTTER_ARGS): 300 MiB buffer, 32 buckets,
# stripe 2000, 2 threads, bitfield on. The plot's bytes do not depend on them; chia's own
# defaults (3389 MiB, 128 buckets) only make a k=18 plot slower.
PLOTTER_BUFFER_MIB = 300
PLOTTER_BUCKETS = 32
PLOTTER_STRIPE = 2000
PLOTTER_THREADS = 2
HEADER_MAGIC = b"Proof of Space Plot"
MANIFEST_VERSION = 1
BENCH_LABEL = b"harvester-bench/"

log = logging.getLogger("chia_plots")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def fixture_public_keys() -> tuple[G1Element, G1Element]:
    """The fixture farmer and pool public keys (scripts/oracle.py fixture_keys)."""
    farmer_master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/farmer"))
    pool_master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/pool"))
    return master_sk_to_farmer_sk(farmer_master).get_g1(), master_sk_to_pool_sk(pool_master).get_g1()


def plot_id_of(sk: PrivateKey, farmer_pk: G1Element, pool_pk: G1Element | None,
               contract_ph: bytes32 | None) -> bytes32:
    """The id chia's create_plots gives the plot of local master key sk (without plotting)."""
    plot_pk = generate_plot_public_key(master_sk_to_local_sk(sk).get_g1(), farmer_pk, contract_ph is not None)
    if contract_ph is not None:
        return calculate_plot_id_ph(contract_ph, plot_pk)
    assert pool_pk is not None
    return calculate_plot_id_pk(pool_pk, plot_pk)


@contextlib.contextmanager
def stdout_to(fd: int):
    """chiapos' plotter writes its progress to file descriptor 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def make_plot(final_dir: Path, sk: PrivateKey, farmer_pk: G1Element, pool_pk: G1Element | None,
              contract_ph: bytes32 | None, *, k: int = 18, use_datetime: bool = True) -> Path:
    """One plot of k, made by chia's create_plots in a scratch folder inside final_dir, then
    renamed into final_dir. Exactly one of pool_pk and contract_ph. Returns the plot's path.
    Synchronous (chia's create_plots is a coroutine that never awaits; it runs in its own event
    loop here, so call this from a thread when a loop is running)."""
    if (pool_pk is None) == (contract_ph is None):
        raise ValueError("exactly one of pool_pk and contract_ph")
    final_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".plotting-", dir=final_dir))
    try:
        out_dir = scratch / "out"
        address = None if contract_ph is None else encode_puzzle_hash(contract_ph, "xch")
        keys = PlotKeys(farmer_pk, pool_pk, address)
        params = Params(
            size=k, num=1, buffer=PLOTTER_BUFFER_MIB, num_threads=PLOTTER_THREADS,
            buckets=PLOTTER_BUCKETS, tmp_dir=scratch / "tmp", tmp2_dir=None, final_dir=out_dir,
            plotid=None, memo=None, nobitfield=False, stripe_size=PLOTTER_STRIPE,
        )
        with tempfile.TemporaryFile("w+b", dir=scratch) as plotter_log:
            try:
                with stdout_to(plotter_log.fileno()):
                    created, existing = asyncio.run(
                        create_plots(params, keys, use_datetime=use_datetime, test_private_keys=[sk]))
            except Exception as e:
                plotter_log.seek(0)
                tail = b"".join(plotter_log.readlines()[-30:]).decode(errors="replace")
                raise RuntimeError(f"chia create_plots failed (k={k}): {e}\n{tail}") from None
        made = list(created.values()) + list(existing.values())
        if len(made) != 1 or not made[0].is_file():
            raise RuntimeError(f"chia create_plots made {made}, want one plot")
        want_id = plot_id_of(sk, farmer_pk, pool_pk, contract_ph)
        if header_id(made[0]) != want_id:
            raise RuntimeError(f"{made[0]}: the header's plot id is not {want_id.hex()}")
        dst = final_dir / made[0].name
        os.replace(made[0], dst)
        return dst
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def header_id(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            head = f.read(len(HEADER_MAGIC) + 32)
    except OSError:
        return None
    return head[len(HEADER_MAGIC):] if head.startswith(HEADER_MAGIC) and len(head) == len(HEADER_MAGIC) + 32 else None


# ----------------------------------------------------------------------------------------------
# the bench cache


def bench_plot_spec(index: int, farmer_pk: G1Element, pool_pk: G1Element) -> dict[str, Any]:
    sk = AugSchemeMPL.key_gen(sha256(BENCH_LABEL + f"plot/{index}".encode()))
    contract = index % 2 == 1
    contract_ph = bytes32(sha256(BENCH_LABEL + b"pool-contract")) if contract else None
    plot_id = plot_id_of(sk, farmer_pk, None if contract else pool_pk, contract_ph)
    return {
        "index": index,
        "sk": sk,
        "pool_pk": None if contract else pool_pk,
        "contract_ph": contract_ph,
        "memo_kind": "pool_contract" if contract else "pool_public_key",
        "plot_id": plot_id.hex(),
        "file": f"plot-k18-{plot_id.hex()}.plot",  # chia's name without the date (use_datetime=False)
    }


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    return {str(p["index"]): p for p in data.get("plots", []) if isinstance(p, dict) and "index" in p}


def cache(folder: Path, count: int, quiet: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    farmer_pk, pool_pk = fixture_public_keys()
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = load_manifest(folder / "manifest.json")
        paths = []
        made = 0
        t0 = time.monotonic()
        for index in range(count):
            spec = bench_plot_spec(index, farmer_pk, pool_pk)
            path = folder / spec["file"]
            entry = manifest.get(str(index))
            ok = (
                entry is not None
                and entry.get("plot_id") == spec["plot_id"]
                and path.is_file()
                and path.stat().st_size == entry.get("bytes")
                and header_id(path) == bytes.fromhex(spec["plot_id"])
            )
            if not ok:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                t = time.monotonic()
                got = make_plot(folder, spec["sk"], farmer_pk, spec["pool_pk"], spec["contract_ph"],
                                use_datetime=False)
                if got != path:
                    raise RuntimeError(f"plotted {got}, expected {path}")
                made += 1
                if not quiet:
                    print(f"chia_plots: plot {index + 1}/{count} {path.name} {time.monotonic() - t:.1f} s",
                          file=sys.stderr, flush=True)
                manifest[str(index)] = {
                    "index": index,
                    "file": spec["file"],
                    "plot_id": spec["plot_id"],
                    "k": 18,
                    "memo_kind": spec["memo_kind"],
                    "bytes": path.stat().st_size,
                    "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                write_manifest(folder, manifest)
            paths.append(path)
        if made and not quiet:
            print(f"chia_plots: made {made} plot(s) in {time.monotonic() - t0:.1f} s; {count} in {folder}",
                  file=sys.stderr, flush=True)
        write_manifest(folder, manifest)
        return paths


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    data = {
        "version": MANIFEST_VERSION,
        "what": "k=18 bench plots made by chia's create_plots; see scripts/chia_plots.py",
        "plots": [manifest[k] for k in sorted(manifest, key=int)],
    }
    tmp = folder / "manifest.json.part"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, folder / "manifest.json")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="chia_plots.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="make (or check) the deterministic bench plots 0..COUNT-1 in DIR")
    c.add_argument("--dir", required=True, type=Path)
    c.add_argument("--count", type=int, default=60)
    c.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.count < 0 or a.count > 10000:
        p.error("--count must be in 0..10000")
    logging.basicConfig(level=logging.WARNING)
    try:
        paths = cache(a.dir.resolve(), a.count, a.quiet)
    except (OSError, RuntimeError) as e:
        print(f"chia_plots: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
