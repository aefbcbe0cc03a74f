"""Lower bounds on a layer's optimal max GPU load that need no search (spec §3, 10).

Loads are exact: `Fraction`s of tokens. "Count-free" bounds hold for every replica-count
vector.
"""

from __future__ import annotations

import heapq
from fractions import Fraction


def dhondt_counts(weight, num_slots: int) -> list[int]:
    """D'Hondt: each extra slot to the expert with the largest w / count (lowest index on ties).

    Minimises the largest replica load max_e w_e / c_e over all count vectors summing to
    `num_slots` with every count >= 1 (spec §10).
    """
    weight = [int(w) for w in weight]
    counts = [1] * len(weight)
    heap = [(-Fraction(w), index) for index, w in enumerate(weight)]
    heapq.heapify(heap)
    for _ in range(num_slots - len(weight)):
        _, index = heapq.heappop(heap)
        counts[index] += 1
        heapq.heappush(heap, (-Fraction(weight[index], counts[index]), index))
    return counts


def replica_bound(weight, num_slots: int) -> Fraction:
    """The smallest possible largest replica load: D'Hondt's maximum."""
    counts = dhondt_counts(weight, num_slots)
    return max(Fraction(int(w), c) for w, c in zip(weight, counts))


def exact_sum(weight) -> int:
    """The sum of token counts as a Python int (numpy's int64 sum wraps past 2^63)."""
    return sum(int(w) for w in weight)


def mean_bound(weight, num_gpus: int) -> Fraction:
    """sum(weight) / G: some GPU carries at least the average."""
    return Fraction(exact_sum(weight), num_gpus)


def count_free_bound(weight, num_slots: int, num_gpus: int) -> tuple[Fraction, str]:
    """(the best count-free bound, its name)."""
    candidates = [(mean_bound(weight, num_gpus), "mean"),
                  (replica_bound(weight, num_slots), "replica")]
    return max(candidates, key=lambda item: item[0])


def node_mean_bound(weight, num_groups: int, num_nodes: int, num_gpus: int,
                    assignments) -> Fraction:
    """Hierarchical policy: min over balanced group-to-node `assignments` (lists of group
    tuples, one per node) of the heaviest node's total / its G / N GPUs."""
    group_size = len(weight) // num_groups
    group_total = [exact_sum(weight[g * group_size:(g + 1) * group_size])
                   for g in range(num_groups)]
    per_node_gpus = num_gpus // num_nodes
    return min(Fraction(max(sum(group_total[g] for g in node) for node in assignment),
                        per_node_gpus)
               for assignment in assignments)
