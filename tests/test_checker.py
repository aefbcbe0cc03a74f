"""The checker: each kind of broken placement has its own reason; scores are exact."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from eplbench import InvalidPlacement, Topology, check, check_output
from eplbench.heuristics.mapping import engine_maps

TOPO = Topology(num_replicas=8, num_groups=2, num_nodes=2, num_gpus=4)
WEIGHT = torch.tensor([[10, 20, 30, 40], [5, 5, 5, 5]])


def good_phy2log():
    # layer 0: experts 0,1 (group 0) on node 0 and 2,3 (group 1) on node 1
    return torch.tensor([[0, 1, 1, 0, 3, 2, 3, 2], [0, 1, 0, 1, 2, 3, 2, 3]])


def good_output():
    return engine_maps(good_phy2log(), 4)


def broken(kind):
    phy2log, log2phy, logcnt = good_output()
    if kind == "arity":
        return (phy2log, logcnt)
    if kind == "arity_dict":
        return {"phy2log": phy2log}
    if kind == "type":
        return (phy2log.tolist(), log2phy, logcnt)
    if kind == "nonfinite":
        bad = phy2log.double()
        bad[0, 0] = float("nan")
        return (bad, log2phy, logcnt)
    if kind == "dtype":
        return (phy2log.double(), log2phy, logcnt)
    if kind == "bool_dtype":
        return (phy2log, log2phy, logcnt.bool())
    if kind == "shape":
        return (phy2log[:, :6], log2phy, logcnt)
    if kind == "range":
        bad = phy2log.clone()
        bad[1, 3] = 4
        return (bad, log2phy, logcnt)
    if kind == "missing_expert":
        bad = phy2log.clone()
        bad[1, 1] = 0
        bad[1, 3] = 0
        return (bad, log2phy, logcnt)
    if kind == "missing_last_expert":
        bad = phy2log.clone()
        bad[1] = torch.tensor([0, 1, 0, 1, 2, 2, 2, 2])
        return (bad, log2phy, logcnt)
    if kind == "logcnt_mismatch":
        bad = logcnt.clone()
        bad[0, 0] += 1
        bad[0, 1] -= 1
        return (phy2log, log2phy, bad)
    if kind == "log2phy_padding":
        bad = log2phy.clone()
        bad[0, 0, 1] = -2
        return (phy2log, bad, logcnt)
    if kind == "log2phy_empty":
        return (phy2log, log2phy[:, :, :0], logcnt)
    if kind == "object_dtype":
        return (phy2log.numpy().astype(object), log2phy, logcnt)
    if kind == "log2phy_mismatch":
        bad = log2phy.clone()
        bad[0, 0, 0], bad[0, 1, 0] = bad[0, 1, 0].item(), bad[0, 0, 0].item()
        return (phy2log, bad, logcnt)
    if kind == "log2phy_duplicate":
        bad = log2phy.clone()
        bad[0, 0, 1] = bad[0, 0, 0]
        return (phy2log, bad, logcnt)
    if kind == "log2phy_count":
        bad = log2phy.clone()
        bad[0, 0, 1] = -1
        return (phy2log, bad, logcnt)
    if kind == "log2phy_past":
        bad = log2phy.clone()
        bad[0, 0, 1] = 8
        return (phy2log, bad, logcnt)
    if kind == "log2phy_layers":
        return (phy2log, log2phy[:1], logcnt)
    raise AssertionError(kind)


# (reason, detail) of each broken output above, written out from the placement it breaks:
# TOPO has 8 slots, 4 experts, 2 layers; every expert has 2 replicas in the good output.
KINDS = {
    "arity": ("arity", "expected (phy2log, log2phy, logcnt) or phy2log alone, got tuple of "
                       "length 2"),
    "arity_dict": ("arity", "expected (phy2log, log2phy, logcnt) or phy2log alone, got dict"),
    "type": ("type", "phy2log is a list, not a tensor"),
    "nonfinite": ("nonfinite", "phy2log contains NaN or infinite values"),
    "dtype": ("dtype", "phy2log has dtype float64, expected an integer dtype"),
    "bool_dtype": ("dtype", "logcnt has dtype bool, expected an integer dtype"),
    "shape": ("shape", "phy2log has shape [2, 6], expected [2, 8]"),
    "range": ("range", "phy2log holds ids outside [0, 4)"),
    "missing_expert": ("missing_expert", "expert 1 of layer 1 has no slot"),
    "missing_last_expert": ("missing_expert", "expert 3 of layer 1 has no slot"),
    "logcnt_mismatch": ("logcnt_mismatch", "logcnt[0, 0] = 3 but phy2log holds expert 0 2 "
                                           "times"),
    "log2phy_padding": ("log2phy_padding", "log2phy holds a value below -1; padding is -1"),
    "log2phy_mismatch": ("log2phy_mismatch", "log2phy points to a slot of another expert"),
    "log2phy_duplicate": ("log2phy_mismatch", "log2phy lists a slot twice and misses another"),
    "log2phy_count": ("log2phy_mismatch", "log2phy lists a different number of slots than "
                                          "phy2log holds for some expert"),
    "log2phy_past": ("log2phy_mismatch", "log2phy points past the last slot"),
    "log2phy_layers": ("shape", "log2phy has shape [1, 4, 2], expected [2, 4, X]"),
    "log2phy_empty": ("log2phy_mismatch", "log2phy lists a different number of slots than "
                                          "phy2log holds for some expert"),
    "object_dtype": ("dtype", "phy2log has dtype object, expected an integer dtype"),
}


def test_good_output_passes():
    evaluation = check_output(WEIGHT, good_output(), TOPO)
    assert evaluation.respects_hierarchy


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_broken_kind_has_its_reason(kind):
    with pytest.raises(InvalidPlacement) as caught:
        check_output(WEIGHT, broken(kind), TOPO)
    assert (caught.value.reason, caught.value.detail) == KINDS[kind]


def test_log2phy_with_wrong_rank_is_a_shape_error():
    phy2log, log2phy, logcnt = good_output()
    with pytest.raises(InvalidPlacement) as caught:
        check(WEIGHT, phy2log, TOPO, log2phy=log2phy[0], logcnt=logcnt)
    assert (caught.value.reason, caught.value.detail) == (
        "shape", "log2phy has shape [4, 2], expected [L, E, X]")


def test_an_all_zero_layer_is_perfectly_balanced():
    """No load at all: balancedness 1 (nothing is overloaded), beside a loaded layer."""
    evaluation = check([[0, 0, 0, 0], [1, 1, 1, 1]], good_phy2log(), TOPO)
    assert evaluation.balancedness_per_layer.tolist() == [1.0, 1.0]
    assert evaluation.max_load == [Fraction(0), Fraction(1)]


def test_readme_fixture_loads_and_balancedness(readme_example):
    """gpu_load and balancedness of the reference placement, as the reference printed them."""
    case = readme_example["cases"][0]
    topo = Topology(case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
    evaluation = check(readme_example["weight"], torch.tensor(case["phy2log"]), topo,
                       log2phy=torch.tensor(case["log2phy"]), logcnt=torch.tensor(case["logcnt"]))
    assert evaluation.gpu_load.tolist() == case["gpu_load"]
    assert evaluation.balancedness_per_layer.tolist() == pytest.approx(
        case["balancedness_per_layer"], rel=1e-15)
    assert evaluation.respects_hierarchy


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_any_integer_dtype_is_read_as_int64(dtype):
    """SGLang's deepseek_vec returns int32 counts: accepted, scored as the int64 output."""
    expected = check_output(WEIGHT, good_output(), TOPO)
    cast = check_output(WEIGHT, tuple(item.to(dtype) for item in good_output()), TOPO)
    assert cast.max_load == expected.max_load
    assert cast.phy2log.dtype == np.int64 and np.array_equal(cast.phy2log, expected.phy2log)


