"""Reference values (spec §6), like MIPLIB's .solu files: per instance layer and policy, the
best known ub, the best proven lb, the status and who proved them.

Merging keeps the min ub and the max lb; an lb above an ub is an error naming both sources.
Stored as JSON with exact rationals written "num/den". A reference file holds values and
provenance only, never the placements (a candidate could look the answers up): those go to
a separate placements file (`write_placements`) when a solve is asked to keep them.
Every reader validates what it reads (`read_reference`, `check_for_set`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from eplbench.atomic import write_text_atomic
from eplbench.errors import BadInput
from eplbench.solvers.result import FEASIBLE, OPTIMAL

FORMAT_VERSION = 1
FILENAME = "reference.json"


@dataclass
class ReferenceEntry:
    """One layer's reference. ub_source / lb_source: "solver@origin" of each bound;
    phy2log: the placement at ub ([P] expert ids) when it came from a solve in this
    process, else empty (reference files do not store it)."""

    instance: str
    instance_hash: str
    layer: int
    policy: str
    ub: Fraction
    lb: Fraction
    ub_source: str
    lb_source: str
    phy2log: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return OPTIMAL if self.ub == self.lb else FEASIBLE

    @property
    def key(self) -> tuple:
        return (self.instance_hash, self.layer, self.policy)


def entry_from_result(instance, layer: int, policy: str, result, origin: str) -> ReferenceEntry:
    """A reference entry from a SolveResult (solver name tagged with `origin`)."""
    source = f"{result.solver} {result.version}@{origin}"
    return ReferenceEntry(instance.id, instance.content_hash, layer, policy, result.ub,
                          result.lb, source, source, result.phy2log.tolist(),
                          dict(result.params))


def policies_for(instance, policies: list[str]) -> list[str]:
    """The policies of `policies` that `instance`'s topology defines (hierarchical only
    where its experts and groups divide; distinct only where its slots allow one replica
    of an expert per GPU)."""
    return [policy for policy in policies
            if instance.topology.defines(instance.num_experts, policy)]


def solve_entries(unit: tuple, solver: str, time_limit: float, workers: int,
                  origin: str) -> list[ReferenceEntry]:
    """Entries for every layer of one (instance, policy) unit, solved by `solver`."""
    from eplbench.solvers import solve

    instance, policy = unit
    results = solve(instance.weight, instance.topology, policy, solver, time_limit, workers)
    return [entry_from_result(instance, layer, policy, result, origin)
            for layer, result in enumerate(results)]


def settled(entries: dict[tuple, ReferenceEntry], instance, policy: str, solver: str,
            time_limit: float) -> bool:
    """Whether every layer of (instance, policy) has an entry that a new solve by `solver`
    within `time_limit` cannot better: certified optimal, or from the same solver with at
    least that limit (what a resumed `eplbench solve` skips)."""
    def done(entry):
        return entry is not None and (entry.status == OPTIMAL or (
            entry.lb_source.split(" ")[0] == solver
            and float(entry.params.get("time_limit", 0)) >= time_limit))
    return all(done(entries.get((instance.content_hash, layer, policy)))
               for layer in range(instance.num_layers))


def merge(entries: list[ReferenceEntry]) -> dict[tuple, ReferenceEntry]:
    """Keyed by (instance_hash, layer, policy): min ub, max lb; BadInput if lb > ub."""
    merged: dict[tuple, ReferenceEntry] = {}
    for entry in entries:
        old = merged.get(entry.key)
        if old is None:
            merged[entry.key] = entry
            continue
        best_ub = old if old.ub <= entry.ub else entry
        best_lb = old if old.lb >= entry.lb else entry
        if best_lb.lb > best_ub.ub:
            raise BadInput(f"inconsistent reference for {entry.instance} layer {entry.layer} "
                           f"({entry.policy}): lb {best_lb.lb} from {best_lb.lb_source} exceeds "
                           f"ub {best_ub.ub} from {best_ub.ub_source}")
        merged[entry.key] = ReferenceEntry(
            entry.instance, entry.instance_hash, entry.layer, entry.policy, best_ub.ub,
            best_lb.lb, best_ub.ub_source, best_lb.lb_source, best_ub.phy2log, best_ub.params)
    return merged


def read_reference(path: str | os.PathLike) -> list[ReferenceEntry]:
    """Entries of a reference file; BadInput naming the file when it is malformed, holds
    an lb above its ub, or more than one entry for an instance, layer and policy."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        entries = [ReferenceEntry(**{**_without(raw, "status", "phy2log"),
                                     "ub": Fraction(raw["ub"]), "lb": Fraction(raw["lb"])})
                   for raw in data["entries"]]
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise BadInput(f"{path}: malformed reference file ({type(error).__name__}: {error})") \
            from None
    seen = set()
    for entry in entries:
        where = f"{path}: {entry.instance} layer {entry.layer} ({entry.policy})"
        if entry.lb > entry.ub or entry.lb < 0:
            raise BadInput(f"{where}: lb {entry.lb} is above ub {entry.ub} or negative")
        if entry.key in seen:
            raise BadInput(f"{where}: more than one entry")
        seen.add(entry.key)
    return entries


