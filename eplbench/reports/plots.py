"""The report's figures, each a function of the results table (with reference gaps attached)
that returns a matplotlib Figure, or None when the table holds nothing to draw.

Instance gaps are spec §7's (`gaps.instance_gaps`, the conservative end `gap_hi`), taken
only where the placement is valid for the declared policy (`_valid_gaps`). Speed is always
"x faster than the baseline": baseline time / heuristic time, above 1 is faster.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eplbench.gaps import STAGES, attribution, instance_gaps  # noqa: E402
from eplbench.reports.names import short_names  # noqa: E402
from eplbench.reports.tables import instance_summary  # noqa: E402

DPI = 110  # figures are laid out and saved at this resolution
STRONG = ["#1f5fbf", "#e8710a", "#1a9850", "#c51b7d"]  # the profile's best lines
GREY = "#a6a6a6"
STRONG_STYLES = ["-", "--", "-.", ":"]
PROFILE_STRONG = 4  # lines drawn in colour in the performance profile


# -- shared helpers ---------------------------------------------------------------------



def _plain_ticks(axis) -> None:
    """Tick labels as plain numbers (1.05, 0.3), not powers of ten."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


# mantissas tried, coarse to fine, for the ticks of a log axis
_MANTISSAS = [(1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9),
              tuple(np.round(np.arange(1, 10, 0.1), 1))]


def log_ticks(low: float, high: float, least: int = 4, most: int = 8) -> list[float]:
    """Round numbers for a log axis from low to high, evenly spread to the eye: within a
    decade or so, evenly spaced round steps (1-2-2.5-5); wider, the coarsest series of
    mantissas per decade that gives at least `least` ticks (at most `most`, thinned)."""
    if high / low < 12:
        locator = matplotlib.ticker.MaxNLocator(nbins=most - 2, steps=[1, 2, 2.5, 5, 10])
        found = [float(f"{value:.6g}") for value in locator.tick_values(low, high)
                 if low <= value <= high and value > 0]
        if len(found) >= 3:
            return found
    found = []
    for mantissas in _MANTISSAS:
        found = [float(f"{m * 10.0 ** exponent:.6g}")
                 for exponent in range(math.floor(math.log10(low)) - 1,
                                       math.ceil(math.log10(high)) + 1)
                 for m in mantissas]
        found = sorted({value for value in found if low <= value <= high})
        if len(found) >= least:
            break
    if len(found) > most:
        step = math.ceil(len(found) / most)
        found = found[::step]
    return found


def _log_axis(axis, low: float, high: float) -> None:
    """A log axis from low to high with several plain-number tick labels."""
    axis.set_major_locator(matplotlib.ticker.FixedLocator(log_ticks(low, high)))
    _plain_ticks(axis)


def _valid_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """`instance_gaps` with the gaps of invalid placements (a policy breach too) as NaN."""
    gaps = instance_gaps(table)
    gaps.loc[~gaps.valid.astype(bool), ["gap_lo", "gap_hi"]] = np.nan
    return gaps


def heuristic_order(table: pd.DataFrame) -> list[str]:
    """Heuristics valid on every instance first, then the others; each part by the mean
    instance gap over every set (none last), then by the table's order."""
    names = list(dict.fromkeys(table.heuristic))
    valid = table.groupby("heuristic", sort=False).valid.all()
    gaps = _valid_gaps(table) if "ref_status" in table else pd.DataFrame(
        columns=["heuristic", "gap_hi"])
    mean = gaps.groupby("heuristic", sort=False).gap_hi.mean()

    def key(item):
        position, name = item
        gap = mean.get(name, np.nan)
        return (not valid[name], bool(np.isnan(gap)), 0 if np.isnan(gap) else gap, position)

    return [name for _, name in sorted(enumerate(names), key=key)]


