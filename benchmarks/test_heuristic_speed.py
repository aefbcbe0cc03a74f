"""Heuristic runtime on the model-shaped sets, one thread (pytest-benchmark).

    pytest benchmarks/ --benchmark-group-by=param:instance_set
    pytest benchmarks/ -k "swap_search or deepseek_fast" --benchmark-compare

Each set is one instance shaped like the model (routing-simulator loads): deepseek-v3 and
adrs under the hierarchical policy (8 groups on 4 nodes), qwen3-moe and kimi-k2 global.
For speed ratios from calls interleaved in one process, run `eplbench bench` or
`eplbench run -i deepseek-v3`.
"""

import pytest
import torch

from eplbench.heuristics import list_heuristics, load_heuristic
from eplbench.instances import load_instances

HEURISTICS = sorted(list_heuristics())
MODEL_SHAPED = ["deepseek-v3", "qwen3-moe", "kimi-k2", "adrs"]


@pytest.fixture(scope="module", params=MODEL_SHAPED)
def instance_set(request):
    torch.set_num_threads(1)
    instance = load_instances(request.param)[0]
    return request.param, torch.from_numpy(instance.weight), instance.topology.as_tuple()


@pytest.mark.parametrize("name", HEURISTICS)
def test_speed(benchmark, instance_set, name):
    _, weight, topology = instance_set
    heuristic = load_heuristic(name)
    rounds = 3 if name == "deepseek" else 20
    benchmark.pedantic(heuristic, args=(weight, *topology), rounds=rounds, warmup_rounds=1)
