"""The engines' current interfaces plug in unchanged: vLLM's policy form (num_ranks, an
optional plan in place, phy2log alone) and SGLang's (loads per step, slots per GPU, the
hierarchy as a flag, int32 maps) score exactly as DeepSeek's algorithm they wrap."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import eplbench as eb
from eplbench.cli import main

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"
ENGINE_FILES = [str(HEURISTICS / "vllm_style.py"), str(HEURISTICS / "sglang_style.py")]


@pytest.mark.parametrize("spec", ENGINE_FILES, ids=["vllm", "sglang"])
def test_engine_forms_give_deepseeks_placement(spec):
    heuristic, deepseek = eb.load_heuristic(spec), eb.load_heuristic("deepseek_fast")
    for instance in eb.load_instances("tiny"):
        weight = torch.from_numpy(instance.weight)
        args = instance.topology.as_tuple()
        mine = eb.check_output(weight, heuristic(weight, *args), instance.topology)
        theirs = eb.check_output(weight, deepseek(weight, *args), instance.topology)
        assert mine.phy2log.tolist() == theirs.phy2log.tolist(), instance.id


def test_engine_files_run_unchanged_as_user_files(tmp_path):
    out = tmp_path / "results.parquet"
    result = CliRunner().invoke(main, ["run", "-H", ",".join(["deepseek_fast", *ENGINE_FILES]),
                                       "-i", "tiny", "--repeats", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).set_index(["instance", "layer", "heuristic"])
    assert table.valid.all()
    loads = table.max_load.unstack("heuristic")
    for spec in ENGINE_FILES:
        assert (loads[spec] == loads["deepseek_fast"]).all()


def test_the_sglang_form_is_told_the_hierarchy_deepseek_would_choose():
    """Where groups do not divide over nodes, the flag is False (the global policy)."""
    seen = []

    def sglang(tokens_per_expert, num_physical_experts, num_local_physical_experts,
               num_groups, num_nodes, enable_hierarchical):
        seen.append((tuple(tokens_per_expert.shape), num_local_physical_experts,
                     enable_hierarchical))
        return None

    adapted = eb.heuristics.engine_form(sglang)
    adapted(torch.zeros(2, 6), 12, 2, 2, 4)
    adapted(torch.zeros(2, 6), 12, 3, 2, 4)
    assert seen == [((1, 2, 6), 3, True), ((1, 2, 6), 3, False)]


def test_attribution_reads_a_bare_phy2log(tmp_path):
    """The packing stage is solved on the placement itself when phy2log comes alone."""
    out = tmp_path / "results.parquet"
    result = CliRunner().invoke(main, ["run", "-H", ENGINE_FILES[0], "-i", "tiny", "--repeats",
                                       "1", "--attribution", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).set_index(["instance", "layer", "heuristic"])
    bounds = table[["pack_ub_num", "pack_ub_den"]].unstack("heuristic")
    assert (bounds.xs(ENGINE_FILES[0], level=1, axis=1)
            == bounds.xs("deepseek", level=1, axis=1)).all().all()
