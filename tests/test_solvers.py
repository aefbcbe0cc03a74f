"""Every solver's claims checked against an independent brute force on the tiny set."""

import itertools
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eplbench as eb
from eplbench.solvers import list_solvers, solve
from eplbench.solvers.bounds import replica_bound
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.layer import hierarchy_bound
from eplbench.solvers.work import Deadline

from brute_force import optimum, packings

TINY = eb.load_instances("tiny")
POLICIES = ["global", "hierarchical"]
LAYER, LAYER_TOPO = np.array([[1891, 4021, 9012, 817]]), eb.Topology(6, 2, 1, 2)  # optimum 7899


def _spy(monkeypatch, module, name, calls, answer=None):
    """Replace `module.name` with a function that records its arguments and returns
    `answer(*args)`, or what the real one returns."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return (answer or real)(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


@pytest.fixture(scope="module")
def truth():
    """Brute-force optimum per (instance, layer, policy)."""
    values = {}
    for instance in TINY:
        for layer, row in enumerate(instance.weight.tolist()):
            for policy in POLICIES:
                values[instance.id, layer, policy] = optimum(row, *instance.topology.as_tuple(),
                                                             policy)
    return values


@pytest.mark.parametrize("solver", sorted(list_solvers()))
@pytest.mark.parametrize("policy", POLICIES)
def test_optimal_claims_match_brute_force(truth, solver, policy):
    certified = 0
    for instance in TINY:
        # SCIP's model is scaled to 2^20 units: on the 15-slot layers (lcm of counts 1..12)
        # its loads round down and its bound cannot certify; there only its claims count
        exact = solver != "mip" or instance.topology.num_replicas <= 9
        results = solve(instance.weight, instance.topology, policy, solver=solver,
                        time_limit=20 if exact else 2)
        for layer, result in enumerate(results):
            best = truth[instance.id, layer, policy]
            assert result.lb <= best <= result.ub, (instance.id, layer)
            evaluation = eb.check(instance.weight[layer:layer + 1], result.phy2log[None, :],
                                  instance.topology)
            assert evaluation.max_load[0] == result.ub
            if policy == "hierarchical":
                assert evaluation.respects_hierarchy
            if result.status == "OPTIMAL":
                assert result.ub == result.lb == best
                certified += 1
    exact = [i for i in TINY if solver != "mip" or i.topology.num_replicas <= 9]
    assert certified >= 2 * len(exact), "tiny layers are certified within the time limit"


@pytest.mark.parametrize("solver", ["enum", "cpsat"])
def test_an_optimum_below_one_token_is_found_and_proven(solver):
    """Three experts of 1 token on 4 GPUs of 2 slots: counts (4, 2, 2) give every GPU 3/4,
    where D'Hondt's (3, 3, 2) and the greedy packing reach 5/6; no bound may round up to
    a whole token."""
    weight, topo = np.array([[1, 1, 1]]), eb.Topology(8, 1, 1, 4)
    deepseek = eb.load_heuristic("deepseek")(torch.tensor(weight), 8, 1, 1, 4)[0]
    assert eb.check(weight, deepseek, topo).max_load[0] == Fraction(5, 6)
    assert optimum([1, 1, 1], 8, 1, 1, 4, "global") == Fraction(3, 4)
    result = solve(weight, topo, "global", solver=solver, time_limit=5)[0]
    assert (result.status, result.lb, result.ub) == ("OPTIMAL", Fraction(3, 4), Fraction(3, 4))


def test_the_node_bound_is_named_where_it_decides():
    """Groups of (10, 10) and (1, 1) on two nodes of one GPU: the hierarchy forces 20 on
    the first node, above the mean (11) and the largest replica (10); DeepSeek's placement
    reaches it, so no search runs and the bound's source is the node-mean bound."""
    result = solve(np.array([[10, 10, 1, 1]]), eb.Topology(4, 2, 2, 2), "hierarchical",
                   time_limit=5)[0]
    assert (result.status, result.lb, result.bound_source) == ("OPTIMAL", 20, "node_mean")


def test_a_start_that_breaks_the_hierarchy_is_refused(monkeypatch):
    """Every placement a solve reports goes through the checker under its policy: a start
    that spreads a group over two nodes stops a hierarchical solve."""
    from eplbench.solvers import layer

    monkeypatch.setattr(layer, "best_start", lambda *args: np.array([0, 2, 1, 3]))
    with pytest.raises(AssertionError, match="breaks the hierarchical policy"):
        solve(np.array([[4, 3, 2, 1]]), eb.Topology(4, 2, 2, 2), "hierarchical", time_limit=1)


def test_a_searched_placement_that_breaks_the_hierarchy_is_refused(monkeypatch):
    """The search's placement goes through the checker under the policy too."""
    from eplbench.solvers import layer

    instance = TINY[10]  # 8 experts in 4 groups on 2 nodes; the start is not proven
    spread = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # every group on both nodes
    calls = []
    _spy(monkeypatch, layer, "solve_hierarchical", calls,
         lambda *args, **kwargs: (spread, Fraction(1), Fraction(1)))
    with pytest.raises(AssertionError, match="breaks the hierarchical policy"):
        solve(instance.weight[:1], instance.topology, "hierarchical", time_limit=1)
    assert len(calls) == 1


