"""Heuristic calls in child processes, so that a crash, a hang, a stray exception or a
monkeypatch in a candidate costs only its own rows (spec §8).

Each heuristic spec gets its own child (`eplbench.sandbox_worker`, a fresh interpreter
started with `subprocess`, never by multiprocessing, so the caller's `__main__` is never
imported again): a candidate never shares a process with the baseline or another
candidate. A `Sandbox` starts a spec's child the first time it measures that spec and
reuses it until `close`; the children of one `measure` start together so that their
imports overlap.

Requests and replies cross two pipes as plain data (length-prefixed JSON header + raw
array bytes, see `sandbox_worker`); the parent rebuilds each returned array with
`np.frombuffer` from numeric or bool dtypes only and never unpickles anything its children
send. A returned tuple or list of arrays arrives as a tuple of numpy arrays, a tensor or
array returned alone as that one numpy array.

The parent waits at most the time limit (plus `PIPE_GRACE`) for each call; a call that does
not return in time gets its child (and the child's process group) killed, and that spec's
next `measure` starts a fresh child. Inside the child torch runs single-threaded (spec §7)
and each call is timed by `timing.timed_call` (`perf_counter` around the call; batches of
calls where the clock is too coarse).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np

from eplbench.sandbox_worker import (LENGTH, MAX_HEADER_BYTES, WireError, decode_header,
                                     encode_frame, rebuild, truncated)
from eplbench.timing import rotated

# seconds a fresh child may take to import torch, eplbench and its heuristic
STARTUP_LIMIT = 120.0
# seconds the parent adds to a call's time limit for the round trip through the pipes
PIPE_GRACE = 2.0
# seconds a child whose reply pipe closed may take to exit by itself (so that its own exit
# status is reported) before it is killed
EXIT_GRACE = 2.0
# failure reasons a child may report itself; anything else it sends is a malformed reply
CHILD_REASONS = ("load", "raised", "output")
# the child's first line: the parent's import path, then the worker's main(spec, fds)
BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
        "from eplbench.sandbox_worker import main; main(*sys.argv[2:])")


@dataclass
class Failure:
    """Why a heuristic produced no placement. `reason`: load, raised, timeout, crashed, output."""

    reason: str
    detail: str


@dataclass
class Measurement:
    """Output of the first timed call (numpy arrays: a tuple of them, or phy2log alone as
    the heuristic returned it) and every call's seconds."""

    output: object = None
    seconds: list = field(default_factory=list)
    failure: Failure | None = None

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else float("nan")


class Sandbox:
    """One child process per heuristic spec, started on first use and kept until `close`."""

    def __init__(self, time_limit: float):
        self.time_limit = time_limit
        self._children: dict[str, _Child] = {}
        self._load_failures: dict[str, Failure] = {}
        self._lock = threading.Lock()  # one measure at a time (threads of a Dask worker)
        _open_sandboxes.add(self)

    def measure(self, specs: list[str], weight: np.ndarray, topology: tuple,
                warmup_weight: np.ndarray, repeats: int) -> dict[str, Measurement]:
        """Warm each heuristic up on `warmup_weight`, then time `repeats` rounds on `weight`,
        the heuristics interleaved (round r starts r places further along, so that drift in
        machine speed hits all alike), each call in its spec's own process, one call at a
        time. A heuristic that fails leaves the rotation."""
        specs = list(dict.fromkeys(specs))
        results = {spec: Measurement() for spec in specs}
        with self._lock:
            for spec, failure in self._start(specs).items():
                results[spec].failure = failure
            live = [spec for spec in specs if results[spec].failure is None
                    and self._call(spec, warmup_weight, topology, results[spec], timed=False)]
            for round_index in range(repeats):
                for spec in rotated(live, round_index):
                    if not self._call(spec, weight, topology, results[spec], timed=True):
                        live.remove(spec)
        return results

    def close(self) -> None:
        """Stop every child (killing any still busy). Never raises; closing twice is fine."""
        children, self._children = getattr(self, "_children", {}), {}
        for child in children.values():
            with suppress(Exception):
                child.close()
        self._load_failures = {}

    def _start(self, specs: list[str]) -> dict[str, Failure]:
        """Start the children of `specs` that are not running, all before waiting for any,
        and wait until each has loaded its heuristic; spec -> Failure for those that did not
        start. A heuristic that cannot be loaded (`load`) is not tried again."""
        failures, starting = {}, []
        for spec in specs:
            if spec in self._load_failures:
                failures[spec] = self._load_failures[spec]
                continue
            child = self._children.get(spec)
            if child is not None and child.running:
                continue
            if child is not None:
                child.close()
            child = self._children[spec] = _Child(spec)
            failure = child.start()
            if failure is None:
                starting.append(spec)
            else:
                failures[spec] = failure
        deadline = time.monotonic() + STARTUP_LIMIT
        for spec in starting:
            failure = self._children[spec].wait_ready(deadline)
            if failure is not None:
                failures[spec] = failure
                if failure.reason == "load":
                    self._load_failures[spec] = failure
        return failures

    def _call(self, spec, weight, topology, result: Measurement, timed: bool) -> bool:
        """One call, recorded in `result`; False once the heuristic has failed."""
        child = self._children.get(spec)
        if child is None or not child.running:
            failure = self._start([spec]).get(spec)
            if failure is not None:
                result.failure = failure
                return False
            child = self._children[spec]
        reply = child.call(weight, topology, timed, self.time_limit)
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Late(Exception):
    """The deadline passed before the child answered."""


