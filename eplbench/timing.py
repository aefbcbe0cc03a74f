"""Interleaved timing (SPEC 7): single-threaded, warm-up first, candidates alternating call by
call so that drift in machine speed hits all of them alike."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

# the model-shaped topologies whose speed the issues track: (P, groups, nodes, gpus)
DEEPSEEK_V3_SHAPE = {"layers": 58, "experts": 256,
                     "hierarchical": (288, 8, 4, 32), "global": (288, 1, 1, 32)}


def time_interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call over `repeats` rounds; round r runs the calls in rotated order."""
    torch.set_num_threads(1)
    for call in calls.values():
        call()
    names = list(calls)
    seconds = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def deepseek_v3_weight(seed: int = 0) -> torch.Tensor:
    """[58, 256] int64 log-normal loads (sigma 1) in the DeepSeek-V3 shape."""
    from eplbench.instances.families import generate

    return torch.from_numpy(generate("lognormal", seed, DEEPSEEK_V3_SHAPE["layers"],
                                     DEEPSEEK_V3_SHAPE["experts"]))


def median(values) -> float:
    return float(np.median(values))
