"""`swift_balancer`: vllm-ascend's SwiftBalancer in its incremental mode, as the engine runs
it: a faithful port of `SwiftBalanceEplb.rebalance_experts`
(vllm_ascend/eplb/core/policy/policy_swift_balancer.py, vllm-ascend commit 182b75ea84);
bit-identical phy2log, ties included.

From the plan in place, per layer whose max GPU load is at least 1.01 x the mean (loads:
each expert's tokens split evenly over its slots):

1. Every slot holding a further copy of an expert (the first copy is the first met going
   slot position by slot position, GPU by GPU) is freed. The freed slots are given again,
   one at a time, to the expert with the largest current load estimate that has fewer than
   G - 1 extra copies (ties: the later expert in the list); each extra copy multiplies its
   estimate by (r + 1) / (r + 2) for its r-th copy, so the estimate after r copies is
   2w / (r + 2), not w / (r + 1). Estimates are float32.
2. The copies, heaviest estimate first, go to the least-loaded GPU that has a freed slot,
   does not hold the expert, and has not yet received a weight from the expert's home GPU
   (the GPU of its first copy); at most one transfer per pair of GPUs. Freed slots left
   over are filled, GPU by GPU, with the experts of largest recomputed load (tokens /
   copies placed) that the GPU does not hold.
3. Up to 100 times: the busiest GPU swaps one expert with the first GPU, least loaded first,
   that it has not exchanged with and whose best swap (over experts neither GPU holds
   both of, and neither received in this rebalance) lowers the pair's larger load by at
   least 1% of the mean GPU load; it stops when no GPU qualifies. Loads are the float32
   estimates of step 1 or 2.
4. The layer takes the new plan when its max estimate over the mean of layer 0 (the
   policy's quirk: one mean for all layers) is below the layer's imbalance.

Each GPU's new experts are then placed in its slots so that experts it keeps stay in their
slots (`constraint_expert_local_exchange`). The engine's worker (eplb_worker.py,
`check_expert_placement`) would revert a layer that loses an expert, puts two copies of an
expert on one GPU or moves an expert a GPU keeps to another of its slots; the policy never
does any of these to a layer it changes (freed slots take only experts the GPU lacks, swaps
exchange experts the other GPU lacks, the alignment keeps stayers in place), and on the 490
inputs this port was checked on against the engine's code the check changed nothing, so it
is not repeated here. Where the engine's code raises (a freed slot no expert can fill, on a
GPU that already holds every expert) this port raises the same ValueError. SwiftBalancer
places replicas anywhere: its plans may break the hierarchical policy.

The engines' five-argument call has no plan in place: it gets DeepSeek's plan.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek

IMBALANCE_THRESHOLD = 1.01
SWAP_GAIN_SHARE = 0.01  # of layer 0's mean GPU load
MAX_SWAPS = 100
TRANSFERS_PER_PAIR = 1


def rebalance_experts(weight, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int, old_phy2log=None):
    """phy2log [L, P] int64 from the plan in place `old_phy2log` ([L, P]); DeepSeek's
    (phy2log, log2phy, logcnt) without one. weight: [L, E] token counts."""
    if old_phy2log is None:
        return deepseek(torch.as_tensor(weight), num_replicas, num_groups, num_nodes, num_gpus)
    weight = torch.as_tensor(weight).numpy().astype(np.int64)
    old = torch.as_tensor(old_phy2log).to(torch.int64).numpy().reshape(len(weight), num_gpus, -1)
    loads = weight.astype(np.float64)  # the policy sums integer slot loads per expert
    mean = loads[0].sum() / num_gpus
    new = old.copy()
    for layer in range(len(old)):
        imbalance = _imbalance(old[layer], loads[layer])
        if imbalance < IMBALANCE_THRESHOLD:
            continue
        plan, peak = _rebalance_layer(old[layer], loads[layer], SWAP_GAIN_SHARE * mean)
        if peak / mean < imbalance:
            new[layer] = plan
    for layer in range(len(old)):
        new[layer] = [_keep_slots(before, after) for before, after in zip(old[layer], new[layer])]
    return torch.from_numpy(new.reshape(len(old), -1))


def _imbalance(plan: np.ndarray, loads: np.ndarray) -> float:
    """Max GPU load over the mean, in the policy's float64 order; plan: [G, S]."""
    copies = np.zeros_like(loads)
    for expert in plan.reshape(-1):
        copies[expert] += 1
    peak = total = 0
    for gpu in plan:
        gpu_load = 0
        for expert in gpu:
            share = loads[expert] / copies[expert]
            gpu_load += share
            total += share
        peak = max(peak, gpu_load)
    mean = total / len(plan)
    return 1.0 if abs(mean) < 1e-9 else peak / mean


