"""The joint replication + packing model of one layer (spec §3), written once for both backends.

Variables, for expert e, allowed count k in D_e and GPU g:
    y[e, k] in {0, 1}: e has exactly k replicas (one k per expert);
    z[e, k, g] in 0..min(k, S): replicas of e on GPU g when y[e, k] (0 otherwise);
    a[j, n] in {0, 1} (hierarchical policy): group j lives on node n;
    T: the max GPU load, minimised.
Loads are integers: a replica of e among k weighs load[e][k] = floor(w_e * M / (k * D)) with
M = lcm of the counts in use and D >= 1 a divisor that keeps every value of the model (T's
upper bound, the incumbent's load, and each replica load, none above it) at most the
backend's `max_model_load`. With D = 1 the model is exact; with D > 1 every load rounds
down, so the model's optimum can only underestimate the true one and its bound stays valid
(times D / M). All of it is computed in Python ints: tokens x M may pass int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from eplbench.exact import lcm_of
from eplbench.problem import Policy, Topology

# largest value of a model, in model units, for a backend that does not name its own
MAX_MODEL_LOAD = 2**40


@dataclass(frozen=True)
class Scaling:
    """Model units: a load of x tokens is x * scale / divisor units (rounded down)."""

    scale: int
    divisor: int

    @property
    def exact(self) -> bool:
        return self.divisor == 1

    def units(self, weight: int, count: int) -> int:
        return (int(weight) * self.scale) // (int(count) * self.divisor)

    def tokens(self, units: int) -> Fraction:
        return Fraction(units * self.divisor, self.scale)

    @classmethod
    def for_domains(cls, weight, domains, upper: Fraction,
                    max_load: int = MAX_MODEL_LOAD) -> "Scaling":
        """M = lcm of the counts in the domains (of experts with load); D = 1 unless the
        largest value of the model at D = 1, `largest_value`, passes max_load."""
        counts = {k for w, domain in zip(weight, domains) if w > 0 for k in domain}
        exact = cls(lcm_of(sorted(counts)), 1)
        largest = exact.largest_value(weight, domains, upper)
        return cls(exact.scale, max(1, -(-largest // max_load)))

    def largest_value(self, weight, domains, upper: Fraction) -> int:
        """The largest value the model holds, in these units: T's upper bound (`upper`
        tokens, the incumbent's load, rounded up) or the heaviest replica load the
        domains allow. A GPU load within T, and every coefficient, is at most this."""
        heaviest = max((self.units(w, min(domain)) for w, domain in zip(weight, domains)
                        if domain), default=0)
        return max(math.ceil(upper * self.scale / self.divisor), heaviest)


class PlacementModel:
    """One constraint family per method, in the order of the formulation above."""

    @staticmethod
    def size(domains: list[list[int]], num_gpus: int) -> int:
        """The y and z variables of a model over `domains` (what building it costs)."""
        return sum(map(len, domains)) * (num_gpus + 1)

    def __init__(self, backend, weight: np.ndarray, topology: Topology, policy: Policy,
                 domains: list[list[int]], scaling: Scaling, lower_units: int, upper_units: int):
        self.backend = backend
        self.weight = [int(w) for w in weight]
        self.topology = topology
        self.policy = policy
        self.domains = domains
        self.scaling = scaling
        self.max_load = backend.int_var(lower_units, upper_units, "T")
        self.count_choice()
        self.replica_spread()
        self.gpu_slots()
        self.gpu_load()
        if policy.hierarchical:
            self.hierarchy()
        self.break_symmetry()
        backend.minimize(self.max_load)

    def count_choice(self) -> None:
        """y[e, k]: exactly one count per expert; the counts fill all P slots."""
        self.y = {(e, k): self.backend.bool_var(f"y{e}_{k}")
                  for e, domain in enumerate(self.domains) for k in domain}
        for e, domain in enumerate(self.domains):
            self.backend.add(sum(self.y[e, k] for k in domain) == 1)
        self.backend.add(sum(k * var for (e, k), var in self.y.items())
                         == self.topology.num_replicas)

    def replica_spread(self) -> None:
        """z[e, k, g]: the k replicas of e spread over GPUs, none unless y[e, k]; at most
        one on a GPU under a distinct policy."""
        gpus = range(self.topology.num_gpus)
        self.z = {(e, k, g): self.backend.int_var(0, self.per_gpu(k), f"z{e}_{k}_{g}")
                  for (e, k) in self.y for g in gpus}
        for (e, k), chosen in self.y.items():
            self.backend.add(sum(self.z[e, k, g] for g in gpus) == k * chosen)
            for g in gpus:
                self.backend.add(self.z[e, k, g] <= self.per_gpu(k) * chosen)

    def per_gpu(self, count: int) -> int:
        """The most replicas of an expert with `count` replicas one GPU may hold."""
        return 1 if self.policy.distinct else min(count, self.topology.slots_per_gpu)

    def gpu_slots(self) -> None:
        """Every GPU holds exactly S replicas."""
        for g in range(self.topology.num_gpus):
            self.backend.add(self._on_gpu(g, lambda e, k: 1) == self.topology.slots_per_gpu)

    def gpu_load(self) -> None:
        """Every GPU's load is at most T."""
        self.loads = []
        for g in range(self.topology.num_gpus):
            load = self._on_gpu(g, self.scaling_units)
            self.loads.append(load)
            self.backend.add(load <= self.max_load)

    def hierarchy(self) -> None:
        """a[j, n]: groups whole on nodes, num_groups / N per node; replicas stay on their node."""
        topo = self.topology
        group_size = len(self.weight) // topo.num_groups
        nodes = range(topo.num_nodes)
        self.a = {(j, n): self.backend.bool_var(f"a{j}_{n}")
                  for j in range(topo.num_groups) for n in nodes}
        for j in range(topo.num_groups):
            self.backend.add(sum(self.a[j, n] for n in nodes) == 1)
        for n in nodes:
            self.backend.add(sum(self.a[j, n] for j in range(topo.num_groups))
                             == topo.num_groups // topo.num_nodes)
        for (e, k, g), var in self.z.items():
            node = g // topo.gpus_per_node
            self.backend.add(var <= self.per_gpu(k) * self.a[e // group_size, node])

    def break_symmetry(self) -> None:
        """Nodes are interchangeable, so group j may only use nodes 0..j (first-fit
        labelling); GPUs of a node are interchangeable: order them by non-increasing load."""
        if self.policy.hierarchical:
            for (j, n), var in self.a.items():
                if n > j:
                    self.backend.add(var == 0)
        per_node = self.topology.gpus_per_node
        for g in range(self.topology.num_gpus - 1):
            if (g + 1) % per_node:
                self.backend.add(self.loads[g] >= self.loads[g + 1])

    def scaling_units(self, e: int, k: int) -> int:
        return self.scaling.units(self.weight[e], k)

    def _on_gpu(self, g: int, coefficient):
        return sum(coefficient(e, k) * self.z[e, k, g] for (e, k) in self.y)

    def add_hint(self, phy2log: np.ndarray) -> None:
        """Hint a placement ([P] expert of each slot) whose counts lie in the domains.

        The placement is first relabelled to satisfy the symmetry-breaking constraints.
        """
        phy2log = self.canonical(phy2log)
        counts = np.bincount(phy2log, minlength=len(self.weight))
        slots = self.topology.slots_per_gpu
        on_gpu = {}
        for slot, e in enumerate(phy2log.tolist()):
            on_gpu[e, slot // slots] = on_gpu.get((e, slot // slots), 0) + 1
        for (e, k), var in self.y.items():
            self.backend.hint(var, int(counts[e] == k))
            for g in range(self.topology.num_gpus):
                value = on_gpu.get((e, g), 0) if counts[e] == k else 0
                self.backend.hint(self.z[e, k, g], value)
        if self.policy.hierarchical:
            node_of = self._node_of_group(phy2log)
            for (j, n), var in self.a.items():
                self.backend.hint(var, int(node_of[j] == n))

    def canonical(self, phy2log: np.ndarray) -> np.ndarray:
        """The same placement with nodes in first-fit order of groups and each node's GPUs by
        non-increasing model load, as the symmetry-breaking constraints require."""
        topo = self.topology
        blocks = phy2log.reshape(topo.num_nodes, topo.gpus_per_node, topo.slots_per_gpu)
        if self.policy.hierarchical:
            node_of = self._node_of_group(phy2log)
            order = list(dict.fromkeys(node_of[j] for j in range(topo.num_groups)))
            blocks = blocks[order]
        counts = np.bincount(phy2log, minlength=len(self.weight))
        units = np.array([self.scaling_units(e, counts[e]) for e in range(len(self.weight))])
        load = units[blocks].sum(-1)
        by_load = np.argsort(-load, axis=1, kind="stable")
        return np.take_along_axis(blocks, by_load[..., None], axis=1).reshape(-1)

    def _node_of_group(self, phy2log: np.ndarray) -> dict[int, int]:
        group_size = len(self.weight) // self.topology.num_groups
        node_of_slot = np.arange(len(phy2log)) // self.topology.slots_per_node
        return {int(e) // group_size: int(n) for e, n in zip(phy2log, node_of_slot)}

    def placement(self, values: dict) -> np.ndarray:
        """[P] int64 expert of each slot, read from a solution's z values."""
        key = self.backend.key
        phy2log = []
        for g in range(self.topology.num_gpus):
            for (e, k) in self.y:
                phy2log.extend([e] * values[key(self.z[e, k, g])])
        return np.array(phy2log, dtype=np.int64)
