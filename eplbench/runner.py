"""Heuristics x instances -> one long results table (a row per heuristic, instance and layer).

A work unit is one instance with every heuristic (the baseline included). Timing follows
docs/spec.md section 7: each call runs single-threaded in a sandbox process, after an
untimed warm-up on a different instance of the same shape; the heuristics' calls are
interleaved round by round and the median of `repeats` is kept, so `runtime_ratio`
compares calls made side by side.
Units run in this process, a local process pool or a Dask cluster (`executors`).
"""

from __future__ import annotations

import platform
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd

from eplbench.checker import check_output
from eplbench.errors import BadInput, InvalidPlacement
from eplbench.executors import run_units
from eplbench.heuristics import absolute_spec, spec_kind
from eplbench.instances import Instance
from eplbench.sandbox import Failure, Measurement, Sandbox

BASELINE = "deepseek"
# columns that depend on the run, not on the placement (left out when comparing runs)
TIMING_COLUMNS = ["runtime_s", "runtime_samples", "runtime_ratio", "runtime_inside_s"]


@dataclass(frozen=True)
class RunOptions:
    """repeats: timed calls per (heuristic, instance); time_limit: seconds per call; jobs:
    local worker processes; scheduler: a Dask scheduler's address, instead of local work;
    attribution: seconds per layer for the packing-stage optimum of each placement's own
    replica counts (0: not computed), which splits gaps into their stages."""

    repeats: int = 3
    time_limit: float = 10.0
    baseline: str = BASELINE
    jobs: int = 1
    scheduler: str | None = None
    attribution: float = 0.0


def run_heuristics(heuristics: list[str], instances: list[Instance],
                   options: RunOptions = RunOptions(),
                   on_unit: Callable[[Instance, list[dict]], None] | None = None,
                   done: frozenset = frozenset()) -> pd.DataFrame:
    """Rows of every heuristic (and the baseline) on every instance.

    done: (instance hash, heuristic) pairs measured before: on each instance only the
    others run, beside the baseline (timed again, so that every runtime_ratio compares calls
    made side by side); an instance whose pairs are all done is skipped.
    on_unit(instance, rows) is called as each instance finishes.
    """
    specs = heuristic_specs(heuristics, options.baseline)
    units = []
    for instance in instances:
        missing = [name for name in specs if (instance.content_hash, name) not in done]
        if missing:
            chosen = dict.fromkeys([options.baseline, *missing])
            units.append((instance, {name: specs[name] for name in chosen}))
    _refuse_unloadable([spec for name, spec in specs.items() if spec_kind(name) != "builtin"]
                       if units else [], options)
    report = (lambda unit, rows: on_unit(unit[0], rows)) if on_unit else None
    unit = partial(measure_unit, options=options)
    return pd.DataFrame(rows_of_units(unit, units, options, report))


def _refuse_unloadable(specs: list[str], options: RunOptions) -> None:
    """BadInput, before any work, naming each user heuristic that cannot be loaded (a
    syntax error, no entry point, an import that raises): refused once, not per instance."""
    failures = _sandbox(options.time_limit).load_failures(specs) if specs else {}
    if failures:
        close_sandboxes()
        raise BadInput("; ".join(failure.detail for failure in failures.values()))


def heuristic_specs(heuristics: list[str], baseline: str) -> dict[str, str]:
    """Name -> spec to load by, the baseline first: a file by its absolute path (workers may
    start elsewhere); BadInput for a spec that names nothing."""
    return {name: absolute_spec(name) for name in dict.fromkeys([baseline, *heuristics])}


def rows_of_units(unit: Callable, units: list, options: RunOptions,
                  on_unit: Callable | None = None) -> list[dict]:
    """Every unit's rows, run where `options` say (`executors`); on_unit(unit, rows) as each
    finishes; this process's sandboxes are stopped at the end."""
    rows = []
    try:
        for done_unit, unit_rows in run_units(unit, units, options.jobs, options.scheduler,
                                              cleanup=close_sandboxes):
            rows += unit_rows
            if on_unit:
                on_unit(done_unit, unit_rows)
    finally:
        if not _kept:
            close_sandboxes()
    return rows


def measure_unit(unit: tuple[Instance, dict[str, str]], options: RunOptions) -> list[dict]:
    """One work unit (an instance, name -> spec to load, the baseline among them): every
    heuristic timed interleaved and scored; rows name each heuristic as the keys do and
    carry its runtime_ratio to the baseline of the same unit."""
    instance, specs = unit
    measurements = measure(instance, specs, options)
    rows = []
    for name, spec in specs.items():
        mine = scored_rows(name, instance, measurements[spec])
        if options.attribution > 0 and mine[0]["valid"]:
            add_packing_stage(mine, instance, placement_of(measurements[spec].output),
                              options.attribution)
        rows += mine
    return with_ratio(rows, measurements[specs[options.baseline]], options)


def placement_of(output) -> np.ndarray:
    """phy2log [L, P] of a `rebalance_experts` output: the array returned alone, or the
    first of the three maps."""
    return output if isinstance(output, np.ndarray) else output[0]


def with_ratio(rows: list[dict], baseline: Measurement, options: RunOptions) -> list[dict]:
    """`rows` with runtime_ratio (runtime / the baseline's, measured in the same unit; below
    1 is faster) and the timing options they were measured with (repeats, time_limit)."""
    return [{**row, "runtime_ratio": row["runtime_s"] / baseline.median_seconds,
             "repeats": options.repeats, "time_limit": options.time_limit} for row in rows]