def test_unsigned_values_past_int64_are_out_of_range():
    phy2log = good_phy2log().numpy().astype(np.uint64)
    phy2log[0, 0] = 2**63 + 1
    with pytest.raises(InvalidPlacement) as caught:
        check(WEIGHT, phy2log, TOPO)
    assert (caught.value.reason, caught.value.detail) == (
        "range", "phy2log holds values past int64")


def test_an_unsigned_value_at_int64s_maximum_is_read_as_it_is():
    """2^63 - 1 in a uint64 logcnt fits int64: not out of range, just a wrong count."""
    phy2log, _, logcnt = good_output()
    counts = logcnt.numpy().astype(np.uint64)
    counts[0, 0] = 2**63 - 1
    with pytest.raises(InvalidPlacement) as caught:
        check(WEIGHT, phy2log, TOPO, logcnt=counts)
    assert (caught.value.reason, caught.value.detail) == (
        "logcnt_mismatch", f"logcnt[0, 0] = {2**63 - 1} but phy2log holds expert 0 2 times")


def test_a_masked_array_is_not_a_tensor():
    with pytest.raises(InvalidPlacement) as caught:
        check(WEIGHT, np.ma.masked_array(good_phy2log().numpy()), TOPO)
    assert caught.value.reason == "type"


def test_phy2log_alone_is_scored_like_the_full_output():
    """vLLM's policy returns phy2log alone; log2phy and logcnt are derived from it."""
    alone = check_output(WEIGHT, good_phy2log(), TOPO)
    assert alone.max_load == check_output(WEIGHT, good_output(), TOPO).max_load
    assert alone.logcnt.tolist() == good_output()[2].tolist()
    with pytest.raises(InvalidPlacement) as caught:
        check_output(WEIGHT, good_phy2log()[:, :6], TOPO)
    assert caught.value.reason == "shape"


