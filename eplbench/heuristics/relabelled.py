"""`NAME+relabel`: any heuristic, its plan then renumbered (`eplbench.relabel`) to keep the
most expert weights where the plan in place has them.

Renumbering nodes, GPUs within nodes and slots within GPUs changes no load, so the wrapper
has the max loads of the heuristic it wraps and moves at most as many weights. Without a
plan in place (the engines' five-argument call) it returns the heuristic's output as it is.
"""

import numpy as np
import torch

from eplbench.errors import InvalidPlacement
from eplbench.problem import Topology
from eplbench.relabel import relabel


def relabelled(heuristic, weight, num_replicas: int, num_groups: int, num_nodes: int,
               num_gpus: int, old_phy2log=None):
    """`heuristic`'s output for the engines' call (given the plan in place if it takes
    one); with `old_phy2log` ([L, P]), its phy2log relabelled and returned alone (int64
    [L, P]). An output that is no placement is returned as it is, for the checker to name."""
    output = heuristic(weight, num_replicas, num_groups, num_nodes, num_gpus,
                       old_plan=old_phy2log)
    if old_phy2log is None:
        return output
    phy2log = output[0] if isinstance(output, (tuple, list)) and len(output) == 3 else output
    topology = Topology(num_replicas, num_groups, num_nodes, num_gpus)
    try:
        placed = relabel(old_phy2log, phy2log, topology)
    except InvalidPlacement:
        return output
    return torch.from_numpy(np.ascontiguousarray(placed))
