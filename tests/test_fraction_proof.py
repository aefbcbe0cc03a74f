"""Proofs that nothing is below a load (`solvers/fraction_proof.py`) against brute force."""

import itertools
import random
from fractions import Fraction

import pytest

from eplbench.solvers import fraction_proof
from eplbench.solvers.fraction_proof import (_absorbable, _dealt, fraction_parts, least_count,
                                             none_below)
from eplbench.solvers.work import Deadline

from brute_force import global_optimum


def tiny_problems(seed, count):
    """(weight, G, P) of random global problems small enough for the brute force, with
    weights up to 12, 200 or 10^18 tokens."""
    draw = random.Random(seed)
    while count:
        gpus, per_gpu = draw.randint(1, 4), draw.randint(1, 3)
        if gpus * per_gpu > 9:
            continue
        experts = draw.randint(1, gpus * per_gpu)
        high = draw.choice([12, 200, 10**18])
        weight = [draw.randint(0, high) for _ in range(experts)]
        if sum(weight):
            count -= 1
            yield weight, gpus, gpus * per_gpu


def test_no_proof_is_false_and_some_prove_more_than_the_mean():
    """Each claim 'nothing below U' holds against the brute-force optimum, for U at the
    optimum, just above and below it, and between it and the mean; and the method proves
    optima above the mean (so the check is not passed by proving nothing)."""
    assert claims_against_brute_force(5, 120) >= 5


@pytest.mark.slow
def test_no_proof_is_false_on_many_more_layers():
    assert claims_against_brute_force(6, 2_000) >= 50


def claims_against_brute_force(seed, count):
    """Checks every claim on `count` tiny problems; the number of optima above the mean
    proven."""
    above_mean = 0
    for weight, gpus, slots in tiny_problems(seed, count):
        optimum = global_optimum(weight, slots, gpus)
        mean = Fraction(sum(weight), gpus)
        for upper in {optimum, optimum + Fraction(1, 1000), optimum - Fraction(1, 1000),
                      (mean + optimum) / 2, mean}:
            if upper > 0 and none_below(weight, gpus, slots, upper, Deadline.budget(5)):
                assert upper <= optimum, (weight, gpus, slots, upper, optimum)
                above_mean += upper == optimum > mean
    return above_mean


def test_a_proof_stops_undecided_when_out_of_work_or_spare_slots(monkeypatch):
    """Nothing is claimed without the work to finish, or with more spare slots than
    MAX_SPARE: a proof that holds with work and spare slots enough."""
    # one GPU of 2 slots, experts 3 and 1: the optimum 4 is above nothing smaller
    assert none_below([3, 1], 1, 2, Fraction(4), Deadline.budget(1))
    assert not none_below([3, 1], 1, 2, Fraction(4), Deadline.budget(0))
    # 3 on two GPUs of 2 slots: halves (3/2) and an empty slot's zero; best 3/2
    assert none_below([3], 2, 4, Fraction(3, 2), Deadline.budget(1))
    monkeypatch.setattr(fraction_proof, "MAX_SPARE", 0)
    assert not none_below([3], 2, 4, Fraction(3, 2), Deadline.budget(1))


def test_least_counts_are_the_fewest_below_the_load():
    for weight in range(0, 40):
        for upper in [Fraction(1), Fraction(7, 2), Fraction(5), Fraction(40, 3)]:
            count = least_count(weight, upper)
            assert Fraction(weight, count) < upper
            assert count == 1 or Fraction(weight, count - 1) >= upper


def test_fraction_parts_are_every_multiset_of_counts_and_residues():
    for spare in range(5):
        kinds = [(c, r) for c in range(2, spare + 2) for r in range(1, c)]
        expected = {tuple(sorted(parts)) for size in range(spare + 1)
                    for parts in itertools.combinations_with_replacement(kinds, size)
                    if sum(c - 1 for c, _ in parts) <= spare}
        found = fraction_parts(spare)
        assert len(found) == len(set(found)) and set(found) == expected


def test_absorbable_agrees_with_every_split_without_fractions():
    draw = random.Random(3)
    answers = set()
    for _ in range(300):
        light = [draw.randint(0, 30) for _ in range(draw.randint(0, 4))]
        extra = draw.randint(0, 6)
        expected = any(sum(c - 1 for c in counts) == extra
                       and all(w % c == 0 for w, c in zip(light, counts))
                       for counts in itertools.product(range(1, extra + 2), repeat=len(light)))
        answers.add(expected)
        assert _absorbable(light, extra) == expected, (light, extra)
    assert answers == {True, False}


def test_a_deal_is_ruled_out_only_where_none_exists():
    """`_dealt` against every deal, exactly: never False where one exists, and False
    where none does often enough to prove things."""
    draw = random.Random(9)
    ruled_out = 0
    for _ in range(400):
        unit, gpus = draw.randint(2, 12), draw.randint(1, 3)
        loads = sorted((draw.randint(1, 60) for _ in range(draw.randint(0, 5))), reverse=True)
        cap = draw.randint(20, 80)
        low = cap - draw.randint(0, unit - 1)
        total = draw.randint(gpus * low, gpus * cap)
        exists = any(_deal_fits(loads, deal, gpus, unit, low, cap, total)
                     for deal in itertools.product(range(gpus), repeat=len(loads)))
        found = _dealt(loads, gpus, unit, (low, cap), total, Deadline.budget(5))
        assert found or not exists, (loads, gpus, unit, low, cap, total)
        ruled_out += not found
    assert ruled_out >= 50


def _deal_fits(loads, deal, gpus, unit, low, cap, total):
    held = [0] * gpus
    for load, gpu in zip(loads, deal):
        held[gpu] += load
    finals = [next((v for v in range(low, cap + 1) if v % unit == h % unit), None)
              for h in held]
    return (None not in finals and all(f >= h for f, h in zip(finals, held))
            and sum(finals) == total)
