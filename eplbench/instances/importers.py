"""Matrices from files: `.npy`, `.pt`, `.csv` and `.json` (a list of rows, or an object
holding one under `key`). Every refusal is a one-line BadInput naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eplbench.errors import BadInput

SUFFIXES = (".npy", ".pt", ".csv", ".json")


def read_matrix(path: str | Path, key: str | None = None) -> np.ndarray:
    """The 2-D array stored in `path` (dtype as stored; validation is the caller's)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"{path}: unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}")
    try:
        value = _READERS[suffix](path, key)
    except BadInput:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure is the file's problem
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise BadInput(f"{path}: cannot read ({type(error).__name__}: {first_line})") from None
    try:
        array = np.asarray(value)
    except ValueError:
        raise BadInput(f"{path}: ragged rows") from None
    if array.dtype == object:
        raise BadInput(f"{path}: ragged or non-numeric rows")
    return array


def _read_npy(path: Path, key):
    return np.load(path, allow_pickle=False)


def _read_pt(path: Path, key):
    import torch

    value = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(value, dict):
        value = _pick(value, key, path)
    return value.numpy() if hasattr(value, "numpy") else value


def _read_csv(path: Path, key):
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    if rows and len({len(row) for row in rows}) > 1:
        raise BadInput(f"{path}: ragged rows (lengths {sorted({len(row) for row in rows})})")
    try:
        return [[float(cell) for cell in row] for row in rows]
    except ValueError as error:
        raise BadInput(f"{path}: non-numeric cell ({error})") from None


def _read_json(path: Path, key):
    value = json.loads(path.read_text())
    return _pick(value, key, path) if isinstance(value, dict) else value


def _pick(mapping: dict, key, path: Path):
    if key is None or key not in mapping:
        raise BadInput(f"{path}: expected a matrix, or an object with key {key!r}; "
                       f"found keys {sorted(mapping)[:5]}")
    return mapping[key]


_READERS = {".npy": _read_npy, ".pt": _read_pt, ".csv": _read_csv, ".json": _read_json}


def read_expert_load_json(path: str | Path, window: int | None = None) -> list[np.ndarray]:
    """ADRS / vLLM `expert-load.json`: `load_history[k].logical_expert_load` is a
    [layers][experts] list per record; records are summed over windows of `window` records
    (all of them when None). Returns one [L, E] int64 matrix per complete window."""
    from eplbench.problem import as_weight_matrix

    path = Path(path)
    try:
        history = json.loads(path.read_text())["load_history"]
        records = [record["logical_expert_load"] for record in history]
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BadInput(f"{path}: not an expert-load.json "
                       f"(needs load_history[k].logical_expert_load; {type(error).__name__}: "
                       f"{error})") from None
    if not records:
        raise BadInput(f"{path}: load_history is empty")
    matrices = [as_weight_matrix(record, source=f"{path} record {index}")
                for index, record in enumerate(records)]
    shapes = {matrix.shape for matrix in matrices}
    if len(shapes) > 1:
        raise BadInput(f"{path}: records have different shapes {sorted(shapes)}")
    size = window or len(matrices)
    if size < 1 or size > len(matrices):
        raise BadInput(f"{path}: window of {size} records, but the file holds {len(matrices)}")
    return [np.sum(matrices[start:start + size], axis=0)
            for start in range(0, len(matrices) - size + 1, size)]


def import_loads(path: str | Path, window: int | None = None) -> list[np.ndarray]:
    """[L, E] int64 matrices from any supported file: one per window for expert-load.json
    (a .json with `load_history`), else the one matrix the file holds."""
    from eplbench.problem import as_weight_matrix

    path = Path(path)
    if path.suffix.lower() == ".json" and path.is_file() and '"load_history"' in path.read_text():
        return read_expert_load_json(path, window)
    return [as_weight_matrix(read_matrix(path, key="weight"), source=str(path))]
