"""Optimality gaps of heuristics against reference values (spec §7).

Each layer row is compared with the reference of its instance's declared policy (the row's
`policy` column), whatever policy the placement happens to respect: a placement that breaks
the declared policy is invalid, and its gap (possibly negative) shows what breaking it
bought. With a certified optimum the gap is (h - opt) / opt; otherwise the interval
[(h - ub) / ub, (h - lb) / lb].
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

GAP_COLUMNS = ["ref_policy", "ref_ub_num", "ref_ub_den", "ref_lb_num", "ref_lb_den",
               "ref_status", "gap_lo", "gap_hi", "global_lb_num", "global_lb_den"]


def attach_reference(table: pd.DataFrame, entries) -> pd.DataFrame:
    """Add the GAP_COLUMNS to a results table (rows without a reference get NaN)."""
    by_key = {entry.key: entry for entry in entries}
    columns = {name: [] for name in GAP_COLUMNS}
    has_load = "max_load_num" in table
    for row in table.itertuples():
        entry = by_key.get((row.instance_hash, row.layer, row.policy))
        values = dict.fromkeys(GAP_COLUMNS, np.nan)
        global_entry = by_key.get((row.instance_hash, row.layer, "global"))
        if global_entry is not None:
            values.update(global_lb_num=global_entry.lb.numerator,
                          global_lb_den=global_entry.lb.denominator)
        if entry is not None:
            values.update(ref_policy=entry.policy, ref_status=entry.status,
                          ref_ub_num=entry.ub.numerator, ref_ub_den=entry.ub.denominator,
                          ref_lb_num=entry.lb.numerator, ref_lb_den=entry.lb.denominator)
            if has_load and pd.notna(row.max_load_num):
                load = Fraction(int(row.max_load_num), int(row.max_load_den))
                values.update(gap_lo=_relative(load, entry.ub), gap_hi=_relative(load, entry.lb))
        for name in GAP_COLUMNS:
            columns[name].append(values[name])
    return table.assign(**columns)


def _relative(value: Fraction, reference: Fraction) -> float:
    if reference == 0:
        return 0.0 if value == 0 else float("inf")
    return float((value - reference) / reference)


INSTANCE_GAP_COLUMNS = ["heuristic", "instance", "valid", "certified", "gap_lo", "gap_hi"]


def instance_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (heuristic, instance) with a reference on every layer: gap_lo, gap_hi
    from the layer sums (spec §7), valid (every layer valid for the declared policy) and
    certified (every layer's reference is OPTIMAL). The gaps of a placement that breaks the
    declared policy are kept (with valid False); those of one with no loads are NaN."""
    rows = []
    for (heuristic, instance), group in table.groupby(["heuristic", "instance"], sort=False):
        if group.ref_status.isna().any():
            continue
        row = {"heuristic": heuristic, "instance": instance, "valid": bool(group.valid.all()),
               "certified": bool((group.ref_status == "OPTIMAL").all()),
               "gap_lo": np.nan, "gap_hi": np.nan}
        if "max_load_num" in group and group.max_load_num.notna().all():
            load = _sum(group.max_load_num, group.max_load_den)
            row["gap_lo"] = _relative(load, _sum(group.ref_ub_num, group.ref_ub_den))
            row["gap_hi"] = _relative(load, _sum(group.ref_lb_num, group.ref_lb_den))
        rows.append(row)
    return pd.DataFrame(rows, columns=INSTANCE_GAP_COLUMNS)


def _sum(numerators, denominators) -> Fraction:
    return sum((Fraction(int(n), int(d)) for n, d in zip(numerators, denominators)), Fraction(0))


STAGES = ["hierarchy", "replication", "packing"]


def attribution(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (heuristic, instance) with the packing stage computed (`run
    --attribution`): the loss in each of STAGES as a share of the global optimum, from the
    layer sums. With G the global optimum, O the optimum of the placement's policy, K the
    best packing of its own replica counts and H its max load: hierarchy = O - G,
    replication = K - O, packing = H - K, which add up to the gap to the global optimum.
    Bounds stand in where a value is not proven (lower bounds, each stage taken no lower
    than the one before), so an unproven packing stage reads as an upper end."""
    needed = ["pack_lb_num", "global_lb_num", "ref_lb_num"]
    if any(column not in table for column in needed):
        return pd.DataFrame(columns=["heuristic", "instance", "instance_set", *STAGES])
    rows = []
    for (heuristic, instance), group in table.groupby(["heuristic", "instance"], sort=False):
        if not group.valid.all() or group[needed].isna().any().any():
            continue
        optimum = _sum(group.global_lb_num, group.global_lb_den)
        policy = max(optimum, _sum(group.ref_lb_num, group.ref_lb_den))
        packing = max(policy, _sum(group.pack_lb_num, group.pack_lb_den))
        load = _sum(group.max_load_num, group.max_load_den)
        losses = [policy - optimum, packing - policy, load - packing]
        rows.append({"heuristic": heuristic, "instance": instance,
                     "instance_set": group.instance_set.iloc[0] if "instance_set" in group else "",
                     **{stage: float(loss / optimum) if optimum else 0.0
                        for stage, loss in zip(STAGES, losses)}})
    return pd.DataFrame(rows, columns=["heuristic", "instance", "instance_set", *STAGES])
