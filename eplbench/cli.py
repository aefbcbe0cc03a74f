"""The `eplbench` command: parses, calls the API, prints. Exit codes: 0 success, 1 a check
failed (an invalid placement), 2 bad input (one line on stderr, no traceback)."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from eplbench.errors import BadInput, InvalidPlacement
from eplbench.problem import Policy
from eplbench.progress import tracked
from eplbench.reports.names import short_names

# tables keep their columns whole when piped (rich would wrap or cut them at 80 columns)
stdout = Console(width=None if sys.stdout.isatty() else 10_000)
stderr = Console(stderr=True)


class BadInputExit(click.ClickException):
    exit_code = 2

    def show(self, file=None):
        one_line = " ".join(self.message.split())  # a message is one line, whatever it quotes
        click.echo(f"eplbench: error: {one_line}", err=True)


class Cli(click.Group):
    """Turns BadInput raised anywhere below into a one-line error and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BadInput as error:
            raise BadInputExit(str(error)) from None


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eplbench")
def main():
    """eplbench: measure MoE expert-placement (EPLB) heuristics against the exact optimum."""


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()] if value else []


BUNDLED_RUN = "tiny,small,medium-cut,deepseek-v3-cut"

POLICY_OPTION = click.option(
    "--policy", type=click.Choice([policy.value for policy in Policy]), default=None,
    help="The policy placements must respect, and whose optimum gaps are taken against "
         "(+distinct: no GPU holds two replicas of one expert; instances whose topology "
         "cannot have it are left out). Default: each instance's declared policy "
         "(hierarchical where the topology defines it, as the engines do; else global).")


@main.command()
@click.option("--heuristics", "-H", help="Comma-separated built-in names, path/to/file.py "
              "or pkg.module:function. Default: every built-in.")
@click.option("--instances", "-i", "instance_sets", default=BUNDLED_RUN, show_default=True,
              help="Comma-separated bundled or named sets, or set folders.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Timed calls per heuristic and instance (the median is kept).")
@click.option("--time-limit", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds one call may take before it is stopped and scored invalid.")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="Reference-value file for the gaps. Default: each set's own, if it has one.")
@click.option("--out", type=click.Path(dir_okay=False), help="Results table (.parquet or "
              ".csv), one row per heuristic, instance and layer; rewritten as each instance "
              "finishes, and a run given an existing file resumes it (instances with every "
              "heuristic in it are not run again).")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Write the gap table "
              "(mean / max gap and speed per set) as Markdown, e.g. docs/heuristics.md.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Instances run at once in local worker processes (each call still has "
                   "one thread; with more jobs than idle cores, runtimes get noisier).")
@click.option("--scheduler", help="Run the instances on a Dask cluster instead: the "
              "scheduler's address, e.g. tcp://10.0.0.5:8786 (pip install 'eplbench[dask]').")
