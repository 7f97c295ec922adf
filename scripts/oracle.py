#!/usr/bin/env python3
"""The reference oracle: chiapos 2.0.12 and blspy 2.0.3, driven with JSON.

Run it with the venv python that scripts/oracle-venv.sh prints (it creates the venv when
needed). Requests are JSON on stdin, answers JSON on stdout, unless noted; errors go to
stderr with a non-zero exit status. Hex strings are lower-case, without a 0x prefix.
Expected values in the Rust tests come from here at test time, never from hand-written
constants.

Subcommands

  make-fixtures --out DIR
      The fixture plots, made with DiskPlotter (plotting is deterministic) and REAL keys:
        DIR/plots/k18-og-a.plot  k18-og-b.plot   k=18, 128-byte memo (pool public key)
        DIR/plots/k18-pc-a.plot  k18-pc-b.plot   k=18, 112-byte memo (pool contract)
        DIR/plots/k19-og-a.plot                  k=19, 128-byte memo
        DIR/plots/k20-pc-a.plot                  k=20, 112-byte memo
        DIR/mismatch/k18-mismatch.plot           valid memo, but plot id = sha256(b"not the
                                                 memo's id") (id does not match the memo)
        DIR/keysfile/k18-kf-a.plot               k=18, empty memo, id = sha256(pool_pk ||
                                                 plot_pk): the original design, keys in
        DIR/keys.toml                            the harvester's keys file
        DIR/farmer-keys.json                     {"farmer_secret_key", "pool_public_keys"}
      and DIR/manifest.json:
        {"plots": [{"name", "path" (relative to DIR), "k", "id", "memo",
                    "memo_kind": "pool_public_key" | "pool_contract" | "keys_file",
                    "pool_public_key": hex | null, "pool_contract_puzzle_hash": hex | null,
                    "farmer_public_key", "local_public_key", "plot_public_key",
                    "id_matches_memo": bool, "bytes": file size,
                    keys_file plots: "plot_secret_key" (and no farmer/local keys)}],
         "farmer_secret_key", "pool_secret_key", "chiapos_version", "blspy_version"}
      Cached: when the manifest describes exactly these fixtures (same keys, same chiapos)
      and every plot file has the recorded size and id, nothing is done ("fixtures cached").
      Otherwise the old manifest is removed, everything is built in DIR/.build-*, the
      folders are swapped in and the manifest is written last (atomic rename): a half-made
      or stale fixture never looks complete. Concurrent runs serialise on DIR/.lock, and a
      build dir left by a killed run is removed by the next one. Prints timing.

  make-plot --out FILE --k K --id HEX [--memo HEX]
      One plot with the given 32-byte id (for comparisons on fresh random ids). The default
      memo is a valid 128-byte one with real keys, seeded from the id (so the id does not
      match the memo). Prints {"path", "k", "id", "memo", "id_matches_memo", "seconds"}.

  prove      {"plot": path, "challenges": [hex], "proofs": bool}
          -> {"results": [{"challenge", "qualities": [hex], "proofs": [hex], "error"}]}
      One DiskProver for the call. "proofs" is present only when asked for;
      proofs[i] = get_full_proof(challenge, i). An exception for one challenge (chiapos
      raises on corrupt data or a challenge that is not 32 bytes) becomes that challenge's
      "error" (null otherwise), keeping what was computed before it.

  verify     {"items": [{"id": hex, "k": int, "challenge": hex, "proof": hex}]}
          -> {"results": [quality hex | null]}        (Verifier().validate_proof)

  info       {"plots": [path]}
          -> {"plots": [{"id", "k", "memo", "size", "error"}]}
      From DiskProver get_id/get_memo/get_size ("size" is k, chiapos' name for it);
      a plot that cannot be opened gets nulls and an "error".

  bench-prove --plots P... --challenges-file F [--threads 30] [--copies 1] [--proofs] [--no-warm]
              [--keep-cold] [--seconds T]
      Warm-cache speed of chiapos as the reference harvester runs it: one DiskProver per
      plot opened up front, a ThreadPoolExecutor of N threads, one task per (challenge,
      plot): get_qualities_for_challenge and, with --proofs, get_full_proof for every
      quality. chiapos releases the GIL in those calls. F holds one hex challenge per line.
      The files are read once before timing unless --no-warm (or they exceed half of the
      available memory). Prints {"lookups", "qualities", "proofs", "seconds",
      "lookups_per_second", "proofs_per_second", "plots", "challenges", "threads", ...}.

  compare-prove --harvester BIN --plots P... [--challenges 200]
      Runs `BIN prove --proofs` in chiapos mode and in complete mode and chiapos itself on
      the same challenges: chiapos mode must be identical, complete mode a superset whose
      extra proofs chiapos' Verifier accepts. Prints totals as JSON; exit 1 with the first
      difference.

  check-answers --file F
      F holds JSON lines written by `farmer-sim --dump`: {"kind": "proof", "plot_id", "k",
      "challenge", "proof", "quality"} and {"kind": "signature", "public_key", "message",
      "signature"} (the signature the farmer accepted, aggregated with its share for memo
      plots). Every proof goes through chiapos' Verifier (must give the quality), every
      signature through blspy's AugSchemeMPL.verify. Prints {"proofs", "signatures",
      "failed", "failures": [...]}; exit 1 when any failed or the file holds nothing.

DiskPlotter notes: it writes a long progress log to stdout (kept in a temp file here; shown
on failure, or on stderr with ORACLE_PLOTTER_LOG=1); it silently overwrites the final file;
it accepts an id shorter than 32 bytes (reading past the buffer); its failures surface as a
bare "RuntimeError: std::exception" (k < 18, missing directory), so inputs are checked here
first.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from importlib.metadata import version

from blspy import AugSchemeMPL
from chiapos import DiskPlotter, DiskProver, Verifier

CHIAPOS_VERSION = version("chiapos")
BLSPY_VERSION = version("blspy")

FARMER_PATH = [12381, 8444, 0, 0]
POOL_PATH = [12381, 8444, 1, 0]
LOCAL_PATH = [12381, 8444, 3, 0]

# The call of plot-format.md section 19: 300 MiB buffer, 32 buckets, stripe 2000, 2 threads,
# bitfield on. The output does not depend on these settings.
PLOTTER_ARGS = (300, 32, 2000, 2, False)
MIN_K, MAX_K = 18, 50  # chiapos kMinPlotSize / kMaxPlotSize
HEADER_MAGIC = b"Proof of Space Plot"

# name, k, memo kind, folder, whether the plot id is the memo's
FIXTURES = [
    ("k18-og-a", 18, "pool_public_key", "plots", True),
    ("k18-og-b", 18, "pool_public_key", "plots", True),
    ("k18-pc-a", 18, "pool_contract", "plots", True),
    ("k18-pc-b", 18, "pool_contract", "plots", True),
    ("k19-og-a", 19, "pool_public_key", "plots", True),
    ("k20-pc-a", 20, "pool_contract", "plots", True),
    ("k18-mismatch", 18, "pool_public_key", "mismatch", False),
    # The original design: no memo; the harvester gets the plot secret key from a keys file.
    ("k18-kf-a", 18, "keys_file", "keysfile", True),
]
FIXTURE_FOLDERS = ("plots", "mismatch", "keysfile")
MISMATCH_ID = hashlib.sha256(b"not the memo's id").digest()


class OracleError(Exception):
    """A bad request or a failed operation: reported on stderr, exit status 1."""


def sha256(data):
    return hashlib.sha256(data).digest()


def derive(sk, path):
    """EIP-2333 hardened derivation, one step per index (chia's _derive_path)."""
    for index in path:
        sk = AugSchemeMPL.derive_child_sk(sk, index)
    return sk


def plot_keys(master_sk, farmer_pk, pool_pk=None, puzzle_hash=None):
    """Memo, local public key, plot public key and plot id, as chia's create_plots does."""
    local_pk = derive(master_sk, LOCAL_PATH).get_g1()
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


def hex_bytes(value, what, length=None):
    if not isinstance(value, str):
        raise OracleError(f"{what}: expected a hex string, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise OracleError(f"{what}: not hex: {value!r}") from None
    if length is not None and len(data) != length:
        raise OracleError(f"{what}: expected {length} bytes, got {len(data)}")
    return data


@contextlib.contextmanager
def stdout_to(fd):
    """chiapos' plotter logs to file descriptor 1; keep stdout for our own answers."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def create_plot(out_dir, filename, k, memo, plot_id):
    """One DiskPlotter run; its scratch files live in a temp dir inside out_dir (so the final
    rename is on one file system) and are removed afterwards. The plotter's progress log
    (thousands of lines) is kept out of the way and shown only if plotting fails, or always
    with ORACLE_PLOTTER_LOG=1."""
    if not MIN_K <= k <= MAX_K:
        raise OracleError(f"k must be in {MIN_K}..{MAX_K} (chiapos limits), got {k}")
    if len(plot_id) != 32:
        raise OracleError(f"plot id must be 32 bytes, got {len(plot_id)}")
    os.makedirs(out_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{filename}.tmp-", dir=out_dir)
    verbose = os.environ.get("ORACLE_PLOTTER_LOG") == "1"
    try:
        with tempfile.TemporaryFile("w+b") as log:
            try:
                with stdout_to(2 if verbose else log.fileno()):
                    DiskPlotter().create_plot_disk(scratch, scratch, out_dir, filename, k, memo,
                                                   plot_id, *PLOTTER_ARGS)
            except RuntimeError as e:
                log.seek(0)
                tail = b"".join(log.readlines()[-30:]).decode(errors="replace")
                raise OracleError(f"DiskPlotter failed for {filename} (k={k}): {e}\n"
                                  f"last lines of its log:\n{tail}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# make-fixtures


def fixture_keys():
    farmer_sk = derive(AugSchemeMPL.key_gen(sha256(b"harvester-fixture/farmer")), FARMER_PATH)
    pool_sk = derive(AugSchemeMPL.key_gen(sha256(b"harvester-fixture/pool")), POOL_PATH)
    return farmer_sk, pool_sk


def expected_entries(farmer_sk, pool_sk):
    """Manifest entries (without the file sizes) for FIXTURES."""
    farmer_pk, pool_pk = farmer_sk.get_g1(), pool_sk.get_g1()
    puzzle_hash = sha256(b"harvester-fixture/pool-contract")
    entries = []
    for name, k, kind, folder, consistent in FIXTURES:
        master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/" + name.encode()))
        if kind == "keys_file":
            plot_pk = master.get_g1()
            plot_id = sha256(bytes(pool_pk) + bytes(plot_pk))
            entries.append({
                "name": name,
                "path": f"{folder}/{name}.plot",
                "k": k,
                "id": plot_id.hex(),
                "memo": "",
                "memo_kind": kind,
                "pool_public_key": bytes(pool_pk).hex(),
                "pool_contract_puzzle_hash": None,
                "plot_secret_key": bytes(master).hex(),
                "plot_public_key": bytes(plot_pk).hex(),
                "id_matches_memo": consistent,
            })
            continue
        contract = kind == "pool_contract"
        memo, local_pk, plot_pk, plot_id = plot_keys(
            master, farmer_pk, None if contract else pool_pk, puzzle_hash if contract else None)
        entries.append({
            "name": name,
            "path": f"{folder}/{name}.plot",
            "k": k,
            "id": (plot_id if consistent else MISMATCH_ID).hex(),
            "memo": memo.hex(),
            "memo_kind": kind,
            "pool_public_key": None if contract else bytes(pool_pk).hex(),
            "pool_contract_puzzle_hash": puzzle_hash.hex() if contract else None,
            "farmer_public_key": bytes(farmer_pk).hex(),
            "local_public_key": bytes(local_pk).hex(),
            "plot_public_key": bytes(plot_pk).hex(),
            "id_matches_memo": consistent,
        })
    return entries


def header_id(path):
    with open(path, "rb") as f:
        head = f.read(len(HEADER_MAGIC) + 32)
    return head[len(HEADER_MAGIC):] if head.startswith(HEADER_MAGIC) else None


def cache_state(out, entries, farmer_sk, pool_sk):
    """None when DIR holds exactly these fixtures, else the reason to (re)build."""
    try:
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    try:
        if manifest.get("chiapos_version") != CHIAPOS_VERSION:
            return f"made by chiapos {manifest.get('chiapos_version')}"
        if (manifest.get("farmer_secret_key"), manifest.get("pool_secret_key")) != (
                bytes(farmer_sk).hex(), bytes(pool_sk).hex()):
            return "different farmer/pool keys"
        plots = manifest["plots"]
        if [{k: v for k, v in p.items() if k != "bytes"} for p in plots] != entries:
            return "different fixture definitions"
        for p in plots:
            path = os.path.join(out, p["path"])
            if not os.path.isfile(path):
                return f"missing {p['path']}"
            if os.path.getsize(path) != p["bytes"]:
                return f"wrong size of {p['path']}"
            if header_id(path) != bytes.fromhex(p["id"]):
                return f"wrong header in {p['path']}"
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        return f"malformed manifest ({e!r})"
    return None


def fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_fixtures(args):
    started = time.perf_counter()
    out = os.path.abspath(args.out)
    farmer_sk, pool_sk = fixture_keys()
    entries = expected_entries(farmer_sk, pool_sk)
    if cache_state(out, entries, farmer_sk, pool_sk) is None:
        write_key_files(out, entries, farmer_sk, pool_sk)
        print(f"fixtures cached in {out} (checked in {time.perf_counter() - started:.2f} s)")
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("make-fixtures: waiting for another run to finish", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        reason = cache_state(out, entries, farmer_sk, pool_sk)
        if reason is None:
            print(f"fixtures cached in {out} (made by a concurrent run)")
            return
        print(f"make-fixtures: building in {out}: {reason}", file=sys.stderr)
        build_fixtures(out, entries, farmer_sk, pool_sk)
        write_key_files(out, entries, farmer_sk, pool_sk)
    print(f"fixtures made in {out}: {len(entries)} plots in "
          f"{time.perf_counter() - started:.1f} s")


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def write_key_files(out, entries, farmer_sk, pool_sk):
    """DIR/keys.toml (the harvester's keys file for the keys-file plots) and
    DIR/farmer-keys.json (what farmer-sim needs: the farmer secret key and our pool keys)."""
    lines = ["# Made by scripts/oracle.py make-fixtures: plot secret keys of the keys-file plots.",
             ""]
    for e in entries:
        if e["memo_kind"] == "keys_file":
            lines += ["[[plot]]", f'file = "{os.path.basename(e["path"])}"',
                      f'plot_secret_key = "{e["plot_secret_key"]}"',
                      f'pool_public_key = "{e["pool_public_key"]}"', ""]
    write_atomic(os.path.join(out, "keys.toml"), "\n".join(lines))
    farmer = {"farmer_secret_key": bytes(farmer_sk).hex(),
              "pool_public_keys": [bytes(pool_sk.get_g1()).hex()]}
    write_atomic(os.path.join(out, "farmer-keys.json"), json.dumps(farmer, indent=1) + "\n")


def build_fixtures(out, entries, farmer_sk, pool_sk):
    # What is there is stale or broken: stop it from looking usable while we build.
    manifest_path = os.path.join(out, "manifest.json")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(manifest_path)
    fsync_path(out, directory=True)
    # We hold the lock: build dirs left by killed runs are garbage.
    for stale in os.listdir(out):
        if stale.startswith(".build-"):
            shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    build = tempfile.mkdtemp(prefix=".build-", dir=out)
    try:
        for entry in entries:
            t0 = time.perf_counter()
            path = os.path.join(build, entry["path"])
            memo, plot_id = bytes.fromhex(entry["memo"]), bytes.fromhex(entry["id"])
            create_plot(os.path.dirname(path), os.path.basename(path), entry["k"], memo, plot_id)
            prover = DiskProver(path)  # what we wrote is what chiapos reads back
            if (bytes(prover.get_id()), bytes(prover.get_memo()), prover.get_size()) != (
                    plot_id, memo, entry["k"]):
                raise OracleError(f"{entry['path']}: DiskProver reads back other header fields")
            del prover
            fsync_path(path)
            entry["bytes"] = os.path.getsize(path)
            print(f"  {entry['path']}: k={entry['k']} {entry['memo_kind']}, "
                  f"{entry['bytes']} bytes in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        manifest = {
            "plots": entries,
            "farmer_secret_key": bytes(farmer_sk).hex(),
            "pool_secret_key": bytes(pool_sk).hex(),
            "chiapos_version": CHIAPOS_VERSION,
            "blspy_version": BLSPY_VERSION,
        }
        staged = os.path.join(build, "manifest.json")
        with open(staged, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        # Commit: swap the folders in, then rename the manifest into place last; without
        # the manifest the folder never looks complete.
        for folder in FIXTURE_FOLDERS:
            target = os.path.join(out, folder)
            if os.path.lexists(target):
                os.rename(target, os.path.join(build, f"old-{folder}"))
            os.rename(os.path.join(build, folder), target)
        fsync_path(out, directory=True)
        os.rename(staged, manifest_path)
        fsync_path(out, directory=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# make-plot


def make_plot(args):
    plot_id = hex_bytes(args.id, "--id", 32)
    if args.memo is not None:
        memo = hex_bytes(args.memo, "--memo")
        matches = None  # unknown: not our memo
    else:
        farmer_pk = derive(AugSchemeMPL.key_gen(sha256(b"make-plot/farmer")), FARMER_PATH).get_g1()
        pool_pk = derive(AugSchemeMPL.key_gen(sha256(b"make-plot/pool")), POOL_PATH).get_g1()
        master = AugSchemeMPL.key_gen(sha256(b"make-plot/" + plot_id))
        memo, _, _, memo_id = plot_keys(master, farmer_pk, pool_pk)
        matches = memo_id == plot_id
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        raise OracleError(f"--out {out} is a directory; give the plot file name")
    t0 = time.perf_counter()
    create_plot(os.path.dirname(out), os.path.basename(out), args.k, memo, plot_id)
    json.dump({"path": out, "k": args.k, "id": plot_id.hex(), "memo": memo.hex(),
               "id_matches_memo": matches, "seconds": round(time.perf_counter() - t0, 3)},
              sys.stdout)
    print()


# ---------------------------------------------------------------------------------------------
# prove / verify / info


def open_prover(path):
    if not isinstance(path, str):
        raise OracleError(f"plot path must be a string, got {path!r}")
    try:
        return DiskProver(path)
    except (ValueError, RuntimeError, OSError) as e:
        raise OracleError(f"cannot open {path}: {e}") from None


def prove(req):
    prover = open_prover(req["plot"])
    want_proofs = bool(req.get("proofs", False))
    results = []
    for ch_hex in req["challenges"]:
        r = {"challenge": ch_hex, "qualities": []}
        if want_proofs:
            r["proofs"] = []
        r["error"] = None
        try:
            ch = bytes.fromhex(ch_hex)
            qualities = prover.get_qualities_for_challenge(ch)
            r["qualities"] = [bytes(q).hex() for q in qualities]
            if want_proofs:
                for i in range(len(qualities)):
                    r["proofs"].append(bytes(prover.get_full_proof(ch, i)).hex())
        except Exception as e:  # chiapos raises on corrupt data
            r["error"] = f"{type(e).__name__}: {e}"
        results.append(r)
    return {"results": results}


def verify(req):
    verifier = Verifier()
    results = []
    for n, item in enumerate(req["items"]):
        plot_id = hex_bytes(item["id"], f"items[{n}].id", 32)
        challenge = hex_bytes(item["challenge"], f"items[{n}].challenge", 32)
        proof = hex_bytes(item["proof"], f"items[{n}].proof")
        k = item["k"]
        if not isinstance(k, int) or not 0 < k < 256:
            raise OracleError(f"items[{n}].k: expected an integer 1..255, got {k!r}")
        quality = verifier.validate_proof(plot_id, k, challenge, proof)
        results.append(None if quality is None else bytes(quality).hex())
    return {"results": results}


def info(req):
    plots = []
    for path in req["plots"]:
        try:
            prover = open_prover(path)
            k = prover.get_size()
            plots.append({"id": bytes(prover.get_id()).hex(), "k": k,
                          "memo": bytes(prover.get_memo()).hex(), "size": k, "error": None})
        except Exception as e:
            plots.append({"id": None, "k": None, "memo": None, "size": None, "error": str(e)})
    return {"plots": plots}


# ---------------------------------------------------------------------------------------------
# bench-prove


def read_challenges(path):
    challenges = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                challenges.append(hex_bytes(line, f"{path}:{line_no}", 32))
    if not challenges:
        raise OracleError(f"{path}: no challenges")
    return challenges


def available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warm(paths):
    """Read every distinct file once so the timed run sees a warm page cache."""
    files = {}
    for p in paths:
        st = os.stat(p)
        files[(st.st_dev, st.st_ino)] = (p, st.st_size)
    total = sum(size for _, size in files.values())
    memory = available_memory()
    if memory is not None and total > memory // 2:
        print(f"bench-prove: not warming {total} bytes of plots ({memory} bytes available)",
              file=sys.stderr)
        return False
    for p, _ in files.values():
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 23):
                pass
    return True


def keep_cold(paths, stop):
    """Evicts the plots from the page cache every 50 ms (POSIX_FADV_DONTNEED), so that a
    buffered reader keeps going to the disk, as on a farm much larger than its RAM."""
    fds = [os.open(p, os.O_RDONLY) for p in sorted(set(paths))]
    try:
        while True:
            for fd in fds:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if stop.wait(0.05):
                return
    finally:
        for fd in fds:
            os.close(fd)


def bench_prove(args):
    if args.threads < 1:
        raise OracleError("--threads must be at least 1")
    if args.seconds is not None and not args.seconds > 0:
        raise OracleError("--seconds must be positive")
    challenges = read_challenges(args.challenges_file)
    warmed = False if (args.no_warm or args.keep_cold) else warm(args.plots)
    if args.copies < 1:
        raise OracleError("--copies must be at least 1")
    # Copies: several provers per file, as a farm of identical plots would have (the engine's
    # loadgen serves the same N copies).
    paths = [p for p in args.plots for _ in range(args.copies)]
    provers = [open_prover(p) for p in paths]
    stop = threading.Event()
    if args.keep_cold:
        threading.Thread(target=keep_cold, args=(args.plots, stop), daemon=True).start()

    def one(prover, ch):
        qualities = prover.get_qualities_for_challenge(ch)
        proofs = 0
        if args.proofs:
            for i in range(len(qualities)):
                prover.get_full_proof(ch, i)
                proofs += 1
        return len(qualities), proofs

    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=args.threads)
    futures = {pool.submit(one, p, ch): path
               for ch in challenges for p, path in zip(provers, paths)}
    # With --seconds: what finished within the time; lookups still blocked in chiapos (on a
    # slow disk) cannot be cancelled, so the process exits without waiting for them.
    done, _ = wait(futures, timeout=args.seconds)
    seconds = time.perf_counter() - started
    if args.seconds is not None and len(done) < len(futures):
        seconds = args.seconds
    counts = [f.result() for f in done]
    by_plot = {}
    for f in done:
        by_plot[futures[f]] = by_plot.get(futures[f], 0) + 1
    lookups = len(done)
    qualities = sum(c[0] for c in counts)
    proofs = sum(c[1] for c in counts)
    json.dump({
        "lookups": lookups, "qualities": qualities, "proofs": proofs, "seconds": seconds,
        "lookups_per_second": lookups / seconds, "proofs_per_second": proofs / seconds,
        "plots": len(provers), "copies": args.copies, "challenges": len(challenges),
        "threads": args.threads,
        "with_proofs": args.proofs, "warmed": warmed, "kept_cold": args.keep_cold,
        "lookups_submitted": len(futures), "lookups_by_plot": by_plot,
        "implementation": f"chiapos {CHIAPOS_VERSION}",
    }, sys.stdout)
    print()
    sys.stdout.flush()
    stop.set()
    if len(done) < len(futures):
        os._exit(0)
    pool.shutdown()


# ---------------------------------------------------------------------------------------------
# compare-prove


def run_harvester(binary, plots, challenges_file, mode):
    try:
        out = subprocess.run([binary, "prove", *plots, "--challenges-file", challenges_file,
                              "--proofs", "--mode", mode], check=True, capture_output=True,
                             text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or ""
        raise OracleError(f"{binary} prove --mode {mode} failed: {e}\n{detail}") from None
    found = {}
    for line in out.stdout.splitlines():
        if line.strip():
            r = json.loads(line)
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
        prover = open_prover(plot)
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


# ---------------------------------------------------------------------------------------------


def json_command(handler):
    def run(_args):
        try:
            request = json.load(sys.stdin)
        except ValueError as e:
            raise OracleError(f"stdin is not JSON: {e}") from None
        if not isinstance(request, dict):
            raise OracleError("stdin must be a JSON object")
        try:
            answer = handler(request)
        except KeyError as e:
            raise OracleError(f"request lacks field {e}") from None
        except TypeError as e:
            raise OracleError(f"malformed request: {e}") from None
        json.dump(answer, sys.stdout)
        print()
    return run


def check_answers(args):
    from blspy import G1Element, G2Element
    proofs = signatures = 0
    failures = []
    with open(args.file) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if item["kind"] == "proof":
                proofs += 1
                quality = Verifier().validate_proof(
                    bytes.fromhex(item["plot_id"]), item["k"], bytes.fromhex(item["challenge"]),
                    bytes.fromhex(item["proof"]))
                if quality is None or bytes(quality).hex() != item["quality"]:
                    failures.append(f"line {n}: proof not accepted with its quality")
            elif item["kind"] == "signature":
                signatures += 1
                ok = AugSchemeMPL.verify(G1Element.from_bytes(bytes.fromhex(item["public_key"])),
                                         bytes.fromhex(item["message"]),
                                         G2Element.from_bytes(bytes.fromhex(item["signature"])))
                if not ok:
                    failures.append(f"line {n}: signature does not verify")
            else:
                failures.append(f"line {n}: unknown kind {item['kind']!r}")
    json.dump({"proofs": proofs, "signatures": signatures, "failed": len(failures),
               "failures": failures[:20]}, sys.stdout)
    print()
    if failures or proofs + signatures == 0:
        sys.exit(1)


def parser():
    ap = argparse.ArgumentParser(prog="oracle.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("make-fixtures", help="the fixture plots and manifest.json (cached)")
    p.add_argument("--out", required=True, metavar="DIR", help="fixture folder")
    p.set_defaults(run=make_fixtures)

    p = sub.add_parser("make-plot", help="one plot with a given id")
    p.add_argument("--out", required=True, metavar="FILE", help="plot file to write")
    p.add_argument("--k", type=int, required=True, help=f"plot size {MIN_K}..{MAX_K}")
    p.add_argument("--id", required=True, metavar="HEX", help="32-byte plot id")
    p.add_argument("--memo", metavar="HEX",
                   help="memo bytes (default: a valid 128-byte memo with keys seeded from the id)")
    p.set_defaults(run=make_plot)

    for name, handler, text in [
            ("prove", prove, 'stdin {"plot", "challenges", "proofs"} -> qualities and proofs'),
            ("verify", verify, 'stdin {"items": [{"id", "k", "challenge", "proof"}]} -> qualities'),
            ("info", info, 'stdin {"plots": [path]} -> id, k, memo of each plot')]:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(run=json_command(handler))

    p = sub.add_parser("bench-prove", help="warm-cache chiapos lookups/s on a thread pool")
    p.add_argument("--plots", nargs="+", required=True, metavar="PLOT")
    p.add_argument("--challenges-file", required=True, metavar="F",
                   help="one hex challenge per line")
    p.add_argument("--threads", type=int, default=30, help="thread pool size (default 30)")
    p.add_argument("--copies", type=int, default=1, metavar="N",
                   help="provers per plot file (default 1)")
    p.add_argument("--proofs", action="store_true", help="also fetch every full proof")
    p.add_argument("--no-warm", action="store_true", help="do not read the plots before timing")
    p.add_argument("--keep-cold", action="store_true",
                   help="evict the plots from the page cache every 50 ms during the run")
    p.add_argument("--seconds", type=float, metavar="T",
                   help="count the lookups finished within T seconds, then exit")
    p.set_defaults(run=bench_prove)

    p = sub.add_parser("compare-prove", help="`harvester prove` vs chiapos, both modes")
    p.add_argument("--harvester", required=True, metavar="BIN")
    p.add_argument("--plots", nargs="+", required=True, metavar="PLOT")
    p.add_argument("--challenges", type=int, default=200, metavar="N")
    p.set_defaults(run=compare_prove)

    p = sub.add_parser("check-answers", help="verify farmer-sim --dump output with the reference")
    p.add_argument("--file", required=True, metavar="F")
    p.set_defaults(run=check_answers)
    return ap


def main():
    args = parser().parse_args()
    try:
        args.run(args)
    except OracleError as e:
        sys.exit(f"oracle.py {args.command}: {e}")
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
