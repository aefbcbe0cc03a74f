"""Heuristics x instances -> one long results table (a row per heuristic, instance and layer).

Timing follows SPEC 7: each call runs single-threaded in a sandbox process, after a warm-up
on a different instance of the same shape; the median of `repeats` calls is kept, and the
baseline (the DeepSeek port) runs on the same instance right before the others, so that
`runtime_ratio` compares calls made side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from eplbench.checker import check_output
from eplbench.errors import InvalidPlacement
from eplbench.heuristics import spec_kind
from eplbench.instances import Instance
from eplbench.sandbox import Failure, Measurement, Sandbox

BASELINE = "deepseek"


@dataclass
class RunOptions:
    """repeats: timed calls per (heuristic, instance); time_limit: seconds per call."""

    repeats: int = 3
    time_limit: float = 10.0
    baseline: str = BASELINE


def run_heuristics(heuristics: list[str], instances: list[Instance],
                   options: RunOptions = RunOptions(),
                   on_step: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run every heuristic (and the baseline) on every instance; one row per layer.

    `on_step(label)` is called after each (heuristic, instance) pair, for progress output.
    """
    names = list(dict.fromkeys([options.baseline, *heuristics]))
    for spec in names:
        spec_kind(spec)
    rows = []
    with Sandbox(options.time_limit) as sandbox:
        for instance in instances:
            warmup = warmup_weight(instance)
            for spec in names:
                measurement = sandbox.measure(spec, instance.weight, instance.topology.as_tuple(),
                                              warmup, options.repeats)
                rows.extend(score(spec, instance, measurement))
                if on_step:
                    on_step(f"{spec} on {instance.id}")
    table = pd.DataFrame(rows)
    return add_runtime_ratio(table, options.baseline)


def warmup_weight(instance: Instance) -> np.ndarray:
    """A different load matrix of the same shape, for the untimed warm-up call."""
    rng = np.random.Generator(np.random.PCG64(instance.num_layers * 1_000_003 + instance.num_experts))
    return rng.integers(0, 10_000, size=instance.weight.shape, dtype=np.int64)


def score(spec: str, instance: Instance, measurement: Measurement) -> list[dict]:
    """Rows for one (heuristic, instance): checked and scored, or invalid with the reason."""
    base = {**instance_columns(instance), "heuristic": spec,
            "runtime_s": measurement.median_seconds}
    failure = measurement.failure
    if failure is None:
        try:
            evaluation = check_output(instance.weight, measurement.output, instance.topology)
        except InvalidPlacement as error:
            failure = Failure(error.reason, error.detail)
    if failure is not None:
        return [{**base, "layer": layer, "valid": False, "reason": failure.reason,
                 "detail": failure.detail} for layer in range(instance.num_layers)]
    return [{**base, "layer": layer, "valid": True, "reason": "", "detail": "",
             "max_load_num": peak.numerator, "max_load_den": peak.denominator,
             "max_load": float(peak), "mean_load": float(mean),
             "balancedness": float(evaluation.balancedness_per_layer[layer]),
             "respects_hierarchy": bool(evaluation.hierarchical_layers[layer]),
             "colocated_replicas": evaluation.colocated_replicas}
            for layer, (peak, mean) in enumerate(zip(evaluation.max_load, evaluation.mean_load))]


def instance_columns(instance: Instance) -> dict:
    topology = instance.topology
    return {"instance": instance.id, "instance_hash": instance.content_hash,
            "family": instance.family, "num_layers": instance.num_layers,
            "num_experts": instance.num_experts, "num_replicas": topology.num_replicas,
            "num_groups": topology.num_groups, "num_nodes": topology.num_nodes,
            "num_gpus": topology.num_gpus}


def add_runtime_ratio(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """runtime_ratio = runtime / the baseline's runtime on the same instance (<1 is faster)."""
    per_instance = table.drop_duplicates(["instance", "heuristic"])
    base = per_instance[per_instance.heuristic == baseline].set_index("instance").runtime_s
    table["runtime_ratio"] = table.runtime_s / table.instance.map(base)
    return table
