"""Every built-in heuristic: valid on every bundled instance, hierarchical where the topology
allows; the seeds' replication stages behave as spec §10 predicts."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eplbench as eb
from eplbench.heuristics import list_heuristics
from eplbench.heuristics.replication_fixups import divisor_allocation, maps_from_counts, move_fixup
from eplbench.heuristics.swap_refinement import MODES, refine

BUNDLED = [name for name, where in eb.list_instance_sets().items() if where == "bundled"]


@pytest.mark.parametrize("name", sorted(list_heuristics()))
def test_builtin_valid_and_hierarchical_on_bundled_sets(name):
    heuristic = eb.load_heuristic(name)
    for set_name in BUNDLED:
        for instance in eb.load_instances(set_name):
            output = heuristic(torch.from_numpy(instance.weight), *instance.topology.as_tuple())
            evaluation = eb.check_output(instance.weight, output, instance.topology)
            if instance.topology.hierarchy_problem(instance.num_experts) is None:
                assert evaluation.respects_hierarchy, (name, instance.id)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=6, max_size=6), min_size=1,
                max_size=4), st.integers(0, 12))
def test_one_step_move_never_fires_after_dhondt(rows, extra):
    weight = np.array(rows, dtype=np.float64)
    counts = divisor_allocation(weight, np.ones(weight.shape, dtype=np.int64), extra, 0.0)
    assert np.array_equal(move_fixup(weight, counts, candidates=1), counts)


def test_two_by_two_move_follows_the_seeds_rule():
    """Seed 004's rule predicts the peak from the second-largest load, so a move by the
    second donor fires although the top expert keeps the peak where it was."""
    weight = np.array([[100.0, 60.0, 1.0]])
    counts = np.array([[2, 3, 1]])
    fixed = move_fixup(weight, counts, candidates=2)
    assert fixed.tolist() == [[2, 2, 2]]
    assert (weight / fixed).max() == (weight / counts).max() == 50.0
    assert move_fixup(weight, counts, candidates=1).tolist() == counts.tolist()


def test_divisor_allocations_by_hand():
    """w = [10, 3], both seated once, three more seats: D'Hondt compares w / c
    (10, 5, 3.33 against 3: all to the first),
    the seeds' Sainte-Lague w / (c - 0.5)."""
    weight = np.array([[10.0, 3.0]])
    start = np.ones((1, 2), dtype=np.int64)
    assert divisor_allocation(weight, start, 3, 0.0).tolist() == [[4, 1]]
    # 20 against 6, 6.67 against 6, then 4 against 6
    assert divisor_allocation(weight, start, 3, -0.5).tolist() == [[3, 2]]


def test_maps_from_counts():
    phy2log, rank, logcnt = maps_from_counts(np.array([[2, 1], [1, 2]]))
    assert phy2log.tolist() == [[0, 0, 1], [0, 1, 1]]
    assert rank.tolist() == [[0, 1, 0], [0, 0, 1]]
    assert logcnt.tolist() == [[2, 1], [1, 2]]


def slow_swap_step(weight, members, mode):
    """One swap step on one row, written from the seeds' text: for each heavy item the light
    item nearest to w_i - delta / 2 (every light item for top2: the 2 x 2 grid), lightest
    and second-lightest pack for two_light. Returns the sorted pack loads after it."""
    loads = [sum(weight[i] for i in pack) for pack in members]
    heavy = max(range(len(loads)), key=lambda p: (loads[p], -p))
    by_load = sorted(range(len(loads)), key=lambda p: (loads[p], p))
    lights = by_load[:2] if mode == "two_light" else by_load[:1]
    best = None
    for light in lights:
        delta = loads[heavy] - loads[light]
        if light == heavy or delta <= 1e-9:
            continue
        heavy_items, light_items = members[heavy], members[light]
        if mode == "top2":
            heavy_items = sorted(heavy_items, key=lambda i: -weight[i])[:2]
            light_items = sorted(light_items, key=lambda i: weight[i])[:2]
        for i in heavy_items:
            for j in light_items:
                new = abs(delta - 2 * (weight[i] - weight[j]))
                if best is None or new < best[0]:
                    best = (new, delta, weight[i] - weight[j], light)
    if best is not None and best[0] < best[1] - 1e-9:
        loads[heavy] -= best[2]
        loads[best[3]] += best[2]
    return sorted(loads)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 5), st.integers(2, 4), st.sampled_from(MODES), st.data())
