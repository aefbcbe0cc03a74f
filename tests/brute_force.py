"""An independent oracle for tiny layers: every count vector x every packing, in Fractions.

Shares no code with eplbench's solvers. Hierarchical: a placement counts when each group's
replicas all sit on one node and every node holds num_groups / num_nodes groups.
"""

from fractions import Fraction
from itertools import combinations_with_replacement, permutations


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


def optimum(weight, num_replicas, num_groups, num_nodes, num_gpus, policy):
    """Exact optimal max GPU load (Fraction) of one layer, or None if nothing is feasible."""
    values = [packing_optimum(weight, counts, num_groups, num_nodes, num_gpus, policy)
              for counts in count_vectors(len(weight), num_replicas)]
    values = [value for value in values if value is not None]
    return min(values) if values else None


def packing_optimum(weight, counts, num_groups, num_nodes, num_gpus, policy):
    """Best max GPU load (Fraction) with these replica counts, or None if none is feasible."""
    best = None
    slots = sum(counts) // num_gpus
    replicas = [e for e, c in enumerate(counts) for _ in range(c)]
    for bins in packings(replicas, num_gpus, slots):
        if policy == "hierarchical" and not any(
                hierarchical(order, len(weight), num_groups, num_nodes)
                for order in permutations(bins)):
            continue
        value = max(sum(Fraction(weight[e], counts[e]) for e in b) for b in bins)
        if best is None or value < best:
            best = value
    return best
