"""The distinct constraint (no GPU holds two replicas of one expert) with either policy:
the policy names, the topology check, the checker's verdict, the solvers against brute
force, and DeepSeek's distinct variant."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import eplbench as eb
from brute_force import optimum, optimum_by_packings
from eplbench.cli import main
from eplbench.heuristics.deepseek_distinct import rebalance_experts as deepseek_distinct
from eplbench.heuristics.deepseek_fast import greedy_packing, torch_descending
from eplbench.heuristics.swap_search import rebalance_experts_distinct as swap_search_distinct
from eplbench.instances import where_defined
from eplbench.problem import Policy
from eplbench.reference import ReferenceEntry
from eplbench.reports.markdown import uniqueness_blocks
from eplbench.reports.tables import uniqueness_price
from eplbench.runner import score
from eplbench.sandbox import Measurement
from eplbench.solvers import list_solvers
from eplbench.solvers.incumbent import deal_within_nodes, deepseek_placement

DISTINCT = ["global+distinct", "hierarchical+distinct"]
TINY = eb.load_instances("tiny")


def test_a_policy_name_says_its_structure_and_whether_experts_stay_apart():
    parts = {p.value: (p.hierarchical, p.distinct) for p in Policy}
    assert parts == {"global": (False, False), "hierarchical": (True, False),
                     "global+distinct": (False, True), "hierarchical+distinct": (True, True)}
    with pytest.raises(eb.BadInput, match="hierarchical\\+distinct"):
        Policy.parse("distinct")


@pytest.mark.parametrize("policy, shape, message", [
    ("global+distinct", (8, 1, 1, 2), "at most 6 slots (3 experts x 2 GPUs"),
    ("hierarchical+distinct", (8, 3, 1, 4), None),
    ("hierarchical+distinct", (12, 3, 3, 3), "at most 1 slots per node (1 experts x 1 GPUs"),
])
def test_the_topology_check_says_when_no_placement_keeps_experts_apart(policy, shape, message):
    topology = eb.Topology(*shape)
    if message is None:
        topology.validate_for(3, policy)
        return
    with pytest.raises(eb.BadInput, match=message.replace("(", "\\(")) as error:
        topology.validate_for(3, policy)
    assert "\n" not in str(error.value)
    topology.validate_for(3, policy.split("+")[0])  # the same shape without distinct


def test_a_colocating_plan_is_invalid_under_distinct_with_the_reason_named():
    weight = np.array([[6, 2, 2, 2]])
    topology = eb.Topology(6, 2, 1, 2)
    colocated = np.array([[0, 0, 1, 2, 3, 0]])  # GPU 0 holds expert 0 twice
    apart = np.array([[0, 1, 2, 0, 3, 0]])  # GPU 1 holds expert 0 twice as well
    evaluation = eb.check(weight, colocated, topology)
    assert evaluation.breach("global") is None and evaluation.breach("hierarchical") is None
    assert evaluation.breach("global+distinct") == (
        "breaks the global+distinct policy: 1 replica(s) share a GPU with another of the "
        "same expert, in 1 of 1 layer(s)")
    assert "share a GPU" in eb.check(weight, apart, topology).breach("hierarchical+distinct")
    fine = np.array([[0, 1, 2, 0, 3, 2]])
    assert eb.check(weight, fine, topology).breach("hierarchical+distinct") is None

    instance = eb.Instance("x/one", weight, topology, policy="global+distinct")
    [row] = score("colocating", instance, Measurement(output=colocated, seconds=[0.001]))
    assert (row["valid"], row["reason"]) == (False, "policy")
    assert "share a GPU" in row["detail"]


def test_a_plan_breaking_both_rules_names_each_and_counts_only_the_layers_that_break():
    weight = np.array([[5, 4, 3, 2], [1, 2, 3, 4]])
    topology = eb.Topology(8, 2, 2, 4)  # groups {0, 1} and {2, 3}; nodes of GPUs {0, 1}, {2, 3}
    plan = np.array([[0, 0, 1, 2, 3, 2, 3, 1],  # expert 0 twice on GPU 0; both groups split
                     [0, 1, 0, 1, 2, 3, 2, 3]])  # keeps both rules
    assert eb.check(weight, plan, topology).breach("hierarchical+distinct") == (
        "breaks the hierarchical+distinct policy in 1 of 2 layer(s): 2 group(s) span nodes "
        "(summed over layers); breaks the hierarchical+distinct policy: 1 replica(s) share a "
        "GPU with another of the same expert, in 1 of 2 layer(s)")


def _random_layers(count, seed):
    """Tiny layers (at most 8 slots) with shapes where either distinct policy is defined."""
    rng = np.random.default_rng(seed)
    layers = []
    while len(layers) < count:
        experts, gpus, slots = (int(rng.integers(2, 5)), int(rng.integers(1, 4)),
                                int(rng.integers(1, 4)))
        nodes = 2 if experts % 2 == 0 and gpus % 2 == 0 else 1
        topology = (gpus * slots, 2 if nodes == 2 else 1, nodes, gpus)
        if experts <= gpus * slots <= 8 and gpus * slots <= experts * gpus:
            layers.append((rng.integers(0, 20, experts).tolist(), topology))
    return layers


@pytest.mark.parametrize("policy", DISTINCT)
def test_the_two_brute_force_oracles_agree_under_distinct(policy):
    for weight, topology in _random_layers(25, seed=len(policy)):
        fast = optimum(weight, *topology, policy)
        assert fast == optimum_by_packings(weight, *topology, policy), (weight, topology)
        plain = optimum(weight, *topology, policy.split("+")[0])
        assert fast is None or plain <= fast


@pytest.mark.parametrize("solver", sorted(list_solvers()))
@pytest.mark.parametrize("policy", DISTINCT)
def test_every_solver_agrees_with_brute_force_under_distinct(solver, policy):
    certified = 0
    for instance in TINY:
        results = eb.solve(instance.weight, instance.topology, policy, solver=solver,
                           time_limit=5)
        for layer, result in enumerate(results):
            best = optimum(instance.weight[layer].tolist(), *instance.topology.as_tuple(),
                           policy)
            assert result.lb <= best <= result.ub, (instance.id, layer)
            evaluation = eb.check(instance.weight[layer:layer + 1], result.phy2log[None],
                                  instance.topology)
            assert evaluation.breach(policy) is None and evaluation.max_load[0] == result.ub
            if result.status == "OPTIMAL":
                assert result.ub == best
                certified += 1
    assert certified >= 2 * len(TINY), "tiny layers are certified within the time limit"


def test_uniqueness_has_a_price_somewhere_on_tiny():
    """Some tiny layer's distinct optimum is above its plain one (else the tests above
    could not tell a solver that ignores the constraint)."""
    higher = 0
    for instance in TINY:
        for row in instance.weight.tolist():
            shape = instance.topology.as_tuple()
            higher += optimum(row, *shape, "global+distinct") > optimum(row, *shape, "global")
    assert higher >= 3


def test_packing_with_labels_skips_a_pack_that_holds_the_label():
    """Two replicas of 5 and two of 4: the reference packs both 5s first, one per pack,
    then both 4s; with labels, equal ids never share a pack while another has room."""
    weight = np.array([[5.0, 5.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]], dtype=np.float32)
    labels = np.array([[0, 0, 1, 2], [0, 0, 1, 1]])
    pack, _ = greedy_packing(weight, 2, torch_descending, labels=labels)
    for row, ids in zip(pack.numpy(), labels):
        for chosen in range(2):
            held = ids[row == chosen]
            assert len(set(held.tolist())) == len(held)


def test_deepseek_distinct_keeps_experts_apart_on_the_bundled_sets():
    placed = 0
    for name in ["tiny", "small", "medium-cut"]:
        for instance in eb.load_instances(name):
            topology = instance.topology
            if topology.distinct_problem(instance.num_experts, True):
                continue
            phy2log = deepseek_distinct(torch.from_numpy(instance.weight),
                                        *topology.as_tuple())[0]
            evaluation = eb.check(instance.weight, phy2log, topology)
            colocated = evaluation.colocated_per_layer
            assert colocated.sum() <= 3, instance.id  # the greedy's rare dead ends
            placed += 1
    assert placed >= 40


def test_the_solvers_start_keeps_experts_apart_where_the_greedy_gets_stuck():
    """small/zipf-002 (2 GPUs of 6 slots): DeepSeek's distinct packing co-locates a
    replica on three layers; the solver's start deals the same replicas again."""
    instance = {i.id: i for i in eb.load_instances("small")}["small/zipf-002"]
    topology = instance.topology
    greedy = deepseek_distinct(torch.from_numpy(instance.weight), *topology.as_tuple())[0]
    assert eb.check(instance.weight, greedy, topology).colocated_replicas > 0
    for row, plan in zip(instance.weight, greedy.numpy()):
        start = deepseek_placement(row, topology, Policy.HIERARCHICAL_DISTINCT)
        evaluation = eb.check(row[None], start[None], topology)
        assert evaluation.breach("hierarchical+distinct") is None
        assert sorted(start.tolist()) == sorted(plan.tolist())