def speedups(table: pd.DataFrame) -> pd.Series:
    """Per heuristic: geometric mean over instances of baseline time / its time."""
    per_instance = table.drop_duplicates(["instance", "heuristic"])
    per_instance = per_instance[np.isfinite(per_instance.runtime_ratio)
                                & (per_instance.runtime_ratio > 0)]
    return per_instance.groupby("heuristic", sort=False).runtime_ratio.apply(
        lambda ratio: float(np.exp(-np.log(ratio).mean())))


def _sets(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.instance_set))


# -- performance profile ------------------------------------------------------------------

def profile_lines(table: pd.DataFrame):
    """The performance profile's data over the instances (replay windows aside) every
    heuristic ran on: (taus, log_scale, lines, instances), lines best first, each a
    dict with names (heuristics whose instance gaps are identical on every instance), label
    ("a = b = c"), share (of instances within each tau) and area (under the curve, over the
    axis as drawn: log tau where log_scale; 1 is best)."""
    if "planned_on" in table:  # replay windows answer another question (gap to hindsight)
        table = table[table.planned_on.isna()]
    gaps = _valid_gaps(table)
    if gaps.empty:
        return None
    pivot = gaps.pivot(index="instance", columns="heuristic", values="gap_hi")
    # the instances every heuristic ran on (an invalid placement has a row, with no gap)
    ran = pd.crosstab(gaps.instance, gaps.heuristic).reindex(index=pivot.index,
                                                             columns=pivot.columns)
    common = (ran > 0).all(axis=1)
    if common.any():
        pivot = pivot[common]
    order = [name for name in heuristic_order(table) if name in pivot.columns]
    pivot = pivot[order]
    groups: dict[tuple, list[str]] = {}
    for name in order:
        key = tuple(None if np.isnan(value) else float(value) for value in pivot[name])
        groups.setdefault(key, []).append(name)
    cost = 1 + pivot
    ratio = (cost / cost.min(axis=1).to_numpy()[:, None]).fillna(np.inf).to_numpy()
    finite = ratio[np.isfinite(ratio)]
    if finite.size == 0:
        return None
    top = max(finite.max() * 1.01, 1.001)
    taus = np.unique(np.concatenate([[1.0], finite, [top]]))
    log_scale = top > 2
    x = np.log(taus) if log_scale else taus
    widths = np.diff(x)
    shown = short_names(order)
    lines = []
    for names in groups.values():
        column = ratio[:, order.index(names[0])]
        share = np.array([(column <= tau).mean() for tau in taus])
        area = float((share[:-1] * widths).sum() / (x[-1] - x[0]))
        lines.append({"names": names, "label": " = ".join(shown[name] for name in names),
                      "share": share, "area": area})
    lines.sort(key=lambda line: -line["area"])  # stable: ties keep the heuristic order
    return taus, log_scale, lines, len(pivot)


def _wrapped(label: str, width: int = 40) -> str:
    parts, line, out = label.split(" = "), "", []
    for part in parts:
        candidate = f"{line} = {part}" if line else part
        if line and len(candidate) > width:
            out.append(line + " =")
            line = part
        else:
            line = candidate
    return "\n".join(out + [line])


