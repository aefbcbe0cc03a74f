"""The CI gate (spec §8): is a candidate heuristic valid everywhere, no worse than the baseline
in gap beyond a tolerance, and no slower beyond a factor?

Works on a results table that holds the candidate's and the baseline's rows, timed
interleaved in one run, with reference gaps attached (`gaps.attach_reference`). Per set:

- valid: every layer of every instance is a valid placement;
- gap: on the instances where both are valid, the mean instance gap (spec §7, `gap_hi`: exact
  where the reference is certified, against the lower bound elsewhere, for both alike)
  exceeds the baseline's by at most `max_gap_increase`, and no single instance's by more
  than `max_instance_gap_increase`;
- speed: the speedup, the geometric mean over instances where the candidate is valid and
  rounds of baseline time / candidate time (the two calls of a round run back to back;
  above 1 is faster), is at least 1 / `max_slowdown`, or the slowdown is not significant: as
  in asv's continuous comparison, a speedup below the floor fails only when a bootstrap
  95% interval of it lies wholly below 1.

On a trace replayed with the rebalance cost (`replay.replay_rows`, each heuristic given its
own plan before), `migration` checks the weights each plan makes GPUs receive from the plan
before, and `served_load` the max load each plan serves the next window with (a candidate
that keeps its plan moves nothing, and is caught there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eplbench.gaps import instance_gaps
from eplbench.reports.tables import colocated_share

# bootstrap resamples for the ratio's interval, and their seed (reproducible verdicts)
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Limits:
    """Tolerances; gaps are fractions (0.0005 is 0.05 percentage points of gap)."""

    max_gap_increase: float = 0.0005
    max_instance_gap_increase: float = 0.01
    max_slowdown: float = 1.25


def verdicts(table: pd.DataFrame, candidate: str, baseline: str,
             limits: Limits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(checks, failures): one row per set and check (set, check, candidate, baseline,
    limit, passed, note), and one per instance that failed a check (set, instance, check,
    detail)."""
    checks, failures = [], []
    for name, rows in table.groupby("instance_set", sort=False):
        for check in (_validity, _gaps, _speed, _colocated):
            row, failed = check(rows, candidate, baseline, limits)
            checks.append({"set": name, **row})
            failures += [{"set": name, **failure} for failure in failed]
    return (pd.DataFrame(checks),
            pd.DataFrame(failures, columns=["set", "instance", "check", "detail"]))


def _validity(rows, candidate, baseline, limits):
    """Every layer valid for the declared policy; a policy breach's detail gives its gap."""
    mine = rows[rows.heuristic == candidate]
    invalid = mine[~mine.valid].drop_duplicates("instance")
    gap_of = instance_gaps(mine).set_index("instance").gap_hi
    failed = [{"instance": row.instance, "check": "valid",
               "detail": f"{row.reason}: {row.detail}" + _bought(gap_of.get(row.instance))}
              for row in invalid.itertuples()]
    total = mine.instance.nunique()
    return ({"check": "valid", "candidate": f"{total - len(invalid)}/{total} instances",
             "baseline": "", "limit": "all", "passed": not failed, "note": ""}, failed)


def _bought(gap) -> str:
    """What a placement that breaks the policy bought: its gap to the policy's optimum."""
    return "" if gap is None or not np.isfinite(gap) else f" (its gap {gap:+.4%})"


def _colocated(rows, candidate, baseline, limits):
    """Not gated: the share of slots holding a second replica of an expert on its GPU."""
    shares = {}
    for name in (candidate, baseline):
        share = colocated_share(rows[rows.heuristic == name])
        shares[name] = f"{share:.1%}" if np.isfinite(share) else "-"
    return ({"check": "co-located", "candidate": shares[candidate],
             "baseline": shares[baseline], "limit": "not gated", "passed": True,
             "note": "share of slots holding a second replica of an expert on its GPU"}, [])


def _gaps(rows, candidate, baseline, limits):
    """Mean and per-instance gap increase over the instances where both are valid."""
    scored = instance_gaps(rows)
    gaps = scored[scored.valid].pivot(index="instance", columns="heuristic", values="gap_hi")
    if candidate not in gaps or baseline not in gaps:
        return ({"check": "gap", "candidate": "-", "baseline": "-", "limit": "-",
                 "passed": False, "note": "no instance where both are valid and have "
                                          "reference values"}, [])
    gaps = gaps[np.isfinite(gaps[candidate]) & np.isfinite(gaps[baseline])]  # invalid: see valid
    increase = gaps[candidate] - gaps[baseline]
    over = increase[increase > limits.max_instance_gap_increase]
    failed = [{"instance": instance, "check": "gap",
               "detail": f"gap {gaps[candidate][instance]:.4%} vs {gaps[baseline][instance]:.4%}"
                         f" (+{value:.4%} > +{limits.max_instance_gap_increase:.4%})"}
              for instance, value in over.items()]
    mean_increase = gaps[candidate].mean() - gaps[baseline].mean()
    reasons = ([f"mean {mean_increase:+.4%} > +{limits.max_gap_increase:.4%}"]
               if mean_increase > limits.max_gap_increase else [])
    reasons += [f"{len(failed)} instance(s) above +{limits.max_instance_gap_increase:.4%}"
                ] if failed else []
    note = "; ".join(reasons) or f"mean {mean_increase:+.4%}"
    return ({"check": "gap", "candidate": f"{gaps[candidate].mean():.4%}",
             "baseline": f"{gaps[baseline].mean():.4%}",
             "limit": f"+{limits.max_gap_increase:.4%} mean, "
                      f"+{limits.max_instance_gap_increase:.4%} any instance",
             "passed": not reasons, "note": f"over {len(gaps)} instances: {note}"}, failed)


