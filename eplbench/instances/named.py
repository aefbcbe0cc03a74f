"""Named instance sets: recipes of (family, params, shape, topology), seeds from names.

`tiny` is small enough for brute force, `small` certifiable in seconds, `medium` the
E = 32-64, G = 8 regime. Each of these mixes families, redundancy levels and node counts.
The model-shaped sets (`deepseek-v3`, `qwen3-moe`, `kimi-k2`, `adrs`) take their loads from
the routing simulator; `*-cut` sets are the bundled slices.
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
              ("hotspot", {"hot": 2, "share": 0.4}), ("group_skewed", {"skew": 4.0})]


def _mix(num_layers: int, shapes: list[tuple[int, Topology]]) -> list[Recipe]:
    """Every family of FAMILY_MIX on every (num_experts, topology); group-skewed loads use
    the topology's groups."""
    recipes = []
    for experts, topology in shapes:
        for family, params in FAMILY_MIX:
            if family == "group_skewed":
                params = {**params, "groups": topology.num_groups,
                          "hot_groups": max(1, topology.num_groups // 4)}
            recipes.append(Recipe(family, num_layers, experts, topology, params))
    return recipes


def _routed(num_layers: int, num_experts: int, topology: Topology, groups: int,
            topk_groups: int, top_k: int = 8) -> list[Recipe]:
    return [Recipe("routing", num_layers, num_experts, topology,
                   {"groups": groups, "topk_groups": topk_groups, "top_k": top_k,
                    "tokens": 8192})]


SETS: dict[str, list[Recipe]] = {
    "tiny": _mix(2, [(4, Topology(6, 2, 1, 2)), (6, Topology(8, 2, 2, 4)),
                     (8, Topology(8, 4, 2, 4)), (4, Topology(9, 2, 1, 3)),
                     (4, Topology(15, 2, 1, 5))]),
    "small": _mix(4, [(8, Topology(12, 2, 1, 2)), (12, Topology(16, 4, 2, 4)),
                      (16, Topology(20, 4, 2, 4)), (16, Topology(24, 8, 4, 4)),
                      (10, Topology(18, 2, 1, 6)), (16, Topology(24, 4, 2, 8))]),
    "medium": _mix(4, [(32, Topology(40, 4, 2, 8)), (48, Topology(64, 8, 4, 8)),
                       (64, Topology(72, 8, 2, 8)), (64, Topology(80, 8, 8, 8))]),
    "medium-cut": _mix(2, [(32, Topology(40, 4, 2, 8)), (48, Topology(64, 8, 4, 8))]),
    # model-shaped sets (spec §5); loads from the routing simulator
    "deepseek-v3": _routed(58, 256, Topology(288, 8, 4, 32), groups=8, topk_groups=4),
    "deepseek-v3-cut": _routed(2, 256, Topology(288, 8, 4, 32), groups=8, topk_groups=4),
    "qwen3-moe": _routed(94, 128, Topology(160, 1, 4, 32), groups=1, topk_groups=1),
    "kimi-k2": _routed(60, 384, Topology(416, 1, 4, 32), groups=1, topk_groups=1),
    "adrs": _routed(58, 64, Topology(288, 8, 4, 32), groups=8, topk_groups=4),
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
