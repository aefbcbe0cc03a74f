"""Where a report's numbers come from: the results files it merges (with each one's date),
the machines and library versions that measured them, and each instance set's declared
policy, instance count and a short hash of its instances."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from eplbench.errors import BadInput

# the key of a row: a later file's row replaces an earlier file's row with the same key
MERGE_KEY = ["heuristic", "instance", "layer"]
# columns a results table may carry with the time of its run (none does yet: the file's
# modification time stands in)
DATE_COLUMNS = ["run_date", "date", "timestamp"]
VERSION_COLUMNS = [("eplbench", "eplbench_version"), ("torch", "torch_version"),
                   ("numpy", "numpy_version"), ("python", "python_version")]
SOURCE = "_source_file"  # the column that says which file a merged row came from


@dataclass(frozen=True)
class ResultsFile:
    """One results file given to `report`: its path, when it was run (and how that is
    known), the rows read from it and those a later file did not replace."""

    path: str
    date: str
    date_source: str
    rows_read: int
    rows_kept: int


def read_merged(paths, required=()) -> tuple[pd.DataFrame, list[ResultsFile]]:
    """Read and merge results tables: rows with the same heuristic, instance and layer in
    two files are taken from the later file. Each file must have the `required` columns
    (BadInput naming the file). The merged table has a SOURCE column (the file's path)."""
    from eplbench.results import read_results

    tables, dates = [], []
    for path in paths:
        table = read_results(path)
        missing = [column for column in required if column not in table]
        if missing:
            raise BadInput(f"{path}: not a results table of `eplbench run` or `eplbench "
                           f"replay` with reference gaps (no {', '.join(missing)})")
        tables.append(table.assign(**{SOURCE: str(path)}))
        dates.append(_run_date(table, path))
    merged = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    merged = merged.drop_duplicates(MERGE_KEY, keep="last").reset_index(drop=True)
    kept = merged[SOURCE].value_counts()
    files = [ResultsFile(str(path), date, source, len(table), int(kept.get(str(path), 0)))
             for path, table, (date, source) in zip(paths, tables, dates)]
    return merged, files


def _run_date(table: pd.DataFrame, path) -> tuple[str, str]:
    """(date, how it is known): a date column's range, else the file's modification time."""
    for column in DATE_COLUMNS:
        if column in table and table[column].notna().any():
            values = sorted({str(value) for value in table[column].dropna()})
            return (values[0] if len(values) == 1 else f"{values[0]} .. {values[-1]}",
                    f"column {column}")
    stamp = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M UTC"), "file modified"


def set_hash(instance_hashes) -> str:
    """A short hash of a set's instances: the first 12 hex digits of the sha256 of their
    sorted content hashes, one a line."""
    text = "\n".join(sorted({str(value) for value in instance_hashes}))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _values(rows: pd.DataFrame, column: str) -> str:
    if column not in rows:
        return "not recorded"
    values = [str(value) for value in dict.fromkeys(rows[column].dropna())]
    return ", ".join(values) if values else "not recorded"


def file_lines(table: pd.DataFrame, files: list[ResultsFile]) -> list[str]:
    """One line per results file: date, rows, sets, machine, threads and versions."""
    lines = []
    for item in files:
        rows = table[table[SOURCE] == item.path] if SOURCE in table else table
        replaced = (f", {item.rows_read - item.rows_kept} replaced by a later file"
                    if item.rows_kept < item.rows_read else "")
        versions = ", ".join(f"{name} {_values(rows, column)}"
                             for name, column in VERSION_COLUMNS)
        sets = ", ".join(dict.fromkeys(rows.instance_set)) if len(rows) else "none"
        lines.append(f"`{Path(item.path).name}`: run {item.date} ({item.date_source}); "
                     f"{item.rows_read} rows{replaced}; sets {sets}; machine "
                     f"{_values(rows, 'machine')}, threads {_values(rows, 'threads')}; "
                     f"{versions}")
    return lines


def set_lines(table: pd.DataFrame) -> list[str]:
    """One line per instance set: declared policy, instance count, families, certified
    reference layers and the set hash."""
    lines = []
    for name, rows in table.groupby("instance_set", sort=False):
        instances = rows.drop_duplicates("instance")
        policies = instances.policy.value_counts()
        policy = (policies.index[0] if len(policies) == 1 else
                  ", ".join(f"{value} on {count}" for value, count in policies.items()))
        layers = rows.drop_duplicates(["instance", "layer"])
        certified = int((layers.ref_status == "OPTIMAL").sum()) if "ref_status" in layers else 0
        kind = " (replay: served windows)" if "planned_on" in rows and \
            rows.planned_on.notna().any() else ""
        count = f"{len(instances)} instance{'' if len(instances) == 1 else 's'}"
        lines.append(f"{name}{kind}: declared policy {policy}; {count} "
                     f"({', '.join(dict.fromkeys(instances.family.astype(str)))}); reference "
                     f"certified on {certified}/{len(layers)} layers; set hash "
                     f"`{set_hash(instances.instance_hash)}`")
    return lines
