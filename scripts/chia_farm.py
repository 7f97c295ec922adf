#!/usr/bin/env python3
"""chia_farm.py: prove a harvester against chia-blockchain's own, unmodified farmer service.

Run it with the chia venv's python (the last line printed by scripts/chia-venv.sh):

    PY=$(scripts/chia-venv.sh | tail -1)
    $PY scripts/chia_farm.py --harvester chia --json report.json
    $PY scripts/chia_farm.py --harvester ours --harvester-bin target/release/harvester --json r.json

What one run does, all on 127.0.0.1:
  1. `chia init` (chia's chia_init, programmatically) into a fresh CHIA_ROOT in a temporary run
     folder: chia's private CA and every service's certificates. Then config.yaml is edited with
     chia's own lock_and_load_config/save_config, as `chia configure` would:
       network_overrides.constants.mainnet: MIN_PLOT_SIZE_V1, NUMBER_ZERO_BITS_PLOT_FILTER_V1,
         HARD_FORK_HEIGHT, PLOT_FILTER_128_HEIGHT, PLOT_FILTER_64_HEIGHT, PLOT_FILTER_32_HEIGHT
         (selected_network stays mainnet);
       farmer: port (free port), full_node_peers -> the fake full node, xch_target_address and
         pool_public_keys (chia's check_keys with the fixture keys), start_rpc_server false;
       pool: xch_target_address;
       harvester: farmer_peers -> [127.0.0.1:farmer port], plot_directories -> [RUN/plots] (then
         each --extra-plots DIR, then RUN/fuse with --fuse-plots),
         recursive_plot_scan true, plots_refresh_parameter.interval_seconds 2,
         start_rpc_server false (so chia's harvester never dials a daemon);
       logging: log_stdout true, log_level INFO (the harvester's output goes to RUN/harvester.log).
     The plot folder gets hard links (copies across file systems) of the fixture plots, some of
     them in RUN/plots/nested/ so that the recursive scan is exercised. Not symlinks: chia's
     harvester keys plots by path but resolves the path in request_signatures.
  2. A fake full node (chia's ChiaServer, node type FULL_NODE, chia's public CA, a tiny API with
     declare_proof_of_space and signed_values) listens on 127.0.0.1:<free port>.
  3. chia's farmer service runs in this process: create_farmer_service(..., keychain=<the fixture
     master keys>, connect_to_daemon=False), Service.run(). It dials the fake full node.
  4. The harvester under test runs as a subprocess in its own process group:
       --harvester ours:  BIN run --chia-root RUN/root   (env CHIA_ROOT=RUN/root)
       --harvester chia:  python -m chia.harvester.start_harvester   (env CHIA_ROOT=RUN/root)
     stdout and stderr go to RUN/harvester.log. The farmer's and fake node's logs: RUN/farmer.log.
  5. Waits for the harvester's connection and plot sync (the farmer's plot_sync_receivers), and
     checks the farmer's plot view against the plot files served: every plot once, with the
     plot id, k, pool key or contract puzzle hash, plot public key and file size computed from
     the file (chiapos + chia's parse_plot_info / generate_plot_public_key), no invalid, no
     keys missing, no duplicates.
  6. Sends N signage points (farmer_protocol.NewSignagePoint) from the fake full node: random
     challenge, cc sp and rc sp hashes from --seed, random sp index 1..63, peak heights cycling
     through the bands of the prefix-bit schedule (each band's first height, its last height,
     and a random one in it), last_tx_height = peak - 0..2. For each SP the EXPECTED proofs are
     computed here, before sending, with chiapos and chia's consensus code on the plot files
     served at that moment: calculate_prefix_bits + passes_plot_filter, calculate_pos_challenge,
     DiskProver.get_qualities_for_challenge, calculate_iterations_quality <
     calculate_sp_interval_iters, plots with k < MIN_PLOT_SIZE_V1 skipped, get_full_proof.
     After each SP it waits until the harvester's farming_info has reached the farmer, every
     expected proof has been declared and nothing new came for 0.3 s, or nothing new came for
     --settle seconds, at most --sp-timeout seconds.
  7. The fake full node validates every declare_proof_of_space as chia's full node and block
     validation do: the SP it answers (challenge, cc sp, rc sp, index), verify_and_get_quality_string
     with the overridden constants, required_iters < sp interval iters, the aggregated
     challenge_chain_sp_signature and reward_chain_sp_signature (AugSchemeMPL.verify with the
     proof's plot public key), the pool target signature for pool-public-key plots, the farmer
     puzzle hash, and that the plot is one the harvester serves with that plot public key.
  8. farming_info: the farmer's own state_changed("new_farming_info") events (the callback the
     farmer's RPC server normally installs; no chia code is patched). Checked per SP: exactly
     one, total_plots = plots served, passed = plots passing the filter (with or without the
     plots below MIN_PLOT_SIZE_V1), proofs = proofs declared (so a harvester that sends proofs the
     farmer rejects fails here; chia's own harvester does when --min-plot-size is above the
     smallest k, since it does not apply MIN_PLOT_SIZE_V1: use --no-farming-info-check there).
  9. The farmer's harvester connections are watched every 50 ms: a connection that closes outside
     the restart scenario fails the run (the farmer closes it, e.g., when a signature share does
     not verify). WARNING and ERROR records of chia's loggers go into the report
     (farmer_log_records); they do not fail the run by themselves.

Scenarios:
  --restart-farmer-after N   after N SPs stop the farmer service, start a new one on the same
                             port; measures the seconds until the harvester is connected and its
                             plot sync is complete again, then continues.
  --add-remove-after N       after N SPs hard-link the --add plot into the plot folder and unlink
                             the --remove plot (the --add plot is left out of the initial set);
                             measures the seconds until the farmer's plot view shows both.
  --hang-after N             (with --fuse-plots) after N SPs every read of the FUSE disk hangs; see
                             "Plots" and "Stuck disk" below.

Plots (besides the fixtures, --plots; `--plots none` serves no fixture plot):
  --fresh-plots N   before the farmer starts, N new k=18 plots made by chia's own create_plots
                    (scripts/chia_plots.py: chiapos' DiskPlotter, memo and plot id exactly as
                    `chia plots create` makes them) with the fixture farmer key, a local master
                    secret key drawn from the run's seed per plot, alternating pool-public-key
                    (the fixture pool key) and pool-contract memos (a contract puzzle hash drawn
                    from the seed; the farmer needs no configuration for it). Plotted in
                    RUN/plot-tmp and renamed into RUN/plots/fresh/ (one file system). With
                    `--seed random` every run makes plots (and ids) never seen before.
  --extra-plots DIR every *.plot under DIR (repeatable) is served in place: DIR is added to the
                    harvester's plot_directories; their expected proofs and plot view are checked
                    like the fixtures'.
  --fuse-plots DIR  the plots of DIR are served through scripts/faultfs.py (a FUSE passthrough run
                    with the system python3 and fusepy, as root) mounted at RUN/fuse, its own
                    device: one more "disk". Expected values are computed from DIR itself, so the
                    harness never reads through the mount. The mount is released (mode ok), the
                    FUSE daemon killed and the mount detached (umount -l) on exit.

--seed N|random: every random choice of the run (challenges, sp hashes, indexes, heights, the fresh
plots' keys and contract puzzle hash) derives from N; `random` draws N from os.urandom and prints
it on the first line of output (and in the report), so a failing run is reproduced by --seed N.

Timing (--bench): implies --filter-bits 0 unless given (every plot passes the filter at every
SP). Records per SP the farmer's receipt time of every new_proof_of_space (a wrapper around the
farmer API object's new_proof_of_space request entry, installed as an instance attribute
`metadata` of this process's FarmerAPI object; chia's files and classes are untouched) and of
farming_info (the state-changed callback), and the fake node's receipt time of every
declare_proof_of_space, all from the moment the fake node sent the SP; the validation of
declarations is deferred until the SP has settled so that it does not delay the farmer (same event
loop). The harvester process's CPU time (utime + stime of /proc/PID/stat, all its threads) is read
before the first SP and after the last one settled, plus an idle rate over --idle-seconds before
the first SP. Report: "bench" (p50/p90/p99/max).

Paced SPs (--sp-interval S): all SPs are computed first, then sent every S seconds without waiting
for answers; each SP is watched for --sp-timeout seconds after it was sent (answers to several SPs
arrive interleaved, attributed by their cc sp hash).

Stuck disk (--fuse-plots DIR --hang-after N, usually with --sp-interval): from SP N on the FUSE
disk hangs every read (faultfs mode "hang"); a harvester is then judged per SP on whether its
farming_info and every expected proof of the plots NOT on the FUSE disk reached the farmer / were
declared within each window of --windows (default 5,28 seconds). Missing proofs and farming_info
from SP N on are measured, not failures; invalid declarations, duplicates and disconnects still
fail the run. Report: "stuck_disk".

Diagnostics: --trace-messages records every farmer <-> harvester message (type, id, size, both
handshakes) in the report. It wraps chia code in memory (WSChiaConnection._send_message /
_read_one_message of this process; chia's files are never touched); --bench wraps the farmer
API object's new_proof_of_space entry (see above); without these nothing of chia is wrapped.

Exit status: 0 when every expected proof was declared, every declaration (proof, required
iters, signatures) is valid, extras (valid proofs chiapos did not find, e.g. a complete-mode
harvester) are only reported, nothing was declared twice or for a plot not served, the farmer's
plot view matched the plots served (initially, after a restart, after add/remove and at the
end), farming_info matched, the harvester stayed connected, and the scenario checks passed. Otherwise 1, with the reasons on stderr; 2 for bad arguments.
The --json report holds everything: configuration, plot views, per-SP expected / declared /
missing / extra / invalid with timings, farming_info, eligibility per k, scenario timings.

Everything is bounded: --timeout for the whole run (default 180 s), every wait has its own
bound, the harvester process group is killed on exit (SIGTERM, then SIGKILL after 5 s), a FUSE
mount is released and detached, and the run folder is removed unless --keep.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

try:
    from aiohttp import web
    from chia_rs import AugSchemeMPL, G1Element, PlotParam, PrivateKey
    from chia_rs.sized_bytes import bytes32
    from chia_rs.sized_ints import uint8, uint16, uint32, uint64
    from chiapos import DiskProver

    from chia import __version__ as CHIA_VERSION
    from chia.apis import StubMetadataRegistry
    from chia.cmds.init_funcs import check_keys, chia_init
    from chia.consensus.constants import replace_str_to_bytes
    from chia.consensus.default_constants import DEFAULT_CONSTANTS
    from chia.consensus.pos_quality import _expected_plot_size
    from chia.consensus.pot_iterations import calculate_iterations_quality, calculate_sp_interval_iters
    from chia.farmer.start_farmer import create_farmer_service
    from chia.plotting.util import parse_plot_info
    from chia.protocols import farmer_protocol, harvester_protocol
    from chia.protocols.outbound_message import NodeType, make_msg
    from chia.protocols.protocol_message_types import ProtocolMessageTypes
    from chia.protocols.shared_protocol import Handshake, default_capabilities
    from chia.server.api_protocol import ApiMetadata
    from chia.server.server import ChiaServer
    from chia.server.ssl_context import chia_ssl_ca_paths, private_ssl_ca_paths
    from chia.server.ws_connection import WSChiaConnection
    from chia.types.blockchain_format.proof_of_space import (
        calculate_plot_id_ph,
        calculate_plot_id_pk,
        calculate_pos_challenge,
        calculate_prefix_bits,
        generate_plot_public_key,
        passes_plot_filter,
        verify_and_get_quality_string,
    )
    from chia.util.bech32m import decode_puzzle_hash
    from chia.util.config import load_config, lock_and_load_config, save_config
    from chia.util.network import WebServer
    from chia.wallet.derive_keys import master_sk_to_farmer_sk, master_sk_to_local_sk, master_sk_to_pool_sk

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import chia_plots
except ImportError as _e:  # pragma: no cover - wrong interpreter
    sys.stderr.write(
        f"chia_farm: {_e}\nRun this with the chia venv's python: $(scripts/chia-venv.sh | tail -1)\n"
    )
    sys.exit(2)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "fixtures"
DEFAULT_SUB_SLOT_ITERS = 2**57  # sp interval 2^51 > every k>=18 quality's required iters at difficulty 1
ALL_PLOTS = ["k18-og-a", "k18-og-b", "k18-pc-a", "k18-pc-b", "k19-og-a", "k20-pc-a"]
NESTED = {"k18-pc-a", "k18-pc-b", "k20-pc-a"}  # served from RUN/plots/nested/ (recursive scan)

log = logging.getLogger("chia_farm")


class HarnessError(Exception):
    pass


def now() -> float:
    return time.monotonic()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def fixture_master_keys() -> tuple[PrivateKey, PrivateKey]:
    """The fixtures' master keys (scripts/oracle.py fixture_keys derives the farmer and pool keys
    from these with chia's farmer path m/12381/8444/0/0 and pool path m/12381/8444/1/0)."""
    farmer_master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/farmer"))
    pool_master = AugSchemeMPL.key_gen(sha256(b"harvester-fixture/pool"))
    return farmer_master, pool_master