def test_swap_refinement_matches_slow_version(num_packs, per_pack, mode, data):
    """One step: the same pack loads as the slow version; two steps: a partition of the same
    items whose heaviest pack is no heavier."""
    num_items = num_packs * per_pack
    weight = np.array(data.draw(st.lists(st.integers(0, 50), min_size=num_items,
                                         max_size=num_items)), dtype=np.float64)
    order = np.array(data.draw(st.permutations(range(num_items))))
    members = order.reshape(1, num_packs, per_pack).copy()
    expected = slow_swap_step(weight, members[0].tolist(), mode)
    refine(weight[None, :], members, mode, steps=1)
    assert sorted(weight[members[0]].sum(axis=1).tolist()) == expected
    before = weight[members[0]].sum(axis=1).max()
    refine(weight[None, :], members, mode, steps=2)
    assert sorted(members.ravel().tolist()) == list(range(num_items))
    assert weight[members[0]].sum(axis=1).max() <= before


def test_top2_misses_the_swap_that_nearest_finds():
    """Heavy pack [10, 9, 2, 1] (22), light [8, 7, 1, 0] (16), delta 6: swapping 10 and 7
    evens them (19, 19); top2 only tries {10, 9} x {1, 0}, where every swap overshoots."""
    weight = np.array([[10.0, 9, 2, 1, 8, 7, 1, 0]])
    for mode, loads in [("nearest", [19, 19]), ("two_light", [19, 19]), ("top2", [22, 16])]:
        members = np.arange(8).reshape(1, 2, 4)
        refine(weight, members, mode, steps=2)
        assert weight[0, members[0]].sum(axis=1).tolist() == loads, mode


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 6), st.integers(2, 4), st.data())
def test_swap_search_ends_swap_optimal_and_never_raises_the_peak(num_packs, slots, data):
    """After `search_swaps`, every slot still holds its own replica's load, the heaviest GPU
    is no heavier than before, and no swap with the PARTNERS lightest GPUs (checked one by
    one) lowers the heaviest load."""
    from eplbench.heuristics.swap_search import PARTNERS, search_swaps

    num_items = num_packs * slots
    weight = np.array(data.draw(st.lists(st.integers(0, 100), min_size=num_items,
                                         max_size=num_items)), dtype=np.float64)
    replica = np.array(data.draw(st.permutations(range(num_items)))).reshape(1, num_packs, slots)
    load = weight[replica]
    total = load.sum(axis=2)
    before = total.max()
    search_swaps(replica, load, total, np.arange(1), max_steps=10_000)
    assert sorted(replica.ravel().tolist()) == list(range(num_items))
    assert (load == weight[replica]).all() and np.allclose(total, load.sum(axis=2))
    assert total.max() <= before
    loads = total[0]
    heavy = int(loads.argmax())
    partners = min(PARTNERS, num_packs - 1)
    kth = np.sort(loads)[partners - 1]
    # GPUs tied with the partners-th lightest may or may not have been searched
    searched = loads < kth if (loads <= kth).sum() > partners else loads <= kth
    for light in np.flatnonzero(searched & (np.arange(num_packs) != heavy)):
        for i in range(slots):
            for j in range(slots):
                shift = load[0, heavy, i] - load[0, light, j]
                assert max(loads[heavy] - shift, loads[light] + shift) >= loads[heavy] - 1e-9


