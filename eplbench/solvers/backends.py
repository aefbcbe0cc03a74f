"""The two backends that solve `PlacementModel`: OR-Tools CP-SAT and SCIP via pywraplp.

Both offer the same small interface (int_var, bool_var, add, minimize, hint, solve), so the
formulation is written once. Objective and bound come back as Python ints (the objective
variable is integral).

Each backend names `max_model_load`, the largest value (T's bound, a replica load) its
model is scaled to (`model.Scaling`), and `exact_bound`, whether its bound is a proof.
CP-SAT works in exact integer arithmetic: its bound is. SCIP works in floating point and
its answers are not: on models scaled to 2^40 units it proved bounds up to 11% above the
optimum (CP-SAT's on the same model, and the brute force's) in 39 of 126 random tiny
layers; at 2^30, in 11 of 320; at 2^20 (every value under about a million units, where
its tolerances are a fraction of a unit) still in 2 of 820, both claiming their first
solution optimal, 6% and 2% high. On the second (141 variables) SCIP 10.0.0 was right
with the linear constraints' clique extraction, or their upgrade to variable bounds,
turned off: not a tolerance error, and no size makes its bound safe by construction. So
SCIP's model is scaled to at most 2^20 units (its tolerances harmless, its search faster),
and its bound is only ever used once CP-SAT has checked it on the same model
(`joint.verified_bound`); unchecked, it is a hint in the result's params.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ortools
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from eplbench.solvers.result import FEASIBLE, INFEASIBLE, OPTIMAL, UNKNOWN
from eplbench.solvers.work import Deadline, ticks


@dataclass
class BackendResult:
    """status; objective and bound in model units (ints or None); values of variables."""

    status: str
    objective: int | None
    bound: int | None
    values: dict
    deterministic_time: float | None


# SCIP's feasibility tolerance (relative; its default is 1e-6) and the largest value of its
# model: 1e-7 x 2^20 is about 0.1 of a unit
SCIP_FEASTOL = 1e-7
SCIP_MAX_LOAD = 2**20
# work rates of the backends against the meter's seconds (`work`): CP-SAT's deterministic
# time per second (0.28-0.5 per wall second on medium-cut's models on the development
# machine, one worker), SCIP's nodes per second; the least a backend call gets
CPSAT_DTIME_PER_SECOND = 0.25
SCIP_NODES_PER_SECOND = 200
MIN_BACKEND_SECONDS = 0.01


class CpSatBackend:
    name = "cpsat"
    version = f"ortools {ortools.__version__}"
    max_model_load = 2**40  # keeps CP-SAT fast
    exact_bound = True

    def __init__(self):
        self.model = cp_model.CpModel()
        self._vars = []

    def int_var(self, low: int, high: int, name: str):
        var = self.model.new_int_var(low, high, name)
        self._vars.append(var)
        return var

    def bool_var(self, name: str):
        var = self.model.new_bool_var(name)
        self._vars.append(var)
        return var

    def add(self, constraint) -> None:
        self.model.add(constraint)

    def minimize(self, expression) -> None:
        self.model.minimize(expression)

    def hint(self, var, value: int) -> None:
        self.model.add_hint(var, value)

    def solve(self, deadline: Deadline, workers: int, seed: int) -> BackendResult:
        """Search until the deadline's work is spent: CP-SAT's deterministic time (at
        CPSAT_DTIME_PER_SECOND), with the meter's wall-clock net as its time limit."""
        solver = cp_model.CpSolver()
        solver.parameters.max_deterministic_time = max(
            MIN_BACKEND_SECONDS, deadline.left()) * CPSAT_DTIME_PER_SECOND
        solver.parameters.max_time_in_seconds = deadline.meter.wall_left()
        solver.parameters.num_workers = workers
        solver.parameters.random_seed = seed
        code = solver.solve(self.model)
        status = {cp_model.OPTIMAL: OPTIMAL, cp_model.FEASIBLE: FEASIBLE,
                  cp_model.INFEASIBLE: INFEASIBLE}.get(code, UNKNOWN)
        found = status in (OPTIMAL, FEASIBLE)
        values = {var.index: solver.value(var) for var in self._vars} if found else {}
        bound = math.ceil(solver.best_objective_bound - 1e-9) if found else None
        deadline.meter.charge(ticks(solver.deterministic_time / CPSAT_DTIME_PER_SECOND))
        deadline.meter.check_wall()
        return BackendResult(status, round(solver.objective_value) if found else None, bound,
                             values, solver.deterministic_time)

    @staticmethod
    def key(var):
        return var.index


