"""A faithful port of vLLM's default EPLB policy (`DefaultEplbPolicy.rebalance_experts` in
vllm/distributed/eplb/policy/default.py, vLLM 0.33.0): bit-identical phy2log, ties included.

vLLM adapted DeepSeek's algorithm to numpy: the same three steps (groups to nodes, D'Hondt
replication within a node, replicas to the node's GPUs), the same policy choice and the same
refusals (AssertionError), but other arithmetic, so its output differs from DeepSeek's on ties
and near-ties:

- items are ordered by numpy's default argsort of the negated weights, whose tie order is
  not torch's, and not even fixed: numpy sorts with x86-simd-sort where the CPU has AVX2 or
  AVX-512, with introsort elsewhere. This port calls the same sort, so it matches vLLM on
  each machine;
- pack loads accumulate in float64, D'Hondt's ratios weight / count are float64, and the
  replicas are packed onto GPUs by their float64 load (float32 weight / int64 count);
- group loads are numpy's float32 sums, which round differently from torch's;
- vLLM returns phy2log alone; log2phy and logcnt are derived from it as vLLM's
  `compute_logical_maps` does: replicas numbered in slot order, log2phy as wide as the
  largest count.

Given the previous plan (`old_global_expert_indices`, which the engines' five-argument call
never passes), vLLM then reorders each GPU's slots so that experts staying on a GPU keep the
slots they had (`preserve_intragpu_slots`); so does this port, after the same step.
"""

import numpy as np
import torch

from eplbench.heuristics.deepseek import policy_topology, rebalance_hierarchical
from eplbench.heuristics.deepseek_fast import dhondt, greedy_packing
from eplbench.heuristics.mapping import log2phy_from_ranks


def numpy_descending(weight: np.ndarray) -> np.ndarray:
    """[X, n] item indices by decreasing weight, ties as numpy's default argsort of -weight."""
    return np.argsort(-weight, axis=-1)


