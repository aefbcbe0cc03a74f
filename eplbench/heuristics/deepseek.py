"""A faithful port of DeepSeek's EPLB (github.com/deepseek-ai/EPLB, eplb.py).

Output is bit-identical to the reference, ties included: loads are float32 as there,
items are ordered by torch's default (unstable) descending sort as there, and pack loads
accumulate in float32 in assignment order. This is the slow, readable version (a Python
loop per layer in the packing, on torch scalars as in the reference, so that its runtime,
the baseline of every speed ratio eplbench reports, tracks the reference's); `deepseek_fast`
swaps in a vectorised packing.

Policy: hierarchical when `num_groups % num_nodes == 0`, else global (one group, one node).

Refusals are the reference's: an AssertionError, at the same step, for experts not splitting
into groups (hierarchical policy only), GPUs not splitting into nodes (likewise), slots not
splitting into GPUs, fewer slots than experts, and a packing whose items do not split into
its packs. They are raised explicitly, so that `python -O` keeps them.
"""

from functools import partial
from typing import Callable

import torch

from eplbench.heuristics.mapping import log2phy_from_ranks

Packing = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
Replication = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# both stages within a node: (node rows [X, n], slots per row, GPUs per row) -> replica2local,
# replica_rank [X, slots], local_count [X, n], gpu_of_replica, rank_on_gpu [X, slots]
Placement = Callable[[torch.Tensor, int, int], tuple[torch.Tensor, ...]]


def refuse_unless(condition: bool, reason: str) -> None:
    """The reference's `assert`: AssertionError when `condition` is false."""
    if not condition:
        raise AssertionError(reason)


def check_packing(num_items: int, num_packs: int) -> None:
    """The reference's packing refuses items that do not fill its packs equally."""
    refuse_unless(num_items % num_packs == 0, f"{num_items} items do not split into "
                  f"{num_packs} equal packs")


def check_replication(num_log: int, num_phy: int) -> None:
    """The reference's replication refuses fewer slots than experts."""
    refuse_unless(num_phy >= num_log, f"{num_phy} slots cannot hold {num_log} experts")


def check_hierarchy(num_experts: int, num_replicas: int, num_groups: int, num_nodes: int,
                    num_gpus: int) -> None:
    """The reference's checks on entering its hierarchical step, in its order (a zero
    divisor raises ZeroDivisionError there as here)."""
    refuse_unless(num_experts % num_groups == 0,
                  f"{num_experts} experts do not split into {num_groups} groups")
    refuse_unless(num_groups % num_nodes == 0,
                  f"{num_groups} groups do not split into {num_nodes} nodes")
    refuse_unless(num_gpus % num_nodes == 0,
                  f"{num_gpus} GPUs do not split into {num_nodes} nodes")
    refuse_unless(num_replicas % num_gpus == 0,
                  f"{num_replicas} slots do not split into {num_gpus} GPUs")


def descending_order(weight: torch.Tensor) -> torch.Tensor:
    """[X, n] item indices by decreasing weight, ties as torch's default sort breaks them."""
    return weight.float().sort(-1, descending=True).indices


def one_item_per_pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's shortcut when packs hold one item: item i goes to pack i."""
    pack_index = torch.arange(weight.shape[-1], dtype=torch.int64).expand(weight.shape)
    return pack_index, torch.zeros(weight.shape, dtype=torch.int64)


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy cardinality-constrained packing (LPT with exactly n / num_packs items per pack).

    Args:
        weight: [X, n] float32 item weights; n is a multiple of num_packs (AssertionError
            otherwise).
    Returns:
        pack_index: [X, n] int64 pack of each item.
        rank_in_pack: [X, n] int64 position of the item in its pack (assignment order).
    """
    num_rows, num_items = weight.shape
    check_packing(num_items, num_packs)
    capacity = num_items // num_packs
    if capacity == 1:
        return one_item_per_pack(weight)
    order = descending_order(weight)
    pack_index = torch.full((num_rows, num_items), -1, dtype=torch.int64)
    rank_in_pack = torch.full((num_rows, num_items), -1, dtype=torch.int64)
    for row in range(num_rows):
        loads = [0] * num_packs  # becomes 0-d float32 tensors, summed in assignment order
        filled = [0] * num_packs
        for item in order[row].tolist():
            open_packs = (p for p in range(num_packs) if filled[p] < capacity)
            pack = min(open_packs, key=loads.__getitem__)
            pack_index[row, item] = pack
            rank_in_pack[row, item] = filled[pack]
            loads[pack] += weight[row, item]
            filled[pack] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: torch.Tensor, num_phy: int):
    """D'Hondt replication: each extra slot goes to the expert with the largest load per replica.

    Args:
        weight: [X, num_log] float32 loads.
        num_phy: slots per row, >= num_log (AssertionError otherwise).
    Returns:
        phy2log: [X, num_phy] int64 (slot i < num_log holds expert i; the rest in order given).
        rank: [X, num_phy] int64 replica index of each slot.
        logcnt: [X, num_log] int64 replica counts.
    """
    num_rows, num_log = weight.shape
    check_replication(num_log, num_phy)
    phy2log = torch.arange(num_phy, dtype=torch.int64).repeat(num_rows, 1)
    rank = torch.zeros(num_rows, num_phy, dtype=torch.int64)
    logcnt = torch.ones(num_rows, num_log, dtype=torch.int64)
    rows = torch.arange(num_rows)
    for slot in range(num_log, num_phy):
        expert = (weight / logcnt).max(dim=-1).indices  # first of equal maxima
        phy2log[:, slot] = expert
        rank[:, slot] = logcnt[rows, expert]
        logcnt[rows, expert] += 1
    return phy2log, rank, logcnt


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """[X, n] inverse of each row's permutation."""
    inverse = torch.empty_like(perm)
    positions = torch.arange(perm.shape[1], dtype=torch.int64).expand(perm.shape)
    return inverse.scatter_(1, perm, positions)


