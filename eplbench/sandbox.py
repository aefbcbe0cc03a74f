"""Heuristic calls in a child process, so that a crash, a hang or a stray exception in a
candidate costs only its own rows.

The parent drives each call and waits at most the time limit for it; a call that does not
return in time gets its child killed, and the next call starts a fresh child. Inside the
child torch runs single-threaded (SPEC 7) and each call is timed by `timing.timed_call`
(`perf_counter` around the call; batches of calls where the clock is too coarse).
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from dataclasses import dataclass, field

import numpy as np

from eplbench.timing import rotated

# seconds a fresh child may take to import torch and eplbench before it counts as broken
STARTUP_LIMIT = 120.0
# seconds the parent adds to a call's time limit for the round trip through the pipe
PIPE_GRACE = 2.0


@dataclass
class Failure:
    """Why a heuristic produced no placement. `reason`: load, raised, timeout, crashed, output."""

    reason: str
    detail: str


@dataclass
class Measurement:
    """Output of the first timed call (tensors as numpy arrays) and every call's seconds."""

    output: object = None
    seconds: list = field(default_factory=list)
    failure: Failure | None = None

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else float("nan")


class Sandbox:
    """A child process that loads heuristics by spec and runs them on request."""

    def __init__(self, time_limit: float):
        self.time_limit = time_limit
        self._process = None
        self._conn = None

    def measure(self, specs: list[str], weight: np.ndarray, topology: tuple,
                warmup_weight: np.ndarray, repeats: int) -> dict[str, Measurement]:
        """Warm each heuristic up on `warmup_weight`, then time `repeats` rounds on `weight`,
        the heuristics interleaved (round r starts r places further along, so that drift in
        machine speed hits all alike). A heuristic that fails leaves the rotation."""
        results = {spec: Measurement() for spec in specs}
        live = [spec for spec in specs if self._call(spec, warmup_weight, topology,
                                                      results[spec], timed=False)]
        for round_index in range(repeats):
            for spec in rotated(live, round_index):
                if not self._call(spec, weight, topology, results[spec], timed=True):
                    live.remove(spec)
        return results

    def _call(self, spec, weight, topology, result: Measurement, timed: bool) -> bool:
        """One call, recorded in `result`; False once the heuristic has failed."""
        reply = self._request(("call", spec, weight, topology, timed))
        if isinstance(reply, Failure):
            result.failure = reply
            return False
        seconds, output = reply
        if not timed:
            return True
        if result.output is None:
            result.output = output
        result.seconds.append(seconds)
        if seconds > self.time_limit:
            result.failure = Failure("timeout", f"a call took {seconds:.3g} s, over the "
                                                f"{self.time_limit:g} s limit")
            return False
        return True

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._conn.close()
        self._process = self._conn = None

    def _request(self, message):
        try:
            self._ensure_started()
            self._conn.send(message)
            if not self._conn.poll(self.time_limit + PIPE_GRACE):
                self.close()
                return Failure("timeout", f"no return within the {self.time_limit:g} s limit")
            status, *payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self._process.exitcode if self._process else None
            self.close()
            return Failure("crashed", f"the heuristic's process died (exit code {code})")
        if status == "error":
            return Failure(*payload)
        return tuple(payload)

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self.close()
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end,), daemon=True)
        self._process.start()
        child_end.close()
        if not self._conn.poll(STARTUP_LIMIT):
            raise EOFError
        self._conn.recv()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(conn) -> None:
    """Child loop: answer ("call", spec, weight, topology, timed) with ("ok", seconds, output);
    an untimed call (the warm-up) reports 0 seconds."""
    import torch

    from eplbench.errors import BadInput
    from eplbench.heuristics import load_heuristic
    from eplbench.timing import timed_call

    torch.set_num_threads(1)
    loaded = {}
    conn.send(("ready",))
    while True:
        try:
            _, spec, weight, topology, timed = conn.recv()
        except EOFError:
            return
        try:
            if spec not in loaded:
                loaded[spec] = load_heuristic(spec)
        except BadInput as error:
            conn.send(("error", "load", str(error)))
            continue
        tensor = torch.from_numpy(weight)
        try:
            output, seconds = (timed_call(lambda: loaded[spec](tensor, *topology)) if timed
                               else (loaded[spec](tensor, *topology), 0.0))
        except Exception as error:  # noqa: BLE001 - any failure of the candidate is its result
            where = traceback.extract_tb(error.__traceback__)[-1]
            conn.send(("error", "raised", f"{type(error).__name__}: {error} "
                                          f"({where.filename}:{where.lineno})"))
            continue
        conn.send(_reply(seconds, output))


def _reply(seconds: float, output):
    """("ok", seconds, output with tensors as numpy) or an error if it cannot be sent."""
    try:
        if isinstance(output, (tuple, list)):
            output = tuple(item.detach().cpu().numpy() if hasattr(item, "detach") else item
                           for item in output)
        pickle.dumps(output)
    except Exception as error:  # noqa: BLE001
        return ("error", "output", f"output cannot be transferred: {type(error).__name__}: {error}")
    return ("ok", seconds, output)
