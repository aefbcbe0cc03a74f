"""The five seeds as whole heuristics, and each seed's change alone, for attribution.

A seed is DeepSeek's composition with two stage functions swapped in (see
`deepseek.rebalance_with`): a replication stage from `replication_fixups` and, for the seeds
whose parents had one, a swap refinement after every greedy packing (`swap_refinement`, two
swaps per packing, at both levels: groups to nodes and replicas to GPUs).

| seed | replication | packing |
| --- | --- | --- |
| 000 | D'Hondt + peak-aware tail, 2 x 2 move (exact rule) | swaps, nearest target |
| 001 | D'Hondt + 1 x 1 move | DeepSeek |
| 002 | D'Hondt + fixed 10% Sainte-Lague tail, 2 x 2 move | swaps, top-2 x bottom-2 |
| 003 | D'Hondt + simulated tail length, 2 x 2 move | swaps, lightest and second-lightest |
| 004 | D'Hondt + CV-scaled tail, 2 x 2 move | swaps, nearest target |

The seeds are diffs on intermediate programs that are not published whole, so these are
built from their text, not checked bit for bit against a reference.
"""

from functools import partial

from eplbench.heuristics.deepseek import rebalance_with
from eplbench.heuristics.deepseek_fast import (balanced_packing_vectorised,
                                               replicate_experts_vectorised)
from eplbench.heuristics.replication_fixups import (cv_tail, dhondt_then_move, fixed_tail,
                                                    peak_aware_then_move, simulated_tail,
                                                    tail_then_move)
from eplbench.heuristics.swap_refinement import refined

DEEPSEEK_PACKING = balanced_packing_vectorised
DEEPSEEK_REPLICATION = replicate_experts_vectorised


def composed(packing, replication):
    """A heuristic with the engine signature from two stage functions."""
    return partial(rebalance_with, packing, replication)


# the seeds' changes one at a time, the other stage DeepSeek's
swap_nearest = composed(refined(DEEPSEEK_PACKING, "nearest"), DEEPSEEK_REPLICATION)
swap_top2 = composed(refined(DEEPSEEK_PACKING, "top2"), DEEPSEEK_REPLICATION)
swap_two_light = composed(refined(DEEPSEEK_PACKING, "two_light"), DEEPSEEK_REPLICATION)
tail_peak_aware = composed(DEEPSEEK_PACKING, peak_aware_then_move)
tail_fixed = composed(DEEPSEEK_PACKING, partial(tail_then_move, fixed_tail))
tail_simulated = composed(DEEPSEEK_PACKING, partial(tail_then_move, simulated_tail))
tail_cv = composed(DEEPSEEK_PACKING, partial(tail_then_move, cv_tail))

# the seeds whole
seed000 = composed(refined(DEEPSEEK_PACKING, "nearest"), peak_aware_then_move)
seed001 = composed(DEEPSEEK_PACKING, dhondt_then_move)
seed002 = composed(refined(DEEPSEEK_PACKING, "top2"), partial(tail_then_move, fixed_tail))
seed003 = composed(refined(DEEPSEEK_PACKING, "two_light"),
                   partial(tail_then_move, simulated_tail))
seed004 = composed(refined(DEEPSEEK_PACKING, "nearest"), partial(tail_then_move, cv_tail))
