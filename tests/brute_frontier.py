"""An independent oracle for the migration frontier of tiny layers (spec §11).

Shares no code with eplbench: every count vector, every labelled group-to-node split (under
the hierarchy) and every filling of the labelled GPUs one at a time, with the weights each
GPU receives (experts it holds that it did not hold in the plan in place) counted as it is
filled. Loads are `Fraction`s of tokens.
"""

from fractions import Fraction
from functools import lru_cache

from brute_force import _labelled_splits, _multisets, count_vectors


def frontier(weight, num_slots, num_groups, num_nodes, num_gpus, policy, old):
    """[K = 0..num_slots]: the least max load of a plan of `policy` receiving at most K
    weights from the plan in place `old` (a list of num_slots expert ids)."""
    weight = [int(w) for w in weight]
    num_experts = len(weight)
    slots = num_slots // num_gpus
    held = [set(old[g * slots:(g + 1) * slots]) for g in range(num_gpus)]
    group_size = num_experts // num_groups
    if policy == "hierarchical":
        splits = list(_labelled_splits(list(range(num_groups)), num_nodes,
                                       num_groups // num_nodes))
    else:
        splits = [[tuple(range(num_groups))] * num_nodes]
    best = [None] * (num_slots + 1)
    for counts in count_vectors(num_experts, num_slots):
        for split in splits:
            allowed = [{e for e in range(num_experts)
                        if e // group_size in split[g * num_nodes // num_gpus]}
                       for g in range(num_gpus)]
            for received, load in _fill(weight, tuple(counts), slots, held, allowed).items():
                for k in range(received, num_slots + 1):
                    if best[k] is None or load < best[k]:
                        best[k] = load
    return best


def _fill(weight, counts, slots, held, allowed):
    """{weights received: least max load} over the ways to fill GPUs 0.. with `counts`."""
    num_gpus = len(held)

    @lru_cache(maxsize=None)
    def rest(gpu, left):
        if gpu == num_gpus:
            return {0: Fraction(0)} if not any(left) else {}
        options = {}
        for taken in _multisets(list(left), slots):
            if any(k and e not in allowed[gpu] for e, k in enumerate(taken)):
                continue
            load = sum((Fraction(weight[e] * k, counts[e]) for e, k in enumerate(taken)),
                       Fraction(0))
            new = sum(1 for e, k in enumerate(taken) if k and e not in held[gpu])
            after = tuple(a - k for a, k in zip(left, taken))
            for received, peak in rest(gpu + 1, after).items():
                key, value = received + new, max(load, peak)
                if key not in options or value < options[key]:
                    options[key] = value
        return options

    return rest(0, counts)
