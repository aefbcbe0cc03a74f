"""The `frontier` command's work (spec §11): per layer of an instance, the plan in place (a
heuristic's plan for the same loads, run in the sandbox like any candidate); per budget K,
the least max load of a plan receiving at most K weights from it
(`solvers.frontier.solve_budget`); per share s, the least weights a plan within (1 + s) x
the layer's optimum receives (`solvers.frontier.least_moves`). And the replay's yardstick
(`replay_frontier`): the same points on each served window, in hindsight, from the plan
in place when the window before it was planned."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pandas as pd

from eplbench.checker import check
from eplbench.errors import BadInput
from eplbench.instances import Instance
from eplbench.migration import migration
from eplbench.problem import Policy
from eplbench.relabel import relabel
from eplbench.runner import RunOptions, measure, placement_of
from eplbench.solvers import solve
from eplbench.solvers.frontier import least_moves, solve_budget
from eplbench.solvers.incumbent import layer_max_load
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
                  solve_time: float, optima_lb: dict | None = None, call_time: float = 10.0,
                  shares=()) -> tuple[list[dict], list[dict]]:
    """(points, least): per layer, one point per budget (ascending) with ub and lb (exact
    "num/den" tokens), status, the weights the plan at ub receives and the work used
    (seconds of budget); and per share s, the least weights received by a plan within
    (1 + s) x the layer's optimum (`least_row`).

    optima_lb: layer -> a lower bound on its unconstrained optimum (a reference's lb).
    The layer is first solved without a budget (`solve_time`): its lb bounds every point,
    its ub is the optimum the shares scale, and its plan, relabelled onto the plan in
    place, is a start wherever it fits. The frontier never rises with K: each budget also
    starts from the plan found at the one below, and each lb is at least the lb found at
    the budgets above."""
    old = plan_in_place(spec, instance, call_time)
    points, least = [], []
    for layer, weight in enumerate(instance.weight):
        where = f"{spec} on {instance.id} layer {layer}"
        optimum = solve(weight[None, :], instance.topology, policy, time_limit=solve_time)[0]
        optimum = replace(optimum, lb=max(optimum.lb, (optima_lb or {}).get(layer, 0)))
        nearest = relabel(old[layer], optimum.phy2log, instance.topology)[0]
        found = _budget_points(weight, instance.topology, policy, old[layer], budgets,
                               solve_time, [nearest], optimum.lb, where)
        key = {"instance": instance.id, "layer": layer, "policy": policy.value, "old": spec}
        points += [{**key, **point} for point in _point_rows(budgets, found)]
        least += [{**key, **least_row(weight, instance.topology, policy, old[layer], share,
                                      optimum, budgets, found, nearest, solve_time)}
                  for share in shares]
    return points, least


def budget_rows(instance: Instance, old: np.ndarray, policy: Policy | str, max_moves: int,
                time_limit: float, workers: int = 1) -> list[dict]:
    """One point per layer at budget `max_moves` from the plan in place `old` ([L, P]
    expert ids; InvalidPlacement when it is not a placement of `instance`)."""
    policy = Policy.parse(policy)
    old = check(instance.weight, old, instance.topology).phy2log
    rows = []
    for layer, weight in enumerate(instance.weight):
        try:
            result = solve_budget(weight, instance.topology, policy, old[layer], max_moves,
                                  time_limit, workers)
        except BadInput as error:
            raise BadInput(f"layer {layer}: {error}") from None
        rows += [{"instance": instance.id, "layer": layer, "policy": policy.value, **point}
                 for point in _point_rows([max_moves], [result])]
    return rows


def _budget_points(weight, topology, policy, old, budgets, solve_time, starts, lower,
                   where) -> list:
    """[SolveResult] per budget, each started from `starts` and the plan found at the budget
    below."""
    found, tried = [], list(starts)
    for budget in budgets:
        try:
            result = solve_budget(weight, topology, policy, old, budget, solve_time,
                                  starts=tried, lower=lower)
        except BadInput as error:
            raise BadInput(f"{where}: {error}") from None
        found.append(result)
        tried = [result.phy2log, *starts]
    return found


def replay_frontier(windows: list[Instance], spec: str, policy: Policy, budgets: list[int],
                    solve_time: float, hindsight: dict | None = None,
                    call_time: float = 10.0, on_window=None) -> tuple[list[dict], list[dict]]:
    """The replay's yardstick (spec §11): (points, least). Per served window t + 1 (t >= 1),
    layer and budget K, the least max load on window t + 1 of a plan receiving at most K
    weights from `spec`'s plan for window t - 1 (the plan in place when window t is
    planned); and per served window and layer, the least weights received from that plan by
    a plan as good on window t + 1 as `spec`'s own plan for window t (the one it serves
    with), against the weights that plan receives as it is and relabelled. It is hindsight:
    no planner starting from that plan does better. Points as `frontier_rows`' points, with
    the served window, the window planned from and the layer's mean GPU load (float
    tokens). hindsight: (served window id, layer) -> (a lower bound on its unconstrained
    optimum, the [P] plan at its ub or None), the plan, relabelled onto the plan in place, a
    start wherever it fits; on_window(served window id) after each."""
    plans: dict[str, np.ndarray] = {}

    def plan_of(instance: Instance) -> np.ndarray:
        if instance.id not in plans:
            plans[instance.id] = plan_in_place(spec, instance, call_time)
        return plans[instance.id]

    points, least = [], []
    for index in range(1, len(windows) - 1):
        before, served = windows[index - 1], windows[index + 1]
        old, serving = plan_of(before), plan_of(windows[index])
        topology = served.topology
        for layer, weight in enumerate(served.weight):
            lower, best = (hindsight or {}).get((served.id, layer), (0, None))
            starts = [] if best is None else [relabel(old[layer], best, topology)[0]]
            found = _budget_points(weight, topology, policy, old[layer], budgets, solve_time,
                                   starts, lower, f"{spec} on {served.id} layer {layer}")
            key = {"instance": served.id, "planned_from": before.id, "layer": layer,
                   "policy": policy.value, "old": spec}
            points += [{**key, "mean_load": float(weight.sum()) / topology.num_gpus, **point}
                       for point in _point_rows(budgets, found)]
            least.append({**key, **_as_good_as(weight, topology, policy, old[layer],
                                               serving[layer], budgets, found, starts,
                                               solve_time)})
        if on_window:
            on_window(served.id)
    return points, least


def _as_good_as(weight, topology, policy, old, serving, budgets, found, starts, solve_time):
    """The least-weights columns for a plan within `serving`'s max load on `weight`: its
    weights received as it is (`baseline_moved`) and relabelled, and the least found."""
    nearest = relabel(old, serving, topology)[0]
    target = layer_max_load(weight, serving, topology, policy)
    result, moves_lb = _least(weight, topology, policy, old, target, budgets, found,
                              [nearest, *starts], solve_time)
    return {"target": str(target),
            "baseline_moved": int(migration(old, serving, topology).received[0]),
            "baseline_relabelled": int(migration(old, nearest, topology).received[0]),
            "moves": result.moves, "moves_lb": moves_lb,
            "status": OPTIMAL if moves_lb == result.moves else FEASIBLE}


def _least(weight, topology, policy, old, target, budgets, found, starts, solve_time):
    """(LeastMoves within `target` from `starts` and the budget points' plans, its moves_lb
    raised past every budget whose point's lb is above the target)."""
    result = least_moves(weight, topology, policy, old, target, solve_time,
                         starts=[*starts, *(point.phy2log for point in found)])
    above = [budget + 1 for budget, point in zip(budgets, found) if point.lb > target]
    return result, min(max([result.moves_lb, *above]), result.moves)


def frontier_summary(rows: list[dict]) -> list[dict]:
    """Per budget of `replay_frontier`'s rows: weights received per layer (mean), the
    balancedness of the plans found and its bound from the lbs (each the mean over served
    windows of sum of mean loads / sum of max loads, spec §7's instance convention), and
    the share of points certified."""
    frame = pd.DataFrame(rows)
    frame["ub_float"] = [float(Fraction(value)) for value in frame.ub]
    frame["lb_float"] = [float(Fraction(value)) for value in frame.lb]
    summary = []
    for budget, mine in frame.groupby("budget", sort=True):
        windows = mine.groupby("instance")[["mean_load", "ub_float", "lb_float"]].sum()
        summary.append({"budget": int(budget), "received": float(mine.received.mean()),
                        "balancedness": _balance(windows.mean_load, windows.ub_float),
                        "bound": _balance(windows.mean_load, windows.lb_float),
                        "certified": float((mine.status == OPTIMAL).mean())})
    return summary


def _point_rows(budgets, found) -> list[dict]:
    """The budget points' columns, each lb raised to the largest lb at a budget above."""
    lowers = np.maximum.accumulate([r.lb for r in reversed(found)])[::-1]
    return [{"budget": budget, "ub": str(result.ub), "lb": str(lower),
             "status": OPTIMAL if lower == result.ub else FEASIBLE,
             "received": result.params["received"],
             "gap": float((result.ub - lower) / result.ub) if result.ub else 0.0,
             "work": result.params["work"]}
            for budget, result, lower in zip(budgets, found, lowers)]


def least_row(weight, topology, policy, old, share: Fraction, optimum, budgets, found,
              nearest, solve_time) -> dict:
    """The least weights received from `old` by a plan within target = (1 + share) x
    optimum.ub (tokens): moves (a checked plan's), moves_lb, status, that plan's max_load.
    The budget points `found` help: their plans are starts, and a budget K whose lb is
    above the target proves that more than K weights are needed. OPTIMAL needs the optimum
    certified too: otherwise the target is (1 + share) x the best plan known, above the
    one asked for, and moves_lb is a lower bound for either."""
    target = optimum.ub * (1 + Fraction(share))
    result, moves_lb = _least(weight, topology, policy, old, target, budgets, found, [nearest],
                              solve_time)
    certified = optimum.lb == optimum.ub
    return {"share": float(share), "target": str(target), "optimum": str(optimum.ub),
            "optimum_certified": certified, "moves": result.moves, "moves_lb": moves_lb,
            "status": OPTIMAL if certified and moves_lb == result.moves else FEASIBLE,
            "max_load": str(result.max_load), "work": result.work}


def _balance(mean_loads: pd.Series, max_loads: pd.Series) -> float:
    """Mean over windows of mean load / max load (1 for an all-zero window)."""
    ratio = np.where(max_loads > 0, mean_loads / max_loads.where(max_loads > 0, 1), 1.0)
    return float(ratio.mean())
