"""Replication-stage variants from the seeds (../shared/seeds), on DeepSeek's packing.

Each variant chooses replica counts per row differently, then DeepSeek's hierarchical
composition (groups to nodes, replicas to GPUs, vectorised packing) places them:

- `seed001`: D'Hondt, then one donor -> receiver move (the expert with the largest load per
  replica gives one replica to the one with the smallest) when it lowers the largest load
  per replica; maps rebuilt from the counts in expert order. Seed 001 whole.
- `sainte_lague_cv_fixup`: D'Hondt for the bulk of the extra slots, Sainte-Lague for a tail
  whose length scales with the loads' coefficient of variation, then the best single move
  among the top-2 donors x bottom-2 receivers (seed 004's replication; its parent's swap
  refinement of the packing is not included).

SPEC 10 predicts what the exact side confirms: D'Hondt already minimises the largest load
per replica, so seed 001's move (whose donor is always the top expert) never fires and its
counts are D'Hondt's; a tail of Sainte-Lague seats can only raise that maximum. Any gain has
to come through the packing.
"""

import numpy as np
import torch

from eplbench.heuristics.deepseek import rebalance_with
from eplbench.heuristics.deepseek_fast import balanced_packing_vectorised


def divisor_allocation(weight: np.ndarray, counts: np.ndarray, seats: int,
                       offset: float) -> np.ndarray:
    """Give `seats` more replicas per row, each to the expert with the largest
    w / (count + offset) (first on ties): offset 0 is D'Hondt, 0.5 is Sainte-Lague.

    weight: [X, n] float64; counts: [X, n] int64 (>= 1), updated copy returned.
    """
    counts = counts.copy()
    rows = np.arange(weight.shape[0])
    for _ in range(seats):
        best = np.argmax(weight / (counts + offset), axis=1)
        counts[rows, best] += 1
    return counts


def move_fixup(weight: np.ndarray, counts: np.ndarray, candidates: int) -> np.ndarray:
    """Per row, the best single move of one replica from one of the `candidates` experts with
    the largest load per replica to one of the `candidates` with the smallest, by the seeds'
    rule: predicted peak = max(the second-largest load per replica before the move, the
    donor's and the receiver's new loads), applied when below the current peak. With one
    candidate the donor is the top expert and the rule is exact (and never fires after
    D'Hondt); with two, a move by the second donor ignores the untouched top expert, so the
    real peak may stay where it was. Returns updated counts [X, n]."""
    counts = counts.copy()
    rows = np.arange(weight.shape[0])
    per_replica = weight / counts
    order = np.argsort(-per_replica, axis=1, kind="stable")
    peak = per_replica[rows, order[:, 0]]
    runner_up = per_replica[rows, order[:, 1]] if weight.shape[1] > 1 else peak
    best_peak = peak.copy()
    best_move = np.full((weight.shape[0], 2), -1)
    for donor in order[:, :candidates].T:
        for receiver in order[:, ::-1][:, :candidates].T:
            donor_count = counts[rows, donor]
            allowed = (donor != receiver) & (donor_count > 1)
            new_donor = weight[rows, donor] / np.maximum(donor_count - 1, 1)
            new_receiver = weight[rows, receiver] / (counts[rows, receiver] + 1)
            new_peak = np.maximum(runner_up, np.maximum(new_donor, new_receiver))
            better = allowed & (new_peak < best_peak)
            best_peak = np.where(better, new_peak, best_peak)
            best_move[better] = np.stack([donor, receiver], axis=1)[better]
    moved = best_move[:, 0] >= 0
    counts[rows[moved], best_move[moved, 0]] -= 1
    counts[rows[moved], best_move[moved, 1]] += 1
    return counts


def maps_from_counts(counts: np.ndarray):
    """(phy2log [X, P], rank [X, P], logcnt [X, n]) with each expert's replicas in expert
    order. counts: [X, n] int64, every row summing to P."""
    num_rows, num_log = counts.shape
    num_phy = int(counts[0].sum())
    experts = np.repeat(np.tile(np.arange(num_log), num_rows), counts.ravel())
    phy2log = experts.reshape(num_rows, num_phy)
    block_start = np.cumsum(counts, axis=1) - counts
    rank = np.arange(num_phy)[None, :] - np.take_along_axis(block_start, phy2log, axis=1)
    return torch.from_numpy(phy2log), torch.from_numpy(rank), torch.from_numpy(counts)


def _dhondt_one_move(weight: torch.Tensor, num_phy: int):
    values = weight.double().numpy()
    start = np.ones(values.shape, dtype=np.int64)
    counts = divisor_allocation(values, start, num_phy - values.shape[1], 0.0)
    return maps_from_counts(move_fixup(values, counts, candidates=1))


def _sainte_lague_cv_tail(weight: torch.Tensor, num_phy: int):
    values = weight.double().numpy()
    extra = num_phy - values.shape[1]
    mean = np.maximum(values.mean(axis=1), 1e-12)
    spread = float(np.clip((values.std(axis=1, ddof=1) / mean).mean(), 0.7, 1.3)) \
        if values.shape[1] > 1 else 1.0
    tail = min(extra, max(1, round(0.1 * extra * spread))) if extra else 0
    counts = divisor_allocation(values, np.ones(values.shape, dtype=np.int64), extra - tail, 0.0)
    counts = divisor_allocation(values, counts, tail, 0.5)
    return maps_from_counts(move_fixup(values, counts, candidates=2))


def seed001(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Seed 001: D'Hondt + one-step move fix-up, DeepSeek packing. Engine signature."""
    return rebalance_with(balanced_packing_vectorised, _dhondt_one_move, weight, num_replicas,
                          num_groups, num_nodes, num_gpus)


def sainte_lague_cv_fixup(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Seed 004's replication (CV-scaled Sainte-Lague tail + 2x2 move fix-up), DeepSeek
    packing. Engine signature."""
    return rebalance_with(balanced_packing_vectorised, _sainte_lague_cv_tail, weight,
                          num_replicas, num_groups, num_nodes, num_gpus)
