"""The search for placements at the mean (`solvers/equal_loads.py`) against brute force."""

import itertools
import random
from fractions import Fraction

import numpy as np
import pytest

import eplbench as eb
from eplbench.problem import Topology
from eplbench.solvers.equal_loads import (equal_loads_placement, exact_groups,
                                          fractions_split)
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.layer import hierarchy_bound
from eplbench.solvers.work import Deadline

from brute_force import global_optimum


def every_deal(fractions, gpus, goal, unit):
    """Whether some deal of `fractions` to `gpus` groups gives each group `goal` mod unit."""
    for deal in itertools.product(range(gpus), repeat=len(fractions)):
        sums = [0] * gpus
        for fraction, gpu in zip(fractions, deal):
            sums[gpu] += fraction
        if all(s % unit == goal for s in sums):
            return True
    return False


def test_fractions_split_agrees_with_every_deal():
    draw = random.Random(7)
    answers = set()
    for _ in range(400):
        unit, gpus = draw.randint(2, 12), draw.randint(1, 3)
        fractions = sorted(draw.randrange(1, unit) for _ in range(draw.randint(0, 6)))
        goal = draw.randrange(unit)
        expected = every_deal(fractions, gpus, goal, unit)
        answers.add(expected)
        assert fractions_split(fractions, gpus, goal, unit, Deadline.budget(10)) == expected, \
            (fractions, gpus, goal, unit)
    assert answers == {True, False}


def check_groups(values, gpus, groups, labels=None):
    size = len(values) // gpus
    assert sorted(i for group in groups for i in group) == list(range(len(values)))
    assert [len(group) for group in groups] == [size] * gpus
    assert len({sum(values[i] for i in group) for group in groups}) == 1
    if labels is not None:
        assert all(len({labels[i] for i in group}) == size for group in groups)


def test_two_groups_are_found_exactly_when_an_equal_split_exists():
    """With two groups the first group's table decides: the search is complete."""
    draw = random.Random(11)
    answers = set()
    for _ in range(300):
        size = draw.randint(1, 5)
        values = [draw.randint(0, 12) for _ in range(2 * size)]
        exists = any(2 * sum(values[i] for i in part) == sum(values)
                     for part in itertools.combinations(range(2 * size), size))
        groups = exact_groups(values, 2, random.Random(0), Deadline.budget(10))
        answers.add(exists)
        assert (groups is not None) == exists, values
        if groups is not None:
            check_groups(values, 2, groups)
    assert answers == {True, False}


def test_groups_found_are_equal_and_keep_labels_apart():
    draw = random.Random(5)
    found = {"plain": 0, "labelled": 0}
    for _ in range(300):
        gpus, size = draw.randint(2, 4), draw.randint(1, 4)
        values = [draw.randint(0, 6) for _ in range(gpus * size)]
        labels = [draw.randrange(gpus * size) for _ in values]
        for keep_apart in (None, labels):
            groups = exact_groups(values, gpus, random.Random(1), Deadline.budget(10),
                                  keep_apart)
            if groups is not None:
                found["plain" if keep_apart is None else "labelled"] += 1
                check_groups(values, gpus, groups, keep_apart)
    assert min(found.values()) >= 10, found  # both kinds are exercised


@pytest.mark.parametrize("distinct", [False, True])
def test_a_placement_is_found_exactly_when_the_optimum_is_the_mean(distinct):
    """On tiny global problems (two GPUs, so the filling is complete; enough work for
    every count vector) the search finds a placement iff brute force says the optimum is
    the mean, and each one it finds has every GPU at the mean."""
    draw = random.Random(3 + distinct)
    answers = set()
    for _ in range(60):
        experts, slots = draw.randint(1, 4), draw.randint(1, 3)
        topology = Topology(2 * slots, 1, 1, 2)
        if experts > topology.num_replicas:
            continue
        weight = np.array([draw.choice([0, 1, 2, 3, 5, 8, 12]) for _ in range(experts)])
        mean = Fraction(int(weight.sum()), 2)
        best = global_optimum(weight, topology.num_replicas, 2, distinct)
        found = equal_loads_placement(weight, topology, Deadline.budget(1), distinct=distinct)
        at_mean = best is not None and best == mean and mean > 0
        answers.add(at_mean)
        assert (found is not None) == at_mean, (weight.tolist(), slots, best)
        if found is not None:
            policy = "global+distinct" if distinct else "global"
            assert np.bincount(found, minlength=experts).min() >= 1
            assert layer_max_load(weight, found, topology, eb.Policy(policy)) == mean
    assert answers == {True, False}


@pytest.mark.parametrize("policy", ["hierarchical", "hierarchical+distinct"])
def test_deepseek_v3_nodes_that_reach_their_mean_are_certified(policy):
    """The bundled DeepSeek-V3 cut, layer 0, under the hierarchy: its heaviest node's mean,
    17391/8 tokens, is the optimum; an odd number of eighths is met only by an expert of 8
    replicas (with its weight = 7 mod 8), one on each GPU. Local search alone stops a
    fraction of a token above it."""
    instance = eb.load_instances("deepseek-v3-cut")[0]
    weight = instance.weight[:1]
    result = eb.solve(weight, instance.topology, policy, time_limit=2)[0]
    assert result.status == "OPTIMAL"
    assert result.ub == result.lb == hierarchy_bound(weight[0], instance.topology)


def test_a_global_layer_beyond_the_completion_search_is_searched_at_its_mean():
    """The same node's 64 experts (groups 0 and 7) as a global layer of 8 GPUs of 9 slots:
    the completion search does not take it, and the search at the mean certifies it
    before the joint model is called."""
    weight = eb.load_instances("deepseek-v3-cut")[0].weight[0]
    node = np.concatenate([weight[:32], weight[224:]])[None, :]
    for policy in ("global", "global+distinct"):
        result, again = (eb.solve(node, Topology(72, 1, 1, 8), policy, time_limit=2)[0]
                         for _ in range(2))
        assert result.status == "OPTIMAL"
        assert result.ub == result.lb == Fraction(int(node.sum()), 8)
        assert "fallback" not in result.params
        assert eb.check(node, result.phy2log[None, :], Topology(72, 1, 1, 8)).breach(policy) is None
        # seeded: the same placement and the same work, call after call
        assert (again.phy2log == result.phy2log).all()
        assert again.params["work"] == result.params["work"]
