"""The `vllm` built-in is vLLM's default EPLB policy: it reproduces vLLM's own phy2log on 300
tie-rich inputs (for the tie order of this machine's numpy sort), agrees with a slow
re-derivation of vLLM's algorithm written here, and refuses what vLLM refuses. Its
`preserve_intragpu_slots` reproduces vLLM's on 200 (old plan, new plan) pairs, keeps each GPU's
experts and its stayers' old slots, and applies where vLLM applies it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eplbench import Topology, check
from eplbench.heuristics import deepseek, list_heuristics, vllm

FIXTURE = Path(__file__).parent / "fixtures" / "vllm_differential.json"
PRESERVE_FIXTURE = Path(__file__).parent / "fixtures" / "vllm_preserve_differential.json"


@pytest.fixture(scope="module")
def differential():
    """Tie-rich inputs with vLLM's phy2log under each numpy sort (source in `source`)."""
    return json.loads(FIXTURE.read_text())


def numpy_sort(differential) -> str | None:
    """Which recorded numpy sort this process has, told by how it orders the probe."""
    probe = np.array(differential["probe"])
    orders = {str(np.dtype(dtype)): np.argsort(-probe.astype(dtype)).tolist()
              for dtype in (np.float32, np.float64)}
    return next((name for name, recorded in differential["sorts"].items()
                 if recorded == orders), None)


def slot_order_maps(phy2log: list[list[int]], num_experts: int):
    """(log2phy, logcnt) as vLLM's compute_logical_maps builds them: each expert's slots in
    slot order, padded with -1 to the largest count."""
    slots = [[[s for s, e in enumerate(row) if e == expert] for expert in range(num_experts)]
             for row in phy2log]
    width = max(len(of_expert) for row in slots for of_expert in row)
    log2phy = [[of_expert + [-1] * (width - len(of_expert)) for of_expert in row]
               for row in slots]
    return log2phy, [[len(of_expert) for of_expert in row] for row in slots]


def test_vllm_outputs_reproduced_exactly(differential):
    sort = numpy_sort(differential)
    if sort is None:
        pytest.skip("this numpy breaks argsort ties unlike either recorded sort")
    assert sort == os.environ.get("EPLBENCH_EXPECT_NUMPY_SORT", sort)
    for index, case in enumerate(differential["cases"]):
        weight = torch.tensor(case["weight"])
        topology = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
        phy2log, log2phy, logcnt = vllm.rebalance_experts(weight, *topology)
        assert phy2log.dtype == log2phy.dtype == logcnt.dtype == torch.int64
        assert phy2log.tolist() == case["phy2log"][sort], (index, topology)
        assert (log2phy.tolist(), logcnt.tolist()) == slot_order_maps(
            case["phy2log"][sort], weight.shape[1]), (index, topology)


def test_fixture_records_vllm_not_deepseek(differential):
    """The fixture tells the sorts apart, and vLLM's ties apart from DeepSeek's."""
    cases = differential["cases"]
    sorts = list(differential["sorts"])
    assert len(cases) >= 200 and differential["source"]["blob"]
    assert sum(case["phy2log"][sorts[0]] != case["phy2log"][sorts[1]] for case in cases) > 50
    sort = numpy_sort(differential) or sorts[0]
    same_as_deepseek = sum(
        deepseek.rebalance_experts(torch.tensor(case["weight"]), case["num_replicas"],
                                   case["num_groups"], case["num_nodes"],
                                   case["num_gpus"])[0].tolist() == case["phy2log"][sort]
        for case in cases)
    assert 0 < same_as_deepseek < len(cases) * 0.9


def sort_reached(disabled: str) -> str:
    """The probe's orders in a fresh python with NPY_DISABLE_CPU_FEATURES=disabled."""
    script = ("import json, sys, numpy as np; p = np.array(json.load(sys.stdin)); print(json.dumps("
              "{str(np.dtype(d)): np.argsort(-p.astype(d)).tolist() "
              "for d in (np.float32, np.float64)}))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         input=json.dumps(json.loads(FIXTURE.read_text())["probe"]),
                         env=dict(os.environ, NPY_DISABLE_CPU_FEATURES=disabled))
    return run.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("sort", ["x86-simd-sort", "introsort"])
