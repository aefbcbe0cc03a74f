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
