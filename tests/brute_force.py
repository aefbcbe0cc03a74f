"""An independent oracle for tiny layers: every count vector x every packing, exactly.

Shares no code with eplbench's solvers. Weights are read as Python ints (a numpy int64
is converted first), so sums past int64 stay exact; loads are `Fraction`s.

Two oracles, one the check of the other:
- `optimum_by_packings`: every count vector x every assignment of its replicas to GPUs
  (up to relabelling empty GPUs); hierarchical: a placement counts when each group's
  replicas all sit on one node and every node holds num_groups / num_nodes groups. Slow:
  for up to about 9 slots.
- `optimum`: the same minimum, organised to be fast enough for 12 slots: per count vector,
  the GPUs are filled one at a time with every multiset of S replicas left (the rest
  memoised by the replicas left); hierarchical: every labelled balanced assignment of
  groups to nodes, each node an independent global problem (its experts, P / N slots,
  G / N GPUs). Count vectors are tried lightest largest replica first and the search
  stops at the first whose largest replica is at least the best value found (no later
  one can do better) or once the best meets sum / G; GPU fillings at or above the best
  are skipped: every cut is sound, so the minimum is exact.

`packing_optimum` (counts given) is organised the same way; `packing_optimum_by_packings`
is its slow check.

A policy "...+distinct" keeps only placements where no GPU holds two replicas of one expert
(`optimum` and `optimum_by_packings`).
"""

from fractions import Fraction
from functools import lru_cache
from itertools import combinations, combinations_with_replacement, permutations


def count_vectors(num_experts, num_slots):
    for extra in combinations_with_replacement(range(num_experts), num_slots - num_experts):
        counts = [1] * num_experts
        for e in extra:
            counts[e] += 1
        yield counts


def packings(replicas, num_gpus, slots):
    """Every assignment of the replica list to GPUs (S each), up to GPU relabelling (the
    hierarchical test below tries every labelling of the bins)."""
    bins = [[] for _ in range(num_gpus)]

    def place(index):
        if index == len(replicas):
            yield [list(b) for b in bins]
            return
        first_empty_seen = False
        for b in bins:
            if len(b) == slots:
                continue
            if not b:
                if first_empty_seen:
                    continue
                first_empty_seen = True
            b.append(replicas[index])
            yield from place(index + 1)
            b.pop()

    yield from place(0)