class FixtureKeychain:
    """The one method chia's farmer (and check_keys) calls on a local keychain."""

    def __init__(self, master_sks: list[PrivateKey]) -> None:
        self.master_sks = master_sks

    def get_all_private_keys(self) -> list[tuple[PrivateKey, bytes]]:
        return [(sk, b"") for sk in self.master_sks]

    def __bool__(self) -> bool:  # KeychainProxy tests `if local_keychain:`
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min": round(ordered[0], 4),
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "max": round(ordered[-1], 4),
    }


# ----------------------------------------------------------------------------------------------
# plot files


@dataclass
class PlotFile:
    name: str
    src: Path
    path: Path  # where it is (or will be) served
    plot_id: bytes32
    k: int
    pool_public_key: G1Element | None
    pool_contract_puzzle_hash: bytes32 | None
    farmer_public_key: G1Element
    plot_public_key: G1Element
    file_size: int
    prover: Any = None
    read_path: Path | None = None  # what the harness opens (default: path; the source for FUSE plots)
    disk: str = "plots"  # the harness's "disk": plots, extraN, fuse

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "disk": self.disk,
            "plot_id": self.plot_id.hex(),
            "k": self.k,
            "pool_public_key": None if self.pool_public_key is None else bytes(self.pool_public_key).hex(),
            "pool_contract_puzzle_hash": (
                None if self.pool_contract_puzzle_hash is None else self.pool_contract_puzzle_hash.hex()
            ),
            "plot_public_key": bytes(self.plot_public_key).hex(),
            "file_size": self.file_size,
        }


def read_plot_file(name: str, src: Path, path: Path) -> PlotFile:
    """Everything the farmer should see about a plot, computed from the file with chiapos and
    chia's own key code (as chia's plot manager does)."""
    prover = DiskProver(str(src))
    plot_id = bytes32(prover.get_id())
    pool, farmer_pk, local_master_sk = parse_plot_info(prover.get_memo())
    local_sk = master_sk_to_local_sk(local_master_sk)
    if isinstance(pool, G1Element):
        pool_pk, pool_ph = pool, None
        plot_pk = generate_plot_public_key(local_sk.get_g1(), farmer_pk, False)
        id_from_keys = calculate_plot_id_pk(pool_pk, plot_pk)
    else:
        pool_pk, pool_ph = None, bytes32(pool)
        plot_pk = generate_plot_public_key(local_sk.get_g1(), farmer_pk, True)
        id_from_keys = calculate_plot_id_ph(pool_ph, plot_pk)
    if id_from_keys != plot_id:
        raise HarnessError(f"{src}: the plot id does not match the memo's keys")
    return PlotFile(
        name=name,
        src=src,
        path=path,
        plot_id=plot_id,
        k=int(prover.get_size()),
        pool_public_key=pool_pk,
        pool_contract_puzzle_hash=pool_ph,
        farmer_public_key=farmer_pk,
        plot_public_key=plot_pk,
        file_size=src.stat().st_size,
    )


