"""No false claims at any magnitude: every solver's answers on tiny layers with weights from
0 to int64's maximum, checked against the exact brute force (`brute_force.optimum`).

A claim is checked, never a speed: lb <= optimum <= ub, OPTIMAL exactly when lb == ub and
then ub == optimum, the returned placement's checker max load == ub (and hierarchical
under the hierarchical policy). These hold at any time limit, so no test here depends on
how fast the machine is.

The regression cases are the audit's: enum's int64 sums wrapping past 2^63 (a false
OPTIMAL), SCIP's bounds above the optimum on models with large coefficients, an
OverflowError in the joint model at 1e15, and time limits of 0, below 0 or NaN.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import eplbench as eb
from eplbench.problem import Policy
from eplbench.solvers import list_solvers, solve
from eplbench.solvers.work import Deadline

from brute_force import (count_vectors, optimum, optimum_by_packings, packing_optimum,
                         packing_optimum_by_packings)

SOLVERS = sorted(list_solvers())
POLICIES = ["global", "hierarchical"]

# (name, weight, topology, time limit): the audit's cases
REGRESSIONS = [
    # enum summed the layer in int64: the sum wrapped and it claimed OPTIMAL 6.7e18
    ("int64-sum", [2_000_000_000_000_000_000, 2_200_000_000_000_000_000,
                   1_900_000_000_000_000_000, 2_800_000_000_000_000_000, 0,
                   2_600_000_000_000_000_000], (6, 1, 1, 2), 1.0),
    # SCIP proved lb 341651086457.8 with the optimum at 339924294524.75
    ("scip-bound", [896193094514, 0, 121120415824, 342383667761], (16, 1, 1, 4), 5.0),
    # SCIP claimed OPTIMAL at 206953561813 model units where CP-SAT proved 185921078375
    ("scip-optimal", [0, 0, 0, 54159351638566, 0, 0, 78340403550128], (10, 1, 1, 2), 5.0),
    # OverflowError in model.py on every solver and policy
    ("model-overflow", [10**15, 3], (12, 1, 1, 3), 1.0),
]


def assert_claims(weight, topo: eb.Topology, policy: str, result, best: Fraction) -> int:
    """Every claim of one layer's result against the brute-force optimum `best`; the
    number of claims checked."""
    context = (weight, topo, policy, result.solver, result.status, result.lb, result.ub,
               result.params)
    assert result.status in ("OPTIMAL", "FEASIBLE"), context
    assert isinstance(result.lb, (int, Fraction)) and isinstance(result.ub, (int, Fraction))
    assert result.lb <= best, context                      # lb is a proven lower bound
    assert best <= result.ub, context                      # ub is a real placement's load
    evaluation = eb.check(np.array([weight], dtype=np.int64), result.phy2log[None, :], topo)
    assert evaluation.max_load[0] == result.ub, context    # the checker scores the placement
    if policy == "hierarchical":
        assert evaluation.respects_hierarchy, context
    assert (result.status == "OPTIMAL") == (result.lb == result.ub), context
    if result.status == "OPTIMAL":
        assert result.ub == best, context                  # an OPTIMAL claim is exactly true
    return 6 + (policy == "hierarchical")


def _policies(weight, topo: eb.Topology):
    return [p for p in POLICIES
            if p == "global" or topo.hierarchy_problem(len(weight)) is None]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name, weight, shape, time_limit", REGRESSIONS,
                         ids=[case[0] for case in REGRESSIONS])
def test_audit_cases_make_no_false_claim(name, weight, shape, time_limit, solver):
    topo = eb.Topology(*shape)
    for policy in _policies(weight, topo):
        best = optimum(weight, *shape, policy)
        result = solve(np.array([weight]), topo, policy, solver=solver,
                       time_limit=time_limit)[0]
        assert_claims(weight, topo, policy, result, best)


def test_enum_refuses_a_layer_whose_sum_passes_int64_to_the_joint_model():
    """The compiled search would wrap: it is not run, and the result says why in one line."""
    from eplbench.solvers.completion import Completion, EnumerationTooLarge

    weight = np.array(REGRESSIONS[0][1], dtype=np.int64)
    topo = eb.Topology(6, 1, 1, 2)
    assert int(np.sum(weight)) < 0 < sum(int(w) for w in weight)  # numpy's sum wraps
    with pytest.raises(EnumerationTooLarge, match="int64"):
        Completion(weight, topo, Deadline.budget(1))
    result = solve(weight[None, :], topo, "global", solver="enum", time_limit=0.5)[0]
    assert result.solver == "enum>cpsat"
    assert "int64" in result.params["fallback"] and "\n" not in result.params["fallback"]


@pytest.mark.parametrize("heavy", [10**17, 10**18, 4 * 10**18, 2**62 - 7, 2**63 - 1])
def test_completion_search_refuses_or_answers_truly_near_int64(heavy):
    """One expert near int64 and eleven light ones on 4 GPUs of 3: a placement at
    heavy + 3 exists (heavy with 1 and 2), none below. The compiled search either refuses
    the layer or says exactly that (its room sums reach G x the cap: with only the
    layer total kept under 2^62 they wrapped and it found nothing at heavy + 3)."""
    from eplbench.solvers.completion import Completion, EnumerationTooLarge

    weight = np.array([heavy] + list(range(1, 12)), dtype=np.int64)
    topo = eb.Topology(12, 1, 1, 4)
    assert optimum(weight.tolist(), 12, 1, 1, 4, "global") == heavy + 3
    try:
        search = Completion(weight, topo, Deadline.budget(60))
    except EnumerationTooLarge:
        assert sum(int(w) for w in weight) * 6 >= 2**62
        return
    found = search.feasible_below(heavy + 3)
    assert found is not None
    loads = [sum(int(weight[e]) for e in gpu) for gpu in found]
    assert max(loads) <= heavy + 3
    assert search.feasible_below(heavy + 2) is None


# layers on whose joint model (full count domains, DeepSeek's placement as the incumbent)
# SCIP 10 proved bounds above the optimum with the model scaled to 2^20 units (as it is
# now: the first two), 2^40 (the next five) or 2^30 (the next two), found by a search of
# random layers; and the audit's layer
SCIP_TRAPS = [
    ([179397527824854, 0, 423831380573884, 541625740551434, 503088242926834,
      432145843546811], (12, 1, 1, 4)),
    ([1452184288380, 912340421420, 723656779744, 329775121837], (12, 1, 1, 4)),
    ([0, 184741, 5520546, 1303931], (16, 1, 1, 4)),
    ([856930, 6655250, 2523449, 420884], (16, 1, 1, 4)),
    ([0, 0, 11669735, 13032332], (16, 1, 1, 4)),
    ([108696472, 253642699, 254484498, 63526482], (12, 1, 1, 4)),
    ([0, 724171413, 1150718504, 120838790], (12, 1, 1, 4)),
    ([271325695390, 972566138214, 226534269854, 202209327116], (12, 1, 1, 4)),
    ([0, 20025700949389, 18296790246004, 10874193849264], (12, 1, 1, 4)),
    (REGRESSIONS[1][1], REGRESSIONS[1][2]),
]


@pytest.mark.parametrize("weight, shape", SCIP_TRAPS)
def test_scip_bound_on_models_it_got_wrong_is_below_the_optimum(weight, shape):
    """The joint model of the layer, full count domains, through SCIP: its bound (tokens)
    is at most the brute-force optimum, whatever the time it had; so are the layer's
    claims through `solve` (the incumbent there is better, the model smaller)."""
    from eplbench.solvers.backends import ScipBackend
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
    from eplbench.solvers.joint import count_domains, solve_model

    topo = eb.Topology(*shape)
    weight_array = np.array(weight, dtype=np.int64)
    best = optimum(weight, *shape, "global")
    start = deepseek_placement(weight_array, topo, Policy.GLOBAL)
    upper = layer_max_load(weight_array, start, topo)
    domains, complete = count_domains(weight_array, topo, Policy.GLOBAL, upper, start)
    assert complete
    _, ub, bound, _, params = solve_model(weight_array, topo, Policy.GLOBAL, ScipBackend,
                                          domains, start, Fraction(0),
                                          Deadline.budget(5), 1, 0)
    assert bound is None or bound <= best, (bound, best, params)
    assert best <= ub
    for policy in POLICIES:
        result = solve(weight_array[None, :], topo, policy, solver="mip", time_limit=1)[0]
        assert_claims(weight, topo, policy, result, optimum(weight, *shape, policy))


def _lying_scip():
    """SCIP that, like SCIP 10 on some models, claims its start optimal: its bound is the
    incumbent's load (T's upper bound) and it returns no better solution."""
    from eplbench.solvers.backends import BackendResult, ScipBackend

    class LyingScip(ScipBackend):
        def int_var(self, low, high, name):
            if name == "T":
                self.claimed = high
            return super().int_var(low, high, name)

        def solve(self, deadline, workers, seed):
            return BackendResult("OPTIMAL", self.claimed, self.claimed, {}, None)

    return LyingScip


# layers whose starting placement is above the optimum, which the no-search bounds do not
# reach: (weight, optimum) on Topology(9, 1, 1, 3)
ABOVE_THE_BOUNDS = [([5, 9, 12, 9, 40, 43], Fraction(239, 6)), ([13, 8, 34, 36], Fraction(61, 2)),
                    ([26, 21, 22, 33, 29, 9], Fraction(47)), ([32, 35, 43, 15, 46], Fraction(231, 4))]


@pytest.mark.parametrize("weight, best", ABOVE_THE_BOUNDS)
def test_a_false_float_bound_is_caught_by_the_exact_check(weight, best):
    """A floating-point backend claiming its start optimal: CP-SAT, checking the claim on
    the same model, finds the better solution; lb stays below the optimum and the ub
    comes down to it."""
    from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
    from eplbench.solvers.layer import solve_layer

    topo = eb.Topology(9, 1, 1, 3)
    weight_array = np.array(weight, dtype=np.int64)
    start = deepseek_placement(weight_array, topo, Policy.GLOBAL)
    assert optimum(weight, 9, 1, 1, 3, "global") == best < layer_max_load(weight_array, start,
                                                                          topo)
    result = solve_layer(weight_array, topo, Policy.GLOBAL, "joint", _lying_scip(), 10,
                         incumbent=start)
    assert_claims(weight, topo, "global", result, best)
    assert "was false" in result.params["bound_check"]


def test_an_unchecked_float_bound_is_a_hint_not_a_proof(monkeypatch):
    """When CP-SAT gives no answer on SCIP's claim, the claim is a hint in params and the
    lb falls back to the no-search bounds."""
    from eplbench.solvers import joint
    from eplbench.solvers.backends import BackendResult, CpSatBackend
    from eplbench.solvers.bounds import count_free_bound
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.layer import solve_layer

    class Silent(CpSatBackend):
        def solve(self, deadline, workers, seed):
            return BackendResult("UNKNOWN", None, None, {}, None)

    monkeypatch.setattr(joint, "CpSatBackend", Silent)
    weight, best = ABOVE_THE_BOUNDS[0]
    topo = eb.Topology(9, 1, 1, 3)
    weight_array = np.array(weight, dtype=np.int64)
    result = solve_layer(weight_array, topo, Policy.GLOBAL, "joint", _lying_scip(), 10,
                         incumbent=deepseek_placement(weight_array, topo, Policy.GLOBAL))
    assert_claims(weight, topo, "global", result, best)
    assert "hint only" in result.params["bound_check"]
    assert result.lb == count_free_bound(weight, 9, 3)[0] < best < result.ub
    assert result.status == "FEASIBLE" and result.bound_source != "mip"


def test_repacks_and_local_search_keep_exact_at_int64_scale():
    """On a layer beyond the completion search (8 GPUs) with weights near 2^62, local
    search with re-packs runs, keeps the placement valid and no worse, and the solve's
    claims stay consistent (lb <= ub, the checker's load is ub)."""
    from eplbench.solvers.incumbent import deepseek_placement
    from eplbench.solvers.local_search import improve_placement
    from eplbench.solvers.repack import _items

    rng = np.random.default_rng(0)
    weight = (2**62 - rng.integers(0, 2**40, size=12)).astype(np.int64)
    weight[:3] = rng.integers(1, 100, size=3)
    topo = eb.Topology(24, 1, 1, 8)
    start = deepseek_placement(weight, topo, Policy.GLOBAL)
    assert _items(weight, start, [0, 1, 2], 3) is None  # past int64: no re-pack is tried
    moved = improve_placement(weight, start, topo, False, Deadline.budget(0.5), kicks=True)
    before, after = (eb.check(weight[None, :], p[None, :], topo) for p in (start, moved))
    assert after.max_load[0] <= before.max_load[0]
    for solver in SOLVERS:
        result = solve(weight[None, :], topo, "global", solver=solver, time_limit=0.5)[0]
        assert result.lb <= result.ub
        assert eb.check(weight[None, :], result.phy2log[None, :], topo).max_load[0] == result.ub
        assert result.lb >= Fraction(sum(int(w) for w in weight), 8) or result.lb == result.ub


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf, -math.inf, "10", None, True])
def test_a_bad_time_limit_is_one_line_bad_input(bad):
    with pytest.raises(eb.BadInput, match="time_limit") as raised:
        solve(np.array([[3, 2, 1]]), eb.Topology(4, 1, 1, 2), time_limit=bad)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_time_limit_zero_is_no_search_bounds_only(solver):
    """0 is allowed and documented: DeepSeek's placement and the no-search bounds only."""
    weight = [896193094514, 0, 121120415824, 342383667761]
    topo = eb.Topology(16, 1, 1, 4)
    for policy in POLICIES:
        result = solve(np.array([weight]), topo, policy, solver=solver, time_limit=0)[0]
        assert_claims(weight, topo, policy, result, optimum(weight, 16, 1, 1, 4, policy))
        assert result.solver == solver and result.bound_source in ("mean", "replica",
                                                                   "node_mean")


