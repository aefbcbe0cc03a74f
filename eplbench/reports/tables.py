"""Summaries of a results table (one row per heuristic, instance and layer)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def instance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (heuristic, instance): valid, reason and detail of the first invalid
    layer, instance balancedness (spec §1 sum convention), per-layer mean balancedness, the
    share of slots holding a co-located replica, runtime and its ratio to the baseline.
    Balancedness is NaN where the placement is invalid (for a policy breach too)."""
    grouped = table.groupby(["heuristic", "instance"], sort=False)
    summary = grouped.agg(valid=("valid", "all"), reason=("reason", "first"),
                          detail=("detail", "first"), runtime_s=("runtime_s", "first"),
                          runtime_ratio=("runtime_ratio", "first"))
    if "max_load" in table:
        sums = grouped[["mean_load", "max_load"]].sum()
        summary["balancedness"] = np.where(sums.max_load > 0, sums.mean_load / sums.max_load, 1.0)
        summary["balancedness_layer_mean"] = grouped.balancedness.mean()
        summary["respects_hierarchy"] = grouped.respects_hierarchy.all()
        slots = grouped.num_replicas.sum()
        summary["colocated_share"] = grouped.colocated_replicas.sum(min_count=1) / slots
    summary.loc[~summary.valid, ["balancedness", "balancedness_layer_mean"]] = np.nan
    return summary.reset_index()


def heuristic_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per heuristic: those valid on every instance first, then the others, each
    part in the table's order (a heuristic with an invalid placement is never ranked above
    a valid one).

    Columns: instances, valid, balancedness mean and min over valid instances,
    hierarchy (share of valid instances that respect it), colocated (share of slots, over
    every scored placement, holding a second replica of an expert on its GPU),
    runtime_ms (median over instances), speedup (geometric mean of baseline time / time;
    >1 is faster), failures ("reason x count" for invalid instances), breach (the first
    policy breach, in words, or ""); with reference values also gap_mean, gap_max (over
    valid instances, of gap_hi, the conservative end of each instance's gap interval, exact
    where the reference is certified), breach_gap_mean (mean gap_hi of the placements that
    break the declared policy: what breaking it bought, often negative) and certified
    (share of instances whose reference is certified on every layer).
    """
    from eplbench.gaps import instance_gaps

    per_instance = instance_summary(table)
    gaps = instance_gaps(table) if "ref_status" in table else None
    rows = []
    for name, group in per_instance.groupby("heuristic", sort=False):
        valid = group[group.valid]
        ratios = group.runtime_ratio[np.isfinite(group.runtime_ratio) & (group.runtime_ratio > 0)]
        failures = group[~group.valid].reason.value_counts()
        breaches = group[group.reason == "policy"].detail
        rows.append({
            "heuristic": name, "instances": len(group), "valid": len(valid),
            "balancedness_mean": valid.balancedness.mean() if len(valid) else np.nan,
            "balancedness_min": valid.balancedness.min() if len(valid) else np.nan,
            "hierarchy": valid.respects_hierarchy.mean() if len(valid) else np.nan,
            "colocated": colocated_share(table[table.heuristic == name]),
            "runtime_ms": 1e3 * group.runtime_s.median(),
            "speedup": float(np.exp(-np.log(ratios).mean())) if len(ratios) else np.nan,
            "failures": ", ".join(f"{reason} x{count}" for reason, count in failures.items()),
            "breach": breaches.iloc[0] if len(breaches) else "",
            **_gap_summary(gaps, name),
        })
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    everywhere = summary.valid == summary.instances
    return pd.concat([summary[everywhere], summary[~everywhere]], ignore_index=True)


def colocated_share(rows: pd.DataFrame) -> float:
    """Share of the slots of every scored placement (layers x P) holding a second replica
    of an expert on its GPU; NaN when nothing was scored."""
    if "colocated_replicas" not in rows:
        return np.nan
    scored = rows[rows.colocated_replicas.notna()]
    return scored.colocated_replicas.sum() / scored.num_replicas.sum() if len(scored) else np.nan


def _gap_summary(gaps, name) -> dict:
    if gaps is None:
        return {}
    mine = gaps[gaps.heuristic == name]
    valid, broken = mine[mine.valid], mine[~mine.valid]
    return {"gap_mean": valid.gap_hi.mean(), "gap_max": valid.gap_hi.max(),
            "gap_lo_mean": valid.gap_lo.mean(), "with_reference": len(mine),
            "breach_gap_mean": broken.gap_hi.mean(),
            "certified": mine.certified.mean() if len(mine) else np.nan}


PRICE_COLUMNS = ["policy", "layers", "certified", "price_lo", "price_hi", "raised"]


def uniqueness_price(entries) -> pd.DataFrame:
    """The price of uniqueness per policy of a set's reference entries: for `global` and
    `hierarchical`, over the layers with an entry under the policy and its `+distinct`
    twin, the distinct optimum's sum over the optimum's, as the interval
    [sum distinct lb / sum ub, sum distinct ub / sum lb] (one value where every layer is
    certified both ways: `certified` counts those); `raised`: layers where the distinct lb
    is above the plain ub (uniqueness proven to cost). Columns PRICE_COLUMNS; no row for a
    policy without distinct entries."""
    by_key = {entry.key: entry for entry in entries}
    rows = []
    for policy in ("global", "hierarchical"):
        pairs = [(entry, by_key[(hash_, layer, policy)])
                 for (hash_, layer, name), entry in by_key.items()
                 if name == f"{policy}+distinct" and (hash_, layer, policy) in by_key]
        if not pairs:
            continue
        low = _sum_ratio([d.lb for d, _ in pairs], [p.ub for _, p in pairs])
        high = _sum_ratio([d.ub for d, _ in pairs], [p.lb for _, p in pairs])
        rows.append({"policy": policy, "layers": len(pairs),
                     "certified": sum(d.ub == d.lb and p.ub == p.lb for d, p in pairs),
                     "price_lo": low, "price_hi": high,
                     "raised": sum(d.lb > p.ub for d, p in pairs)})
    return pd.DataFrame(rows, columns=PRICE_COLUMNS)


def _sum_ratio(values, over) -> float:
    """sum(values) / sum(over): 1.0 where both are 0 (all-zero layers), inf where only the
    second is."""
    top, bottom = sum(values), sum(over)
    if bottom == 0:
        return 1.0 if top == 0 else float("inf")
    return float(top / bottom)