class _Ended(Exception):
    """The child closed its end of a pipe (it exited, or was killed)."""


class _Child:
    """One heuristic's process and the parent's ends of its two pipes."""

    def __init__(self, spec: str):
        self.spec = spec
        self._owner = os.getpid()  # a forked copy of this object must not touch the process
        self._process: subprocess.Popen | None = None
        self._requests: int | None = None  # parent writes requests here
        self._replies: int | None = None  # parent reads replies here

    @property
    def running(self) -> bool:
        return self._process is not None and self._owner == os.getpid()

    def start(self) -> Failure | None:
        """Start the process (it loads the heuristic in the background); a Failure if the
        operating system would not start it."""
        child_ends = []
        try:
            request_read, self._requests = os.pipe()
            child_ends.append(request_read)
            self._replies, reply_write = os.pipe()
            child_ends.append(reply_write)
            self._process = subprocess.Popen(
                [sys.executable, *_interpreter_flags(), "-c", BOOT, json.dumps(sys.path),
                 self.spec, str(request_read), str(reply_write)],
                stdin=subprocess.DEVNULL, stdout=_child_stdout(), pass_fds=child_ends,
                start_new_session=True)
            os.set_blocking(self._requests, False)
            os.set_blocking(self._replies, False)
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            self.close()
            return Failure("crashed", f"{self.spec}: its process did not start: "
                                      f"{type(error).__name__}: {error}")
        finally:
            for fd in child_ends:
                with suppress(OSError):
                    os.close(fd)
        return None

    def wait_ready(self, deadline: float) -> Failure | None:
        """None once the child has loaded the heuristic, else why it has not."""
        try:
            header, _ = self._read_frame(deadline)
        except _Late:
            self.close()
            return Failure("timeout", f"{self.spec}: its process did not load it within "
                                      f"{STARTUP_LIMIT:g} s")
        except _Ended:
            return Failure("crashed", f"{self.spec}: its process {self._end()} while loading")
        except WireError as error:
            self.close()
            return Failure("load", f"{self.spec}: its process sent a malformed reply ({error})")
        if header.get("ready") is True:
            return None
        failure = _child_failure(header)
        self.close()
        if failure is None or failure.reason != "load":
            return Failure("load", f"{self.spec}: its process sent a malformed reply")
        return failure

    def call(self, weight: np.ndarray, topology: tuple, timed: bool,
             time_limit: float) -> Failure | tuple[float, object]:
        """(seconds, output) of one call, or the Failure."""
        deadline = time.monotonic() + time_limit + PIPE_GRACE
        weight = np.asarray(weight)
        weight = np.ascontiguousarray(weight, dtype=weight.dtype.newbyteorder("="))
        try:
            self._write_frame({"op": "call", "timed": bool(timed),
                               "topology": [int(value) for value in topology]}, [weight],
                              deadline)
            header, arrays = self._read_frame(deadline)
        except _Late:
            self.close()
            return Failure("timeout", f"no return within the {time_limit:g} s limit")
        except (_Ended, BrokenPipeError, ConnectionResetError):
            return Failure("crashed", f"the heuristic's process {self._end()} during a call")
        except WireError as error:
            self.close()
            return Failure("output", f"the heuristic's process sent a malformed reply ({error})")
        if "failure" in header:
            failure = _child_failure(header)
            if failure is not None:
                return failure
        seconds, form = header.get("seconds"), header.get("form")
        if (type(seconds) not in (int, float) or not np.isfinite(seconds) or seconds < 0
                or form not in ("tuple", "array") or (form == "array" and len(arrays) != 1)):
            self.close()
            return Failure("output", "the heuristic's process sent a malformed reply")
        return float(seconds), (arrays[0] if form == "array" else tuple(arrays))

    def close(self) -> None:
        """Kill the process (and its process group) and close the pipes; never raises."""
        with suppress(Exception):
            self._stop(grace=0.0)

    def _end(self) -> str:
        """How the process ended (it closed its pipe): waits for its status, then stops it."""
        code, by_itself = self._stop(grace=EXIT_GRACE)
        if code is None:
            return "stopped answering"
        if not by_itself:
            return "closed its pipe without exiting (it was killed)"
        if code >= 0:
            return f"exited with status {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {-code} ({name})"

    def _stop(self, grace: float) -> tuple[int | None, bool]:
        """(exit status of the process (negative: the signal), whether it ended by itself),
        after up to `grace` seconds for it to exit and a SIGKILL to its process group; the
        status is None if it could not be reaped."""
        process, self._process = self._process, None
        for fd in (self._requests, self._replies):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._requests = self._replies = None
        if process is None or self._owner != os.getpid():
            return None, False
        if grace > 0:
            with suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        by_itself = process.returncode is not None
        with suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)  # the child's session: what it started too
        with suppress(OSError):
            process.kill()
        with suppress(subprocess.TimeoutExpired):
            process.wait(10)
        return process.returncode, by_itself

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Late
        poller = select.poll()
        poller.register(fd, event)
        if not poller.poll(remaining * 1000):
            raise _Late

    def _read(self, count: int, deadline: float) -> bytearray:
        if self._replies is None:
            raise _Ended
        data = bytearray(count)
        view, done = memoryview(data), 0
        while done < count:
            self._wait(self._replies, select.POLLIN, deadline)
            try:
                got = os.readv(self._replies, [view[done:]])
            except BlockingIOError:
                continue
            if got == 0:
                raise _Ended
            done += got
        return data

    def _read_frame(self, deadline: float) -> tuple[dict, list[np.ndarray]]:
        """A reply: its header and arrays, rebuilt from raw bytes (never unpickled)."""
        (length,) = LENGTH.unpack(self._read(LENGTH.size, deadline))
        if length > MAX_HEADER_BYTES:
            raise WireError(f"a header of {length} bytes")
        header, layouts = decode_header(bytes(self._read(length, deadline)))
        return header, [rebuild(dtype, shape, self._read(count, deadline))
                        for dtype, shape, count in layouts]

    def _write_frame(self, header: dict, arrays: list[np.ndarray], deadline: float) -> None:
        if self._requests is None:
            raise _Ended
        for buffer in encode_frame(header, arrays):
            view = memoryview(buffer)
            while view:
                self._wait(self._requests, select.POLLOUT, deadline)
                try:
                    view = view[os.write(self._requests, view):]
                except BlockingIOError:
                    continue


def _child_failure(header: dict) -> Failure | None:
    """The Failure a child reported in `header`, None if it is not a well-formed one."""
    reported = header.get("failure")
    if (isinstance(reported, list) and len(reported) == 2 and reported[0] in CHILD_REASONS
            and isinstance(reported[1], str)):
        return Failure(reported[0], truncated(reported[1]))
    return None


def _interpreter_flags() -> list[str]:
    """This interpreter's -W / -X / -O ... flags, for the child (as multiprocessing does)."""
    try:
        return subprocess._args_from_interpreter_flags()
    except Exception:  # noqa: BLE001 - a private helper: without it, no flags
        return []


def _child_stdout():
    """Where a child's stdout goes: this process's stderr (a candidate's prints must not mix
    with what eplbench prints on stdout), or nowhere if there is none."""
    try:
        os.fstat(2)
    except OSError:
        return subprocess.DEVNULL
    return 2


_open_sandboxes: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_sandboxes() -> None:
    for sandbox in list(_open_sandboxes):
        sandbox.close()

