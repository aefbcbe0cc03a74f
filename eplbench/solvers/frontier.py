"""Points of the balance-versus-migration frontier (spec §11), for a layer and the plan in
place `old`: at a budget K, the least max load of any plan of the policy that receives at
most K weights (`solve_budget`); at a target max load, the least weights any plan within it
receives (`least_moves`).

The joint model (`model.py`) over labelled GPUs and nodes (the plan in place tells them
apart, so no symmetry is broken), with r[e, g] = 1 when GPU g holds e and did not in `old`,
and sum r <= K. Its start is the best of the plan in place (it receives nothing),
`budgeted@K`'s plan and DeepSeek's plan relabelled onto the plan in place, each checked and
counted by `migration`. The bound is the model's over complete count domains, or the
layer's no-search bounds (a budget never lowers the optimum).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from eplbench.checker import check
from eplbench.errors import BadInput
from eplbench.migration import held_experts, migration
from eplbench.problem import Policy, Topology
from eplbench.relabel import relabel
from eplbench.solvers.backends import CpSatBackend
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
from eplbench.solvers.joint import count_domains, incumbent_units, lower_units
from eplbench.solvers.layer import hierarchy_bound
from eplbench.solvers.model import PlacementModel, Scaling
from eplbench.solvers.result import FEASIBLE, INFEASIBLE, OPTIMAL, UNKNOWN, SolveResult
from eplbench.solvers.work import Deadline, afford_model


class BudgetModel(PlacementModel):
    """The joint model with GPUs and nodes labelled and at most `max_moves` weights received
    from the plan in place `old` ([P] expert ids)."""

    def __init__(self, backend, weight, topology: Topology, policy: Policy, domains, scaling,
                 lower_units_: int, upper_units: int, old: np.ndarray, max_moves: int):
        self.old_held = held_experts(old[None, :], topology, len(weight))[0]  # [G, E]
        super().__init__(backend, weight, topology, policy, domains, scaling, lower_units_,
                         upper_units)
        self.receipts(max_moves)

    def break_symmetry(self) -> None:
        """Nothing: the plan in place tells every GPU and node apart."""

    def canonical(self, phy2log: np.ndarray) -> np.ndarray:
        return phy2log

    def receipts(self, max_moves: int) -> None:
        """r[e, g] >= 1 when GPU g holds e and did not before; sum r <= max_moves."""
        slots = self.topology.slots_per_gpu
        self.received = {}
        for (e, k, g), var in self.z.items():
            if not self.old_held[g, e]:
                if (e, g) not in self.received:
                    self.received[e, g] = self.backend.bool_var(f"r{e}_{g}")
                self.backend.add(var <= min(k, slots) * self.received[e, g])
        self.backend.add(sum(self.received.values()) <= max_moves)


class MovesModel(BudgetModel):
    """The budget model with T's upper bound a target max load, minimising the weights
    received instead of T."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend.minimize(sum(self.received.values()))


@dataclass(frozen=True)
class LeastMoves:
    """The least weights received from the plan in place by a plan within a target max load.

    status: OPTIMAL (moves == moves_lb), FEASIBLE, INFEASIBLE (proven: no plan reaches the
    target) or UNKNOWN (none found); moves and phy2log are None unless a plan was found;
    moves: what phy2log ([P] expert ids) receives; moves_lb: proven
    lower bound on the least; max_load: phy2log's exact max load (tokens, <= the target);
    work: seconds of work budget used."""

    status: str
    moves: int | None
    moves_lb: int
    phy2log: np.ndarray | None
    max_load: Fraction | None
    work: float