def replicate_then_pack(replicate: Replication, packing: Packing, node_weight: torch.Tensor,
                        num_phy: int, num_packs: int):
    """DeepSeek's two stages within a node (a `Placement`): replicate, then pack the replicas
    by their load (float32 weight / count)."""
    replica2local, replica_rank, local_count = replicate(node_weight, num_phy)
    replica_load = (node_weight / local_count).gather(-1, replica2local)
    gpu_of_replica, rank_on_gpu = packing(replica_load, num_packs)
    return replica2local, replica_rank, local_count, gpu_of_replica, rank_on_gpu


def group_sums(weight: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[L, groups] float32 load of each group of consecutive experts, summed as the reference."""
    return weight.unflatten(-1, (num_groups, weight.shape[-1] // num_groups)).sum(-1)


def rebalance_hierarchical(weight: torch.Tensor, num_replicas: int, num_groups: int,
                           num_nodes: int, num_gpus: int, group_packing: Packing,
                           place: Placement, sum_groups=group_sums):
    """Groups to nodes, then replicas placed within each node.

    Args:
        weight: [L, E] float32 loads; the topology passes `check_hierarchy`.
        group_packing: groups to nodes (DeepSeek: its balanced packing).
        place: replication and packing within a node (DeepSeek: D'Hondt, then the packing).
        sum_groups: (weight, num_groups) -> [L, groups] group loads (DeepSeek: torch's sum).
    Returns:
        phy2log [L, P], rank [L, P], logcnt [L, E], all int64.
    """
    num_layers, num_experts = weight.shape
    check_hierarchy(num_experts, num_replicas, num_groups, num_nodes, num_gpus)
    group_size = num_experts // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = num_experts // num_nodes
    slots_per_gpu = num_replicas // num_gpus

    group_load = sum_groups(weight, num_groups)
    node_of_group, rank_on_node = group_packing(group_load, num_nodes)
    # "node-major" order: the experts of node 0's groups first, then node 1's, ...
    first_position = (node_of_group * groups_per_node + rank_on_node) * group_size
    log2node_major = (first_position.unsqueeze(-1) + torch.arange(group_size)).flatten(-2)
    node_major2log = inverse_permutation(log2node_major)

    node_weight = weight.gather(-1, node_major2log).view(-1, experts_per_node)
    replica2local, replica_rank, local_count, gpu_of_replica, rank_on_gpu = place(
        node_weight, num_replicas // num_nodes, num_gpus // num_nodes)
    slot_of_replica = gpu_of_replica * slots_per_gpu + rank_on_gpu
    replica_of_slot = inverse_permutation(slot_of_replica)

    local_of_slot = replica2local.gather(-1, replica_of_slot).view(num_layers, num_nodes, -1)
    node_offset = (torch.arange(num_nodes) * experts_per_node).view(1, -1, 1)
    node_major_of_slot = (local_of_slot + node_offset).flatten(-2)
    phy2log = node_major2log.gather(-1, node_major_of_slot)
    rank = replica_rank.gather(-1, replica_of_slot).view(num_layers, -1)
    logcnt = local_count.view(num_layers, -1).gather(-1, log2node_major)
    return phy2log, rank, logcnt


def rebalance_with(packing: Packing, replicate: Replication, weight: torch.Tensor,
                   num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int,
                   group_packing: Packing | None = None):
    """DeepSeek's entry point with chosen stage functions (`group_packing`: groups to nodes,
    if not `packing`); see `rebalance_experts`."""
    return rebalance_placed(group_packing or packing,
                            partial(replicate_then_pack, replicate, packing), weight,
                            num_replicas, num_groups, num_nodes, num_gpus)


def policy_topology(num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int):
    """(slots, groups, nodes, GPUs) the reference places with: hierarchical when the groups
    split into the nodes, else global (one group, one node)."""
    if num_groups % num_nodes == 0:
        return num_replicas, num_groups, num_nodes, num_gpus
    return num_replicas, 1, 1, num_gpus


def load_matrix(weight) -> torch.Tensor:
    """[L, E] float32 CPU loads; ValueError for another rank (the reference's unpacking)."""
    weight = torch.as_tensor(weight)
    if weight.dim() != 2:
        raise ValueError(f"weight must be [layers, experts], got shape {tuple(weight.shape)}")
    return weight.float().cpu()


def rebalance_placed(group_packing: Packing, place: Placement, weight: torch.Tensor,
                     num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int):
    """DeepSeek's entry point with groups packed by `group_packing` and each node's
    replicas chosen and packed by `place`; see `rebalance_experts`."""
    weight = load_matrix(weight)
    topology = policy_topology(num_replicas, num_groups, num_nodes, num_gpus)
    phy2log, rank, logcnt = rebalance_hierarchical(weight, *topology, group_packing, place)
    return phy2log, log2phy_from_ranks(phy2log, rank, logcnt), logcnt


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """DeepSeek EPLB.

    Args:
        weight: [L, E] token counts per layer and logical expert.
        num_replicas: P >= E slots, a multiple of num_gpus; num_gpus a multiple of num_nodes
            (hierarchical policy); AssertionError otherwise, as the reference.
    Returns:
        phy2log [L, P], log2phy [L, E, X] (-1 padded, X = the largest count, as the
        reference), logcnt [L, E], all int64.
    """
    return rebalance_with(balanced_packing, replicate_experts, weight, num_replicas, num_groups,
                          num_nodes, num_gpus)