def test_packing_by_rounds_by_hand():
    """Loads 6..1 on two GPUs: round 0 gives 6 | 5; round 1 the heavier 4 to the lighter GPU
    (5), 3 to the other; round 2 (9 | 9, a tie: the first GPU first) 2 to GPU 0, 1 to GPU 1."""
    from eplbench.heuristics.swap_search import packed_by_rounds

    replica, load = packed_by_rounds(np.array([[6.0, 5, 4, 3, 2, 1]]), np.ones((1, 6), int), 2)
    assert replica[0].tolist() == [[0, 3, 4], [1, 2, 5]]
    assert load[0].tolist() == [[6, 3, 2], [5, 4, 1]]


@pytest.mark.parametrize("set_name", ["small", "medium-cut"])
def test_swap_search_meets_its_gap_targets(set_name):
    """Issue target: mean gap <= 0.1% and max <= 1% per instance (layer sums, spec §7) against
    the bundled reference, its lower bound where a layer is not certified. The target was
    set on small's 2-4-GPU shapes and medium-cut; small's 6-GPU shape (3 slots a GPU, one
    node) is beyond it (gaps up to 2.3%, `docs/heuristics.md`), so it is left out here."""
    from fractions import Fraction

    from eplbench.instances import reference_path
    from eplbench.reference import read_reference

    reference = {entry.key: entry for entry in read_reference(reference_path(set_name))}
    heuristic = eb.load_heuristic("swap_search")
    gaps = []
    for instance in eb.load_instances(set_name):
        if set_name == "small" and instance.topology.num_gpus == 6:
            continue
        output = heuristic(torch.from_numpy(instance.weight), *instance.topology.as_tuple())
        evaluation = eb.check_output(instance.weight, output, instance.topology)
        policy = "hierarchical" if evaluation.respects_hierarchy else "global"
        if (instance.content_hash, 0, policy) not in reference:
            policy = "global"
        bound = sum((reference[instance.content_hash, layer, policy].lb
                     for layer in range(instance.num_layers)), Fraction(0))
        gaps.append(float(sum(evaluation.max_load, Fraction(0)) / bound - 1))
    assert np.mean(gaps) <= 0.001 and max(gaps) <= 0.01, gaps


def test_serpentine_packing_by_hand():
    """Loads 6..1 on two packs: 6, 5 | 4, 3 reversed | 2, 1: pack 0 gets 6, 3, 2."""
    from eplbench.heuristics.peers import serpentine_packing

    pack_index, rank = serpentine_packing(torch.tensor([[1.0, 6, 3, 5, 2, 4]]), 2)
    assert pack_index.tolist() == [[1, 0, 0, 1, 0, 1]]
    assert rank.tolist() == [[2, 0, 1, 0, 2, 1]]


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5), st.integers(2, 4), st.data())
def test_swift_swaps_keep_a_partition_and_never_raise_the_max(num_packs, per_pack, data):
    from eplbench.heuristics.peers import swift_swaps

    num_items = num_packs * per_pack
    weight = np.array([data.draw(st.lists(st.integers(0, 100), min_size=num_items,
                                          max_size=num_items))], dtype=np.float64)
    members = np.arange(num_items).reshape(1, num_packs, per_pack)
    before = weight[0, members[0]].sum(axis=1).max()
    swift_swaps(weight, members)
    assert sorted(members.ravel().tolist()) == list(range(num_items))
    assert weight[0, members[0]].sum(axis=1).max() <= before


def test_every_count_vector():
    """4 experts, 7 slots: the C(6, 3) = 20 ways to add 3 replicas, each once."""
    from eplbench.heuristics.swap_search import every_count_vector

    vectors = every_count_vector(4, 7, most=20)
    assert vectors.shape == (20, 4) and (vectors >= 1).all() and (vectors.sum(axis=1) == 7).all()
    assert len({tuple(v) for v in vectors.tolist()}) == 20
    assert every_count_vector(4, 7, most=19) is None