def solve_budget(weight, topology: Topology, policy: Policy | str, old, max_moves: int,
                 time_limit: float, workers: int = 1, seed: int = 0, starts=(),
                 lower=0) -> SolveResult:
    """The least max load (tokens, exact) of a plan of `policy` receiving at most
    `max_moves` weights from `old` ([P] expert ids, valid for `policy`); weight: [E] tokens.

    starts: more [P] plans of `policy` to start from (those within the budget count);
    lower: a known lower bound (tokens), e.g. the layer's unconstrained optimum.
    params["received"] holds the weights the returned plan receives."""
    start = time.perf_counter()
    if max_moves < 0:
        raise BadInput(f"max_moves must be >= 0, got {max_moves}")
    policy, weight, old = _inputs(weight, topology, policy, old)
    deadline = Deadline.budget(time_limit)
    phy2log, upper = best_within(weight, topology, policy, old, max_moves, starts)
    lower = before_search = max(layer_bound(weight, topology, policy), lower)
    params = {"time_limit": time_limit, "workers": workers, "seed": seed,
              "max_moves": max_moves}
    if lower < upper and time_limit > 0:
        domains, complete = count_domains(weight, topology, policy, upper, phy2log)
        found = _search(weight, topology, policy, old, max_moves, domains, phy2log, upper,
                        lower, deadline, workers, seed)
        if found is not None:
            candidate, bound = found
            if _received(old, candidate, topology) <= max_moves:
                load = layer_max_load(weight, candidate, topology, policy)
                if load < upper:
                    phy2log, upper = candidate, load
            if complete and bound is not None:
                lower = max(lower, bound)
        params["complete_domains"] = complete
    lower = min(lower, upper)
    params["received"] = _received(old, phy2log, topology)
    params["work"] = round(deadline.meter.seconds, 6)
    return SolveResult(OPTIMAL if lower == upper else FEASIBLE, upper, lower, phy2log,
                       time.perf_counter() - start, None, "cpsat", params,
                       CpSatBackend.version, "model" if lower > before_search else "before search")


def least_moves(weight, topology: Topology, policy: Policy | str, old, target: Fraction,
                time_limit: float, workers: int = 1, seed: int = 0, starts=()) -> LeastMoves:
    """The least weights received from `old` ([P] expert ids, valid for `policy`) by a plan
    of `policy` whose max load is at most `target` (tokens); weight: [E] tokens.

    starts: more [P] plans of `policy` to start from (those within the target count)."""
    policy, weight, old = _inputs(weight, topology, policy, old)
    target = Fraction(target)
    lower = layer_bound(weight, topology, policy)
    if target < lower:
        raise BadInput(f"target {target} is below the layer's lower bound {lower}: "
                       f"no plan reaches it")
    deadline = Deadline.budget(time_limit)
    known = [(moves, plan) for load, moves, plan in
             _candidates(weight, topology, policy, old, topology.num_replicas, starts)
             if load <= target]
    moves, phy2log = min(known, key=lambda item: item[0], default=(None, None))
    moves_lb = 0
    if moves != 0 and time_limit > 0:
        found = _fewest(weight, topology, policy, old, target, lower, moves, phy2log,
                        deadline, workers, seed)
        if found is not None:
            (moves, phy2log), moves_lb = found
    status = (OPTIMAL if moves == moves_lb else FEASIBLE if moves is not None
              else INFEASIBLE if moves_lb > topology.num_replicas else UNKNOWN)
    load = None if phy2log is None else layer_max_load(weight, phy2log, topology, policy)
    return LeastMoves(status, moves, moves_lb, phy2log, load, round(deadline.meter.seconds, 6))


def _fewest(weight, topology, policy, old, target, lower, moves, phy2log, deadline, workers,
            seed):
    """((weights received, plan), proven least) after the moves model's search, or None
    when it cannot be afforded; moves, phy2log: the best known plan within the target (or
    None, None); the least is P + 1 when no plan reaches the target."""
    domains, complete = count_domains(weight, topology, policy, target,
                                      old if phy2log is None else phy2log)
    built = _built(MovesModel, weight, topology, policy, domains, target, lower, deadline,
                   lambda scaling: math.floor(target * scaling.scale / scaling.divisor), old,
                   topology.num_replicas if moves is None else moves)
    if built is None:
        return None
    backend, model = built
    if phy2log is not None:
        model.add_hint(phy2log)
    result = backend.solve(deadline, workers, seed)
    if result.values:
        candidate = model.placement(result.values)
        received = _received(old, candidate, topology)
        if (layer_max_load(weight, candidate, topology, policy) <= target
                and (moves is None or received < moves)):
            moves, phy2log = received, candidate
    least = 0
    if complete and result.status == INFEASIBLE:
        least = topology.num_replicas + 1
    elif complete and result.bound is not None:
        least = result.bound
    return (moves, phy2log), least if moves is None else min(least, moves)