def check_for_set(entries: list[ReferenceEntry], instances, path) -> list[ReferenceEntry]:
    """The entries that belong to `instances`; BadInput naming `path` for an entry that
    names an instance of the set but holds another content hash, or a layer it lacks.
    Entries of other sets' instances (neither id nor hash known here) are left out."""
    by_hash = {instance.content_hash: instance for instance in instances}
    ids = {instance.id for instance in instances}
    mine = []
    for entry in entries:
        instance = by_hash.get(entry.instance_hash)
        if instance is None:
            if entry.instance in ids:
                raise BadInput(f"{path}: the entry for {entry.instance} holds a content hash "
                               "that matches no instance of the set (stale or edited)")
            continue
        if instance.id != entry.instance or not 0 <= entry.layer < instance.num_layers:
            raise BadInput(f"{path}: an entry names {entry.instance} layer {entry.layer} but "
                           f"holds the hash of {instance.id} ({instance.num_layers} layers)")
        mine.append(entry)
    return mine


def _without(raw: dict, *keys: str) -> dict:
    """The stored row less derived fields (status follows from ub and lb) and placements."""
    return {k: v for k, v in raw.items() if k not in keys}


def write_reference(path: str | os.PathLike, entries) -> Path:
    """Write entries (sorted, exact rationals as "num/den", no placements) atomically."""
    path = Path(path)
    rows = []
    for entry in sorted(entries, key=lambda e: (e.instance, e.layer, e.policy)):
        row = _without(asdict(entry), "phy2log")
        row["ub"], row["lb"], row["status"] = str(entry.ub), str(entry.lb), entry.status
        rows.append(row)
    return _write_rows(path, "entries", rows)


def write_placements(path: str | os.PathLike, entries) -> Path:
    """Write the placement at each entry's ub ("phy2log": [P] expert ids), where it has one,
    merged over the placements already in `path` (an entry's replaces the stored one when
    its ub is no higher). Keep this file away from candidates: it holds the answers."""
    path = Path(path)
    stored = {}
    if path.exists():
        try:
            stored = {(row["instance_hash"], row["layer"], row["policy"]): row
                      for row in json.loads(path.read_text())["placements"]}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise BadInput(f"{path}: malformed placements file ({error})") from None
    for entry in entries:
        old = stored.get(entry.key)
        if entry.phy2log and (old is None or entry.ub <= Fraction(old["ub"])):
            stored[entry.key] = {"instance": entry.instance, "instance_hash": entry.instance_hash,
                                 "layer": entry.layer, "policy": entry.policy,
                                 "ub": str(entry.ub), "phy2log": list(entry.phy2log)}
    rows = sorted(stored.values(), key=lambda r: (r["instance"], r["layer"], r["policy"]))
    return _write_rows(path, "placements", rows)


def _write_rows(path: Path, key: str, rows: list[dict]) -> Path:
    """`{"format_version": ..., key: [rows]}` atomically, one row per line (small diffs,
    easy to grep)."""
    lines = ",\n".join(json.dumps(row) for row in rows)
    write_text_atomic(path, f'{{"format_version": {FORMAT_VERSION}, "{key}": [\n{lines}\n]}}\n')
    return path
