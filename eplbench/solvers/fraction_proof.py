"""Proofs that no placement keeps every GPU below a load U, from the replicas' fractions.

Where the best load U is a fraction of a token above the mean (the 8-GPU nodes of
DeepSeek-V3: 72 replicas of 64 experts), a placement below U has every GPU load in a
window narrower than a token: at most cap = ceil(U L) - 1 units of 1/L token, and so at
least total - (G - 1) cap. With the counts' lcm L, a replica's load w / c is a whole number
of units, and its fractional part (w mod c) / c fixes its residue modulo L. When the
window is narrower than L, a GPU's residue fixes its load: the GPUs' residues must give
loads that sum to the total exactly. That rules out most count vectors at once, and the
rest are few (`docs/solvers.md`).

The proof reads a count vector only through
- the counts of the heavy experts (those that need two replicas or more to stay below U),
  whose replicas are dealt with their exact loads, and
- the other experts split with a fractional part: the multiset of (count, w mod count)
  pairs ("parts"), dealt with the least load an expert of that pair has; those split
  without one only take spare slots, and need not be dealt.
For every such pattern, the fractional replicas are dealt to the GPUs (multisets of known
loads, each at most cap), and the deal must end with every GPU's residue giving a load in
the window, at least what it holds, the loads summing to the total. Every step keeps more
deals than real placements allow (slots per GPU and the integer replicas are left out), so
a pattern with no deal has no placement, and when no pattern has one, nothing is below U.
"""

from __future__ import annotations

import math
from fractions import Fraction

from eplbench.problem import Topology
from eplbench.solvers.work import Deadline

# spare slots (beyond each expert's least count) past which no proof is tried: patterns
# grow as the plane partitions (1,124 with 10 spare slots, 3,462 with 12)
MAX_SPARE = 12
# deal states (multisets of G GPUs' residue and load) past which a pattern counts as
# possible: no proof
MAX_STATES = 20_000
# share of the work left that a proof gets where it is tried: it stops at the first
# pattern that allows a placement, and proved the DeepSeek-V3 nodes it proves in 0.02 and
# 0.12 s of work
SHARE = 0.2
# a GPU's load in a deal is rounded down to a multiple of cap / LEVELS (see `_dealt`)
LEVELS = 8
# work charged (ticks, about 0.1 us each): a pattern checked (its lcm, window and
# candidates among the light experts: 40 us on 64 experts), a deal state grown by one
# replica (a tuple of G pairs sorted: 1.6 us a GPU)
PATTERN_TICKS = 400
STATE_TICKS = 16


def proven_above(weight, topology: Topology, upper: Fraction, deadline: Deadline) -> bool:
    """`none_below` on the global problem `topology`, within `deadline`'s SHARE: True
    when no placement has every GPU below `upper` (tokens)."""
    return none_below(weight, topology.num_gpus, topology.num_replicas, upper,
                      deadline.share(SHARE))


def none_below(weight, num_gpus: int, num_slots: int, upper: Fraction,
               deadline: Deadline) -> bool:
    """True when no placement of `weight` ([E] tokens, ints) on `num_gpus` GPUs of
    `num_slots` slots in all keeps every GPU load below `upper` (tokens): then upper is a
    lower bound on the optimum. False when some count vector's pattern allows it, or when
    undecided (too many spare slots or deal states, or out of work)."""
    weight = [int(w) for w in weight]
    total = sum(weight)
    if total == 0 or upper <= 0:
        return False
    least = [least_count(w, upper) for w in weight]
    spare = num_slots - sum(least)
    if spare < 0:
        return True
    if spare > MAX_SPARE:
        return False
    heavy = [e for e, c in enumerate(least) if c > 1]
    light = [w for c, w in zip(least, weight) if c == 1]
    problem = (total, num_gpus, upper)
    for left, heavy_items in _heavy_splits(heavy, weight, least, spare):
        for parts in fraction_parts(left):
            if not deadline.afford(PATTERN_TICKS):
                return False
            if not _pattern_ruled_out(heavy_items, parts, light, left, problem, deadline):
                return False
    return True


def least_count(weight: int, upper: Fraction) -> int:
    """The fewest replicas (at least 1) whose load weight / c is below `upper`."""
    return max(1, math.floor(weight / upper) + 1)


def fraction_parts(spare: int) -> list[tuple[tuple[int, int], ...]]:
    """Every multiset of (count c >= 2, residue r in 1..c-1) pairs whose extra slots,
    the sum of c - 1, are at most `spare`; each a sorted tuple."""
    kinds = [(c, r) for c in range(2, spare + 2) for r in range(1, c)]
    found = []

    def extend(start, left, parts):
        found.append(tuple(parts))
        for index in range(start, len(kinds)):
            if kinds[index][0] - 1 <= left:
                extend(index, left - kinds[index][0] + 1, [*parts, kinds[index]])

    extend(0, spare, [])
    return found