def test_vllm_outputs_reproduced_under_each_numpy_sort(differential, sort):
    """The fixture tests again in a python whose numpy sorts as recorded under `sort` (reached
    by switching numpy's SIMD off, where this CPU can)."""
    disabled = differential["disable_to_emulate"][sort]
    if sort_reached(disabled) != json.dumps(differential["sorts"][sort]):
        pytest.skip(f"numpy here cannot be made to sort as {sort}")
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=disabled, EPLBENCH_EXPECT_NUMPY_SORT=sort)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::test_vllm_outputs_reproduced_exactly",
                          f"{__file__}::test_rebalance_with_old_plan_as_vllm"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:]


# --- vLLM's algorithm again, one layer and one node at a time ------------------------------

def greedy_packs(values: np.ndarray, num_packs: int) -> list[list[int]]:
    """vLLM's packing of one row: items heaviest first (numpy's argsort of -values, ties as
    numpy breaks them), each to the first of the lightest packs with room, loads summed in
    float64. With one item per pack, item p goes to pack p. Returns each pack's items."""
    per_pack = len(values) // num_packs
    if per_pack == 1:
        return [[item] for item in range(len(values))]
    packs = [[] for _ in range(num_packs)]
    loads = [0.0] * num_packs
    for item in np.argsort(-values):
        pack = min((p for p in range(num_packs) if len(packs[p]) < per_pack),
                   key=loads.__getitem__)
        packs[pack].append(int(item))
        loads[pack] += float(values[item])
    return packs