@pytest.mark.parametrize("weight, topo, policy, solver, by_nodes", [
    ([8, 4, 3, 1], eb.Topology(8, 2, 2, 4), "hierarchical", "enum", True),
    ([1, 0, 0, 0], eb.Topology(8, 2, 2, 4), "hierarchical", "enum", True),  # node bound 1/2
    ([0, 0, 0, 0], eb.Topology(8, 2, 2, 4), "hierarchical", "enum", False),  # node bound 0
    ([8, 4, 3, 1], eb.Topology(8, 2, 2, 4), "hierarchical", "cpsat", False),
    ([8, 4, 3, 1], eb.Topology(8, 2, 2, 4), "global", "enum", False),
])
def test_the_start_is_kept_short_where_the_enumeration_goes_node_by_node(
        monkeypatch, weight, topo, policy, solver, by_nodes):
    """The enumeration solves a hierarchical layer node by node (where the node bound is
    positive), so the start's local search stops at a local optimum; it is given the best
    bound known before any search."""
    from eplbench.solvers import layer

    calls, best_start = [], layer.best_start

    def spy(weight, topology, policy, deadline, lower, by_nodes=False):
        calls.append((lower, by_nodes))
        return best_start(weight, topology, policy, deadline, lower, by_nodes)

    monkeypatch.setattr(layer, "best_start", spy)
    result = solve(np.array([weight]), topo, policy, solver=solver, time_limit=2)[0]
    expected_lower = max(replica_bound(weight, 8), Fraction(sum(weight), 4))
    if policy == "hierarchical":
        expected_lower = max(expected_lower, hierarchy_bound(np.array(weight), topo))
    assert calls == [(expected_lower, by_nodes)] and result.lb >= expected_lower


def test_a_result_records_what_the_solve_was_asked():
    result = solve(np.array([[5, 3, 2, 1]]), eb.Topology(8, 2, 2, 4), "global", solver="enum",
                   time_limit=1.5, workers=1, seed=7)[0]
    assert {key: result.params[key] for key in ("time_limit", "workers", "seed", "method")} == {
        "time_limit": 1.5, "workers": 1, "seed": 7, "method": "enum"}
    assert result.params["work"] >= 0 and result.solver == "enum"
    assert result.params["work"] == round(result.params["work"], 6)  # to the microsecond


def test_a_joint_solve_records_its_wall_time_and_its_backends_time_and_version():
    import ortools

    before = time.perf_counter()
    result = solve(LAYER, LAYER_TOPO, "global", solver="cpsat", time_limit=5)[0]
    elapsed = time.perf_counter() - before
    assert result.status == "OPTIMAL" and 0 < result.wall_time <= elapsed
    assert result.deterministic_time > 0 and result.version == f"ortools {ortools.__version__}"


def test_a_layer_the_enumeration_certifies_never_reaches_the_joint_model(monkeypatch):
    from eplbench.solvers import layer

    searched, joint = [], []
    _spy(monkeypatch, layer, "solve_global", searched)
    _spy(monkeypatch, layer, "solve_joint", joint)
    result = solve(LAYER, LAYER_TOPO, "global", solver="enum", time_limit=5)[0]
    assert (result.status, result.ub, result.bound_source) == ("OPTIMAL", 7899, "enum")
    assert len(searched) == 1 and joint == [] and "complete_domains" not in result.params


def test_the_joint_model_goes_on_from_the_enumerations_placement_and_bound(monkeypatch):
    """An enumeration stopped without proof hands its best placement and its bound to the
    joint model; the result keeps that bound where the model proves nothing higher, and
    the model's where it does."""
    from eplbench.solvers import layer

    optimum = solve(LAYER, LAYER_TOPO, "global", solver="enum", time_limit=5)[0]
    gpus_swapped = np.concatenate([optimum.phy2log[3:], optimum.phy2log[:3]])
    lower = layer.count_free_bound(LAYER[0], 6, 2)[0]
    halfway = (lower + optimum.ub) / 2
    monkeypatch.setattr(layer, "solve_global",
                        lambda *args, **kwargs: (gpus_swapped, optimum.ub, halfway))
    for proven, expected in [(None, ("FEASIBLE", halfway, "enum")),
                             (optimum.ub, ("OPTIMAL", optimum.ub, "enum"))]:
        joint = []
        _spy(monkeypatch, layer, "solve_joint", joint, lambda weight, topo, policy, backend,
             start, bound, *rest: (start, optimum.ub, proven, None, {"joint": True}))
        result = solve(LAYER, LAYER_TOPO, "global", solver="enum", time_limit=5)[0]
        [(args, _)] = joint
        assert (args[4] == gpus_swapped).all() and args[5] == halfway
        assert (result.status, result.lb, result.bound_source) == expected
        assert result.ub == optimum.ub and result.params["joint"]


def test_the_search_at_the_mean_gets_the_callers_seed_and_the_policys_rule(monkeypatch):
    from eplbench.solvers import layer
    from eplbench.solvers.enumeration import EnumerationTooLarge

    def too_large(*args, **kwargs):
        raise EnumerationTooLarge("planted")

    monkeypatch.setattr(layer, "solve_global", too_large)
    for policy, distinct in [("global", False), ("global+distinct", True)]:
        calls = []
        _spy(monkeypatch, layer, "at_the_mean", calls, lambda *args: None)
        solve(LAYER, LAYER_TOPO, policy, solver="enum", time_limit=1, seed=3)
        [(args, _)] = calls
        assert args[-2:] == (3, distinct)


@pytest.mark.parametrize("proven", [True, False])
def test_a_layer_beyond_the_completion_search_is_certified_by_a_proof(monkeypatch, proven):
    """Where the completion search does not take a global layer and no placement at the
    mean is found, a proof that nothing is below the incumbent makes it optimal, with no
    joint model; without one, the joint model goes on."""
    from eplbench.solvers import layer
    from eplbench.solvers.enumeration import EnumerationTooLarge

    def too_large(*args, **kwargs):
        raise EnumerationTooLarge("planted")

    monkeypatch.setattr(layer, "solve_global", too_large)
    monkeypatch.setattr(layer, "at_the_mean", lambda *args: None)
    calls = []
    _spy(monkeypatch, layer, "proven_above", calls, lambda *args: proven)
    result = solve(LAYER, LAYER_TOPO, "global", solver="enum", time_limit=1)[0]
    [(args, _)] = calls
    assert args[2] == result.ub == 7899
    assert ("fallback" in result.params) != proven
    if proven:
        assert result.status == "OPTIMAL" and result.lb == 7899
        assert result.bound_source == "enum"