def test_dealing_within_nodes_keeps_each_nodes_replicas():
    plan = np.array([0, 0, 1, 1, 2, 3, 3, 2])  # two nodes of two GPUs of two slots
    dealt = deal_within_nodes(plan, 2, 4)
    assert sorted(dealt[:4].tolist()) == [0, 0, 1, 1] and sorted(dealt[4:].tolist()) == [2, 2, 3, 3]
    gpus = dealt.reshape(4, 2)
    assert all(a != b for a, b in gpus)


def _entry(layer, policy, ub, lb=None):
    lb = ub if lb is None else lb
    return ReferenceEntry("s/a", "h", layer, policy, Fraction(ub), Fraction(lb), "x", "x")


def test_the_price_of_uniqueness_sums_optima_and_counts_proven_raises(tmp_path):
    entries = [_entry(0, "global", 10), _entry(0, "global+distinct", 11),  # raised
               _entry(1, "global", 20), _entry(1, "global+distinct", 20),
               _entry(0, "hierarchical", 12, 10), _entry(0, "hierarchical+distinct", 13, 12),
               _entry(1, "hierarchical", 30)]  # no distinct twin: left out
    price = uniqueness_price(entries).set_index("policy")
    assert price.loc["global"].tolist() == [2, 2, 31 / 30, 31 / 30, 1]
    # [12 / 12, 13 / 10]; lb 12 is not above ub 12: not raised
    assert price.loc["hierarchical"].tolist() == [1, 0, 1.0, 1.3, 0]
    assert uniqueness_price(entries[:2][:1]).empty

    [_, _, table] = uniqueness_blocks({"s": entries})
    assert table.rows == [["s", "global", "2", "2", "+3.3333%", "1"],
                          ["s", "hierarchical", "1", "0", "+0.0000% to +30.0000%", "0"]]
    assert uniqueness_blocks({"s": entries[:1]}) == []


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(2, 10), st.integers(1, 4), st.integers(1, 4),
       st.data())
