"""Global problems with at most two slots per GPU, in closed form over count vectors.

With S = 2 the best packing of given replicas pairs the largest with the smallest, the
second largest with the second smallest, and so on (an exchange argument); with S = 1 it is
the largest replica. So the optimum is the minimum, over every count vector whose largest
replica is below the incumbent's load, of that pairing's value.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

from eplbench.problem import Topology

MAX_VECTORS = 20_000


def solve_pairs(weight, topology: Topology, upper: Fraction):
    """(phy2log [P], value) of an optimal placement when one is below `upper`, None when
    none is; raises ValueError when S > 2 or there are more than MAX_VECTORS vectors."""
    if topology.slots_per_gpu > 2:
        raise ValueError("closed-form packing needs at most two slots per GPU")
    best = None
    for counts in _count_vectors(weight, topology.num_replicas, upper):
        phy2log, value = _paired(weight, counts, topology.slots_per_gpu)
        if value < upper and (best is None or value < best[1]):
            best = (phy2log, value)
    return best


def _count_vectors(weight, num_slots: int, upper: Fraction):
    """Every count vector summing to num_slots whose largest replica is below `upper`."""
    low = [max(1, math.floor(int(w) / upper) + 1) if upper > 0 else 1 for w in weight]
    spare = num_slots - sum(low)
    if spare < 0:
        return
    if math.comb(len(weight) + spare - 1, spare) > MAX_VECTORS:
        raise ValueError(f"{math.comb(len(weight) + spare - 1, spare)} count vectors")
    for extra in itertools.combinations_with_replacement(range(len(weight)), spare):
        counts = list(low)
        for expert in extra:
            counts[expert] += 1
        yield counts


def _paired(weight, counts, slots: int):
    """(phy2log [P], max GPU load): replicas sorted by load, the i-th largest with the
    i-th smallest when two slots per GPU."""
    replicas = sorted(((Fraction(int(weight[e]), c), e) for e, c in enumerate(counts) for _
                       in range(c)), reverse=True)
    if slots == 1:
        return np.array([e for _, e in replicas], dtype=np.int64), replicas[0][0]
    half = len(replicas) // 2
    gpus = [(replicas[i], replicas[-1 - i]) for i in range(half)]
    value = max(a[0] + b[0] for a, b in gpus)
    return np.array([r[1] for gpu in gpus for r in gpu], dtype=np.int64), value