def test_time_limit_zero_gives_honest_bounds(truth):
    for instance in TINY:
        for result, layer in zip(solve(instance.weight, instance.topology, "global",
                                       time_limit=0.0), range(2)):
            best = truth[instance.id, layer, "global"]
            assert result.lb <= best <= result.ub
            assert result.status == ("OPTIMAL" if result.lb == result.ub else "FEASIBLE")


def test_dhondt_minimises_the_largest_replica():
    """spec §10: D'Hondt's largest replica load is the minimum over all count vectors."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        num_experts = int(rng.integers(1, 6))
        slots = num_experts + int(rng.integers(0, 6))
        weight = rng.integers(0, 50, size=num_experts).tolist()
        best = min(max(Fraction(w, c) for w, c in zip(weight, counts))
                   for counts in itertools.product(range(1, slots + 1), repeat=num_experts)
                   if sum(counts) == slots)
        assert replica_bound(weight, slots) == best


def test_unknown_solver_is_bad_input():
    with pytest.raises(eb.BadInput, match="unknown solver"):
        solve(TINY[0].weight, TINY[0].topology, solver="gurobi")


@pytest.mark.parametrize("within_nodes", [False, True])
def test_resplit_local_search_never_worsens_and_keeps_the_hierarchy(within_nodes):
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_by_resplits

    policy = "hierarchical" if within_nodes else "global"
    for instance in eb.load_instances("small"):
        start = deepseek_placement(instance.weight[0], instance.topology, eb.Policy(policy))
        improved = improve_by_resplits(instance.weight[0], start, instance.topology, within_nodes,
                                       Deadline.budget(60))
        before, after = (eb.check(instance.weight[:1], p[None, :], instance.topology)
                         for p in (start, improved))
        assert after.max_load[0] <= before.max_load[0]
        assert np.array_equal(np.sort(improved), np.sort(start))  # counts unchanged
        if within_nodes:
            assert after.respects_hierarchy


@pytest.mark.parametrize("within_nodes", [False, True])
def test_count_moves_never_worsen_and_keep_placements_valid(within_nodes):
    """improve_placement (re-splits, then count moves) is never above re-splits alone, and
    its placement is valid (every expert kept) and hierarchical when asked."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_by_resplits, improve_placement

    policy = eb.Policy("hierarchical" if within_nodes else "global")
    moved = 0
    for instance in eb.load_instances("small") + eb.load_instances("medium-cut")[:4]:
        topo, row = instance.topology, instance.weight[0]
        start = deepseek_placement(row, topo, policy)
        resplit = improve_by_resplits(row, start, topo, within_nodes, Deadline.budget(60))
        improved = improve_placement(row, start, topo, within_nodes, Deadline.budget(60))
        before, after = (eb.check(instance.weight[:1], p[None, :], topo)
                         for p in (resplit, improved))
        assert after.max_load[0] <= before.max_load[0], instance.id  # check() raised if invalid
        if within_nodes:
            assert after.respects_hierarchy, instance.id
        moved += after.max_load[0] < before.max_load[0]
    assert moved > 0, "count moves lower some layer below re-splits alone"


