"""The exceptions eplbench raises on purpose.

`BadInput` is the user's mistake (a malformed file, a topology that breaks a precondition,
a heuristic that cannot be loaded): the CLI prints its message on one line and exits 2.
`InvalidPlacement` is a heuristic's or solver's broken output: it is scored as invalid
with its `reason`, never as a number.
"""


class EplbenchError(Exception):
    """Base class of every error eplbench raises on purpose."""


class BadInput(EplbenchError, ValueError):
    """Input that eplbench refuses; the message names the file or value and the problem."""


class InvalidPlacement(EplbenchError):
    """A placement that breaks the contract of spec §4.

    Attributes:
        reason: a short stable code (`shape`, `dtype`, `range`, ...) for tables and tests.
        detail: one human-readable sentence.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
