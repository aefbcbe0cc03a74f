"""The results table on disk (parquet via pyarrow), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from eplbench.atomic import replaced_atomically
from eplbench.errors import BadInput
from eplbench.gaps import GAP_COLUMNS


def write_results(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write `table` to `path` (.parquet or .csv) via a temporary file renamed into place,
    so that a failure never leaves a half-written file over a good one."""
    path = check_results_path(path)
    with replaced_atomically(path) as temporary:
        if path.suffix == ".parquet":
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, index=False)
    return path


def check_results_path(path: str | os.PathLike) -> Path:
    """`path` as a Path; BadInput unless it names a .parquet or .csv file (check it before
    long work that ends by writing it)."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise BadInput(f"{path}: results are written as .parquet or .csv")
    return path


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results table written by `write_results`."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as error:  # noqa: BLE001
        raise BadInput(f"{path}: not a results table ({type(error).__name__}: {error})") from None


# columns a run derives from its rows at the end (recomputed when a run resumes)
DERIVED_COLUMNS = GAP_COLUMNS
KEY_COLUMNS = ["instance", "instance_hash", "instance_set", "heuristic", "layer"]


def previous_rows(path: str | os.PathLike | None) -> pd.DataFrame:
    """The rows of an earlier run's results file, to resume it (DERIVED_COLUMNS included:
    drop them for the rows measured again); empty when `path` is None or does not exist."""
    if path is None or not Path(path).exists():
        return pd.DataFrame()
    table = read_results(path)
    missing = [column for column in KEY_COLUMNS if column not in table]
    if missing:
        raise BadInput(f"{path}: not a results table of `eplbench run` (no {', '.join(missing)}); "
                       "give --out a new file")
    return table