@click.option("--attribution", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds per layer to solve the packing stage alone (each placement's own "
                   "replica counts), which splits gaps into hierarchy, replication and "
                   "packing in the report; 0 skips it.")
@POLICY_OPTION
def run(heuristics, instance_sets, repeats, time_limit, reference, out, markdown, jobs,
        scheduler, attribution, policy):
    """Run heuristics on instance sets; per set, print balancedness, optimality gap to the
    reference values, and speed relative to the DeepSeek port.

    Exit 1 when some heuristic produced an invalid placement (its rows say why).
    """
    import pandas as pd

    from eplbench.heuristics import BUILTINS
    from eplbench.reports.tables import heuristic_summary
    from eplbench.results import write_results
    from eplbench.runner import RunOptions

    names = _split(heuristics) or list(BUILTINS)
    options = RunOptions(repeats=repeats, time_limit=time_limit, jobs=jobs, scheduler=scheduler,
                         attribution=attribution)
    loaded = [(name, *_instances_and_reference(name, reference, policy))
              for name in _split(instance_sets)]
    table, others = _run_resumable(names, loaded, options, out)
    tables, summaries = _per_set(table, loaded), []
    for (name, _, entries), mine in zip(loaded, tables):
        summaries.append((name, heuristic_summary(mine)))
        _print_summary(summaries[-1][1], name, options.baseline, _policies(mine))
        if entries is None:
            stderr.print(f"no reference values for {name}: gaps need `eplbench solve` first")
    table = pd.concat(tables, ignore_index=True)
    if out:
        write_results(pd.concat([others, table], ignore_index=True), out)
        kept = f" (and kept {len(others)} rows of other sets)" if len(others) else ""
        stderr.print(f"wrote {len(table)} rows to {out}{kept}")
    if markdown:
        from eplbench.atomic import write_text_atomic
        from eplbench.reports.markdown import gap_table

        chosen = f"-H {heuristics} " if heuristics else ""
        declared = f"--policy {policy} " if policy else ""
        command = (f"eplbench run {chosen}-i {instance_sets} {declared}--repeats {repeats} "
                   f"--markdown {markdown}")
        write_text_atomic(markdown, gap_table(summaries, command))
        stderr.print(f"wrote the gap table to {markdown}")
    sys.exit(0 if table.valid.all() else 1)


def _policies(rows) -> str:
    """The declared policies of a set's rows, in words ("hierarchical", "global and ...")."""
    return " and ".join(sorted(rows.policy.unique()))


def _instances_and_reference(name, reference, policy=None):
    """(the set's instances with `policy` declared, if given, its reference entries); the
    instances whose topology does not define `policy` are left out, and said so."""
    from eplbench.instances import load_instances, reference_path, where_defined
    from eplbench.reference import check_for_set, read_reference

    path = reference or reference_path(name)
    instances = load_instances(name)
    if policy is not None:
        try:
            instances, left = where_defined(instances, policy)
        except BadInput as error:
            raise BadInput(f"{name}: {error}") from None
        if left:
            stderr.print(f"{name}: {len(left)} instance(s) left out, their topology does not "
                         f"define the {policy} policy: {', '.join(left)}")
    return instances, check_for_set(read_reference(path), instances, path) if path else None



def _per_set(table, loaded) -> list:
    """Each loaded set's rows of `table`, with its reference gaps where it has references."""
    from eplbench.gaps import attach_reference

    parts = []
    for name, _, entries in loaded:
        mine = table[table.instance_set == name].reset_index(drop=True)
        parts.append(attach_reference(mine, entries) if entries is not None else mine)
    return parts


def _run_resumable(names, loaded, options, out):
    """(rows of `names` and the baseline on every instance of `loaded`, with instance_set;
    the rows of `out` that belong to other sets, kept as they were).

    Rows of these sets already in `out`, measured with the same repeats and time limit
    under the same declared policy, are kept: only the heuristics they lack are run (beside
    the baseline). `out` is rewritten after every instance."""
    import pandas as pd

    from eplbench.results import DERIVED_COLUMNS, previous_rows, write_results
    from eplbench.runner import run_heuristics

    set_of = {instance.id: name for name, instances, _ in loaded for instance in instances}
    instances = [instance for _, group, _ in loaded for instance in group]
    earlier = previous_rows(out)
    of_these = earlier.instance_set.isin({name for name, _, _ in loaded}) if len(earlier) \
        else pd.Series(dtype=bool)
    others = earlier[~of_these] if len(earlier) else earlier
    previous = _scored_alike(earlier[of_these].drop(
        columns=[c for c in DERIVED_COLUMNS if c in earlier]), instances, options) \
        if len(earlier) else earlier
    done = frozenset(zip(previous.instance_hash, previous.heuristic) if len(previous) else ())
    heuristics = set(names) | {options.baseline}
    new_rows = []
    settled = sum(all((i.content_hash, h) in done for h in heuristics) for i in instances)
    with tracked("running", len(instances), settled) as progress:

        def finished(instance, rows):
            new_rows.extend({**row, "instance_set": set_of[instance.id]} for row in rows)
            progress.advance(instance.id)
            if out:
                write_results(pd.concat([others, _combined(previous, new_rows)],
                                        ignore_index=True), out)

        try:
            run_heuristics(names, instances, options, on_unit=finished, done=done)
        except KeyboardInterrupt:
            saved = (f"; {out} holds the instances that finished: the same command resumes"
                     if out else "")
            stderr.print(f"interrupted{saved}")
            sys.exit(130)
    table = _combined(previous, new_rows)
    wanted = table.instance.isin(set_of) & table.heuristic.isin(heuristics)
    return table[wanted].reset_index(drop=True), others


def _scored_alike(previous, instances, options):
    """Earlier rows less those measured otherwise: under another declared policy, with
    other repeats or another time limit, or by an older eplbench that did not record them.
    Those are measured again."""
    policy_of = {instance.content_hash: instance.policy for instance in instances}
    same = previous.instance_hash.map(policy_of).isna()  # not an instance of this run
    if {"policy", "repeats", "time_limit"} <= set(previous):
        same |= ((previous.instance_hash.map(policy_of) == previous.policy)
                 & (previous.repeats == options.repeats)
                 & (previous.time_limit == options.time_limit))
    return previous[same].reset_index(drop=True)


def _combined(previous, new_rows):
    """Earlier rows, less those of the (instance, heuristic) pairs measured again, then the
    new rows."""
    import pandas as pd

    new = pd.DataFrame(new_rows)
    if not len(previous):
        return new
    if len(new):
        again = set(zip(new.instance_hash, new.heuristic))
        previous = previous[[pair not in again for pair in
                             zip(previous.instance_hash, previous.heuristic)]]
    return pd.concat([previous, new], ignore_index=True)


def _print_summary(summary, instance_set: str, baseline: str, policies: str) -> None:
    from eplbench.reports.terminal import fitted_table

    has_gaps = "gap_mean" in summary
    columns = ["heuristic", "valid", "balancedness mean", "min", "hierarchy"]
    columns += ["gap mean", "gap max", "ref certified"] if has_gaps else []
    columns += ["co-located", "runtime ms", f"x faster than {baseline}", "failures"]
    shown = short_names(summary.heuristic)
    rows = []
    for row in summary.itertuples():
        cells = [shown[row.heuristic], f"{row.valid}/{row.instances}",
                 _fmt(row.balancedness_mean, "{:.4f}"), _fmt(row.balancedness_min, "{:.4f}"),
                 _fmt(row.hierarchy, "{:.0%}")]
        if has_gaps:
            cells += [_fmt(row.gap_mean, "{:.3%}"), _fmt(row.gap_max, "{:.3%}"),
                      _fmt(row.certified, "{:.0%}")]
        cells += [_fmt(row.colocated, "{:.1%}"), _fmt(row.runtime_ms, "{:.3g}"),
                  _fmt(row.speedup, "{:.3g}x"), row.failures]
        rows.append(cells)
    table, left_out = fitted_table(
        f"heuristics on {instance_set} ({policies} policy)", columns, rows,
        stdout.width if stdout.is_terminal else None,
        optional=("min", "hierarchy", "runtime ms", "co-located", "ref certified"),
        left=("heuristic", "failures"))
    stdout.print(table)
    if left_out:
        stdout.print(f"(too narrow for the columns {', '.join(left_out)}: widen the terminal, "
                     "or read them in the --out file)")
    if has_gaps:
        stdout.print("gap: (max load - optimum of the declared policy) / optimum, summed over "
                     "layers, over valid instances; where the reference is not certified, "
                     "against its lower bound (an upper end).")
        lacking = int((summary.instances - summary.with_reference).max())
        if lacking:
            stdout.print(f"{lacking} instance(s) have no reference value on some layer: "
                         "they are left out of the gaps (run `eplbench solve` on the set)")
    for name, short in shown.items():
        if short != name:
            stdout.print(f"{short} = {name}")
    for row in summary[summary.breach != ""].itertuples():
        bought = (f"; its gap to the {policies} optimum: {row.breach_gap_mean:+.3%} mean "
                  "(what breaking the policy bought)"
                  if has_gaps and np.isfinite(row.breach_gap_mean) else "")
        stdout.print(f"{shown[row.heuristic]}: {row.breach}{bought}; not valid here, "
                     "ranked last")


def _fmt(value, pattern: str) -> str:
    return "-" if value is None or not np.isfinite(value) else pattern.format(value)


@main.command("evaluate")
@click.argument("programs", nargs=-1, required=True)
@POLICY_OPTION
def evaluate_command(programs, policy):
    """Score programs as an evolutionary search would (`eplbench.evaluate`, see
    docs/openevolve.md) and rank them by combined score. PROGRAMS: files defining
    rebalance_experts, built-in names or pkg.module:function."""
    import time

    import pandas as pd

    from eplbench.evolve import evaluate

    rows = []
    with tracked("evaluating", len(programs)) as progress:
        for program in programs:
            start = time.monotonic()
            rows.append({"program": program, **evaluate(program, policy),
                         "seconds": time.monotonic() - start})
            progress.advance(program)
    ranked = pd.DataFrame(rows).sort_values("combined_score", ascending=False, kind="stable")
    shown = short_names(ranked.program)
    table = Table(title=f"evaluate ({policy or 'declared'} policy), best first")
    columns = ["rank", "program", "combined score", "mean gap", "max gap",
               "replay balancedness", "x faster than deepseek_fast", "seconds", "error"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("program", "error") else "right")
    for rank, row in enumerate(ranked.to_dict("records"), 1):
        table.add_row(str(rank), shown[row["program"]], f"{row['combined_score']:.4f}",
                      _fmt(row.get("mean_gap"), "{:.3%}"), _fmt(row.get("max_gap"), "{:.3%}"),
                      _fmt(row.get("replay_balancedness"), "{:.4f}"),
                      _fmt(row.get("speedup"), "{:.3g}x"), f"{row['seconds']:.1f}",
                      str(row.get("error", "")) if pd.notna(row.get("error", "")) else "")
    stdout.print(table)


@main.command()
@click.argument("placement", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Load matrix [L, E] (.npy, .pt, .csv, .json).")
@click.option("--topology", help="num_replicas,num_groups,num_nodes,num_gpus, e.g. 16,4,2,8.")
@click.option("--instance", help="SET:ID, an instance of a set (e.g. tiny:uniform-000), "
              "instead of --weights/--topology.")
def check(placement, weights, topology, instance):
    """Check a saved placement (phy2log [L, P]: .npy, .pt, .csv, or .json with key phy2log)
    and print its loads. Exit 0 valid, 1 invalid, 2 bad input."""
    from eplbench.checker import check as check_placement

    weight, topo = _weights_and_topology(weights, topology, instance)
    phy2log = _read_plan(placement)
    try:
        evaluation = check_placement(weight, phy2log, topo)
    except InvalidPlacement as error:
        click.echo(f"INVALID ({error.reason}): {error.detail}")
        sys.exit(1)
    table = Table(title=f"{placement}: valid")
    for column in ["layer", "max load", "mean load", "balancedness", "hierarchical"]:
        table.add_column(column, justify="right")
    for layer, (peak, mean) in enumerate(zip(evaluation.max_load, evaluation.mean_load)):
        table.add_row(str(layer), f"{float(peak):.6g}", f"{float(mean):.6g}",
                      f"{evaluation.balancedness_per_layer[layer]:.4f}",
                      "yes" if evaluation.hierarchical_layers[layer] else "no")
    stdout.print(table)
    stdout.print(f"balancedness {evaluation.balancedness:.4f} (sum over layers), "
                 f"co-located replicas {evaluation.colocated_replicas}")


def _read_plan(path) -> np.ndarray:
    """phy2log [L, P] from a .npy, .pt, .csv or .json (key phy2log) file."""
    from eplbench.instances.importers import read_matrix

    phy2log = read_matrix(path, key="phy2log")
    if np.issubdtype(phy2log.dtype, np.floating) and np.all(phy2log == np.round(phy2log)):
        phy2log = phy2log.astype(np.int64)  # text formats carry no dtype
    return phy2log


def _one_instance(text: str):
    """The instance named SET:ID, or the only instance of SET."""
    from eplbench.instances import load_instances

    set_name, _, instance_id = text.rpartition(":") if ":" in text else (text, "", None)
    items = load_instances(set_name)
    known = ", ".join(item.id.rpartition("/")[2] for item in items)
    if instance_id is None and len(items) == 1:
        return items[0]
    if instance_id is None:
        raise BadInput(f"{set_name} holds {len(items)} instances: name one as "
                       f"{set_name}:ID (its instances: {known})")
    matches = [item for item in items if instance_id in (item.id, item.id.rpartition("/")[2])]
    if not matches:
        raise BadInput(f"{set_name}: no instance {instance_id!r}; its instances: {known}")
    return matches[0]


def _weights_and_topology(weights, topology, instance):
    from eplbench.instances.importers import read_matrix
    from eplbench.problem import as_weight_matrix

    if instance:
        chosen = _one_instance(instance)
        return chosen.weight, chosen.topology
    if not (weights and topology):
        raise BadInput("give --instance SET:ID, or both --weights and --topology")
    topo = _parse_topology(topology)
    weight = as_weight_matrix(read_matrix(weights, key="weight"), source=weights)
    topo.validate_for(weight.shape[1])
    return weight, topo


def _parse_topology(text: str):
    from eplbench.problem import Topology

    try:
        fields = [int(part) for part in text.split(",")]
    except ValueError:
        fields = []
    if len(fields) != 4:
        raise BadInput(f"--topology {text!r}: expected four integers P,groups,nodes,gpus")
    return Topology(*fields)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for report.md, report.html and the PNG plots.")
@click.option("--frontier", "frontier_files", multiple=True, type=click.Path(dir_okay=False),
              help="Frontier points of a replay (`eplbench replay --frontier-out`), drawn as "
                   "a line in its balance-against-migration plot; repeatable.")
def report(results, out, frontier_files):
    """Write a report of one or more results tables (from `eplbench run --out` or `eplbench
    replay --out`): per set, validity, gap, balancedness, co-located share and speed; a
    replay section; a performance profile, gaps per family, gap against runtime, gap
    attribution and the solvers' certification; the provenance of every number. Markdown, a
    self-contained HTML page and PNG files. Several files are merged: a row of the same
    heuristic, instance and layer in two files is taken from the later file. Reads the
    reference values of the sets; never solves."""
    import pandas as pd

    from eplbench.instances import reference_path
    from eplbench.reference import read_reference
    from eplbench.reports.html import write_report
    from eplbench.reports.provenance import read_merged
    from eplbench.results import KEY_COLUMNS, read_results

    table, files = read_merged(results, required=KEY_COLUMNS + ["gap_hi"])
    for item in files:
        if item.rows_kept < item.rows_read:
            stderr.print(f"{item.path}: {item.rows_read - item.rows_kept} rows replaced by a "
                         "later file's")
    paths = {name: reference_path(name) for name in table.instance_set.unique()}
    references = {name: read_reference(path) for name, path in paths.items() if path}
    frontier = (pd.concat([read_results(path) for path in frontier_files], ignore_index=True)
                if frontier_files else None)
    with stderr.status("drawing"):
        page = write_report(table, references, out, files, frontier)
    stderr.print(f"wrote {page} and {Path(out) / 'report.md'}")


def _print_trace_sums(summary, served: int) -> None:
    """Over the whole trace: served max loads and each rebalance's cost, summed."""
    if "moved_sum" not in summary:
        return
    view = Table(title=f"over the trace: {served} served windows, every layer")
    for column in ["heuristic", "served max load summed", "weights received (inter-node)",
                   "GB received", "modelled transfer s"]:
        view.add_column(column, justify="left" if column == "heuristic" else "right")
    for row in summary.itertuples():
        view.add_row(row.heuristic, _fmt(row.served_load_sum, "{:.6g}"),
                     f"{_fmt(row.moved_sum, '{:.0f}')} "
                     f"({_fmt(row.moved_inter_node_sum, '{:.0f}')})",
                     _fmt(row.moved_bytes_sum / 1e9, "{:.3g}"),
                     _fmt(row.moved_seconds_sum, "{:.3g}"))
    stdout.print(view)


def _optional_budgets(ctx, param, value):
    return None if value is None else _budgets(ctx, param, value)


@main.command()
@click.argument("trace", required=False, type=click.Path(dir_okay=False))
@click.option("--simulate", metavar="LAYERSxEXPERTS", help="Replay the routing simulator's "
              "drifting windows instead of a file, e.g. 4x64 (groups from --topology).")
@click.option("--windows", default=6, show_default=True, type=click.IntRange(2),
              help="Windows to simulate (with --simulate).")
@click.option("--seed", default=0, show_default=True, help="Simulator seed.")
@click.option("--window", type=click.IntRange(1),
              help="Records of an expert-load.json summed into one window (default: 1).")
@click.option("--topology", default="288,8,4,32", show_default=True,
              help="num_replicas,num_groups,num_nodes,num_gpus (the ADRS evaluator's).")
@click.option("--heuristics", "-H", default="swap_search,zigzag", show_default=True,
              help="Comma-separated heuristics (the baseline deepseek always runs).")
@click.option("--solver", default="enum", show_default=True, help="Solver for hindsight.")
@click.option("--solve-time", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds per layer for the hindsight solves (each served window, and the "
                   "best fixed plan). Short by default: where a layer is not certified in "
                   "that time the gaps printed are upper ends (against its lower bound); "
                   "raise it for tighter figures.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Timed planning calls per heuristic and window (the median is kept).")
@click.option("--time-limit", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds per heuristic call.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Hindsight windows solved at once in local worker processes (planning "
                   "runs window after window: each heuristic may take its previous plan).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the replay rows, with "
              "the hindsight gaps, as a results table (`eplbench report` reads it).")
@click.option("--relabel", is_flag=True, help="Also replay NAME+relabel for each heuristic: "
              "its plan renumbered to keep the most weights of its plan in place.")
@click.option("--frontier", "frontier_budgets", callback=_optional_budgets,
              help="Comma-separated budgets K: per served window t + 1 and layer, also solve "
                   "the least max load of a plan receiving at most K weights from the "
                   "baseline's plan for window t - 1 (hindsight: the yardstick of the "
                   "weights moved; --solve-time each, docs/migration.md).")
@click.option("--frontier-out", type=click.Path(dir_okay=False),
              help="Write the --frontier points (.csv or .parquet; `eplbench report "
                   "--frontier` draws them).")
@POLICY_OPTION
def replay(trace, simulate, windows, seed, window, topology, heuristics, solver, solve_time,
           repeats, time_limit, jobs, out, relabel, frontier_budgets, frontier_out, policy):
    """Replay a load trace: each heuristic plans on window t and serves window t+1; per
    heuristic, print replay balancedness, the gap to the hindsight optimum (window t+1
    solved on its own: no planner beats it) and to the best fixed plan in hindsight.

    Example: eplbench replay --simulate 4x64 (about half a minute with the defaults)."""
    from eplbench.gaps import attach_reference
    from eplbench.heuristics import RELABEL_SUFFIX
    from eplbench.replay import fixed_plan, hindsight_entries, replay_rows, replay_summary
    from eplbench.results import write_results
    from eplbench.runner import RunOptions

    instances, name = _trace_windows(trace, simulate, windows, seed, window,
                                     _parse_topology(topology), policy)
    topo = instances[0].topology
    options = RunOptions(repeats=repeats, time_limit=time_limit, jobs=jobs)
    with tracked("planning", len(instances) - 1) as progress:
        names = _split(heuristics)
        if relabel:
            names += [f"{name}{RELABEL_SUFFIX}" for name in names
                      if not name.endswith(RELABEL_SUFFIX)]
        rows = replay_rows(names, instances, options,
                           on_unit=lambda index, _: progress.advance(instances[index].id))
    rows = rows.assign(instance_set=name)
    policies = [instances[0].policy]
    with tracked("hindsight", len(instances)) as progress:
        hindsight = hindsight_entries(instances[1:], policies, solver, solve_time, jobs,
                                      on_unit=lambda unit, _: progress.advance(unit[0].id))
        plans = {p: fixed_plan(instances[1:], hindsight, p, solver, solve_time)
                 for p in policies}
        progress.advance("best fixed plan")
    table = attach_reference(rows, hindsight)
    if out:
        write_results(table, out)
        stderr.print(f"wrote {len(table)} rows to {out}")
    if frontier_budgets:
        _replay_frontier(instances, frontier_budgets, policies[0], solve_time, hindsight,
                         frontier_out)
    summary = replay_summary(table, plans)
    view = Table(title=f"replay of {name}: {len(instances) - 1} served windows, {topo}, "
                       f"{policies[0]} policy")
    for column in ["heuristic", "valid", "replay balancedness", "gap to hindsight mean / max",
                   "hindsight certified", "gap to best fixed plan", "co-located",
                   "moved / layer (inter-node)", "relabelled", "planning ms"]:
        view.add_column(column, justify="left" if column == "heuristic" else "right")
    for row in summary.itertuples():
        view.add_row(row.heuristic, row.valid, _fmt(row.replay_balancedness, "{:.4f}"),
                     f"{_fmt(row.hindsight_gap_mean, '{:.3%}')} / "
                     f"{_fmt(row.hindsight_gap_max, '{:.3%}')}",
                     _fmt(row.hindsight_certified, "{:.0%}"),
                     f"{_fmt(row.fixed_plan_gap_lo, '{:+.3%}')} .. "
                     f"{_fmt(row.fixed_plan_gap_hi, '{:+.3%}')}",
                     _fmt(row.colocated, "{:.1%}"),
                     f"{_fmt(row.moved, '{:.1f}')} ({_fmt(row.moved_inter_node, '{:.1f}')})",
                     f"{_fmt(row.relabelled_moved, '{:.1f}')} "
                     f"({_fmt(row.relabelled_inter_node, '{:.1f}')})",
                     _fmt(row.planning_ms, "{:.3g}"))
    stdout.print(view)
    _print_trace_sums(summary, len(instances) - 1)
    certified = summary.hindsight_certified.min()
    stdout.print("gap to hindsight: (served max load - the served window's optimum) / optimum, "
                 "mean and max over windows" + ("" if certified == 1 else
                 "; an upper end where hindsight is not certified (--solve-time)"))
    stdout.print("moved / layer: expert weights a GPU receives at each rebalance (it did not "
                 "hold them under the plan before), mean over rebalances and layers, "
                 "inter-node ones in brackets; relabelled: the same plans renumbered to keep "
                 "the most weights in place (docs/migration.md)")
    stdout.print("gap to best fixed plan: lo .. hi, the summed load's gap to the best single "
                 "plan found in hindsight (lo, against that plan) and to a lower bound on any "
                 "single plan (hi); the true gap lies between")
    for row in summary[summary.breach != ""].itertuples():
        bought = (f"; its gap to hindsight: {row.breach_gap_mean:+.3%} mean (what breaking "
                  "the policy bought)" if np.isfinite(row.breach_gap_mean) else "")
        stdout.print(f"{row.heuristic}: {row.breach}{bought}; not valid here, ranked last")
    sys.exit(0 if table.valid.all() else 1)


def _replay_frontier(instances, budgets, policy, solve_time, hindsight, out) -> None:
    """Print (and write to `out`) the replay's frontier yardstick from deepseek's plans."""
    import pandas as pd

    from eplbench.frontier import frontier_summary, replay_frontier
    from eplbench.results import write_results

    known = {entry.key: entry for entry in hindsight}
    solved = {(instance.id, layer): (entry.lb, np.asarray(entry.phy2log, dtype=np.int64)
                                     if len(entry.phy2log) else None)
              for instance in instances[1:] for layer in range(instance.num_layers)
              if (entry := known.get((instance.content_hash, layer, policy)))}
    with tracked("frontier", len(instances) - 2) as progress:
        rows, least = replay_frontier(instances, "deepseek", Policy.parse(policy), budgets,
                                      solve_time, solved, on_window=progress.advance)
    if out:
        write_results(pd.DataFrame(rows), out)
        stderr.print(f"wrote {len(rows)} frontier points to {out}")
    view = Table(title="frontier (hindsight): from deepseek's plan for window t - 1, the best "
                       "plan serving window t + 1 within K weights received per layer")
    for column in ["K", "received / layer", "balancedness", "bound", "certified"]:
        view.add_column(column, justify="right")
    for row in frontier_summary(rows):
        view.add_row(str(row["budget"]), f"{row['received']:.1f}",
                     f"{row['balancedness']:.4f}", f"{row['bound']:.4f}",
                     f"{row['certified']:.0%}")
    stdout.print(view)
    found = pd.DataFrame(least)
    stdout.print(f"deepseek's own plans serve these windows after receiving "
                 f"{found.baseline_moved.mean():.1f} weights per layer "
                 f"({found.baseline_relabelled.mean():.1f} relabelled); in hindsight "
                 f"{found.moves.mean():.1f} suffice for the same max load (at least "
                 f"{found.moves_lb.mean():.1f}; least certified on "
                 f"{(found.status == 'OPTIMAL').mean():.0%} of layers)")


def _trace_windows(trace, simulate, windows: int, seed: int, window, topo,
                   policy) -> tuple[list, str]:
    """(one instance per window of TRACE or of the simulator's --simulate LxE, on the
    Topology `topo`, the trace's name); BadInput naming the trace when it has fewer than 2
    windows or does not fit."""
    from eplbench.instances.importers import read_expert_load_json
    from eplbench.replay import simulated_windows, window_instances

    if (trace is None) == (simulate is None):
        raise BadInput("give a TRACE file or --simulate LAYERSxEXPERTS (one of the two)")
    if simulate:
        layers, experts = _shape(simulate)
        groups = topo.num_groups if experts % topo.num_groups == 0 else 1
        topk_groups = max(1, groups // 2)
        # DeepSeek-V3 routes 8 of 256 experts; keep a token on at most a quarter of them
        top_k = max(1, min(8, experts // 4, topk_groups * experts // groups))
        loads = simulated_windows(layers, experts, windows, seed, groups=groups,
                                  topk_groups=topk_groups, top_k=top_k)
        name = f"simulated-{simulate}"
    else:
        loads, name = read_expert_load_json(trace, window or 1), Path(trace).stem
    if len(loads) < 2:
        raise BadInput(f"{trace or name}: {len(loads)} window(s); replay needs at least 2")
    try:
        return window_instances(loads, topo, name, policy), name
    except BadInput as error:
        raise BadInput(f"{trace or name}: {error}") from None


def _shape(text: str) -> tuple[int, int]:
    try:
        layers, experts = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise BadInput(f"--simulate {text!r}: expected LAYERSxEXPERTS, e.g. 4x64") from None
    if layers < 1 or experts < 1:
        raise BadInput(f"--simulate {text!r}: layers and experts must be positive")
    return layers, experts


def _fraction(ctx, param, value: str) -> float:
    """'0.05%' -> 0.0005; a plain number is a fraction already."""
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or a percentage") from None
    if number < 0:
        raise click.BadParameter("must not be negative")
    return number


def _optional_fraction(ctx, param, value):
    return None if value is None else _fraction(ctx, param, value)


@main.command()
@click.option("--candidate", required=True, help="The heuristic under test: path/to/file.py, "
              "pkg.module:function or a built-in name.")
@click.option("--baseline", default="deepseek", show_default=True,
              help="The heuristic it must not fall behind: a built-in name or a file.")
@click.option("--instances", "-i", "instance_sets", default=BUNDLED_RUN, show_default=True,
              help="Comma-separated sets; each needs reference values.")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="Reference-value file. Default: each set's own.")
@click.option("--max-gap-increase", default="0.05%", show_default=True, callback=_fraction,
              help="How much the set's mean gap may exceed the baseline's.")
@click.option("--max-instance-gap-increase", default="1%", show_default=True,
              callback=_fraction, help="How much any one instance's gap may exceed the "
                                       "baseline's.")
@click.option("--max-slowdown", default=1.25, show_default=True,
              type=click.FloatRange(min=1.0), help="How many times slower than the baseline "
              "the candidate may be (the speed check's floor is 1 / this, in x faster).")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(2),
              help="Timed rounds per instance (candidate and baseline back to back).")
@click.option("--time-limit", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds per call before it counts as a timeout.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Instances run at once in local worker processes.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the results table.")
@click.option("--trace", type=click.Path(dir_okay=False),
              help="Also replay this expert-load.json (one record per window) with "
                   "candidate and baseline each given its own plan before, and gate the "
                   "weights their plans move (--max-migration-increase). Its rows are not "
                   "in --out: `eplbench replay --out` writes a trace's.")
@click.option("--simulate", metavar="LAYERSxEXPERTS",
              help="As --trace, on the routing simulator's drifting windows (e.g. 4x64; "
                   "6 windows, seed 0, 288 slots on 8 groups, 4 nodes, 32 GPUs).")
@click.option("--max-migration-increase", callback=_optional_fraction,
              help="How much more the candidate's mean weights received per layer and "
                   "rebalance may be than the baseline's on --trace / --simulate, a share "
                   "of the baseline's [default: 10%].")
@POLICY_OPTION
def gate(candidate, baseline, instance_sets, reference, max_gap_increase,
         max_instance_gap_increase, max_slowdown, repeats, time_limit, jobs, out, trace,
         simulate, max_migration_increase, policy):
    """Gate a heuristic change in CI (exit 0 pass, 1 fail, 2 bad input).

    Passes when the candidate is valid on every instance, its mean gap per set and its gap
    on each instance are no worse than the baseline's beyond the tolerances, and its runtime
    ratio is within --max-slowdown or the slowdown is not significant; with --trace or
    --simulate, also when its plans move no more weights than the baseline's beyond
    --max-migration-increase. Prints which instance failed which check. Reads reference
    values; never solves.
    """
    from dataclasses import replace

    import pandas as pd

    from eplbench.gate import Limits, migration, served_load, verdicts
    from eplbench.replay import ADRS_TOPOLOGY, replay_rows
    from eplbench.results import write_results
    from eplbench.runner import RunOptions

    if max_migration_increase is not None and trace is None and simulate is None:
        raise BadInput("--max-migration-increase needs --trace or --simulate to replay")
    replayed = (None if trace is None and simulate is None else
                _trace_windows(trace, simulate, 6, 0, None, ADRS_TOPOLOGY, policy))

    loaded = [(name, *_instances_and_reference(name, reference, policy))
              for name in _split(instance_sets)]
    for name, _, entries in loaded:
        if entries is None:
            raise BadInput(f"{name}: no reference values; run `eplbench solve {name}` first "
                           "or pass --reference")
    options = RunOptions(repeats=repeats, time_limit=time_limit, baseline=baseline, jobs=jobs)
    table, _ = _run_resumable([candidate], loaded, options, None)
    table = pd.concat(_per_set(table, loaded), ignore_index=True)
    limits = Limits(max_gap_increase, max_instance_gap_increase, max_slowdown)
    checks, failures = verdicts(table, candidate, baseline, limits)
    if replayed:
        windows, name = replayed
        with tracked(f"replaying {name}", len(windows) - 1) as progress:
            rows = replay_rows([candidate], windows, replace(options, repeats=1),
                               on_unit=lambda index, _: progress.advance(windows[index].id))
        limit = 0.10 if max_migration_increase is None else max_migration_increase
        found = [migration(rows, candidate, baseline, limit),
                 served_load(rows, candidate, baseline, max_gap_increase)]
        checks = pd.concat([checks, pd.DataFrame([{"set": name, **row} for row, _ in found])],
                           ignore_index=True)
        failures = pd.concat([failures, pd.DataFrame([{"set": name, **f} for _, failed in found
                                                      for f in failed],
                                                     columns=failures.columns)],
                             ignore_index=True)
    if out:
        write_results(table, out)
    _print_frame(checks.assign(passed=checks.passed.map({True: "pass", False: "FAIL"}))
                 .rename(columns={"passed": "verdict"}),
                 f"gate: {candidate} against {baseline} (speed: x faster than {baseline})")
    if len(failures):
        _print_frame(failures, "instances that failed a check")
    failed = checks[~checks.passed]
    names = ", ".join(f"{row.check} on {row.set}" for row in failed.itertuples())
    stdout.print(f"gate: FAIL ({names})" if len(failed) else "gate: PASS")
    sys.exit(0 if checks.passed.all() else 1)


def _print_frame(frame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(*(str(cell) for cell in row))
    stdout.print(table)


@main.command()
@click.option("--heuristics", "-H", default="deepseek_fast", show_default=True,
              help="Comma-separated heuristics to time against the baseline.")
@click.option("--baseline", default="deepseek", show_default=True,
              help="The heuristic speeds are relative to (x faster than it).")
@click.option("--repeats", default=7, show_default=True, type=click.IntRange(1),
              help="Timed calls per heuristic and policy, interleaved (the median is kept).")
def bench(heuristics, baseline, repeats):
    """Time heuristics against the baseline on the DeepSeek-V3 shape (58 layers x 256 experts,
    288 slots, 32 GPUs; hierarchical 8 groups on 4 nodes, and global), one thread, calls
    interleaved; print medians and the speed ratio."""
    from eplbench.heuristics import load_heuristic
    from eplbench.problem import Topology
    from eplbench.timing import DEEPSEEK_V3_SHAPE, deepseek_v3_weight, median, time_interleaved

    names = list(dict.fromkeys([baseline, *_split(heuristics)]))
    loaded = {name: load_heuristic(name) for name in names}
    weight = deepseek_v3_weight()
    table = Table(title=f"DeepSeek-V3 shape, median of {repeats}, one thread")
    for column in ["policy", "heuristic", "median ms", f"x faster than {baseline}"]:
        table.add_column(column, justify="right")
    invalid = []
    for policy in ("hierarchical", "global"):
        topology = DEEPSEEK_V3_SHAPE[policy]
        broken = _invalid_outputs(loaded, weight, Topology(*topology), policy)
        if baseline in broken:
            raise BadInput(f"baseline {baseline}: {broken[baseline]}")
        invalid += [(policy, name, why) for name, why in broken.items()]
        calls = {name: (lambda h=h: h(weight, *topology)) for name, h in loaded.items()
                 if name not in broken}
        with stderr.status(f"timing {policy}"):
            seconds = time_interleaved(calls, repeats)
        for name in calls:
            ratio = median(seconds[baseline]) / median(seconds[name])
            table.add_row(policy, name, f"{1e3 * median(seconds[name]):.3f}", f"{ratio:.1f}x")
    stdout.print(table)
    for policy, name, why in invalid:
        stdout.print(f"{name} ({policy}): not timed, its output is invalid: {why}")
    sys.exit(1 if invalid else 0)


def _invalid_outputs(loaded: dict, weight, topology, policy: str) -> dict[str, str]:
    """Name -> why its output on `weight` is invalid under `policy` (checked before it is
    timed: speed means nothing for output the other commands refuse)."""
    from eplbench.checker import check_output

    broken = {}
    for name, heuristic in loaded.items():
        try:
            breach = check_output(weight, heuristic(weight, *topology.as_tuple()),
                                  topology).breach(policy)
        except InvalidPlacement as error:
            breach = f"{error.reason}: {error.detail}"
        except Exception as error:  # noqa: BLE001 - a candidate that raises is reported
            breach = f"raised {type(error).__name__}: {error}"
        if breach:
            broken[name] = breach
    return broken


@main.command()
@click.argument("instance_set")
@click.option("--solver", default="enum", show_default=True,
              help="enum (default, exact branch and bound), cpsat or mip (joint model).")
@click.option("--time-limit", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds per layer and policy, counted as work done: the same answer "
                   "on an idle or a busy machine (docs/solvers.md).")
@click.option("--policy", "policies", default="global,hierarchical", show_default=True,
              help="Comma-separated policies to solve: global, hierarchical, global+distinct, "
                   "hierarchical+distinct (each only where the topology defines it).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Solver threads (1 keeps runs reproducible).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Instances solved at once in local worker processes.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Reference file to write or merge into. Default: SET/reference.json for "
                   "a set folder, else ./SET.reference.json. Rewritten as each instance "
                   "finishes; layers it already settles are not solved again.")
@click.option("--again", is_flag=True,
              help="Solve layers the file already settles too, except certified ones (after "
                   "a solver improves); merging still keeps the best bounds.")
@click.option("--placements", type=click.Path(dir_okay=False),
              help="Also write the placement found at each solved layer's ub to this JSON "
                   "file (merged with what it holds). The reference file never holds "
                   "placements: they are the answers, so keep this file away from "
                   "candidates.")
@click.option("--old", "old_plan", type=click.Path(dir_okay=False),
              help="The plan in place (phy2log [L, P]: .npy, .pt, .csv, or .json with key "
                   "phy2log) of the one instance SET or SET:ID: solve, per layer, the least "
                   "max load of a plan receiving at most --max-moves weights from it "
                   "(docs/spec.md §11) and print the points, or write them to --out (.csv or "
                   ".parquet). No reference file is touched.")
@click.option("--max-moves", type=click.IntRange(0),
              help="The budget K for --old: weights received at most.")
def solve(instance_set, solver, time_limit, policies, workers, jobs, out, again, placements,
          old_plan, max_moves):
    """Solve every layer of a set exactly and write / merge its reference values (spec §6);
    with --old PLAN --max-moves K, solve the frontier point at K from that plan instead.

    A layer counts as settled, and is skipped, when the file already has it certified
    optimal or (unless --again) solved by the same solver with at least this time limit."""
    from functools import partial

    if (old_plan is None) != (max_moves is None):
        raise BadInput("--old PLAN and --max-moves K go together")
    if old_plan is not None:
        _solve_from_plan(instance_set, old_plan, max_moves, _split(policies), time_limit,
                         workers, out)
        return

    from eplbench.executors import run_units
    from eplbench.instances import load_instances
    from eplbench.reference import (check_for_set, merge, policies_for, read_reference, settled,
                                    solve_entries, write_placements, write_reference)
    from eplbench.solvers import list_solvers

    if solver not in list_solvers():
        raise BadInput(f"unknown solver {solver!r}; known: {', '.join(list_solvers())}")
    instances = load_instances(instance_set)
    policy_list = _split(policies)
    out = Path(out or (Path(instance_set) / "reference.json" if Path(instance_set).is_dir()
                       else f"{Path(instance_set).name}.reference.json"))
    previous = read_reference(out) if out.exists() else []
    check_for_set(previous, instances, out)
    known = merge(previous)
    units = [(instance, policy) for instance in instances
             for policy in policies_for(instance, policy_list)]
    todo = [unit for unit in units
            if not settled(known, *unit, solver, math.inf if again else time_limit)]
    solve_unit = partial(solve_entries, solver=solver, time_limit=time_limit, workers=workers,
                         origin=out.name)
    entries = []
    with tracked("solving", len(units), len(units) - len(todo)) as progress:
        for (instance, policy), unit_entries in run_units(solve_unit, todo, jobs):
            entries += unit_entries
            write_reference(out, merge(previous + entries).values())
            if placements:
                write_placements(placements, unit_entries)
            statuses = "".join("*" if e.status == "OPTIMAL" else "." for e in unit_entries)
            progress.advance(f"{instance.id} {policy} {statuses} (* certified layer)")
    merged = merge(previous + entries)
    write_reference(out, merged.values())
    certified = sum(e.status == "OPTIMAL" for e in merged.values())
    skipped = len(units) - len(todo)
    note = f" ({skipped} instance-policies were settled already)" if skipped else ""
    click.echo(f"{certified}/{len(merged)} layers certified optimal; wrote {out}{note}")


def _solve_from_plan(instance_text, old_plan, max_moves, policies, time_limit, workers, out):
    """The frontier point at `max_moves` for each layer of one instance from `old_plan`."""
    import pandas as pd

    from eplbench.frontier import budget_rows
    from eplbench.reference import policies_for
    from eplbench.results import check_results_path, write_results

    if out:
        check_results_path(out)
    instance = _one_instance(instance_text)
    old = _read_plan(old_plan)
    chosen = [Policy.parse(policy).value for policy in policies]
    rows = []
    for policy in policies_for(instance, chosen):
        try:
            rows += budget_rows(instance, old, policy, max_moves, time_limit, workers)
        except (BadInput, InvalidPlacement) as error:
            raise BadInput(f"{old_plan}: {error}") from None
    frame = pd.DataFrame(rows)
    if out:
        write_results(frame, out)
    _print_frame(frame.drop(columns=["instance"]),
                 f"{instance.id} from {old_plan}, at most {max_moves} weights received")
    _print_certified(rows, "points", out)


@main.command("solve-bench")
@click.option("--sets", default="tiny,small", show_default=True,
              help="Comma-separated instance sets (names or folders).")
@click.option("--solver", default="enum", show_default=True,
              help="enum (exact branch and bound), cpsat or mip (joint model).")
@click.option("--policy", default="global", show_default=True,
              type=click.Choice([policy.value for policy in Policy]),
              help="Policy to solve under (instances whose topology lacks it are skipped).")
@click.option("--time-limit", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of work per layer (the same answers on an idle or a busy "
                   "machine).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Solver threads per layer (1 keeps runs reproducible).")
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Instances solved at once, in a local process pool (more jobs than cores "
                   "slow each solve's wall time, not its answer).")
@click.option("--layers", "layers_csv", type=click.Path(dir_okay=False), default=None,
              help="Also write one row per layer (set, instance, layer, status, ub, lb, gap, "
                   "work and wall seconds) to this CSV file.")
def solve_bench(sets, solver, policy, time_limit, workers, jobs, layers_csv):
    """Per set: share of layers certified optimal, median and max work (seconds of the
    budget) to certify, median and max final gap (ub - lb) / ub, median wall seconds."""
    from functools import partial

    from eplbench.executors import run_units
    from eplbench.instances import load_instances
    from eplbench.reference import policies_for

    table = Table(title=f"{solver}, {policy} policy, {time_limit:g} s of work per layer, "
                        f"{workers} worker(s), {jobs} job(s)")
    for column in ["set", "layers", "certified", "median work to certify",
                   "max work to certify", "median gap", "max gap", "median wall s"]:
        table.add_column(column, justify="right")
    solve_one = partial(_solve_instance, policy=policy, solver=solver, time_limit=time_limit,
                        workers=workers)
    rows = []
    for name in _split(sets):
        units = [i for i in load_instances(name) if policy in policies_for(i, [policy])]
        results = []
        with tracked(f"solving {name}", len(units)) as progress:
            for instance, unit_results in run_units(solve_one, units, jobs):
                results += unit_results
                rows += [_layer_row(name, instance.id, layer, result)
                         for layer, result in enumerate(unit_results)]
                progress.advance(instance.id)
        certified = [r.params["work"] for r in results if r.status == "OPTIMAL"]
        gaps = [r.gap for r in results]
        walls = [r.wall_time for r in results]
        table.add_row(name, str(len(results)),
                      f"{len(certified) / max(1, len(results)):.0%}",
                      _fmt(np.median(certified) if certified else np.nan, "{:.3f}"),
                      _fmt(max(certified) if certified else np.nan, "{:.3f}"),
                      _fmt(np.median(gaps) if gaps else np.nan, "{:.2e}"),
                      _fmt(max(gaps) if gaps else np.nan, "{:.2e}"),
                      _fmt(np.median(walls) if walls else np.nan, "{:.3f}"))
    stdout.print(table)
    if layers_csv:
        import pandas as pd

        from eplbench.atomic import replaced_atomically

        with replaced_atomically(layers_csv) as temporary:
            pd.DataFrame(rows).sort_values(["set", "instance", "layer"]).to_csv(temporary,
                                                                             index=False)
        click.echo(f"wrote {len(rows)} layers to {layers_csv}")


def _layer_row(set_name, instance_id, layer, result) -> dict:
    """One solve-bench CSV row: exact ub and lb as "num/den" strings, gap as a float."""
    return {"set": set_name, "instance": instance_id, "layer": layer, "status": result.status,
            "ub": str(result.ub), "lb": str(result.lb), "gap": float(result.gap),
            "work": result.params["work"], "seconds": round(result.wall_time, 4)}


def _solve_instance(instance, policy, solver, time_limit, workers):
    """Every layer of one instance solved (a picklable work unit for solve-bench)."""
    from eplbench.solvers import solve as solve_layers

    return solve_layers(instance.weight, instance.topology, policy, solver, time_limit, workers)


@main.command("heuristics")
def heuristics_command():
    """List the built-in heuristics."""
    from eplbench.heuristics import list_heuristics

    for name, description in list_heuristics().items():
        click.echo(f"{name:<16} {description}")


@main.group()
def instances():
    """Instance sets: list, show, generate, import."""


@instances.command("list")
def instances_list():
    """List the named and bundled instance sets."""
    from eplbench.instances import list_instance_sets

    for name, where in list_instance_sets().items():
        click.echo(f"{name:<12} {where}")


@instances.command("show")
@click.argument("instance_set")
def instances_show(instance_set):
    """List a set's instances: id, family, shape, topology, total load, content hash."""
    from eplbench.instances import list_instance_sets, load_instances

    if list_instance_sets().get(instance_set) == "generated":
        stderr.print(f"generating {instance_set} (a named set is built in memory; large ones "
                     "take a minute)")
    table = Table(title=instance_set)
    for column in ["id", "family", "layers x experts", "topology", "tokens", "sha256"]:
        table.add_column(column)
    for item in load_instances(instance_set):
        table.add_row(item.id, item.family, f"{item.num_layers} x {item.num_experts}",
                      str(item.topology), str(int(item.weight.sum())), item.content_hash[:12])
    stdout.print(table)


@instances.command("import")
@click.argument("files", nargs=-1, required=True)
@click.option("--topology", required=True, help="num_replicas,num_groups,num_nodes,num_gpus.")
@click.option("--window", type=click.IntRange(1), help="expert-load.json: records per window "
              "(default: all records in one window).")
@click.option("--name", default="imported", show_default=True, help="Set name (id prefix).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: a new or empty folder, or a set folder whose manifest.json "
              "and loads.npz are replaced (other files there are kept).")
@click.option("--force", is_flag=True, help="Also write into a non-empty folder that is not a "
              "set, or over a set whose reference.json no longer matches (other files, the "
              "reference included, are left as they are).")
def instances_import(files, topology, window, name, out, force):
    """Import real load dumps (expert-load.json, .npy, .pt, .csv) as an instance set."""
    from pathlib import Path

    from eplbench.instances import Instance, save_set
    from eplbench.instances.importers import import_loads

    topo = _parse_topology(topology)
    items = []
    for path in files:
        for index, weight in enumerate(import_loads(path, window)):
            topo.validate_for(weight.shape[1])
            items.append(Instance(id=f"{name}/{Path(path).stem}-{index:03d}", weight=weight,
                                  topology=topo, family="imported",
                                  params={"file": Path(path).name, "window": window or 0,
                                          "index": index}))
    save_set(out, name, items, force=force,
             on_warning=lambda message: click.echo(f"eplbench: warning: {message}", err=True))
    click.echo(f"wrote {len(items)} instances to {out}")


@instances.command("generate")
@click.option("--set", "set_name", help="A named set (see `instances list`).")
@click.option("--family", help="Or one family (uniform, lognormal, zipf, hotspot, "
              "group_skewed, routing) with the options below.")
@click.option("--param", "params", multiple=True, help="Family parameter k=v (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the first draw (with --family).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1),
              help="Instances to draw (seeds seed, seed+1, ...).")
@click.option("--layers", default=4, show_default=True, type=click.IntRange(1),
              help="Layers per instance (with --family).")
@click.option("--experts", default=16, show_default=True, type=click.IntRange(1),
              help="Experts per layer (with --family).")
@click.option("--topology", default="20,4,2,4", show_default=True,
              help="num_replicas,num_groups,num_nodes,num_gpus.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: a new or empty folder, or a set folder whose manifest.json "
              "and loads.npz are replaced (other files there are kept).")
@click.option("--force", is_flag=True, help="Also write into a non-empty folder that is not a "
              "set, or over a set whose reference.json no longer matches (other files, the "
              "reference included, are left as they are).")
def instances_generate(set_name, family, params, seed, count, layers, experts, topology, out,
                       force):
    """Write an instance set folder (manifest.json + loads.npz): a named set, or `count`
    draws of one family. The same command always writes the same bytes."""
    from eplbench.instances import Instance, save_set
    from eplbench.instances.families import generate
    from eplbench.instances.named import build_set

    if bool(set_name) == bool(family):
        raise BadInput("give exactly one of --set NAME or --family FAMILY")
    if set_name:
        name, items = set_name, build_set(set_name)
    else:
        topo = _parse_topology(topology)
        topo.validate_for(experts)
        values = dict(_parse_param(text) for text in params)
        name = family
        items = [Instance(id=f"{family}/{seed + index:06d}", topology=topo, family=family,
                          weight=generate(family, seed + index, layers, experts, **values),
                          params=values, seed=seed + index) for index in range(count)]
    save_set(out, name, items, force=force,
             on_warning=lambda message: click.echo(f"eplbench: warning: {message}", err=True))
    click.echo(f"wrote {len(items)} instances of {name} to {out}")


def _parse_param(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BadInput(f"--param {text!r}: expected key=value")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    raise BadInput(f"--param {text!r}: value must be a number")


def _budgets(ctx, param, value: str) -> list[int]:
    return _ascending(value, int, "weights received, integers >= 0, e.g. 0,2,4,8")


def _shares(ctx, param, value: str) -> list[Fraction]:
    return _ascending(value, Fraction, "shares above the optimum, numbers >= 0, e.g. 0,0.01")


def _ascending(value: str, kind, expected: str) -> list:
    """The distinct comma-separated values of `value` read by `kind`, ascending;
    click.BadParameter naming what was `expected` unless there is one and none is < 0."""
    try:
        items = sorted({kind(item) for item in _split(value)})
    except (ValueError, ZeroDivisionError):
        items = []
    if not items or items[0] < 0:
        raise click.BadParameter(f"{value!r}: expected {expected}")
    return items


@main.command()
@click.argument("instance_set")
@click.option("--old", "old_spec", default="deepseek", show_default=True,
              help="The heuristic whose plan for each instance's loads is the plan in place "
                   "(built-in name, path/to/file.py or pkg.module:function); it runs in its "
                   "own process like any candidate.")
@click.option("--budgets", default="0,1,2,4,8,16", show_default=True, callback=_budgets,
              help="Comma-separated budgets K: weights received at most.")
@POLICY_OPTION
@click.option("--time-limit", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of work per layer and budget (CP-SAT's deterministic time: the "
                   "same answers on an idle or a busy machine).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Points table to write (.csv or .parquet): instance, layer, policy, old, "
                   "budget, ub, lb (exact tokens), status, received, gap, work.")
@click.option("--least-out", type=click.Path(dir_okay=False),
              help="Also write, per layer and share s of --reach, the least weights received "
                   "by a plan within (1 + s) x the layer's optimum (.csv or .parquet): "
                   "share, target, optimum, optimum_certified, moves, moves_lb, status, "
                   "max_load, work.")
@click.option("--reach", "shares", default="0", show_default=True, callback=_shares,
              help="Comma-separated shares s >= 0 above the optimum for --least-out "
                   "(0: the optimum itself; 0.01: within 1%).")
def frontier(instance_set, old_spec, budgets, policy, time_limit, out, least_out, shares):
    """The balance-versus-migration frontier (docs/spec.md §11): per layer and budget K, the
    least max load of any plan of the policy receiving at most K weights from the plan in
    place, certified where lb == ub (the set's reference optimum, where it has one, is a
    lower bound at every K); with --least-out, the least weights that reach the optimum
    (or within a share of it)."""
    import pandas as pd

    from eplbench.frontier import frontier_rows
    from eplbench.reference import merge
    from eplbench.results import check_results_path, write_results

    if click.get_current_context().get_parameter_source("shares").name != "DEFAULT" \
            and not least_out:
        raise BadInput("--reach gives the targets of --least-out: give --least-out FILE too")
    for path in (out, least_out):
        if path:
            check_results_path(path)
    instances, reference = _instances_and_reference(instance_set, None, policy)
    known = merge(reference or [])
    points, least = [], []
    with tracked("frontier", len(instances)) as progress:
        for instance in instances:
            chosen = Policy.parse(instance.policy)
            optima_lb = {layer: known[instance.content_hash, layer, chosen.value].lb
                         for layer in range(instance.num_layers)
                         if (instance.content_hash, layer, chosen.value) in known}
            found = frontier_rows(instance, old_spec, chosen, budgets, time_limit, optima_lb,
                                  shares=shares if least_out else ())
            points += found[0]
            least += found[1]
            progress.advance(instance.id)
    write_results(pd.DataFrame(points), out)
    _print_certified(points, "frontier points", out)
    if least_out:
        write_results(pd.DataFrame(least), least_out)
        _print_certified(least, "least-moves points", least_out)


def _print_certified(rows, what: str, out=None) -> None:
    certified = sum(row["status"] == "OPTIMAL" for row in rows)
    click.echo(f"{certified}/{len(rows)} {what} certified" + (f"; wrote {out}" if out else ""))
