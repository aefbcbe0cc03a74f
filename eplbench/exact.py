"""Exact arithmetic of spec §2: replica and GPU loads as integers after lcm scaling.

A replica of expert e carries `w_e / c_e`. Multiplying by `M = lcm` of the replica counts in
use makes every replica load `w_e * (M / c_e)` an integer, so sums and maxima are exact.
Arrays stay int64 while that cannot overflow and fall back to Python ints otherwise.
"""

from __future__ import annotations

import math
import numpy as np

_INT64_SAFE = 2**62


def lcm_of(values) -> int:
    """lcm of the distinct positive ints in `values` (1 for none)."""
    return math.lcm(*{int(v) for v in values})


def scaled_slot_loads(weight: np.ndarray, phy2log: np.ndarray, logcnt: np.ndarray):
    """Integer load of every slot after per-layer lcm scaling.

    Args:
        weight: [L, E] int64 token counts.
        phy2log: [L, P] int64 expert of each slot.
        logcnt: [L, E] int64 replica counts (>= 1 for every expert).
    Returns:
        (slot_load [L, P] int64 or object array of Python ints, scale [L] list of int M_l)
        with slot_load[l, p] / scale[l] the exact load of slot p.
    """
    scale = [lcm_of(np.unique(row)) for row in logcnt]
    factor_rows = [[m // int(c) for c in row] for m, row in zip(scale, logcnt)]
    worst = int(weight.max(initial=0)) * max(scale) * max(1, phy2log.shape[1])
    dtype = np.int64 if worst < _INT64_SAFE else object
    factor = np.array(factor_rows, dtype=dtype)
    per_expert = weight.astype(dtype) * factor
    return np.take_along_axis(per_expert, phy2log, axis=1), scale

