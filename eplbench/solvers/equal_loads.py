"""Placements whose every GPU carries exactly the mean load: a search over count vectors.

Where a global problem's lower bound is the mean, sum(w) / G, and the best placement found
sits a fraction of a token above it (the 8-GPU nodes of DeepSeek-V3: 72 replicas of 64
experts), the optimum is the mean exactly when some count vector's replicas split into G
groups of S with equal sums. Two facts make such a split cheap to look for:

- Fractions. With counts c, a replica's load w / c is an integer plus (w mod c) / c, and a
  GPU at the mean has the mean's fractional part. So the replicas with a fractional part
  must split into G groups whose fractions each add up to the mean's, modulo 1: a small
  problem (`fractions_split`) that rules out most count vectors in microseconds. A mean of
  an odd number of eighths on 8 GPUs, say, needs an expert with 8 replicas.
- Density. The integer parts then nearly always balance, as many small replicas can make
  up any sum: the groups are filled one at a time, each with the heaviest replica left
  and S - 1 others of exactly the right total, drawn at random from a subset-sum table
  (`exact_groups`).

Count vectors are drawn at random (seeded) around the least counts that keep every replica
at most the mean: the spare slots are split by a random integer partition among random
experts. Failing proves nothing; a split found is a placement at the lower bound, so
optimal. Work is charged by what each step touches (tables' bits, fraction states).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np

from eplbench.problem import Topology
from eplbench.solvers.work import Deadline

# share of the work left that one search gets: where a split exists it is mostly found in
# milliseconds (29 of the 34 DeepSeek-V3 hierarchical layers open at 10 s, under 0.4 s of
# work but for two of 2 s), and the rest goes to local search
SHARE = 0.3
# random restarts of the group filling after its first group succeeded
FILL_TRIES = 20
# the largest target (in lcm units) whose subset-sum table is built: beyond it a count
# vector's tables cost more than a whole search usually does
MAX_TARGET = 1 << 20
# the most fraction states (multisets of G group fractions) kept; beyond, the count vector
# is not ruled out and goes to the group filling
MAX_FRACTION_STATES = 512
# draws in a row of count vectors already tried after which the search stops (on small
# problems, every vector has been tried)
MAX_REPEATS = 1_000
# the most integer partitions of the spare slots drawn from
MAX_PATTERNS = 2_048
# work charged (ticks of `work`, about 0.1 us each; measured on the development machine):
# a count vector drawn and its fractions listed (10-20 us), a fraction state grown by
# one replica (at most G per state and replica: 1 us each),
# a subset-sum table entry (an operation on a Python int: 0.5 us plus 0.004-0.006 us a
# 64-bit word up to MAX_TARGET bits, more beyond as the tables leave the caches)
VECTOR_TICKS = 200
STATE_TICKS = 10
ENTRY_TICKS = 5
WORDS_PER_TICK = 16


def at_the_mean(weight, topology: Topology, bound: tuple[Fraction, str], upper: Fraction,
                deadline: Deadline, seed: int = 0, distinct: bool = False):
    """(phy2log [P], mean, mean) when a placement with every GPU at the mean is found
    within `deadline`'s SHARE, else None; tried only where the mean is below `upper` (the
    best load so far, tokens) and is the problem's count-free bound (`bound`: that bound
    and its name, from `bounds.count_free_bound`), so that such a placement is optimal."""
    lower, source = bound
    if source != "mean" or lower >= upper:
        return None
    found = equal_loads_placement(weight, topology, deadline.share(SHARE), seed, distinct)
    return None if found is None else (found, lower, lower)


def equal_loads_placement(weight, topology: Topology, deadline: Deadline, seed: int = 0,
                          distinct: bool = False) -> np.ndarray | None:
    """[P] phy2log (experts of GPU 0's slots, then GPU 1's, ...) with every GPU load equal
    to sum(weight) / G exactly, or None if none was found before `deadline` (work).

    weight: [E] tokens (int); topology: one global problem; distinct: no GPU holds two
    replicas of one expert. The same call gives the same answer (seeded draws)."""
    weight = [int(w) for w in weight]
    gpus, slots = topology.num_gpus, topology.num_replicas
    total = sum(weight)
    if total == 0:
        return None
    least = least_counts(weight, Fraction(total, gpus))
    spare = slots - sum(least)
    if spare < 0:
        return None
    patterns = _patterns(spare, len(weight))
    draw, seen, splits, repeats = random.Random(seed), set(), {}, 0
    while repeats < MAX_REPEATS and deadline.afford(VECTOR_TICKS):
        counts = _draw_counts(least, patterns, draw)
        repeats = repeats + 1 if tuple(counts) in seen else 0
        if repeats:
            continue
        seen.add(tuple(counts))
        groups = _groups_for(weight, counts, gpus, draw, deadline, distinct, splits)
        if groups is not None:
            return np.array([e for group in groups for e in group], dtype=np.int64)
    return None


def least_counts(weight: list[int], mean: Fraction) -> list[int]:
    """[E] the fewest replicas keeping each replica's load at most `mean` (at least 1)."""
    return [max(1, math.ceil(w / mean)) for w in weight]


