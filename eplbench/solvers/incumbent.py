"""Starting points and exact scoring of one-layer placements for the solvers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from eplbench.checker import check
from eplbench.heuristics.deepseek_distinct import rebalance_experts as deepseek_distinct
from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek_fast
from eplbench.problem import Policy, Topology


def deepseek_placement(weight: np.ndarray, topology: Topology, policy: Policy) -> np.ndarray:
    """[P] DeepSeek's placement of one layer ([E] tokens) under `policy`: under a distinct
    policy DeepSeek's distinct variant, its replicas dealt again within each node where
    its packing could not keep them apart (`deal_within_nodes`)."""
    if policy.hierarchical:
        shape = topology.as_tuple()
    else:
        shape = (topology.num_replicas, 1, 1, topology.num_gpus)
    rebalance = deepseek_distinct if policy.distinct else deepseek_fast
    phy2log = rebalance(torch.from_numpy(weight[None, :]), *shape)[0][0].numpy()
    if policy.distinct and check(weight[None, :], phy2log[None, :], topology).colocated_replicas:
        nodes = topology.num_nodes if policy.hierarchical else 1
        phy2log = deal_within_nodes(phy2log, nodes, topology.num_gpus)
    return phy2log


def deal_within_nodes(phy2log: np.ndarray, num_nodes: int, num_gpus: int) -> np.ndarray:
    """[P] the same replicas on the same nodes, each node's dealt to its GPUs in turn,
    expert by expert: no GPU gets two replicas of one expert while no expert has more
    replicas than the node has GPUs."""
    per_node = num_gpus // num_nodes
    dealt = []
    for slots in np.sort(phy2log.reshape(num_nodes, -1), axis=1):
        dealt.append(slots.reshape(-1, per_node).T.reshape(-1))
    return np.concatenate(dealt)


def layer_max_load(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                   policy: Policy = Policy.GLOBAL) -> Fraction:
    """Exact max load of a one-layer placement, through the one checker; refuses a
    placement that breaks `policy` (a solver's bug)."""
    evaluation = check(weight[None, :], phy2log[None, :], topology)
    breach = evaluation.breach(policy)
    if breach:
        raise AssertionError(f"a solve produced a placement that {breach}")
    return evaluation.max_load[0]