def measure(plan: Instance, specs: dict[str, str], options: RunOptions,
            old_plans: dict[str, np.ndarray] | None = None) -> dict:
    """Spec -> Measurement: every heuristic called on `plan`'s loads, timed interleaved
    after a warm-up on other loads of the same shape, each in its own process of this
    process's sandbox. old_plans: name (a key of `specs`) -> the plan in place ([L, P]),
    given to the heuristics that take one."""
    plans = {specs[name]: old for name, old in (old_plans or {}).items() if name in specs}
    return _sandbox(options.time_limit).measure(
        list(specs.values()), plan.weight, plan.topology.as_tuple(), warmup_weight(plan),
        options.repeats, plans)


def scored_rows(name: str, served: Instance, measurement: Measurement) -> list[dict]:
    """`score`'s rows for a measured placement on `served`'s loads, with the run context."""
    context = run_context()
    return [{**row, **context} for row in score(name, served, measurement)]


def add_packing_stage(rows: list[dict], instance: Instance, phy2log: np.ndarray,
                      seconds: float) -> None:
    """Add pack_ub / pack_lb (num, den) to each layer's row: the best max load over
    placements with this placement's replica counts, under the policy it respects."""
    from eplbench.problem import Policy
    from eplbench.solvers.stages import packing_bounds

    for row, weight, placement in zip(rows, instance.weight, np.asarray(phy2log)):
        policy = Policy.HIERARCHICAL if row["respects_hierarchy"] else Policy.GLOBAL
        upper, lower = packing_bounds(weight, placement, instance.topology, policy, seconds)
        row.update(pack_ub_num=upper.numerator, pack_ub_den=upper.denominator,
                   pack_lb_num=lower.numerator, pack_lb_den=lower.denominator)


_sandboxes: dict[float, Sandbox] = {}
# how many `kept_sandboxes` blocks are open: while any is, runs leave the sandboxes running
_kept = 0


def _sandbox(time_limit: float) -> Sandbox:
    """This process's sandbox for the time limit, reused across units: it starts one child
    process per heuristic spec on first use and keeps it until `close_sandboxes`."""
    if time_limit not in _sandboxes:
        _sandboxes[time_limit] = Sandbox(time_limit)
    return _sandboxes[time_limit]


@contextmanager
def kept_sandboxes():
    """Within the block, this process's sandboxes outlive each run and stop at its end:
    for several runs in a row of the same heuristics (`evaluate` runs six), which then
    start each child process once instead of once per run (about 2 s each)."""
    global _kept
    _kept += 1
    try:
        yield
    finally:
        _kept -= 1
        if not _kept:
            close_sandboxes()


def close_sandboxes() -> None:
    """Stop this process's sandboxes and every child process they started (a worker
    process's sandboxes stop when it exits, or when their children find its pipes closed)."""
    while _sandboxes:
        _sandboxes.popitem()[1].close()


def run_context() -> dict:
    """Columns that say where and with what a row was measured."""
    import torch

    from eplbench import __version__

    return {"eplbench_version": __version__, "torch_version": torch.__version__,
            "numpy_version": np.__version__, "python_version": platform.python_version(),
            "machine": f"{platform.node()} ({platform.machine()})", "threads": 1}


def warmup_weight(instance: Instance) -> np.ndarray:
    """A different load matrix of the same shape, for the untimed warm-up call."""
    rng = np.random.Generator(np.random.PCG64(instance.num_layers * 1_000_003 + instance.num_experts))
    return rng.integers(0, 10_000, size=instance.weight.shape, dtype=np.int64)


def score(spec: str, instance: Instance, measurement: Measurement) -> list[dict]:
    """Rows for one (heuristic, instance): checked and scored, or invalid with the reason.

    A placement that breaks the instance's declared policy is invalid (reason `policy`,
    the breach in `detail`) but keeps its loads, so its gap shows what breaking it bought.
    """
    inside = measurement.inside_seconds
    base = {**instance_columns(instance), "heuristic": spec,
            "runtime_s": measurement.median_seconds,
            "runtime_samples": list(measurement.seconds),
            # the heuristic's own clock, for comparison only (it could be patched)
            "runtime_inside_s": float(np.median(inside)) if inside else float("nan")}
    failure = measurement.failure
    if failure is None:
        try:
            evaluation = check_output(instance.weight, measurement.output, instance.topology)
        except InvalidPlacement as error:
            failure = Failure(error.reason, error.detail)
    if failure is not None:
        return [{**base, "layer": layer, "valid": False, "reason": failure.reason,
                 "detail": failure.detail} for layer in range(instance.num_layers)]
    breach = evaluation.breach(instance.policy)
    verdict = ({"valid": False, "reason": "policy", "detail": breach} if breach
               else {"valid": True, "reason": "", "detail": ""})
    return [{**base, "layer": layer, **verdict,
             "max_load_num": peak.numerator, "max_load_den": peak.denominator,
             "max_load": float(peak), "mean_load": float(mean),
             "balancedness": float(evaluation.balancedness_per_layer[layer]),
             "respects_hierarchy": bool(evaluation.hierarchical_layers[layer]),
             "colocated_replicas": int(evaluation.colocated_per_layer[layer])}
            for layer, (peak, mean) in enumerate(zip(evaluation.max_load, evaluation.mean_load))]


def instance_columns(instance: Instance) -> dict:
    topology = instance.topology
    return {"instance": instance.id, "instance_hash": instance.content_hash,
            "policy": instance.policy, "family": instance.family,
            "num_layers": instance.num_layers,
            "num_experts": instance.num_experts, "num_replicas": topology.num_replicas,
            "num_groups": topology.num_groups, "num_nodes": topology.num_nodes,
            "num_gpus": topology.num_gpus}
