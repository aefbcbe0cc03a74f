"""The `swift_balancer` built-in is vllm-ascend's SwiftBalancer in its incremental mode: it
reproduces the engine's own result (policy, then the worker's check) on 283 recorded plans
in place, raising where the engine's code raises, keeps what the engine keeps, and takes
the plan in place by keyword."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eplbench import Topology, check
from eplbench.heuristics import load_heuristic, swift_balancer
from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek
from eplbench.migration import migration

FIXTURE = Path(__file__).parent / "fixtures" / "swift_balancer_differential.json"


@pytest.fixture(scope="module")
def differential():
    return json.loads(FIXTURE.read_text())


def _call(case):
    topology = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
    return swift_balancer.rebalance_experts(np.array(case["weight"]), *topology,
                                            old_phy2log=np.array(case["old"]))


def test_the_engines_outputs_are_reproduced_exactly(differential):
    for index, case in enumerate(differential["cases"]):
        if "error" in case:
            with pytest.raises(ValueError) as raised:
                _call(case)
            assert f"ValueError: {raised.value}" == case["error"], index
            continue
        phy2log = _call(case)
        assert phy2log.dtype == torch.int64
        assert phy2log.tolist() == case["phy2log"], index


def test_the_fixture_records_rebalances_that_move_weights(differential):
    """Most recorded plans change; none is DeepSeek's fresh plan for the same loads."""
    cases = [case for case in differential["cases"] if "phy2log" in case]
    changed = [case for case in cases if case["phy2log"] != case["old"]]
    assert len(changed) > 0.8 * len(cases)
    for case in cases:
        topology = (case["num_replicas"], case["num_groups"], case["num_nodes"],
                    case["num_gpus"])
        fresh = deepseek(torch.tensor(case["weight"]), *topology)[0].tolist()
        assert fresh != case["phy2log"]


def test_plans_are_placements_that_keep_what_the_engine_keeps():
    """Random loads from DeepSeek's plan for other loads: a checked placement, each GPU
    with distinct experts wherever the layer changed, every expert a GPU keeps in the slot
    it had."""
    rng = np.random.default_rng(3)
    topology = Topology(48, 4, 2, 8)
    for _ in range(20):
        weight = rng.integers(0, 500, (3, 32))
        old = deepseek(torch.from_numpy(rng.integers(0, 500, (3, 32))), *topology.as_tuple())[0]
        new = swift_balancer.rebalance_experts(weight, *topology.as_tuple(), old_phy2log=old)
        check(weight, new, topology)
        for before, after in zip(old.numpy(), new.numpy()):
            if np.array_equal(before, after):
                continue
            for gpu_before, gpu_after in zip(before.reshape(8, 6), after.reshape(8, 6)):
                assert len(set(gpu_after.tolist())) == 6
                stays = np.isin(gpu_after, gpu_before)
                assert np.array_equal(gpu_after[stays], gpu_before[stays])


def test_a_balanced_plan_in_place_is_kept():
    """A layer already within 1.01 x the mean is not touched (and moves nothing)."""
    topology = Topology(8, 1, 1, 4)
    weight = np.array([[10, 10, 10, 10, 10, 10, 10, 10]])
    old = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    new = swift_balancer.rebalance_experts(weight, *topology.as_tuple(), old_phy2log=old)
    assert new.tolist() == old.tolist()
    assert migration(old, new, topology).received.tolist() == [0]


def test_without_a_plan_in_place_it_is_deepseek_and_it_takes_the_plan_by_keyword():
    weight = torch.tensor([[90, 10, 30, 5, 60, 20, 40, 8]])
    ours = swift_balancer.rebalance_experts(weight, 12, 2, 1, 4)
    assert [part.tolist() for part in ours] == [part.tolist()
                                                for part in deepseek(weight, 12, 2, 1, 4)]
    heuristic = load_heuristic("swift_balancer")
    old = ours[0]
    moved = heuristic(weight * torch.tensor([[1, 9, 1, 9, 1, 1, 1, 1]]), 12, 2, 1, 4,
                      old_plan=old)
    assert torch.as_tensor(moved).tolist() != old.tolist()
