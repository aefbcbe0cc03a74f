"""The DeepSeek port reproduces the reference's README example; the vectorised twin equals
the port on every input (ties, zero loads, both policies, 1-8 nodes)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eplbench import Topology, check_output
from eplbench.heuristics import deepseek, deepseek_fast

IMPLEMENTATIONS = [deepseek.rebalance_experts, deepseek_fast.rebalance_experts]


@pytest.mark.parametrize("rebalance", IMPLEMENTATIONS, ids=["deepseek", "deepseek_fast"])
@pytest.mark.parametrize("case_index", [0, 1], ids=["hierarchical", "global"])
def test_readme_example_reproduced_exactly(readme_example, rebalance, case_index):
    case = readme_example["cases"][case_index]
    weight = torch.tensor(readme_example["weight"])
    args = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
    phy2log, log2phy, logcnt = rebalance(weight, *args)
    assert phy2log.dtype == log2phy.dtype == logcnt.dtype == torch.int64
    assert phy2log.tolist() == case["phy2log"]
    if "logcnt" in case:
        assert logcnt.tolist() == case["logcnt"]
        assert log2phy.tolist() == case["log2phy"]
        evaluation = check_output(weight, (phy2log, log2phy, logcnt), Topology(*args))
        assert evaluation.gpu_load.tolist() == case["gpu_load"]
        assert evaluation.balancedness_per_layer.tolist() == pytest.approx(
            case["balancedness_per_layer"], rel=1e-15)


@st.composite
def instances(draw):
    """(weight [L, E], P, groups, nodes, gpus) over both policies, 0..~E redundant slots."""
    nodes = draw(st.integers(1, 8))
    gpus = nodes * draw(st.integers(1, 4))
    hierarchical = draw(st.booleans()) or nodes == 1
    if hierarchical:
        groups = nodes * draw(st.integers(1, 3))
    else:
        groups = nodes * draw(st.integers(0, 2)) + draw(st.integers(1, nodes - 1))
    experts = groups * draw(st.integers(1, 4)) if hierarchical else draw(st.integers(1, 40))
    least_slots = -(-experts // gpus)
    slots_per_gpu = draw(st.integers(least_slots, max(least_slots, 2 * experts // gpus)))
    layers = draw(st.integers(1, 4))
    high = draw(st.sampled_from([0, 1, 3, 10, 1000, 10**6]))  # small ranges force ties
    values = st.lists(st.integers(0, high), min_size=experts, max_size=experts)
    weight = torch.tensor(draw(st.lists(values, min_size=layers, max_size=layers)))
    return weight, gpus * slots_per_gpu, groups, nodes, gpus


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_fast_equals_port(case):
    weight, *topology = case
    expected = deepseek.rebalance_experts(weight, *topology)
    actual = deepseek_fast.rebalance_experts(weight, *topology)
    for want, got in zip(expected, actual):
        assert got.dtype == want.dtype and torch.equal(got, want)
    check_output(weight, actual, Topology(*topology))