def test_a_descended_start_goes_straight_to_the_kicks():
    """descended=True skips the first descent: without kicks the start comes back as it
    is (where the same call without the flag lowers it); with kicks the result is valid,
    hierarchical and no worse than the start."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_placement

    lowered = 0
    for instance in eb.load_instances("small")[:6]:
        topo, row = instance.topology, instance.weight[0]
        start = deepseek_placement(row, topo, eb.Policy.HIERARCHICAL)
        kept = improve_placement(row, start, topo, True, Deadline.budget(10), descended=True)
        assert np.array_equal(kept, start), instance.id
        descended = improve_placement(row, start, topo, True, Deadline.budget(10))
        kicked = improve_placement(row, start, topo, True, Deadline.budget(0.2), kicks=True,
                                   descended=True)
        before, after, plain = (eb.check(instance.weight[:1], p[None, :], topo)
                                for p in (start, kicked, descended))
        assert after.max_load[0] <= before.max_load[0] and after.respects_hierarchy
        lowered += plain.max_load[0] < before.max_load[0]
    assert lowered > 0, "a plain descent lowers some of these starts"

def _pair_split_highs(gpu_loads, a, b):
    """Every larger half of a re-split of GPUs a and b (lists of replica loads), S + S."""
    pool = gpu_loads[a] + gpu_loads[b]
    for half in itertools.combinations(range(len(pool)), len(gpu_loads[a])):
        first = sum(pool[i] for i in half)
        yield max(first, sum(pool) - first)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9), st.data())
def test_best_pair_split_matches_every_split(slots, data):
    """The meet-in-the-middle re-split of two GPUs finds the lowest larger half that trying
    every S + S split with itertools finds, and its mask is such a split."""
    from eplbench.solvers.local_search import _best_split

    values = data.draw(st.lists(st.integers(1, 10**9), min_size=2 * slots, max_size=2 * slots))
    item = np.array(values, dtype=np.int64).reshape(2, slots)
    experts = np.arange(2 * slots).reshape(2, slots)
    mask = np.zeros(2 * slots, dtype=np.bool_)
    high = _best_split(item, experts, 0, 1, np.empty(2 * slots, dtype=np.int64), True, False,
                       mask)
    total = sum(values)
    best = min(max(sum(values[k] for k in half), total - sum(values[k] for k in half))
               for half in itertools.combinations(range(2 * slots), slots))
    chosen = sum(v for v, inside in zip(values, mask) if inside)
    assert high == best == max(chosen, total - chosen)
    assert mask.sum() == slots and mask[0]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 7), st.booleans(), st.data())
def test_a_distinct_pair_split_is_the_best_split_keeping_both_gpus_distinct(slots, full,
                                                                           data):
    """Two GPUs of distinct experts sharing some: the distinct re-split's larger half is
    the lowest over every S + S split (itertools) whose halves hold distinct experts (with
    single swaps only, `full` False: no lower than the best such swap), and its mask is
    such a split."""
    from eplbench.solvers.local_search import _best_split

    loads = data.draw(st.lists(st.integers(1, 10**9), min_size=3 * slots, max_size=3 * slots))
    first = data.draw(st.permutations(range(3 * slots)))[:slots]
    second = data.draw(st.permutations(range(3 * slots)))[:slots]
    experts = np.array([first, second], dtype=np.int64)
    item = np.array([[loads[e] for e in row] for row in experts], dtype=np.int64)
    mask = np.zeros(2 * slots, dtype=np.bool_)
    high = _best_split(item, experts, 0, 1, np.empty(2 * slots, dtype=np.int64), full, True,
                       mask)
    ids, values = experts.ravel().tolist(), item.ravel().tolist()
    total = sum(values)

    def apart(half):
        rest = [k for k in range(2 * slots) if k not in half]
        return all(len({ids[k] for k in side}) == slots for side in (half, rest))

    splits = [half for half in itertools.combinations(range(2 * slots), slots) if apart(half)]
    if not full:  # single swaps of one item each way that change the GPUs' experts
        splits = [half for half in splits if len(set(half) - set(range(slots))) == 1
                  and {ids[k] for k in half} != set(first)] or [tuple(range(slots))]
    best = min(max(sum(values[k] for k in half), total - sum(values[k] for k in half))
               for half in splits)
    chosen = [k for k in range(2 * slots) if mask[k]]
    assert high == best
    assert apart(chosen) and max(sum(values[k] for k in chosen),
                                 total - sum(values[k] for k in chosen)) == high


def test_distinct_local_search_keeps_experts_apart_and_never_worsens():
    """improve_placement with distinct on the bundled small and medium-cut layers, from
    DeepSeek's distinct placement, with kicks and re-packs: no co-located replica, never
    worse; and it lowers some layers."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_placement

    lowered = 0
    for instance in eb.load_instances("small") + eb.load_instances("medium-cut")[:4]:
        topo, row = instance.topology, instance.weight[0]
        for policy in (eb.Policy.GLOBAL_DISTINCT, eb.Policy.HIERARCHICAL_DISTINCT):
            if topo.distinct_problem(instance.num_experts, policy.hierarchical):
                continue
            start = deepseek_placement(row, topo, policy)
            improved = improve_placement(row, start, topo, policy.hierarchical,
                                         Deadline.budget(0.05), kicks=True, distinct=True)
            before, after = (eb.check(instance.weight[:1], p[None, :], topo)
                             for p in (start, improved))
            assert after.breach(policy) is None, instance.id
            assert after.max_load[0] <= before.max_load[0], instance.id
            lowered += after.max_load[0] < before.max_load[0]
    assert lowered >= 10


def _counts_at_level(top, level, levels):
    """The replica counts a piece table's level allows an expert whose counts go 1..top."""
    return range(1, (top if level == levels - 1 else min(top, 1 + level)) + 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 9)), min_size=1, max_size=24),
       st.integers(1, 3))
def test_pair_sum_tables_hold_every_sum_of_two_replica_loads(experts, levels):
    """Row (d, x) of the completion search's pair table is every sum of two replica loads of
    experts d.. (counts up to 1 + x below the last level, repeats allowed), sorted, each
    once: built here with itertools from the experts themselves."""
    from eplbench.solvers.completion_kernel import _pair_sums, _replica_loads

    experts = sorted(experts, reverse=True)
    load = np.array([w * 2520 for w, _ in experts], dtype=np.int64)
    most = np.array([c for _, c in experts], dtype=np.int64)
    pieces, piece_count = _replica_loads(load, np.ones(len(experts), np.int64), most, levels)
    pairs, pair_count = _pair_sums(pieces, piece_count)
    for d in range(len(experts) + 1):
        for x in range(levels):
            loads = {w * 2520 // c for w, top in experts[d:]
                     for c in _counts_at_level(top, x, levels)}
            expected = sorted({a + b for a, b in
                               itertools.combinations_with_replacement(loads, 2)})
            assert pairs[d, x, :pair_count[d, x]].tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 4)), min_size=1, max_size=8),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 1200), st.data())
def test_shortfall_is_the_gap_below_the_best_sum_of_replica_loads(experts, levels, free, high,
                                                                  data):
    """How far below `high` the best sum of `free` replica loads of experts d.. at a level
    stays (repeats allowed), checked against every such sum from itertools; 2**62 when none
    fits."""
    from eplbench.solvers.completion_kernel import _pair_sums, _replica_loads, _shortfall

    experts = sorted(experts, reverse=True)
    depth = data.draw(st.integers(0, len(experts) - 1))
    level = data.draw(st.integers(0, levels - 1))
    load = np.array([w * 12 for w, _ in experts], dtype=np.int64)
    most = np.array([c for _, c in experts], dtype=np.int64)
    pieces, piece_count = _replica_loads(load, np.ones(len(experts), np.int64), most, levels)
    pairs, pair_count = _pair_sums(pieces, piece_count)
    loads = {w * 12 // c for w, top in experts[depth:]
             for c in _counts_at_level(top, level, levels)}
    sums = [sum(chosen) for chosen in itertools.combinations_with_replacement(loads, free)]
    fitting = [total for total in sums if total <= high * 12]
    expected = high * 12 - max(fitting) if fitting else 2**62
    assert _shortfall(depth, level, free, high * 12, pieces, piece_count, pairs,
                      pair_count) == expected


