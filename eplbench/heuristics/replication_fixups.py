"""Replication-stage variants from the seeds (five published greedy-plus-fixup EPLB
programs, see `seeds`), on DeepSeek's packing.

Each variant chooses replica counts per row, then DeepSeek's hierarchical composition
(groups to nodes, replicas to GPUs) places them. The seeds' pieces:

- divisor allocations: D'Hondt gives the next replica to the largest w / c; the seeds'
  "Sainte-Lague" tail to the largest w / (2c - 1), i.e. w / (c - 0.5), c counting the first
  replica (so it favours experts that still have one);
- the tail length: a fixed ~10% of the redundant slots (002), that length chosen per row
  step by step between D'Hondt and Sainte-Lague by the predicted peak (000), by simulating
  tail0 - 1, tail0, tail0 + 1 (003), or scaled by the loads' coefficient of variation (004);
- a move fix-up: the best single move of one replica from a donor among the experts with the
  largest load per replica to a receiver among the smallest (001: 1 x 1; the others 2 x 2).

spec §10 predicts what the exact side confirms: D'Hondt already minimises the largest load
per replica, so seed 001's move (whose donor is always the top expert) never fires; a tail
of Sainte-Lague seats can only raise that maximum. Any gain has to come through the packing.
The maps are rebuilt from the counts in expert order (the seeds edit their maps in place:
the same counts, another slot order).
"""

import numpy as np
import torch


def divisor_allocation(weight: np.ndarray, counts: np.ndarray, seats: int,
                       offset: float) -> np.ndarray:
    """Give `seats` more replicas per row, each to the expert with the largest
    w / (count + offset) (first on ties): offset 0 is D'Hondt, -0.5 the seeds' Sainte-Lague.

    weight: [X, n] float64; counts: [X, n] int64 (>= 1), updated copy returned.
    """
    counts = counts.copy()
    rows = np.arange(weight.shape[0])
    for _ in range(seats):
        best = np.argmax(weight / (counts + offset), axis=1)
        counts[rows, best] += 1
    return counts


def move_fixup(weight: np.ndarray, counts: np.ndarray, candidates: int,
               exact_peak: bool = False) -> np.ndarray:
    """Per row, the best single move of one replica from one of the `candidates` experts with
    the largest load per replica to one of the `candidates` with the smallest, by the seeds'
    rule: predicted peak = max(the second-largest load per replica before the move, the
    donor's and the receiver's new loads), applied when below the current peak. With one
    candidate the donor is the top expert and the rule is exact (and never fires after
    D'Hondt); with two, a move by the second donor ignores the untouched top expert, so the
    real peak may stay where it was. `exact_peak` (seed 000's rule) predicts the peak left by
    a move as the second-largest only when the donor is the top expert, else the top itself.
    Returns updated counts [X, n]."""
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
            rest = np.where(donor == order[:, 0], runner_up, peak) if exact_peak else runner_up
            new_peak = np.maximum(rest, np.maximum(new_donor, new_receiver))
            better = allowed & (new_peak < best_peak)
            best_peak = np.where(better, new_peak, best_peak)
            best_move[better] = np.stack([donor, receiver], axis=1)[better]
    moved = best_move[:, 0] >= 0
    counts[rows[moved], best_move[moved, 0]] -= 1
    counts[rows[moved], best_move[moved, 1]] += 1
    return counts


def replica_experts(counts: np.ndarray) -> np.ndarray:
    """[R, N] the expert of each replica, replicas in expert order; counts: [R, n]."""
    num_rows, num_log = counts.shape
    return np.repeat(np.tile(np.arange(num_log), num_rows), counts.ravel()).reshape(num_rows, -1)


def maps_from_counts(counts: np.ndarray):
    """(phy2log [X, P], rank [X, P], logcnt [X, n]) with each expert's replicas in expert
    order. counts: [X, n] int64, every row summing to P."""
    phy2log = replica_experts(counts)
    block_start = np.cumsum(counts, axis=1) - counts
    rank = np.arange(phy2log.shape[1]) - np.take_along_axis(block_start, phy2log, axis=1)
    return torch.from_numpy(phy2log), torch.from_numpy(rank), torch.from_numpy(counts)


SAINTE_LAGUE = -0.5


