"""Instance sets on disk: one folder with `manifest.json` and `loads.npz` (SPEC 5).

The manifest lists every instance with its family, params, seed, topology, shape and the
sha256 of its content; loading recomputes each hash and refuses a set that does not match.
Writes go to a temporary folder that is renamed into place, so a failure leaves no half set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from eplbench.errors import BadInput
from eplbench.instances.instance import Instance
from eplbench.problem import Topology

MANIFEST = "manifest.json"
LOADS = "loads.npz"
FORMAT_VERSION = 1


def save_set(folder: str | os.PathLike, name: str, instances: list[Instance]) -> Path:
    """Write `instances` as the set `name` into `folder` (replaced whole). Returns the folder."""
    folder = Path(folder)
    ids = [instance.id for instance in instances]
    if len(set(ids)) != len(ids):
        raise BadInput(f"{folder}: duplicate instance ids in set {name!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a set folder is ordinary data
    try:
        manifest = {"name": name, "format_version": FORMAT_VERSION,
                    "instances": [_entry(instance) for instance in instances]}
        arrays = {f"loads_{index}": instance.weight for index, instance in enumerate(instances)}
        _write_npz(staging / LOADS, arrays)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_set(folder: str | os.PathLike) -> list[Instance]:
    """Read a set folder, verifying every content hash. Raises BadInput naming the file."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BadInput(f"{folder}: not an instance set (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["instances"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BadInput(f"{manifest_path}: malformed manifest ({error})") from None
    try:
        with np.load(folder / LOADS) as loads:
            arrays = {key: loads[key] for key in loads.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise BadInput(f"{folder / LOADS}: unreadable ({error})") from None
    return [_instance(entry, index, arrays, folder) for index, entry in enumerate(entries)]


def _entry(instance: Instance) -> dict:
    return {"id": instance.id, "family": instance.family, "params": instance.params,
            "seed": instance.seed, "topology": instance.topology.__dict__,
            "shape": list(instance.weight.shape), "sha256": instance.content_hash}


def _instance(entry: dict, index: int, arrays: dict, folder: Path) -> Instance:
    key = f"loads_{index}"
    try:
        weight = arrays[key]
        instance = Instance(id=entry["id"], weight=weight.astype(np.int64),
                            topology=Topology(**entry["topology"]), family=entry["family"],
                            params=entry.get("params", {}), seed=entry.get("seed"))
    except KeyError as error:
        raise BadInput(f"{folder}: instance {index} lacks {error}") from None
    if instance.content_hash != entry.get("sha256"):
        raise BadInput(f"{folder / LOADS}: content of instance {entry['id']!r} does not match "
                       f"its sha256 in {MANIFEST} (file changed or corrupt)")
    return instance


def _write_npz(path: Path, arrays: dict) -> None:
    """Deterministic npz (fixed member timestamps), so the same set gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array, dtype="<i8"))
