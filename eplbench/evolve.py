"""An OpenEvolve-style evaluator: `evaluate(program) -> dict` with `combined_score`.

The program is a file defining `rebalance_experts` with the engines' signature (or a
built-in name, or `pkg.module:function`). It runs in the sandbox (its own process, one
thread, `TIME_LIMIT` seconds per call) beside the `deepseek_fast` yardstick, timed
interleaved, and every placement goes through the checker under each instance's declared
policy (hierarchical on every set used here), or the `policy` given.

- `evaluate_stage1`: validity on the `tiny` set, speed on the DeepSeek-V3 shape.
  combined_score = speed score.
- `evaluate_stage2`: gaps to the reference values on `small`, `medium-cut` and
  `deepseek-v3-cut` and on `FRESH_COUNT` instances drawn at evaluation time from a secret
  seed and solved then (a program that looks answers up cannot know them), replay
  balancedness on a drifting routing-simulator trace of the DeepSeek-V3 topology, and
  speed. combined_score = gap score x replay balancedness x speed score.
- `evaluate`: stage 1, then stage 2 if stage 1 passed.

Scores (docs/openevolve.md):
- gap score = 1 / (1 + mean gap / 1%): 1 at the optimum, 0.5 at a 1% mean gap;
- speed score = (s / (1 + s)) ** 0.25 with s = `deepseek_fast` time / program time (the
  program's speedup, geometric mean over rounds): 0.84 at the yardstick's speed, rising
  towards 1 for faster programs, 0.55 at 10x slower;
- any failure (the program does not load, a call raises, times out or crashes, an output
  breaks the contract or the declared policy, on any instance) returns combined_score 0.0,
  validity 0.0 and an `error` saying what failed where, never a score averaged with the
  instances that worked; so a program that breaks the policy ranks below every valid one.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from eplbench.errors import BadInput

TIME_LIMIT = 5.0
BASELINE = "deepseek_fast"
STAGE1_SETS = ["tiny"]
STAGE2_SETS = ["small", "medium-cut", "deepseek-v3-cut"]
# the replay trace: routing-simulator windows of the DeepSeek-V3 model on its topology
REPLAY_SHAPE = {"num_layers": 4, "num_experts": 256, "num_windows": 5, "seed": 7,
                "groups": 8, "topk_groups": 4, "top_k": 8}
REPLAY_TOPOLOGY = (288, 8, 4, 32)
GAP_UNIT = 0.01
SPEED_EXPONENT = 0.25
REPEATS = 3
WORST = 0.0
# instances drawn fresh for every stage-2 evaluation: small-set recipes, solved on the spot
FRESH_COUNT = 3
FRESH_SOLVE_SECONDS = 2.0


def evaluate(program: str, policy: str | None = None) -> dict:
    """Stage 1, then stage 2 when stage 1 passed (its metrics merged in); the program's and
    the yardstick's processes are started once for both."""
    from eplbench.runner import kept_sandboxes

    with kept_sandboxes():
        first = evaluate_stage1(program, policy)
        if "error" in first:
            return first
        return {**first, **evaluate_stage2(program, policy)}


def evaluate_stage1(program: str, policy: str | None = None) -> dict:
    """Validity on the tiny set and the speedup over `deepseek_fast` on the V3 shape."""
    from eplbench.runner import kept_sandboxes

    try:
        with kept_sandboxes():
            _run(program, _sets(STAGE1_SETS, policy))
            speedup = _speedup(program, policy)
    except _Failed as failed:
        return failed.failure
    return {"combined_score": speed_score(speedup), "validity": 1.0, "speedup": speedup}


def evaluate_stage2(program: str, policy: str | None = None) -> dict:
    """Mean and max gap on the reference sets, replay balancedness, speedup."""
    from eplbench.gaps import instance_gaps
    from eplbench.runner import kept_sandboxes

    try:
        with kept_sandboxes():
            table = _run(program, _sets(STAGE2_SETS, policy) + [_fresh_set(policy)])
            replay = _replay_balancedness(program, policy)
            speedup = _speedup(program, policy)
    except _Failed as failed:
        return failed.failure
    gaps = instance_gaps(table)
    mine = gaps[gaps.heuristic == program].gap_hi
    mean_gap = float(mine.mean())
    return {"combined_score": combined_score(mean_gap, replay, speedup), "validity": 1.0,
            "mean_gap": mean_gap, "max_gap": float(mine.max()),
            "replay_balancedness": replay, "speedup": speedup}


def combined_score(mean_gap: float, replay_balancedness: float, speedup: float) -> float:
    """Stage 2's score: gap score x replay balancedness x speed score (module docstring)."""
    return replay_balancedness * speed_score(speedup) / (1 + mean_gap / GAP_UNIT)


def speed_score(speedup: float) -> float:
    """(s / (1 + s)) ** 0.25 for a speedup s over the yardstick: in (0, 1), rising with s."""
    return float((speedup / (1 + speedup)) ** SPEED_EXPONENT)


class _Failed(Exception):
    """The evaluation's result when the program failed somewhere: the worst score."""

    def __init__(self, error: str):
        super().__init__(error)
        self.failure = {"combined_score": WORST, "validity": 0.0, "error": error}


