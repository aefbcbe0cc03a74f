"""An OpenEvolve-style evaluator: `evaluate(program_path) -> dict` with `combined_score`.

The program is a file defining `rebalance_experts` with the engines' signature. It runs in
the sandbox (one thread, `TIME_LIMIT` seconds per call) with the DeepSeek port beside it,
timed interleaved, and every placement goes through the checker.

- `evaluate_stage1`: validity and speed on the `tiny` set. combined_score = speed score.
- `evaluate_stage2`: gaps to the reference values on `small` and `medium-cut`, and replay
  balancedness on a drifting simulated trace. combined_score = gap score x speed score.
- `evaluate`: stage 1, then stage 2 if stage 1 passed.

Scores: gap score = 1 / (1 + mean gap / 1%) (1 at the optimum, 0.5 at a 1% mean gap);
speed score = 1 when the program is no slower than the DeepSeek port, else
(port time / program time) ** 0.25. Any failure (the file does not load, a call raises,
times out or crashes, an output breaks the contract, on any instance) returns
combined_score 0.0 and an `error` saying what failed where, never a score averaged with the
instances that worked.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from eplbench.errors import BadInput

TIME_LIMIT = 5.0
STAGE1_SETS = ["tiny"]
STAGE2_SETS = ["small", "medium-cut"]
# the replay trace: routing-simulator windows (layers x experts) on the topology below
REPLAY_SHAPE = {"num_layers": 2, "num_experts": 16, "num_windows": 4, "seed": 7}
# global (one node): with group-limited routing on 2 nodes, the node split decides the peak
# and every heuristic replays alike
REPLAY_TOPOLOGY = (24, 1, 1, 4)
GAP_UNIT = 0.01
SPEED_EXPONENT = 0.25
WORST = 0.0


def evaluate(program_path: str) -> dict:
    """Stage 1, then stage 2 when stage 1 passed (its metrics merged in)."""
    first = evaluate_stage1(program_path)
    if "error" in first:
        return first
    return {**first, **evaluate_stage2(program_path)}


def evaluate_stage1(program_path: str) -> dict:
    """Validity and the runtime ratio to the DeepSeek port on the tiny set."""
    table, failure = _run(program_path, STAGE1_SETS)
    if failure:
        return failure
    ratio = _runtime_ratio(table, program_path)
    return {"combined_score": _speed_score(ratio), "validity": 1.0, "runtime_ratio": ratio}


def evaluate_stage2(program_path: str) -> dict:
    """Mean and max gap on the reference sets, replay balancedness, runtime ratio."""
    from eplbench.gaps import instance_gaps

    table, failure = _run(program_path, STAGE2_SETS)
    if failure:
        return failure
    gaps = instance_gaps(table)
    mine = gaps[gaps.heuristic == program_path].gap_hi
    replay, failure = _replay_balancedness(program_path)
    if failure:
        return failure
    ratio = _runtime_ratio(table, program_path)
    mean_gap = float(mine.mean())
    return {"combined_score": _speed_score(ratio) / (1 + mean_gap / GAP_UNIT),
            "validity": 1.0, "mean_gap": mean_gap, "max_gap": float(mine.max()),
            "replay_balancedness": replay, "runtime_ratio": ratio}


def _run(program_path: str, sets: list[str]):
    """(results table with gaps, None) or (None, failure dict)."""
    import pandas as pd

    from eplbench.gaps import attach_reference
    from eplbench.instances import load_instances, reference_path
    from eplbench.reference import read_reference
    from eplbench.runner import RunOptions, add_runtime_ratio, run_heuristics

    if not Path(program_path).is_file():
        return None, _failure(f"{program_path}: no such file")
    options = RunOptions(repeats=3, time_limit=TIME_LIMIT)
    tables = []
    for name in sets:
        try:
            rows = run_heuristics([program_path], load_instances(name), options,
                                  on_unit=partial(_stop_at_failure, program_path))
        except (BadInput, _Failed) as error:
            return None, error.failure if isinstance(error, _Failed) else _failure(str(error))
        tables.append(attach_reference(add_runtime_ratio(rows, options.baseline),
                                       read_reference(reference_path(name))))
    return pd.concat(tables, ignore_index=True), None


class _Failed(Exception):
    """Raised from the runner's callback at the first instance the program fails on."""

    def __init__(self, failure: dict):
        super().__init__(failure["error"])
        self.failure = failure


def _stop_at_failure(program_path: str, instance, rows: list[dict]) -> None:
    import pandas as pd

    failure = _first_failure(pd.DataFrame(rows).query("heuristic == @program_path"))
    if failure:
        raise _Failed(failure)


def _replay_balancedness(program_path: str):
    from eplbench.problem import Topology
    from eplbench.replay import replay_rows, simulated_windows, window_instances
    from eplbench.reports.tables import instance_summary
    from eplbench.runner import RunOptions, add_runtime_ratio

    windows = window_instances(simulated_windows(**REPLAY_SHAPE), Topology(*REPLAY_TOPOLOGY),
                               "evaluate-replay")
    options = RunOptions(repeats=1, time_limit=TIME_LIMIT)
    rows = add_runtime_ratio(replay_rows([program_path], windows, options), options.baseline)
    mine = rows[rows.heuristic == program_path]
    failure = _first_failure(mine)
    if failure:
        return None, failure
    return float(instance_summary(mine).balancedness.mean()), None


def _first_failure(rows) -> dict | None:
    bad = rows[~rows.valid]
    if bad.empty:
        return None
    row = bad.iloc[0]
    return _failure(f"{row.reason} on {row.instance}: {row.detail}")


def _failure(error: str) -> dict:
    return {"combined_score": WORST, "validity": 0.0, "error": error}


def _runtime_ratio(table, program_path: str) -> float:
    """Geometric mean over instances of program time / DeepSeek port time."""
    ratios = table[table.heuristic == program_path].drop_duplicates("instance").runtime_ratio
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return float(np.exp(np.log(ratios).mean()))


def _speed_score(ratio: float) -> float:
    return 1.0 if ratio <= 1 else float(ratio ** -SPEED_EXPONENT)
