"""eplbench: the exact yardstick for Mixture-of-Experts expert-placement heuristics (EPLB).

The stable Python API of spec §9:

    import eplbench as eb
    topo = eb.Topology(num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)
    h = eb.load_heuristic("deepseek")
    phy2log, log2phy, logcnt = h(weight, 288, 8, 4, 32)
    ev = eb.check(weight, phy2log, topo)
    instances = eb.load_instances("small")
    results = eb.solve(weight, topo, policy="hierarchical", time_limit=10.0)
    moved = eb.migration(old_phy2log, new_phy2log, topo)  # what a rebalance copies

`solve` and `list_solvers` load the solvers (OR-Tools, numba) on first use only.
"""

from eplbench.checker import Evaluation, check, check_output
from eplbench.errors import BadInput, EplbenchError, InvalidPlacement
from eplbench.evolve import evaluate, evaluate_stage1, evaluate_stage2
from eplbench.heuristics import Heuristic, list_heuristics, load_heuristic
from eplbench.instances import Instance, list_instance_sets, load_instances
from eplbench.migration import Migration, migration
from eplbench.problem import Policy, Topology

__version__ = "0.1.0"

__all__ = [
    "BadInput", "EplbenchError", "Evaluation", "Heuristic", "Instance", "InvalidPlacement",
    "Migration", "Policy", "Topology", "check", "check_output", "evaluate", "evaluate_stage1",
    "evaluate_stage2", "list_heuristics", "list_instance_sets", "list_solvers",
    "load_heuristic", "load_instances", "migration", "solve",
]


def __getattr__(name: str):
    """`solve` and `list_solvers`, imported when first asked for (the solvers' imports take
    a second or more, which the other commands need not pay)."""
    if name in ("solve", "list_solvers"):
        from eplbench import solvers

        return getattr(solvers, name)
    raise AttributeError(f"module 'eplbench' has no attribute {name!r}")