def _patterns(spare: int, num_experts: int) -> list[list[int]]:
    """Integer partitions of `spare` into at most num_experts parts, largest part first
    (at most MAX_PATTERNS of them)."""
    found = []

    def extend(left, largest, parts):
        if len(found) >= MAX_PATTERNS:
            return
        if left == 0:
            found.append(parts)
            return
        if len(parts) == num_experts:
            return
        for part in range(min(left, largest), 0, -1):
            extend(left - part, part, [*parts, part])

    extend(spare, spare, [])
    return found


def _draw_counts(least: list[int], patterns: list[list[int]], draw: random.Random):
    """[E] counts: `least` plus a random pattern's parts on random distinct experts."""
    counts = list(least)
    pattern = draw.choice(patterns)
    for expert, part in zip(draw.sample(range(len(least)), len(pattern)), pattern):
        counts[expert] += part
    return counts


def _groups_for(weight, counts, gpus, draw, deadline, distinct, splits):
    """[G][S] experts of an equal split of the replicas `counts` gives, or None. splits:
    `fractions_split`'s answers so far, by (unit, goal, sorted fractions): the fractions
    come from few values (halves, quarters, ...), so most vectors repeat an earlier one's."""
    unit = math.lcm(*counts)  # every replica load is a whole number of 1/unit tokens
    total = sum(weight) * unit
    if total % gpus:
        return None  # the mean is no whole number of units: no GPU can carry it
    target = total // gpus
    fractions = sorted(w % c * (unit // c) for w, c in zip(weight, counts) for _ in range(c)
                       if w % c)
    key = (unit, target % unit, tuple(fractions))
    if key not in splits:
        splits[key] = fractions_split(fractions, gpus, target % unit, unit, deadline)
    if not splits[key]:
        return None
    if target > MAX_TARGET:
        return None
    experts = [e for e, c in enumerate(counts) for _ in range(c)]
    values = [weight[e] * unit // counts[e] for e in experts]
    groups = exact_groups(values, gpus, draw, deadline, experts if distinct else None)
    return None if groups is None else [[experts[i] for i in group] for group in groups]


def fractions_split(fractions: list[int], gpus: int, goal: int, unit: int,
                    deadline: Deadline) -> bool:
    """Whether `fractions` (each in [1, unit), units of 1 / unit token) can be dealt to
    `gpus` groups each summing to `goal` modulo `unit`; True also when undecided (more than
    MAX_FRACTION_STATES states, or out of work)."""
    states = {(0,) * gpus}
    for fraction in sorted(fractions, reverse=True):
        if not deadline.afford(STATE_TICKS * len(states) * gpus):
            return True
        following = set()
        for state in states:
            for index in _distinct_positions(state):
                grown = list(state)
                grown[index] = (grown[index] + fraction) % unit
                following.add(tuple(sorted(grown)))
        states = following
        if len(states) > MAX_FRACTION_STATES:
            return True
    return (goal,) * gpus in states


def _distinct_positions(state: tuple) -> list[int]:
    """The first position of each distinct value of a sorted tuple."""
    return [i for i, v in enumerate(state) if i == 0 or state[i - 1] != v]


def exact_groups(values: list[int], gpus: int, draw: random.Random, deadline: Deadline,
                 labels: list[int] | None = None) -> list[list[int]] | None:
    """Indices of `values` (non-negative ints, len a multiple of gpus) in `gpus` groups of
    equal size and equal sum, or None if the random filling found none (FILL_TRIES
    restarts, or out of work). Each group takes the heaviest value left and a random set of
    others with exactly the rest of its sum. labels: [n] ids no group may hold twice."""
    total = sum(values)
    if total % gpus:
        return None
    size, target = len(values) // gpus, total // gpus
    order = sorted(range(len(values)), key=lambda i: -values[i])
    for _ in range(FILL_TRIES):
        groups, hopeless = _fill(values, order, gpus, size, target, draw, deadline, labels)
        if groups is not None or hopeless:
            return groups
    return None


def _fill(values, order, gpus, size, target, draw, deadline, labels):
    """(groups or None, hopeless): hopeless when the group of the heaviest value cannot be
    filled at all, so that no restart can help."""
    left, groups = list(order), []
    for number in range(gpus - 1):
        first, rest = left[0], left[1:]
        if labels is not None:
            rest = [i for i in rest if labels[i] != labels[first]]
        picked = _subset_with_sum([values[i] for i in rest], size - 1,
                                  target - values[first], draw, deadline)
        if picked is None:
            return None, number == 0
        if labels is not None and not _distinct(picked, rest, labels):
            return None, False
        chosen = {rest[p] for p in picked}
        groups.append([first, *chosen])
        left = [i for i in left[1:] if i not in chosen]
    if labels is not None and len({labels[i] for i in left}) < len(left):
        return None, False
    return [*groups, left], False


def _distinct(picked, rest, labels) -> bool:
    return len({labels[rest[p]] for p in picked}) == len(picked)


def _subset_with_sum(values: list[int], count: int, goal: int, draw: random.Random,
                     deadline: Deadline) -> list[int] | None:
    """Positions of `count` of `values` summing to `goal`, drawn at random among the
    choices a subset-sum table allows, or None (none exists, or out of work)."""
    if goal < 0:
        return None
    entries = (count + 1) * (len(values) + 1)
    if not deadline.afford(entries * (ENTRY_TICKS + (goal >> 6) // WORDS_PER_TICK)):
        return None
    reach = _reach_table(values, count, (1 << (goal + 1)) - 1)
    if not reach[0][count] >> goal & 1:
        return None
    picked, position = [], 0
    while count:
        value = values[position]
        take = value <= goal and reach[position + 1][count - 1] >> (goal - value) & 1
        skip = reach[position + 1][count] >> goal & 1
        if take and (not skip or draw.random() < 0.5):
            picked.append(position)
            goal -= value
            count -= 1
        position += 1
    return picked


def _reach_table(values: list[int], count: int, mask: int) -> list[list[int]]:
    """reach[i][k]: bitset (a Python int) of the sums of k of values[i:], cut to `mask`."""
    reach = [[0] * (count + 1) for _ in range(len(values) + 1)]
    reach[len(values)][0] = 1
    for i in range(len(values) - 1, -1, -1):
        below, here = reach[i + 1], reach[i]
        here[0] = 1
        for k in range(1, count + 1):
            here[k] = below[k] | ((below[k - 1] << values[i]) & mask)
    return reach
