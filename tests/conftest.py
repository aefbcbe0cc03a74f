import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def readme_example():
    """DeepSeek README example with the reference algorithm's outputs (the reference algorithm's own output)."""
    return json.loads((FIXTURES / "deepseek_readme_example.json").read_text())


# In a mutation run (mutmut sets MUTANT_UNDER_TEST), the tests that reach a mutant are run
# until the first failure in the order mutmut lists them, which follows no rule; this order
# puts the quick exact checks of each module first, so that a killed mutant dies in seconds
# rather than after the solver fuzz or the sandbox's process tests.
MUTATION_ORDER = ["test_checker.py", "test_gaps.py", "test_gate.py", "test_reference.py",
                  "test_migration.py", "test_solvers.py", "test_solver_work.py",
                  "test_solver_fuzz.py", "test_sandbox.py"]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("MUTANT_UNDER_TEST"):
        rank = {name: index for index, name in enumerate(MUTATION_ORDER)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def small_evaluation(monkeypatch):
    """`evaluate` on less data, the same steps: stage 2 on the `small` set and one fresh
    instance, a replay of 2 layers over 3 windows (the full evaluation takes 40 s)."""
    from eplbench import evolve

    monkeypatch.setattr(evolve, "STAGE2_SETS", ["small"])
    monkeypatch.setattr(evolve, "FRESH_COUNT", 1)
    monkeypatch.setattr(evolve, "REPLAY_SHAPE",
                        {**evolve.REPLAY_SHAPE, "num_layers": 2, "num_windows": 3})


@pytest.fixture
def child_starts(monkeypatch) -> list:
    """A list that gets an entry each time a sandbox child has started (loaded its heuristic)."""
    from eplbench import sandbox

    started, wait_ready = [], sandbox._Child.wait_ready

    def counted(child, deadline):
        started.append(child)
        return wait_ready(child, deadline)

    monkeypatch.setattr(sandbox._Child, "wait_ready", counted)
    return started
