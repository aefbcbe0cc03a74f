from pathlib import Path

import pytest
import torch

import eplbench as eb
from eplbench import BadInput

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"


def test_builtins_listed_and_loadable():
    names = eb.list_heuristics()
    assert {"deepseek", "deepseek_fast"} <= set(names)
    for name in names:
        assert eb.load_heuristic(name).name == name


def test_file_and_module_specs_load():
    weight = torch.randint(0, 100, (2, 8))
    from_file = eb.load_heuristic(str(HEURISTICS / "round_robin.py"))
    from_module = eb.load_heuristic("eplbench.heuristics.deepseek_fast:rebalance_experts")
    topo = eb.Topology(12, 2, 1, 4)
    for heuristic in (from_file, from_module):
        eb.check_output(weight, heuristic(weight, *topo.as_tuple()), topo)


@pytest.mark.parametrize("spec, message", [
    ("no_such_heuristic", "unknown heuristic 'no_such_heuristic'"),
    ("missing/file.py", "missing/file.py: no such file"),
    (str(HEURISTICS / "no_entry.py"), "no_entry.py: defines no callable rebalance_experts"),
    ("eplbench.nowhere:f", "cannot import eplbench.nowhere"),
    ("eplbench.heuristics.deepseek:nothing", "defines no callable nothing"),
])
def test_unloadable_specs_name_the_problem(spec, message):
    with pytest.raises(BadInput, match=message):
        eb.load_heuristic(spec)


def test_import_error_in_user_file(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def rebalance_experts(:\n")
    with pytest.raises(BadInput, match="broken.py: import failed: SyntaxError"):
        eb.load_heuristic(str(bad))


def test_timed_call_batches_only_under_a_coarse_clock(monkeypatch):
    """A call shorter than MIN_TICKS clock ticks is repeated and averaged; with a fine clock
    it runs once. The clock is a fake that advances one second per reading."""
    import itertools

    from eplbench import timing

    monkeypatch.setattr(timing.time, "perf_counter", itertools.count().__next__)
    calls = []
    monkeypatch.setattr(timing, "_tick", 1e-12)
    assert timing.timed_call(lambda: calls.append(1) or "out")[0] == "out"
    assert len(calls) == 1
    monkeypatch.setattr(timing, "_tick", 10.0)  # a 1 s call spans 0.1 tick: 21 more calls
    output, seconds = timing.timed_call(lambda: calls.append(1) or "out")
    assert output == "out" and len(calls) == 1 + 1 + 21 and seconds == 1 / 21