def test_a_single_slot_layer_is_valid_with_its_log2phy():
    """One expert on the only slot: log2phy [[[0]]] points at the last slot, not past it."""
    output = (np.array([[0]]), np.array([[[0]]]), np.array([[1]]))
    assert check_output([[5]], output, Topology(1, 1, 1, 1)).max_load == [Fraction(5)]


def test_colocated_replicas_are_counted_per_layer():
    topo = Topology(num_replicas=6, num_groups=1, num_nodes=1, num_gpus=2)
    # layer 0: expert 0 twice on GPU 0 and 1 twice on GPU 1; layer 1: none twice on a GPU
    phy2log = np.array([[0, 0, 2, 1, 1, 0], [0, 1, 2, 0, 1, 2]])
    evaluation = check([[3, 2, 1], [3, 2, 1]], phy2log, topo)
    assert evaluation.colocated_per_layer.tolist() == [2, 0]
    assert evaluation.colocated_replicas == 2


def test_breach_names_what_breaks_the_hierarchical_policy():
    weight = [[1, 1, 1, 1], [1, 1, 1, 1]]
    # layer 0 whole groups; layer 1: expert 1 of group 0 also on node 1
    evaluation = check(weight, np.array([[0, 1, 0, 1, 2, 3, 2, 3],
                                         [0, 1, 0, 1, 2, 3, 1, 3]]), TOPO)
    assert evaluation.breach("global") is None
    assert evaluation.split_groups.tolist() == [0, 1]
    assert evaluation.breach("hierarchical") == (
        "breaks the hierarchical policy in 1 of 2 layer(s): 1 group(s) span nodes "
        "(summed over layers)")
    assert check(weight[:1], np.array([[0, 1, 0, 1, 2, 3, 2, 3]]), TOPO).breach(
        "hierarchical") is None


