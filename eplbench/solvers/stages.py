"""Stage optimum for gap attribution (spec §7): the packing stage alone.

Given a placement, its replica counts are kept and only the packing may change: the joint
model with one allowed count per expert is exactly "the best packing of these replicas"
(under the hierarchical policy the groups may still move between nodes). A heuristic's loss
then splits into packing (its max load - this optimum), replication (this optimum - the
policy's optimum) and hierarchy (hierarchical optimum - global optimum).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.backends import CpSatBackend
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.joint import solve_model
from eplbench.solvers.work import Deadline


def packing_bounds(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                   policy: Policy, time_limit: float) -> tuple[Fraction, Fraction]:
    """(ub, lb) in tokens of the best max load over placements with the replica counts of
    `phy2log` ([P], valid for `policy`); weight: [E] tokens. ub == lb when proven."""
    weight = np.asarray(weight, dtype=np.int64)
    counts = np.bincount(phy2log, minlength=len(weight))
    upper = layer_max_load(weight, phy2log, topology, policy)
    replica = max(Fraction(int(w), int(c)) for w, c in zip(weight, counts))
    lower = min(upper, max(replica, count_free_bound(weight, topology.num_replicas,
                                                      topology.num_gpus)[0]))
    if lower == upper or time_limit <= 0:
        return upper, lower
    fixed = [[int(c)] for c in counts]
    upper, bound = solve_model(weight, topology, policy, CpSatBackend, fixed, phy2log, lower,
                               Deadline.budget(time_limit), 1, 0)[1:3]
    return upper, lower if bound is None else max(lower, bound)
