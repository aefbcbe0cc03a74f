"""One instance: a load matrix, its topology and where it came from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from eplbench.problem import Policy, Topology


@dataclass(frozen=True)
class Instance:
    """A load matrix with its topology.

    Attributes:
        id: unique within its set, e.g. "small/lognormal-003".
        weight: [L, E] int64 token counts.
        topology: where the replicas go.
        family: generator or importer name; params and seed say how it was made.
        policy: the policy its deployment requires, against whose optimum gaps are taken
            and whose placements alone are valid ("global", "hierarchical", or either
            with "+distinct"); by default
            hierarchical where the topology defines it, else global (as the engines do).
    """

    id: str
    weight: np.ndarray = field(repr=False, compare=False)
    topology: Topology
    family: str = "unknown"
    params: dict = field(default_factory=dict, compare=False)
    seed: int | None = None
    policy: str | None = None

    def __post_init__(self):
        if self.policy is None:
            declared = self.topology.default_policy(self.weight.shape[1])
        else:
            declared = Policy.parse(self.policy)
            self.topology.validate_for(self.weight.shape[1], declared)
        object.__setattr__(self, "policy", declared.value)

    @property
    def num_layers(self) -> int:
        return self.weight.shape[0]

    @property
    def num_experts(self) -> int:
        return self.weight.shape[1]

    @property
    def content_hash(self) -> str:
        """sha256 of the loads (shape + little-endian int64 bytes) and the topology."""
        digest = hashlib.sha256()
        digest.update(json.dumps([list(self.weight.shape), list(self.topology.as_tuple())]).encode())
        digest.update(np.ascontiguousarray(self.weight, dtype="<i8").tobytes())
        return digest.hexdigest()
