"""Timing (spec §7): `perf_counter` around calls, single-threaded, warm-up first; candidates
alternate call by call so that drift in machine speed hits all of them alike.

Some machines serve `perf_counter` from a coarse clock (a 4 ms tick was seen on the
development machine in threaded processes). `timed_call` measures the tick once and, when a
call lasts fewer than `MIN_TICKS` ticks, times a batch of back-to-back calls and divides, as
`timeit` does (doubling the batch until it spans enough ticks); with a fine clock every call
is timed alone.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

# the model-shaped topologies whose speed the issues track: (P, groups, nodes, gpus)
DEEPSEEK_V3_SHAPE = {"layers": 58, "experts": 256,
                     "hierarchical": (288, 8, 4, 32), "global": (288, 1, 1, 32)}


# a sample must span at least this many clock ticks
MIN_TICKS = 5
_tick: float | None = None


def clock_tick() -> float:
    """The smallest step `perf_counter` makes in this process (seconds, measured once)."""
    global _tick
    if _tick is None:
        steps = []
        while len(steps) < 5:
            start = time.perf_counter()
            now = time.perf_counter()
            while now == start:
                now = time.perf_counter()
            steps.append(now - start)
        _tick = min(steps)
    return _tick


def timed_call(call: Callable[[], object]) -> tuple[object, float]:
    """(the first call's output, seconds per call)."""
    start = time.perf_counter()
    output = call()
    elapsed, calls = time.perf_counter() - start, 1
    while elapsed < MIN_TICKS * clock_tick():
        calls *= 2
        start = time.perf_counter()
        for _ in range(calls):
            call()
        elapsed = time.perf_counter() - start
    return output, elapsed / calls


def time_interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call over `repeats` rounds; round r runs the calls in rotated order."""
    torch.set_num_threads(1)
    for call in calls.values():
        call()
    seconds = {name: [] for name in calls}
    for round_index in range(repeats):
        for name in rotated(list(calls), round_index):
            seconds[name].append(timed_call(calls[name])[1])
    return seconds


def rotated(names: list, round_index: int) -> list:
    """The order of round `round_index`: it starts that many places further along, so that
    drift in machine speed hits every name alike."""
    shift = round_index % max(len(names), 1)
    return names[shift:] + names[:shift]


def deepseek_v3_weight(seed: int = 0) -> torch.Tensor:
    """[58, 256] int64 log-normal loads (sigma 1) in the DeepSeek-V3 shape."""
    from eplbench.instances.families import generate

    return torch.from_numpy(generate("lognormal", seed, DEEPSEEK_V3_SHAPE["layers"],
                                     DEEPSEEK_V3_SHAPE["experts"]))


def median(values) -> float:
    return float(np.median(values))
