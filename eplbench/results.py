"""The results table on disk (parquet via pyarrow), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from eplbench.atomic import replaced_atomically
from eplbench.errors import BadInput


def write_results(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write `table` to `path` (.parquet or .csv) via a temporary file renamed into place,
    so that a failure never leaves a half-written file over a good one."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise BadInput(f"{path}: results are written as .parquet or .csv")
    with replaced_atomically(path) as temporary:
        if path.suffix == ".parquet":
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, index=False)
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
