"""Instance sets on disk: one folder with `manifest.json` and `loads.npz` (spec §5).

The manifest lists every instance with its family, params, seed, topology, shape and the
sha256 of its content; loading recomputes each hash and refuses a set that does not match.
A new set is staged in a temporary folder renamed into place; in an existing folder only the
set's files are replaced, each through a temporary beside it, so a failure leaves no half set
and no other file is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eplbench.atomic import _umask, replaced_atomically
from eplbench.errors import BadInput
from eplbench.instances.instance import Instance
from eplbench.problem import Topology

MANIFEST = "manifest.json"
LOADS = "loads.npz"
FORMAT_VERSION = 1


def save_set(folder: str | os.PathLike, name: str, instances: list[Instance],
             force: bool = False, on_warning: Callable[[str], None] | None = None) -> Path:
    """Write `instances` as the set `name` into `folder`. Returns the folder.

    A new folder is written in a staging folder beside it and renamed into place. In an
    existing folder only the set's files (manifest.json, loads.npz) are replaced, each written
    to a temporary beside it first; every other file stays. A non-empty folder that is not an
    eplbench set, or one whose reference.json no longer matches the new set, is refused
    (BadInput) unless `force`; with `force` the reference file is kept and `on_warning` (by
    default `warnings.warn`) is told. Nothing eplbench did not write is ever deleted.
    """
    folder = Path(folder)
    ids = [instance.id for instance in instances]
    if len(set(ids)) != len(ids):
        raise BadInput(f"{folder}: duplicate instance ids in set {name!r}")
    manifest = {"name": name, "format_version": FORMAT_VERSION,
                "instances": [_entry(instance) for instance in instances]}
    arrays = {f"loads_{index}": instance.weight for index, instance in enumerate(instances)}
    if folder.exists() or folder.is_symlink():
        warn = on_warning or (lambda message: warnings.warn(message, stacklevel=3))
        _check_existing(folder, instances, force, warn)
        _replace_set_files(folder, manifest, arrays)
    else:
        _write_new_folder(folder, manifest, arrays)
    return folder


def _check_existing(folder: Path, instances: list[Instance], force: bool,
                    warn: Callable[[str], None]) -> None:
    """Refuse (BadInput) to write into `folder` what would clobber a user's files."""
    if not folder.is_dir():
        raise BadInput(f"{folder}: exists and is not a folder")
    if not _is_set_folder(folder) and any(folder.iterdir()) and not force:
        raise BadInput(f"{folder}: not empty and not an instance set (no {MANIFEST}); "
                       f"pass --force to write the set's files into it (other files are kept)")
    from eplbench.reference import FILENAME, read_reference  # lazily: it imports the solvers

    reference = folder / FILENAME
    if not reference.is_file():
        return
    try:
        entries = read_reference(reference)
    except BadInput as error:
        if not force:
            raise BadInput(f"{error}; pass --force to write the set anyway "
                           f"(the reference file is kept)") from None
        warn(f"{error}; the set was written and the reference file left as it was")
        return
    hashes = {instance.content_hash for instance in instances}
    stale = sum(entry.instance_hash not in hashes for entry in entries)
    if not stale:
        return
    message = (f"{reference}: {stale} of {len(entries)} entries no longer match an instance "
               f"of the new set")
    if not force:
        raise BadInput(f"{message}; pass --force to write the set anyway "
                       f"(the reference file is kept)")
    warn(f"{message}; the set was written and the reference file left as it was")


def _is_set_folder(folder: Path) -> bool:
    """Whether `folder` holds an eplbench set's manifest (not some other manifest.json)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest \
        and isinstance(manifest.get("instances"), list)


def _replace_set_files(folder: Path, manifest: dict, arrays: dict) -> None:
    """Both set files written to temporaries in `folder`, then each renamed over its file
    (loads first, the manifest last); a failure before the renames changes nothing."""
    with replaced_atomically(folder / MANIFEST) as manifest_tmp, \
            replaced_atomically(folder / LOADS) as loads_tmp:
        _write_npz(Path(loads_tmp), arrays)
        Path(manifest_tmp).write_text(json.dumps(manifest, indent=1) + "\n")


def _write_new_folder(folder: Path, manifest: dict, arrays: dict) -> None:
    """The set written in a fresh staging folder beside `folder`, renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a set is ordinary data
        _write_npz(staging / LOADS, arrays)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.rename(staging, folder)  # fails on a folder that appeared meanwhile, unless empty
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only ever our own staging folder
        raise


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
            "policy": instance.policy,
            "shape": list(instance.weight.shape), "sha256": instance.content_hash}


def _instance(entry: dict, index: int, arrays: dict, folder: Path) -> Instance:
    key = f"loads_{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("topology"), dict):
        raise BadInput(f"{folder / MANIFEST}: instance {index} is not an object with a "
                       "topology object")
    try:
        weight = arrays[key]
        instance = Instance(id=entry["id"], weight=weight.astype(np.int64),
                            topology=Topology(**entry["topology"]), family=entry["family"],
                            params=entry.get("params", {}), seed=entry.get("seed"),
                            policy=entry.get("policy"))
    except KeyError as error:
        raise BadInput(f"{folder}: instance {index} lacks {error}") from None
    except TypeError as error:  # a topology with unknown or missing fields
        raise BadInput(f"{folder / MANIFEST}: instance {index}: {error}") from None
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
