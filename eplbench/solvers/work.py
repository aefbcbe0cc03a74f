"""Work budgets: a solve's time limit counted in work done, not read off the clock.

A layer's `time_limit` of t seconds is a budget of t x TICKS_PER_SECOND ticks of work; a
tick is about 0.1 us on the development machine, and each part of the search (completion
nodes, re-splits, re-packs, scoring, tables, joint models, CP-SAT's deterministic time,
SCIP's nodes) is charged at a rate measured there (`docs/solvers.md`). Every stop of the search is a
tick count, so the same call gives the same answer, bit for bit, on an idle or a busy
machine, fast or slow. The wall clock is only a safety net: past WALL_FACTOR x t +
WALL_SLACK seconds a solve stops anyway, and says so (`Meter.wall_stopped`), since its
answer may then differ from run to run.

`Deadline` is a point on one meter's tick count; components take a Deadline where they
took a time.perf_counter() value, and compiled loops take (meter.work, deadline.stop,
meter.wall).
"""

from __future__ import annotations

import time

import numpy as np

TICKS_PER_SECOND = 10_000_000
# the wall-clock net: a budget normally runs in about its time limit on an idle core here;
# four times that (plus start-up slack) leaves room for a machine two to three times
# slower or busier before answers stop being reproducible
WALL_FACTOR = 4.0
WALL_SLACK = 1.0


# Python-side work, charged by size: scoring a placement of P slots exactly (the checker's
# lcm arithmetic; re-splits score theirs too), and building one problem's search tables
SCORE_BASE_TICKS = 1_000
SCORE_SLOT_TICKS = 50
TABLE_BASE_TICKS = 5_000
TABLE_ENTRY_TICKS = 1
# building a joint model (`model.PlacementModel`) and CP-SAT's presolve of it, per
# variable: 15-30 us to build and about as much to presolve on the development machine
MODEL_VARIABLE_TICKS = 600


def ticks(seconds: float) -> int:
    """Ticks in `seconds` of work (0 for 0 or less)."""
    return max(0, int(seconds * TICKS_PER_SECOND))


class Meter:
    """The work one solve has done. work: int64 [2], shared with compiled loops: [ticks
    so far, 1 once the wall-clock net has fired]; wall: the net's time.perf_counter()."""

    def __init__(self, seconds: float):
        self.work = np.zeros(2, dtype=np.int64)
        self.wall = time.perf_counter() + WALL_FACTOR * seconds + WALL_SLACK

    @property
    def used(self) -> int:
        return int(self.work[0])

    @property
    def seconds(self) -> float:
        """Work done so far, in seconds of budget."""
        return self.used / TICKS_PER_SECOND

    @property
    def wall_stopped(self) -> bool:
        return bool(self.work[1])

    def charge(self, amount: int) -> None:
        """Count `amount` ticks of work done outside compiled loops."""
        self.work[0] += int(amount)

    def wall_left(self) -> float:
        """Seconds before the wall-clock net (at least a millisecond: a backend's limit)."""
        return max(0.001, self.wall - time.perf_counter())

    def stop_by_wall(self) -> None:
        """Record that the wall clock stopped the solve (its answer may not repeat)."""
        self.work[1] = 1

    def check_wall(self) -> bool:
        """True (and recorded) once the wall-clock net has passed."""
        if not self.work[1] and time.perf_counter() >= self.wall:
            self.stop_by_wall()
        return self.wall_stopped


class Deadline:
    """A point on `meter`'s tick count (`stop`) past which a search stops."""

    def __init__(self, meter: Meter, stop: int):
        self.meter = meter
        self.stop = stop

    @classmethod
    def budget(cls, seconds: float) -> Deadline:
        """A fresh meter and its deadline `seconds` of work away."""
        return cls(Meter(seconds), ticks(seconds))

    def passed(self) -> bool:
        return self.meter.used >= self.stop or self.meter.check_wall()

    def afford(self, amount: int) -> bool:
        """Charge `amount` ticks if they fit before the deadline; False (nothing charged)
        if not."""
        if self.meter.used + amount > self.stop or self.meter.check_wall():
            return False
        self.meter.charge(amount)
        return True

    def left(self) -> float:
        """Seconds of work left before the deadline (0 once passed)."""
        return 0.0 if self.passed() else (self.stop - self.meter.used) / TICKS_PER_SECOND

    def within(self, seconds: float) -> Deadline:
        """The sooner of this deadline and `seconds` of work from now."""
        return Deadline(self.meter, min(self.stop, self.meter.used + ticks(seconds)))

    def share(self, fraction: float) -> Deadline:
        """The deadline after `fraction` of the work left before this one."""
        return Deadline(self.meter, self.meter.used + int(fraction * max(
            0, self.stop - self.meter.used)))


def charge_placement_scoring(meter: Meter, num_slots: int) -> None:
    """Charge the scoring of one placement of `num_slots` slots."""
    meter.charge(SCORE_BASE_TICKS + SCORE_SLOT_TICKS * num_slots)


def charge_tables(meter: Meter, entries: int) -> None:
    """Charge the building of search tables of `entries` entries in all."""
    meter.charge(TABLE_BASE_TICKS + TABLE_ENTRY_TICKS * entries)


def afford_model(deadline: Deadline, variables: int) -> bool:
    """Charge building (and presolving) a joint model of `variables` variables, if that
    fits before `deadline` (`Deadline.afford`)."""
    return deadline.afford(MODEL_VARIABLE_TICKS * variables)