def vllm_by_hand(weight: np.ndarray, num_replicas, num_groups, num_nodes, num_gpus):
    """phy2log [L][P] by vLLM's default policy, written plainly."""
    if num_groups % num_nodes:  # global policy
        num_groups = num_nodes = 1
    group_size = weight.shape[1] // num_groups
    slots_per_node = num_replicas // num_nodes
    phy2log = []
    for row in weight.astype(np.float32):
        group_load = row.reshape(num_groups, group_size).sum(axis=-1)  # numpy's float32 sums
        slots = []
        for node_groups in greedy_packs(group_load, num_nodes):
            experts = [group * group_size + k for group in node_groups for k in range(group_size)]
            load = [float(row[expert]) for expert in experts]
            count = [1] * len(experts)
            replicas = list(range(len(experts)))  # local expert of each replica
            for _ in range(slots_per_node - len(experts)):  # D'Hondt, first of equal ratios
                chosen = max(range(len(experts)), key=lambda i: load[i] / count[i])
                replicas.append(chosen)
                count[chosen] += 1
            replica_load = np.array([load[i] / count[i] for i in replicas])  # float64
            for gpu in greedy_packs(replica_load, num_gpus // num_nodes):
                slots += [experts[replicas[replica]] for replica in gpu]
        phy2log.append(slots)
    return phy2log


@st.composite
def instances(draw):
    """(weight [L, E], P, groups, nodes, GPUs) over both policies, heavy in ties."""
    nodes = draw(st.integers(1, 4))
    gpus = nodes * draw(st.integers(1, 3))
    if nodes == 1 or draw(st.booleans()):
        groups = nodes * draw(st.integers(1, 3))
        experts = groups * draw(st.integers(1, 8))
    else:
        groups = nodes * draw(st.integers(0, 2)) + draw(st.integers(1, nodes - 1))
        experts = draw(st.integers(1, 30))
    least = -(-experts // gpus)
    slots = gpus * draw(st.integers(least, least + 3))
    # near 2**24 float32 sums and ratios round where float64 ones do not; tenths round in both
    values = draw(st.sampled_from([st.integers(0, 2), st.integers(0, 12),
                                   st.integers(0, 10**6), st.integers(2**24 - 4, 2**24 + 4),
                                   st.integers(0, 10**4).map(lambda tenths: tenths / 10)]))
    row = st.lists(values, min_size=experts, max_size=experts)
    weight = np.array(draw(st.lists(row, min_size=1, max_size=3)), dtype=np.float64)
    return weight, slots, groups, nodes, gpus


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_builtin_agrees_with_vllm_by_hand(case):
    weight, *topology = case
    phy2log, _, _ = vllm.rebalance_experts(torch.from_numpy(weight), *topology)
    assert phy2log.tolist() == vllm_by_hand(weight, *topology)


# (weight, P, groups, nodes, GPUs) -> vLLM's phy2log, DeepSeek's: float64 against float32
FLOAT64_CASES = {
    # counts (3, 2): 2**24 / 3 and 11184811 / 2 are one float32 but two float64 values, so
    # DeepSeek's last slot goes to expert 0, the first of equal ratios; vLLM's to expert 1
    "dhondt_ratios": (([[2**24, 11184811]], 6, 1, 1, 1),
                      [[0, 0, 0, 1, 1, 1]], [[1, 1, 0, 0, 0, 0]]),
    # groups to nodes: 2**24 + 1 rounds to 2**24 in float32, so the fourth group sees two
    # equal nodes in DeepSeek (takes node 0) and a lighter node 1 in vLLM
    "pack_loads": (([[2**24, 2**24, 1, 1, 0, 0]], 6, 6, 2, 2),
                   [[0, 2, 4, 1, 3, 5]], [[0, 2, 3, 1, 4, 5]]),
}


@pytest.mark.parametrize("name", FLOAT64_CASES)
def test_float64_arithmetic_as_vllm(name):
    (weight, *topology), from_vllm, from_deepseek = FLOAT64_CASES[name]
    assert vllm.rebalance_experts(torch.tensor(weight), *topology)[0].tolist() == from_vllm
    assert vllm_by_hand(np.array(weight), *topology) == from_vllm
    assert deepseek.rebalance_experts(torch.tensor(weight), *topology)[0].tolist() == from_deepseek


# --- refusals ---------------------------------------------------------------------------

def rows(num_layers, num_experts):
    """[L, E] small integer loads with ties."""
    return torch.arange(num_layers * num_experts).reshape(num_layers, num_experts) % 3


# (weight, P, groups, nodes, GPUs) and what vLLM's DefaultEplbPolicy raises (checked against it)
REFUSED = {
    "slots_not_multiple_of_gpus": (rows(1, 8), 7, 4, 2, 4, AssertionError),
    "slots_not_multiple_of_gpus_global": (rows(2, 6), 10, 3, 2, 4, AssertionError),
    "gpus_not_multiple_of_nodes": (rows(1, 8), 6, 4, 2, 3, AssertionError),
    "fewer_slots_than_experts": (rows(2, 8), 4, 4, 2, 4, AssertionError),
    "fewer_slots_than_experts_global": (rows(1, 8), 6, 3, 2, 2, AssertionError),
    "experts_not_multiple_of_groups": (rows(1, 6), 8, 4, 2, 4, AssertionError),
    "zero_nodes": (rows(1, 4), 4, 1, 0, 4, ZeroDivisionError),
    "zero_gpus": (rows(1, 4), 4, 1, 1, 0, ZeroDivisionError),
    "one_dimensional_weight": (torch.arange(4), 4, 1, 1, 1, ValueError),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refuses_what_vllm_refuses(name):
    weight, *topology, error = REFUSED[name]
    with pytest.raises(error):
        vllm.rebalance_experts(weight, *topology)


def test_accepts_what_vllm_accepts_on_the_global_policy():
    """GPUs not a multiple of nodes, experts not of groups: unchecked off the hierarchy."""
    phy2log, _, logcnt = vllm.rebalance_experts(rows(1, 6), 6, 4, 3, 2)
    assert phy2log.shape == (1, 6) and logcnt.tolist() == [[1] * 6]


def test_packing_refuses_unequal_packs():
    with pytest.raises(AssertionError):
        vllm.balanced_packing(torch.ones(2, 5), 2)


def test_registered_as_builtin():
    assert "DefaultEplbPolicy" in list_heuristics()["vllm"]


# --- preserve_intragpu_slots: experts staying on a GPU keep their old slots ---------------

@pytest.fixture(scope="module")
def preserve_differential():
    """vLLM's preserve_intragpu_slots on (old, new) pairs, and its rebalance_experts with an
    old plan under each numpy sort (source in `source`)."""
    return json.loads(PRESERVE_FIXTURE.read_text())


def test_preserve_reproduces_vllm_exactly(preserve_differential):
    pairs = preserve_differential["pairs"]
    assert len(pairs) >= 200 and preserve_differential["source"]["blob"]
    assert sum(pair["post"] != pair["new"] for pair in pairs) > 50  # reordering exercised
    for index, pair in enumerate(pairs):
        post = vllm.preserve_intragpu_slots(torch.tensor(pair["new"]), pair["num_ranks"],
                                            torch.tensor(pair["old"]))
        assert post.dtype == torch.int64
        assert post.tolist() == pair["post"], index


def test_preserve_returns_the_new_plan_where_the_gpus_do_not_divide_it():
    new, old = torch.tensor([[0, 1, 2, 3]]), torch.tensor([[2, 0, 1, 3]])
    assert all(vllm.preserve_intragpu_slots(new, ranks, old) is new for ranks in (3, 0, -1))
    assert vllm.preserve_intragpu_slots(new, 1, old).tolist() == [[2, 0, 1, 3]]
    assert vllm.preserve_intragpu_slots(new, 2, old).tolist() == [[1, 0, 2, 3]]


@st.composite
def plan_pairs(draw):
    """(weight [L, E], old phy2log, new phy2log [L, P], GPUs): both plans valid (every expert
    placed), the new one often a shuffle of the old, so that many experts stay on a GPU."""
    gpus, per_gpu = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    slots = gpus * per_gpu
    experts, layers = draw(st.integers(1, slots)), draw(st.integers(1, 3))

    def plan_row():
        extra = draw(st.lists(st.integers(0, experts - 1), min_size=slots - experts,
                              max_size=slots - experts))
        return draw(st.permutations(list(range(experts)) + extra))

    old = [plan_row() for _ in range(layers)]
    shuffled = draw(st.booleans())
    new = [draw(st.permutations(row)) if shuffled else plan_row() for row in old]
    weight = draw(st.lists(st.lists(st.integers(0, 20), min_size=experts, max_size=experts),
                           min_size=layers, max_size=layers))
    return weight, old, new, gpus


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_pairs())
def test_preserve_keeps_gpu_experts_and_stayers_slots(case):
    weight, old, new, gpus = case
    post = vllm.preserve_intragpu_slots(torch.tensor(new), gpus, torch.tensor(old)).tolist()
    per_gpu = len(new[0]) // gpus
    for old_row, new_row, post_row in zip(old, new, post):
        for start in range(0, len(new_row), per_gpu):
            gpu = slice(start, start + per_gpu)
            assert sorted(post_row[gpu]) == sorted(new_row[gpu])  # same experts on each GPU
            for expert in set(old_row[gpu]) & set(new_row[gpu]):
                old_slots = [s for s in range(start, start + per_gpu) if old_row[s] == expert]
                kept = [s for s in old_slots if post_row[s] == expert]
                assert kept  # an expert staying on a GPU keeps one of its old slots,
                # indeed its first old slots, one for each of its replicas that stays there
                staying = min(len(old_slots), new_row[gpu].count(expert))
                assert kept == old_slots[:staying]
    topo = Topology(len(new[0]), 1, 1, gpus)
    before, after = (check(weight, np.array(plan), topo) for plan in (new, post))
    assert after.max_load == before.max_load
    assert np.array_equal(after.gpu_load, before.gpu_load)
    assert np.array_equal(after.logcnt, before.logcnt)


def test_rebalance_with_old_plan_as_vllm(differential, preserve_differential):
    """rebalance_experts(..., old_global_expert_indices=old) gives vLLM's phy2log, and maps
    derived from it; without the old plan, vLLM's plain phy2log."""
    sort = numpy_sort(differential)
    if sort is None:
        pytest.skip("this numpy breaks argsort ties unlike either recorded sort")
    assert sort == os.environ.get("EPLBENCH_EXPECT_NUMPY_SORT", sort)
    cases = preserve_differential["rebalance"]
    assert sum(case["phy2log"][sort] != case["without_old"][sort] for case in cases) > 8
    for case in cases:
        weight = torch.tensor(case["weight"])
        topology = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
        old = torch.tensor(case["old"])
        phy2log, log2phy, logcnt = vllm.rebalance_experts(weight, *topology,
                                                          old_global_expert_indices=old)
        assert phy2log.tolist() == case["phy2log"][sort], (case["index"], topology)
        assert (log2phy.tolist(), logcnt.tolist()) == slot_order_maps(
            case["phy2log"][sort], weight.shape[1]), case["index"]
        assert vllm.rebalance_experts(weight, *topology, old)[0].tolist() == phy2log.tolist()
        assert vllm.rebalance_experts(weight, *topology)[0].tolist() == case["without_old"][sort]
