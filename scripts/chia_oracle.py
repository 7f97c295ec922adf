#!/usr/bin/env python3
"""chia-blockchain's own consensus formulas, as an oracle for protocol::chia::consensus.

Run it with the python of the chia venv (scripts/chia-venv.sh prints it on its last line). It
reads cases as JSON lines on stdin (all of them, then answers) and prints one JSON line per
case, in order, computed with chia's functions and chia's constants. Nothing here reimplements
a formula: every answer comes from chia (or chia_rs).

A case is {"op": ..., "overrides": {NAME: "decimal", ...}?, "network": str?, ...}. Its
constants are chia's DEFAULT_CONSTANTS (mainnet) with the overrides applied the way chia's
services apply config.yaml's network_overrides.constants.<network>: update_testnet_overrides
(only when "network" is given), then replace_str_to_bytes. Integers go both ways as decimal
strings (some exceed 64 bits); byte strings as lower-case hex.

  constants          {"names": [NAME]}                -> {"value": {NAME: "decimal"}}
  prefix_bits        {"height", "k"}                  -> calculate_prefix_bits
  plot_filter        {"prefix_bits", "plot_id", "challenge_hash", "sp_hash"}
                     -> {"value": {"input": hex, "passes": bool, "pos_challenge": hex}}
  expected_plot_size {"k"}                            -> pos_quality._expected_plot_size (v1)
  iters              {"quality", "k", "difficulty", "sp_hash"}
                     -> pot_iterations.calculate_iterations_quality (v1, height 0)
  sp_interval_iters  {"sub_slot_iters"}               -> pot_iterations.calculate_sp_interval_iters
  phase_out          {"proof", "height"}              -> proof_of_space.is_v1_phased_out

An answer is {"value": ...} or, where chia raises, {"error": exception class name,
"message": str}. A malformed case (unknown op, missing field) exits with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from chia_rs import PlotParam
from chia_rs.sized_bytes import bytes32
from chia_rs.sized_ints import uint32, uint64

from chia.consensus.constants import replace_str_to_bytes
from chia.consensus.default_constants import DEFAULT_CONSTANTS, update_testnet_overrides
from chia.consensus.pos_quality import _expected_plot_size
from chia.consensus.pot_iterations import calculate_iterations_quality, calculate_sp_interval_iters
from chia.types.blockchain_format.proof_of_space import (
    calculate_plot_filter_input,
    calculate_pos_challenge,
    calculate_prefix_bits,
    is_v1_phased_out,
    passes_plot_filter,
)

_constants_cache: dict[Any, Any] = {}


def constants_for(case: dict[str, Any]) -> Any:
    overrides = {name: int(value) for name, value in case.get("overrides", {}).items()}
    network = case.get("network")
    key = (network, tuple(overrides.items()))
    if key not in _constants_cache:
        if network is not None:
            update_testnet_overrides(network, overrides)
        _constants_cache[key] = replace_str_to_bytes(DEFAULT_CONSTANTS, **overrides)
    return _constants_cache[key]


def b32(hex_string: str) -> bytes32:
    return bytes32.fromhex(hex_string)


def answer(case: dict[str, Any]) -> Any:
    op = case["op"]
    if op not in OPS:
        raise KeyError(f"unknown op {op!r}")
    constants = constants_for(case)
    return OPS[op](case, constants)


def op_constants(case: dict[str, Any], c: Any) -> Any:
    return {name: str(int(getattr(c, name))) for name in case["names"]}


def op_prefix_bits(case: dict[str, Any], c: Any) -> Any:
    return str(calculate_prefix_bits(c, uint32(case["height"]), PlotParam.make_v1(case["k"])))


def op_plot_filter(case: dict[str, Any], c: Any) -> Any:
    plot_id, challenge, sp = b32(case["plot_id"]), b32(case["challenge_hash"]), b32(case["sp_hash"])
    return {
        "input": bytes(calculate_plot_filter_input(plot_id, challenge, sp)).hex(),
        "passes": bool(passes_plot_filter(case["prefix_bits"], plot_id, challenge, sp)),
        "pos_challenge": bytes(calculate_pos_challenge(plot_id, challenge, sp)).hex(),
    }


def op_expected_plot_size(case: dict[str, Any], c: Any) -> Any:
    return str(int(_expected_plot_size(PlotParam.make_v1(case["k"]), c)))


def op_iters(case: dict[str, Any], c: Any) -> Any:
    iters = calculate_iterations_quality(
        c,
        b32(case["quality"]),
        PlotParam.make_v1(case["k"]),
        uint64(int(case["difficulty"])),
        b32(case["sp_hash"]),
        height=uint32(0),
    )
    return str(int(iters))


def op_sp_interval_iters(case: dict[str, Any], c: Any) -> Any:
    return str(int(calculate_sp_interval_iters(c, uint64(int(case["sub_slot_iters"])))))


def op_phase_out(case: dict[str, Any], c: Any) -> Any:
    return bool(is_v1_phased_out(bytes.fromhex(case["proof"]), uint32(case["height"]), c))


OPS = {
    "constants": op_constants,
    "prefix_bits": op_prefix_bits,
    "plot_filter": op_plot_filter,
    "expected_plot_size": op_expected_plot_size,
    "iters": op_iters,
    "sp_interval_iters": op_sp_interval_iters,
    "phase_out": op_phase_out,
}


def main() -> int:
    # replace_str_to_bytes warns about unknown names through logging: keep stdout clean.
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
    cases = [json.loads(line) for line in sys.stdin.read().splitlines() if line.strip()]
    out = []
    for n, case in enumerate(cases):
        if not isinstance(case, dict) or "op" not in case:
            print(f"chia_oracle: case {n} is not an object with an op: {case!r}", file=sys.stderr)
            return 2
        try:
            result = {"value": answer(case)}
        except KeyError as e:
            print(f"chia_oracle: case {n}: missing field or unknown op: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # chia's own refusals are answers
            result = {"error": type(e).__name__, "message": str(e)}
        out.append(json.dumps(result))
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
