"""The joint model as a solver (spec §3): search narrowed, certify exactly.

Count domains come from the incumbent's value U: c_e >= ceil(w_e / U) (a better solution
needs it) and c_e <= the slots the other experts leave. If that model is too large, domains
narrow to the incumbent's counts +-1: the search still improves U, but its bound is then not
a proof. The model is hinted with the incumbent; the placement it returns is re-scored by
the checker; its bound counts only when the domains were complete, and a floating-point
backend's (SCIP's) only once CP-SAT has checked it on the same model (`verified_bound`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.backends import CpSatBackend
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.model import PlacementModel, Scaling
from eplbench.solvers.result import INFEASIBLE
from eplbench.solvers.work import Deadline, afford_model

# above this many z variables the model is narrowed around the incumbent's counts
MAX_ASSIGNMENT_VARS = 20_000
# share of the time a floating-point backend (SCIP) searches; its bound is checked exactly
# (by CP-SAT) in the rest, or at once when it stops sooner
FLOAT_SEARCH_SHARE = 0.5


def solve_joint(weight: np.ndarray, topology: Topology, policy: Policy, backend_class,
                incumbent: np.ndarray, lower: Fraction, deadline: Deadline, workers: int,
                seed: int):
    """(phy2log [P], ub, lb or None when not proven by the model, deterministic time, params).

    incumbent: [P] a placement valid for `policy`; lower: a valid lower bound (tokens).
    """
    upper = layer_max_load(weight, incumbent, topology, policy)
    domains, complete = count_domains(weight, topology, policy, upper, incumbent)
    phy2log, upper, bound, deterministic, params = solve_model(
        weight, topology, policy, backend_class, domains, incumbent, lower, deadline, workers,
        seed)
    params = {"complete_domains": complete, **params}
    return phy2log, upper, bound if complete else None, deterministic, params


def solve_model(weight: np.ndarray, topology: Topology, policy: Policy, backend_class,
                domains: list[list[int]], incumbent: np.ndarray, lower: Fraction,
                deadline: Deadline, workers: int, seed: int):
    """(phy2log [P], ub, lb over placements whose counts lie in `domains` or None, the
    backend's deterministic time, params): the joint model restricted to `domains`, hinted
    with `incumbent` (whose counts lie in them); its placement is re-scored by the checker.

    A floating-point backend (`exact_bound` False: SCIP) searches for FLOAT_SEARCH_SHARE of
    the time; its bound is then checked exactly (`verified_bound`) in the time left."""
    upper = layer_max_load(weight, incumbent, topology, policy)
    scaling = Scaling.for_domains(weight, domains, upper, backend_class.max_model_load)
    params = {"scale": scaling.scale, "divisor": scaling.divisor}
    low_units = lower_units(weight, topology, scaling, lower)
    if not afford_model(deadline, PlacementModel.size(domains, topology.num_gpus)):
        params["model"] = "not built: larger than the work left"
        return incumbent, upper, None, None, params
    backend = backend_class()
    model = PlacementModel(backend, weight, topology, policy, domains, scaling, low_units,
                           incumbent_units(weight, incumbent, topology, scaling))
    model.add_hint(incumbent)
    share = 1.0 if backend_class.exact_bound else FLOAT_SEARCH_SHARE
    result = backend.solve(deadline.share(share), workers, seed)
    phy2log, upper = _better(weight, topology, policy, model, result.values, incumbent, upper)
    bound_units = result.bound
    if bound_units is not None and not backend_class.exact_bound and bound_units > low_units:
        bound_units, found, params["bound_check"] = verified_bound(
            weight, topology, policy, domains, scaling, low_units, bound_units, deadline,
            workers, seed, backend_class.name)
        if found is not None:
            phy2log, upper = _better(weight, topology, policy, *found, phy2log, upper)
    bound = None if bound_units is None else min(scaling.tokens(bound_units), upper)
    return phy2log, upper, bound, result.deterministic_time, params


def verified_bound(weight, topology: Topology, policy: Policy, domains, scaling: Scaling,
                   low_units: int, claimed: int, deadline: Deadline, workers: int, seed: int,
                   name: str):
    """(a proven bound in model units or None, (model, values) of a solution found or None,
    a one-line account): a floating-point backend's claim "no model solution below
    `claimed` units", checked by CP-SAT (exact integer arithmetic) on the same model with
    T <= claimed - 1. Infeasible: `claimed` is proven. Otherwise the bound is
    min(claimed, CP-SAT's proven bound there): a solution below `claimed` lies in that
    model, so this holds whether or not the claim was true. No answer in the time left:
    None (the claim is kept as a hint only)."""
    left = deadline.left()
    if not afford_model(deadline, PlacementModel.size(domains, topology.num_gpus)):
        return None, None, (f"{name}'s bound of {claimed} units is a hint only: no work "
                            f"left to check it")
    checker = CpSatBackend()
    model = PlacementModel(checker, weight, topology, policy, domains, scaling, low_units,
                           claimed - 1)
    result = checker.solve(deadline, workers, seed)
    found = (model, result.values) if result.values else None
    if result.status == INFEASIBLE:
        return claimed, None, f"cpsat proved {name}'s bound of {claimed} units"
    if found is not None:
        account = (f"{name}'s bound of {claimed} units was false: cpsat found a solution "
                   f"at {result.objective}")
        return min(claimed, result.bound), found, account
    return None, None, (f"{name}'s bound of {claimed} units is a hint only: cpsat did not "
                        f"check it in {max(0.0, left):.3g} s")


def _better(weight, topology: Topology, policy: Policy, model: PlacementModel, values: dict,
            phy2log: np.ndarray, upper: Fraction):
    """(phy2log, ub): the model solution `values` (if any) when the checker scores it
    below `upper`, else the placement given."""
    if values:
        candidate = model.placement(values)
        candidate_load = layer_max_load(weight, candidate, topology, policy)
        if candidate_load < upper:
            return candidate, candidate_load
    return phy2log, upper


def count_domains(weight, topology: Topology, policy: Policy, upper: Fraction,
                  phy2log: np.ndarray) -> tuple[list[list[int]], bool]:
    """(allowed counts per expert, whether they are complete, i.e. lose no better solution)."""
    low = [max(1, math.ceil(Fraction(int(w)) / upper)) if upper > 0 else 1 for w in weight]
    spare = topology.num_replicas - sum(low)
    high = [lo + spare for lo in low]
    if policy.hierarchical:
        per_node = topology.slots_per_node - (len(weight) // topology.num_nodes - 1)
        high = [min(hi, per_node) for hi in high]
    if policy.distinct:  # one replica per GPU it may use (z <= 1 implies it; fewer variables)
        gpus = topology.gpus_per_node if policy.hierarchical else topology.num_gpus
        high = [min(hi, gpus) for hi in high]
    domains = [list(range(lo, hi + 1)) for lo, hi in zip(low, high)]
    if sum(map(len, domains)) * topology.num_gpus <= MAX_ASSIGNMENT_VARS:
        return domains, True
    counts = np.bincount(phy2log, minlength=len(weight))
    narrowed = [[k for k in (c - 1, c, c + 1) if lo <= k <= hi]
                for c, lo, hi in zip(counts.tolist(), low, high)]
    return narrowed, False


def lower_units(weight, topology: Topology, scaling: Scaling, lower: Fraction) -> int:
    """A valid lower bound on T in model units (floored loads when scaling is coarse)."""
    if scaling.exact:
        return math.ceil(lower * scaling.scale)
    total = (sum(int(w) for w in weight) * scaling.scale
             - topology.num_replicas * (scaling.divisor - 1))
    return max(0, math.ceil(Fraction(total, scaling.divisor * topology.num_gpus)))


def incumbent_units(weight, phy2log: np.ndarray, topology: Topology, scaling: Scaling) -> int:
    """The incumbent's max GPU load in model units (so that its hint is feasible)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    units = np.array([scaling.units(int(w), int(c)) for w, c in zip(weight, counts)])
    return int(units[phy2log].reshape(topology.num_gpus, -1).sum(-1).max())
