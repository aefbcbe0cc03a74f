"""Named instance sets: recipes of (family, params, shape, topology), seeds from names.

`tiny` is small enough for brute force, `small` certifiable in seconds, `medium` the
E = 32-64, G = 8 regime. Each set mixes families, redundancy levels and node counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eplbench.errors import BadInput
from eplbench.instances.families import generate, seed_for
from eplbench.instances.instance import Instance
from eplbench.problem import Topology


@dataclass(frozen=True)
class Recipe:
    family: str
    num_layers: int
    num_experts: int
    topology: Topology
    params: dict = field(default_factory=dict)


FAMILY_MIX = [("uniform", {}), ("lognormal", {"sigma": 1.0}), ("zipf", {"s": 1.0}),
              ("hotspot", {"hot": 2, "share": 0.4})]


def _mix(num_layers: int, shapes: list[tuple[int, Topology]]) -> list[Recipe]:
    """Every family of FAMILY_MIX on every (num_experts, topology)."""
    return [Recipe(family, num_layers, experts, topology, params)
            for experts, topology in shapes for family, params in FAMILY_MIX]


SETS: dict[str, list[Recipe]] = {
    "tiny": _mix(2, [(4, Topology(6, 2, 1, 2)), (6, Topology(8, 2, 2, 4)),
                     (8, Topology(8, 4, 2, 4)), (4, Topology(9, 2, 1, 3))]),
    "small": _mix(4, [(8, Topology(12, 2, 1, 2)), (12, Topology(16, 4, 2, 4)),
                      (16, Topology(20, 4, 2, 4)), (16, Topology(24, 8, 4, 4))]),
    "medium": _mix(4, [(32, Topology(40, 4, 2, 8)), (48, Topology(64, 8, 4, 8)),
                       (64, Topology(72, 8, 2, 8))]),
}


def build_set(name: str) -> list[Instance]:
    """Generate the named set; the same name always gives the same integers."""
    if name not in SETS:
        raise BadInput(f"unknown instance set {name!r}; known: {', '.join(SETS)}")
    instances = []
    for index, recipe in enumerate(SETS[name]):
        seed = seed_for(name, recipe.family, index)
        weight = generate(recipe.family, seed, recipe.num_layers, recipe.num_experts,
                          **recipe.params)
        instances.append(Instance(id=f"{name}/{recipe.family}-{index:03d}", weight=weight,
                                  topology=recipe.topology, family=recipe.family,
                                  params=recipe.params, seed=seed))
    return instances