def hierarchical(bins, num_experts, num_groups, num_nodes):
    if num_experts % num_groups or num_groups % num_nodes:
        return False
    group_size = num_experts // num_groups
    per_node = len(bins) // num_nodes
    node_of_group = {}
    for gpu, members in enumerate(bins):
        for e in members:
            node = gpu // per_node
            if node_of_group.setdefault(e // group_size, node) != node:
                return False
    per_node_groups = [list(node_of_group.values()).count(n) for n in range(num_nodes)]
    return all(count == num_groups // num_nodes for count in per_node_groups)


def optimum_by_packings(weight, num_replicas, num_groups, num_nodes, num_gpus, policy):
    """Exact optimal max GPU load (Fraction) of one layer, or None if nothing is feasible:
    every count vector x every packing (slow)."""
    weight = [int(w) for w in weight]
    values = [packing_optimum_by_packings(weight, counts, num_groups, num_nodes, num_gpus,
                                          policy)
              for counts in count_vectors(len(weight), num_replicas)]
    values = [value for value in values if value is not None]
    return min(values) if values else None


def packing_optimum_by_packings(weight, counts, num_groups, num_nodes, num_gpus, policy):
    """Best max GPU load (Fraction) with these replica counts, or None if none is feasible:
    every packing (slow)."""
    weight = [int(w) for w in weight]
    best = None
    slots = sum(counts) // num_gpus
    replicas = [e for e, c in enumerate(counts) for _ in range(c)]
    for bins in packings(replicas, num_gpus, slots):
        if policy.endswith("+distinct") and any(len(set(b)) < len(b) for b in bins):
            continue
        if policy.startswith("hierarchical") and not any(
                hierarchical(order, len(weight), num_groups, num_nodes)
                for order in permutations(bins)):
            continue
        value = max(sum(Fraction(weight[e], counts[e]) for e in b) for b in bins)
        if best is None or value < best:
            best = value
    return best


def packing_optimum(weight, counts, num_groups, num_nodes, num_gpus, policy):
    """Best max GPU load (Fraction) with these replica counts, or None if none is feasible;
    hierarchical: each node packs its groups' replicas alone."""
    weight = [int(w) for w in weight]
    slots = sum(counts) // num_gpus
    if policy != "hierarchical":
        return _best_packing(weight, counts, num_gpus, slots, None)

    def node_optimum(experts, gpus):
        if sum(counts[e] for e in experts) != gpus * slots:
            return None
        return _best_packing([weight[e] for e in experts], [counts[e] for e in experts],
                             gpus, slots, None)

    return _hierarchical_minimum(len(weight), num_groups, num_nodes, num_gpus, node_optimum)


def optimum(weight, num_replicas, num_groups, num_nodes, num_gpus, policy):
    """Exact optimal max GPU load (Fraction) of one layer, or None if nothing is feasible."""
    weight = [int(w) for w in weight]
    distinct = policy.endswith("+distinct")
    if not policy.startswith("hierarchical"):
        return global_optimum(weight, num_replicas, num_gpus, distinct)

    def node_optimum(experts, gpus):
        return global_optimum([weight[e] for e in experts], num_replicas * gpus // num_gpus,
                              gpus, distinct)

    return _hierarchical_minimum(len(weight), num_groups, num_nodes, num_gpus, node_optimum)


def _hierarchical_minimum(num_experts, num_groups, num_nodes, num_gpus, node_optimum):
    """The least, over every labelled balanced assignment of groups to nodes, of the largest
    node value; node_optimum(experts, gpus) gives a node's value (None: infeasible)."""
    if num_experts % num_groups or num_groups % num_nodes or num_gpus % num_nodes:
        return None
    group_size = num_experts // num_groups
    node_value = {}
    best = None
    for assignment in _labelled_splits(list(range(num_groups)), num_nodes,
                                       num_groups // num_nodes):
        values = []
        for groups in assignment:
            if groups not in node_value:
                experts = [g * group_size + i for g in groups for i in range(group_size)]
                node_value[groups] = node_optimum(experts, num_gpus // num_nodes)
            values.append(node_value[groups])
        if None in values:
            continue
        value = max(values)
        if best is None or value < best:
            best = value
    return best


def _labelled_splits(groups, num_nodes, per_node):
    """Every list of num_nodes disjoint tuples of per_node groups covering `groups`."""
    if num_nodes == 0:
        yield []
        return
    for chosen in combinations(groups, per_node):
        left = [g for g in groups if g not in chosen]
        for tail in _labelled_splits(left, num_nodes - 1, per_node):
            yield [chosen, *tail]


def global_optimum(weight, num_slots, num_gpus, distinct=False):
    """Exact optimal max GPU load (Fraction) of the global problem, or None if fewer slots
    than experts (or, distinct, no placement keeps every GPU's experts distinct)."""
    weight = [int(w) for w in weight]
    if num_slots < len(weight) or num_slots % num_gpus:
        return None
    slots = num_slots // num_gpus
    mean = Fraction(sum(weight), num_gpus)  # no placement is below it
    vectors = sorted(count_vectors(len(weight), num_slots),
                     key=lambda counts: max(Fraction(w, c) for w, c in zip(weight, counts)))
    best = None
    for counts in vectors:
        largest = max(Fraction(w, c) for w, c in zip(weight, counts))
        if best is not None and (largest >= best or best == mean):
            break  # sorted: every later vector has a largest replica at least as heavy
        value = _best_packing(weight, counts, num_gpus, slots, best, distinct)
        if value is not None and (best is None or value < best):
            best = value
    return best


def _best_packing(weight, counts, num_gpus, slots, below, distinct=False):
    """The least max load of a packing of these replicas into num_gpus GPUs of `slots`
    (distinct: one replica of an expert per GPU at most), or None when every packing is at
    or above `below` (None: no limit).

    GPUs are interchangeable, so the next GPU filled is one holding a replica of the first
    expert with replicas left: every packing is reached."""
    load = [Fraction(w, c) for w, c in zip(weight, counts)]

    @lru_cache(maxsize=None)
    def fill(left):
        """Least max load of the replicas `left` (a count per expert) over GPUs of S."""
        first = next((e for e, k in enumerate(left) if k), None)
        if first is None:
            return Fraction(0)
        result = None
        for gpu in _multisets(left, slots):
            if gpu[first] == 0 or (distinct and max(gpu) > 1):
                continue
            value = sum(k * load[e] for e, k in enumerate(gpu))
            if (below is not None and value >= below) or (result is not None
                                                           and value >= result):
                continue
            rest = fill(tuple(a - b for a, b in zip(left, gpu)))
            if rest is not None:
                value = max(value, rest)
                if result is None or value < result:
                    result = value
        return result

    value = fill(tuple(counts))
    return value if below is None or (value is not None and value < below) else None


def _multisets(left, size):
    """Every vector of per-expert replica numbers at most `left`, summing to `size`."""
    if not left:
        if size == 0:
            yield ()
        return
    for k in range(min(left[0], size) + 1):
        for tail in _multisets(left[1:], size - k):
            yield (k, *tail)
