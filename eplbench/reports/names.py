"""How tables and figures name heuristics: short, and never two alike."""

from __future__ import annotations

from pathlib import Path


def short_names(names) -> dict[str, str]:
    """Name -> what a table shows: a file spec by the shortest tail of its path that no
    other name shares (`mine.py`, `a/mine.py`), anything else as it is."""
    names = list(dict.fromkeys(names))
    shown = {}
    for name in names:
        parts = Path(name).parts if name.endswith(".py") else (name,)
        for size in range(1, len(parts) + 1):
            tail = str(Path(*parts[-size:]))
            if not any(other != name and (other == tail or other.endswith("/" + tail))
                       for other in names):
                break
        shown[name] = tail
    return shown
