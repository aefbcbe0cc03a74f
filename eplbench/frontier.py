"""The `frontier` command's work (spec §11): per layer of an instance, the plan in place (a
heuristic's plan for the same loads, run in the sandbox like any candidate) and, per budget
K, the least max load of a plan receiving at most K weights from it
(`solvers.frontier.solve_budget`)."""

from __future__ import annotations

import numpy as np

from eplbench.errors import BadInput
from eplbench.instances import Instance
from eplbench.problem import Policy
from eplbench.runner import RunOptions, measure, placement_of
from eplbench.relabel import relabel
from eplbench.solvers import solve
from eplbench.solvers.frontier import solve_budget
from eplbench.solvers.result import FEASIBLE, OPTIMAL


def plan_in_place(spec: str, instance: Instance, time_limit: float) -> np.ndarray:
    """[L, P] int64: heuristic `spec`'s plan for `instance`'s loads, from its own process;
    BadInput naming the heuristic when it fails."""
    measurement = measure(instance, {spec: spec}, RunOptions(repeats=1, baseline=spec,
                                                             time_limit=time_limit))[spec]
    if measurement.failure is not None:
        raise BadInput(f"{spec}: no plan in place for {instance.id} "
                       f"({measurement.failure.reason}: {measurement.failure.detail})")
    return np.asarray(placement_of(measurement.output), dtype=np.int64)


def frontier_rows(instance: Instance, spec: str, policy: Policy, budgets: list[int],
                  solve_time: float, optima_lb: dict | None = None,
                  call_time: float = 10.0) -> list[dict]:
    """One row per layer and budget (ascending): ub and lb (exact "num/den" tokens),
    status, the weights the plan at ub receives, and the work used (seconds of budget).

    optima_lb: layer -> a lower bound on its unconstrained optimum (a reference's lb).
    The layer is first solved without a budget (`solve_time`): its lb bounds every point,
    and its plan, relabelled onto the plan in place, is a start wherever it fits the budget.
    The frontier never rises with K: each budget also starts from the plan found at the one
    below, and each lb is at least the lb found at the budgets above."""
    old = plan_in_place(spec, instance, call_time)
    topology = instance.topology
    rows = []
    for layer, weight in enumerate(instance.weight):
        optimum = solve(weight[None, :], topology, policy, time_limit=solve_time)[0]
        nearest = relabel(old[layer], optimum.phy2log, topology)[0]
        lower = max(optimum.lb, (optima_lb or {}).get(layer, 0))
        found, starts = [], [nearest]
        for budget in budgets:
            try:
                result = solve_budget(weight, topology, policy, old[layer], budget,
                                      solve_time, starts=starts, lower=lower)
            except BadInput as error:
                raise BadInput(f"{spec} on {instance.id} layer {layer}: {error}") from None
            found.append(result)
            starts = [result.phy2log, nearest]
        lowers = np.maximum.accumulate([r.lb for r in reversed(found)])[::-1]
        for budget, result, lower in zip(budgets, found, lowers):
            rows.append({"instance": instance.id, "layer": layer, "policy": policy.value,
                         "old": spec, "budget": budget, "ub": str(result.ub),
                         "lb": str(lower), "status": OPTIMAL if lower == result.ub else FEASIBLE,
                         "received": result.params["received"],
                         "gap": float((result.ub - lower) / result.ub) if result.ub else 0.0,
                         "work": result.params["work"]})
    return rows
