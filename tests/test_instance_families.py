"""Families, the routing simulator, generation determinism and the importers."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from eplbench import BadInput
from eplbench.cli import main
from eplbench.instances import load_set
from eplbench.instances.families import FAMILIES, generate
from eplbench.instances.families.routing import route, simulate_windows
from eplbench.instances.importers import import_loads


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_deterministic_and_seed_sensitive(family):
    first = generate(family, 5, 3, 16)
    assert first.dtype == np.int64 and first.shape == (3, 16) and (first >= 0).all()
    assert np.array_equal(first, generate(family, 5, 3, 16))
    assert not np.array_equal(first, generate(family, 6, 3, 16))


def test_generate_command_twice_is_byte_identical_and_seed_changes_it(tmp_path):
    def run(out, seed):
        args = ["instances", "generate", "--family", "zipf", "--param", "s=1.2", "--seed",
                str(seed), "--count", "3", "--out", str(out)]
        assert CliRunner().invoke(main, args).exit_code == 0
        return (out / "loads.npz").read_bytes(), (out / "manifest.json").read_bytes()

    assert run(tmp_path / "a", 1) == run(tmp_path / "b", 1)
    assert run(tmp_path / "c", 2)[0] != run(tmp_path / "a", 1)[0]
    assert len(load_set(tmp_path / "a")) == 3


def test_routing_tokens_and_group_limits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=64)
    choices = route(rng, logits, tokens=500, top_k=6, groups=8, topk_groups=3, temperature=1.0)
    assert choices.shape == (500, 6)
    assert all(len(set(row)) == 6 for row in choices.tolist())
    groups_used = [len({e // 8 for e in row}) for row in choices.tolist()]
    assert max(groups_used) <= 3
    loads = generate("routing", 1, 2, 64, tokens=500, top_k=6, groups=8, topk_groups=3)
    assert loads.sum(1).tolist() == [3000, 3000]


def test_routing_windows_drift_but_stay_correlated():
    rng = np.random.Generator(np.random.PCG64(4))
    windows = simulate_windows(rng, 4, 64, 5, tokens=4096, top_k=8, groups=8, topk_groups=4,
                               sigma=1.0, temperature=1.0, drift=0.9)
    for before, after in zip(windows[:-1], windows[1:]):
        assert not np.array_equal(before, after)
        for layer in range(4):
            ranks = [np.argsort(np.argsort(w[layer])) for w in (before, after)]
            rho = np.corrcoef(*ranks)[0, 1]
            assert 0.5 < rho < 0.995, rho


def write_expert_load(path, records):
    path.write_text(json.dumps({"load_history": [{"logical_expert_load": r} for r in records]}))
    return path


def test_expert_load_json_windows(tmp_path):
    records = [[[1, 2, 3], [4, 5, 6]], [[10, 20, 30], [40, 50, 60]], [[1, 1, 1], [1, 1, 1]]]
    path = write_expert_load(tmp_path / "expert-load.json", records)
    assert [m.tolist() for m in import_loads(path, window=2)] == [[[11, 22, 33], [44, 55, 66]]]
    assert import_loads(path)[0].tolist() == [[12, 23, 34], [45, 56, 67]]


def test_plain_matrix_formats(tmp_path):
    matrix = np.array([[1, 2], [3, 4]])
    np.save(tmp_path / "w.npy", matrix)
    torch.save(torch.tensor(matrix), tmp_path / "w.pt")
    (tmp_path / "w.csv").write_text("1,2\n3,4\n")
    for name in ("w.npy", "w.pt", "w.csv"):
        assert import_loads(tmp_path / name)[0].tolist() == matrix.tolist()


@pytest.mark.parametrize("name, content, message", [
    ("rank.npy", np.arange(4), "got 1 dimensions"),
    ("negative.csv", "1,-2\n3,4\n", "negative values"),
    ("nan.csv", "1,nan\n3,4\n", "NaN or infinite"),
    ("ragged.csv", "1,2\n3\n", "ragged rows"),
    ("empty.csv", "", "got 1 dimensions|empty"),
    ("fraction.csv", "1.5,2\n3,4\n", "fractional"),
    ("history.json", {"load_history": []}, "load_history is empty"),
    ("records.json", {"load_history": [{"logical_expert_load": [[1, 2]]},
                                       {"logical_expert_load": [[1, 2, 3]]}]},
     "records have different shapes"),
    ("nohistory.json", {"something": 1}, "expected a matrix"),
    ("type.txt", "1,2", "unsupported file type"),
])
def test_malformed_inputs_give_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content))
    else:
        path.write_text(content)
    with pytest.raises(BadInput, match=message) as caught:
        import_loads(path)
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_import_command_writes_a_set(tmp_path):
    path = write_expert_load(tmp_path / "expert-load.json", [[[5, 1, 1, 1]]] * 4)
    out = tmp_path / "set"
    result = CliRunner().invoke(main, ["instances", "import", str(path), "--topology",
                                       "8,2,1,2", "--window", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [i.weight.tolist() for i in load_set(out)] == [[[10, 2, 2, 2]]] * 2
    bad = CliRunner().invoke(main, ["instances", "import", str(path), "--topology", "2,1,1,2",
                                    "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "smaller than num_experts=4" in bad.output
