"""Exact solvers: CP-SAT and MIP (SCIP) on the joint model, stage models, bounds.

`solve(weight, topo, policy, solver, time_limit)` returns one `SolveResult` per layer.
Adding a solver is one backend class plus one line in `SOLVERS`.
"""

from __future__ import annotations

import math
import numbers

from eplbench.errors import BadInput
from eplbench.problem import Policy, Topology, as_weight_matrix
from eplbench.solvers import completion_kernel, local_search
from eplbench.solvers.backends import CpSatBackend, ScipBackend
from eplbench.solvers.layer import solve_layer
from eplbench.solvers.result import SolveResult

# name -> (method, backend of the joint model, description)
SOLVERS = {
    "enum": ("enum", CpSatBackend, "exact completion search over replica counts and "
                                   "packings (up to 8 GPUs; every group-to-node assignment "
                                   "under the hierarchy), then the joint CP-SAT model in "
                                   "the work left or where the search is too large"),
    "cpsat": ("joint", CpSatBackend, "CP-SAT on the joint replication + packing model"),
    "mip": ("joint", ScipBackend, "SCIP (pywraplp) on the same joint model; its bound, "
                                  "floating point, is used once CP-SAT has checked it"),
}
DEFAULT_SOLVER = "enum"


def list_solvers() -> dict[str, str]:
    return {name: description for name, (_, _, description) in SOLVERS.items()}


def solve(weight, topo: Topology, policy: Policy | str = "global", solver: str = DEFAULT_SOLVER,
          time_limit: float = 10.0, workers: int = 1, seed: int = 0,
          on_layer=None) -> list[SolveResult]:
    """Solve every layer of `weight` ([L, E] tokens) under `policy`; `time_limit` per layer.

    time_limit: seconds, finite and >= 0; 0 means no search: DeepSeek's placement (ub)
    and the no-search bounds (lb) only, OPTIMAL where they meet.
    `on_layer(index, result)` is called after each layer (progress output).
    """
    if solver not in SOLVERS:
        raise BadInput(f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}")
    check_time_limit(time_limit)
    policy = Policy.parse(policy)
    weight = as_weight_matrix(weight)
    topo.validate_for(weight.shape[1], policy)
    method, backend, _ = SOLVERS[solver]
    completion_kernel.warm_up()  # compiled code: load it before any layer's clock starts
    local_search.warm_up()
    results = []
    for index, row in enumerate(weight):
        result = solve_layer(row, topo, policy, method, backend, time_limit, workers, seed)
        results.append(result)
        if on_layer:
            on_layer(index, result)
    return results


def check_time_limit(time_limit) -> None:
    """BadInput unless `time_limit` is a finite number of seconds >= 0 (0: no search)."""
    if (isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real)
            or not math.isfinite(time_limit) or time_limit < 0):
        raise BadInput(f"time_limit must be a finite number of seconds >= 0 (0: no search, "
                       f"bounds only), got {time_limit!r}")
