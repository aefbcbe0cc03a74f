"""Instances: families, named sets, sets on disk and importers of real load dumps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from eplbench.errors import BadInput
from eplbench.instances.instance import Instance
from eplbench.instances.named import SETS, build_set
from eplbench.instances.store import load_set, save_set

BUNDLED = Path(__file__).parent / "data"

__all__ = ["Instance", "load_instances", "list_instance_sets", "reference_path", "save_set",
           "load_set", "with_policy", "where_defined"]


def list_instance_sets() -> dict[str, str]:
    """Set name -> "bundled" (ships with the package) or "generated" (built on request)."""
    bundled = {path.name for path in BUNDLED.iterdir() if (path / "manifest.json").is_file()}
    return {name: "bundled" if name in bundled else "generated"
            for name in sorted(set(SETS) | bundled)}


def reference_path(name_or_path: str) -> Path | None:
    """The reference-value file that goes with a set folder or a bundled set, if any."""
    for folder in (Path(name_or_path), BUNDLED / name_or_path):
        if (folder / "reference.json").is_file():
            return folder / "reference.json"
    return None


def load_instances(name_or_path: str) -> list[Instance]:
    """A set folder, a bundled set name or a named set (generated in memory)."""
    path = Path(name_or_path)
    if path.is_dir():
        return load_set(path)
    if (BUNDLED / name_or_path / "manifest.json").is_file():
        return load_set(BUNDLED / name_or_path)
    if name_or_path in SETS:
        return build_set(name_or_path)
    raise BadInput(f"{name_or_path}: not a set folder nor a known set "
                   f"({', '.join(list_instance_sets())})")


def where_defined(instances: list[Instance], policy: str) -> tuple[list[Instance], list[str]]:
    """(the instances whose topology defines `policy`, with it declared; the ids of the
    others); BadInput when no instance defines it."""
    kept, left = [], []
    for instance in instances:
        if instance.topology.defines(instance.num_experts, policy):
            kept.append(instance)
        else:
            left.append(instance.id)
    if not kept:
        raise BadInput(f"no instance's topology defines the {policy} policy")
    return with_policy(kept, policy), left


def with_policy(instances: list[Instance], policy: str | None) -> list[Instance]:
    """`instances` with `policy` declared instead of their own (None: unchanged); BadInput
    naming the first instance whose topology does not define it."""
    if policy is None:
        return instances
    declared = []
    for instance in instances:
        try:
            declared.append(dataclasses.replace(instance, policy=policy))
        except BadInput as error:
            raise BadInput(f"{instance.id}: cannot declare the {policy} policy: {error}") from None
    return declared
