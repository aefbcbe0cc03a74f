"""What a solver returns for one layer (spec §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN = "OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN"


@dataclass
class SolveResult:
    """One layer's solve.

    Attributes:
        status: OPTIMAL (ub == lb, exactly), FEASIBLE, INFEASIBLE or UNKNOWN.
        ub: exact max_load of `phy2log` (None without a placement), tokens.
        lb: proven lower bound on the optimum's max_load, tokens.
        phy2log: [P] int64 the best placement found, checked by the one checker.
        wall_time: seconds; deterministic_time: the backend's deterministic seconds, if any.
        solver, params, version: provenance.
        bound_source: which argument gave `lb` (e.g. "model", "mean", "replica").
    """

    status: str
    ub: Fraction | None
    lb: Fraction
    phy2log: np.ndarray | None
    wall_time: float
    deterministic_time: float | None
    solver: str
    params: dict = field(default_factory=dict)
    version: str = ""
    bound_source: str = ""

    @property
    def gap(self) -> float:
        """(ub - lb) / ub; 0.0 when certified, nan without a placement."""
        if self.ub is None:
            return float("nan")
        return 0.0 if self.ub == 0 else float((self.ub - self.lb) / self.ub)