def test_swap_search_distinct_never_puts_an_expert_twice_on_a_gpu(layers, experts, gpus,
                                                                  slots, data):
    """On any shape where a node's slots allow it (one node here, and two where the shape
    splits), swap_search_distinct's placement keeps every GPU's experts distinct."""
    if not experts <= gpus * slots <= experts * gpus:
        return
    weight = np.array(data.draw(st.lists(st.lists(st.integers(0, 50), min_size=experts,
                                                  max_size=experts),
                                         min_size=layers, max_size=layers)))
    nodes = 2 if experts % 2 == 0 and gpus % 2 == 0 else 1
    topology = eb.Topology(gpus * slots, nodes, nodes, gpus)
    if topology.distinct_problem(experts, nodes > 1):
        return
    output = swap_search_distinct(torch.from_numpy(weight), *topology.as_tuple())
    evaluation = eb.check_output(weight, output, topology)
    assert evaluation.colocated_replicas == 0
    assert nodes == 1 or evaluation.respects_hierarchy


def test_swap_search_distinct_beats_deepseek_distinct_on_the_bundled_sets():
    """Summed over tiny and small, its max loads are below DeepSeek's distinct variant's
    (the reason it exists), with no co-located replica."""
    ours = theirs = 0
    for instance in eb.load_instances("tiny") + eb.load_instances("small"):
        if instance.topology.distinct_problem(instance.num_experts, True):
            continue
        weight, shape = torch.from_numpy(instance.weight), instance.topology.as_tuple()
        mine = eb.check(instance.weight, swap_search_distinct(weight, *shape)[0],
                        instance.topology)
        assert mine.colocated_replicas == 0, instance.id
        ours += sum(mine.max_load)
        theirs += sum(eb.check(instance.weight, deepseek_distinct(weight, *shape)[0],
                               instance.topology).max_load)
    assert ours < theirs


def test_only_instances_whose_topology_defines_the_policy_are_declared_it():
    small = eb.load_instances("small")
    kept, left = where_defined(small, "hierarchical+distinct")
    assert len(kept) + len(left) == len(small) and len(left) == 5
    assert {i.policy for i in kept} == {"hierarchical+distinct"}
    assert all(i.topology.distinct_problem(i.num_experts, True) for i in small if i.id in left)
    one_gpu = eb.Instance("x/solo", np.ones((1, 3), dtype=np.int64), eb.Topology(6, 1, 1, 1))
    with pytest.raises(eb.BadInput, match="no instance's topology defines"):
        where_defined([one_gpu], "global+distinct")


def test_run_under_a_distinct_policy_names_the_instances_it_leaves_out(tmp_path):
    result = CliRunner().invoke(main, ["run", "-i", "small", "--policy",
                                       "hierarchical+distinct", "-H", "swap_search_distinct",
                                       "--repeats", "1", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 1, result.output  # the baseline, deepseek, co-locates
    assert "5 instance(s) left out" in result.output and "small/uniform-015" in result.output
    table = pd.read_csv(tmp_path / "r.csv")
    ours = table[table.heuristic == "swap_search_distinct"]
    assert set(table.policy) == {"hierarchical+distinct"} and ours.valid.all()
    assert ours.instance.nunique() == 25 and ours.gap_hi.notna().all()
    assert not table[table.heuristic == "deepseek"].valid.all()


@pytest.mark.parametrize("policy", [None, "hierarchical", *DISTINCT])
def test_evaluate_draws_fresh_instances_only_from_shapes_that_define_the_policy(policy):
    from eplbench.evolve import fresh_recipes
    from eplbench.instances.named import SETS

    recipes = fresh_recipes(policy)
    assert all(policy is None or r.topology.defines(r.num_experts, policy) for r in recipes)
    # the small set's one-GPU-a-node shape cannot keep experts apart under the hierarchy
    assert len(recipes) == len(SETS["small"]) - 5 * (policy == "hierarchical+distinct")