def _speed(rows, candidate, baseline, limits):
    """Speedup (baseline time / candidate time: above 1 is faster) over the instances where
    the candidate is valid; fails when below 1 / max_slowdown and significantly below 1."""
    valid = rows.groupby(["heuristic", "instance"]).valid.all()
    timed = [instance for instance in rows.instance.unique()
             if valid.get((candidate, instance), False)]
    log_ratios = round_log_ratios(rows[rows.instance.isin(timed)], baseline, candidate)
    floor = 1 / limits.max_slowdown
    if not len(log_ratios):
        return ({"check": "speed", "candidate": "-", "baseline": "1x", "limit": f">= {floor:.3g}x",
                 "passed": False, "note": "no valid instance to time"}, [])
    speedup = float(np.exp(log_ratios.mean()))
    low, high = np.exp(bootstrap_interval(log_ratios))
    significant = low > 1 or high < 1
    passed = speedup >= floor or not significant
    note = (f"over {len(timed)} instances, 95% interval {low:.3g}x..{high:.3g}x"
            + ("" if significant else ", not significant"))
    if not passed:
        note = f"{1 / speedup:.3g}x slower than allowed ({limits.max_slowdown:g}x); {note}"
    return ({"check": "speed", "candidate": f"{speedup:.3g}x", "baseline": "1x",
             "limit": f">= {floor:.3g}x", "passed": passed, "note": note}, [])


def migration(rows: pd.DataFrame, candidate: str, baseline: str, limit: float):
    """Mean weights received per layer and rebalance (the `moved` column of replay rows),
    over the (served window, layer) pairs where both have a plan before and after; fails
    when the candidate's mean exceeds the baseline's by more than `limit` (a share of the
    baseline's). A failure lists the served windows where the candidate's is above."""
    moved = rows.pivot(index=["instance", "layer"], columns="heuristic", values="moved")
    inter = rows.pivot(index=["instance", "layer"], columns="heuristic",
                       values="moved_inter_node")
    both = moved[[candidate, baseline]].notna().all(axis=1)
    if not both.any():
        return ({"check": "migration", "candidate": "-", "baseline": "-",
                 "limit": f"+{limit:.0%}", "passed": False,
                 "note": "no rebalance where both have a plan before and after"}, [])
    mean, inter_mean = moved[both].mean(), inter[both].mean()
    passed = mean[candidate] <= mean[baseline] * (1 + limit)
    per_window = moved[both].groupby(level="instance").mean()
    above = per_window[per_window[candidate] > per_window[baseline] * (1 + limit)]
    failed = [] if passed else [
        {"instance": window, "check": "migration",
         "detail": f"{row[candidate]:.1f} weights received per layer vs {row[baseline]:.1f}"}
        for window, row in above.iterrows()]
    return ({"check": "migration", "candidate": f"{mean[candidate]:.1f} / layer",
             "baseline": f"{mean[baseline]:.1f} / layer", "limit": f"+{limit:.0%}",
             "passed": bool(passed),
             "note": f"weights received per layer and rebalance, over {int(both.sum())} "
                     f"layer-rebalances; "
                     f"inter-node {inter_mean[candidate]:.1f} vs "
                     f"{inter_mean[baseline]:.1f}"}, failed)


def served_load(rows: pd.DataFrame, candidate: str, baseline: str, limit: float):
    """Mean over served windows and layers of candidate max load / baseline max load - 1
    (replay rows); fails above `limit` (the gap tolerance: against the window's optimum,
    which is at most the baseline's load, the gap increase is at least this) or where the
    candidate's plan is invalid. A failure lists the windows above the limit."""
    mine = rows[rows.heuristic == candidate]
    invalid = mine[~mine.valid].drop_duplicates("instance")
    loads = rows.pivot(index=["instance", "layer"], columns="heuristic", values="max_load")
    increase = (loads[candidate] / loads[baseline] - 1).dropna()
    per_window = increase.groupby(level="instance").mean()
    mean = float(increase.mean())  # NaN when no window has both plans valid
    passed = invalid.empty and bool(mean <= limit)
    failed = [{"instance": row.instance, "check": "served load",
               "detail": f"{row.reason}: {row.detail}"} for row in invalid.itertuples()]
    if not passed:
        failed += [{"instance": window, "check": "served load",
                    "detail": f"max load {value:+.4%} against the baseline's, mean over layers"}
                   for window, value in per_window[per_window > limit].items()]
    return ({"check": "served load", "candidate": f"{mean:+.4%}", "baseline": "0",
             "limit": f"+{limit:.4%}", "passed": passed,
             "note": f"max load serving the next window against the baseline's, mean over "
                     f"{len(increase)} window-layers" + (f"; invalid on {len(invalid)} "
                                                         f"window(s)" if len(invalid) else "")},
            failed)


def round_log_ratios(rows: pd.DataFrame, candidate: str, baseline: str) -> np.ndarray:
    """log(candidate seconds / baseline seconds), one per instance and timed round (called
    with the two swapped, the log of the candidate's speedup)."""
    samples = rows.drop_duplicates(["instance", "heuristic"]).set_index(
        ["instance", "heuristic"]).runtime_samples
    ratios = []
    for instance in rows.instance.unique():
        mine, theirs = (samples.get((instance, name)) for name in (candidate, baseline))
        if mine is None or theirs is None:
            continue
        rounds = min(len(mine), len(theirs))
        ratios += list(np.log(np.asarray(mine[:rounds]) / np.asarray(theirs[:rounds])))
    return np.asarray(ratios, dtype=float)


def bootstrap_interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `values`."""
    rng = np.random.default_rng(SEED)
    means = rng.choice(values, size=(RESAMPLES, len(values))).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