def _rebalance_layer(plan: np.ndarray, loads: np.ndarray, min_gain: float):
    """(new plan [G, S] int64, its max estimated GPU load): steps 1-3 of the docstring."""
    freed, home, first = _first_copies(plan, len(loads))
    first_loads = [(expert, loads[expert]) for expert in first]
    copies, estimate = _extra_copies(first_loads, sum(map(len, freed)), len(plan), len(loads))
    placed = np.where(_freed_mask(plan, freed), -1, plan)
    gpu_loads = np.zeros(len(plan), dtype=np.float32)
    for gpu, row in enumerate(placed):
        for expert in row[row >= 0]:
            gpu_loads[gpu] += estimate[expert]
    links = np.zeros((len(plan), len(plan)), dtype=np.int64)
    received = defaultdict(set)
    _place_copies(placed, gpu_loads, copies, home, freed, links, received)
    if any(freed):
        estimate, gpu_loads = _fill_freed(placed, first_loads, freed, home, links, received)
    return _swap(placed, gpu_loads, links, received, estimate, min_gain)


def _first_copies(plan: np.ndarray, num_experts: int):
    """(freed slot positions per GPU, GPU of each expert's first copy [E], the set of
    experts in the order first met): positions are scanned slot by slot, GPU by GPU."""
    num_gpus, slots = plan.shape
    freed = [[] for _ in range(num_gpus)]
    home = np.zeros(num_experts, dtype=np.int64)
    first = set()
    for position in range(slots):
        for gpu in range(num_gpus):
            expert = int(plan[gpu][position])
            if expert in first:
                freed[gpu].append(position)
            else:
                first.add(expert)
                home[expert] = gpu
    return freed, home, first


def _freed_mask(plan: np.ndarray, freed: list) -> np.ndarray:
    mask = np.zeros(plan.shape, dtype=bool)
    for gpu, positions in enumerate(freed):
        mask[gpu, positions] = True
    return mask


def _extra_copies(first_loads: list, num_freed: int, num_gpus: int, num_experts: int):
    """(copies [(expert, float estimate)] heaviest first, float32 estimate [E]): step 1."""
    current = list(first_loads)
    extra = np.zeros(num_experts, dtype=np.int64)
    for _ in range(num_freed):
        for index in np.argsort([load for _, load in current], kind="stable")[::-1]:
            expert, load = current[index]
            copy_number = extra[expert] + 1
            if copy_number < num_gpus:
                current[index] = (expert, load * (copy_number + 1) / (copy_number + 2))
                extra[expert] += 1
                break
    estimate = np.zeros(num_experts, dtype=np.float32)
    for expert, load in current:
        estimate[expert] = load
    copies = [(expert, float(estimate[expert]))
              for expert in range(num_experts) for _ in range(extra[expert])]
    copies.sort(key=lambda copy: copy[1], reverse=True)
    return copies, estimate


def _place_copies(placed, gpu_loads, copies, home, freed, links, received) -> None:
    """Step 2's first part, in place: each copy to the least-loaded GPU allowed."""
    for expert, load in copies:
        chosen = -1
        source = home[expert]
        for gpu in range(len(placed)):
            if not freed[gpu] or expert in placed[gpu]:
                continue
            if links[source][gpu] >= TRANSFERS_PER_PAIR:
                continue
            if chosen == -1 or gpu_loads[gpu] < gpu_loads[chosen]:
                chosen = gpu
        if chosen != -1:
            placed[chosen][freed[chosen].pop()] = expert
            gpu_loads[chosen] += load
            links[source][chosen] += 1
            received[chosen].add(expert)