def performance_profile(table: pd.DataFrame):
    """Dolan-More profile on gap: for each heuristic, the share of instances whose cost
    (1 + gap) is within a factor tau of the best heuristic's on that instance; an invalid
    placement never is. Heuristics with identical gaps on every instance share one line;
    the PROFILE_STRONG lines with the largest area are drawn in colour, the rest thin and
    grey; the legend lists them best first."""
    found = profile_lines(table)
    if found is None:
        return None
    taus, log_scale, lines, count = found
    figure, axes = plt.subplots(figsize=(10, 5.2), dpi=DPI)
    handles = []
    for rank, line in reversed(list(enumerate(lines))):  # the best drawn last, on top
        strong = rank < PROFILE_STRONG
        (handle,) = axes.step(
            taus, line["share"], where="post", label=_wrapped(line["label"]),
            color=STRONG[rank] if strong else GREY, linewidth=2.4 if strong else 1.0,
            linestyle=STRONG_STYLES[rank] if strong else "-", alpha=1 if strong else 0.75,
            zorder=3 + (PROFILE_STRONG - rank) if strong else 2)
        handles.append(handle)
    handles.reverse()
    axes.set(xlabel="tau: (1 + gap) / (1 + best gap on the instance)",
             ylabel="share of instances within tau", ylim=(0, 1.03), xlim=(1, taus[-1]),
             title=f"Performance profile on gap over {count} instances (higher and further "
                   "left is better)")
    if log_scale:
        axes.set_xscale("log")
        _log_axis(axes.xaxis, 1, taus[-1])
    else:
        _plain_ticks(axes.xaxis)
    axes.grid(True, alpha=0.3)
    legend = axes.legend(handles=handles, fontsize=8, loc="upper left",
                         bbox_to_anchor=(1.01, 1.0), title="best first (area under the curve)",
                         title_fontsize=8, frameon=False)
    for text, (rank, _) in zip(legend.get_texts(), enumerate(lines)):
        if rank >= PROFILE_STRONG:
            text.set_color("#666666")
    figure.tight_layout()
    return figure


# -- gap per family -----------------------------------------------------------------------