@pytest.mark.parametrize("within_nodes", [False, True])
def test_resplit_local_search_ends_where_no_pair_lowers_the_maximum(within_nodes):
    """At the end, no re-split of the most loaded GPU with any partner (same node if asked)
    lowers its load, checked by trying every split with itertools."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_by_resplits

    policy = eb.Policy("hierarchical" if within_nodes else "global")
    for instance in eb.load_instances("small")[:10]:
        topo, row = instance.topology, instance.weight[0]
        start = deepseek_placement(row, topo, policy)
        improved = improve_by_resplits(row, start, topo, within_nodes, Deadline.budget(60))
        counts = np.bincount(improved, minlength=len(row))
        gpu_loads = [[Fraction(int(row[e]), int(counts[e])) for e in gpu]
                     for gpu in improved.reshape(topo.num_gpus, topo.slots_per_gpu).tolist()]
        totals = [sum(gpu) for gpu in gpu_loads]
        top = totals.index(max(totals))
        per_node = topo.gpus_per_node if within_nodes else topo.num_gpus
        partners = [g for g in range(top // per_node * per_node, (top // per_node + 1) * per_node)
                    if g != top]
        for partner in partners:
            assert min(_pair_split_highs(gpu_loads, top, partner)) >= totals[top], instance.id


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(2, 3), (2, 4), (3, 3)]), st.integers(0, 3), st.data())
def test_completion_search_is_exact_on_random_layers(shape, extra, data):
    """solve_global's ub is a real placement's load, and when it claims ub == lb that is the
    brute-force optimum (and never a false claim in either direction)."""
    from eplbench.solvers.completion import solve_global
    from eplbench.solvers.incumbent import deepseek_placement

    num_gpus, slots = shape
    num_slots = num_gpus * slots
    num_experts = num_slots - extra
    weight = np.array(data.draw(st.lists(st.integers(1, 60), min_size=num_experts,
                                         max_size=num_experts)), dtype=np.int64)
    topo = eb.Topology(num_slots, 1, 1, num_gpus)
    start = deepseek_placement(weight, topo, eb.Policy.GLOBAL)
    phy2log, upper, lower = solve_global(weight, topo, start, Deadline.budget(30))
    best = optimum(weight.tolist(), num_slots, 1, 1, num_gpus, "global")
    assert eb.check(weight[None, :], phy2log[None, :], topo).max_load[0] == upper
    assert lower <= best <= upper
    assert upper == lower == best


@pytest.mark.parametrize("policy", POLICIES)
def test_packing_stage_bounds_match_brute_force(policy):
    """The packing stage alone (DeepSeek's replica counts kept): proven, and equal to the
    brute-force best packing of those counts; never above DeepSeek's own load."""
    from brute_force import packing_optimum

    from eplbench.problem import Policy
    from eplbench.solvers.stages import packing_bounds

    heuristic = eb.load_heuristic("deepseek")
    for instance in TINY:
        topology = instance.topology
        if policy == "hierarchical" and topology.hierarchy_problem(instance.num_experts):
            continue
        phy2log = heuristic(instance.weight, *topology.as_tuple())[0].numpy()
        loads = eb.check(instance.weight, phy2log, topology).max_load
        for layer, row in enumerate(instance.weight):
            counts = np.bincount(phy2log[layer], minlength=len(row)).tolist()
            upper, lower = packing_bounds(row, phy2log[layer], topology, Policy(policy), 20)
            best = packing_optimum(row.tolist(), counts, topology.num_groups,
                                   topology.num_nodes, topology.num_gpus, policy)
            assert upper == lower == best <= loads[layer], (instance.id, layer)


def _sub_optimum(weight, counts, here, slots):
    """Brute force: the lowest max load over the GPUs holding the expert lists `here`
    when experts with all their replicas here take any counts (>= 1) and the others keep
    theirs (Fractions, tokens)."""
    pool = [e for gpu in here for e in gpu]
    free = sorted({e for e in pool if pool.count(e) == counts[e]})
    fixed = [e for e in pool if e not in free]
    best = None
    spare = len(pool) - len(fixed) - len(free)
    for extra in itertools.combinations_with_replacement(free, spare):
        new = {e: 1 + extra.count(e) for e in free}
        replicas = [Fraction(weight[e], new[e]) for e in free for _ in range(new[e])]
        replicas += [Fraction(weight[e], counts[e]) for e in fixed]
        for bins in packings(replicas, len(here), slots):
            value = max(sum(b) for b in bins)
            best = value if best is None else min(best, value)
    return best


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 9), st.data())
def test_repacking_two_gpus_finds_their_best_packing(num_experts, data):
    """With time to spare, re-packing GPUs 0 and 1 of a 3-GPU layer (S = 3) reaches the
    brute-force best of that sub-problem (free experts re-counted, split ones kept), leaves
    GPU 2 alone and keeps the placement valid."""
    from eplbench.solvers.repack import _repack_gpus

    topo = eb.Topology(9, 1, 1, 3)
    weight = np.array(data.draw(st.lists(st.integers(1, 40), min_size=num_experts,
                                         max_size=num_experts)), dtype=np.int64)
    extra = data.draw(st.lists(st.integers(0, num_experts - 1), min_size=9 - num_experts,
                               max_size=9 - num_experts))
    phy2log = np.array(data.draw(st.permutations(list(range(num_experts)) + extra)),
                       dtype=np.int64)
    counts = np.bincount(phy2log, minlength=num_experts).tolist()
    here = phy2log[:6].reshape(2, 3).tolist()
    best = _sub_optimum(weight.tolist(), counts, here, 3)
    moved = _repack_gpus(weight, phy2log, topo, [0, 1], Fraction(10**9),
                         Deadline.budget(30))
    eb.check(weight[None, :], moved[None, :], topo)  # raises if invalid
    new = np.bincount(moved, minlength=num_experts)
    loads = [sum(Fraction(int(weight[e]), int(new[e])) for e in gpu)
             for gpu in moved.reshape(3, 3).tolist()]
    assert max(loads[0], loads[1]) == best
    assert moved[6:].tolist() == phy2log[6:].tolist()


