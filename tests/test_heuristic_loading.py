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
    """A call shorter than MIN_TICKS clock ticks is repeated in doubling batches until a batch
    spans them; with a fine clock it runs once. The fake clock reads the number of calls made,
    so every call lasts exactly one unit."""
    from eplbench import timing

    calls = []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(len(calls)))
    monkeypatch.setattr(timing, "_tick", 1e-12)
    assert timing.timed_call(lambda: calls.append(1) or "out") == ("out", 1.0)
    assert len(calls) == 1
    calls.clear()
    monkeypatch.setattr(timing, "_tick", 10.0)  # 5 ticks = 50 units: batches up to 64
    assert timing.timed_call(lambda: calls.append(1) or "out") == ("out", 1.0)
    assert len(calls) == 1 + 2 + 4 + 8 + 16 + 32 + 64


def test_the_plan_in_place_reaches_only_a_heuristic_that_takes_it():
    """vLLM's keyword is found from the signature and the plan passed by it; a five-argument
    heuristic is called as the engines call it, whatever is given."""
    weight = torch.tensor([[90, 10, 40, 30, 25, 5, 60, 20]])
    topology = (12, 4, 2, 4)
    vllm, deepseek = eb.load_heuristic("vllm"), eb.load_heuristic("deepseek")
    assert (vllm.old_plan_keyword, deepseek.old_plan_keyword) == ("old_global_expert_indices", None)
    old = torch.arange(12).remainder(8)[None, :].flip(-1)
    from eplbench.heuristics.vllm import rebalance_experts

    given = vllm(weight, *topology, old_plan=old)[0]
    assert torch.equal(given, rebalance_experts(weight, *topology,
                                                old_global_expert_indices=old)[0])
    assert not torch.equal(given, vllm(weight, *topology)[0])
    assert torch.equal(deepseek(weight, *topology, old_plan=old)[0], deepseek(weight, *topology)[0])


def test_name_plus_relabel_keeps_the_loads_and_moves_no_more(tmp_path):
    """deepseek+relabel: the engines' call gives DeepSeek's output; given the plan in place,
    the same max loads with fewer weights received (6 -> 2 on this rebalance); a file spec
    keeps its suffix when made absolute."""
    from eplbench.heuristics import absolute_spec

    topology, topo = (12, 4, 2, 4), eb.Topology(12, 4, 2, 4)
    deepseek, wrapped = eb.load_heuristic("deepseek"), eb.load_heuristic("deepseek+relabel")
    before = torch.tensor([[90, 10, 40, 30, 25, 5, 60, 20]])
    after = torch.tensor([[10, 90, 30, 40, 5, 25, 20, 60]])
    old = deepseek(before, *topology)[0]
    assert torch.equal(wrapped(after, *topology)[0], deepseek(after, *topology)[0])
    fresh, kept = deepseek(after, *topology)[0], wrapped(after, *topology, old_plan=old)
    assert eb.check(after, kept, topo).max_load == eb.check(after, fresh, topo).max_load
    assert (eb.migration(old, fresh, topo).received[0],
            eb.migration(old, kept, topo).received[0]) == (6, 2)
    (tmp_path / "mine.py").write_text("from eplbench.heuristics.deepseek import rebalance_experts\n")
    spec = str(tmp_path / "mine.py") + "+relabel"
    assert eb.load_heuristic(spec).old_plan_keyword == "old_phy2log"
    assert absolute_spec("deepseek+relabel") == "deepseek+relabel"
    assert absolute_spec(spec) == spec  # already absolute: unchanged, suffix kept
