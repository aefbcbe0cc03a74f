import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def readme_example():
    """DeepSeek README example with the reference algorithm's outputs (copied from shared/)."""
    return json.loads((FIXTURES / "deepseek_readme_example.json").read_text())