@pytest.mark.parametrize("within_nodes", [False, True])
def test_repacks_never_worsen_and_keep_the_hierarchy(within_nodes):
    """repack() from DeepSeek's placement never raises the maximum, lowers it somewhere,
    and keeps every placement valid (and hierarchical when asked)."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.repack import repack

    policy = eb.Policy("hierarchical" if within_nodes else "global")
    lowered = 0
    for instance in eb.load_instances("medium-cut")[:6]:
        topo, row = instance.topology, instance.weight[0]
        start = deepseek_placement(row, topo, policy)
        moved = repack(row, start, topo, within_nodes, Deadline.budget(2))
        before, after = (eb.check(instance.weight[:1], p[None, :], topo) for p in (start, moved))
        assert after.max_load[0] <= before.max_load[0], instance.id
        if within_nodes:
            assert after.respects_hierarchy, instance.id
        lowered += after.max_load[0] < before.max_load[0]
    assert lowered > 0


def test_the_hierarchical_enumeration_improves_a_poor_start_and_stops_at_the_next_bound():
    """From DeepSeek's own hierarchical placement (no local search), the enumeration over
    group-to-node assignments reaches the brute-force optimum and proves it, on layers of 4
    groups on 2 nodes (3 assignments): it must improve the start where that is not
    optimal, then stop where the next assignment's bound reaches the new ub."""
    from eplbench.solvers.enumeration import solve_hierarchical
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load

    rng = np.random.default_rng(11)
    topo = eb.Topology(12, 4, 2, 4)
    improved = 0
    for _ in range(30):
        weight = rng.integers(0, 40, 8) * rng.integers(0, 2, 8)
        start = deepseek_placement(weight, topo, eb.Policy.HIERARCHICAL)
        phy2log, upper, lower = solve_hierarchical(weight, topo, start, Deadline.budget(10))
        best = optimum(weight.tolist(), *topo.as_tuple(), "hierarchical")
        assert upper == lower == best
        assert layer_max_load(weight, phy2log, topo, eb.Policy.HIERARCHICAL) == best
        improved += layer_max_load(weight, start, topo) > best
    assert improved >= 5


def test_each_assignment_solves_its_heaviest_node_first_and_caches_nodes_by_groups(
        monkeypatch):
    """Within an assignment the node of the heaviest count-free bound is searched first
    (it decides the assignment's value); each later node is asked only to be no worse than
    the ub of the nodes before it, and every node is searched below the layer's current
    ub. A node problem (its set of groups) proven once is never searched again."""
    from eplbench.solvers import enumeration
    from eplbench.solvers.bounds import count_free_bound
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load

    searched, asked = [], []
    calls = []
    real_search = enumeration.solve_global

    def spy_search(weight, topology, start, deadline, cutoff, distinct):
        searched.append(tuple(weight))
        asked.append(cutoff)
        return real_search(weight, topology, start, deadline, cutoff, distinct)

    real_node = enumeration._solve_node

    def spy_node(weight, groups, experts, node_topology, cutoff, enough, deadline, cache,
                 distinct):
        before = len(asked)
        result = real_node(weight, groups, experts, node_topology, cutoff, enough, deadline,
                           cache, distinct)
        bound = count_free_bound(weight[experts], node_topology.num_replicas,
                                 node_topology.num_gpus)[0]
        calls.append((tuple(groups), bound, cutoff, enough, result[1]))
        assert asked[before:] in ([], [cutoff])  # a search, if any, only below the cutoff
        return result

    monkeypatch.setattr(enumeration, "solve_global", spy_search)
    monkeypatch.setattr(enumeration, "_solve_node", spy_node)
    rng = np.random.default_rng(3)
    topo = eb.Topology(18, 6, 3, 6)  # 15 assignments of 3 nodes; a pair of groups recurs
    later_nodes = 0
    for _ in range(12):
        weight = rng.integers(1, 40, 12)
        searched.clear()
        calls.clear()
        start = deepseek_placement(weight, topo, eb.Policy.HIERARCHICAL)
        upper = layer_max_load(weight, start, topo)
        enumeration.solve_hierarchical(weight, topo, start, Deadline.budget(10))
        assert len(searched) == len(set(searched))  # each node problem at most once
        for nodes in zip(calls[::3], calls[1::3], calls[2::3]):  # one assignment
            assert [node[1] for node in nodes] == sorted((node[1] for node in nodes),
                                                         reverse=True)
            assert [node[3] for node in nodes] == [None, nodes[0][4],
                                                   max(nodes[0][4], nodes[1][4])]
            assert {node[2] for node in nodes} == {nodes[0][2]} and nodes[0][2] <= upper
            upper = min(upper, max(node[4] for node in nodes))
            later_nodes += 2
    assert later_nodes >= 20


def test_a_results_gap_is_relative_to_its_ub():
    from eplbench.solvers.result import SolveResult

    def result(ub, lb):
        return SolveResult("FEASIBLE", ub, lb, None, 0.0, None, "enum")

    assert result(Fraction(10), Fraction(8)).gap == 0.2
    assert result(Fraction(7, 2), Fraction(7, 2)).gap == 0.0
    assert result(Fraction(0), Fraction(0)).gap == 0.0
    assert np.isnan(result(None, Fraction(3)).gap)


