"""The README's Python API snippet runs as written."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_the_python_api_snippet_runs_as_written():
    text = README.read_text()
    section = text[text.index("## Python API"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    results, first = namespace["results"], namespace["first"]
    assert len(results) == first.num_layers
    assert all(result.lb <= result.ub for result in results)
    assert namespace["ev"].respects_hierarchy and namespace["ev"].breach("hierarchical") is None