def place_file(src: Path, dst: Path) -> str:
    """Hard link (or copy, across file systems) src to dst atomically: the harvester never sees a
    half-written plot."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
        how = "hardlink"
    except OSError:
        shutil.copyfile(src, tmp)
        how = "copy"
    os.replace(tmp, dst)
    return how


def fuse_python(explicit: str | None) -> str:
    """A python that imports fusepy (Debian's python3-fusepy is module `fusepy`, PyPI's `fuse`)."""
    probe = "try:\n import fusepy as f\nexcept ImportError:\n import fuse as f\nf.FUSE, f.Operations"
    for python in [explicit] if explicit else ["/usr/bin/python3", "python3"]:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run([python, "-c", probe], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=20)
            if r.returncode == 0:
                return python
    raise HarnessError("no python imports fusepy (Debian: apt-get install -y fuse3 python3-fusepy)")


class FuseDisk:
    """scripts/faultfs.py serving `source` read-only at `mountpoint` (its own device), with the
    mode of every read (ok, hang, eio, delay:MS) taken from a mode file."""

    def __init__(self, python: str, source: Path, mountpoint: Path, run_dir: Path) -> None:
        self.python = python
        self.source = source
        self.mountpoint = mountpoint
        self.mode_file = run_dir / "fuse-mode"
        self.reads_log = run_dir / "fuse-reads.log"
        self.output = run_dir / "fuse-output.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.mode = "ok"

    def mount(self, timeout: float = 20) -> None:
        if os.geteuid() != 0:
            raise HarnessError("--fuse-plots needs root (mounting FUSE)")
        if not Path("/dev/fuse").exists():
            raise HarnessError("--fuse-plots: /dev/fuse is missing")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.set_mode("ok")
        parent_dev = self.mountpoint.parent.stat().st_dev
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [self.python, str(Path(__file__).resolve().parent / "faultfs.py"), "--source", str(self.source),
                 "--mountpoint", str(self.mountpoint), "--mode-file", str(self.mode_file),
                 "--log", str(self.reads_log)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = now() + timeout
        while True:
            with contextlib.suppress(OSError):
                if self.mountpoint.stat().st_dev != parent_dev:
                    return
            if self.proc.poll() is not None:
                raise HarnessError(f"faultfs.py exited ({self.proc.returncode}): {tail(self.output)}")
            if now() >= deadline:
                raise HarnessError(f"faultfs.py did not mount {self.mountpoint} within {timeout} s")
            time.sleep(0.02)

    def set_mode(self, mode: str) -> None:
        """By rename: a read never sees half a mode."""
        tmp = self.mode_file.with_name(self.mode_file.name + ".new")
        tmp.write_text(mode + "\n")
        os.replace(tmp, self.mode_file)
        self.mode = mode

    def reads(self, mode: str = "") -> int:
        try:
            with open(self.reads_log, "rb") as f:
                prefix = mode.encode()
                return sum(1 for line in f if line.startswith(prefix))
        except OSError:
            return 0

    def unmount(self) -> None:
        """Releases hung reads (mode ok), kills the FUSE daemon (reads still waiting fail with
        ENOTCONN) and detaches the mount, also while files are open."""
        with contextlib.suppress(OSError):
            self.set_mode("ok")
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None
        if os.path.ismount(self.mountpoint) or self.mounted():
            for cmd in (["umount", "-l", str(self.mountpoint)], ["fusermount3", "-u", "-z", str(self.mountpoint)]):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    if subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
                        break

    def mounted(self) -> bool:
        try:
            with open("/proc/self/mounts") as f:
                return any(line.split()[1] == str(self.mountpoint) for line in f if len(line.split()) > 1)
        except OSError:
            return False


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def max_in_window(times: list[float], window: float) -> int:
    """The most events within any `window` seconds."""
    ordered = sorted(times)
    best = j = 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def percentiles(values: list[float]) -> dict[str, Any]:
    """Nearest-rank percentiles (p99 of fewer than 100 values is the maximum)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[max(0, min(n - 1, -(-int(p * n) // 100) - 1))], 4)

    return {"count": n, "min": round(ordered[0], 4), "p50": rank(50), "p90": rank(90), "p99": rank(99),
            "max": round(ordered[-1], 4), "mean": round(statistics.fmean(ordered), 4)}


# ----------------------------------------------------------------------------------------------
# the fake full node


@dataclass
class SignagePoint:
    number: int
    challenge_hash: bytes32
    cc_sp: bytes32
    rc_sp: bytes32
    index: int
    peak_height: int
    last_tx_height: int
    difficulty: int
    sub_slot_iters: int
    prefix_bits: dict[int, int]
    served: list[PlotFile]
    expected: list[dict[str, Any]] = field(default_factory=list)
    passed_filter: int = 0  # plots served that pass the filter (any k)
    passed_filter_farmable: int = 0  # ... with k >= MIN_PLOT_SIZE_V1
    sent_at: float | None = None
    settled_at: float | None = None
    declared: list[dict[str, Any]] = field(default_factory=list)
    farming_infos: list[dict[str, Any]] = field(default_factory=list)
    last_event: float = 0.0
    sent_to: list[Any] = field(default_factory=list)  # the farmer's harvester connections then
    # --bench: declarations not yet validated (request, receipt time, plot id hex, proof hex)
    pending: list[tuple[Any, float, str, str]] = field(default_factory=list)
    # --bench: the farmer's receipt of each new_proof_of_space for this SP
    new_proofs: list[dict[str, Any]] = field(default_factory=list)
    after_hang: bool = False  # sent after the FUSE disk was set to hang


class FakeBlockchain:
    def get_peak_height(self) -> None:  # ChiaServer asks a FULL_NODE's node for this on inbound
        return None


class FakeFullNode:
    def __init__(self) -> None:
        self.blockchain = FakeBlockchain()


class FakeFullNodeAPI:
    """The only messages a farmer sends to its full node: declare_proof_of_space, signed_values."""

    log: logging.Logger
    metadata: ClassVar[ApiMetadata] = ApiMetadata()

    def __init__(self, harness: Harness) -> None:
        self.log = logging.getLogger("fake_full_node")
        self.harness = harness

    def ready(self) -> bool:
        return True

    @metadata.request(peer_required=True)
    async def declare_proof_of_space(
        self, request: farmer_protocol.DeclareProofOfSpace, peer: WSChiaConnection
    ) -> None:
        self.harness.on_declare(request, now())

    @metadata.request()
    async def signed_values(self, request: farmer_protocol.SignedValues) -> None:
        self.harness.unexpected_messages.append("signed_values")


# ----------------------------------------------------------------------------------------------
# the farmer service


class FarmerRunner:
    def __init__(self, root: Path, keychain: FixtureKeychain, on_state: Any, on_new_proof: Any = None) -> None:
        self.root = root
        self.keychain = keychain
        self.on_state = on_state
        self.on_new_proof = on_new_proof
        self.service: Any = None
        self.farmer: Any = None
        self.task: asyncio.Task[None] | None = None
        self.starts = 0

    async def start(self) -> None:
        # start_farmer.async_main's config loading, without load_config_cli's command-line
        # overrides (it would parse this script's argv)
        config = load_config(self.root, "config.yaml", fill_missing_services=True)
        service_config = load_config(self.root, "config.yaml", "farmer")
        config["farmer"] = service_config
        config_pool = load_config(self.root, "config.yaml", "pool")
        config["pool"] = config_pool
        self.service = create_farmer_service(
            self.root, config, config_pool, DEFAULT_CONSTANTS, keychain=self.keychain, connect_to_daemon=False
        )
        self.farmer = self.service._node
        # The callback chia's farmer RPC server installs (the RPC server is off here).
        self.farmer._set_state_changed_callback(self.on_state)
        if self.on_new_proof is not None:
            self.watch_new_proofs(self.service._api)
        self.starts += 1
        self.task = asyncio.create_task(self.service.run(), name=f"farmer-service-{self.starts}")

    def watch_new_proofs(self, api: Any) -> None:
        """--bench: the farmer's receipt time of every new_proof_of_space. ChiaServer dispatches
        through `api.metadata.message_type_to_request[type].method(api, bytes, peer)`; this object
        gets its own copy of the class's ApiMetadata (an instance attribute) whose
        new_proof_of_space entry notes the time and the message, then calls chia's method."""
        metadata = ApiMetadata.copy(type(api).metadata)
        kind = ProtocolMessageTypes.new_proof_of_space
        request = metadata.message_type_to_request[kind]
        original = request.method
        on_new_proof = self.on_new_proof

        def method(api_self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            on_new_proof(message, now())
            return original(api_self, message, *args, **kwargs)

        metadata.message_type_to_request[kind] = dataclasses.replace(request, method=method)
        api.metadata = metadata

    async def stop(self, timeout: float = 30) -> None:
        if self.service is None or self.task is None:
            return
        self.service.stop_requested.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except asyncio.TimeoutError:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
            raise HarnessError(f"the farmer service did not stop within {timeout} s")
        finally:
            self.task = None

    def check_alive(self) -> None:
        if self.task is not None and self.task.done():
            exc = self.task.exception() if not self.task.cancelled() else None
            raise HarnessError(f"the farmer service stopped by itself: {exc!r}")


# ----------------------------------------------------------------------------------------------
# the harness


class Harness:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.root = run_dir / "root"
        self.plot_dir = run_dir / "plots"
        self.rng = random.Random(args.seed)
        self.t0 = now()
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.timeline: list[dict[str, Any]] = []
        self.unexpected_messages: list[str] = []
        self.unknown_declarations: list[dict[str, Any]] = []
        self.sps: list[SignagePoint] = []
        self.sp_by_cc: dict[bytes32, SignagePoint] = {}
        self.farming_info_unmatched: list[dict[str, Any]] = []
        self.plot_views: dict[str, Any] = {}
        self.scenarios: dict[str, Any] = {}
        self.connections: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.harvester_log: io.BufferedWriter | None = None
        self.farmer_runner: FarmerRunner | None = None
        self.node_server: ChiaServer | None = None
        self.constants: Any = None
        self.farmer_target: bytes32 | None = None
        self.placement: dict[str, str] = {}
        self.plots: dict[str, PlotFile] = {}  # every plot this run may serve, by name
        self.served: dict[str, PlotFile] = {}  # what is in the plot folder now
        self.eligibility: dict[int, Counter[str]] = {}
        self.harvester_exit: int | None = None
        self.restarting = False
        self.disconnects: list[dict[str, Any]] = []
        self.farmer_log_records: list[dict[str, Any]] = []
        self.trace_counts: Counter[tuple[str, str, bool]] = Counter()
        self.trace_log: list[dict[str, Any]] = []
        self.trace_handshakes: list[dict[str, Any]] = []
        self.plot_directories: list[Path] = [self.plot_dir]
        self.fuse: FuseDisk | None = None
        self.fresh: dict[str, Any] | None = None
        self.hang: dict[str, Any] | None = None
        self.cpu: dict[str, Any] = {}
        self.new_proofs_unmatched = 0

    # -------------------------------------------------------------------------------- helpers

    def mark(self, event: str, **data: Any) -> None:
        entry = {"t": round(now() - self.t0, 3), "event": event, **data}
        self.timeline.append(entry)
        log.info("mark %s", entry)

    def fail(self, reason: str) -> None:
        self.failures.append(reason)
        log.error("FAIL %s", reason)

    def check_harvester_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.harvester_exit = self.proc.returncode
            raise HarnessError(f"the harvester exited with status {self.proc.returncode} (see harvester.log)")

    async def wait_until(self, pred: Any, timeout: float, interval: float = 0.05) -> bool:
        deadline = now() + timeout
        while True:
            self.check_harvester_alive()
            if self.farmer_runner is not None:
                self.farmer_runner.check_alive()
            if pred():
                return True
            if now() >= deadline:
                return False
            await asyncio.sleep(interval)

    # -------------------------------------------------------------------------------- setup

    def select_plots(self) -> tuple[list[str], str | None, str | None]:
        a = self.args
        names = [] if a.plots == "none" else a.plots.split(",") if a.plots else list(ALL_PLOTS)
        add = remove = None
        if a.add_remove_after is not None:
            add, remove = a.add, a.remove
            if add == remove:
                raise HarnessError("--add and --remove must name different plots")
            names = [n for n in names if n != add]
            if remove not in names:
                names.append(remove)
        return names, add, remove

    async def make_fresh_plots(self, farmer_pk: G1Element, pool_pk: G1Element) -> None:
        """--fresh-plots: plots never seen before (keys from the run's seed), made by chia's
        create_plots in RUN/plot-tmp and renamed into RUN/plots/fresh/."""
        a = self.args
        rng = random.Random(f"{a.seed}/fresh-plots")
        contract_ph = bytes32(rng.randbytes(32))
        tmp = self.run_dir / "plot-tmp"
        final = self.plot_dir / "fresh"
        final.mkdir(parents=True, exist_ok=True)
        t0 = now()
        seconds = []
        for i in range(a.fresh_plots):
            sk = AugSchemeMPL.key_gen(rng.randbytes(32))
            contract = i % 2 == 1
            t = now()
            made = await asyncio.to_thread(
                chia_plots.make_plot, tmp, sk, farmer_pk, None if contract else pool_pk,
                contract_ph if contract else None,
            )
            path = final / made.name
            os.replace(made, path)
            seconds.append(round(now() - t, 3))
            name = f"fresh/{path.name}"
            plot = read_plot_file(name, path, path)
            plot.disk = "plots"
            self.plots[name] = plot
            self.served[name] = plot
            self.placement[name] = "plotted"
        shutil.rmtree(tmp, ignore_errors=True)
        self.fresh = {
            "count": a.fresh_plots,
            "seconds_total": round(now() - t0, 3),
            "seconds_each": seconds,
            "pool_contract_puzzle_hash": contract_ph.hex(),
            "plotter": {"buffer_mib": chia_plots.PLOTTER_BUFFER_MIB, "buckets": chia_plots.PLOTTER_BUCKETS,
                        "stripe": chia_plots.PLOTTER_STRIPE, "threads": chia_plots.PLOTTER_THREADS},
        }
        self.mark("fresh_plots_made", **{k: v for k, v in self.fresh.items() if k != "plotter"})

    def add_plot_dir(self, source: Path, disk: str, served_root: Path | None) -> None:
        """Every *.plot under source (hidden folders skipped), served at served_root/<relative
        path> (FUSE) or in place; the harness reads the source file."""
        if not source.is_dir():
            raise HarnessError(f"{source}: not a folder")
        files = sorted(
            f for f in source.rglob("*.plot")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(source).parts)
        )
        if not files:
            raise HarnessError(f"no *.plot under {source}")
        for f in files:
            rel = f.relative_to(source)
            path = f if served_root is None else served_root / rel
            name = f"{disk}/{rel}"
            plot = read_plot_file(name, f, path)
            plot.read_path = f
            plot.disk = disk
            self.plots[name] = plot
            self.served[name] = plot
            self.placement[name] = "in place" if served_root is None else "fuse"

    def setup_root(self, farmer_port: int, node_port: int) -> None:
        a = self.args
        self.root.mkdir(parents=True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = chia_init(self.root, should_check_keys=False)
        if rc != 0:
            raise HarnessError(f"chia init failed ({rc}): {out.getvalue()}")
        heights = [int(h) for h in a.filter_heights.split(",")]
        if len(heights) != 4 or heights != sorted(heights) or heights[0] <= 0:
            raise HarnessError("--filter-heights needs four increasing positive heights")
        with lock_and_load_config(self.root, "config.yaml") as config:
            overrides = config["network_overrides"]["constants"]["mainnet"]
            overrides["MIN_PLOT_SIZE_V1"] = a.min_plot_size
            overrides["NUMBER_ZERO_BITS_PLOT_FILTER_V1"] = a.filter_bits
            overrides["HARD_FORK_HEIGHT"] = heights[0]
            overrides["PLOT_FILTER_128_HEIGHT"] = heights[1]
            overrides["PLOT_FILTER_64_HEIGHT"] = heights[2]
            overrides["PLOT_FILTER_32_HEIGHT"] = heights[3]
            config["self_hostname"] = "127.0.0.1"
            config["daemon_port"] = free_port()  # nothing listens or dials there; keeps off 55400
            config["logging"]["log_stdout"] = True
            config["logging"]["log_level"] = "INFO"
            farmer = config["farmer"]
            farmer["port"] = farmer_port
            farmer["full_node_peers"] = [{"host": "127.0.0.1", "port": node_port}]
            farmer["start_rpc_server"] = False
            harvester = config["harvester"]
            harvester["farmer_peers"] = [{"host": "127.0.0.1", "port": farmer_port}]
            harvester["plot_directories"] = [str(d) for d in self.plot_directories]
            harvester["recursive_plot_scan"] = True
            harvester["plots_refresh_parameter"]["interval_seconds"] = 2
            harvester["start_rpc_server"] = False
            save_config(self.root, "config.yaml", config)
        # chia's check_keys, as `chia init` does with keys in the keychain: xch_target_address of
        # the farmer and the pool, and the farmer's pool_public_keys.
        with contextlib.redirect_stdout(out):
            check_keys(self.root, keychain=self.keychain)
        (self.run_dir / "chia-init.txt").write_text(out.getvalue())
        config = load_config(self.root, "config.yaml")
        self.farmer_target = decode_puzzle_hash(config["farmer"]["xch_target_address"])
        overrides = dict(config["farmer"]["network_overrides"]["constants"]["mainnet"])
        # exactly what create_farmer_service does with them
        self.constants = replace_str_to_bytes(DEFAULT_CONSTANTS, **overrides)

    async def start_fake_node(self) -> int:
        config = load_config(self.root, "config.yaml")
        private_ca = private_ssl_ca_paths(self.root, config)
        chia_ca = chia_ssl_ca_paths(self.root, config)
        server = ChiaServer.create(
            0,
            FakeFullNode(),
            FakeFullNodeAPI(self),
            NodeType.FULL_NODE,
            config["ping_interval"],
            config["selected_network"],
            100,
            100,
            default_capabilities[NodeType.FULL_NODE],
            self.root,
            config["full_node"],
            private_ca,
            chia_ca,
            stub_metadata_for_type=StubMetadataRegistry,
            name="fake_full_node_server",
        )
        # ChiaServer.start listens on every interface; this is the same, on 127.0.0.1 only.
        server.on_connect = None
        server.webserver = await WebServer.create(
            hostname="127.0.0.1",
            port=uint16(0),
            routes=[web.get("/ws", server.incoming_connection)],
            ssl_context=server.ssl_context,
            logger=server.log,
        )
        server._port = int(server.webserver.listen_port)
        self.node_server = server
        return int(server._port)

    def start_harvester(self) -> None:
        a = self.args
        env = dict(os.environ, CHIA_ROOT=str(self.root))
        if a.harvester == "ours":
            cmd = [str(Path(a.harvester_bin).resolve()), "run", "--chia-root", str(self.root)]
        else:
            cmd = [sys.executable, "-m", "chia.harvester.start_harvester"]
        self.harvester_log = open(self.run_dir / "harvester.log", "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.harvester_log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.run_dir),
            start_new_session=True,
        )
        self.mark("harvester_started", pid=self.proc.pid, cmd=cmd)

    def stop_harvester(self) -> None:
        if self.fuse is not None and self.fuse.mode != "ok":
            # hung reads finish first, so the harvester can exit on SIGTERM
            with contextlib.suppress(OSError):
                self.fuse.set_mode("ok")
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        else:
            self.harvester_exit = proc.returncode
            # its children, if any, share its process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self.harvester_log is not None:
            self.harvester_log.close()
            self.harvester_log = None

    def install_trace(self) -> None:
        """--trace-messages: wrap WSChiaConnection's frame send/receive in this process (never
        chia's files) and record the farmer <-> harvester messages: type, id, size, handshakes."""
        harness = self
        orig_send = WSChiaConnection._send_message
        orig_read = WSChiaConnection._read_one_message

        def record(conn: Any, direction: str, message: Any) -> None:
            if conn.local_type != NodeType.FARMER or conn.is_outbound:
                return  # only the farmer's inbound (harvester) connections
            name = ProtocolMessageTypes(message.type).name
            harness.trace_counts[(direction, name, message.id is not None)] += 1
            if len(harness.trace_log) < 400:
                harness.trace_log.append(
                    {"t": round(now() - harness.t0, 4), "dir": direction, "type": name,
                     "id": None if message.id is None else int(message.id), "bytes": len(message.data)}
                )
            if message.type == ProtocolMessageTypes.handshake.value:
                with contextlib.suppress(Exception):
                    h = Handshake.from_bytes(message.data)
                    harness.trace_handshakes.append(
                        {"dir": direction, "network_id": h.network_id, "protocol_version": h.protocol_version,
                         "software_version": h.software_version, "server_port": int(h.server_port),
                         "node_type": int(h.node_type),
                         "capabilities": [[int(c), v] for c, v in h.capabilities]}
                    )

        async def send(conn: Any, message: Any, priority: int = 0) -> None:
            record(conn, "farmer->harvester", message)
            await orig_send(conn, message, priority)

        async def read(conn: Any) -> Any:
            message = await orig_read(conn)
            if message is not None:
                record(conn, "harvester->farmer", message)
            return message

        WSChiaConnection._send_message = send  # type: ignore[method-assign]
        WSChiaConnection._read_one_message = read  # type: ignore[method-assign]

    # -------------------------------------------------------------------------------- farmer view

    @property
    def farmer(self) -> Any:
        assert self.farmer_runner is not None
        return self.farmer_runner.farmer

    def harvester_connections(self) -> list[WSChiaConnection]:
        server = self.farmer.server
        if server is None:
            return []
        return list(server.get_connections(NodeType.HARVESTER))

    def receiver(self) -> Any:
        conns = self.harvester_connections()
        if len(conns) != 1:
            return None
        return self.farmer.plot_sync_receivers.get(conns[0].peer_node_id)

    def sync_complete(self) -> bool:
        r = self.receiver()
        return r is not None and r.last_sync().sync_id != 0 and not r.current_sync().in_progress()

    def view_matches(self) -> bool:
        r = self.receiver()
        if r is None or not self.sync_complete():
            return False
        return not self.plot_view_problems(r)

    def plot_view_problems(self, r: Any) -> list[str]:
        problems: list[str] = []
        served_by_id = {p.plot_id: p for p in self.served.values()}
        seen: Counter[bytes32] = Counter()
        for filename, plot in r.plots().items():
            pid = bytes32(plot.plot_id)
            seen[pid] += 1
            want = served_by_id.get(pid)
            if want is None:
                problems.append(f"farmer lists {filename} (plot id {pid.hex()[:16]}) which is not served")
                continue
            try:
                same = os.path.samefile(filename, want.path)
            except OSError:
                same = False
            if Path(filename).name != want.path.name or not same:
                problems.append(f"{want.name}: filename {filename!r} is not the served file {str(want.path)!r}")
            if int(plot.size) != want.k:
                problems.append(f"{want.name}: size {plot.size} != k {want.k}")
            if plot.pool_public_key != want.pool_public_key:
                problems.append(f"{want.name}: pool_public_key differs")
            if plot.pool_contract_puzzle_hash != want.pool_contract_puzzle_hash:
                problems.append(f"{want.name}: pool_contract_puzzle_hash differs")
            if plot.plot_public_key != want.plot_public_key:
                problems.append(f"{want.name}: plot_public_key differs")
            if int(plot.file_size) != want.file_size:
                problems.append(f"{want.name}: file_size {plot.file_size} != {want.file_size}")
            if plot.compression_level not in (None, 0):
                problems.append(f"{want.name}: compression_level {plot.compression_level}")
        for pid, n in seen.items():
            if n > 1:
                problems.append(f"plot id {pid.hex()[:16]} listed {n} times")
        for p in self.served.values():
            if p.plot_id not in seen:
                problems.append(f"{p.name} is served but not in the farmer's plot list")
        for kind, items in (("invalid", r.invalid()), ("keys_missing", r.keys_missing()),
                            ("duplicates", r.duplicates())):
            if items:
                problems.append(f"{kind}: {list(items)}")
        return problems

    def record_view(self, label: str) -> dict[str, Any]:
        r = self.receiver()
        conns = self.harvester_connections()
        view: dict[str, Any] = {"harvester_connections": len(conns)}
        if r is not None:
            plots = r.plots()
            view.update(
                {
                    "plots": sorted(
                        (
                            {
                                "filename": fn,
                                "plot_id": bytes(p.plot_id).hex(),
                                "size": int(p.size),
                                "file_size": int(p.file_size),
                                "message_type": type(p).__name__,
                            }
                            for fn, p in plots.items()
                        ),
                        key=lambda d: d["filename"],
                    ),
                    "plot_count": len(plots),
                    "invalid": list(r.invalid()),
                    "keys_missing": list(r.keys_missing()),
                    "duplicates": list(r.duplicates()),
                    "plot_files_total": int(r.last_sync().plots_total),
                    "total_plot_size": r.total_plot_size(),
                    "harvesting_mode": None if r.harvesting_mode() is None else int(r.harvesting_mode()),
                    "sync_complete": self.sync_complete(),
                    "served": sorted(p.name for p in self.served.values()),
                }
            )
            problems = self.plot_view_problems(r)
            view["matches"] = not problems
            view["problems"] = problems
        else:
            view["matches"] = False
            view["problems"] = ["no plot sync receiver for exactly one connected harvester"]
        self.plot_views[label] = view
        return view

    def record_connection(self, label: str) -> None:
        for c in self.harvester_connections():
            self.connections.append(
                {
                    "label": label,
                    "protocol_version": str(c.protocol_version),
                    "software_version": c.version,
                    "capabilities": sorted(int(cap) for cap in c.peer_capabilities),
                    "peer_server_port": None if c.peer_server_port is None else int(c.peer_server_port),
                    "host": c.peer_info.host,
                    "node_id": c.peer_node_id.hex(),
                }
            )

    async def wait_farmer_ready(self, timeout: float) -> None:
        assert self.node_server is not None
        ok = await self.wait_until(
            lambda: self.farmer.started and len(self.node_server.get_connections(NodeType.FARMER)) == 1, timeout
        )
        if not ok:
            raise HarnessError(f"the farmer did not start and connect to the fake full node within {timeout} s")

    async def wait_harvester_synced(self, label: str, timeout: float) -> dict[str, Any]:
        start = now()
        connected = await self.wait_until(lambda: len(self.harvester_connections()) >= 1, timeout)
        t_conn = now() - start
        if not connected:
            self.record_view(label)
            raise HarnessError(f"{label}: the harvester did not connect to the farmer within {timeout} s")
        self.mark(f"{label}_connected", seconds=round(t_conn, 3))
        self.record_connection(label)
        first_sync = await self.wait_until(self.sync_complete, max(0.1, timeout - (now() - start)))
        t_first = now() - start
        matched = first_sync and await self.wait_until(self.view_matches, max(0.1, timeout - (now() - start)))
        t_match = now() - start
        view = self.record_view(label)
        view["seconds_to_connect"] = round(t_conn, 3)
        view["seconds_to_first_sync_done"] = round(t_first, 3) if first_sync else None
        view["seconds_to_matching_view"] = round(t_match, 3) if matched else None
        self.mark(f"{label}_synced", matches=matched, seconds=round(t_match, 3))
        if not matched:
            self.fail(f"{label}: the farmer's plot view does not match the plots served: {view['problems']}")
        return view

    # -------------------------------------------------------------------------------- signage points

    def filter_bands(self) -> list[tuple[int, int]]:
        h = [int(x) for x in self.args.filter_heights.split(",")]
        edges = [0, *h, h[-1] + 1000]
        return [(edges[i], edges[i + 1]) for i in range(5)]

    def make_sp(self, number: int) -> SignagePoint:
        a = self.args
        bands = self.filter_bands()
        lo, hi = bands[number % 5]
        kind = (number // 5) % 3
        peak = lo if kind == 0 else hi - 1 if kind == 1 else self.rng.randrange(lo, hi)
        last_tx = max(0, peak - self.rng.randrange(0, 3))
        served = sorted(self.served.values(), key=lambda p: p.name)
        sp = SignagePoint(
            number=number,
            challenge_hash=bytes32(self.rng.randbytes(32)),
            cc_sp=bytes32(self.rng.randbytes(32)),
            rc_sp=bytes32(self.rng.randbytes(32)),
            index=self.rng.randrange(1, 64),
            peak_height=peak,
            last_tx_height=last_tx,
            difficulty=a.difficulty,
            sub_slot_iters=a.ssi,
            prefix_bits={},
            served=served,
        )
        self.compute_expected(sp)
        return sp

    def compute_expected(self, sp: SignagePoint) -> None:
        """Every proof chia's rules make eligible for this SP, from the plot files served now."""
        c = self.constants
        sp_interval = calculate_sp_interval_iters(c, uint64(sp.sub_slot_iters))
        for plot in sp.served:
            param = PlotParam.make_v1(uint8(plot.k))
            bits = calculate_prefix_bits(c, uint32(sp.peak_height), param)
            sp.prefix_bits[plot.k] = bits
            if not passes_plot_filter(bits, plot.plot_id, sp.challenge_hash, sp.cc_sp):
                continue
            sp.passed_filter += 1
            if plot.k < c.MIN_PLOT_SIZE_V1:
                continue
            sp.passed_filter_farmable += 1
            if plot.prover is None:
                plot.prover = DiskProver(str(plot.read_path or plot.path))
            pos_challenge = calculate_pos_challenge(plot.plot_id, sp.challenge_hash, sp.cc_sp)
            qualities = plot.prover.get_qualities_for_challenge(pos_challenge)
            elig = self.eligibility.setdefault(plot.k, Counter())
            for i, q in enumerate(qualities):
                quality = bytes32(q)
                required = calculate_iterations_quality(
                    c, quality, param, uint64(sp.difficulty), sp.cc_sp, height=uint32(sp.last_tx_height)
                )
                elig["qualities"] += 1
                if required >= sp_interval:
                    continue
                elig["eligible"] += 1
                proof = plot.prover.get_full_proof(pos_challenge, i)
                sp.expected.append(
                    {
                        "plot": plot.name,
                        "plot_id": plot.plot_id.hex(),
                        "k": plot.k,
                        "index": i,
                        "quality": quality.hex(),
                        "proof": bytes(proof).hex(),
                        "required_iters": int(required),
                    }
                )

    async def send_sp(self, sp: SignagePoint) -> None:
        assert self.node_server is not None
        conns = self.node_server.get_connections(NodeType.FARMER)
        if len(conns) != 1:
            raise HarnessError(f"expected one farmer connection at the fake full node, have {len(conns)}")
        msg = make_msg(
            ProtocolMessageTypes.new_signage_point,
            farmer_protocol.NewSignagePoint(
                sp.challenge_hash,
                sp.cc_sp,
                sp.rc_sp,
                uint64(sp.difficulty),
                uint64(sp.sub_slot_iters),
                uint8(sp.index),
                uint32(sp.peak_height),
                uint32(sp.last_tx_height),
                None,
                None,
            ),
        )
        self.sps.append(sp)
        self.sp_by_cc[sp.cc_sp] = sp
        sp.sent_to = self.harvester_connections()
        if not sp.sent_to:
            self.fail(f"SP {sp.number} was sent while no harvester was connected to the farmer")
        sp.sent_at = now()
        sp.last_event = sp.sent_at
        await conns[0].send_message(msg)

    def expected_keys(self, sp: SignagePoint) -> Counter[tuple[str, str]]:
        return Counter((e["plot_id"], e["quality"]) for e in sp.expected)

    def declared_keys(self, sp: SignagePoint) -> Counter[tuple[str, str]]:
        return Counter((d["plot_id"], d["quality"]) for d in sp.declared if d["valid"])

    async def monitor_connections(self) -> None:
        """Every change in the farmer's harvester connections goes into the timeline; a drop
        outside the restart scenario is a failure (e.g. the farmer closes the connection when a
        signature does not verify)."""
        last: int | None = None
        while True:
            runner = self.farmer_runner
            n = 0
            if runner is not None and runner.farmer is not None and runner.farmer.server is not None:
                n = len(self.harvester_connections())
            if n != last:
                self.mark("harvester_connections", count=n, during_restart=self.restarting)
                if last is not None and n < last and not self.restarting:
                    self.disconnects.append({"t": round(now() - self.t0, 3), "sps_sent": len(self.sps)})
                last = n
            await asyncio.sleep(0.05)

    def sp_complete(self, sp: SignagePoint) -> bool:
        """Every expected proof declared (validly; with --bench, declarations not yet validated
        count by plot id and proof bytes)."""
        if not sp.pending:
            return not (self.expected_keys(sp) - self.declared_keys(sp))
        want = Counter((e["plot_id"], e["proof"]) for e in sp.expected)
        have = Counter((d["plot_id"], d["proof"]) for d in sp.declared if d["valid"])
        have.update((pid, proof) for _req, _t, pid, proof in sp.pending)
        return not (want - have)

    def sp_done(self, sp: SignagePoint) -> bool:
        return bool(sp.farming_infos) and self.sp_complete(sp) and now() - sp.last_event >= 0.3

    async def settle(self, sp: SignagePoint) -> None:
        a = self.args
        assert sp.sent_at is not None
        deadline = sp.sent_at + a.sp_timeout
        while now() < deadline:
            self.check_harvester_alive()
            assert self.farmer_runner is not None
            self.farmer_runner.check_alive()
            quiet = now() - sp.last_event
            have_info = bool(sp.farming_infos)
            if self.sp_done(sp):
                break
            if have_info and quiet >= a.settle:
                break
            current = self.harvester_connections()
            if quiet >= a.settle and not any(c in current for c in sp.sent_to):
                break  # the connection it went to is gone: do not wait the whole --sp-timeout
            await asyncio.sleep(0.02)
        sp.settled_at = now()
        self.validate_pending(sp)

    async def settle_all(self, sps: list[SignagePoint]) -> None:
        """--sp-interval: watch every SP until it is done or --sp-timeout after it was sent."""
        a = self.args
        waiting = list(sps)
        while waiting:
            self.check_harvester_alive()
            assert self.farmer_runner is not None
            self.farmer_runner.check_alive()
            still = []
            for sp in waiting:
                assert sp.sent_at is not None
                if self.sp_done(sp) or now() >= sp.sent_at + a.sp_timeout:
                    sp.settled_at = now()
                else:
                    still.append(sp)
            waiting = still
            await asyncio.sleep(0.05)
        for sp in sps:
            self.validate_pending(sp)

    # -------------------------------------------------------------------------------- events

    def on_declare(self, req: farmer_protocol.DeclareProofOfSpace, t: float) -> None:
        if self.args.bench:
            sp = self.sp_by_cc.get(req.challenge_chain_sp)
            if sp is not None:  # validated after the SP settled (validate_pending)
                pos = req.proof_of_space
                sp.pending.append((req, t, pos.compute_plot_id().hex(), bytes(pos.proof).hex()))
                sp.last_event = t
                return
        self.validate_declare(req, t)

    def validate_pending(self, sp: SignagePoint) -> None:
        pending, sp.pending = sp.pending, []
        for req, t, _pid, _proof in pending:
            self.validate_declare(req, t)

    def on_new_proof(self, message: Any, t: float) -> None:
        """--bench: the farmer received a new_proof_of_space (before chia's handler runs)."""
        try:
            if isinstance(message, harvester_protocol.NewProofOfSpace):
                npos = message
            else:
                npos = harvester_protocol.NewProofOfSpace.from_bytes(message)
        except Exception:
            self.new_proofs_unmatched += 1
            return
        sp = self.sp_by_cc.get(npos.sp_hash)
        if sp is None or sp.sent_at is None:
            self.new_proofs_unmatched += 1
            return
        sp.new_proofs.append({"seconds": round(t - sp.sent_at, 4), "plot_id": npos.proof.compute_plot_id().hex()})
        sp.last_event = t

    def validate_declare(self, req: farmer_protocol.DeclareProofOfSpace, t: float) -> None:
        sp = self.sp_by_cc.get(req.challenge_chain_sp)
        pos = req.proof_of_space
        plot_id = pos.compute_plot_id()
        entry: dict[str, Any] = {
            "plot_id": plot_id.hex(),
            "quality": None,
            "proof": bytes(pos.proof).hex(),
            "k": int(pos.size),
        }
        if sp is None:
            entry["problems"] = ["declaration for a signage point this node never sent"]
            self.unknown_declarations.append(entry)
            return
        assert sp.sent_at is not None
        entry["seconds"] = round(t - sp.sent_at, 4)
        sp.last_event = t
        problems: list[str] = []
        c = self.constants
        if req.challenge_hash != sp.challenge_hash:
            problems.append("challenge_hash differs from the signage point's")
        if req.reward_chain_sp != sp.rc_sp:
            problems.append("reward_chain_sp differs from the signage point's")
        if int(req.signage_point_index) != sp.index:
            problems.append("signage_point_index differs from the signage point's")
        quality = verify_and_get_quality_string(
            pos,
            c,
            sp.challenge_hash,
            sp.cc_sp,
            height=uint32(sp.peak_height),
            prev_transaction_block_height=uint32(sp.last_tx_height),
            filter_challenge=None,
            signage_point_index=sp.index,
        )
        if quality is None:
            problems.append("verify_and_get_quality_string rejects the proof of space")
        else:
            entry["quality"] = quality.hex()
            required = calculate_iterations_quality(
                c, quality, pos.param(), uint64(sp.difficulty), sp.cc_sp, height=uint32(sp.last_tx_height)
            )
            entry["required_iters"] = int(required)
            if required >= calculate_sp_interval_iters(c, uint64(sp.sub_slot_iters)):
                problems.append("required_iters is not below the sp interval iters")
        cc_ok = AugSchemeMPL.verify(pos.plot_public_key, sp.cc_sp, req.challenge_chain_sp_signature)
        rc_ok = AugSchemeMPL.verify(pos.plot_public_key, sp.rc_sp, req.reward_chain_sp_signature)
        entry["cc_sp_signature_valid"] = cc_ok
        entry["rc_sp_signature_valid"] = rc_ok
        if not cc_ok:
            problems.append("challenge_chain_sp_signature does not verify with the plot public key")
        if not rc_ok:
            problems.append("reward_chain_sp_signature does not verify with the plot public key")
        if pos.pool_public_key is not None:
            pool_ok = (
                req.pool_target is not None
                and req.pool_signature is not None
                and AugSchemeMPL.verify(pos.pool_public_key, bytes(req.pool_target), req.pool_signature)
            )
            entry["pool_signature_valid"] = pool_ok
            if not pool_ok:
                problems.append("pool target signature missing or invalid")
        elif pos.pool_contract_puzzle_hash is None:
            problems.append("neither pool public key nor pool contract puzzle hash")
        if req.farmer_puzzle_hash != self.farmer_target:
            problems.append("farmer_puzzle_hash is not the configured xch_target_address")
        served = {p.plot_id: p for p in sp.served}
        plot = served.get(plot_id)
        if plot is None:
            problems.append("proof from a plot that was not served at this signage point")
        else:
            entry["plot"] = plot.name
            if pos.plot_public_key != plot.plot_public_key:
                problems.append("plot public key differs from the served plot's")
        entry["valid"] = not problems
        entry["problems"] = problems
        sp.declared.append(entry)

    def on_farmer_state(self, change: str, data: dict[str, Any] | None) -> None:
        if change != "new_farming_info" or data is None:
            return
        info = data["farming_info"]
        t = now()
        entry = {
            "passed": int(info["passed_filter"]),
            "proofs": int(info["proofs"]),
            "total_plots": int(info["total_plots"]),
            "lookup_time_us": int(info["lookup_time"]),
            "timestamp": int(info["timestamp"]),
        }
        sp = self.sp_by_cc.get(bytes32(info["signage_point"]))
        if sp is None or sp.challenge_hash != info["challenge_hash"]:
            entry["signage_point"] = bytes(info["signage_point"]).hex()
            self.farming_info_unmatched.append(entry)
            return
        assert sp.sent_at is not None
        entry["seconds"] = round(t - sp.sent_at, 4)
        sp.farming_infos.append(entry)
        sp.last_event = t

    # -------------------------------------------------------------------------------- scenarios

    async def restart_farmer(self, after: int) -> None:
        assert self.farmer_runner is not None
        self.mark("farmer_restart_begin", after_sps=after)
        self.restarting = True
        t0 = now()
        await self.farmer_runner.stop()
        t_stopped = now()
        self.mark("farmer_stopped", seconds=round(t_stopped - t0, 3))
        await self.farmer_runner.start()
        t_started = now()
        await self.wait_farmer_ready(self.args.sync_timeout)
        view = await self.wait_harvester_synced("after_restart", self.args.sync_timeout)
        t_done = now()
        result = {
            "after_sps": after,
            "seconds_to_stop_farmer": round(t_stopped - t0, 3),
            "seconds_to_connect": view.get("seconds_to_connect"),
            "seconds_to_first_sync_done": view.get("seconds_to_first_sync_done"),
            "seconds_to_matching_view": view.get("seconds_to_matching_view"),
            "seconds_new_farmer_to_synced": round(t_done - t_started, 3),
            "ok": bool(view.get("matches")),
        }
        self.scenarios["restart_farmer"] = result
        self.restarting = False
        self.mark("farmer_restart_done", **result)

    async def add_remove(self, after: int, add: str, remove: str) -> None:
        self.mark("add_remove_begin", after_sps=after, add=add, remove=remove)
        t0 = now()
        added = self.plots[add]
        removed = self.plots[remove]
        self.placement[add] = place_file(added.src, added.path)
        self.served[add] = added
        removed.path.unlink()
        del self.served[remove]
        if removed.prover is not None:
            removed.prover = None
        ok = await self.wait_until(self.view_matches, self.args.sync_timeout)
        seconds = now() - t0
        view = self.record_view("after_add_remove")
        view["seconds"] = round(seconds, 3) if ok else None
        result = {"after_sps": after, "added": add, "removed": remove, "seconds": round(seconds, 3), "ok": ok}
        self.scenarios["add_remove"] = result
        self.mark("add_remove_done", **result)
        if not ok:
            self.fail(
                f"add/remove: the farmer's plot view did not show +{add} -{remove} within "
                f"{self.args.sync_timeout} s: {view['problems']}"
            )

    # -------------------------------------------------------------------------------- the run

    async def run(self) -> None:
        a = self.args
        farmer_master, pool_master = fixture_master_keys()
        self.keychain = FixtureKeychain([farmer_master, pool_master])
        names, add, remove = self.select_plots()
        if a.trace_messages:
            self.install_trace()

        # the plots: everything the farmer must see is computed from the files
        fixtures = Path(a.fixtures)
        for name in sorted(set(names) | {n for n in (add, remove) if n}):
            src = fixtures / "plots" / f"{name}.plot"
            if not src.is_file():
                raise HarnessError(f"no fixture plot {src} (run scripts/make-fixtures.sh)")
            sub = self.plot_dir / "nested" if (name in NESTED and not a.flat) else self.plot_dir
            self.plots[name] = read_plot_file(name, src, sub / f"{name}.plot")
        farmer_pk = master_sk_to_farmer_sk(farmer_master).get_g1()
        pool_pk = master_sk_to_pool_sk(pool_master).get_g1()
        self.plot_dir.mkdir(parents=True)
        if a.fresh_plots:
            await self.make_fresh_plots(farmer_pk, pool_pk)
        for j, extra in enumerate(a.extra_plots or []):
            source = Path(extra).resolve()
            self.plot_directories.append(source)
            self.add_plot_dir(source, f"extra{j}", None)
        if a.fuse_plots:
            source = Path(a.fuse_plots).resolve()
            self.fuse = FuseDisk(fuse_python(a.fuse_python), source, self.run_dir / "fuse", self.run_dir)
            self.fuse.mount()
            self.mark("fuse_mounted", source=str(source), mountpoint=str(self.fuse.mountpoint))
            self.plot_directories.append(self.fuse.mountpoint)
            self.add_plot_dir(source, "fuse", self.fuse.mountpoint)
        ids = Counter(p.plot_id for p in self.plots.values())
        if any(n > 1 for n in ids.values()):
            raise HarnessError("the same plot id twice among the plots to serve (chia would call them duplicates): "
                               + ", ".join(i.hex()[:16] for i, n in ids.items() if n > 1))
        for p in self.plots.values():
            if p.farmer_public_key != farmer_pk:
                raise HarnessError(f"{p.name}: farmer key is not master_sk_to_farmer_sk(fixture farmer master)")
            if p.pool_public_key is not None and p.pool_public_key != pool_pk:
                raise HarnessError(f"{p.name}: pool key is not master_sk_to_pool_sk(fixture pool master)")
        for name in names:
            p = self.plots[name]
            self.placement[name] = place_file(p.src, p.path)
            self.served[name] = p

        # fake node first (its port goes into the farmer's config), then config, farmer, harvester
        farmer_port = free_port()
        # the node needs chia's certificates: init with a placeholder node port, then fix it
        self.setup_root(farmer_port, 0)
        node_port = await self.start_fake_node()
        with lock_and_load_config(self.root, "config.yaml") as config:
            config["farmer"]["full_node_peers"] = [{"host": "127.0.0.1", "port": node_port}]
            save_config(self.root, "config.yaml", config)
        self.ports = {"farmer": farmer_port, "fake_full_node": node_port}
        self.mark("root_ready", ports=self.ports)

        self.farmer_runner = FarmerRunner(self.root, self.keychain, self.on_farmer_state,
                                          self.on_new_proof if a.bench else None)
        await self.farmer_runner.start()
        await self.wait_farmer_ready(a.sync_timeout)
        self.mark("farmer_ready")

        self.start_harvester()
        monitor = asyncio.create_task(self.monitor_connections(), name="monitor")
        try:
            await self.wait_harvester_synced("initial", a.startup_timeout)
            await self.farm(add, remove)
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    def start_hang(self, number: int) -> None:
        assert self.fuse is not None
        self.fuse.set_mode("hang")
        self.hang = {"after_sps": number, "t": round(now() - self.t0, 3), "fuse_reads_before": self.fuse.reads()}
        self.mark("fuse_hang", after_sps=number)

    def cpu_now(self) -> float | None:
        return None if self.proc is None else proc_cpu_seconds(self.proc.pid)

    async def farm(self, add: str | None, remove: str | None) -> None:
        a = self.args
        if a.bench and a.idle_seconds > 0:
            c0, t0 = self.cpu_now(), now()
            await asyncio.sleep(a.idle_seconds)
            c1, t1 = self.cpu_now(), now()
            if c0 is not None and c1 is not None:
                self.cpu["idle_cpu_seconds_per_second"] = round((c1 - c0) / (t1 - t0), 5)
                self.cpu["idle_seconds"] = round(t1 - t0, 3)
        cpu0, wall0 = self.cpu_now(), now()

        if a.sp_interval is not None:
            sps = [self.make_sp(number) for number in range(a.signage_points)]
            start = now() + 0.2
            for sp in sps:
                await asyncio.sleep(max(0.0, start + sp.number * a.sp_interval - now()))
                self.check_harvester_alive()
                assert self.farmer_runner is not None
                self.farmer_runner.check_alive()
                if a.hang_after is not None and sp.number == a.hang_after:
                    self.start_hang(sp.number)
                sp.after_hang = self.hang is not None
                await self.send_sp(sp)
            await self.settle_all(sps)
        for number in range(a.signage_points if a.sp_interval is None else 0):
            if a.restart_farmer_after is not None and number == a.restart_farmer_after:
                await self.restart_farmer(number)
            if a.add_remove_after is not None and number == a.add_remove_after:
                assert add is not None and remove is not None
                await self.add_remove(number, add, remove)
            if a.hang_after is not None and number == a.hang_after:
                self.start_hang(number)
            sp = self.make_sp(number)
            sp.after_hang = self.hang is not None
            if a.sp_gap and self.sps and self.sps[-1].sent_at is not None:
                await asyncio.sleep(max(0.0, self.sps[-1].sent_at + a.sp_gap - now()))
            await self.send_sp(sp)
            await self.settle(sp)

        cpu1, wall1 = self.cpu_now(), now()
        if cpu0 is not None and cpu1 is not None and self.sps:
            self.cpu.update({
                "harvester_pid": None if self.proc is None else self.proc.pid,
                "cpu_seconds": round(cpu1 - cpu0, 3),
                "wall_seconds": round(wall1 - wall0, 3),
                "signage_points": len(self.sps),
                "cpu_ms_per_sp": round(1000 * (cpu1 - cpu0) / len(self.sps), 2),
                "cpu_ms_per_sp_minus_idle": None if "idle_cpu_seconds_per_second" not in self.cpu else round(
                    1000 * (cpu1 - cpu0 - self.cpu["idle_cpu_seconds_per_second"] * (wall1 - wall0)) / len(self.sps), 2),
                "clock_tick_seconds": round(1 / os.sysconf("SC_CLK_TCK"), 4),
            })
        if self.fuse is not None and self.hang is not None:
            self.hang["fuse_reads_hung"] = self.fuse.reads("hang")
        if a.restart_farmer_after is not None and a.restart_farmer_after >= a.signage_points:
            await self.restart_farmer(a.signage_points)
        if a.add_remove_after is not None and a.add_remove_after >= a.signage_points:
            assert add is not None and remove is not None
            await self.add_remove(a.signage_points, add, remove)
        # stragglers: anything still on its way
        await asyncio.sleep(0.5)
        self.record_view("final")
        self.mark("done")

    async def shutdown(self) -> None:
        self.stop_harvester()
        if self.farmer_runner is not None:
            with contextlib.suppress(Exception):
                await self.farmer_runner.stop(timeout=15)
        if self.node_server is not None:
            with contextlib.suppress(Exception):
                self.node_server.close_all()
                await asyncio.wait_for(self.node_server.await_closed(), 10)

    # -------------------------------------------------------------------------------- report

    def evaluate(self) -> dict[str, Any]:
        a = self.args
        totals: Counter[str] = Counter()
        declare_times: list[float] = []
        first_declare_times: list[float] = []
        info_times: list[float] = []
        sps_out = []
        for sp in self.sps:
            self.validate_pending(sp)  # late declarations (--bench)
        for sp in self.sps:
            expected = self.expected_keys(sp)
            declared = self.declared_keys(sp)
            missing = expected - declared
            surplus = declared - expected
            duplicates = Counter({k: n - 1 for k, n in declared.items() if n > 1})
            extra = Counter({k: n for k, n in surplus.items() if k not in expected})
            invalid = [d for d in sp.declared if not d["valid"]]
            proof_mismatch = []
            exp_proof = {(e["plot_id"], e["quality"]): e["proof"] for e in sp.expected}
            for d in sp.declared:
                key = (d["plot_id"], d["quality"])
                if d["valid"] and key in exp_proof and exp_proof[key] != d["proof"]:
                    proof_mismatch.append({"plot_id": d["plot_id"], "quality": d["quality"]})
            label = f"SP {sp.number} (cc sp {sp.cc_sp.hex()[:12]}, height {sp.peak_height})"
            for (pid, q), n in missing.items():
                if sp.after_hang:
                    continue  # measured in stuck_disk, not a failure
                name = next((e["plot"] for e in sp.expected if e["plot_id"] == pid), pid[:16])
                self.fail(f"{label}: expected proof not declared: plot {name} quality {q[:16]} (x{n})")
            for d in invalid:
                self.fail(f"{label}: invalid declaration for plot {d.get('plot', d['plot_id'][:16])}: {d['problems']}")
            for (pid, q), n in duplicates.items():
                self.fail(f"{label}: plot {pid[:16]} quality {q[:16]} declared {n + 1} times")
            for d in sp.declared:
                if "seconds" in d:
                    declare_times.append(d["seconds"])
            if sp.declared:
                first_declare_times.append(min(d["seconds"] for d in sp.declared))
            # farming_info
            info_problems = []
            if a.check_farming_info:
                if len(sp.farming_infos) != 1:
                    info_problems.append(f"{len(sp.farming_infos)} farming_info messages (want 1)")
                for fi in sp.farming_infos:
                    if fi["total_plots"] != len(sp.served):
                        info_problems.append(f"total_plots {fi['total_plots']} != {len(sp.served)} served")
                    if fi["passed"] not in (sp.passed_filter, sp.passed_filter_farmable):
                        info_problems.append(f"passed {fi['passed']} != {sp.passed_filter} passing the filter")
                    if fi["proofs"] != len(sp.declared):
                        info_problems.append(f"proofs {fi['proofs']} != {len(sp.declared)} declared")
                for prob in info_problems:
                    if not sp.after_hang:
                        self.fail(f"{label}: farming_info: {prob}")
            for fi in sp.farming_infos:
                info_times.append(fi["seconds"])
            totals["signage_points"] += 1
            totals["expected"] += sum(expected.values())
            totals["declared"] += len(sp.declared)
            totals["declared_valid"] += sum(declared.values())
            totals["matched"] += sum((expected & declared).values())
            totals["missing"] += sum(missing.values())
            totals["extra_valid"] += sum(extra.values())
            totals["duplicates"] += sum(duplicates.values())
            totals["invalid"] += len(invalid)
            totals["proof_bytes_differ"] += len(proof_mismatch)
            totals["plots_passed_filter"] += sp.passed_filter
            for d in sp.declared:
                for sig in ("cc_sp_signature_valid", "rc_sp_signature_valid", "pool_signature_valid"):
                    if sig in d:
                        totals["signatures_valid" if d[sig] else "signatures_invalid"] += 1
            sps_out.append(
                {
                    "number": sp.number,
                    "challenge_hash": sp.challenge_hash.hex(),
                    "challenge_chain_sp": sp.cc_sp.hex(),
                    "reward_chain_sp": sp.rc_sp.hex(),
                    "signage_point_index": sp.index,
                    "peak_height": sp.peak_height,
                    "last_tx_height": sp.last_tx_height,
                    "prefix_bits": {str(k): v for k, v in sorted(sp.prefix_bits.items())},
                    "served": [p.name for p in sp.served],
                    "passed_filter": sp.passed_filter,
                    "expected": sp.expected,
                    "declared": sp.declared,
                    "missing": [{"plot_id": k[0], "quality": k[1], "count": n} for k, n in missing.items()],
                    "extra": [{"plot_id": k[0], "quality": k[1], "count": n} for k, n in extra.items()],
                    "duplicates": [{"plot_id": k[0], "quality": k[1], "count": n} for k, n in duplicates.items()],
                    "invalid": invalid,
                    "proof_bytes_differ": proof_mismatch,
                    "farming_info": sp.farming_infos,
                    "farming_info_problems": info_problems,
                    "new_proofs_at_farmer": sp.new_proofs,
                    "after_hang": sp.after_hang,
                    "settle_seconds": None if sp.settled_at is None or sp.sent_at is None
                    else round(sp.settled_at - sp.sent_at, 3),
                }
            )
        for d in self.unknown_declarations:
            self.fail(f"declaration for an unknown signage point: plot {d['plot_id'][:16]}")
        for d in self.disconnects:
            self.fail(f"the farmer's connection to the harvester closed at t={d['t']} s after {d['sps_sent']} SPs "
                      f"(not a farmer restart); see farmer_log_records")
        if self.unexpected_messages:
            self.fail(f"unexpected messages at the fake full node: {Counter(self.unexpected_messages)}")
        final = self.plot_views.get("final")
        if final is not None and not final.get("matches"):
            if self.hang is not None:
                self.notes.append(f"final plot view (FUSE disk hung) differs: {final.get('problems')}")
            else:
                self.fail(f"final: the farmer's plot view does not match the plots served: {final.get('problems')}")
        if self.sps and totals["expected"] == 0:
            self.notes.append("no proof was expected in the whole run: add signage points or filter bits")
        return {
            "totals": dict(totals),
            "bench": self.bench_report() if a.bench else None,
            "stuck_disk": self.stuck_report() if a.hang_after is not None else None,
            "signage_points": sps_out,
            "timings": {
                "sp_to_declare_seconds": stats(declare_times),
                "sp_to_first_declare_seconds": stats(first_declare_times),
                "sp_to_farming_info_seconds": stats(info_times),
            },
            "eligibility": {
                str(k): {
                    "qualities": c["qualities"],
                    "eligible": c["eligible"],
                    "fraction": round(c["eligible"] / c["qualities"], 4) if c["qualities"] else None,
                }
                for k, c in sorted(self.eligibility.items())
            },
        }

    def bench_report(self) -> dict[str, Any]:
        """--bench: latency from the fake node's sending of each SP (p50/p90/p99 nearest rank)."""
        new_proofs: list[float] = []
        first_new_proof: list[float] = []
        infos: list[float] = []
        lookup_times: list[float] = []
        declares: list[float] = []
        proofs_per_sp: list[int] = []
        for sp in self.sps:
            t = [x["seconds"] for x in sp.new_proofs]
            new_proofs += t
            if t:
                first_new_proof.append(min(t))
            if sp.farming_infos:
                infos.append(sp.farming_infos[0]["seconds"])
                lookup_times.append(sp.farming_infos[0]["lookup_time_us"] / 1e6)
            declares += [d["seconds"] for d in sp.declared if "seconds" in d]
            proofs_per_sp.append(len(t))
        # chia's farmer allows 100 of each per minute from a non-local harvester; ours never
        # sends more (it queues), so a run above that measures the queue, not the lookups
        rates = {
            "new_proof_of_space": max_in_window([sp.sent_at + x["seconds"] for sp in self.sps
                                                 if sp.sent_at is not None for x in sp.new_proofs], 60.0),
            "farming_info": max_in_window([sp.sent_at + fi["seconds"] for sp in self.sps
                                           if sp.sent_at is not None for fi in sp.farming_infos], 60.0),
        }
        if max(rates.values()) >= 100:
            self.notes.append(f"bench: {rates} messages in some 60 s: at chia's per-minute limit (100); "
                              "lower the eligible fraction or raise --sp-gap")
        return {
            "signage_points": len(self.sps),
            "plots_served": len(self.served),
            "sp_to_new_proof_of_space_seconds": percentiles(new_proofs),
            "sp_to_first_new_proof_of_space_seconds": percentiles(first_new_proof),
            "sp_to_farming_info_seconds": percentiles(infos),
            "sp_to_declare_seconds": percentiles(declares),
            # the harvester's own lookup_time in its farming_info (its clock, from its receipt)
            "harvester_lookup_time_seconds": percentiles(lookup_times),
            "new_proofs_per_sp_mean": round(statistics.fmean(proofs_per_sp), 3) if proofs_per_sp else None,
            "new_proofs_unmatched": self.new_proofs_unmatched,
            "max_per_60s": rates,
            "cpu": self.cpu,
        }

    def stuck_report(self) -> dict[str, Any]:
        """--hang-after: per SP, whether farming_info and the proofs of the plots not on the FUSE
        disk arrived within each window."""
        a = self.args
        windows = [float(w) for w in a.windows.split(",")]
        rows = []
        for sp in self.sps:
            on_fuse = {p.plot_id.hex() for p in sp.served if p.disk == "fuse"}
            healthy = {(e["plot_id"], e["quality"]) for e in sp.expected if e["plot_id"] not in on_fuse}
            stuck = {(e["plot_id"], e["quality"]) for e in sp.expected if e["plot_id"] in on_fuse}
            first: dict[tuple[str, str], float] = {}
            for d in sp.declared:
                if d.get("valid") and "seconds" in d:
                    key = (d["plot_id"], d["quality"])
                    first[key] = min(first.get(key, d["seconds"]), d["seconds"])
            info = sp.farming_infos[0]["seconds"] if sp.farming_infos else None
            healthy_times = [first[k] for k in healthy if k in first]
            row: dict[str, Any] = {
                "number": sp.number,
                "after_hang": sp.after_hang,
                "farming_info_seconds": info,
                "farming_info_passed": sp.farming_infos[0]["passed"] if sp.farming_infos else None,
                "farming_info_proofs": sp.farming_infos[0]["proofs"] if sp.farming_infos else None,
                "healthy_expected": len(healthy),
                "healthy_declared": len(healthy_times),
                "healthy_last_declare_seconds": max(healthy_times) if len(healthy_times) == len(healthy) and healthy
                else None,
                "fuse_expected": len(stuck),
                "fuse_declared": sum(1 for k in stuck if k in first),
                "within": {},
            }
            for w in windows:
                n = sum(1 for x in healthy_times if x <= w)
                row["within"][f"{w:g}"] = {
                    "farming_info": info is not None and info <= w,
                    "healthy_declared": n,
                    "answered": info is not None and info <= w and n == len(healthy),
                }
            rows.append(row)
        summary = {}
        for label, part in (("before_hang", [r for r in rows if not r["after_hang"]]),
                            ("after_hang", [r for r in rows if r["after_hang"]])):
            summary[label] = {
                "signage_points": len(part),
                **{f"answered_within_{w:g}s": sum(1 for r in part if r["within"][f"{w:g}"]["answered"])
                   for w in windows},
                **{f"farming_info_within_{w:g}s": sum(1 for r in part if r["within"][f"{w:g}"]["farming_info"])
                   for w in windows},
                "healthy_expected": sum(r["healthy_expected"] for r in part),
                **{f"healthy_declared_within_{w:g}s": sum(r["within"][f"{w:g}"]["healthy_declared"] for r in part)
                   for w in windows},
            }
        return {"windows_seconds": windows, "hang": self.hang, "summary": summary, "per_sp": rows}

    def report(self, elapsed: float, error: str | None) -> dict[str, Any]:
        a = self.args
        evaluation = self.evaluate()
        sp_interval = None
        if self.constants is not None:
            sp_interval = int(calculate_sp_interval_iters(self.constants, uint64(a.ssi)))
        return {
            "ok": not self.failures and error is None,
            "failures": self.failures,
            "error": error,
            "notes": self.notes,
            "elapsed_seconds": round(elapsed, 3),
            "config": {
                "harvester": a.harvester,
                "harvester_bin": a.harvester_bin,
                "chia_blockchain": CHIA_VERSION,
                "seed": a.seed,
                "seed_random": a.seed_random,
                "signage_points": a.signage_points,
                "fresh_plots": a.fresh_plots,
                "extra_plots": a.extra_plots,
                "fuse_plots": a.fuse_plots,
                "hang_after": a.hang_after,
                "sp_interval": a.sp_interval,
                "sp_gap": a.sp_gap,
                "sp_timeout": a.sp_timeout,
                "bench": a.bench,
                "windows": a.windows,
                "plot_directories": [str(d) for d in self.plot_directories],
                "argv": sys.argv,
                "difficulty": a.difficulty,
                "sub_slot_iters": a.ssi,
                "sub_slot_iters_arg": a.sub_slot_iters,
                "sp_interval_iters": sp_interval,
                "filter_bits": a.filter_bits,
                "filter_heights": [int(x) for x in a.filter_heights.split(",")],
                "min_plot_size": a.min_plot_size,
                "restart_farmer_after": a.restart_farmer_after,
                "add_remove_after": a.add_remove_after,
                "run_dir": str(self.run_dir) if a.keep else None,
                "ports": getattr(self, "ports", None),
                "plots": {n: {**p.describe(), "placement": self.placement.get(n)} for n, p in self.plots.items()},
            },
            "fresh_plots": self.fresh,
            "harvester_connections": self.connections,
            "harvester_exit_status": self.harvester_exit,
            "plot_views": self.plot_views,
            "scenarios": self.scenarios,
            "farming_info_unmatched": self.farming_info_unmatched,
            "unknown_declarations": self.unknown_declarations,
            "harvester_disconnects": self.disconnects,
            "farmer_log_records": self.farmer_log_records,
            "message_trace": None if not a.trace_messages else {
                "counts": [{"dir": d, "type": t, "with_id": i, "count": n}
                           for (d, t, i), n in sorted(self.trace_counts.items())],
                "handshakes": self.trace_handshakes,
                "first_messages": self.trace_log,
            },
            "timeline": self.timeline,
            **evaluation,
        }


# ----------------------------------------------------------------------------------------------
# main


def half_eligible_ssi(difficulty: int, fraction: Fraction = Fraction(1, 2)) -> int:
    """sub_slot_iters whose sp interval lets about `fraction` (half by default) of a k=18 plot's
    qualities through: required_iters = difficulty * DIFFICULTY_CONSTANT_FACTOR * u /
    expected_size(k), u uniform in [0, 1), so sp_interval = fraction * difficulty * DCF /
    expected_size(18). Mainnet constants (only MIN_PLOT_SIZE_V1 and the filter are overridden,
    neither enters this)."""
    c = DEFAULT_CONSTANTS
    expected = int(_expected_plot_size(PlotParam.make_v1(uint8(18)), c))
    interval = int(difficulty * int(c.DIFFICULTY_CONSTANT_FACTOR) * fraction / expected)
    return interval * int(c.NUM_SPS_SUB_SLOT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chia_farm.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--harvester", choices=["ours", "chia"], required=True,
                   help="ours: --harvester-bin run --chia-root ROOT; chia: chia's harvester from this venv")
    p.add_argument("--harvester-bin", help="the harvester executable (with --harvester ours)")
    p.add_argument("--json", metavar="REPORT", help="write the full report here")
    p.add_argument("--signage-points", type=int, default=20, metavar="N", help="signage points to send (20)")
    p.add_argument("--seed", default="1", metavar="N|random",
                   help="seed of challenges, sp hashes, sp indexes, heights and the fresh plots' keys (1); "
                        "'random': drawn from os.urandom and printed on the first line")
    p.add_argument("--difficulty", type=int, default=1, help="difficulty in every signage point (1)")
    p.add_argument("--sub-slot-iters", default=str(DEFAULT_SUB_SLOT_ITERS), metavar="N|half|eligible:F",
                   help="sub_slot_iters (default 2^57: every quality eligible at difficulty 1); 'half': "
                        "computed so that about half of the k=18 qualities are eligible, 'eligible:F' about a "
                        "fraction F (0 < F <= 1); a multiple of 64")
    p.add_argument("--filter-bits", type=int, default=None,
                   help="NUMBER_ZERO_BITS_PLOT_FILTER_V1 override (4, with --bench 0; mainnet has 9)")
    p.add_argument("--filter-heights", default="1000,2000,3000,4000", metavar="H1,H2,H3,H4",
                   help="HARD_FORK_HEIGHT, PLOT_FILTER_128/64/32_HEIGHT overrides: prefix bits drop by 1 at "
                        "each; peak heights cycle through the five bands (1000,2000,3000,4000)")
    p.add_argument("--min-plot-size", type=int, default=18, help="MIN_PLOT_SIZE_V1 override (18)")
    p.add_argument("--fixtures", default=str(DEFAULT_FIXTURES), help="fixtures folder (repo's fixtures/)")
    p.add_argument("--plots", help=f"comma-separated fixture plot names to serve, or 'none' "
                                   f"(all: {','.join(ALL_PLOTS)})")
    p.add_argument("--fresh-plots", type=int, default=0, metavar="N",
                   help="plot N new k=18 plots (chia's create_plots, keys from the seed) into the plot folder (0)")
    p.add_argument("--extra-plots", action="append", metavar="DIR",
                   help="also serve every *.plot under DIR, in place (DIR becomes a plot directory); repeatable")
    p.add_argument("--fuse-plots", metavar="DIR",
                   help="also serve the plots of DIR through scripts/faultfs.py (FUSE, root) at RUN/fuse")
    p.add_argument("--fuse-python", metavar="PY", help="python with fusepy for faultfs.py (/usr/bin/python3 or python3)")
    p.add_argument("--hang-after", type=int, metavar="N",
                   help="with --fuse-plots: from SP N on, every read of the FUSE disk hangs")
    p.add_argument("--windows", default="5,28", metavar="S1,S2",
                   help="with --hang-after: answer windows in seconds for the stuck_disk report (5,28)")
    p.add_argument("--sp-interval", type=float, metavar="S",
                   help="send an SP every S seconds without waiting for answers; each is watched for --sp-timeout")
    p.add_argument("--sp-gap", type=float, default=0.0, metavar="S",
                   help="at least S seconds between two SPs sent (0). chia's farmer takes at most 100 "
                        "farming_info, new_proof_of_space and respond_signatures per minute from a remote "
                        "harvester (localhost is exempt); our harvester keeps to those limits anyway")
    p.add_argument("--bench", action="store_true",
                   help="timing mode: farmer receipt times of new_proof_of_space and farming_info, harvester CPU; "
                        "--filter-bits 0 unless given")
    p.add_argument("--idle-seconds", type=float, default=2.0,
                   help="with --bench: seconds of idle harvester CPU measured before the first SP (2)")
    p.add_argument("--flat", action="store_true", help="put every plot at the top of the plot folder "
                                                       "(default: some in nested/)")
    p.add_argument("--restart-farmer-after", type=int, metavar="N",
                   help="after N signage points restart the farmer service on the same port")
    p.add_argument("--add-remove-after", type=int, metavar="N",
                   help="after N signage points add --add and remove --remove from the plot folder")
    p.add_argument("--add", default="k18-og-b", help="plot added by --add-remove-after (k18-og-b; not served before)")
    p.add_argument("--remove", default="k18-pc-b", help="plot removed by --add-remove-after (k18-pc-b)")
    p.add_argument("--no-farming-info-check", dest="check_farming_info", action="store_false",
                   help="report farming_info but do not fail on it")
    p.add_argument("--trace-messages", action="store_true",
                   help="record the farmer <-> harvester messages (type, id, size, handshakes) in the report; "
                        "wraps WSChiaConnection's frame send/receive in this process")
    p.add_argument("--timeout", type=float, default=180, help="the whole run, seconds (180)")
    p.add_argument("--startup-timeout", type=float, default=60,
                   help="harvester start to connected and synced, seconds (60)")
    p.add_argument("--sync-timeout", type=float, default=60,
                   help="farmer start, reconnect and add/remove waits, seconds each (60)")
    p.add_argument("--sp-timeout", type=float, default=15, help="longest wait per signage point, seconds (15)")
    p.add_argument("--settle", type=float, default=1.5,
                   help="after farming_info, seconds without news that end an SP's wait (1.5)")
    p.add_argument("--workdir", help="make the run folder in here (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the run folder (CHIA_ROOT, plots, logs)")
    p.add_argument("-v", "--verbose", action="store_true", help="farmer and harness logs on stderr too")
    a = p.parse_args(argv)
    a.seed_random = a.seed == "random"
    if a.seed_random:
        a.seed = int.from_bytes(os.urandom(8), "big") >> 1
    else:
        try:
            a.seed = int(a.seed, 0)
        except ValueError:
            p.error("--seed takes an integer or 'random'")
    if a.filter_bits is None:
        a.filter_bits = 0 if a.bench else 4
    if a.harvester == "ours" and not a.harvester_bin:
        p.error("--harvester ours needs --harvester-bin")
    if a.harvester_bin and not os.access(a.harvester_bin, os.X_OK):
        p.error(f"--harvester-bin {a.harvester_bin} is not an executable file")
    if a.sub_slot_iters == "half":
        a.ssi = half_eligible_ssi(a.difficulty)
    elif a.sub_slot_iters.startswith("eligible:"):
        try:
            fraction = Fraction(a.sub_slot_iters[len("eligible:"):])
        except (ValueError, ZeroDivisionError):
            p.error("--sub-slot-iters eligible:F takes a fraction F")
        if not 0 < fraction <= 1:
            p.error("--sub-slot-iters eligible:F needs 0 < F <= 1")
        a.ssi = half_eligible_ssi(a.difficulty, fraction)
    else:
        try:
            a.ssi = int(a.sub_slot_iters, 0)
        except ValueError:
            p.error("--sub-slot-iters takes an integer or 'half'")
    if a.ssi <= 0 or a.ssi % 64 != 0 or a.ssi >= 2**64:
        p.error("--sub-slot-iters must be a positive multiple of 64 (NUM_SPS_SUB_SLOT) below 2^64")
    if a.signage_points < 0 or a.difficulty <= 0 or not 0 <= a.filter_bits <= 32:
        p.error("bad --signage-points, --difficulty or --filter-bits")
    if a.plots and a.plots != "none":
        unknown = [n for n in a.plots.split(",") if n not in ALL_PLOTS]
        if unknown:
            p.error(f"unknown plot names {unknown}; known: {ALL_PLOTS}")
    if a.add_remove_after is not None and (a.add not in ALL_PLOTS or a.remove not in ALL_PLOTS):
        p.error(f"--add/--remove take fixture plot names: {ALL_PLOTS}")
    if not 0 <= a.fresh_plots <= 100:
        p.error("--fresh-plots takes 0..100")
    if a.hang_after is not None and (not a.fuse_plots or a.hang_after < 0):
        p.error("--hang-after N needs --fuse-plots and N >= 0")
    if a.sp_interval is not None:
        if a.sp_interval <= 0:
            p.error("--sp-interval must be positive")
        if a.restart_farmer_after is not None or a.add_remove_after is not None:
            p.error("--sp-interval does not combine with --restart-farmer-after or --add-remove-after")
    try:
        windows = [float(w) for w in a.windows.split(",")]
    except ValueError:
        windows = []
    if not windows or any(w <= 0 for w in windows):
        p.error("--windows takes positive seconds, comma-separated")
    if a.hang_after is not None and a.sp_timeout < max(windows):
        p.error(f"--sp-timeout ({a.sp_timeout}) must be at least the largest window ({max(windows)})")
    for d in (a.extra_plots or []) + ([a.fuse_plots] if a.fuse_plots else []):
        if not Path(d).is_dir():
            p.error(f"{d}: not a folder")
    if a.plots == "none" and not (a.fresh_plots or a.extra_plots or a.fuse_plots):
        p.error("--plots none leaves nothing to serve: add --fresh-plots, --extra-plots or --fuse-plots")
    return a


class CaptureHandler(logging.Handler):
    """WARNING and above from chia's farmer, its server and the fake node, for the report."""

    def __init__(self, sink: list[dict[str, Any]], t0: float) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink
        self.t0 = t0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("chia_farm") or len(self.sink) >= 200:
            return
        msg = record.getMessage()
        self.sink.append({"t": round(now() - self.t0, 3), "logger": record.name, "level": record.levelname,
                          "message": msg[:2000]})


def setup_logging(run_dir: Path, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", "%H:%M:%S")
    fh = logging.FileHandler(run_dir / "farmer.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if verbose:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)


def tail(path: Path, lines: int = 25) -> str:
    try:
        data = path.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.seed_random:
        print(f"chia_farm: seed {args.seed} (--seed random; rerun with --seed {args.seed})", flush=True)
    start = now()
    parent = Path(args.workdir) if args.workdir else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="chia-farm-", dir=parent)).resolve()
    harness: Harness | None = None
    try:
        setup_logging(run_dir, args.verbose)
        harness = Harness(args, run_dir)
        logging.getLogger().addHandler(CaptureHandler(harness.farmer_log_records, harness.t0))
        return run_and_report(args, harness, run_dir, start)
    finally:
        if harness is not None:
            harness.stop_harvester()
            if harness.fuse is not None:
                harness.fuse.unmount()
        logging.shutdown()
        if args.keep:
            with contextlib.suppress(OSError):
                print(f"chia_farm: run folder kept: {run_dir}", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_and_report(args: argparse.Namespace, harness: Harness, run_dir: Path, start: float) -> int:
    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)

    async def go() -> None:
        try:
            await asyncio.wait_for(harness.run(), timeout=args.timeout)
        finally:
            await harness.shutdown()

    error: str | None = None
    try:
        asyncio.run(go())
    except asyncio.TimeoutError:
        error = f"the run did not finish within --timeout {args.timeout} s"
    except HarnessError as e:
        error = str(e)
    except KeyboardInterrupt as e:
        error = f"interrupted ({e})"
    except BaseException:  # SystemExit from chia's config code too
        error = "harness error: " + traceback.format_exc()
    finally:
        harness.stop_harvester()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    elapsed = now() - start
    try:
        report = harness.report(elapsed, error)
    except Exception:
        report = {"ok": False, "error": (error or "") + "\nreport error: " + traceback.format_exc(),
                  "failures": harness.failures}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    ok = bool(report.get("ok"))
    t = report.get("totals", {})
    summary = (
        f"chia_farm: {'PASS' if ok else 'FAIL'} harvester={args.harvester} "
        f"plots={report.get('plot_views', {}).get('initial', {}).get('plot_count')} "
        f"sps={t.get('signage_points', 0)} expected={t.get('expected', 0)} declared={t.get('declared', 0)} "
        f"matched={t.get('matched', 0)} missing={t.get('missing', 0)} extra={t.get('extra_valid', 0)} "
        f"invalid={t.get('invalid', 0)} signatures={t.get('signatures_valid', 0)} valid/"
        f"{t.get('signatures_invalid', 0)} invalid elapsed={elapsed:.1f}s"
    )
    summary += f" seed={args.seed}"
    for key, sc in report.get("scenarios", {}).items():
        summary += f"\n  {key}: {json.dumps(sc)}"
    if report.get("fresh_plots"):
        fp = report["fresh_plots"]
        summary += f"\n  fresh_plots: {fp['count']} plotted in {fp['seconds_total']} s ({fp['seconds_each']})"
    bench = report.get("bench")
    if bench:
        fi, nps = bench["sp_to_farming_info_seconds"], bench["sp_to_new_proof_of_space_seconds"]
        summary += (f"\n  bench: sp->farming_info p50 {fi.get('p50')} p99 {fi.get('p99')} s; "
                    f"sp->new_proof_of_space p50 {nps.get('p50')} p99 {nps.get('p99')} s (n={nps.get('count')}); "
                    f"cpu {bench['cpu'].get('cpu_ms_per_sp')} ms/SP")
    stuck = report.get("stuck_disk")
    if stuck:
        summary += f"\n  stuck_disk: {json.dumps(stuck['summary'])}"
    with contextlib.suppress(OSError):
        print(summary, flush=True)
        if not ok:
            reasons = ([error] if error else []) + list(report.get("failures", []))
            sys.stderr.write("chia_farm: FAILED\n" + "".join(f"  - {r}\n" for r in reasons))
            sys.stderr.write(f"--- harvester.log (tail) ---\n{tail(run_dir / 'harvester.log')}\n")
            sys.stderr.write(f"--- farmer.log (tail) ---\n{tail(run_dir / 'farmer.log', 15)}\n")
            sys.stderr.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