def fixed_tail(values: np.ndarray, extra: int) -> int:
    """Seed 002: ceil(10%) of the redundant slots, at least one."""
    return max(1, -(-extra // 10)) if extra else 0


def cv_tail(values: np.ndarray, extra: int) -> int:
    """Seed 004: 10% x the mean over rows of the coefficient of variation, clamped to
    [0.7, 1.3], rounded, in 1..extra."""
    if not extra:
        return 0
    mean = np.maximum(values.mean(axis=1), 1e-12)
    spread = (values.std(axis=1, ddof=1) / mean).mean() if values.shape[1] > 1 else 1.0
    return min(extra, max(1, round(0.1 * extra * float(np.clip(spread, 0.7, 1.3)))))


def simulated_tail(values: np.ndarray, extra: int) -> int:
    """Seed 003: of tail0 - 1, tail0, tail0 + 1 (tail0 = `fixed_tail`, kept in 1..extra), the
    one whose counts give the smallest mean over rows of the largest load per replica."""
    if not extra:
        return 0
    first = fixed_tail(values, extra)
    options = sorted({max(1, first - 1), first, min(extra, first + 1)})
    peaks = [(values / hybrid_counts(values, extra, tail)).max(axis=1).mean()
             for tail in options]
    return options[int(np.argmin(peaks))]


def hybrid_counts(values: np.ndarray, extra: int, tail: int) -> np.ndarray:
    """[X, n] counts: D'Hondt for extra - tail seats, then Sainte-Lague for `tail`."""
    counts = divisor_allocation(values, np.ones(values.shape, dtype=np.int64), extra - tail, 0.0)
    return divisor_allocation(values, counts, tail, SAINTE_LAGUE)


def peak_aware_counts(values: np.ndarray, extra: int) -> np.ndarray:
    """Seed 000: D'Hondt, then for the `fixed_tail` last seats each row takes D'Hondt's or
    Sainte-Lague's choice, whichever leaves the smaller peak (then the smaller runner-up)."""
    tail = fixed_tail(values, extra)
    counts = divisor_allocation(values, np.ones(values.shape, dtype=np.int64), extra - tail, 0.0)
    rows = np.arange(values.shape[0])
    for _ in range(tail):
        per_replica = values / counts
        runner_up = np.sort(per_replica, axis=1)[:, -2] if values.shape[1] > 1 \
            else per_replica[:, 0]
        options = [np.argmax(values / (counts + offset), axis=1) for offset in (0.0, SAINTE_LAGUE)]
        peaks, seconds = [], []
        for chosen in options:
            new = values[rows, chosen] / (counts[rows, chosen] + 1)
            peaks.append(np.maximum(runner_up, new))
            seconds.append(np.minimum(runner_up, new))
        take_dhondt = (peaks[0] + 1e-12 < peaks[1]) | (
            (np.abs(peaks[0] - peaks[1]) <= 1e-12) & (seconds[0] <= seconds[1]))
        counts[rows, np.where(take_dhondt, options[0], options[1])] += 1
    return counts


def dhondt_then_move(weight: torch.Tensor, num_phy: int):
    """Seed 001's replication stage: D'Hondt, then the 1 x 1 move fix-up."""
    values = weight.double().numpy()
    start = np.ones(values.shape, dtype=np.int64)
    counts = divisor_allocation(values, start, num_phy - values.shape[1], 0.0)
    return maps_from_counts(move_fixup(values, counts, candidates=1))


def tail_then_move(tail_length, weight: torch.Tensor, num_phy: int):
    """Replication stage (DeepSeek's contract): hybrid counts with the tail `tail_length`
    gives, then the 2 x 2 move fix-up by the seeds' rule."""
    values = weight.double().numpy()
    extra = num_phy - values.shape[1]
    counts = hybrid_counts(values, extra, tail_length(values, extra))
    return maps_from_counts(move_fixup(values, counts, candidates=2) if extra else counts)


def peak_aware_then_move(weight: torch.Tensor, num_phy: int):
    """Seed 000's replication stage: peak-aware tail, 2 x 2 move fix-up by the exact rule."""
    values = weight.double().numpy()
    extra = num_phy - values.shape[1]
    counts = peak_aware_counts(values, extra)
    return maps_from_counts(move_fixup(values, counts, 2, exact_peak=True) if extra else counts)
