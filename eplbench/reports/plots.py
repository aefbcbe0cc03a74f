"""The report's figures, each a function of the results table (with reference gaps attached)
that returns a matplotlib Figure, or None when the table holds nothing to draw.

Instance gaps are spec §7's (`gaps.instance_gaps`, the conservative end `gap_hi`), taken
only where the placement is valid for the declared policy (`_valid_gaps`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eplbench.gaps import STAGES, attribution, instance_gaps  # noqa: E402

PALETTE = plt.get_cmap("tab20")
LINE_STYLES = ["-", "--", ":", "-."]


def _colors(names) -> dict:
    return {name: PALETTE(index % 20) for index, name in enumerate(names)}


def _plain_ticks(axis) -> None:
    """Tick labels as plain numbers (1.05, 0.3), not powers of ten."""
    formatter = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _valid_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """`instance_gaps` with the gaps of invalid placements (a policy breach too) as NaN."""
    gaps = instance_gaps(table)
    gaps.loc[~gaps.valid.astype(bool), ["gap_lo", "gap_hi"]] = np.nan
    return gaps


def performance_profile(table: pd.DataFrame):
    """Dolan-More profile on gap: for each heuristic, the share of instances whose cost
    (1 + gap) is within a factor tau of the best heuristic's on that instance; an invalid
    placement never is."""
    gaps = _valid_gaps(table)
    if gaps.empty:
        return None
    cost = 1 + gaps.pivot(index="instance", columns="heuristic", values="gap_hi")
    ratio = (cost / cost.min(axis=1).to_numpy()[:, None]).fillna(np.inf)
    finite = ratio.to_numpy()[np.isfinite(ratio.to_numpy())]
    taus = np.unique(np.concatenate([[1.0], finite, [finite.max() * 1.01]]))
    figure, axes = plt.subplots(figsize=(8, 4.8))
    colors = _colors(ratio.columns)
    for index, name in enumerate(ratio.columns):
        share = [(ratio[name] <= tau).mean() for tau in taus]
        axes.step(taus, share, where="post", label=name, color=colors[name],
                  linestyle=LINE_STYLES[index % len(LINE_STYLES)])
    axes.set(xscale="log" if taus[-1] > 2 else "linear",
             xlabel="tau: (1 + gap) / (1 + best gap on the instance)",
             ylabel="share of instances within tau", ylim=(0, 1.02),
             title="Performance profile on gap (higher and further left is better)")
    _plain_ticks(axes.xaxis)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure


def gap_by_family(table: pd.DataFrame):
    """Box plots of instance gaps (%), one panel per instance family."""
    gaps = _valid_gaps(table).merge(
        table.drop_duplicates("instance")[["instance", "family"]], on="instance")
    gaps = gaps[np.isfinite(gaps.gap_hi)]
    if gaps.empty:
        return None
    families = list(dict.fromkeys(gaps.family))
    heuristics = list(dict.fromkeys(gaps.heuristic))
    columns = min(3, len(families))
    rows = -(-len(families) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 0.25 * len(heuristics)
                                                        * rows + 1.5), squeeze=False)
    for panel, family in zip(axes.flat, families):
        mine = gaps[gaps.family == family]
        data = [100 * mine[mine.heuristic == name].gap_hi.to_numpy() for name in heuristics]
        panel.boxplot(data, orientation="horizontal", tick_labels=heuristics, widths=0.6,
                      flierprops={"markersize": 3})
        panel.set(title=family, xlabel="gap (%)")
        panel.tick_params(axis="y", labelsize=7)
        panel.set_xscale("symlog", linthresh=0.1)
    for panel in list(axes.flat)[len(families):]:
        panel.set_visible(False)
    figure.suptitle("Gap distribution per instance family")
    figure.tight_layout()
    return figure


def gap_vs_runtime(table: pd.DataFrame):
    """Each heuristic's mean gap against its speedup over the baseline (geometric mean over
    instances of baseline time / its time): the trade-off each one makes."""
    gaps = _valid_gaps(table)
    if gaps.empty or "runtime_ratio" not in table:
        return None
    per_instance = table.drop_duplicates(["instance", "heuristic"])
    # speedup: baseline time / runtime, geometric mean over instances (above 1 is faster)
    ratios = per_instance[per_instance.runtime_ratio > 0].groupby(
        "heuristic", sort=False).runtime_ratio.apply(lambda r: float(np.exp(-np.log(r).mean())))
    # a heuristic invalid on some instance has no mean gap (NaN) and is not drawn
    mean_gap = gaps.groupby("heuristic", sort=False).gap_hi.apply(lambda g: g.mean(skipna=False))
    names = [name for name in mean_gap.index if name in ratios.index and np.isfinite(mean_gap[name])]
    figure, axes = plt.subplots(figsize=(8, 5))
    colors = _colors(names)
    for name in names:
        axes.scatter(ratios[name], 100 * mean_gap[name], color=colors[name], s=30)
        axes.annotate(name, (ratios[name], 100 * mean_gap[name]), fontsize=7,
                      xytext=(4, 2), textcoords="offset points")
    axes.set(xscale="log", xlabel="x faster than the baseline (above 1 is faster)",
             ylabel="mean gap (%)", title="Gap against runtime")
    axes.set_yscale("symlog", linthresh=0.01)
    axes.set_ylim(bottom=0)  # gap_hi >= 0: a lower bound is never above a placement's load
    _plain_ticks(axes.xaxis)
    _plain_ticks(axes.yaxis)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure


def certification_cactus(references: dict[str, list]):
    """For each set and policy, the layers certified optimal within a given solver time
    (from the reference values' recorded wall times). references: set -> entries."""
    curves = {}
    for name, entries in references.items():
        for policy in ("global", "hierarchical"):
            times = sorted(float(entry.params["wall_time"]) for entry in entries
                           if entry.policy == policy and entry.status == "OPTIMAL"
                           and "wall_time" in entry.params)
            total = sum(entry.policy == policy for entry in entries)
            if total:
                curves[f"{name} {policy} ({len(times)}/{total})"] = times
    if not any(curves.values()):
        return None
    figure, axes = plt.subplots(figsize=(8, 4.8))
    colors = _colors(curves)
    for label, times in curves.items():
        axes.step(np.arange(1, len(times) + 1), np.maximum(times, 1e-4), where="post",
                  label=label, color=colors[label])
    axes.set(yscale="log", xlabel="layers certified optimal", ylabel="solver seconds",
             title="Certification cactus (reference values; certified / all layers)")
    axes.legend(fontsize=7)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure


def gap_attribution(table: pd.DataFrame):
    """Stacked bars per heuristic and set: the mean share of the global optimum lost to the
    hierarchy, to replication and to packing (`gaps.attribution`); None without the packing
    stage (`eplbench run --attribution SECONDS`)."""
    parts = attribution(table)
    if parts.empty:
        return None
    sets = list(dict.fromkeys(parts.instance_set))
    heuristics = list(dict.fromkeys(parts.heuristic))
    figure, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 0.3 * len(heuristics) + 1.8),
                                squeeze=False, sharey=True)
    colors = {"hierarchy": "#8c8c8c", "replication": "#4c72b0", "packing": "#dd8452"}
    for panel, name in zip(axes[0], sets):
        means = parts[parts.instance_set == name].groupby("heuristic").mean(numeric_only=True)
        means = means.reindex(heuristics).fillna(0)
        left = np.zeros(len(heuristics))
        for stage in STAGES:
            values = 100 * means[stage].to_numpy()
            panel.barh(heuristics, values, left=left, color=colors[stage], label=stage)
            left += values
        panel.set(title=name, xlabel="mean loss (% of the global optimum)")
        panel.tick_params(axis="y", labelsize=7)
    axes[0][0].legend(fontsize=7)
    figure.suptitle("Where the gap is lost: hierarchy, replication, packing")
    figure.tight_layout()
    return figure