def family_means(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per instance set: heuristics x families, the mean instance gap (%) over the family's
    instances; NaN where the heuristic is invalid on one of them or there is no gap. Rows:
    every heuristic of the table, best first (`heuristic_order`), so that a row is the same
    heuristic in every set; a heuristic not run on a set has no row there."""
    gaps = _valid_gaps(table)
    if gaps.empty:
        return {}
    facts = table.drop_duplicates("instance")[["instance", "instance_set", "family"]]
    gaps = gaps.merge(facts, on="instance")
    order = heuristic_order(table)
    means = {}
    for name in _sets(table):
        mine = gaps[gaps.instance_set == name]
        if not np.isfinite(mine.gap_hi).any():
            continue
        families = list(dict.fromkeys(mine.family.astype(str)))
        grid = mine.groupby(["heuristic", "family"]).gap_hi.apply(
            lambda g: 100 * g.mean(skipna=False)).unstack("family")
        means[name] = grid.reindex(index=[h for h in order if h in grid.index],
                                   columns=families)
    return means


def gap_by_family(table: pd.DataFrame):
    """One panel per instance set: a heat map of the mean instance gap (%) per heuristic
    (rows, best first, the same rows in every panel) and family (columns), each cell written
    out, the colour scaled per panel; "invalid" where the heuristic is invalid on an
    instance of the family, blank where it was not run on the set. Panels are laid side by
    side and wrap to a new row past about ten columns."""
    means = family_means(table)
    if not means:
        return None
    shown = short_names(table.heuristic)
    rows_of = [name for name in heuristic_order(table)
               if any(name in grid.index for grid in means.values())]
    cell_w, cell_h, gap = 0.72, 0.27, 0.3  # inches
    label_w = 0.068 * max(len(shown[name]) for name in rows_of) + 0.25
    budget = 9.7 - label_w
    widths = {name: max(grid.shape[1] * cell_w, 0.08 * len(name) + 0.2)
              for name, grid in means.items()}
    lines, line, used = [], [], 0.0
    for name, grid in means.items():
        width = widths[name]
        if line and used + gap + width > budget:
            lines.append(line)
            line, used = [], 0.0
        line.append(name)
        used += (gap if used else 0) + width
    lines.append(line)
    top, bottom = 0.45, 0.85
    row_h = top + len(rows_of) * cell_h + bottom
    fig_w = max(label_w + sum(widths[n] for n in names)
                + gap * (len(names) - 1) for names in lines) + 0.3
    fig_h = row_h * len(lines) + 0.1
    figure = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)
    cmap = matplotlib.colormaps["YlOrRd"]
    for line_index, names in enumerate(lines):
        left = label_w
        y0 = fig_h - (line_index + 1) * row_h + bottom
        for panel_index, name in enumerate(names):
            grid = means[name].reindex(index=rows_of)
            width = widths[name]
            panel = figure.add_axes((left / fig_w, y0 / fig_h, width / fig_w,
                                     len(rows_of) * cell_h / fig_h))
            left += width + gap
            values = grid.to_numpy(dtype=float)
            ran = [heuristic in means[name].index for heuristic in rows_of]
            finite = values[np.isfinite(values)]
            high = max(finite.max(), 1e-9) if finite.size else 1.0
            panel.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=high * 1.15,
                         aspect="auto")
            panel.set_facecolor("white")
            for (row, column), value in np.ndenumerate(values):
                if np.isfinite(value):
                    panel.text(column, row, f"{value:.2f}", ha="center", va="center",
                               fontsize=7.5, color="white" if value > 0.7 * high else "#222222")
                elif ran[row]:
                    panel.add_patch(matplotlib.patches.Rectangle(
                        (column - 0.5, row - 0.5), 1, 1, color="#eeeeee", zorder=0.5))
                    panel.text(column, row, "invalid", ha="center", va="center", fontsize=7,
                               color="#a02020")
                else:
                    panel.text(column, row, "not run", ha="center", va="center", fontsize=6.5,
                               color="#aaaaaa")
            panel.set_xticks(range(grid.shape[1]), grid.columns, rotation=25, ha="right",
                             fontsize=8)
            panel.set_yticks(range(len(rows_of)),
                             [shown[h] for h in rows_of] if panel_index == 0 else [],
                             fontsize=8)
            panel.set_title(name, fontsize=9.5)
            panel.tick_params(length=0)
    return figure


# -- gap against runtime ------------------------------------------------------------------

def runtime_points(table: pd.DataFrame) -> dict[str, list[tuple[str, float, float]]]:
    """Per instance set: (label, x faster than the baseline, mean gap %) of each heuristic
    valid on every instance of the set; heuristics at the same point share one label."""
    points = {}
    if "runtime_ratio" not in table or "ref_status" not in table:
        return points
    shown = short_names(table.heuristic)
    order = heuristic_order(table)
    for name in _sets(table):
        rows = table[table.instance_set == name]
        gaps = _valid_gaps(rows)
        if gaps.empty:
            continue
        speed = speedups(rows)
        mean = gaps.groupby("heuristic", sort=False).gap_hi.apply(lambda g: g.mean(skipna=False))
        found: dict[tuple, list[str]] = {}
        for heuristic in order:
            if heuristic in mean.index and heuristic in speed.index and np.isfinite(
                    mean[heuristic]):
                key = (round(float(speed[heuristic]), 12), round(100 * float(mean[heuristic]), 12))
                found.setdefault(key, []).append(shown[heuristic])
        if found:
            points[name] = [(" = ".join(labels), x, y) for (x, y), labels in found.items()]
    return points


def _pareto(points) -> list[tuple[float, float]]:
    """The points no other point beats on both speed (higher) and gap (lower)."""
    front, best_gap = [], math.inf
    for _, x, y in sorted(points, key=lambda p: (-p[1], p[2])):
        if y < best_gap:
            front.append((x, y))
            best_gap = y
    return sorted(front)


def place_labels(axes, points, fontsize: float = 7.5, avoid=()) -> list:
    """Label each (label, x, y) point of `axes` without overlaps: the first candidate
    position (right, left, above, below, then rings further out with a leader line) whose
    text box overlaps no placed label, no marker and none of the artists `avoid` (a legend)
    and stays inside the axes. The axes' position and limits must be final. Returns the
    annotations."""
    figure = axes.figure
    renderer = figure.canvas.get_renderer()
    scale = figure.dpi / 72  # pixels per point
    area = axes.get_window_extent(renderer)
    pixels = axes.transData.transform([(x, y) for _, x, y in points])
    marker = 3.5 * scale
    taken = [(px - marker, py - marker, px + marker, py + marker) for px, py in pixels]
    for artist in avoid:
        box = artist.get_window_extent(renderer)
        taken.append((box.x0, box.y0, box.x1, box.y1))
    candidates = [(5, 0), (-5, 0), (0, 5), (0, -5), (5, 5), (5, -5), (-5, 5), (-5, -5)]
    for radius in (14, 22, 32, 44, 58, 75, 95, 120, 150):
        for step in range(16):
            angle = 2 * math.pi * step / 16
            candidates.append((radius * math.cos(angle), radius * math.sin(angle)))
    annotations = []
    # the crowded middle first would push the edges out: go from the lowest gap up
    for index in sorted(range(len(points)), key=lambda i: (points[i][2], points[i][1])):
        label = points[index][0]
        probe = axes.text(0, 0, label, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        width, height = extent.width + 2, extent.height + 2
        px, py = pixels[index]
        best = None
        for dx, dy in candidates:
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            x0 = px + dx * scale - {"left": 0, "right": width, "center": width / 2}[ha]
            y0 = py + dy * scale - {"bottom": 0, "top": height, "center": height / 2}[va]
            box = (x0, y0, x0 + width, y0 + height)
            inside = (box[0] >= area.x0 + 2 and box[2] <= area.x1 - 2
                      and box[1] >= area.y0 + 2 and box[3] <= area.y1 - 2)
            overlap = sum(_overlap(box, other) for other in taken)
            score = (not inside, overlap)
            if best is None or score < best[0]:
                best = (score, dx, dy, ha, va, box)
            if inside and overlap == 0:
                break
        _, dx, dy, ha, va, box = best
        taken.append(box)
        far = math.hypot(dx, dy) > 8
        annotations.append(axes.annotate(
            label, (points[index][1], points[index][2]), xytext=(dx, dy),
            textcoords="offset points", ha=ha, va=va, fontsize=fontsize, zorder=5,
            bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.75},
            arrowprops={"arrowstyle": "-", "color": "#9a9a9a", "lw": 0.6, "shrinkA": 0,
                        "shrinkB": 3} if far else None))
    return annotations


def _overlap(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def gap_vs_runtime(table: pd.DataFrame):
    """One panel per instance set: each heuristic's mean gap against its speed (x faster
    than the baseline, geometric mean over instances of baseline time / its time), labels
    placed without overlaps, the Pareto front dashed. A heuristic invalid on some instance
    of the set is not drawn there."""
    points = runtime_points(table)
    if not points:
        return None
    width, height = 10.0, 3.8  # inches per panel
    left, right, top, bottom, gap = 0.75, 0.25, 0.45, 0.6, 0.25
    figure = plt.figure(figsize=(width, len(points) * (height + top + bottom + gap)), dpi=DPI)
    total = figure.get_figheight()
    baseline = baseline_name(table)
    for index, (name, mine) in enumerate(points.items()):
        y0 = total - (index + 1) * (height + top + bottom + gap) + bottom + gap
        axes = figure.add_axes((left / width, y0 / total, 1 - (left + right) / width,
                                height / total))
        xs = np.array([x for _, x, _ in mine])
        ys = np.array([y for _, _, y in mine])
        low, high = min(xs.min(), 1.0), max(xs.max(), 1.0)
        pad = (high / low) ** 0.12 if high > low else 1.5
        axes.set_xscale("log")
        axes.set_xlim(low / pad, high * pad)
        _log_axis(axes.xaxis, low / pad, high * pad)
        high_y = max(ys.max(), 1e-3)
        spread = high_y - ys.min()
        # from 0 unless every point sits far above it (then the points would be squeezed)
        low_y = 0.0 if ys.min() < 0.5 * high_y else ys.min() - 0.2 * spread - 0.02 * high_y
        axes.set_ylim(low_y, high_y + 0.25 * (high_y - low_y))
        _plain_ticks(axes.yaxis)
        axes.axvline(1.0, color="#777777", linestyle=":", linewidth=1,
                     label=f"{baseline}'s speed (1x)")
        front = _pareto(mine)
        if len(front) > 1:
            axes.plot(*zip(*front), color=STRONG[1], linestyle="--", linewidth=1, zorder=1,
                      label="Pareto front: nothing is both faster and closer")
        avoid = [axes.legend(fontsize=7, loc="best", frameon=True, framealpha=0.9)]
        on_front = {point for point in front}
        colors = [STRONG[1] if (x, y) in on_front else STRONG[0] for _, x, y in mine]
        axes.scatter(xs, ys, s=22, c=colors, zorder=4)
        axes.set(xlabel=f"x faster than {baseline} (baseline time / heuristic time; above 1 is "
                        "faster)", ylabel="mean gap (%)")
        axes.set_title(f"{name}: gap against speed", fontsize=10)
        axes.grid(True, which="major", alpha=0.3)
        place_labels(axes, mine, avoid=avoid)
    return figure


def baseline_name(table: pd.DataFrame) -> str:
    """The heuristic every runtime_ratio is taken against (ratio 1 on every row), else
    `the baseline`."""
    if "runtime_ratio" not in table:
        return "the baseline"
    ones = table.groupby("heuristic", sort=False).runtime_ratio.apply(
        lambda ratio: bool((ratio == 1).all()))
    names = list(ones[ones].index)
    if len(names) == 1:
        return names[0]
    from eplbench.runner import BASELINE

    return BASELINE if BASELINE in names else "the baseline"


# -- certification and attribution -------------------------------------------------------

def _solver_seconds(entry):
    """A reference entry's solver seconds: its work, else (older files) its wall time."""
    return entry.params.get("work", entry.params.get("wall_time"))


