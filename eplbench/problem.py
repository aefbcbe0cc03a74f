"""The EPLB problem of spec §1: topology, policies and the load matrix.

A topology is `(num_replicas P, num_groups, num_nodes N, num_gpus G)`. GPU `g` holds the
physical slots `g*S .. g*S+S-1` with `S = P // G`; node `n` holds GPUs `n*G/N .. (n+1)*G/N-1`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import numpy as np

from eplbench.errors import BadInput


class Policy(str, enum.Enum):
    """Feasible sets of placements: `global` (any) or `hierarchical` (DeepSeek's), each
    alone or with `+distinct` (no GPU holds two replicas of one expert)."""

    GLOBAL = "global"
    HIERARCHICAL = "hierarchical"
    GLOBAL_DISTINCT = "global+distinct"
    HIERARCHICAL_DISTINCT = "hierarchical+distinct"

    @property
    def hierarchical(self) -> bool:
        """Groups whole on nodes, each node holding num_groups / num_nodes of them."""
        return self in (Policy.HIERARCHICAL, Policy.HIERARCHICAL_DISTINCT)

    @property
    def distinct(self) -> bool:
        """No GPU holds two replicas of one expert."""
        return self in (Policy.GLOBAL_DISTINCT, Policy.HIERARCHICAL_DISTINCT)

    @classmethod
    def parse(cls, value: "Policy | str") -> "Policy":
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise BadInput(f"unknown policy {value!r}; expected one of {names}") from None


@dataclass(frozen=True)
class Topology:
    """Cluster shape. All four fields are positive ints; see the module docstring."""

    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise BadInput(f"topology: {name} must be a positive integer, got {value!r}")
        if self.num_replicas % self.num_gpus:
            raise BadInput(f"topology: num_replicas={self.num_replicas} is not a multiple "
                           f"of num_gpus={self.num_gpus}")
        if self.num_gpus % self.num_nodes:
            raise BadInput(f"topology: num_gpus={self.num_gpus} is not a multiple "
                           f"of num_nodes={self.num_nodes}")

    @property
    def slots_per_gpu(self) -> int:
        return self.num_replicas // self.num_gpus

    @property
    def gpus_per_node(self) -> int:
        return self.num_gpus // self.num_nodes

    @property
    def slots_per_node(self) -> int:
        return self.num_replicas // self.num_nodes

    def as_tuple(self) -> tuple[int, int, int, int]:
        """`(num_replicas, num_groups, num_nodes, num_gpus)`, the order of `rebalance_experts`."""
        return (self.num_replicas, self.num_groups, self.num_nodes, self.num_gpus)

    def hierarchy_problem(self, num_experts: int) -> str | None:
        """Why the hierarchical policy is undefined for `num_experts`, or None if it is defined."""
        if num_experts % self.num_groups:
            return f"num_experts={num_experts} is not a multiple of num_groups={self.num_groups}"
        if self.num_groups % self.num_nodes:
            return f"num_groups={self.num_groups} is not a multiple of num_nodes={self.num_nodes}"
        return None

    def default_policy(self, num_experts: int) -> Policy:
        """The policy a deployment of this shape requires, as the engines decide it:
        hierarchical where the topology defines it for `num_experts`, else global."""
        return Policy.GLOBAL if self.hierarchy_problem(num_experts) else Policy.HIERARCHICAL

    def validate_for(self, num_experts: int, policy: Policy | str = Policy.GLOBAL) -> None:
        """Raise BadInput if this topology cannot place `num_experts` under `policy`."""
        policy = Policy.parse(policy)
        if self.num_replicas < num_experts:
            raise BadInput(f"topology: num_replicas={self.num_replicas} is smaller than "
                           f"num_experts={num_experts}")
        if policy.hierarchical:
            problem = self.hierarchy_problem(num_experts)
            if problem:
                raise BadInput(f"topology: {policy.value} policy needs {problem}")
        if policy.distinct:
            problem = self.distinct_problem(num_experts, policy.hierarchical)
            if problem:
                raise BadInput(f"topology: {policy.value} policy needs {problem}")

    def defines(self, num_experts: int, policy: Policy | str) -> bool:
        """Whether some placement of `num_experts` experts respects `policy` here."""
        try:
            self.validate_for(num_experts, policy)
        except BadInput:
            return False
        return True

    def distinct_problem(self, num_experts: int, hierarchical: bool) -> str | None:
        """Why no placement keeps every GPU's replicas of distinct experts, or None.

        An expert has at most one replica per GPU it may use: G of them, G / N under the
        hierarchy, where a node's slots are shared by its num_experts / N experts."""
        experts, gpus, slots = num_experts, self.num_gpus, self.num_replicas
        if hierarchical:
            experts, gpus, slots = (experts // self.num_nodes, self.gpus_per_node,
                                    self.slots_per_node)
        if slots > experts * gpus:
            where = "per node " if hierarchical else ""
            return (f"at most {experts * gpus} slots {where}({experts} experts x {gpus} "
                    f"GPUs, one replica of each per GPU), got {slots}")
        return None

    def __str__(self) -> str:
        return (f"P={self.num_replicas} groups={self.num_groups} "
                f"nodes={self.num_nodes} gpus={self.num_gpus}")


def as_weight_matrix(weight, source: str = "weight") -> np.ndarray:
    """Validate a load matrix and return it as `[L, E]` int64 token counts.

    Accepts a torch tensor (any numeric dtype, bfloat16 too), a numpy array or nested lists.
    Refuses (BadInput naming `source` and, where one is at fault, the value and its place)
    a wrong rank, an empty matrix, non-finite, negative or fractional values, and values
    past int64. Sums of a layer may pass int64: the checker sums in Python integers.
    """
    if hasattr(weight, "detach"):
        weight = weight.detach().cpu()
        if weight.dtype.is_floating_point and weight.dtype.itemsize < 4:  # bfloat16, half
            weight = weight.double()
        weight = weight.numpy()
    try:
        array = np.asarray(weight)
    except (ValueError, OverflowError):
        raise BadInput(f"{source}: ragged rows or values past int64") from None
    if array.dtype == object:
        raise BadInput(f"{source}: ragged or non-numeric rows")
    if array.ndim != 2:
        raise BadInput(f"{source}: expected a [layers, experts] matrix, got {array.ndim} dimensions")
    if array.size == 0:
        raise BadInput(f"{source}: empty matrix of shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise BadInput(f"{source}: values of type {array.dtype} are not token counts")
    if not np.all(np.isfinite(array)):
        raise BadInput(f"{source}: contains NaN or infinite values")
    if np.any(array < 0):
        raise BadInput(f"{source}: contains negative values, e.g. {_first(array, array < 0)}")
    if np.issubdtype(array.dtype, np.floating):
        if np.any(array != np.floor(array)):
            raise BadInput(f"{source}: contains fractional values, e.g. "
                           f"{_first(array, array != np.floor(array))}; loads are integer "
                           "token counts")
        past = array >= 2.0**63
    else:
        past = array > np.iinfo(np.int64).max if array.dtype.kind == "u" else array < 0
    if np.any(past):
        raise BadInput(f"{source}: value {_first(array, past)} is past int64 (2^63 - 1); "
                       "token counts must fit int64")
    return array.astype(np.int64)


def _first(array: np.ndarray, mask: np.ndarray) -> str:
    """The first value where `mask` holds, with its [layer, expert] place."""
    place = tuple(int(i) for i in np.argwhere(mask)[0])
    value = array[place]
    shown = int(value) if float(value).is_integer() else float(value)
    return f"{shown} at {list(place)}"