def best_within(weight: np.ndarray, topology: Topology, policy: Policy, old: np.ndarray,
                max_moves: int, starts=()):
    """(phy2log [P], exact max load): the best of the plan in place, budgeted@K's plan,
    DeepSeek's relabelled and `starts` that receives at most `max_moves`."""
    load, _, plan = min(_candidates(weight, topology, policy, old, max_moves, starts),
                        key=lambda item: item[:2])
    return plan, load


def _candidates(weight, topology, policy, old, max_moves, starts):
    """(exact max load, weights received, plan) of the plan in place, budgeted@max_moves's
    plan, DeepSeek's relabelled and `starts`, those receiving at most `max_moves`."""
    from eplbench.heuristics.budgeted import improve_layer

    improved = old.copy()
    improve_layer(weight.astype(np.float64), improved, topology, max_moves)
    fresh = relabel(old, deepseek_placement(weight, topology, policy), topology)[0]
    found = []
    for plan in (old, improved, fresh, *starts):
        moves = _received(old, plan, topology)
        if moves <= max_moves:
            found.append((layer_max_load(weight, plan, topology, policy), moves, plan))
    return found


def layer_bound(weight: np.ndarray, topology: Topology, policy: Policy):
    """The no-search lower bound on the layer's optimum (tokens): a budget only raises it."""
    bound = count_free_bound(weight, topology.num_replicas, topology.num_gpus)[0]
    if policy.hierarchical:
        bound = max(bound, hierarchy_bound(weight, topology))
    return bound


def _search(weight, topology, policy, old, max_moves, domains, start, upper, lower,
            deadline, workers, seed):
    """(a placement of the model or `start`, its proven bound in tokens or None); upper:
    `start`'s exact max load."""
    built = _built(BudgetModel, weight, topology, policy, domains, upper, lower, deadline,
                   lambda scaling: incumbent_units(weight, start, topology, scaling), old,
                   max_moves)
    if built is None:
        return None
    backend, model = built
    model.add_hint(start)
    result = backend.solve(deadline, workers, seed)
    candidate = model.placement(result.values) if result.values else start
    bound = None if result.bound is None else model.scaling.tokens(result.bound)
    return candidate, bound


def _built(kind, weight, topology, policy, domains, upper, lower, deadline, upper_units, old,
           max_moves):
    """(backend, model of class `kind` over `domains`, scaled for loads up to `upper`
    tokens, T at least `lower` tokens and at most upper_units(scaling) units), or None when
    the deadline cannot afford building it."""
    scaling = Scaling.for_domains(weight, domains, upper, CpSatBackend.max_model_load)
    if not afford_model(deadline, PlacementModel.size(domains, topology.num_gpus)):
        return None
    backend = CpSatBackend()
    return backend, kind(backend, weight, topology, policy, domains, scaling,
                         lower_units(weight, topology, scaling, lower), upper_units(scaling),
                         old, max_moves)


def _inputs(weight, topology: Topology, policy, old):
    """(Policy, weight [E] int64, old [P] int64); BadInput when the plan in place breaks the
    hierarchical policy it is solved under, or for a distinct policy (the budget model's
    starting plans do not keep experts apart)."""
    policy = Policy.parse(policy)
    if policy.distinct:
        raise BadInput(f"the migration frontier is not built for the {policy.value} policy; "
                       "use global or hierarchical")
    weight = np.asarray(weight, dtype=np.int64)
    old = np.asarray(old, dtype=np.int64)
    if policy.hierarchical and not check(weight[None], old[None], topology).respects_hierarchy:
        raise BadInput("the plan in place breaks the hierarchical policy it is solved under")
    return policy, weight, old


def _received(old: np.ndarray, new: np.ndarray, topology: Topology) -> int:
    return int(migration(old, new, topology).received[0])
