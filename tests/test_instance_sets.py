import numpy as np
import pytest

import eplbench as eb
from eplbench import BadInput
from eplbench.instances import load_set, save_set
from eplbench.instances.named import build_set


@pytest.mark.parametrize("name", ["tiny", "small", "medium-cut", "deepseek-v3-cut"])
def test_bundled_sets_load_match_their_recipes_and_have_references(name):
    from eplbench.instances import reference_path
    from eplbench.reference import read_reference

    assert eb.list_instance_sets()[name] == "bundled"
    bundled = eb.load_instances(name)
    rebuilt = build_set(name)
    assert [i.id for i in bundled] == [i.id for i in rebuilt]
    for a, b in zip(bundled, rebuilt):
        assert np.array_equal(a.weight, b.weight) and a.topology == b.topology
    keys = {(e.instance_hash, e.layer, e.policy) for e in read_reference(reference_path(name))}
    for instance in bundled:
        for layer in range(instance.num_layers):
            assert (instance.content_hash, layer, "global") in keys


def test_same_set_written_twice_is_byte_identical(tmp_path):
    instances = build_set("tiny")
    first = save_set(tmp_path / "a", "tiny", instances)
    second = save_set(tmp_path / "b", "tiny", build_set("tiny"))
    for name in ("manifest.json", "loads.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_tampered_loads_are_refused(tmp_path):
    folder = save_set(tmp_path / "set", "tiny", build_set("tiny"))
    with np.load(folder / "loads.npz") as loads:
        arrays = {key: loads[key] for key in loads.files}
    arrays["loads_0"][0, 0] += 1
    np.savez(folder / "loads.npz", **arrays)
    with pytest.raises(BadInput, match="does not match its sha256"):
        load_set(folder)


def test_unreadable_set_names_the_file(tmp_path):
    folder = save_set(tmp_path / "set", "tiny", build_set("tiny"))
    (folder / "loads.npz").write_bytes(b"garbage")
    with pytest.raises(BadInput, match="loads.npz: unreadable"):
        load_set(folder)
    with pytest.raises(BadInput, match="not an instance set"):
        load_set(tmp_path)


def test_unknown_set_name():
    with pytest.raises(BadInput, match="not a set folder nor a known set"):
        eb.load_instances("nonexistent-set")
