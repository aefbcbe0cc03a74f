"""The first upper bound of a layer's solve: DeepSeek's placement after local search."""

from __future__ import annotations

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.completion import too_large
from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
from eplbench.solvers.local_search import improve_placement
from eplbench.solvers.work import Deadline

# share of the time limit local search (re-splits, count moves) on the starting placements
# gets: at most (it stops at a local optimum; only on DeepSeek-V3-size layers solved node by
# node does it use the whole share, time the nodes need more), and on problems beyond the
# completion search
LOCAL_SEARCH_SHARE = 0.05
LARGE_LOCAL_SEARCH_SHARE = 0.5


def best_start(weight: np.ndarray, topology: Topology, policy: Policy, deadline: Deadline,
               lower, by_nodes: bool = False) -> np.ndarray:
    """[P] the best DeepSeek placement after local search; under the global policy
    DeepSeek's hierarchical placement (other counts, also valid) is tried too, unless the
    first already meets `lower`.

    Where the completion search takes the problem, or the enumeration takes it node by
    node (`by_nodes`), local search stops at a local optimum within LOCAL_SEARCH_SHARE of
    the work left before `deadline`; beyond them, local search is the main search and goes
    on with kicks for LARGE_LOCAL_SEARCH_SHARE of it, or until the load meets `lower` (a
    lower bound, tokens). Under a distinct policy the start is DeepSeek's distinct
    placement, and local search keeps experts apart."""
    large = bool(too_large(topology)) and topology.slots_per_gpu > 2 and not by_nodes
    portion = deadline.share(LARGE_LOCAL_SEARCH_SHARE if large else LOCAL_SEARCH_SHARE)
    policies = [policy]
    if (not policy.hierarchical and topology.hierarchy_problem(len(weight)) is None
            and not (policy.distinct and topology.distinct_problem(len(weight), True))):
        policies.append(Policy.HIERARCHICAL_DISTINCT if policy.distinct else Policy.HIERARCHICAL)
    best, best_load = None, None
    for index, start_policy in enumerate(policies):
        start = improve_placement(weight, deepseek_placement(weight, topology, start_policy),
                                  topology, policy.hierarchical,
                                  portion.share(1 / (len(policies) - index)), large, lower,
                                  distinct=policy.distinct)
        load = layer_max_load(weight, start, topology)
        if best is None or load < best_load:
            best, best_load = start, load
        if best_load <= lower:
            break
    return best
