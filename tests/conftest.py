import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def readme_example():
    """DeepSeek README example with the reference algorithm's outputs (the reference algorithm's own output)."""
    return json.loads((FIXTURES / "deepseek_readme_example.json").read_text())
