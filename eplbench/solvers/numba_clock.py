"""The work meter inside numba-compiled loops (`work.Meter`'s compiled side)."""

from __future__ import annotations

import time

import numba
from numba import njit

# ticks between two readings of the wall clock (the safety net) in compiled loops
WALL_CHECK_TICKS = 1 << 16


@njit(cache=True)
def clock() -> float:
    """time.perf_counter(), read through numba's object mode (about a microsecond)."""
    with numba.objmode(now="float64"):
        now = time.perf_counter()
    return now


@njit(cache=True)
def spend(work, cost, stop, wall) -> bool:
    """Charge `cost` ticks to work = [ticks, 1 once the wall net fired]; True once the
    count reaches `stop` or the wall clock, read each time the count passes a multiple of
    WALL_CHECK_TICKS, is past `wall`."""
    before = work[0]
    work[0] += cost
    if work[0] // WALL_CHECK_TICKS != before // WALL_CHECK_TICKS and clock() >= wall:
        work[1] = 1
    return work[0] >= stop or work[1] == 1
