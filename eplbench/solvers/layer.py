"""One layer, one policy, one method: incumbent, no-search bounds, then the exact method."""

from __future__ import annotations

import time

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.bounds import count_free_bound, node_mean_bound
from eplbench.solvers.completion import solve_global
from eplbench.solvers.enumeration import (EnumerationTooLarge, balanced_assignments,
                                          solve_hierarchical)
from eplbench.solvers.equal_loads import at_the_mean
from eplbench.solvers.fraction_proof import proven_above
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.joint import solve_joint
from eplbench.solvers.result import FEASIBLE, OPTIMAL, SolveResult
from eplbench.solvers.start import best_start
from eplbench.solvers.work import Deadline


# share of the time limit the enumeration gets before the joint model takes over: against
# 0.5, 0.9 took 3 of the 11 DeepSeek-V3 layers worst under the hierarchy from 1.2e-4 to
# 3.9e-5, and small global from 61 to 65 of 80 layers certified at 10 s (the joint model
# certified none of the layers the enumeration left)
ENUM_SHARE = 0.9


def solve_layer(weight: np.ndarray, topology: Topology, policy: Policy, method: str,
                backend_class, time_limit: float, workers: int = 1, seed: int = 0,
                incumbent: np.ndarray | None = None) -> SolveResult:
    """Solve one layer (weight: [E] int64 tokens). method: "enum" or "joint".

    "enum" falls back to the joint model (with `backend_class`) when the enumeration is too
    large. incumbent: optional [P] start, valid for `policy`, in place of `best_start`'s
    (the tests give DeepSeek's placement as it is).
    """
    start = time.perf_counter()
    deadline = Deadline.budget(time_limit)
    weight = np.asarray(weight, dtype=np.int64)
    lower, source = count_free_bound(weight, topology.num_replicas, topology.num_gpus)
    node_bound = hierarchy_bound(weight, topology) if policy.hierarchical else 0
    lower, source = max((lower, source), (node_bound, "node_mean"), key=lambda item: item[0])
    by_nodes = method == "enum" and node_bound > 0
    if incumbent is None:
        incumbent = best_start(weight, topology, policy, deadline, lower, by_nodes)
    phy2log = incumbent
    upper = layer_max_load(weight, phy2log, topology, policy)
    lower = min(lower, upper)
    params = {"time_limit": time_limit, "workers": workers, "seed": seed, "method": method}
    solver_name = "enum" if method == "enum" else backend_class.name
    deterministic = None
    if lower < upper and time_limit > 0:
        found = None
        if method == "enum":
            try:
                search = solve_hierarchical if policy.hierarchical else solve_global
                found = search(weight, topology, phy2log, deadline.share(ENUM_SHARE),
                               distinct=policy.distinct)
            except EnumerationTooLarge as reason:
                if not policy.hierarchical:
                    found = (at_the_mean(weight, topology, (lower, source), upper, deadline,
                                         seed, policy.distinct)
                             or _proven(weight, topology, phy2log, upper, deadline))
                if found is None:
                    params["fallback"] = f"joint model ({reason})"
                    solver_name = f"enum>{backend_class.name}"
        if (found is None or found[2] < found[1]) and not deadline.passed():
            # not (yet) proven: the joint model searches on from the best placement so far
            start_phy2log, bound = (found[0], found[2]) if found else (phy2log, lower)
            found_phy2log, found_upper, proven, deterministic, extra = solve_joint(
                weight, topology, policy, backend_class, start_phy2log, max(lower, bound),
                deadline, workers, seed)
            params.update(extra)
            found = (found_phy2log, found_upper,
                     proven if proven is not None and proven > bound else bound)
        if found is not None:
            phy2log, _, proven = found
            upper = layer_max_load(weight, phy2log, topology, policy)  # the checker's word
            if proven is not None and proven > lower:
                lower, source = min(proven, upper), solver_name
    status = OPTIMAL if lower == upper else FEASIBLE
    params["work"] = round(deadline.meter.seconds, 6)
    if deadline.meter.wall_stopped:
        params["stopped"] = "wall clock"
    return SolveResult(status, upper, lower, phy2log, time.perf_counter() - start, deterministic,
                       solver_name, params, backend_class.version, source)


def _proven(weight, topology, phy2log, upper, deadline):
    """(phy2log, upper, upper) when nothing is below phy2log's load `upper`, else None."""
    return (phy2log, upper, upper) if proven_above(weight, topology, upper, deadline) else None


def hierarchy_bound(weight: np.ndarray, topology: Topology):
    """The node-mean bound over all balanced group-to-node assignments (0 if too many)."""
    try:
        assignments = balanced_assignments(topology.num_groups, topology.num_nodes)
    except EnumerationTooLarge:
        return 0
    return node_mean_bound(weight, topology.num_groups, topology.num_nodes,
                           topology.num_gpus, assignments)