def _fill_freed(placed, first_loads, freed, home, links, received):
    """Step 2's second part, in place: (float32 estimate [E] = tokens / copies placed,
    float32 GPU loads [G])."""
    copies = np.zeros(len(home), dtype=np.int64)
    for row in placed:
        for expert in row:
            if expert != -1:
                copies[expert] += 1
    estimate = np.full(len(home), -1, dtype=np.float32)
    for expert, load in first_loads:
        estimate[expert] = load / copies[expert]
    for gpu in [gpu for gpu in range(len(placed)) if freed[gpu]]:
        for position in freed[gpu]:
            for expert in np.argsort(estimate, kind="stable")[::-1]:
                if expert in placed[gpu]:
                    continue
                placed[gpu][position] = expert
                links[home[expert]][gpu] += 1
                received[gpu].add(expert)
                estimate[expert] *= copies[expert] / (copies[expert] + 1)
                copies[expert] += 1
                break
    gpu_loads = np.zeros(len(placed), dtype=np.float32)
    for gpu, row in enumerate(placed):
        for expert in row:
            gpu_loads[gpu] += estimate[expert]
    return estimate, gpu_loads


def _swap(placed, gpu_loads, links, received, estimate, min_gain):
    """Step 3: (plan [G, S] int64 of each GPU's experts in set order, the busiest GPU's
    estimated load as last seen)."""
    held = [set(row) for row in placed]
    peak, swapped = 0.0, True
    for _ in range(MAX_SWAPS):
        order = np.argsort(gpu_loads, kind="stable")
        busiest = int(order[-1])
        peak = float(gpu_loads[busiest])
        if not swapped:
            break
        swapped = False
        for other in order[:-1]:
            if links[other][busiest] >= TRANSFERS_PER_PAIR or \
                    links[busiest][other] >= TRANSFERS_PER_PAIR:
                continue
            mine, theirs, after = _best_swap(held[busiest], held[other], received[busiest],
                                             received[other], estimate, peak, gpu_loads[other])
            if peak - after < min_gain or mine == -1:
                continue
            held[busiest].remove(mine)
            held[other].remove(theirs)
            held[busiest].add(theirs)
            held[other].add(mine)
            gpu_loads[busiest] += estimate[theirs] - estimate[mine]
            gpu_loads[other] += estimate[mine] - estimate[theirs]
            received[busiest].add(theirs)
            received[other].add(mine)
            links[other][busiest] += 1
            links[busiest][other] += 1
            swapped = True
            break
    return np.array([list(experts) for experts in held]), peak


def _best_swap(mine, theirs, mine_received, theirs_received, estimate, peak, other_load):
    """(my expert, their expert, the pair's larger load after) of the swap that lowers the
    pair's larger load most, first found on ties; (-1, -1, peak) when none lowers it."""
    best = (-1, -1, peak)
    for expert in mine:
        if expert in theirs or expert in mine_received:
            continue
        load = float(estimate[expert])
        for partner in theirs:
            if partner in mine or partner in theirs_received:
                continue
            partner_load = float(estimate[partner])
            after = max(peak - load + partner_load, other_load - partner_load + load)
            if after < best[2]:
                best = (expert, partner, after)
    return best


def _keep_slots(before: np.ndarray, after: np.ndarray) -> list[int]:
    """One GPU's new experts ([S]) with those it held before in their old slots (each old
    slot matched once, new experts in order), the rest in the free slots in order."""
    used = [False] * len(before)
    kept = [-1] * len(before)
    rest = []
    for expert in after.tolist():
        for slot, previous in enumerate(before.tolist()):
            if expert == previous and not used[slot]:
                used[slot] = True
                kept[slot] = expert
                break
        else:
            rest.append(expert)
    free = iter(rest)
    return [next(free) if expert == -1 else expert for expert in kept]
