"""The wall clock inside numba-compiled code (for deadlines in long compiled loops)."""

from __future__ import annotations

import time

import numba
from numba import njit


@njit(cache=True)
def clock() -> float:
    """time.perf_counter(), read through numba's object mode (about a microsecond)."""
    with numba.objmode(now="float64"):
        now = time.perf_counter()
    return now
