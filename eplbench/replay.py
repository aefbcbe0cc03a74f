"""Trace replay: plan on window t, serve window t + 1, against what hindsight allows.

A trace is a sequence of [L, E] load windows: an ADRS / vLLM `expert-load.json` cut into
windows of N records, or the routing simulator's drifting windows. As in the ADRS
evaluator, each heuristic places the experts from window t's loads and is scored (by the one
checker) on window t + 1's. Two yardsticks no planner can beat:

- the hindsight optimum: window t + 1 solved on its own, per layer; it is attached as the
  reference of the served window, so the results table's gaps are gaps to hindsight;
- the best fixed plan in hindsight: one placement per layer kept for every served window.
  Its summed max load lies between lb = max(sum of the windows' lower bounds, the summed
  windows' lower bound) (a fixed plan's summed max loads are at least the max of its summed
  loads) and ub = the summed windows' best placement served window by window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial

import numpy as np
import pandas as pd

from eplbench.checker import check
from eplbench.executors import run_units
from eplbench.instances import Instance
from eplbench.migration import migration
from eplbench.problem import Topology
from eplbench.reference import ReferenceEntry, policies_for, solve_entries
from eplbench.relabel import relabel
from eplbench.runner import (RunOptions, heuristic_specs, measure, placement_of, rows_of_units,
                             scored_rows, with_ratio)

# the ADRS evaluator's topology: 288 slots, 8 groups, 4 nodes, 32 GPUs
ADRS_TOPOLOGY = Topology(288, 8, 4, 32)
# a replay row's [P] plan for its layer, kept until the rebalance cost is added
PLAN = "_plan"
REBALANCE_COLUMNS = ["moved", "moved_inter_node", "moved_bytes", "moved_seconds",
                     "relabelled_moved", "relabelled_inter_node"]
# rebalance costs also summed over the trace (every rebalance and layer)
TRACE_SUMS = ["moved", "moved_inter_node", "moved_bytes", "moved_seconds"]


@dataclass(frozen=True)
class FixedPlan:
    """Bounds (tokens, summed over served windows and layers) on the best fixed plan."""

    policy: str
    lb: Fraction
    ub: Fraction


def window_instances(windows: list[np.ndarray], topology: Topology, name: str,
                     policy: str | None = None) -> list[Instance]:
    """One instance per window ([L, E] loads), named NAME/window-NNN, with `policy`
    declared (None: the topology's default)."""
    return [Instance(id=f"{name}/window-{index:03d}", weight=np.asarray(weight, dtype=np.int64),
                     topology=topology, family="replay", policy=policy)
            for index, weight in enumerate(windows)]


def simulated_windows(num_layers: int, num_experts: int, num_windows: int, seed: int = 0,
                      **routing) -> list[np.ndarray]:
    """The routing simulator's drifting windows (`instances/families/routing.py`)."""
    from eplbench.instances.families import routing as simulator

    params = {**simulator.DEFAULTS, **routing}
    params.pop("window")
    rng = np.random.Generator(np.random.PCG64(seed))
    return list(simulator.simulate_windows(rng, num_layers, num_experts, num_windows, **params))


def replay_rows(heuristics: list[str], windows: list[Instance],
                options: RunOptions = RunOptions(), on_unit=None,
                rebalance_cost: bool = True) -> pd.DataFrame:
    """Results-table rows of every heuristic (and the baseline) planned on each window and
    served on the next; instance = the served window, planned_on = the window planned on;
    with each rebalance's cost (`add_rebalance_cost`) unless `rebalance_cost` is False.

    The windows are planned in order, in this process: each heuristic that takes the plan
    in place (`heuristics.OLD_PLAN_KEYWORDS`) is given its own latest accepted plan (none
    for the first window; after a failure, the plan before stays in place).
    on_unit(index, rows) is called as each window pair finishes."""
    specs = heuristic_specs(heuristics, options.baseline)
    in_place: dict[str, np.ndarray] = {}

    def step(index: int) -> list[dict]:
        rows, placements = replay_step(index, windows, specs, options, dict(in_place))
        in_place.update(placements)
        return rows

    in_order = replace(options, jobs=1, scheduler=None)
    rows = rows_of_units(step, list(range(len(windows) - 1)), in_order, on_unit)
    if rebalance_cost:
        return add_rebalance_cost(rows, windows)
    return pd.DataFrame(rows).drop(columns=PLAN)


def replay_step(index: int, windows: list[Instance], specs: dict[str, str],
                options: RunOptions, old_plans: dict[str, np.ndarray] | None = None
                ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Plan on windows[index] (timed as in `runner`; old_plans: name -> its plan in place),
    serve windows[index + 1]. Returns the rows, each row of a placement carrying its
    layer's plan under PLAN (for `add_rebalance_cost`), and name -> [L, P] placement of
    the heuristics whose output the checker accepted."""
    plan, served = windows[index], windows[index + 1]
    measurements = measure(plan, specs, options, old_plans)
    rows, placements = [], {}
    for name, spec in specs.items():
        mine = scored_rows(name, served, measurements[spec])
        # rows with loads are the ones the checker accepted (a policy breach keeps them)
        if "max_load_num" in mine[0]:
            placements[name] = np.asarray(placement_of(measurements[spec].output), np.int64)
        for row in mine:
            rows.append({**row, "planned_on": plan.id, PLAN: placements[name][row["layer"]]
                         if name in placements else None})
    return with_ratio(rows, measurements[specs[options.baseline]], options), placements


def add_rebalance_cost(rows: list[dict], windows: list[Instance]) -> pd.DataFrame:
    """The rows as a table with what each rebalance copies: per heuristic and layer, its
    plan for a served window against its own plan for the window before (`migration`),
    as it came and relabelled (`relabel`) to keep the most weights in place. NaN on the
    first served window and where either plan is missing; the PLAN column is dropped.

    Columns: moved (weights received), moved_inter_node, moved_bytes, moved_seconds, and
    relabelled_moved, relabelled_inter_node."""
    table = pd.DataFrame(rows)
    order = {instance.id: index for index, instance in enumerate(windows)}
    columns = {name: np.full(len(table), np.nan) for name in REBALANCE_COLUMNS}
    topology = windows[0].topology
    for _, group in table.groupby(["heuristic", "layer"], sort=False):
        ranked = group.sort_values("planned_on", key=lambda ids: ids.map(order))
        plans, positions = ranked[PLAN].tolist(), ranked.index.tolist()
        for before, after, position in zip(plans, plans[1:], positions[1:]):
            if before is None or after is None:
                continue
            moved = migration(before, after, topology)
            kept = migration(before, relabel(before, after, topology), topology)
            for name, value in zip(REBALANCE_COLUMNS,
                                   [moved.received, moved.inter_node, moved.bytes,
                                    moved.seconds, kept.received, kept.inter_node]):
                columns[name][position] = value[0]
    return table.drop(columns=PLAN).assign(**columns)


def hindsight_entries(served: list[Instance], policies: list[str], solver: str,
                      time_limit: float, jobs: int = 1, on_unit=None) -> list[ReferenceEntry]:
    """Each served window solved on its own: the reference its gaps are measured against.
    on_unit((instance, policy), entries) is called as each is solved."""
    units = [(instance, policy) for instance in served
             for policy in policies_for(instance, policies)]
    solve_unit = partial(solve_entries, solver=solver, time_limit=time_limit, workers=1,
                         origin="hindsight")
    found = []
    for unit, entries in run_units(solve_unit, units, jobs):
        found += entries
        if on_unit:
            on_unit(unit, entries)
    return found


def fixed_plan(served: list[Instance], hindsight: list[ReferenceEntry], policy: str,
               solver: str, time_limit: float) -> FixedPlan:
    """Bounds on the best single placement per layer served on every window of `served`."""
    summed = Instance(id="summed", weight=np.sum([i.weight for i in served], axis=0),
                      topology=served[0].topology)
    entries = solve_entries((summed, policy), solver, time_limit, 1, "hindsight")
    lower = {entry.key: entry.lb for entry in hindsight}
    lb = ub = Fraction(0)
    for layer, entry in enumerate(entries):
        lb += max(sum((lower[i.content_hash, layer, policy] for i in served), Fraction(0)),
                  entry.lb)
        plan = np.asarray(entry.phy2log)[None, :]
        ub += sum(check(i.weight[layer:layer + 1], plan, i.topology).max_load[0] for i in served)
    return FixedPlan(policy, lb, ub)


def replay_summary(table: pd.DataFrame, plans: dict[str, FixedPlan]) -> pd.DataFrame:
    """One row per heuristic: replay balancedness (mean over served windows), gap to the
    hindsight optimum (mean / max over windows, `gap_hi`), the share of served windows whose
    hindsight is certified, the gap of its summed load to the best fixed plan (an interval:
    against the plan's ub and lb), its median planning time and, where the table has them,
    the means over rebalances and layers of the REBALANCE_COLUMNS; over the trace, the served
    max loads summed (`served_load_sum`, tokens) and the TRACE_SUMS summed (`NAME_sum`).
    `table`: replay rows with the hindsight reference attached; plans: policy -> FixedPlan."""
    from eplbench.gaps import instance_gaps
    from eplbench.reports.tables import instance_summary

    per_window = instance_summary(table)
    gaps = instance_gaps(table)
    rows = []
    for name, group in table.groupby("heuristic", sort=False):
        mine, windows = gaps[gaps.heuristic == name], per_window[per_window.heuristic == name]
        plan = plans.get(group.policy.iloc[0])
        valid = mine[mine.valid]
        scored = bool(group.max_load_num.notna().all())  # a failed call has no loads
        load = sum((Fraction(int(n), int(d)) for n, d in
                    zip(group.max_load_num, group.max_load_den)), Fraction(0)) if scored else None
        fixed = ((float((load - plan.ub) / plan.ub), float((load - plan.lb) / plan.lb))
                 if plan is not None and group.valid.all() else (np.nan, np.nan))
        breaches = windows[windows.reason == "policy"].detail
        rows.append({"heuristic": name, "valid": f"{windows.valid.sum()}/{len(windows)}",
                     "valid_everywhere": bool(windows.valid.all()),
                     "replay_balancedness": windows.balancedness.mean(),
                     "hindsight_gap_mean": valid.gap_hi.mean(),
                     "hindsight_gap_max": valid.gap_hi.max(),
                     "hindsight_certified": mine.certified.mean(),
                     "fixed_plan_gap_lo": fixed[0], "fixed_plan_gap_hi": fixed[1],
                     "colocated": windows.colocated_share.mean(),
                     **{name: group[name].mean() for name in REBALANCE_COLUMNS
                        if name in group},
                     "served_load_sum": float(load) if scored else np.nan,
                     **{f"{name}_sum": group[name].sum(min_count=1) for name in TRACE_SUMS
                        if name in group},
                     "planning_ms": 1e3 * windows.runtime_s.median(),
                     "breach": breaches.iloc[0] if len(breaches) else "",
                     "breach_gap_mean": mine[~mine.valid].gap_hi.mean()})
    summary = pd.DataFrame(rows)
    everywhere = summary.pop("valid_everywhere")
    return pd.concat([summary[everywhere], summary[~everywhere]], ignore_index=True)