# --- the fuzz ---------------------------------------------------------------------------

def _draw_weight(rng, kind: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return int(rng.integers(1, 21))
    if kind == 2:
        return int(10 ** rng.uniform(6, 12))
    if kind == 3:
        return int(10 ** rng.uniform(12, 18.3))
    if kind == 4:
        return 2**62 - int(rng.integers(0, 1000))
    return 2**63 - 1 - int(rng.integers(0, 1000))


def random_layer(rng):
    """(weight [E] Python ints, Topology): E <= 6, G <= 4, P <= 12; weights of one
    magnitude class per layer, or of mixed classes (0, small ints, 1e6..1e12,
    1e12..2e18, near 2^62, near 2^63)."""
    while True:
        num_experts = int(rng.integers(1, 7))
        num_gpus = int(rng.integers(1, 5))
        slots = int(rng.integers(1, 12 // num_gpus + 1))
        if num_experts <= num_gpus * slots <= 12:
            break
    groups = int(rng.choice([g for g in range(1, num_experts + 1) if num_experts % g == 0]))
    nodes = int(rng.choice([n for n in range(1, groups + 1)
                            if groups % n == 0 and num_gpus % n == 0]))
    if rng.random() < 0.5:
        kinds = rng.integers(0, 6, size=num_experts)
    else:
        kinds = np.full(num_experts, rng.integers(0, 6))
        kinds[rng.random(num_experts) < 0.2] = 0
    weight = [_draw_weight(rng, int(kind)) for kind in kinds]
    return weight, eb.Topology(num_gpus * slots, groups, nodes, num_gpus)


def run_fuzz(seed: int, layers: int, time_limits) -> tuple[int, int, int]:
    """(layers, solves, claims checked) over `layers` random layers, every solver, every
    policy the topology defines; raises on the first false claim."""
    rng = np.random.default_rng(seed)
    solves = claims = 0
    for _ in range(layers):
        weight, topo = random_layer(rng)
        for policy in _policies(weight, topo):
            best = optimum(weight, *topo.as_tuple(), policy)
            for solver in SOLVERS:
                limit = float(rng.choice(time_limits))
                result = solve(np.array([weight], dtype=np.int64), topo, policy,
                               solver=solver, time_limit=limit)[0]
                claims += assert_claims(weight, topo, policy, result, best)
                solves += 1
    return layers, solves, claims


def test_fuzz_no_false_claims_fast():
    """A fast default subset: 30 layers, every solver and policy, limits 0 to 0.1 s."""
    layers, solves, claims = run_fuzz(seed=20240601, layers=30, time_limits=[0.0, 0.05, 0.1])
    assert solves >= 3 * layers


BUDGETS_MID_SEARCH = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]


def test_a_hierarchical_search_stopped_part_way_keeps_every_bound_honest():
    """Work budgets small enough to stop `enum` between group-to-node assignments: the
    bounds of the assignments not yet searched must stay in its lower bound. Random layers
    of 2+ nodes, each budget; with those bounds dropped, 49/6 was claimed OPTIMAL on the
    first layer (optimum 8)."""
    layers = [([5, 3, 8, 0, 16, 0], eb.Topology(12, 2, 2, 4))]
    rng = np.random.default_rng(5)
    while len(layers) < 40:
        weight, topo = random_layer(rng)
        if topo.num_nodes >= 2 and "hierarchical" in _policies(weight, topo):
            layers.append((weight, topo))
    stopped = 0
    for weight, topo in layers:
        best = optimum(weight, *topo.as_tuple(), "hierarchical")
        for budget in BUDGETS_MID_SEARCH:
            result = solve(np.array([weight], dtype=np.int64), topo, "hierarchical",
                           solver="enum", time_limit=budget)[0]
            assert_claims(weight, topo, "hierarchical", result, best)
            stopped += result.status != "OPTIMAL"
    assert stopped  # some budgets did stop the search


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_fuzz_no_false_claims(seed):
    """4 x 150 layers, every solver and policy, limits 0 to 1 s."""
    layers, solves, claims = run_fuzz(seed=seed, layers=150,
                                      time_limits=[0.0, 0.05, 0.2, 1.0])
    print(f"seed {seed}: {layers} layers, {solves} solves, {claims} claims, none false")


def _small_layers(seed: int):
    """Endless random layers (`random_layer`) of at most 8 slots: the slow oracles' size."""
    rng = np.random.default_rng(seed)
    while True:
        weight, topo = random_layer(rng)
        if topo.num_replicas <= 8:
            yield weight, topo


def test_brute_force_agrees_with_the_packing_oracle_at_any_magnitude():
    """The fast brute force (`optimum`) against the slow one (every count vector x every
    packing) on small random layers, magnitudes up to int64's maximum."""
    compared = 0
    for weight, topo in _small_layers(7):
        if compared >= 120:
            break
        for policy in _policies(weight, topo):
            assert (optimum(weight, *topo.as_tuple(), policy)
                    == optimum_by_packings(weight, *topo.as_tuple(), policy)), (weight, topo)
            compared += 1


def test_packing_oracle_with_counts_agrees_with_every_packing():
    """The fast best packing of given replica counts against every packing of them, on
    small random layers and every count vector, magnitudes up to int64's maximum."""
    compared = 0
    for weight, topo in _small_layers(11):
        if compared >= 300:
            break
        shape = (topo.num_groups, topo.num_nodes, topo.num_gpus)
        for counts in count_vectors(len(weight), topo.num_replicas):
            for policy in _policies(weight, topo):
                assert (packing_optimum(weight, counts, *shape, policy)
                        == packing_optimum_by_packings(weight, counts, *shape, policy)), (
                    weight, counts, topo, policy)
                compared += 1