def test_breach_counts_broken_layers_and_names_every_kind_of_break():
    """4 groups of one expert on 2 nodes; layer 0 whole, layer 1 splits group 0 over both
    nodes, layer 2 puts groups 0, 1, 2 on node 0 and only group 3 on node 1."""
    topo = Topology(num_replicas=8, num_groups=4, num_nodes=2, num_gpus=2)
    evaluation = check([[1, 1, 1, 1]] * 3, np.array([[0, 1, 0, 1, 2, 3, 2, 3],
                                                     [0, 1, 0, 1, 2, 3, 2, 0],
                                                     [0, 1, 2, 0, 3, 3, 3, 3]]), topo)
    assert evaluation.breach("hierarchical") == (
        "breaks the hierarchical policy in 2 of 3 layer(s): 1 group(s) span nodes, 2 node(s) "
        "hold other than their share of groups (summed over layers)")


@pytest.mark.parametrize("num_experts", [4, 3], ids=["hierarchy", "no-hierarchy"])
def test_per_layer_counts_are_int64_arrays(num_experts):
    """As the Evaluation's fields promise, also where the topology has no hierarchy (3
    experts cannot form 2 groups)."""
    evaluation = check([[1] * num_experts] * 2,
                       np.array([[e % num_experts for e in range(8)]] * 2), TOPO)
    for field in (evaluation.split_groups, evaluation.crowded_nodes,
                  evaluation.colocated_per_layer):
        assert field.dtype == np.int64 and field.shape == (2,)


def test_a_node_with_more_than_its_share_of_groups_breaks_the_hierarchy():
    """4 groups of one expert on 2 nodes: node 0 holds groups 0, 1, 2, node 1 group 3."""
    topo = Topology(num_replicas=8, num_groups=4, num_nodes=2, num_gpus=2)
    evaluation = check([[1, 1, 1, 1]], np.array([[0, 1, 2, 0, 3, 3, 3, 3]]), topo)
    assert evaluation.split_groups.tolist() == [0]
    assert evaluation.crowded_nodes.tolist() == [2]
    assert "2 node(s) hold other than their share of groups" in evaluation.breach("hierarchical")


def test_max_load_is_exact_with_thirds():
    weight = [[10, 1, 1]]
    topo = Topology(num_replicas=6, num_groups=1, num_nodes=1, num_gpus=3)
    # expert 0 in 3 replicas of 10/3 (two on GPU 0), expert 1 in 2 replicas of 1/2
    evaluation = check(weight, np.array([[0, 0, 1, 2, 0, 1]]), topo)
    assert evaluation.max_load == [Fraction(20, 3)]
    assert evaluation.gpu_load.tolist() == [[20 / 3, 1.5, 23 / 6]]
    assert evaluation.mean_load == [Fraction(4)]
    assert evaluation.balancedness == pytest.approx(4 / (20 / 3), rel=1e-15)
    assert evaluation.colocated_replicas == 1


def brute_loads(weight, phy2log, topo):
    """Independent reference: Fractions slot by slot."""
    loads = []
    for row, slots in zip(weight, phy2log):
        counts = {e: list(slots).count(e) for e in set(slots)}
        gpu = [sum(Fraction(row[e], counts[e]) for e in slots[g * topo.slots_per_gpu:
                                                                (g + 1) * topo.slots_per_gpu])
               for g in range(topo.num_gpus)]
        loads.append(max(gpu))
    return loads


@pytest.mark.parametrize("scale", [1, 10**15])
def test_max_load_matches_fraction_reference_on_random_placements(scale):
    """Random placements, counts up to 12 (lcm 27720) and loads up to 1e19: no overflow."""
    rng = np.random.default_rng(7)
    topo = Topology(num_replicas=24, num_groups=1, num_nodes=1, num_gpus=4)
    for _ in range(30):
        weight = rng.integers(0, 1000, size=(3, 6)) * scale
        phy2log = np.concatenate([np.tile(np.arange(6), (3, 1)),
                                  rng.integers(0, 6, size=(3, 18))], axis=1)
        phy2log = np.take_along_axis(phy2log, rng.permuted(np.tile(np.arange(24), (3, 1)), axis=1), 1)
        evaluation = check(weight.tolist(), phy2log, topo)
        assert evaluation.max_load == brute_loads(weight.tolist(), phy2log.tolist(), topo)