def _heavy_splits(heavy, weight, least, spare):
    """(spare left, [(count, weight)] of the heavy experts) for every way of giving the
    heavy experts (indices) counts from their least up, within `spare` extra slots."""
    def extend(index, left, items):
        if index == len(heavy):
            yield left, items
            return
        expert = heavy[index]
        for extra in range(left + 1):
            yield from extend(index + 1, left - extra,
                              [*items, (least[expert] + extra, weight[expert])])

    return extend(0, spare, [])


def _pattern_ruled_out(heavy_items, parts, light, left, problem, deadline) -> bool:
    """Whether no placement has these heavy counts and light parts (`none_below`'s
    pattern): its experts cannot be found, or its replicas have no deal in the window.
    light: [n] weights of the experts with least count 1; left: spare slots not given to
    the heavy experts; problem: (total tokens, G, upper)."""
    used = sum(c - 1 for c, _ in parts)
    if used > left or not _absorbable(light, left - used):
        return True
    candidates = [[i for i, w in enumerate(light) if w % c == r] for c, r in parts]
    if not _matchable(candidates):
        return True
    items = [*heavy_items, *((c, min(light[i] for i in found))
                             for (c, _), found in zip(parts, candidates))]
    total, gpus, upper = problem
    unit = math.lcm(1, *(c for c, w in items if w % c))
    cap = math.ceil(upper * unit) - 1
    low = total * unit - (gpus - 1) * cap
    if low > cap:
        return True
    if cap - low + 1 >= unit:
        return False  # a window of a whole token or more: residues fix nothing
    loads = sorted((w * unit // c for c, w in items for _ in range(c)), reverse=True)
    return not _dealt(loads, gpus, unit, (low, cap), total * unit, deadline)


def _absorbable(light: list[int], extra: int) -> bool:
    """Whether `extra` spare slots can go to experts split with no fractional part (c
    replicas of an expert with w mod c == 0 take c - 1 of them), counting every light
    expert, those of the pattern's parts too (so never False where a placement has it)."""
    mask = (1 << (extra + 1)) - 1
    reach = 1
    for w in light:
        grown = reach
        for c in range(2, extra + 2):
            if w % c == 0:
                grown |= reach << (c - 1)
        reach = grown & mask
    return bool(reach >> extra & 1)


def _matchable(candidates: list[list[int]]) -> bool:
    """Whether each part gets a distinct expert of its candidates (augmenting paths)."""
    owner: dict[int, int] = {}

    def assign(part, seen):
        for expert in candidates[part]:
            if expert not in seen:
                seen.add(expert)
                if expert not in owner or assign(owner[expert], seen):
                    owner[expert] = part
                    return True
        return False

    return all(assign(part, set()) for part in range(len(candidates)))


def _dealt(loads: list[int], gpus: int, unit: int, window: tuple[int, int], total: int,
           deadline: Deadline) -> bool:
    """Whether `loads` (units, heaviest first) can be dealt to `gpus` GPUs, each holding at
    most the window's top, so that each GPU's final load, the one value of the window
    (low, cap: narrower than `unit`) with its residue, is at least what it holds and the
    final loads sum to `total`. True also when undecided (MAX_STATES, out of work).

    A GPU's state is its residue and a lower bound on what it holds, rounded down to a
    multiple of cap / LEVELS (then raised to the residue): deals that differ by less
    merge."""
    low, cap = window
    bucket = max(1, cap // LEVELS)
    allowed = {(low + step) % unit for step in range(cap - low + 1)}
    states = {((0, 0),) * gpus}
    for position, load in enumerate(loads):
        if not deadline.afford(STATE_TICKS * gpus * len(states)):
            return True
        grown = set()
        for state in states:
            for index, (residue, held) in enumerate(state):
                if (index == 0 or state[index - 1] != state[index]) and held + load <= cap:
                    now = held + load
                    kept = now - now % bucket
                    kept += (now - kept) % unit  # the least value >= kept with now's residue
                    grown.add(tuple(sorted((*state[:index], (now % unit, kept),
                                            *state[index + 1:]))))
        left = len(loads) - position - 1  # each GPU off the window needs one of them
        states = {state for state in grown
                  if sum(residue not in allowed for residue, _ in state) <= left}
        if len(states) > MAX_STATES:
            return True
    return any(_final_loads_sum(state, unit, low, cap) == total for state in states)


def _final_loads_sum(state: tuple[tuple[int, int], ...], unit: int, low: int,
                     cap: int) -> int | None:
    """The sum of each GPU's final load (the window's value with its residue), or None
    when some GPU has none at least what it holds."""
    finals = [low + (residue - low) % unit for residue, _ in state]
    if any(final > cap or final < held for final, (_, held) in zip(finals, state)):
        return None
    return sum(finals)
