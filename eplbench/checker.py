"""The one checker: every placement, from a heuristic or a solver, is validated and scored here.

`check(weight, phy2log, topo)` raises `InvalidPlacement(reason, detail)` on a broken
placement and otherwise returns an `Evaluation` with exact max loads (spec §1 and 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from eplbench.errors import InvalidPlacement
from eplbench.exact import scaled_slot_loads
from eplbench.problem import Policy, Topology, as_weight_matrix


@dataclass
class Evaluation:
    """Scores of a valid placement. L layers, G GPUs; loads in tokens.

    Attributes:
        phy2log: [L, P] int64 expert of each slot.
        logcnt: [L, E] int64 replica count of each expert.
        gpu_load: [L, G] float64 load of each GPU (display; exact values are in max_load).
        max_load: [L] exact max GPU load per layer (Fraction).
        mean_load: [L] exact `sum(weight[l]) / G` per layer (Fraction).
        balancedness: `sum mean_load / sum max_load` over layers (1.0 is perfect).
        balancedness_per_layer: [L] float64 `mean_load / max_load`.
        respects_hierarchy: True when every layer is a hierarchical placement (spec §1);
            False when some layer is not or the topology has no hierarchy for these experts.
        hierarchical_layers: [L] bool, per layer.
        split_groups: [L] int64 groups whose experts sit on more than one node (0 where
            the topology has no hierarchy for these experts).
        crowded_nodes: [L] int64 nodes holding a number of groups other than
            num_groups / num_nodes (counted where no group is split; else 0).
        colocated_per_layer: [L] int64 slots holding a second or later replica of an
            expert already on that GPU.
        colocated_replicas: their sum over layers.
    """

    phy2log: np.ndarray
    logcnt: np.ndarray
    gpu_load: np.ndarray
    max_load: list
    mean_load: list
    balancedness: float
    balancedness_per_layer: np.ndarray
    respects_hierarchy: bool
    hierarchical_layers: np.ndarray
    split_groups: np.ndarray
    crowded_nodes: np.ndarray
    colocated_per_layer: np.ndarray

    @property
    def colocated_replicas(self) -> int:
        return int(self.colocated_per_layer.sum())

    @property
    def max_load_float(self) -> np.ndarray:
        return np.array([float(m) for m in self.max_load])

    @property
    def balancedness_layer_mean(self) -> float:
        return float(self.balancedness_per_layer.mean())

    def breach(self, policy: Policy | str) -> str | None:
        """What breaks `policy` in this placement, in words, or None if it respects it."""
        policy = Policy.parse(policy)
        parts = []
        if policy.hierarchical and not self.respects_hierarchy:
            broken = int((~self.hierarchical_layers).sum())
            causes = [f"{total} group(s) span nodes"
                      for total in [int(self.split_groups.sum())] if total]
            causes += [f"{total} node(s) hold other than their share of groups"
                       for total in [int(self.crowded_nodes.sum())] if total]
            parts.append(f"breaks the {policy.value} policy in {broken} of "
                         f"{len(self.max_load)} layer(s): {', '.join(causes)} (summed over "
                         "layers)")
        if policy.distinct and self.colocated_replicas:
            layers = int((self.colocated_per_layer > 0).sum())
            parts.append(f"breaks the {policy.value} policy: {self.colocated_replicas} "
                         f"replica(s) share a GPU with another of the same expert, in "
                         f"{layers} of {len(self.max_load)} layer(s)")
        return "; ".join(parts) or None


def check_output(weight, output, topo: Topology) -> Evaluation:
    """Check a `rebalance_experts` return value: `(phy2log, log2phy, logcnt)`, or `phy2log`
    alone (vLLM's policy returns only that; the other two are then derived from it)."""
    if isinstance(output, np.ndarray) or hasattr(output, "detach"):
        return check(weight, output, topo)
    if not isinstance(output, (tuple, list)) or len(output) != 3:
        kind = type(output).__name__
        size = f" of length {len(output)}" if isinstance(output, (tuple, list)) else ""
        raise InvalidPlacement("arity", f"expected (phy2log, log2phy, logcnt) or phy2log "
                                        f"alone, got {kind}{size}")
    phy2log, log2phy, logcnt = output
    return check(weight, phy2log, topo, log2phy=log2phy, logcnt=logcnt)


def check(weight, phy2log, topo: Topology, *, log2phy=None, logcnt=None) -> Evaluation:
    """Validate a placement and score it.

    Args:
        weight: [L, E] non-negative integer token counts (tensor, array or lists).
        phy2log: [L, P] integer tensor or array, the expert held by each slot.
        topo: the topology; P = topo.num_replicas.
        log2phy: optional [L, E, X] integers, slots of each expert padded with -1.
        logcnt: optional [L, E] integer replica counts.
        Any integer dtype is accepted (SGLang returns int32 counts) and read as int64;
        float, bool and object dtypes are refused.
    Raises:
        InvalidPlacement: with reason arity, type, nonfinite, dtype, shape, range,
            missing_expert, logcnt_mismatch, log2phy_padding or log2phy_mismatch.
    """
    weight = as_weight_matrix(weight)
    num_layers, num_experts = weight.shape
    slots = _int_array("phy2log", phy2log, (num_layers, topo.num_replicas))
    if slots.min() < 0 or slots.max() >= num_experts:
        raise InvalidPlacement("range", f"phy2log holds ids outside [0, {num_experts})")
    counts = _expert_counts(slots, num_experts)
    if np.any(counts == 0):
        layer, expert = np.argwhere(counts == 0)[0]
        raise InvalidPlacement("missing_expert", f"expert {expert} of layer {layer} has no slot")
    if logcnt is not None:
        _check_logcnt(_int_array("logcnt", logcnt, (num_layers, num_experts)), counts)
    if log2phy is not None:
        _check_log2phy(_int_array("log2phy", log2phy, None), slots, counts)
    return _evaluate(weight, slots, counts, topo)


def check_plan_pair(old, new, topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """Two placements of the same experts on `topo` (each [L, P] or [P] ids, a tensor or
    an array), as int64 [L, P] arrays; InvalidPlacement naming the plan that is not one
    (reasons as `check`'s) or, with reason "mismatch", what the two do not share."""
    old, new = _plan("old phy2log", old, topo), _plan("new phy2log", new, topo)
    if old.shape != new.shape or old.max() != new.max():
        raise InvalidPlacement("mismatch", f"old phy2log holds {old.max() + 1} experts in "
                                           f"{old.shape[0]} layer(s), new phy2log "
                                           f"{new.max() + 1} in {new.shape[0]}")
    return old, new


def _plan(name: str, plan, topo: Topology) -> np.ndarray:
    """int64 [L, P] ids of a placement given as [L, P] or [P]; every id of [0, E) held in
    every layer, E = the largest id + 1."""
    if hasattr(plan, "detach"):
        plan = plan.detach().cpu().numpy()
    if type(plan) is np.ndarray and plan.ndim == 1:  # noqa: E721 - as in _int_array
        plan = plan[None, :]
    rows = plan.shape[0] if type(plan) is np.ndarray and plan.ndim else 1  # noqa: E721
    slots = _int_array(name, plan, (rows, topo.num_replicas))
    if slots.size == 0 or slots.min() < 0:
        raise InvalidPlacement("range", f"{name} holds negative ids or none")
    counts = _expert_counts(slots, int(slots.max()) + 1)
    if np.any(counts == 0):
        layer, expert = np.argwhere(counts == 0)[0]
        raise InvalidPlacement("missing_expert", f"{name} leaves expert {expert} of layer "
                                                 f"{layer} without a slot")
    return slots


def _int_array(name: str, value, shape) -> np.ndarray:
    """The int64 numpy copy of an integer tensor or array that must have `shape` (None:
    3-D); values of an unsigned dtype past int64 are out of range."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if type(value) is not np.ndarray:  # noqa: E721 - subclasses (masked arrays) are refused
        raise InvalidPlacement("type", f"{name} is a {type(value).__name__}, not a tensor")
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
        raise InvalidPlacement("nonfinite", f"{name} contains NaN or infinite values")
    if not np.issubdtype(value.dtype, np.integer):
        raise InvalidPlacement("dtype", f"{name} has dtype {value.dtype}, expected an "
                                        "integer dtype")
    if shape is None and value.ndim != 3 or shape is not None and value.shape != shape:
        expected = "[L, E, X]" if shape is None else list(shape)
        raise InvalidPlacement("shape", f"{name} has shape {list(value.shape)}, expected {expected}")
    if value.dtype.kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
        raise InvalidPlacement("range", f"{name} holds values past int64")
    return value.astype(np.int64)


def _expert_counts(slots: np.ndarray, num_experts: int) -> np.ndarray:
    """[L, E] number of slots holding each expert."""
    num_layers = slots.shape[0]
    offsets = (np.arange(num_layers) * num_experts)[:, None]
    flat = np.bincount((slots + offsets).ravel(), minlength=num_layers * num_experts)
    return flat.reshape(num_layers, num_experts)


def _check_logcnt(logcnt: np.ndarray, counts: np.ndarray) -> None:
    if not np.array_equal(logcnt, counts):
        layer, expert = np.argwhere(logcnt != counts)[0]
        raise InvalidPlacement("logcnt_mismatch",
                               f"logcnt[{layer}, {expert}] = {logcnt[layer, expert]} but "
                               f"phy2log holds expert {expert} {counts[layer, expert]} times")


def _check_log2phy(log2phy: np.ndarray, slots: np.ndarray, counts: np.ndarray) -> None:
    """log2phy[l, e] must list exactly the slots holding e (any order), padded with -1."""
    num_layers, num_experts = counts.shape
    if log2phy.shape[:2] != counts.shape:
        raise InvalidPlacement("shape", f"log2phy has shape {list(log2phy.shape)}, "
                                        f"expected [{num_layers}, {num_experts}, X]")
    if log2phy.min(initial=0) < -1:
        raise InvalidPlacement("log2phy_padding", "log2phy holds a value below -1; padding is -1")
    listed = log2phy >= 0
    if not np.array_equal(listed.sum(-1), counts):
        raise InvalidPlacement("log2phy_mismatch", "log2phy lists a different number of slots "
                                                   "than phy2log holds for some expert")
    if log2phy.max(initial=-1) >= slots.shape[1]:
        raise InvalidPlacement("log2phy_mismatch", "log2phy points past the last slot")
    layer_of = np.broadcast_to(np.arange(num_layers)[:, None, None], log2phy.shape)
    expert_of = np.broadcast_to(np.arange(num_experts)[None, :, None], log2phy.shape)
    pointed = slots[layer_of[listed], log2phy[listed]]
    if not np.array_equal(pointed, expert_of[listed]):
        raise InvalidPlacement("log2phy_mismatch", "log2phy points to a slot of another expert")
    covered = np.zeros(slots.shape, dtype=bool)
    covered[layer_of[listed], log2phy[listed]] = True
    if not covered.all():
        raise InvalidPlacement("log2phy_mismatch", "log2phy lists a slot twice and misses another")


def _evaluate(weight: np.ndarray, slots: np.ndarray, counts: np.ndarray,
              topo: Topology) -> Evaluation:
    num_layers = weight.shape[0]
    slot_load, scale = scaled_slot_loads(weight, slots, counts)
    gpu_scaled = slot_load.reshape(num_layers, topo.num_gpus, topo.slots_per_gpu).sum(-1)
    max_load = [Fraction(int(row.max()), m) for row, m in zip(gpu_scaled, scale)]
    # in Python ints: a layer's sum may pass int64
    mean_load = [Fraction(sum(map(int, row)), topo.num_gpus) for row in weight]
    gpu_load = np.array([[int(v) / m for v in row] for row, m in zip(gpu_scaled, scale)])
    per_layer = np.array([_ratio(mean, peak) for mean, peak in zip(mean_load, max_load)])
    split, crowded = _hierarchy_breaks(slots, weight.shape[1], topo)
    hierarchical = ((split == 0) & (crowded == 0)
                    & (topo.hierarchy_problem(weight.shape[1]) is None))
    return Evaluation(
        phy2log=slots, logcnt=counts, gpu_load=gpu_load, max_load=max_load,
        mean_load=mean_load, balancedness=_ratio(sum(mean_load), sum(max_load)),
        balancedness_per_layer=per_layer, respects_hierarchy=bool(hierarchical.all()),
        hierarchical_layers=hierarchical, split_groups=split, crowded_nodes=crowded,
        colocated_per_layer=_colocated(slots, topo))


def _ratio(mean: Fraction, peak: Fraction) -> float:
    """mean / max, 1.0 for an all-zero layer (nothing to balance)."""
    return 1.0 if peak == 0 else float(mean / peak)


def _hierarchy_breaks(slots: np.ndarray, num_experts: int,
                      topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """([L] groups on more than one node, [L] nodes holding other than num_groups / N
    groups, counted where no group is split); zeros where the topology has no hierarchy.
    A layer is hierarchical (spec §1) when both are 0."""
    num_layers, num_slots = slots.shape
    if topo.hierarchy_problem(num_experts) is not None:
        return np.zeros(num_layers, dtype=np.int64), np.zeros(num_layers, dtype=np.int64)
    group_size = num_experts // topo.num_groups
    node_of_slot = np.arange(num_slots) // topo.slots_per_node
    presence = np.zeros((num_layers, topo.num_groups, topo.num_nodes), dtype=bool)
    presence[np.arange(num_layers)[:, None], slots // group_size, node_of_slot[None, :]] = True
    split = (presence.sum(-1) > 1).sum(-1)
    share = topo.num_groups // topo.num_nodes
    crowded = np.where(split == 0, (presence.sum(1) != share).sum(-1), 0)
    return split.astype(np.int64), crowded.astype(np.int64)


def _colocated(slots: np.ndarray, topo: Topology) -> np.ndarray:
    """[L] slots holding a replica of an expert that an earlier slot of the same GPU holds."""
    num_layers = slots.shape[0]
    by_gpu = np.sort(slots.reshape(num_layers, topo.num_gpus, topo.slots_per_gpu), axis=-1)
    return (by_gpu[..., 1:] == by_gpu[..., :-1]).sum((1, 2)).astype(np.int64)
