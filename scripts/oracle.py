#!/usr/bin/env python3
"""The reference oracle: chiapos 2.0.12 and blspy 2.0.3, driven with JSON.

Run with the venv of scripts/oracle-venv.sh. Subcommands (JSON on stdin and stdout):

  make-fixtures --out DIR   fixture plots with real keys (cached), DIR/manifest.json
  make-plot --out FILE --k K --id HEX [--memo HEX]
                            one plot (memo: real keys derived from the id unless given)
  prove     {"plot", "challenges": [hex], "proofs": bool}
            -> {"results": [{"challenge", "qualities": [hex], "proofs": [hex], "error"}]}
  verify    {"items": [{"id", "k", "challenge", "proof"}]} -> {"results": [hex | null]}
  info      {"plots": [path]} -> {"plots": [{"id", "k", "memo", "error"}]}
  compare-prove --harvester BIN --plots P... [--challenges N]
            runs `harvester prove --proofs` in both modes and chiapos on the same challenges:
            chiapos mode must be identical, complete mode a superset whose extras chiapos
            verifies. Exit 1 with the first difference.
  bench-prove --plots P... --challenges-file F [--threads 30] [--proofs]
            chiapos as the reference harvester runs it (a thread pool over plots, warm cache);
            prints {"lookups", "qualities", "proofs", "seconds", "lookups_per_second", ...}

Expected values in tests come from here at test time, never from hand-written constants.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from blspy import AugSchemeMPL, G1Element, PrivateKey
from chiapos import DiskPlotter, DiskProver, Verifier

FARMER_PATH = [12381, 8444, 0, 0]
POOL_PATH = [12381, 8444, 1, 0]
LOCAL_PATH = [12381, 8444, 3, 0]


def sha256(data):
    return hashlib.sha256(data).digest()


def derive(sk, path):
    for index in path:
        sk = AugSchemeMPL.derive_child_sk(sk, index)
    return sk


def plot_keys(master_sk, farmer_pk, pool_pk=None, puzzle_hash=None):
    """Memo, plot public key and plot id, as chia's create_plots does."""
    local_sk = derive(master_sk, LOCAL_PATH)
    local_pk = local_sk.get_g1()
    if puzzle_hash is not None:
        taproot_sk = AugSchemeMPL.key_gen(
            sha256(bytes(local_pk + farmer_pk) + bytes(local_pk) + bytes(farmer_pk)))
        plot_pk = local_pk + farmer_pk + taproot_sk.get_g1()
        memo = puzzle_hash + bytes(farmer_pk) + bytes(master_sk)
        plot_id = sha256(puzzle_hash + bytes(plot_pk))
    else:
        plot_pk = local_pk + farmer_pk
        memo = bytes(pool_pk) + bytes(farmer_pk) + bytes(master_sk)
        plot_id = sha256(bytes(pool_pk) + bytes(plot_pk))
    return memo, local_pk, plot_pk, plot_id


def create_plot(out_dir, filename, k, memo, plot_id):
    tmp = tempfile.mkdtemp(prefix="plot-tmp-", dir=out_dir)
    # The plotter logs to stdout; keep stdout for our own output.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        DiskPlotter().create_plot_disk(tmp, tmp, out_dir, filename, k, memo, plot_id,
                                       300, 32, 2000, 2, False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        shutil.rmtree(tmp, ignore_errors=True)


FIXTURES = [
    # name, k, kind
    ("k18-og-a", 18, "pool_public_key"),
    ("k18-og-b", 18, "pool_public_key"),
    ("k18-pc-a", 18, "pool_contract"),
    ("k18-pc-b", 18, "pool_contract"),
    ("k19-og-a", 19, "pool_public_key"),
    ("k20-pc-a", 20, "pool_contract"),
]


def cached(out):
    try:
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        return all(os.path.getsize(os.path.join(out, p["path"])) == p["bytes"]
                   for p in manifest["plots"])
    except (OSError, ValueError, KeyError):
        return False