def group_sums(weight: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[L, groups] float32 load of each group of consecutive experts, summed by numpy."""
    values = weight.numpy()
    num_layers, num_experts = values.shape
    return torch.from_numpy(values.reshape(num_layers, num_groups, num_experts // num_groups)
                            .sum(axis=-1))


def balanced_packing(weight: torch.Tensor, num_packs: int):
    """vLLM's packing of [X, n] items (groups onto nodes here): DeepSeek's greedy with numpy's
    sort and float64 pack loads. Returns pack_index, rank_in_pack [X, n] int64."""
    return greedy_packing(weight.numpy(), num_packs, numpy_descending, np.float64)


def place(node_weight: torch.Tensor, num_phy: int, num_packs: int):
    """vLLM's step within a node (a `deepseek.Placement`): D'Hondt with float64 ratios, then
    the replicas packed onto `num_packs` GPUs by their float64 load.

    Args:
        node_weight: [X, n] float32 loads of each node's experts (rows: layer x node).
    Returns:
        replica2local, replica_rank [X, num_phy], local_count [X, n], gpu_of_replica,
        rank_on_gpu [X, num_phy], all int64.
    """
    values = node_weight.numpy()
    replica2local, replica_rank, local_count = dhondt(values, num_phy, np.float64)
    replica_load = np.take_along_axis(values / local_count, replica2local, 1)
    gpu_of_replica, rank_on_gpu = greedy_packing(replica_load, num_packs, numpy_descending,
                                                 np.float64)
    replica2local, replica_rank, local_count = map(
        torch.from_numpy, (replica2local, replica_rank, local_count))
    return replica2local, replica_rank, local_count, gpu_of_replica, rank_on_gpu


def ranks_in_slot_order(phy2log: torch.Tensor, logcnt: torch.Tensor) -> torch.Tensor:
    """[L, P] replica index of each slot among its expert's slots, numbered in slot order.

    (`mapping.ranks_in_slot_order` gives the same by a one-hot cumsum, L x P x E work: 20 ms
    on the DeepSeek-V3 shape, against well under 1 ms for this sort.)
    """
    by_expert = phy2log.sort(stable=True).indices  # slots grouped by expert, in slot order
    first_of_expert = logcnt.cumsum(-1) - logcnt  # [L, E] position of each expert's group
    position = torch.arange(phy2log.shape[1]).expand_as(phy2log)
    rank_sorted = position - first_of_expert.gather(-1, phy2log.gather(-1, by_expert))
    return torch.empty_like(phy2log).scatter_(-1, by_expert, rank_sorted)


def preserve_intragpu_slots(new_phy2log: torch.Tensor, num_ranks: int,
                            old_phy2log: torch.Tensor) -> torch.Tensor:
    """vLLM's `DefaultEplbPolicy.preserve_intragpu_slots`: reorder the new plan's slots within
    each GPU so that experts that stay on a GPU keep the slots the old plan gave them.

    GPU g holds slots [g * S, (g + 1) * S), S = P / num_ranks, in both plans. Within one GPU
    and layer, the k-th old slot (in slot order) holding expert e keeps e when the new plan
    puts at least k + 1 replicas of e on that GPU; it is then paired with the k-th of them.
    The new plan's unpaired replicas, in slot order, fill the slots not kept, in slot order.

    Guarantees: each GPU's multiset of experts is the new plan's (only slots within a GPU are
    permuted), so replica counts and every GPU's load, hence the max loads, are unchanged;
    an expert on a GPU in both plans keeps min(old, new) of its old slots there, its first
    ones. Bit-identical to vLLM's on every input of the shapes below.

    Args:
        new_phy2log: [L, P] int64 expert of each slot in the new plan.
        num_ranks: number of GPUs. If it is not positive or P is not a multiple of it, the
            new plan is returned as it is (the same object), as vLLM does.
        old_phy2log: [L, P] (or [1, P], applied to every layer) integer expert of each slot
            in the old plan; columns past P are ignored. Fewer columns: IndexError, and
            another layer count: ValueError, as vLLM (except for a one-layer new plan, with
            which vLLM's numpy broadcasting may use the old plan's first layer instead).
    Returns:
        [L, P] the new plan with each GPU's slots permuted, dtype of new_phy2log.

    Work and memory: L * P * S comparisons (vLLM loops over GPUs and slots).
    """
    new = torch.as_tensor(new_phy2log)
    num_layers, num_slots = new.shape[0], new.shape[1]
    if num_ranks <= 0 or num_slots % num_ranks != 0:
        return new_phy2log
    if num_slots == 0:
        return new.clone()
    old = torch.as_tensor(old_phy2log)[:, :num_slots]
    if old.shape[1] < num_slots:
        raise IndexError(f"old plan has {old.shape[1]} slots, the new one {num_slots}")
    if old.shape[0] not in (1, num_layers):
        raise ValueError(f"old plan has {old.shape[0]} layers, the new one {num_layers}")
    per_gpu = num_slots // num_ranks
    new_local = new.reshape(num_layers, num_ranks, per_gpu)  # [L, G, S]
    old_local = old.expand(num_layers, -1).reshape(num_layers, num_ranks, per_gpu)

    # Replica k of expert e on a GPU is the k-th slot of that GPU holding e (k from 0).
    earlier = torch.ones(per_gpu, per_gpu, dtype=torch.bool).tril(-1)  # [i, i'] i' < i

    def occurrence(local: torch.Tensor) -> torch.Tensor:
        return ((local.unsqueeze(-1) == local.unsqueeze(-2)) & earlier).sum(-1)

    same = old_local.unsqueeze(-1) == new_local.unsqueeze(-2)  # [L, G, old slot, new slot]
    kept = occurrence(old_local) < same.sum(-1)  # old slot whose expert it keeps
    paired = occurrence(new_local) < same.sum(-2)  # new slot whose replica stays put

    # Unpaired new replicas (slot order) to the slots not kept (slot order); the kept slots
    # come after them in both orders and take back their own expert.
    source = paired.to(torch.int8).sort(stable=True).indices
    target = kept.to(torch.int8).sort(stable=True).indices
    moving = (~kept).sum(-1, keepdim=True)  # = number of unpaired new replicas
    position = torch.arange(per_gpu).expand_as(target)
    value = torch.where(position < moving, new_local.gather(-1, source),
                        old_local.to(new.dtype).gather(-1, target))
    post = torch.empty_like(new_local).scatter_(-1, target, value)
    return post.reshape(num_layers, num_slots)


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int,
                      old_global_expert_indices: torch.Tensor | None = None):
    """vLLM's default EPLB policy (vLLM names the last argument `num_ranks`).

    Args:
        weight: [L, E] token counts per layer and logical expert.
        num_replicas: P >= E slots, a multiple of num_gpus; num_gpus a multiple of num_nodes
            (hierarchical policy); AssertionError otherwise, as vLLM.
        old_global_expert_indices: optional [L, P] phy2log of the plan in place. When given,
            the new phy2log goes through `preserve_intragpu_slots` (as in vLLM), so experts
            staying on a GPU keep their slots; the engines' five-argument call never gives it.
    Returns:
        phy2log [L, P], log2phy [L, E, X] (-1 padded, X = the largest count), logcnt [L, E],
        all int64.
    """
    weight = torch.as_tensor(weight).float().cpu()
    topology = policy_topology(num_replicas, num_groups, num_nodes, num_gpus)
    phy2log, _, logcnt = rebalance_hierarchical(weight, *topology, balanced_packing, place,
                                                sum_groups=group_sums)
    if old_global_expert_indices is not None:
        phy2log = preserve_intragpu_slots(phy2log, num_gpus,
                                          torch.as_tensor(old_global_expert_indices).cpu())
    rank = ranks_in_slot_order(phy2log, logcnt)
    return phy2log, log2phy_from_ranks(phy2log, rank, logcnt), logcnt