def _options(repeats: int = 1):
    from eplbench.runner import RunOptions

    return RunOptions(repeats=repeats, time_limit=TIME_LIMIT, baseline=BASELINE)


def _sets(names: list[str], policy: str | None) -> list[tuple[str, list, None]]:
    """(set name, its instances with `policy` declared (those whose topology cannot have
    it left out), None: its own reference file)."""
    from eplbench.instances import load_instances, where_defined

    if policy is None:
        return [(name, load_instances(name), None) for name in names]
    return [(name, where_defined(load_instances(name), policy)[0], None) for name in names]


def _fresh_set(policy: str | None) -> tuple[str, list, list]:
    """("fresh", FRESH_COUNT small-set recipes drawn from a secret seed, their reference
    entries solved now with `enum` for FRESH_SOLVE_SECONDS per layer)."""
    import secrets

    from eplbench.instances import Instance, with_policy
    from eplbench.instances.families import generate
    from eplbench.reference import solve_entries

    rng = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
    recipes = fresh_recipes(policy)
    instances = []
    for index in range(FRESH_COUNT):
        recipe = recipes[int(rng.integers(len(recipes)))]
        seed = int(rng.integers(2**63))
        weight = generate(recipe.family, seed, recipe.num_layers, recipe.num_experts,
                          **recipe.params)
        instances.append(Instance(id=f"fresh/{recipe.family}-{index}", weight=weight,
                                  topology=recipe.topology, family=recipe.family))
    instances = with_policy(instances, policy)
    entries = [entry for instance in instances for entry in solve_entries(
        (instance, instance.policy), "enum", FRESH_SOLVE_SECONDS, 1, "fresh")]
    return "fresh", instances, entries


def fresh_recipes(policy: str | None) -> list:
    """The small set's recipes a fresh instance is drawn from: those whose topology
    defines `policy` (all for None)."""
    from eplbench.instances.named import SETS

    return [recipe for recipe in SETS["small"]
            if policy is None or recipe.topology.defines(recipe.num_experts, policy)]


def _checked_program(program: str) -> None:
    """_Failed for a program that names nothing (a missing file, an unknown name)."""
    from eplbench.heuristics import spec_kind

    try:
        spec_kind(program)
    except BadInput as error:
        raise _Failed(str(error)) from None


def _run(program: str, sets: list[tuple[str, list, list | None]]):
    """The results table of the program (and the yardstick) on every (name, instances,
    reference entries or None for the set's own file), gaps attached; _Failed at the first
    instance the program fails on."""
    import pandas as pd

    from eplbench.gaps import attach_reference
    from eplbench.instances import reference_path
    from eplbench.reference import check_for_set, read_reference
    from eplbench.runner import run_heuristics

    _checked_program(program)
    tables = []
    for name, instances, entries in sets:
        try:
            rows = run_heuristics([program], instances, _options(),
                                  on_unit=partial(_stop_at_failure, program))
        except BadInput as error:
            raise _Failed(str(error)) from None
        path = reference_path(name)
        if entries is None and path:
            entries = check_for_set(read_reference(path), instances, path)
        tables.append(attach_reference(rows, entries) if entries is not None else rows)
    return pd.concat(tables, ignore_index=True)


def _stop_at_failure(program: str, instance, rows: list[dict]) -> None:
    import pandas as pd

    _raise_first_failure(pd.DataFrame(rows).query("heuristic == @program"))


def _raise_first_failure(rows) -> None:
    bad = rows[~rows.valid]
    if not bad.empty:
        row = bad.iloc[0]
        raise _Failed(f"{row.reason} on {row.instance}: {row.detail}")


def _speedup(program: str, policy: str | None) -> float:
    """deepseek_fast time / program time on the DeepSeek-V3 shape (58 x 256 log-normal
    loads, 288 slots, 8 groups, 4 nodes, 32 GPUs), geometric mean over timed rounds."""
    from eplbench.gate import round_log_ratios
    from eplbench.instances import Instance
    from eplbench.problem import Topology
    from eplbench.runner import run_heuristics
    from eplbench.timing import DEEPSEEK_V3_SHAPE, deepseek_v3_weight

    shape = Instance(id="deepseek-v3-shape", weight=deepseek_v3_weight().numpy(),
                     topology=Topology(*DEEPSEEK_V3_SHAPE["hierarchical"]), policy=policy)
    rows = run_heuristics([program], [shape], _options(REPEATS),
                          on_unit=partial(_stop_at_failure, program))
    return float(np.exp(-round_log_ratios(rows, program, BASELINE).mean()))


def _replay_balancedness(program: str, policy: str | None) -> float:
    """Mean balancedness of the program's plans for window t served on window t + 1."""
    from eplbench.problem import Topology
    from eplbench.replay import replay_rows, simulated_windows, window_instances
    from eplbench.reports.tables import instance_summary

    windows = window_instances(simulated_windows(**REPLAY_SHAPE), Topology(*REPLAY_TOPOLOGY),
                               "evaluate-replay", policy)
    rows = replay_rows([program], windows, _options(), rebalance_cost=False)
    mine = rows[rows.heuristic == program]
    _raise_first_failure(mine)
    return float(instance_summary(mine).balancedness.mean())