def make_fixtures(args):
    out = os.path.abspath(args.out)
    if cached(out):
        print("fixtures cached in", out)
        return
    started = time.time()
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".fixtures-", dir=parent)
    os.makedirs(os.path.join(work, "plots"))
    os.makedirs(os.path.join(work, "mismatch"))
    farmer_sk = derive(AugSchemeMPL.key_gen(sha256(b"harvester-fixture/farmer")), FARMER_PATH)
    pool_sk = derive(AugSchemeMPL.key_gen(sha256(b"harvester-fixture/pool")), POOL_PATH)
    farmer_pk, pool_pk = farmer_sk.get_g1(), pool_sk.get_g1()
    puzzle_hash = sha256(b"harvester-fixture/pool-contract")
    entries = []
    todo = [(n, k, kind, "plots", True) for n, k, kind in FIXTURES]
    todo.append(("k18-mismatch", 18, "pool_public_key", "mismatch", False))
    for name, k, kind, folder, consistent in todo:
        master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/" + name.encode()))
        contract = kind == "pool_contract"
        memo, local_pk, plot_pk, plot_id = plot_keys(
            master, farmer_pk, None if contract else pool_pk, puzzle_hash if contract else None)
        if not consistent:
            plot_id = sha256(b"not the memo's id")
        rel = f"{folder}/{name}.plot"
        t0 = time.time()
        create_plot(os.path.join(work, folder), f"{name}.plot", k, memo, plot_id)
        print(f"  {rel}: k={k} {kind} in {time.time() - t0:.1f} s", file=sys.stderr)
        entries.append({
            "name": name, "path": rel, "k": k, "id": plot_id.hex(), "memo": memo.hex(),
            "memo_kind": kind,
            "pool_public_key": None if contract else bytes(pool_pk).hex(),
            "pool_contract_puzzle_hash": puzzle_hash.hex() if contract else None,
            "farmer_public_key": bytes(farmer_pk).hex(),
            "local_public_key": bytes(local_pk).hex(),
            "plot_public_key": bytes(plot_pk).hex(),
            "id_matches_memo": consistent,
            "bytes": os.path.getsize(os.path.join(work, rel)),
        })
    manifest = {
        "plots": entries,
        "farmer_secret_key": bytes(farmer_sk).hex(),
        "pool_secret_key": bytes(pool_sk).hex(),
        "chiapos_version": "2.0.12",
    }
    with open(os.path.join(work, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    # Swap into place: a half-made fixture folder never looks complete.
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(work, out)
    print(f"fixtures made in {out} in {time.time() - started:.1f} s")


def make_plot(args):
    plot_id = bytes.fromhex(args.id)
    if args.memo:
        memo = bytes.fromhex(args.memo)
    else:
        farmer_pk = derive(AugSchemeMPL.key_gen(sha256(b"make-plot/farmer")), FARMER_PATH).get_g1()
        pool_pk = derive(AugSchemeMPL.key_gen(sha256(b"make-plot/pool")), POOL_PATH).get_g1()
        master = AugSchemeMPL.key_gen(sha256(b"make-plot/" + plot_id))
        memo = plot_keys(master, farmer_pk, pool_pk)[0]
    out = os.path.abspath(args.out)
    create_plot(os.path.dirname(out), os.path.basename(out), args.k, memo, plot_id)


def prove(req):
    prover = DiskProver(req["plot"])
    results = []
    for ch_hex in req["challenges"]:
        ch = bytes.fromhex(ch_hex)
        r = {"challenge": ch_hex, "qualities": [], "proofs": [], "error": None}
        try:
            qualities = prover.get_qualities_for_challenge(ch)
            r["qualities"] = [bytes(q).hex() for q in qualities]
            if req.get("proofs"):
                r["proofs"] = [bytes(prover.get_full_proof(ch, i)).hex()
                               for i in range(len(qualities))]
        except Exception as e:  # chiapos raises on corrupt data
            r["error"] = str(e) or type(e).__name__
        results.append(r)
    return {"results": results}


def verify(req):
    v = Verifier()
    out = []
    for it in req["items"]:
        q = v.validate_proof(bytes.fromhex(it["id"]), it["k"], bytes.fromhex(it["challenge"]),
                             bytes.fromhex(it["proof"]))
        out.append(None if q is None else bytes(q).hex())
    return {"results": out}


def info(req):
    out = []
    for path in req["plots"]:
        try:
            p = DiskProver(path)
            out.append({"id": bytes(p.get_id()).hex(), "k": p.get_size(),
                        "memo": bytes(p.get_memo()).hex(), "error": None})
        except Exception as e:
            out.append({"id": None, "k": None, "memo": None, "error": str(e)})
    return {"plots": out}


def bench_prove(args):
    with open(args.challenges_file) as f:
        challenges = [bytes.fromhex(line.strip()) for line in f if line.strip()]
    provers = [DiskProver(p) for p in args.plots]

    def one(prover, ch):
        qualities = prover.get_qualities_for_challenge(ch)
        proofs = 0
        if args.proofs:
            for i in range(len(qualities)):
                prover.get_full_proof(ch, i)
                proofs += 1
        return len(qualities), proofs

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        futures = [pool.submit(one, p, ch) for ch in challenges for p in provers]
        counts = [f.result() for f in futures]
    seconds = time.perf_counter() - started
    lookups = len(futures)
    print(json.dumps({
        "implementation": "chiapos 2.0.12", "threads": args.threads, "plots": len(provers),
        "challenges": len(challenges), "lookups": lookups,
        "qualities": sum(c[0] for c in counts), "proofs": sum(c[1] for c in counts),
        "seconds": seconds, "lookups_per_second": lookups / seconds,
        "proofs_per_second": sum(c[1] for c in counts) / seconds,
    }))


def run_harvester(binary, plots, challenges_file, mode):
    import subprocess
    out = subprocess.run([binary, "prove", *plots, "--challenges-file", challenges_file,
                          "--proofs", "--mode", mode], check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    found = {}
    for r in rows:
        found.setdefault((r["plot"], r["challenge"]), []).append(r)
    return found


def compare_prove(args):
    challenges = [sha256(b"compare" + i.to_bytes(4, "big")).hex() for i in range(args.challenges)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(challenges) + "\n")
        challenges_file = f.name
    try:
        chiapos_mode = run_harvester(args.harvester, args.plots, challenges_file, "chiapos")
        complete = run_harvester(args.harvester, args.plots, challenges_file, "complete")
    finally:
        os.unlink(challenges_file)
    verifier = Verifier()
    totals = {"plots": len(args.plots), "challenges": len(challenges), "qualities": 0,
              "extras_verified": 0}
    for plot in args.plots:
        prover = DiskProver(plot)
        for ch_hex in challenges:
            ch = bytes.fromhex(ch_hex)
            qualities = [bytes(q).hex() for q in prover.get_qualities_for_challenge(ch)]
            proofs = [bytes(prover.get_full_proof(ch, i)).hex() for i in range(len(qualities))]
            ours = chiapos_mode.get((plot, ch_hex), [])
            if [r["quality"] for r in ours] != qualities or [r["proof"] for r in ours] != proofs \
                    or [r["index"] for r in ours] != list(range(len(qualities))):
                sys.exit(f"DIFFERENT {plot} {ch_hex}: chiapos {qualities}, ours {ours}")
            totals["qualities"] += len(qualities)
            remaining = list(qualities)
            for r in complete.get((plot, ch_hex), []):
                if r["quality"] in remaining:
                    remaining.remove(r["quality"])
                    continue
                q = verifier.validate_proof(prover.get_id(), prover.get_size(), ch,
                                            bytes.fromhex(r["proof"]))
                if q is None or bytes(q).hex() != r["quality"]:
                    sys.exit(f"INVALID extra proof {plot} {ch_hex}: {r}")
                totals["extras_verified"] += 1
            if remaining:
                sys.exit(f"MISSING in complete mode {plot} {ch_hex}: {remaining}")
    print(json.dumps(totals))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("make-plot")
    p.add_argument("--out", required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--memo")
    for name in ("prove", "verify", "info"):
        sub.add_parser(name)
    p = sub.add_parser("compare-prove")
    p.add_argument("--harvester", required=True)
    p.add_argument("--plots", nargs="+", required=True)
    p.add_argument("--challenges", type=int, default=200)
    p = sub.add_parser("bench-prove")
    p.add_argument("--plots", nargs="+", required=True)
    p.add_argument("--challenges-file", required=True)
    p.add_argument("--threads", type=int, default=30)
    p.add_argument("--proofs", action="store_true")
    args = ap.parse_args()
    if args.command == "make-fixtures":
        make_fixtures(args)
    elif args.command == "make-plot":
        make_plot(args)
    elif args.command == "compare-prove":
        compare_prove(args)
    elif args.command == "bench-prove":
        bench_prove(args)
    else:
        handler = {"prove": prove, "verify": verify, "info": info}[args.command]
        json.dump(handler(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