class ScipBackend:
    name = "mip"
    version = f"ortools {ortools.__version__} SCIP"
    max_model_load = SCIP_MAX_LOAD
    exact_bound = False  # floating point: its bound is checked by CP-SAT before use

    def __init__(self):
        self.solver = pywraplp.Solver.CreateSolver("SCIP")
        self._vars = []
        self._hints = ([], [])

    def int_var(self, low: int, high: int, name: str):
        var = self.solver.IntVar(low, high, name)
        self._vars.append(var)
        return var

    def bool_var(self, name: str):
        return self.int_var(0, 1, name)

    def add(self, constraint) -> None:
        self.solver.Add(constraint)

    def minimize(self, expression) -> None:
        self.solver.Minimize(expression)

    def hint(self, var, value: int) -> None:
        self._hints[0].append(var)
        self._hints[1].append(float(value))

    def solve(self, deadline: Deadline, workers: int, seed: int) -> BackendResult:
        """Search until the deadline's work is spent: SCIP's branch-and-bound nodes (at
        SCIP_NODES_PER_SECOND; SCIP has no deterministic time). A node's cost varies far
        more than CP-SAT's (one root node took 80 s on a 15-slot tiny layer), so SCIP also
        stops once its wall time reaches the work left; that stop is not reproducible and
        is flagged as the wall-clock net's (`work.Meter.wall_stopped`)."""
        seconds = max(MIN_BACKEND_SECONDS, deadline.left())
        nodes = max(1, int(seconds * SCIP_NODES_PER_SECOND))
        wall_limit = min(seconds, deadline.meter.wall_left())
        self.solver.SetTimeLimit(max(1, int(wall_limit * 1000)))
        self.solver.SetNumThreads(workers)
        self.solver.SetSolverSpecificParametersAsString(
            f"randomization/randomseedshift = {seed}\nnumerics/feastol = {SCIP_FEASTOL}\n"
            f"limits/totalnodes = {nodes}\n")
        if self._hints[0]:
            self.solver.SetHint(*self._hints)
        exact_gap = pywraplp.MPSolverParameters()  # pywraplp's default stops at a 1e-4 gap
        exact_gap.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
        code = self.solver.Solve(exact_gap)
        status = {pywraplp.Solver.OPTIMAL: OPTIMAL, pywraplp.Solver.FEASIBLE: FEASIBLE,
                  pywraplp.Solver.INFEASIBLE: INFEASIBLE}.get(code, UNKNOWN)
        found = status in (OPTIMAL, FEASIBLE)
        values = {var.index(): round(var.solution_value()) for var in self._vars} if found else {}
        bound = None
        if found:
            raw = self.solver.Objective().BestBound()
            bound = math.ceil(raw - SCIP_FEASTOL * max(1.0, abs(raw)))
        objective = round(self.solver.Objective().Value()) if found else None
        deadline.meter.charge(ticks(max(1, self.solver.nodes()) / SCIP_NODES_PER_SECOND))
        if self.solver.wall_time() >= 1000 * wall_limit:
            deadline.meter.stop_by_wall()
        deadline.meter.check_wall()
        return BackendResult(status, objective, bound, values, None)

    @staticmethod
    def key(var):
        return var.index()
