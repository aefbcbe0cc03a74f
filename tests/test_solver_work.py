"""Work budgets (`solvers.work`): a solve's answer depends on its time limit, never on how
fast the machine runs it; the wall clock is a safety net only."""

from __future__ import annotations

import time

import numpy as np
import pytest

import eplbench as eb
from eplbench.solvers import solve
from eplbench.solvers.work import WALL_FACTOR, WALL_SLACK, Deadline

# layers the budget stops before they are certified: the completion search (small, 4
# GPUs), local search and CP-SAT (medium-cut, 8 GPUs)
CASES = [("small", 15, 0.05), ("medium-cut", 0, 1.0)]


def _solve(set_name: str, index: int, limit: float):
    instance = eb.load_instances(set_name)[index]
    return solve(instance.weight[:1], instance.topology, "global", "enum", limit)[0]


def _slow_clock(monkeypatch, factor: float) -> None:
    """time.perf_counter running `factor` times faster than it should: a machine that
    many times slower or busier, as the solver's clock sees it."""
    real = time.perf_counter
    origin = real()
    monkeypatch.setattr(time, "perf_counter", lambda: origin + factor * (real() - origin))


@pytest.mark.parametrize("set_name, index, limit", CASES)
def test_a_busy_machine_gets_the_same_answer(monkeypatch, set_name, index, limit):
    """The same solve on a clock running up to 2.5 times fast (a busy machine) gives the
    same placement, bounds and params, bit for bit; the budget is spent, not exceeded.
    The factor keeps the busy run within half of the wall-clock net, judged by the quiet
    run's own time, so that a machine already slow does not fire the net (the next test
    covers the net)."""
    start = time.perf_counter()
    quiet = _solve(set_name, index, limit)
    net = WALL_FACTOR * limit + WALL_SLACK
    _slow_clock(monkeypatch, min(2.5, net / (2 * (time.perf_counter() - start))))
    busy = _solve(set_name, index, limit)
    assert quiet.status == busy.status == "FEASIBLE"
    assert np.array_equal(quiet.phy2log, busy.phy2log)
    assert (quiet.ub, quiet.lb, quiet.params) == (busy.ub, busy.lb, busy.params)
    assert "stopped" not in busy.params
    assert 0.85 * limit <= busy.params["work"] <= 1.05 * limit


def test_the_wall_clock_net_stops_a_solve_and_says_so(monkeypatch):
    """Past WALL_FACTOR x the limit on the clock, a solve stops, keeps its claims honest
    (a valid placement, lb <= ub) and marks its params "stopped"."""
    _slow_clock(monkeypatch, 50 * WALL_FACTOR)
    instance = eb.load_instances("medium-cut")[0]
    result = solve(instance.weight[:1], instance.topology, "global", "enum", 0.5)[0]
    assert result.params.get("stopped") == "wall clock"
    assert result.params["work"] < 0.5
    check = eb.check(instance.weight[:1], result.phy2log[None, :], instance.topology)
    assert check.max_load[0] == result.ub >= result.lb


def test_a_deadline_shares_the_work_left():
    """share(f) lies f of the way from the meter's count to the deadline; within(s) is
    the sooner of the two; afford charges only what fits."""
    deadline = Deadline.budget(1.0)
    deadline.meter.charge(4_000_000)
    half = deadline.share(0.5)
    assert half.stop == 7_000_000 and deadline.stop == 10_000_000
    assert deadline.within(0.1).stop == 5_000_000
    assert deadline.within(5.0).stop == deadline.stop
    assert not deadline.afford(6_000_001) and deadline.meter.used == 4_000_000
    assert deadline.afford(6_000_000) and deadline.passed() and deadline.left() == 0.0