def certification_cactus(references: dict[str, list]):
    """For each set and policy, the layers certified optimal within a given solver time
    (the reference values' recorded work, seconds of budget; wall time for entries solved
    before work budgets). references: set -> entries."""
    curves = {}
    for name, entries in references.items():
        for policy in ("global", "hierarchical"):
            seconds = (_solver_seconds(entry) for entry in entries
                       if entry.policy == policy and entry.status == "OPTIMAL")
            times = sorted(float(value) for value in seconds if value is not None)
            total = sum(entry.policy == policy for entry in entries)
            if total:
                curves[f"{name} {policy} ({len(times)}/{total})"] = times
    if not any(curves.values()):
        return None
    figure, axes = plt.subplots(figsize=(9, 4.6), dpi=DPI)
    palette = plt.get_cmap("tab10")
    for index, (label, times) in enumerate(curves.items()):
        axes.step(np.arange(1, len(times) + 1), np.maximum(times, 1e-4), where="post",
                  label=label, color=palette(index % 10), linewidth=1.6)
    axes.set(yscale="log", xlabel="layers certified optimal", ylabel="solver seconds (work)",
             title="Certification cactus (reference values; certified / all layers)")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure


def gap_attribution(table: pd.DataFrame):
    """Stacked bars per heuristic and set: the mean share of the global optimum lost to the
    hierarchy, to replication and to packing (`gaps.attribution`); None without the packing
    stage (`eplbench run --attribution SECONDS`). Heuristics best first, from the top."""
    parts = attribution(table)
    if parts.empty:
        return None
    sets = list(dict.fromkeys(parts.instance_set))
    order = [name for name in heuristic_order(table) if name in set(parts.heuristic)]
    shown = short_names(table.heuristic)
    labels = [shown[name] for name in reversed(order)]
    figure, axes = plt.subplots(1, len(sets), figsize=(max(9, 4.6 * len(sets)),
                                                       0.3 * len(order) + 1.9),
                                dpi=DPI, squeeze=False, sharey=True)
    colors = {"hierarchy": "#8c8c8c", "replication": "#4c72b0", "packing": "#dd8452"}
    for panel, name in zip(axes[0], sets):
        means = parts[parts.instance_set == name].groupby("heuristic").mean(numeric_only=True)
        means = means.reindex(list(reversed(order))).fillna(0)
        left = np.zeros(len(order))
        for stage in STAGES:
            values = 100 * means[stage].to_numpy()
            panel.barh(labels, values, left=left, color=colors[stage], label=stage)
            left += values
        panel.set(title=name, xlabel="mean loss (% of the global optimum)")
        panel.tick_params(axis="y", labelsize=8)
        panel.grid(True, axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(STAGES), fontsize=8,
                  frameon=False)
    figure.suptitle("Where the gap is lost: hierarchy, replication, packing (best first, "
                    "from the top)")
    figure.tight_layout(rect=(0, 0.5 / figure.get_figheight(), 1, 1))
    return figure


