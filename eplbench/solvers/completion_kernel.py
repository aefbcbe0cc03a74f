"""The compiled bin-completion search behind `completion.Completion` (numba, nopython).

One call answers "is there a placement with every GPU load at most cap?" for experts in
non-increasing load order. All loads are int64 in scaled units (tokens x scale), so every
replica load load[d] // count is exact.

Search state at depth d (experts 0..d-1 placed), one row per depth:
    gpu_load[d, i], gpu_used[d, i]: load and replicas of the i-th GPU in (load, used) order;
    gpu_id[d, i]: which GPU that is (GPUs are re-sorted after every expert).
An expert's spread is chosen GPU by GPU in row d's order, each GPU taking what fits under
cap and its free slots, and a GPU in the same (load, used) state as the one before it
taking no more than that one (symmetry).
placed[d, gpu] records, along the current path, the replicas of expert d on each GPU.

Every open GPU must end within the spare room (the open GPUs' room less the load left) of
cap. `_gpu_fillable` checks that one GPU can: its free slots hold at most the largest
experts left, and one to three free slots must hold replica loads whose sum lands in that
window. The replica loads are those still possible: a state with x slots beyond the fewest
its experts need gives no expert more than x replicas beyond its own fewest, so the piece
tables have one level per x (`_replica_loads`). Each GPU's options for expert d's count
are checked once (`_prepare_spread`), not again in every spread of the GPUs before it.

`failed` maps a packed state (depth, replicas per GPU, then loads per GPU) to the largest
cap it was proven infeasible for; a state fails for every cap at or below that. It keeps
at most MAX_FAILED states (memory), which costs repeated work, never a wrong answer.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, types

from eplbench.solvers.numba_clock import spend
from eplbench.solvers.work import Deadline

FOUND, NONE, TIMEOUT = 1, 0, -1
# the search loop's modes: open a position, try its next option, leave it
ENTER, NEXT, BACK = 0, 1, 2
# the most GPUs a state key holds (loads padded with zeros); replicas per GPU take 6 bits
# (with the depth, under 2**14 experts, in one int64)
KEY_GPUS = 8
MAX_SLOTS_PER_GPU = 63
KEY_TYPE = types.UniTuple(types.int64, KEY_GPUS + 1)
# the most entries of the tables of pair sums of replica loads (one row per depth and level)
MAX_PAIR_TABLE = 2_000_000
# work charged per search node (`work`): a node takes 0.37-0.46 us on the development
# machine (DeepSeek-V3 nodes, medium-cut), a tick 0.1 us
NODE_TICKS = 5
# the most states remembered (about 100 bytes each); beyond, new failures are not kept
MAX_FAILED = 4_000_000
# rows of the direct-mapped memo of shortfalls (a power of two; 3 MiB: bounded,
# and as fast here as a typed dict, which grows with every room seen)
MEMO_SIZE = 1 << 17
MEMO_HASH = 0x5851F42D4C957F2D


def fits_int64(total: int, num_gpus: int) -> bool:
    """Whether a problem whose scaled loads sum to `total` (a Python int) stays exact in the
    search's int64 arithmetic: every value it forms (a GPU load or cap, the room of all
    GPUs under a cap below `total`, a spare room, a pair of replica loads) is at most
    (num_gpus + 2) x total, kept under 2**62."""
    return total * (num_gpus + 2) < 2**62


def new_failed_map():
    """An empty typed dict from state key to the largest cap proven infeasible there."""
    return numba.typed.Dict.empty(key_type=KEY_TYPE, value_type=types.int64)


def new_shortfall_memo():
    """An empty `_gpu_fillable` memo: rows (room, tag, shortfall), tag = (depth x levels +
    level) x 4 + free slots, room -1 when empty."""
    memo = np.zeros((MEMO_SIZE, 3), dtype=np.int64)
    memo[:, 0] = -1
    return memo


@njit(cache=True)
def _tick(work, stop, wall) -> bool:
    """Count one node: NODE_TICKS of work (`numba_clock.spend`)."""
    return spend(work, NODE_TICKS, stop, wall)


@njit(cache=True)
def _key(depth, loads, used):
    """The exact key of one state: depth and replicas per GPU packed, then the loads."""
    packed = depth
    pad = np.zeros(KEY_GPUS, dtype=np.int64)
    for i in range(loads.shape[0]):
        packed = packed * 64 + used[i]
        pad[i] = loads[i]
    return (packed, pad[0], pad[1], pad[2], pad[3], pad[4], pad[5], pad[6], pad[7])


@njit(cache=True)
def _spare(depth, loads, used, rest, cap, slots):
    """The room the open GPUs keep under cap once the experts from `depth` on are placed."""
    spare = -rest[depth]
    for i in range(loads.shape[0]):
        if used[i] < slots:
            spare += cap - loads[i]
    return spare


@njit(cache=True)
def _level(free_slots, depth, min_left, levels):
    """The row of the piece tables for a state with `free_slots` slots left when experts
    depth.. are to be placed: the replicas it can spare beyond their fewest, at most the
    last level (which bounds no count)."""
    return min(free_slots - min_left[depth], levels - 1)


@njit(cache=True)
def _fillable(depth, level, spare, loads, used, rest, cap, slots, pieces, piece_count, pairs,
              pair_count, shortfalls) -> bool:
    """The open GPUs' room covers the load left (spare: `_spare`), and the open GPUs can be
    filled to within that spare room together: the room they keep at the end sums to
    exactly `spare` (every slot is filled), so their least wastes (`_gpu_waste`) must sum
    to at most it."""
    if spare < 0:
        return False
    wasted = 0
    for i in range(loads.shape[0]):
        if used[i] < slots:
            wasted += _gpu_waste(depth, level, loads[i], used[i], spare, rest, cap, slots,
                                 pieces, piece_count, pairs, pair_count, shortfalls)
            if wasted > spare:
                return False
    return True


@njit(cache=True)
def _gpu_fillable(depth, level, gpu_load, gpu_used, spare, rest, cap, slots, pieces,
                  piece_count, pairs, pair_count, shortfalls) -> bool:
    """Whether one open GPU can be filled to within `spare` of cap by the experts from
    `depth` on (`_gpu_waste`). A smaller spare (a later state's) only narrows the window."""
    return _gpu_waste(depth, level, gpu_load, gpu_used, spare, rest, cap, slots, pieces,
                      piece_count, pairs, pair_count, shortfalls) <= spare


@njit(cache=True)
def _gpu_waste(depth, level, gpu_load, gpu_used, spare, rest, cap, slots, pieces,
               piece_count, pairs, pair_count, shortfalls):
    """A lower bound on the room one open GPU keeps under cap once full, filled by the
    experts from `depth` on (more than `spare` when it cannot end within spare): its free
    slots take at most the largest of them, one each, and, with one to three free slots,
    sums of as many replica loads they can have at the state's `level` (`_level`;
    `_shortfall`, remembered in `shortfalls` by depth, level, free slots and room: it does
    not depend on cap)."""
    num_experts = rest.shape[0] - 1
    free, high = slots - gpu_used, cap - gpu_load
    waste = max(0, high - (rest[depth] - rest[min(num_experts, depth + free)]))
    if waste > spare or free > 3:
        return waste
    tag = (depth * pieces.shape[1] + level) * 4 + free
    row = (((high + (tag << 48)) * MEMO_HASH) >> 40) & (MEMO_SIZE - 1)
    if shortfalls[row, 0] != high or shortfalls[row, 1] != tag:
        shortfalls[row, 0], shortfalls[row, 1] = high, tag
        shortfalls[row, 2] = _shortfall(depth, level, free, high, pieces, piece_count,
                                        pairs, pair_count)
    return max(waste, shortfalls[row, 2])


@njit(cache=True)
def _shortfall(depth, level, free, high, pieces, piece_count, pairs, pair_count):
    """How far below `high` the best sum of `free` (1 to 3) replica loads the experts from
    `depth` on can have at `level` stays (pieces[depth, level], and their pair sums in
    pairs, sorted; repeats allowed): 2**62 when none fits, 0 when three need a pair table
    that was not built."""
    values = pieces[depth, level, :piece_count[depth, level]]
    sums = pairs[depth, level, :pair_count[depth, level]]
    if free == 1:
        best = _largest_at_most(values, high)
    elif free == 2:
        best = _largest_at_most(sums, high) if sums.shape[0] else _largest_pair(values, high)
    elif sums.shape[0] > 0:
        best = -1
        for value in values:
            if value > high:
                break
            best = max(best, value + _largest_at_most(sums, high - value))
    else:
        return 0
    return high - best if best >= 0 else 2**62


@njit(cache=True)
def _largest_pair(values, high):
    """The largest sum of two of the sorted values (repeats allowed) at most high, or -1."""
    best, a, b = -1, 0, values.shape[0] - 1
    while a <= b:
        total = values[a] + values[b]
        if total > high:
            b -= 1
        else:
            best = max(best, total)
            a += 1
    return best


@njit(cache=True)
def _largest_at_most(values, high):
    """The largest of the sorted non-negative values at most high, or -2**62 if none."""
    k = np.searchsorted(values, high, side="right")
    return values[k - 1] if k > 0 else -2**62


@njit(cache=True)
def _count_range(d, free, spare, load, min_count, max_count, rest, min_left, cap, slots,
                 loads, used, pieces, piece_count, pairs, pair_count, shortfalls):
    """(low, high): the replica counts expert d may take on row d's state, with `free`
    slots left and `spare` room (`_spare`), within min_count[d]..max_count[d] (low > high
    when the state is infeasible)."""
    num_experts, num_gpus = load.shape[0], loads.shape[0]
    room = -1
    for i in range(num_gpus):
        if used[i] < slots:
            room = max(room, cap - loads[i])
    if room < 0 or (room == 0 and rest[d] > 0):
        return 1, 0
    # the fewest replicas (min_count or more) each expert left needs for one replica to fit
    # the roomiest GPU
    needed_here, needed_total = 1, 0
    for e in range(d, num_experts):
        need = min_count[e] if room == 0 else max(min_count[e], -(-load[e] // room))
        if need > max_count[e]:
            return 1, 0
        needed_total += need
        if e == d:
            needed_here = need
    level = _level(free, d, min_left, pieces.shape[1])
    if needed_total > free or not _fillable(d, level, spare, loads, used, rest, cap, slots,
                                            pieces, piece_count, pairs, pair_count,
                                            shortfalls):
        return 1, 0
    high = min(max_count[d], free - (needed_total - needed_here))
    return (free if d == num_experts - 1 else needed_here), high


@njit(cache=True)
def _search(load, min_count, max_count, rest, min_left, pieces, piece_count, pairs, pair_count,
            cap, slots, per_gpu, gpu_load, gpu_used, gpu_id, placed, failed, shortfalls, work,
            stop, wall):
    """Depth-first search over positions (d, i): i = -1 chooses expert d's count, i >= 0 how
    many of its replicas the i-th GPU (row d's order) takes, i = G checks the spread and
    builds row d + 1. Iterative (numba caches no recursive function). FOUND, NONE or TIMEOUT.

    Per position: left[d, i] replicas still to spread over GPUs i..; room[d, i] the room
    GPUs 0..i-1 keep after taking theirs (GPUs i.. must leave, with it, enough for the
    experts after d); previous[d, i] what GPU i - 1 took; option[d, i] the option in hand."""
    num_experts, num_gpus = load.shape[0], gpu_load.shape[1]
    count = np.zeros(num_experts, dtype=np.int64)
    count_high, replica = np.zeros_like(count), np.zeros_like(count)
    left = np.zeros((num_experts, num_gpus + 1), dtype=np.int64)
    room, previous, option, most = (np.zeros_like(left), np.zeros_like(left),
                                    np.zeros_like(left), np.zeros_like(left))
    take = np.zeros((num_experts, num_gpus), dtype=np.int64)
    takes_after = np.zeros((num_experts, num_gpus + 1), dtype=np.int64)
    fewest_after, room_after = np.zeros_like(takes_after), np.zeros_like(takes_after)
    spare, free_slots = np.zeros_like(count), np.zeros_like(count)
    fits = np.zeros((num_experts, num_gpus, slots + 1), dtype=np.bool_)
    d, i, mode = 0, -1, ENTER
    while True:
        if mode == ENTER:
            if i < 0 and d == num_experts:
                return FOUND
            if _tick(work, stop, wall):
                return TIMEOUT
            mode = NEXT
            if i < 0:
                # the cheap checks first; a state they cut is not remembered (most states
                # are cut here, and a lookup or an entry in `failed` costs more)
                free_slots[d] = num_gpus * slots - np.sum(gpu_used[d])
                spare[d] = _spare(d, gpu_load[d], gpu_used[d], rest, cap, slots)
                low, count_high[d] = _count_range(d, free_slots[d], spare[d], load, min_count,
                                                  max_count, rest, min_left, cap, slots,
                                                  gpu_load[d], gpu_used[d], pieces,
                                                  piece_count, pairs, pair_count,
                                                  shortfalls)
                if (low > count_high[d]
                        or failed.get(_key(d, gpu_load[d], gpu_used[d]), -1) >= cap):
                    mode = BACK
                    continue
                count[d] = low - 1
            elif (left[d, i] > takes_after[d, i] or left[d, i] < fewest_after[d, i]
                  or room[d, i] + room_after[d, i] - left[d, i] * replica[d] < rest[d + 1]):
                mode = BACK
            elif i == num_gpus:
                _next_state(d, replica[d], gpu_load, gpu_used, gpu_id, placed)
                d, i, mode = d + 1, -1, ENTER
            else:
                most[d, i] = min(left[d, i], take[d, i])
                if (i > 0 and gpu_load[d, i - 1] == gpu_load[d, i]
                        and gpu_used[d, i - 1] == gpu_used[d, i]):
                    most[d, i] = min(most[d, i], previous[d, i])
                option[d, i] = -1
        elif mode == NEXT:
            if i < 0:
                count[d] += 1
                if count[d] > count_high[d]:
                    if len(failed) < MAX_FAILED:
                        failed[_key(d, gpu_load[d], gpu_used[d])] = cap
                    mode = BACK
                    continue
                replica[d] = load[d] // count[d]
                level = _level(free_slots[d] - count[d], d + 1, min_left, pieces.shape[1])
                if not _prepare_spread(d, level, replica[d], spare[d], rest, cap, slots,
                                       per_gpu, gpu_load[d], gpu_used[d], pieces, piece_count,
                                       pairs,
                                       pair_count, shortfalls, fits, take, takes_after,
                                       fewest_after, room_after):
                    continue
                left[d, 0], previous[d, 0], room[d, 0] = count[d], count[d], 0
            else:
                option[d, i] += 1
                if option[d, i] > most[d, i]:
                    mode = BACK
                    continue
                # one replica first (spreading an expert is the usual good move), then 0, 2..
                number = option[d, i]
                if number < 2 and most[d, i] >= 1:
                    number = 1 - number
                if not fits[d, i, number]:
                    continue
                kept = 0
                if gpu_used[d, i] + number < slots:
                    kept = cap - gpu_load[d, i] - number * replica[d]
                placed[d, gpu_id[d, i]] = number
                left[d, i + 1] = left[d, i] - number
                previous[d, i + 1] = number
                room[d, i + 1] = room[d, i] + kept
            i, mode = i + 1, ENTER
        else:  # BACK: position (d, i) has no option left; resume its parent
            if i >= 0:
                i, mode = i - 1, NEXT
            elif d == 0:
                return NONE
            else:
                d, i, mode = d - 1, num_gpus - 1, NEXT


@njit(cache=True)
def _prepare_spread(d, level, replica, spare, rest, cap, slots, per_gpu, loads, used, pieces,
                    piece_count, pairs, pair_count, shortfalls, fits, take, takes_after,
                    fewest_after, room_after):
    """Row d's spread tables for replicas of load `replica`, at most `per_gpu` of them on
    one GPU, per GPU i in row d's order:
    fits[d, i, k] whether taking k replicas leaves it full or still fillable
    (`_gpu_fillable` with row d's spare and the next state's level: cut once here, not in
    every spread of the GPUs before it); take[d, i] the most it can take; and suffix sums
    over GPUs i.. of the most and the fewest they can take and of the room they have (open
    GPUs). False as soon as one GPU fits no number of them (the tables are then left
    unfinished). A GPU in the same state as the next one copies its row."""
    num_gpus = loads.shape[0]
    takes_after[d, num_gpus] = fewest_after[d, num_gpus] = room_after[d, num_gpus] = 0
    for i in range(num_gpus - 1, -1, -1):
        most = min(slots - used[i], per_gpu)
        if replica > 0:
            most = min(most, (cap - loads[i]) // replica)
        same = i + 1 < num_gpus and loads[i + 1] == loads[i] and used[i + 1] == used[i]
        take[d, i], fewest = -1, slots + 1
        for k in range(most + 1):
            if same:
                fits[d, i, k] = fits[d, i + 1, k]
            else:
                fits[d, i, k] = used[i] + k == slots or _gpu_fillable(
                    d + 1, level, loads[i] + k * replica, used[i] + k, spare, rest, cap, slots,
                    pieces, piece_count, pairs, pair_count, shortfalls)
            if fits[d, i, k]:
                take[d, i], fewest = k, min(fewest, k)
        if take[d, i] < 0:
            return False
        takes_after[d, i] = takes_after[d, i + 1] + take[d, i]
        fewest_after[d, i] = fewest_after[d, i + 1] + fewest
        room_after[d, i] = room_after[d, i + 1] + (cap - loads[i] if used[i] < slots else 0)
    return True


@njit(cache=True)
def _next_state(d, replica, gpu_load, gpu_used, gpu_id, placed):
    """Row d + 1: row d's GPUs with expert d's replicas added, sorted by (load, used)."""
    num_gpus = gpu_load.shape[1]
    for i in range(num_gpus):
        gpu = gpu_id[d, i]
        number = placed[d, gpu]
        new_load, new_used = gpu_load[d, i] + number * replica, gpu_used[d, i] + number
        j = i
        while j > 0 and (gpu_load[d + 1, j - 1] > new_load or (
                gpu_load[d + 1, j - 1] == new_load and gpu_used[d + 1, j - 1] > new_used)):
            gpu_load[d + 1, j] = gpu_load[d + 1, j - 1]
            gpu_used[d + 1, j] = gpu_used[d + 1, j - 1]
            gpu_id[d + 1, j] = gpu_id[d + 1, j - 1]
            j -= 1
        gpu_load[d + 1, j] = new_load
        gpu_used[d + 1, j] = new_used
        gpu_id[d + 1, j] = gpu


class SearchTables(NamedTuple):
    """What every search on one problem shares, whatever the cap (built once by `prepare`).

    load: [E] int64 scaled loads, non-increasing; min_count, max_count: [E] int64 the
    replica counts each expert may have; rest: [E + 1] load of experts d.. on; min_left:
    [E + 1] the fewest replicas experts d.. on can have (sum of min_count);
    pieces / piece_count and pairs / pair_count: see `_replica_loads` and `_pair_sums`;
    per_gpu: the most replicas of one expert a GPU may hold (1: distinct experts per GPU);
    shortfalls: the memo of `_gpu_fillable` (`new_shortfall_memo`; it holds for every cap,
    so the searches on one problem share it)."""

    load: np.ndarray
    min_count: np.ndarray
    max_count: np.ndarray
    rest: np.ndarray
    min_left: np.ndarray
    pieces: np.ndarray
    piece_count: np.ndarray
    pairs: np.ndarray
    pair_count: np.ndarray
    shortfalls: np.ndarray
    num_gpus: int
    slots: int
    per_gpu: int


def prepare(load: np.ndarray, num_gpus: int, slots: int, min_count: np.ndarray | None = None,
            max_count: np.ndarray | None = None, distinct: bool = False) -> SearchTables:
    """The tables for `search` on one problem. load: [E] int64 scaled, non-increasing;
    min_count, max_count: [E] the replica counts each expert may have (default 1 and
    G*S - E + 1; a fixed count r makes expert e r replicas of load[e] // r each);
    distinct: no GPU holds two replicas of one expert (so none has more than G).
    The piece tables have one level per number of replicas a state can spare
    (`_replica_loads`), unless the pair tables would then pass MAX_PAIR_TABLE entries."""
    num_experts = load.shape[0]
    widest = num_gpus * slots - num_experts + 1
    if distinct:
        widest = min(widest, num_gpus)
    min_count = np.ones(num_experts, np.int64) if min_count is None else min_count
    max_count = np.full(num_experts, widest) if max_count is None else max_count
    min_count = np.asarray(min_count, dtype=np.int64)
    max_count = np.minimum(np.asarray(max_count, dtype=np.int64), widest)
    rest, min_left = (np.zeros(num_experts + 1, dtype=np.int64) for _ in range(2))
    rest[:-1] = np.cumsum(load[::-1])[::-1]
    min_left[:-1] = np.cumsum(min_count[::-1])[::-1]
    pieces, piece_count = _replica_loads(load, min_count, max_count, 1)
    levels = int(np.max(max_count - min_count, initial=0)) + 1
    if levels > 1 and int(np.sum(piece_count ** 2)) * levels <= MAX_PAIR_TABLE:
        pieces, piece_count = _replica_loads(load, min_count, max_count, levels)
    pairs, pair_count = _pair_sums(pieces, piece_count)
    return SearchTables(load, min_count, max_count, rest, min_left, pieces, piece_count, pairs,
                        pair_count, new_shortfall_memo(), num_gpus, slots,
                        1 if distinct else slots)


def table_entries(tables: SearchTables) -> int:
    """The size of a problem's tables (what building them costs, `work.charge_tables`)."""
    return int(tables.piece_count.sum() + tables.pair_count.sum())


def search(tables: SearchTables, cap: int, failed, deadline: Deadline):
    """(status, placed [E, G] replicas of the d-th heaviest expert on each GPU, nodes).

    failed: `new_failed_map()`, kept between calls on the same problem. Every node is a
    tick on the deadline's meter; TIMEOUT once the deadline passes."""
    num_experts, num_gpus = tables.load.shape[0], tables.num_gpus
    gpu_load = np.zeros((num_experts + 1, num_gpus), dtype=np.int64)
    gpu_used = np.zeros_like(gpu_load)
    gpu_id = np.zeros_like(gpu_load)
    gpu_id[0] = np.arange(num_gpus)
    placed = np.zeros((num_experts, num_gpus), dtype=np.int64)
    meter = deadline.meter
    before = meter.used
    status = _search(tables.load, tables.min_count, tables.max_count, tables.rest, tables.min_left,
                     tables.pieces, tables.piece_count, tables.pairs, tables.pair_count, cap,
                     tables.slots, tables.per_gpu, gpu_load, gpu_used, gpu_id, placed, failed,
                     tables.shortfalls, meter.work, deadline.stop, meter.wall)
    return status, placed, meter.used - before


def _replica_loads(load: np.ndarray, min_count: np.ndarray, max_count: np.ndarray,
                   levels: int):
    """(pieces [E + 1, levels, K], piece_count [E + 1, levels]): row (d, x) holds, sorted
    and without repeats, every replica load load[e] // c of experts e >= d with
    min_count[e] <= c <= max_count[e] and, below the last level, c <= min_count[e] + x
    (x replicas beyond the fewest are all a state with x spare slots can give one expert)."""
    num_experts = load.shape[0]
    tops = [np.minimum(max_count, min_count + x) for x in range(levels - 1)] + [max_count]
    rows = [[np.zeros(0, dtype=np.int64)] * levels]
    for e in range(num_experts - 1, -1, -1):
        rows.insert(0, [np.union1d(below, load[e] // np.arange(min_count[e], top[e] + 1))
                        for below, top in zip(rows[0], tops)])
    width = max(1, max(len(values) for row in rows for values in row))
    pieces = np.zeros((num_experts + 1, levels, width), dtype=np.int64)
    piece_count = np.zeros((num_experts + 1, levels), dtype=np.int64)
    for d, row in enumerate(rows):
        for x, values in enumerate(row):
            pieces[d, x, :len(values)] = values
            piece_count[d, x] = len(values)
    return pieces, piece_count


def _pair_sums(pieces: np.ndarray, piece_count: np.ndarray):
    """(pairs [E + 1, levels, K2], pair_count [E + 1, levels]): row (d, x), sorted and
    without repeats, every sum of two of row (d, x)'s replica loads (repeats allowed); rows
    are left empty (count 0, no check) where the table would pass MAX_PAIR_TABLE entries."""
    rows, levels = piece_count.shape
    if int(np.sum(piece_count.astype(np.int64) ** 2)) > MAX_PAIR_TABLE:
        return (np.zeros((rows, levels, 1), dtype=np.int64),
                np.zeros((rows, levels), dtype=np.int64))
    widest = int(piece_count[0].max()) * (int(piece_count[0].max()) + 1) // 2
    return _pair_sum_rows(pieces, piece_count, max(1, widest))


@njit(cache=True)
def _pair_sum_rows(pieces, piece_count, width):
    """The rows of `_pair_sums`, last first at each level: row (d, x) is row (d + 1, x)
    merged with the sums that take one of the values row (d, x) adds (its values include
    row (d + 1, x)'s)."""
    rows, levels = piece_count.shape
    pairs = np.zeros((rows, levels, width), dtype=np.int64)
    pair_count = np.zeros((rows, levels), dtype=np.int64)
    for x in range(levels):
        for d in range(rows - 2, -1, -1):
            values = pieces[d, x, :piece_count[d, x]]
            below = pieces[d + 1, x, :piece_count[d + 1, x]]
            added = values
            if below.shape[0] > 0:
                inside = np.minimum(np.searchsorted(below, values), below.shape[0] - 1)
                added = values[below[inside] != values]
            sums = np.unique((added.reshape(-1, 1) + values.reshape(1, -1)).ravel())
            pair_count[d, x] = _merge_unique(pairs[d + 1, x, :pair_count[d + 1, x]], sums,
                                             pairs[d, x])
    return pairs, pair_count


@njit(cache=True)
def _merge_unique(first, second, out) -> int:
    """Merge two sorted arrays into out, each value once; the number of values written."""
    i = j = n = 0
    while i < first.shape[0] or j < second.shape[0]:
        if j == second.shape[0] or (i < first.shape[0] and first[i] < second[j]):
            value, i = first[i], i + 1
        else:
            value, j = second[j], j + 1
        if n == 0 or out[n - 1] != value:
            out[n] = value
            n += 1
    return n


def warm_up() -> None:
    """Compile (or load from numba's cache) the search with a trivial call, so that the
    one-off cost per process is not counted in the first layer's solve time."""
    search(prepare(np.array([2, 1], dtype=np.int64), 2, 1), 2, new_failed_map(),
           Deadline.budget(60))
