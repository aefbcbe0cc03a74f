"""The two backends that solve `PlacementModel`: OR-Tools CP-SAT and SCIP via pywraplp.

Both offer the same small interface (int_var, bool_var, add, minimize, hint, solve), so the
formulation is written once. Objective and bound come back as Python ints (the objective
variable is integral); SCIP's float bound is rounded up only past a tolerance of 1e-6 + 1e-9 * |bound|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ortools
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from eplbench.solvers.result import FEASIBLE, INFEASIBLE, OPTIMAL, UNKNOWN


@dataclass
class BackendResult:
    """status; objective and bound in model units (ints or None); values of variables."""

    status: str
    objective: int | None
    bound: int | None
    values: dict
    deterministic_time: float | None


class CpSatBackend:
    name = "cpsat"
    version = f"ortools {ortools.__version__}"

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

    def solve(self, time_limit: float, workers: int, seed: int) -> BackendResult:
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = time_limit
        solver.parameters.num_workers = workers
        solver.parameters.random_seed = seed
        code = solver.solve(self.model)
        status = {cp_model.OPTIMAL: OPTIMAL, cp_model.FEASIBLE: FEASIBLE,
                  cp_model.INFEASIBLE: INFEASIBLE}.get(code, UNKNOWN)
        found = status in (OPTIMAL, FEASIBLE)
        values = {var.index: solver.value(var) for var in self._vars} if found else {}
        bound = None if status == UNKNOWN else math.ceil(solver.best_objective_bound - 1e-9)
        return BackendResult(status, round(solver.objective_value) if found else None, bound,
                             values, solver.deterministic_time)

    @staticmethod
    def key(var):
        return var.index


class ScipBackend:
    name = "mip"
    version = f"ortools {ortools.__version__} SCIP"

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

    def solve(self, time_limit: float, workers: int, seed: int) -> BackendResult:
        self.solver.SetTimeLimit(max(1, int(time_limit * 1000)))
        self.solver.SetNumThreads(workers)
        self.solver.SetSolverSpecificParametersAsString(f"randomization/randomseedshift = {seed}\n")
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
            bound = math.ceil(raw - 1e-6 - 1e-9 * abs(raw))
        objective = round(self.solver.Objective().Value()) if found else None
        return BackendResult(status, objective, bound, values, None)

    @staticmethod
    def key(var):
        return var.index()