def test_hierarchy_detection():
    topo = Topology(num_replicas=8, num_groups=2, num_nodes=2, num_gpus=4)
    weight = [[1, 1, 1, 1]]
    # expert 1 (group 0) has a replica on node 1: not hierarchical
    split = check(weight, np.array([[0, 1, 0, 1, 2, 3, 1, 3]]), topo)
    assert not split.respects_hierarchy
    # both groups on node 0 and none on node 1 is impossible with 4 slots each; groups whole:
    whole = check(weight, np.array([[2, 3, 3, 2, 0, 1, 0, 1]]), topo)
    assert whole.respects_hierarchy
    # a topology whose groups do not divide over nodes has no hierarchical placement
    odd = Topology(num_replicas=8, num_groups=3, num_nodes=2, num_gpus=4)
    assert not check([[1] * 6], np.array([[0, 1, 2, 3, 4, 5, 0, 1]]), odd).respects_hierarchy


def test_layer_sums_past_int64_stay_exact():
    """Three loads of 2^62: the layer sums past int64; mean and balancedness stay exact."""
    weight = np.array([[2**62, 2**62, 2**62, 1]], dtype=np.int64)
    evaluation = check(weight, np.array([[0, 1, 2, 3]]), Topology(4, 1, 1, 2))
    assert evaluation.mean_load == [Fraction(3 * 2**62 + 1, 2)]
    assert evaluation.max_load == [Fraction(2**63)]
    assert evaluation.balancedness == pytest.approx(float(Fraction(3 * 2**62 + 1, 2**64)))


def test_several_loads_under_int64_on_one_gpu_sum_exactly():
    """Each load fits int64 on its own, but three on one GPU sum past it: the GPU's sum
    must not wrap."""
    weight = [[2**62 - 1] * 3 + [1] * 3]
    phy2log = np.array([[0, 1, 2, 3, 4, 5]])
    topo = Topology(6, 1, 1, 2)
    assert check(weight, phy2log, topo).max_load == [Fraction(3 * (2**62 - 1))]
    assert check(weight, phy2log, topo).max_load == brute_loads(weight, phy2log.tolist(), topo)


@pytest.mark.parametrize("load", [3 * 10**18, 2**62 + 3])
def test_scaled_loads_near_the_int64_boundary_are_exact(load):
    """Counts 2 and 3 scale by 6: the scaled loads pass int64 and must not wrap."""
    weight = [[load, load, 7]]
    phy2log = np.array([[0, 0, 1, 1, 1, 2]])
    topo = Topology(6, 1, 1, 2)
    assert check(weight, phy2log, topo).max_load == brute_loads(weight, phy2log.tolist(), topo)


def test_the_int64_path_is_taken_exactly_while_no_gpu_sum_can_reach_2_to_the_62():
    """Scaled slot loads come as int64 (fast) while the largest load x scale x slots stays
    below 2^62, and as Python ints from there on; 1 for an empty lcm."""
    from eplbench.exact import lcm_of, scaled_slot_loads

    def dtype(load, slots):
        weight = np.array([[load]], dtype=np.int64)
        loads, scale = scaled_slot_loads(weight, np.zeros((1, slots), dtype=np.int64),
                                         np.array([[slots]]))
        assert scale == [slots] and loads.tolist() == [[load] * slots]
        return loads.dtype

    assert dtype(2**61, 1) == np.int64      # 2^61 x 1 x 1 slot
    assert dtype(2**59, 2) == np.int64      # 2^59 x 2 x 2 slots = 2^61
    assert dtype(2**59, 4) == object        # 2^59 x 4 x 4 = 2^63
    assert dtype(2**58, 4) == object        # 2^58 x 4 x 4 = 2^62: not below
    assert dtype(2**57, 4) == np.int64      # 2^61
    assert lcm_of([]) == 1