def migration_points(table: pd.DataFrame) -> dict[str, list[tuple[str, float, float]]]:
    """Per replay set: (heuristic, weights received per layer and rebalance, balancedness)
    over the served windows that follow a rebalance (`moved` known): balancedness is the
    mean over those windows of sum of mean loads / sum of max loads (spec §7). A heuristic
    invalid on one of them is left out."""
    if "moved" not in table:
        return {}
    points = {}
    for name, rows in table[table.moved.notna()].groupby("instance_set", sort=False):
        windows = instance_summary(rows).groupby("heuristic", sort=False)
        valid, balance = windows.valid.all(), windows.balancedness.mean()
        moved = rows.groupby("heuristic", sort=False).moved.mean()
        mine = [(heuristic, float(moved[heuristic]), float(balance[heuristic]))
                for heuristic in valid.index if valid[heuristic]]
        if mine:
            points[name] = mine
    return points


def balance_vs_migration(table: pd.DataFrame, frontier: pd.DataFrame | None = None):
    """One panel per replay set: each heuristic's balancedness against the weights it moves
    per layer and rebalance, and where `frontier` (rows of `frontier.replay_frontier`) has
    points for the set's windows, the frontier's plans as a line and its bound dashed."""
    from eplbench.frontier import frontier_summary

    points = migration_points(table)
    if not points:
        return None
    width, height = 10.0, 4.2
    figure, panels = plt.subplots(len(points), 1, figsize=(width, height * len(points)),
                                  dpi=DPI, squeeze=False)
    for axes, (name, mine) in zip(panels[:, 0], points.items()):
        windows = set(table[table.instance_set == name].instance)
        line = ([] if frontier is None else
                frontier_summary(frontier[frontier.instance.isin(windows)].to_dict("records"))
                if frontier.instance.isin(windows).any() else [])
        xs = [x for _, x, _ in mine] + [row["received"] for row in line]
        ys = [y for _, _, y in mine] + [row["bound"] for row in line]
        right = 1.1 * max(xs) + 1
        axes.set_xlim(-0.05 * max(xs) - 1, right)
        axes.set_ylim(min(ys) - 0.05 * (max(ys) - min(ys) + 0.01),
                      max(ys) + 0.25 * (max(ys) - min(ys) + 0.01))
        axes.scatter([x for _, x, _ in mine], [y for _, _, y in mine], s=22, c=STRONG[0],
                     zorder=4)
        if line:
            axes.plot([row["received"] for row in line], [row["balancedness"] for row in line],
                      color=STRONG[1], marker="s", markersize=4, linewidth=1.2,
                      label="frontier (hindsight): best plan found within K weights, at the "
                            "weights it receives")
            axes.step([min(row["budget"], right) for row in line],
                      [row["bound"] for row in line], where="post", color=STRONG[1],
                      linestyle="--", linewidth=1,
                      label="frontier bound at K: no plan within K weights does better")
        avoid = [axes.legend(fontsize=7, loc="best", frameon=True, framealpha=0.9)] if line else []
        axes.set(xlabel="weights received per layer and rebalance (mean)",
                 ylabel="balancedness of the served windows")
        axes.set_title(f"{name}: balance against migration", fontsize=10)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        place_labels(axes, mine, avoid=avoid)
    return figure