def test_nodes_beyond_the_completion_search_get_seeded_local_search_and_honest_bounds(
        monkeypatch):
    """Nodes of 5 GPUs of 4 slots (beyond the completion search): each node search is local
    search with kicks, from DeepSeek's placement the first time and from the cached one
    after (seeded by the searches so far), stopping once no worse than the nodes before it
    or at the node's count-free bound; a cached node is reused while it is proven, its lb
    reaches the cutoff, or its ub is enough. The result's ub is its placement's load and
    its lb no more than the ub."""
    from eplbench.solvers import enumeration
    from eplbench.solvers.bounds import count_free_bound
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load

    topo = eb.Topology(60, 6, 3, 15)
    node_topology = eb.Topology(20, 1, 1, 5)
    searches, improves = [], []
    real_node, real_improve = enumeration._solve_node, enumeration.improve_placement

    def spy_node(weight, groups, experts, node_topo, cutoff, enough, deadline, cache,
                 distinct):
        before = cache.get(tuple(groups))
        result = real_node(weight, groups, experts, node_topo, cutoff, enough, deadline,
                           cache, distinct)
        searches.append((tuple(groups), weight[experts], cutoff, enough, before, result,
                         cache[tuple(groups)], len(improves)))
        return result

    def spy_improve(weight, phy2log, topology, within_nodes, deadline, kicks, enough, seed,
                    descended, distinct):
        improves.append((tuple(weight), phy2log.copy(), within_nodes, kicks, enough, seed,
                         descended))
        return real_improve(weight, phy2log, topology, within_nodes, deadline, kicks, enough,
                            seed=seed, descended=descended, distinct=distinct)

    monkeypatch.setattr(enumeration, "improve_placement", spy_improve)
    monkeypatch.setattr(enumeration, "_solve_node", spy_node)
    rng = np.random.default_rng(8)
    weight = rng.integers(1, 1000, 24)
    start = deepseek_placement(weight, topo, eb.Policy.HIERARCHICAL)
    phy2log, upper, lower = enumeration.solve_hierarchical(weight, topo, start,
                                                           Deadline.budget(0.3))
    assert upper == layer_max_load(weight, phy2log, topo, eb.Policy.HIERARCHICAL)
    assert lower <= upper
    # within an assignment, each later node need only match the worst ub before it
    assert len(searches) >= 3
    for nodes in zip(searches[::3], searches[1::3], searches[2::3]):
        assert [node[3] for node in nodes] == [None, nodes[0][5][1],
                                               max(nodes[0][5][1], nodes[1][5][1])]
    searches.clear()

    # one node's problem asked again and again, as the enumeration would; budgets large
    # enough that the wall clock's safety net (4 t + 1 s) never stops a search here
    cache, experts, huge = {}, np.arange(8), Fraction(10**9)
    improves.clear()
    _, ub, lb = spy_node(weight, (0, 1), experts, node_topology, huge, None,
                         Deadline.budget(0.5), cache, False)
    assert lb < ub  # not proven: the asks below reuse it or search on
    middle = (lb + ub) / 2
    for cutoff, enough in [(huge, middle), (huge, None), (huge, "ub"), (huge, huge),
                           (lb, middle)]:
        if enough == "ub":  # exactly the cached ub: enough
            enough = cache[(0, 1)][0][1]
        spy_node(weight, (0, 1), experts, node_topology, cutoff, enough,
                 Deadline.budget(0.5), cache, False)
    calls_before, reused, searched_again = 0, 0, 0
    for groups, sub, cutoff, enough, before, result, stored, calls in searches:
        bound = count_free_bound(sub, 20, 5)[0]
        if before is not None and (before[0][1] == before[0][2] or before[0][2] >= cutoff
                                   or (enough is not None and before[0][1] <= enough)):
            assert result is before[0] and stored is before and calls == calls_before
            reused += 1
        else:
            assert calls == calls_before + 1
            sub_weight, begin, within, kicks, stop, seed, descended = improves[calls - 1]
            assert sub_weight == tuple(sub) and not within and kicks
            assert stop == (bound if enough is None else max(bound, enough))
            if before is None:
                assert seed == 0 and not descended
                assert begin.tolist() == deepseek_placement(
                    sub, node_topology, eb.Policy.GLOBAL).tolist()
            else:
                assert seed == before[1] and descended
                assert begin.tolist() == before[0][0].tolist()
                searched_again += 1
            assert stored == (result, 1 if before is None else before[1] + 1)
            assert result[1] == layer_max_load(sub, result[0], node_topology)
            assert result[2] == min(bound, result[1])
        calls_before = calls
    assert reused >= 3 and searched_again >= 1, (reused, searched_again)


def test_a_hierarchical_search_out_of_budget_returns_its_start_and_open_bounds():
    from eplbench.solvers.enumeration import solve_hierarchical
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load

    topo = eb.Topology(12, 4, 2, 4)
    weight = np.array([30, 1, 29, 2, 17, 16, 3, 31])
    start = deepseek_placement(weight, topo, eb.Policy.HIERARCHICAL)
    phy2log, upper, lower = solve_hierarchical(weight, topo, start, Deadline.budget(0))
    assert phy2log is start and upper == layer_max_load(weight, start, topo)
    assert lower == min(upper, hierarchy_bound(weight, topo))


def test_group_to_node_assignments_are_counted_exactly():
    from eplbench.solvers.completion import EnumerationTooLarge
    from eplbench.solvers.enumeration import balanced_assignments

    splits = balanced_assignments(8, 4)  # DeepSeek-V3's 8 groups on 4 nodes
    assert len(splits) == len({frozenset(map(frozenset, s)) for s in splits}) == 105
    with pytest.raises(EnumerationTooLarge, match="^2027025 group-to-node assignments$"):
        balanced_assignments(16, 8)


def test_the_assignment_limit_is_inclusive(monkeypatch):
    from eplbench.solvers import enumeration

    monkeypatch.setattr(enumeration, "MAX_ASSIGNMENTS", 105)
    assert len(enumeration.balanced_assignments(8, 4)) == 105
    monkeypatch.setattr(enumeration, "MAX_ASSIGNMENTS", 104)
    with pytest.raises(enumeration.EnumerationTooLarge, match="^105 group-to-node"):
        enumeration.balanced_assignments(8, 4)


@pytest.mark.parametrize("distinct", [False, True])
def test_a_node_beyond_the_completion_search_is_searched_at_its_mean_with_its_seed_and_rule(
        monkeypatch, distinct):
    """A node of a hierarchical layer too large for the completion search is searched at
    its mean first, seeded by the number of searches of that node so far and under the
    layer's rule."""
    from eplbench.solvers import enumeration

    sub, node = np.array([5, 4, 3, 3, 2, 1]), eb.Topology(8, 1, 1, 4)
    start = eb.load_heuristic("deepseek")(torch.tensor(sub[None, :]), 8, 1, 1, 4)[0][0].numpy()
    calls = []
    _spy(monkeypatch, enumeration, "at_the_mean", calls)
    enumeration._search_large_node(sub, node, start, Fraction(100), None, Deadline.budget(1),
                                   2, False, distinct)
    [(args, _)] = calls
    assert args[-2:] == (2, distinct)


