"""`python -m eplbench` is the `eplbench` command."""

from eplbench.cli import main

main()
