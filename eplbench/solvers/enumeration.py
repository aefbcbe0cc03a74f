"""The hierarchical policy, exactly: every group-to-node assignment, each node solved alone.

Every balanced group-to-node assignment (nodes interchangeable, so group 0 on node 0 and so
on) is bounded by its heaviest node's mean; in order of that bound, each node is solved as
an independent global problem (`completion.solve_global`, asked only about values below the
best so far). An assignment's value is its worst node; node problems are cached by their set
of groups; the search stops at the first bound that reaches the incumbent U.

A node with more GPUs than the completion search takes gets local search instead
(`local_search.improve_placement`, with kicks): its ub is then a placement's load and its
lb the node's count-free bound. An assignment's nodes are taken heaviest bound first, and
each later node's search stops once it is no worse than the nodes before it (the
assignment's value is their maximum), so the heaviest node gets the time. Where the
assignments are too many, `EnumerationTooLarge` says so and the caller falls back to the
joint model.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.completion import EnumerationTooLarge, solve_global
from eplbench.solvers.equal_loads import at_the_mean
from eplbench.solvers.fraction_proof import proven_above
from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
from eplbench.solvers.local_search import improve_placement
from eplbench.solvers.work import Deadline

MAX_ASSIGNMENTS = 2_000
# share of the time left that local search on a node too large for the completion search
# gets (a node no worse than the assignment's heavier nodes stops at once); with the
# incumbent's share at 0.05, 0.9 against 0.5 took DeepSeek-V3 hierarchical layer 49 from
# 1.1e-4 to 2.2e-5 and left the other 10 of the 11 worst layers as they were
NODE_SHARE = 0.9


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


def solve_hierarchical(weight, topology: Topology, incumbent: np.ndarray, deadline: Deadline,
                       distinct: bool = False):
    """(phy2log [P], ub, lb) for the hierarchical policy (with distinct: no GPU holds two
    replicas of one expert); incumbent must respect it."""
    group_size = len(weight) // topology.num_groups
    node_topology = Topology(topology.slots_per_node, 1, 1, topology.gpus_per_node)
    best_phy2log = incumbent
    upper = layer_max_load(weight, incumbent, topology)
    cache: dict[tuple, tuple] = {}  # groups -> ((local phy2log, ub, lb), searches so far)

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
        if deadline.passed():
            open_bounds.extend(b for b, _ in scored[index:] if b < upper)
            break
        nodes = _solve_nodes(weight, assignment, experts_of, node_bound, node_topology, upper,
                             deadline, cache, distinct)
        value = max(node[1] for node in nodes)
        if value < upper:
            upper = value
            best_phy2log = np.concatenate([experts_of(g)[node[0]]
                                           for g, node in zip(assignment, nodes)])
        assignment_bound = max(node[2] for node in nodes)
        if assignment_bound < min(value, upper):
            open_bounds.append(assignment_bound)
    return best_phy2log, upper, min([upper, *open_bounds])


def _solve_nodes(weight, assignment, experts_of, node_bound, node_topology, cutoff, deadline,
                 cache, distinct):
    """[(local phy2log, ub, lb)] of the assignment's nodes (in its order), solved heaviest
    `node_bound` (groups -> count-free bound) first, each later one only down to the worst
    ub before it."""
    bound = [node_bound(groups) for groups in assignment]
    nodes, worst = [None] * len(assignment), None
    for index in sorted(range(len(assignment)), key=lambda k: bound[k], reverse=True):
        groups = assignment[index]
        nodes[index] = _solve_node(weight, groups, experts_of(groups), node_topology,
                                   cutoff, worst, deadline, cache, distinct)
        worst = nodes[index][1] if worst is None else max(worst, nodes[index][1])
    return nodes


def _solve_node(weight, groups, experts, node_topology, cutoff, enough, deadline, cache,
                distinct):
    """(local phy2log, ub, lb) of one node's global problem, cached by its groups; local
    search (beyond the completion search) stops at `enough` (tokens, None: the node's
    bound).

    A cached entry is reused when it was proven (ub == lb), proven >= the new cutoff, or
    its ub is at most `enough`; local search otherwise goes on from it, with new kicks
    (seeded by the number of searches of this node so far). distinct: no GPU holds two
    replicas of one expert."""
    key = tuple(groups)
    cached, searches = cache.get(key, (None, 0))
    if cached and (cached[1] == cached[2] or cached[2] >= cutoff
                   or (enough is not None and cached[1] <= enough)):
        return cached
    sub = weight[experts]
    policy = Policy.GLOBAL_DISTINCT if distinct else Policy.GLOBAL
    start = cached[0] if cached else deepseek_placement(sub, node_topology, policy)
    try:
        result = solve_global(sub, node_topology, start, deadline, cutoff, distinct)
    except EnumerationTooLarge:
        result = _search_large_node(sub, node_topology, start, cutoff, enough, deadline,
                                    searches, cached is not None, distinct)
    cache[key] = result, searches + 1
    return result


def _search_large_node(sub, node_topology, start, cutoff, enough, deadline, searches,
                       descended, distinct):
    """(local phy2log, ub, lb) of a node the completion search does not take on: a
    placement at the node's mean where the node needs its bound (`at_the_mean`), else
    local search from `start` down to `enough` (kicks seeded by `searches`). Before and
    after the local search, a proof that nothing is below the placement's load or
    `cutoff` (tokens: the best layer so far), whichever is less, makes that the lb
    (`_proof`)."""
    bound = count_free_bound(sub, node_topology.num_replicas, node_topology.num_gpus)
    lower = bound[0]
    stop = lower if enough is None else max(lower, enough)
    upper = layer_max_load(sub, start, node_topology)
    if stop == lower:
        found = at_the_mean(sub, node_topology, bound, upper, deadline, searches, distinct)
        if found is not None:
            return found
    found = _proof(sub, node_topology, (start, upper), cutoff, stop, None, deadline)
    if found is not None:
        return found
    placement = improve_placement(sub, start, node_topology, False, deadline.share(NODE_SHARE),
                                  True, stop, seed=searches, descended=descended,
                                  distinct=distinct)
    searched = (placement, layer_max_load(sub, placement, node_topology))
    found = _proof(sub, node_topology, searched, cutoff, stop, min(upper, cutoff), deadline)
    return found or (*searched, min(lower, searched[1]))


def _proof(sub, node_topology, placed, cutoff, stop, asked, deadline):
    """(local phy2log, ub, lb) with lb = min(ub, cutoff) when `proven_above` shows that
    nothing is below it, else None; placed: (local phy2log, its load ub). Not tried where
    that value is at most `stop` (the search is done) or was `asked` already."""
    question = min(placed[1], cutoff)
    if question > stop and question != asked and proven_above(sub, node_topology, question,
                                                              deadline):
        return (*placed, question)
    return None