@pytest.mark.parametrize("cutoff, proven", [(Fraction(100), True), (Fraction(13, 2), True),
                                            (Fraction(100), False), (Fraction(13, 2), False)])
def test_a_node_above_its_bound_takes_the_bound_a_proof_gives(monkeypatch, cutoff, proven):
    """A node above its bound (DeepSeek's start at 22/3, local search reaches the optimum
    6, the mean is 23/4) asks the proof about the lesser of its start's load and the
    layer's cutoff, and what it proves is the node's lb (its placement the start);
    unproven, local search goes on, the proof is asked about the lesser of the new load
    and the cutoff, and the lb stays the bound. A node whose start meets its stop (here:
    no worse than the nodes before it) asks nothing."""
    from eplbench.solvers import enumeration

    sub, node = np.array([11, 9, 1, 1, 1]), eb.Topology(8, 1, 1, 4)
    start = eb.load_heuristic("deepseek")(torch.tensor(sub[None, :]), 8, 1, 1, 4)[0][0].numpy()
    start_load = layer_max_load(sub, start, node)
    calls = []
    _spy(monkeypatch, enumeration, "proven_above", calls, lambda *args: proven)
    placement, upper, lower = enumeration._search_large_node(
        sub, node, start, cutoff, None, Deadline.budget(1), 0, False, False)
    asked = [args[2] for args, _ in calls]
    if proven:
        assert asked == [min(start_load, cutoff)] and (placement == start).all()
        assert upper == start_load == Fraction(22, 3) and lower == asked[0]
    else:
        assert (upper, lower) == (6, Fraction(23, 4))
        assert asked == [min(start_load, cutoff), 6]
    calls.clear()
    enumeration._search_large_node(sub, node, start, cutoff, start_load, Deadline.budget(1),
                                   0, False, False)
    assert calls == []


def test_a_node_whose_search_finds_nothing_better_is_not_asked_again(monkeypatch):
    """DeepSeek's start is already optimal (5, above the mean 9/2): the proof that failed
    for the start is not asked again after local search, which keeps the same load."""
    from eplbench.solvers import enumeration

    sub, node = np.array([5, 4, 3, 3, 2, 1]), eb.Topology(8, 1, 1, 4)
    start = eb.load_heuristic("deepseek")(torch.tensor(sub[None, :]), 8, 1, 1, 4)[0][0].numpy()
    calls = []
    _spy(monkeypatch, enumeration, "proven_above", calls, lambda *args: False)
    _, upper, lower = enumeration._search_large_node(sub, node, start, Fraction(100), None,
                                                     Deadline.budget(1), 0, False, False)
    assert (upper, lower) == (5, Fraction(9, 2))
    assert [args[2] for args, _ in calls] == [5]


def test_the_node_mean_bound_is_zero_where_the_assignments_are_too_many():
    """A bound of 0 tells `solve_layer` the enumeration cannot take the hierarchy (16
    groups on 8 nodes: 2,027,025 assignments), whatever the loads; where it can, the
    bound is the heaviest node's mean of the best assignment."""
    weight = np.ones(16, dtype=np.int64)
    assert hierarchy_bound(weight, eb.Topology(32, 16, 8, 16)) == 0
    # groups {4, 0} and {1, 1}: the heavier node carries 4 over its 2 GPUs
    assert hierarchy_bound(np.array([4, 1, 1, 0]), eb.Topology(8, 4, 2, 4)) == 2


@pytest.mark.parametrize("policy", ["global", "hierarchical"])
def test_a_start_that_meets_the_bound_ends_the_solve(policy):
    """32 equal experts on 8 GPUs of 5 slots (beyond the completion search): DeepSeek's
    placement already sits at the mean, so the layer is certified with no search at all:
    no joint model (no fallback, no deterministic time) and only the start's work."""
    weight = np.full((1, 32), 10, dtype=np.int64)
    result = solve(weight, eb.Topology(40, 4, 2, 8), policy, "enum", 5)[0]
    assert result.status == "OPTIMAL" and result.ub == result.lb == 40
    assert result.deterministic_time is None
    assert set(result.params) == {"time_limit", "workers", "seed", "method", "work"}
    assert result.params["work"] < 0.01


def test_a_bound_is_named_by_the_argument_that_gave_it():
    """The result names its lower bound's source: D'Hondt's largest replica where it is
    above the mean, the mean on a tie (the first of equal candidates)."""
    one_each = solve(np.array([[100, 1, 1, 1]]), eb.Topology(4, 1, 1, 4), "global", "enum", 1)[0]
    assert one_each.status == "OPTIMAL" and one_each.lb == 100
    assert one_each.bound_source == "replica"
    tied = solve(np.array([[2, 2]]), eb.Topology(2, 1, 1, 2), "global", "enum", 1)[0]
    assert tied.status == "OPTIMAL" and tied.lb == 2
    assert tied.bound_source == "mean"
    # hierarchical: the node bound where it is above the others, the count-free one on a tie
    topology = eb.Topology(8, 2, 2, 4)
    heavy = solve(np.array([[2, 2, 2, 2, 1, 1, 1, 1]]), topology, "hierarchical", "enum", 1)[0]
    assert heavy.status == "OPTIMAL" and heavy.lb == 4 and heavy.bound_source == "node_mean"
    even = solve(np.array([[1] * 8]), topology, "hierarchical", "enum", 1)[0]
    assert even.status == "OPTIMAL" and even.lb == 2 and even.bound_source == "mean"
