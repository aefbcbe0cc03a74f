"""The DeepSeek port reproduces the reference's README example and its outputs on 280
tie-rich inputs, and refuses what the reference refuses; the vectorised twin equals the port on
every input (ties, zero loads, both policies, 1-8 nodes)."""

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eplbench import Topology, check_output
from eplbench.heuristics import deepseek, deepseek_fast

IMPLEMENTATIONS = [deepseek.rebalance_experts, deepseek_fast.rebalance_experts]
PORT_IDS = ["deepseek", "deepseek_fast"]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("rebalance", IMPLEMENTATIONS, ids=PORT_IDS)
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_fast_equals_port(case):
    weight, *topology = case
    expected = deepseek.rebalance_experts(weight, *topology)
    actual = deepseek_fast.rebalance_experts(weight, *topology)
    for want, got in zip(expected, actual):
        assert got.dtype == want.dtype and torch.equal(got, want)
    check_output(weight, actual, Topology(*topology))


@pytest.fixture(scope="module")
def differential():
    """Tie-rich inputs with the outputs of DeepSeek's own eplb.py (commit in `source`)."""
    return json.loads((FIXTURES / "deepseek_differential.json").read_text())


@pytest.mark.parametrize("rebalance", IMPLEMENTATIONS, ids=PORT_IDS)
def test_reference_outputs_reproduced_exactly(differential, rebalance):
    assert len(differential["source"]["commit"]) == 40 and len(differential["cases"]) >= 200
    for index, case in enumerate(differential["cases"]):
        topology = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
        phy2log, log2phy, logcnt = rebalance(torch.tensor(case["weight"]), *topology)
        assert phy2log.tolist() == case["phy2log"], (index, topology)
        assert logcnt.tolist() == case["logcnt"], (index, topology)
        assert log2phy.tolist() == case["log2phy"], (index, topology)  # width: largest count


def rows(num_layers, num_experts):
    """[L, E] small integer loads with ties."""
    return torch.arange(num_layers * num_experts).reshape(num_layers, num_experts) % 5


# (weight, P, groups, nodes, GPUs) and what DeepSeek's eplb.py raises (checked against it)
REFUSED = {
    "slots_not_multiple_of_gpus": (rows(1, 8), 7, 4, 2, 4, AssertionError),
    "slots_not_multiple_of_gpus_global": (rows(1, 6), 7, 3, 2, 4, AssertionError),
    "gpus_not_multiple_of_nodes": (rows(1, 8), 6, 4, 2, 3, AssertionError),
    "fewer_slots_than_experts": (rows(2, 8), 4, 4, 2, 4, AssertionError),
    "fewer_slots_than_experts_global": (rows(1, 8), 4, 3, 2, 4, AssertionError),
    "no_slots": (rows(1, 4), 0, 1, 1, 1, AssertionError),
    "negative_slots": (rows(1, 4), -4, 1, 1, 4, AssertionError),
    "experts_not_multiple_of_groups": (rows(1, 6), 8, 4, 2, 4, AssertionError),
    "zero_nodes": (rows(1, 4), 4, 1, 0, 4, ZeroDivisionError),
    "zero_groups": (rows(1, 4), 4, 0, 1, 4, ZeroDivisionError),
    "zero_gpus": (rows(1, 4), 4, 1, 1, 0, ZeroDivisionError),
    "one_dimensional_weight": (torch.arange(4), 4, 1, 1, 1, ValueError),
}
# the same divisibility faults on the global policy, which the reference does not check there
ACCEPTED = {
    "gpus_not_multiple_of_nodes_global": (rows(1, 6), 6, 3, 2, 3),
    "experts_not_multiple_of_groups_global": (rows(1, 6), 8, 4, 3, 4),
}


@pytest.mark.parametrize("rebalance", IMPLEMENTATIONS, ids=PORT_IDS)
@pytest.mark.parametrize("name", REFUSED)
def test_refuses_what_the_reference_refuses(rebalance, name):
    weight, *topology, error = REFUSED[name]
    with pytest.raises(error):
        rebalance(weight, *topology)


@pytest.mark.parametrize("rebalance", IMPLEMENTATIONS, ids=PORT_IDS)
@pytest.mark.parametrize("name", ACCEPTED)
def test_accepts_what_the_reference_accepts(rebalance, name):
    weight, *topology = ACCEPTED[name]
    phy2log, _, logcnt = rebalance(weight, *topology)
    assert phy2log.shape == (1, topology[0])
    assert logcnt.tolist() == [torch.bincount(phy2log[0], minlength=weight.shape[1]).tolist()]


@pytest.mark.parametrize("packing", [deepseek.balanced_packing,
                                     deepseek_fast.balanced_packing_vectorised])
@pytest.mark.parametrize("num_items, num_packs", [(5, 2), (4, 3)])
def test_packing_refuses_unequal_packs(packing, num_items, num_packs):
    with pytest.raises(AssertionError):
        packing(torch.ones(2, num_items), num_packs)


@pytest.mark.parametrize("replicate", [deepseek.replicate_experts,
                                       deepseek_fast.replicate_experts_vectorised])
def test_replication_refuses_fewer_slots_than_experts(replicate):
    with pytest.raises(AssertionError):
        replicate(torch.ones(2, 4), 3)
