"""Summaries of a results table (one row per heuristic, instance and layer)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def instance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (heuristic, instance): valid, instance balancedness (SPEC 1 sum
    convention), per-layer mean balancedness, runtime and its ratio to the baseline."""
    grouped = table.groupby(["heuristic", "instance"], sort=False)
    summary = grouped.agg(valid=("valid", "all"), reason=("reason", "first"),
                          runtime_s=("runtime_s", "first"),
                          runtime_ratio=("runtime_ratio", "first"))
    if "max_load" in table:
        sums = grouped[["mean_load", "max_load"]].sum()
        summary["balancedness"] = np.where(sums.max_load > 0, sums.mean_load / sums.max_load, 1.0)
        summary["balancedness_layer_mean"] = grouped.balancedness.mean()
        summary["respects_hierarchy"] = grouped.respects_hierarchy.all()
    summary.loc[~summary.valid, ["balancedness", "balancedness_layer_mean"]] = np.nan
    return summary.reset_index()


def heuristic_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per heuristic, in the table's order.

    Columns: instances, valid, balancedness mean and min over valid instances,
    hierarchy (share of valid instances that respect it), runtime_ms (median over
    instances), speedup (geometric mean of baseline time / time; >1 is faster),
    failures ("reason x count" for invalid instances); with reference values also
    gap_mean, gap_max (of gap_hi, the conservative end of each instance's gap interval,
    exact where the reference is certified) and certified (share of instances whose
    reference is certified on every layer).
    """
    from eplbench.gaps import instance_gaps

    per_instance = instance_summary(table)
    gaps = instance_gaps(table) if "ref_status" in table else None
    rows = []
    for name, group in per_instance.groupby("heuristic", sort=False):
        valid = group[group.valid]
        ratios = group.runtime_ratio[np.isfinite(group.runtime_ratio) & (group.runtime_ratio > 0)]
        failures = group[~group.valid].reason.value_counts()
        rows.append({
            "heuristic": name, "instances": len(group), "valid": len(valid),
            "balancedness_mean": valid.balancedness.mean() if len(valid) else np.nan,
            "balancedness_min": valid.balancedness.min() if len(valid) else np.nan,
            "hierarchy": valid.respects_hierarchy.mean() if len(valid) else np.nan,
            "runtime_ms": 1e3 * group.runtime_s.median(),
            "speedup": float(np.exp(-np.log(ratios).mean())) if len(ratios) else np.nan,
            "failures": ", ".join(f"{reason} x{count}" for reason, count in failures.items()),
            **_gap_summary(gaps, name),
        })
    return pd.DataFrame(rows)


def _gap_summary(gaps, name) -> dict:
    if gaps is None:
        return {}
    mine = gaps[gaps.heuristic == name]
    return {"gap_mean": mine.gap_hi.mean(), "gap_max": mine.gap_hi.max(),
            "gap_lo_mean": mine.gap_lo.mean(), "with_reference": len(mine),
            "certified": mine.certified.mean() if len(mine) else np.nan}
