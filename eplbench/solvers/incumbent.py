"""Starting points and exact scoring of one-layer placements for the solvers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from eplbench.checker import check
from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek_fast
from eplbench.problem import Policy, Topology


def deepseek_placement(weight: np.ndarray, topology: Topology, policy: Policy) -> np.ndarray:
    """[P] DeepSeek's placement of one layer ([E] tokens) under `policy`."""
    if policy is Policy.HIERARCHICAL:
        shape = topology.as_tuple()
    else:
        shape = (topology.num_replicas, 1, 1, topology.num_gpus)
    phy2log, _, _ = deepseek_fast(torch.from_numpy(weight[None, :]), *shape)
    return phy2log[0].numpy()


def layer_max_load(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                   policy: Policy = Policy.GLOBAL) -> Fraction:
    """Exact max load of a one-layer placement, through the one checker; refuses a
    non-hierarchical placement where the policy is hierarchical."""
    evaluation = check(weight[None, :], phy2log[None, :], topology)
    if policy is Policy.HIERARCHICAL and not evaluation.respects_hierarchy:
        raise AssertionError("a hierarchical solve produced a non-hierarchical placement")
    return evaluation.max_load[0]
