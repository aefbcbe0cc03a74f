"""Heuristic runtime on the DeepSeek-V3 shape, one thread (pytest-benchmark).

    pytest benchmarks/ --benchmark-group-by=param:policy

For the speed ratio from calls interleaved in one process, run `eplbench bench`.
"""

import pytest
import torch

from eplbench.heuristics import list_heuristics, load_heuristic
from eplbench.timing import DEEPSEEK_V3_SHAPE, deepseek_v3_weight

HEURISTICS = sorted(list_heuristics())


@pytest.fixture(scope="module")
def weight():
    torch.set_num_threads(1)
    return deepseek_v3_weight()


@pytest.mark.parametrize("policy", ["hierarchical", "global"])
@pytest.mark.parametrize("name", HEURISTICS)
def test_speed(benchmark, weight, name, policy):
    heuristic = load_heuristic(name)
    topology = DEEPSEEK_V3_SHAPE[policy]
    rounds = 3 if name == "deepseek" else 30
    benchmark.pedantic(heuristic, args=(weight, *topology), rounds=rounds, warmup_rounds=1)
