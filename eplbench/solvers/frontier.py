"""One point of the balance-versus-migration frontier (spec §11): for a layer, the plan in
place `old` and a budget K, the least max load of any plan of the policy that receives at
most K weights.

The joint model (`model.py`) over labelled GPUs and nodes (the plan in place tells them
apart, so no symmetry is broken), with r[e, g] = 1 when GPU g holds e and did not in `old`,
and sum r <= K. Its start is the best of the plan in place (it receives nothing),
`budgeted@K`'s plan and DeepSeek's plan relabelled onto the plan in place, each checked and
counted by `migration`. The bound is the model's over complete count domains, or the
layer's no-search bounds (a budget never lowers the optimum).
"""

from __future__ import annotations

import time

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
from eplbench.solvers.result import FEASIBLE, OPTIMAL, SolveResult
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
        received = {}
        for (e, k, g), var in self.z.items():
            if not self.old_held[g, e]:
                if (e, g) not in received:
                    received[e, g] = self.backend.bool_var(f"r{e}_{g}")
                self.backend.add(var <= min(k, slots) * received[e, g])
        self.backend.add(sum(received.values()) <= max_moves)


def solve_budget(weight, topology: Topology, policy: Policy | str, old, max_moves: int,
                 time_limit: float, workers: int = 1, seed: int = 0, starts=(),
                 lower=0) -> SolveResult:
    """The least max load (tokens, exact) of a plan of `policy` receiving at most
    `max_moves` weights from `old` ([P] expert ids, valid for `policy`); weight: [E] tokens.

    starts: more [P] plans of `policy` to start from (those within the budget count);
    lower: a known lower bound (tokens), e.g. the layer's unconstrained optimum.
    params["received"] holds the weights the returned plan receives."""
    start = time.perf_counter()
    policy = Policy.parse(policy)
    weight = np.asarray(weight, dtype=np.int64)
    old = np.asarray(old, dtype=np.int64)
    if max_moves < 0:
        raise BadInput(f"max_moves must be >= 0, got {max_moves}")
    if policy is Policy.HIERARCHICAL and not check(weight[None], old[None],
                                                  topology).respects_hierarchy:
        raise BadInput("the plan in place breaks the hierarchical policy it is solved under")
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


def best_within(weight: np.ndarray, topology: Topology, policy: Policy, old: np.ndarray,
                max_moves: int, starts=()):
    """(phy2log [P], exact max load): the best of the plan in place, budgeted@K's plan,
    DeepSeek's relabelled and `starts` that receives at most `max_moves`."""
    from eplbench.heuristics.budgeted import improve_layer

    improved = old.copy()
    improve_layer(weight.astype(np.float64), improved, topology, max_moves)
    fresh = relabel(old, deepseek_placement(weight, topology, policy), topology)[0]
    starts = [(layer_max_load(weight, plan, topology, policy), index, plan)
              for index, plan in enumerate((old, improved, fresh, *starts))
              if _received(old, plan, topology) <= max_moves]
    load, _, plan = min(starts, key=lambda item: item[:2])
    return plan, load


def layer_bound(weight: np.ndarray, topology: Topology, policy: Policy):
    """The no-search lower bound on the layer's optimum (tokens): a budget only raises it."""
    bound = count_free_bound(weight, topology.num_replicas, topology.num_gpus)[0]
    if policy is Policy.HIERARCHICAL:
        bound = max(bound, hierarchy_bound(weight, topology))
    return bound


def _search(weight, topology, policy, old, max_moves, domains, start, upper, lower,
            deadline, workers, seed):
    """(a placement of the model or `start`, its proven bound in tokens or None); upper:
    `start`'s exact max load."""
    scaling = Scaling.for_domains(weight, domains, upper, CpSatBackend.max_model_load)
    if not afford_model(deadline, PlacementModel.size(domains, topology.num_gpus)):
        return None
    backend = CpSatBackend()
    model = BudgetModel(backend, weight, topology, policy, domains, scaling,
                        lower_units(weight, topology, scaling, lower),
                        incumbent_units(weight, start, topology, scaling), old, max_moves)
    model.add_hint(start)
    result = backend.solve(deadline, workers, seed)
    candidate = model.placement(result.values) if result.values else start
    bound = None if result.bound is None else scaling.tokens(result.bound)
    return candidate, bound


def _received(old: np.ndarray, new: np.ndarray, topology: Topology) -> int:
    return int(migration(old, new, topology).received[0])
