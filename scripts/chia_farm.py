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
       harvester: farmer_peers -> [127.0.0.1:farmer port], plot_directories -> [RUN/plots],
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

Diagnostics: --trace-messages records every farmer <-> harvester message (type, id, size, both
handshakes) in the report. It is the one option that wraps chia code in memory
(WSChiaConnection._send_message / _read_one_message of this process; chia's files are never
touched); without it nothing of chia is wrapped.

Exit status: 0 when every expected proof was declared, every declaration (proof, required
iters, signatures) is valid, extras (valid proofs chiapos did not find, e.g. a complete-mode
harvester) are only reported, nothing was declared twice or for a plot not served, the farmer's
plot view matched the plots served (initially, after a restart, after add/remove and at the
end), farming_info matched, the harvester stayed connected, and the scenario checks passed. Otherwise 1, with the reasons on stderr; 2 for bad arguments.
The --json report holds everything: configuration, plot views, per-SP expected / declared /
missing / extra / invalid with timings, farming_info, eligibility per k, scenario timings.

Everything is bounded: --timeout for the whole run (default 180 s), every wait has its own
bound, the harvester process group is killed on exit (SIGTERM, then SIGKILL after 5 s), and the
run folder is removed unless --keep.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    from chia.protocols import farmer_protocol
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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
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
    def __init__(self, root: Path, keychain: FixtureKeychain, on_state: Any) -> None:
        self.root = root
        self.keychain = keychain
        self.on_state = on_state
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
        self.starts += 1
        self.task = asyncio.create_task(self.service.run(), name=f"farmer-service-{self.starts}")

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
        names = a.plots.split(",") if a.plots else list(ALL_PLOTS)
        add = remove = None
        if a.add_remove_after is not None:
            add, remove = a.add, a.remove
            if add == remove:
                raise HarnessError("--add and --remove must name different plots")
            names = [n for n in names if n != add]
            if remove not in names:
                names.append(remove)
        return names, add, remove

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
            harvester["plot_directories"] = [str(self.plot_dir)]
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
                plot.prover = DiskProver(str(plot.path))
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

    async def settle(self, sp: SignagePoint) -> None:
        a = self.args
        assert sp.sent_at is not None
        deadline = sp.sent_at + a.sp_timeout
        expected = self.expected_keys(sp)
        while now() < deadline:
            self.check_harvester_alive()
            assert self.farmer_runner is not None
            self.farmer_runner.check_alive()
            quiet = now() - sp.last_event
            have_info = bool(sp.farming_infos)
            complete = not (expected - self.declared_keys(sp))
            if have_info and complete and quiet >= 0.3:
                break
            if have_info and quiet >= a.settle:
                break
            current = self.harvester_connections()
            if quiet >= a.settle and not any(c in current for c in sp.sent_to):
                break  # the connection it went to is gone: do not wait the whole --sp-timeout
            await asyncio.sleep(0.02)
        sp.settled_at = now()

    # -------------------------------------------------------------------------------- events

    def on_declare(self, req: farmer_protocol.DeclareProofOfSpace, t: float) -> None:
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
        for p in self.plots.values():
            if p.farmer_public_key != farmer_pk:
                raise HarnessError(f"{p.name}: farmer key is not master_sk_to_farmer_sk(fixture farmer master)")
            if p.pool_public_key is not None and p.pool_public_key != pool_pk:
                raise HarnessError(f"{p.name}: pool key is not master_sk_to_pool_sk(fixture pool master)")
        self.plot_dir.mkdir(parents=True)
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

        self.farmer_runner = FarmerRunner(self.root, self.keychain, self.on_farmer_state)
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

    async def farm(self, add: str | None, remove: str | None) -> None:
        a = self.args

        for number in range(a.signage_points):
            if a.restart_farmer_after is not None and number == a.restart_farmer_after:
                await self.restart_farmer(number)
            if a.add_remove_after is not None and number == a.add_remove_after:
                assert add is not None and remove is not None
                await self.add_remove(number, add, remove)
            sp = self.make_sp(number)
            await self.send_sp(sp)
            await self.settle(sp)
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
            self.fail(f"final: the farmer's plot view does not match the plots served: {final.get('problems')}")
        if self.sps and totals["expected"] == 0:
            self.notes.append("no proof was expected in the whole run: add signage points or filter bits")
        return {
            "totals": dict(totals),
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
                "signage_points": a.signage_points,
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


def half_eligible_ssi(difficulty: int) -> int:
    """sub_slot_iters whose sp interval lets about half of a k=18 plot's qualities through:
    required_iters = difficulty * DIFFICULTY_CONSTANT_FACTOR * u / expected_size(k), u uniform in
    [0, 1), so sp_interval = difficulty * DCF / (2 * expected_size(18)). Mainnet constants (only
    MIN_PLOT_SIZE_V1 and the filter are overridden, neither enters this)."""
    c = DEFAULT_CONSTANTS
    expected = int(_expected_plot_size(PlotParam.make_v1(uint8(18)), c))
    interval = difficulty * int(c.DIFFICULTY_CONSTANT_FACTOR) // (2 * expected)
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
    p.add_argument("--seed", type=int, default=1, help="seed of challenges, sp hashes, sp indexes, heights (1)")
    p.add_argument("--difficulty", type=int, default=1, help="difficulty in every signage point (1)")
    p.add_argument("--sub-slot-iters", default=str(DEFAULT_SUB_SLOT_ITERS), metavar="N|half",
                   help="sub_slot_iters (default 2^57: every quality eligible at difficulty 1); 'half': "
                        "computed so that about half of the k=18 qualities are eligible; a multiple of 64")
    p.add_argument("--filter-bits", type=int, default=4,
                   help="NUMBER_ZERO_BITS_PLOT_FILTER_V1 override (4; mainnet has 9)")
    p.add_argument("--filter-heights", default="1000,2000,3000,4000", metavar="H1,H2,H3,H4",
                   help="HARD_FORK_HEIGHT, PLOT_FILTER_128/64/32_HEIGHT overrides: prefix bits drop by 1 at "
                        "each; peak heights cycle through the five bands (1000,2000,3000,4000)")
    p.add_argument("--min-plot-size", type=int, default=18, help="MIN_PLOT_SIZE_V1 override (18)")
    p.add_argument("--fixtures", default=str(DEFAULT_FIXTURES), help="fixtures folder (repo's fixtures/)")
    p.add_argument("--plots", help=f"comma-separated fixture plot names to serve (all: {','.join(ALL_PLOTS)})")
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
    if a.harvester == "ours" and not a.harvester_bin:
        p.error("--harvester ours needs --harvester-bin")
    if a.harvester_bin and not os.access(a.harvester_bin, os.X_OK):
        p.error(f"--harvester-bin {a.harvester_bin} is not an executable file")
    if a.sub_slot_iters == "half":
        a.ssi = half_eligible_ssi(a.difficulty)
    else:
        try:
            a.ssi = int(a.sub_slot_iters, 0)
        except ValueError:
            p.error("--sub-slot-iters takes an integer or 'half'")
    if a.ssi <= 0 or a.ssi % 64 != 0 or a.ssi >= 2**64:
        p.error("--sub-slot-iters must be a positive multiple of 64 (NUM_SPS_SUB_SLOT) below 2^64")
    if a.signage_points < 0 or a.difficulty <= 0 or not 0 <= a.filter_bits <= 32:
        p.error("bad --signage-points, --difficulty or --filter-bits")
    if a.plots:
        unknown = [n for n in a.plots.split(",") if n not in ALL_PLOTS]
        if unknown:
            p.error(f"unknown plot names {unknown}; known: {ALL_PLOTS}")
    if a.add_remove_after is not None and (a.add not in ALL_PLOTS or a.remove not in ALL_PLOTS):
        p.error(f"--add/--remove take fixture plot names: {ALL_PLOTS}")
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
    for key, sc in report.get("scenarios", {}).items():
        summary += f"\n  {key}: {json.dumps(sc)}"
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
