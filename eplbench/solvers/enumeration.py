"""The default exact method: branch and bound over replica-count vectors, each packed exactly.

Global policy: every count vector c whose no-search bound is below the incumbent U is
generated (c_e > w_e / U, so that the largest replica stays below U), sorted by bound, and
packed (`packing.pack`) with cutoff U; the search stops at the first vector whose bound
reaches U. The lower bound is min(U, the bounds of the vectors left unresolved).

Hierarchical policy: every balanced group-to-node assignment (nodes interchangeable, so
group 0 on node 0 and so on), each node an independent global problem; an assignment's value
is its worst node, node problems are cached by their set of groups, and assignments whose
node bounds reach U are skipped.

Where the vectors or assignments are too many, `EnumerationTooLarge` says so and the caller
falls back to the joint model.
"""

from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.incumbent import deepseek_placement
from eplbench.solvers.packing import count_bound, max_load, pack

MAX_VECTORS = 5_000
MAX_ASSIGNMENTS = 2_000


class EnumerationTooLarge(Exception):
    """More count vectors or assignments than the enumeration handles."""


def count_vectors(weight, num_slots: int, upper: Fraction):
    """Every count vector with sum num_slots whose largest replica is below `upper`."""
    low = [int(w) // upper + 1 if upper > 0 else 1 for w in weight]
    low = [max(1, int(lo)) for lo in low]
    spare = num_slots - sum(low)
    if spare < 0:
        return []
    num_experts = len(weight)
    if math.comb(num_experts + spare - 1, spare) > MAX_VECTORS:
        raise EnumerationTooLarge(f"{math.comb(num_experts + spare - 1, spare)} count vectors")
    vectors = []
    for extra in itertools.combinations_with_replacement(range(num_experts), spare):
        counts = list(low)
        for e in extra:
            counts[e] += 1
        vectors.append(counts)
    return vectors


def solve_global(weight, topology: Topology, incumbent: np.ndarray, deadline: float,
                 cutoff: Fraction | None = None):
    """(phy2log [P], ub, lb) for one global-policy problem.

    incumbent: a [P] placement (its value is the first U). With `cutoff`, only solutions
    below it matter: the search stops proving once everything left is >= cutoff.
    """
    counts = np.bincount(incumbent, minlength=len(weight))
    best_phy2log, upper = incumbent, max_load(weight, counts, incumbent, topology)
    floor_bound, _ = count_free_bound(weight, topology.num_replicas, topology.num_gpus)
    goal = upper if cutoff is None else min(upper, cutoff)
    vectors = count_vectors(weight, topology.num_replicas, goal)
    scored = sorted(((count_bound(weight, c, topology), c) for c in vectors),
                    key=lambda item: item[0])
    open_bounds = []
    for index, (bound, counts) in enumerate(scored):
        goal = upper if cutoff is None else min(upper, cutoff)
        if bound >= goal:
            break
        if time.perf_counter() >= deadline:
            open_bounds.extend(b for b, _ in scored[index:] if b < goal)
            break
        result = pack(weight, counts, topology, goal, deadline, bound)
        if result.value < upper:
            best_phy2log, upper = result.phy2log, result.value
        if not result.resolved(min(upper, goal)):
            open_bounds.append(result.bound)
    # vectors past the loop's end have bounds >= goal
    lower = min([upper, goal, *open_bounds])
    return best_phy2log, upper, max(lower, min(floor_bound, upper))


def balanced_assignments(num_groups: int, num_nodes: int):
    """Every split of groups 0..num_groups-1 into num_nodes equal sets, nodes unlabelled."""
    per_node = num_groups // num_nodes

    def split(remaining):
        if not remaining:
            yield []
            return
        first, rest = remaining[0], remaining[1:]
        for others in itertools.combinations(rest, per_node - 1):
            chosen = (first, *others)
            left = [g for g in rest if g not in others]
            for tail in split(left):
                yield [chosen, *tail]

    count = math.factorial(num_groups) // (math.factorial(per_node) ** num_nodes
                                           * math.factorial(num_nodes))
    if count > MAX_ASSIGNMENTS:
        raise EnumerationTooLarge(f"{count} group-to-node assignments")
    return list(split(list(range(num_groups))))


def solve_hierarchical(weight, topology: Topology, incumbent: np.ndarray, deadline: float):
    """(phy2log [P], ub, lb) for the hierarchical policy; incumbent must be hierarchical."""
    group_size = len(weight) // topology.num_groups
    node_topology = Topology(topology.slots_per_node, 1, 1, topology.gpus_per_node)
    best_phy2log = incumbent
    upper = max_load(weight, np.bincount(incumbent, minlength=len(weight)), incumbent,
                     topology)
    cache: dict[tuple, tuple] = {}

    def experts_of(groups):
        return np.concatenate([np.arange(g * group_size, (g + 1) * group_size) for g in groups])

    def node_bound(groups):
        sub = weight[experts_of(groups)]
        return count_free_bound(sub, node_topology.num_replicas, node_topology.num_gpus)[0]

    assignments = balanced_assignments(topology.num_groups, topology.num_nodes)
    scored = sorted(((max(node_bound(g) for g in a), a) for a in assignments),
                    key=lambda item: item[0])
    open_bounds = []
    for index, (bound, assignment) in enumerate(scored):
        if bound >= upper:
            break
        if time.perf_counter() >= deadline:
            open_bounds.extend(b for b, _ in scored[index:] if b < upper)
            break
        nodes = [_solve_node(weight, groups, experts_of(groups), node_topology, upper,
                             deadline, cache) for groups in assignment]
        value = max(node[1] for node in nodes)
        if value < upper:
            upper = value
            best_phy2log = np.concatenate([experts_of(g)[node[0]]
                                           for g, node in zip(assignment, nodes)])
        assignment_bound = max(node[2] for node in nodes)
        if assignment_bound < min(value, upper):
            open_bounds.append(assignment_bound)
    return best_phy2log, upper, min([upper, *open_bounds])


def _solve_node(weight, groups, experts, node_topology, cutoff, deadline, cache):
    """(local phy2log, ub, lb) of one node's global problem, cached by its groups.

    A cached entry is reused when it was proven (ub == lb) or proven >= the new cutoff."""
    key = tuple(groups)
    cached = cache.get(key)
    if cached and (cached[1] == cached[2] or cached[2] >= cutoff):
        return cached
    sub = weight[experts]
    start = deepseek_placement(sub, node_topology, Policy.GLOBAL)
    result = solve_global(sub, node_topology, start, deadline, cutoff)
    cache[key] = result
    return result
