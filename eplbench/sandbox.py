"""Heuristic calls in child processes, so that a crash, a hang, a stray exception, a
monkeypatch or a process started by a candidate costs only its own rows (spec §8), and
calls timed from outside the candidate's process (spec §7).

Each heuristic spec gets its own process tree (`eplbench.sandbox_worker`): a keeper (forked
by this process's template, `eplbench.sandbox_template`, an interpreter that imported
torch and eplbench once and runs no candidate code; it runs none either) and the worker it
forks, which loads the heuristic and answers calls. A candidate never shares a process with
the baseline or another candidate. A `Sandbox` starts a spec's tree the first time it needs
it and reuses it until `close`; the trees of one `measure` start together so that their
imports overlap.

Requests and replies cross two pipes as plain data (length-prefixed JSON header + raw
array bytes, see `sandbox_worker`); the parent rebuilds each returned array with
`np.frombuffer` from numeric or bool dtypes only and never unpickles anything its children
send. A returned tuple or list of arrays arrives as a tuple of numpy arrays, a tensor or
array returned alone as that one numpy array.

Timing (the parent's clock): the loads are sent first and untimed; once the worker says
they are tensors, the parent reads `perf_counter`, writes a tiny "go" and reads the
worker's tiny "done", which it sends as soon as the calls return (outputs follow). The
call's time is that interval less the median of a few empty round trips of the same sizes
(pings, measured per worker before each `measure`'s timed rounds). Where the interval would
be too short to trust (fewer than `MIN_TICKS` ticks of the parent's clock, or shorter than
the round trip itself), the parent asks for batches of n calls, doubling n, and divides.
Every timed call but the first gets loads of its own (the instance's with small seeded
perturbations, the same sequence for every heuristic), so that no output can be memoised
from an earlier call; the first timed call's output is the one scored, and every other
output must be well-formed (the full checker for the first of a batch, a cheap parse for
the rest), else the heuristic is refused with reason `output`. The worker's own
`perf_counter` seconds are kept beside the parent's (`Measurement.inside_seconds`).

Containment: the keeper is a child subreaper, so every process the candidate starts (even
with setsid or a double fork) stays below it; after every call the parent kills every
process of the tree but the worker, and a timeout or `close` kills the whole tree. The
keeper watches eplbench (pidfd) and kills its tree when eplbench dies, however it dies; the
worker dies with its keeper (`PR_SET_PDEATHSIG`). The worker's address space is capped
(`memory_limit`, `RLIMIT_AS`): an allocation past it fails the call with reason `memory`.
These limits bind a candidate that plays by Python's rules; one running as root can lift
its rlimit, and one that kills its keeper first can leave processes behind.

The parent waits at most the time limit (plus `PIPE_GRACE`) for each exchange; a call that
does not return in time gets its tree killed, and that spec's next `measure` starts a
fresh one. Inside the worker torch runs single-threaded (spec §7).
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np

from eplbench.sandbox_worker import (GO, LENGTH, MAX_HEADER_BYTES, PING, SEND, WireError,
                                     decode_header, encode_frame, kill_descendants,
                                     rebuild, truncated)
from eplbench.sandbox_template import Keeper, TemplateError, start_keeper
from eplbench.timing import MIN_TICKS, clock_tick, rotated

# seconds a fresh child may take to import torch, eplbench and its heuristic
STARTUP_LIMIT = 120.0
# seconds the parent adds to a call's time limit for the round trip through the pipes
PIPE_GRACE = 2.0
# seconds a child whose reply pipe closed may take to exit by itself (so that its own exit
# status is reported) before it is killed
EXIT_GRACE = 2.0
# default cap on a worker's address space (torch and eplbench take about 0.65 GiB of it)
MEMORY_LIMIT = 4 << 30
# empty round trips timed per worker (after two untimed ones); their median is subtracted
PINGS = 7
# most calls in one timed batch
MAX_BATCH = 1 << 16
# seed of the perturbed loads of timed calls after the first
PERTURBATION_SEED = 0x5EED
# failure reasons a child may report itself; anything else it sends is a malformed reply
CHILD_REASONS = ("load", "raised", "output", "memory")
# the worker's fixed replies, as decoded
DONE_HEADER = {"op": "done", "arrays": []}
ARMED_HEADER = {"op": "armed", "arrays": []}


@dataclass
class Failure:
    """Why a heuristic produced no placement. `reason`: load, raised, timeout, crashed,
    output, memory."""

    reason: str
    detail: str


@dataclass
class Measurement:
    """Output of the first timed call (numpy arrays: a tuple of them, or phy2log alone as
    the heuristic returned it); every timed sample's seconds per call by the parent's clock
    (`seconds`, the official figures) and by the worker's own (`inside_seconds`); the
    round-trip cost subtracted (`overhead_seconds`)."""

    output: object = None
    seconds: list = field(default_factory=list)
    failure: Failure | None = None
    inside_seconds: list = field(default_factory=list)
    overhead_seconds: float = float("nan")
    _next_load: int = field(default=0, repr=False)
    _scored_invalid: bool = field(default=False, repr=False)

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else float("nan")


class Sandbox:
    """One process tree per heuristic spec, started on first use and kept until `close`.
    memory_limit: bytes of address space per worker (None: no cap)."""

    def __init__(self, time_limit: float, memory_limit: int | None = MEMORY_LIMIT):
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self._children: dict[str, _Child] = {}
        self._load_failures: dict[str, Failure] = {}
        self._lock = threading.Lock()  # one measure at a time (threads of a Dask worker)
        _open_sandboxes.add(self)

    def measure(self, specs: list[str], weight: np.ndarray, topology: tuple,
                warmup_weight: np.ndarray, repeats: int,
                old_plans: dict[str, np.ndarray] | None = None) -> dict[str, Measurement]:
        """Warm each heuristic up on `warmup_weight`, then time `repeats` rounds on `weight`
        (its perturbed copies after the first call), the heuristics interleaved (round r
        starts r places further along, so that drift in machine speed hits all alike), each
        call in its spec's own process, one call at a time. A heuristic that fails leaves
        the rotation (a child is stopped only when its heuristic fails, so every heuristic
        still in it keeps the child `_start` gave it). old_plans: spec -> its plan in place
        ([L, P] phy2log), given to every call of a heuristic that takes one (the warm-up's
        too)."""
        specs = list(dict.fromkeys(specs))
        results = {spec: Measurement() for spec in specs}
        plans = old_plans or {}
        with self._lock:
            for spec, failure in self._start(specs).items():
                results[spec].failure = failure
            live = [spec for spec in specs if results[spec].failure is None
                    and self._warm_up(spec, warmup_weight, topology, results[spec],
                                      plans.get(spec))]
            live = [spec for spec in live if self._calibrate(spec, results[spec])]
            loads = _Loads(weight)
            for round_index in range(repeats):
                for spec in rotated(live, round_index):
                    if not self._timed(spec, loads, topology, results[spec], plans.get(spec)):
                        live.remove(spec)
        return results

    def load_failures(self, specs: list[str]) -> dict[str, Failure]:
        """Spec -> its `load` Failure, for the specs that cannot be loaded (a syntax error,
        no entry point, no such module or function, an import that raises); the others'
        processes are started (or kept) for the calls to come. A process that crashes or
        hangs while loading is not reported here (`measure` reports it)."""
        specs = list(dict.fromkeys(specs))
        with self._lock:
            failures = self._start(specs)
        return {spec: failure for spec, failure in failures.items() if failure.reason == "load"}

    def close(self) -> None:
        """Stop every child (killing any still busy, and all they started). Never raises;
        closing twice is fine."""
        children, self._children = self._children, {}
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
            child = self._children[spec] = _Child(spec, self.memory_limit)
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

    def _warm_up(self, spec, weight, topology, result: Measurement, old_plan=None) -> bool:
        """One untimed call; False once the heuristic has failed."""
        reply = self._children[spec].call([np.asarray(weight)], topology, self.time_limit,
                                          old_plan)
        if isinstance(reply, Failure):
            result.failure = reply
            return False
        return True

    def _calibrate(self, spec, result: Measurement) -> bool:
        """Time the spec's empty round trips; False once the heuristic has failed."""
        child = self._children[spec]
        failure = child.calibrate(self.time_limit)
        if failure is not None:
            result.failure = failure
            return False
        result.overhead_seconds = child.overhead
        return True

    def _timed(self, spec, loads: _Loads, topology, result: Measurement, old_plan=None) -> bool:
        """One timed sample, recorded in `result`: one call, or a batch of n calls (n
        doubling) where one call is too short for the parent's clock; False once the
        heuristic has failed."""
        child = self._children[spec]
        threshold = max(MIN_TICKS * clock_tick(), child.overhead)
        calls = 1
        while True:
            first = result._next_load
            batch = [loads.get(first + index) for index in range(calls)]
            result._next_load += calls
            reply = child.call(batch, topology, self.time_limit, old_plan)
            if isinstance(reply, Failure):
                result.failure = reply
                return False
            elapsed, inside, outputs = reply
            if first == 0:
                result.output = outputs[0]
            failure = None if result._scored_invalid else _check_batch(batch, first, outputs,
                                                                       topology)
            if failure is not None:
                if _check_batch([loads.get(0)], -1, [result.output], topology) is None:
                    result.failure = failure
                    return False
                # the scored output is invalid too: the caller gives the reason it scores
                # (shape, range...), and later outputs need no check
                result._scored_invalid = True
            net = elapsed - child.overhead
            if net >= threshold or calls >= MAX_BATCH:
                break
            calls *= 2
        seconds = max(net, clock_tick()) / calls
        result.seconds.append(seconds)
        result.inside_seconds.append(inside / calls)
        if seconds > self.time_limit:
            result.failure = Failure("timeout", f"a call took {seconds:.3g} s, over the "
                                                f"{self.time_limit:g} s limit")
            return False
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Loads:
    """The load matrices of one `measure`'s timed calls: the instance's for the first, a
    perturbed copy (seeded by its index, the same for every heuristic) for each other."""

    def __init__(self, weight):
        weight = np.asarray(weight)
        self._made = {0: np.ascontiguousarray(weight, dtype=weight.dtype.newbyteorder("="))}

    def get(self, index: int) -> np.ndarray:
        if index not in self._made:
            self._made[index] = perturbed(self._made[0], index)
        return self._made[index]


def perturbed(weight: np.ndarray, index: int) -> np.ndarray:
    """`weight` with small seeded changes: each integer load moves by about 1/32 of itself
    up, down or not at all, plus 0 or 1 token (never below 0 nor past its dtype); floats
    move by up to 1%; other dtypes are copied."""
    rng = np.random.Generator(np.random.PCG64([PERTURBATION_SEED, index]))
    if weight.dtype.kind in "iu" and weight.size and int(weight.max()) <= np.iinfo(np.int64).max:
        loads = weight.astype(np.int64)
        delta = rng.integers(-1, 2, loads.shape) * (loads // 32) + rng.integers(0, 2, loads.shape)
        top = min(int(np.iinfo(weight.dtype).max), int(np.iinfo(np.int64).max))
        loads = loads + np.minimum(delta, top - loads)
        return np.maximum(loads, 0).astype(weight.dtype)
    if weight.dtype.kind == "f":
        return (weight * (1 + 0.01 * rng.uniform(-1, 1, weight.shape))).astype(weight.dtype)
    return weight.copy()


def _check_batch(loads: list, first: int, outputs: list, topology: tuple) -> Failure | None:
    """None when every output of a timed batch (its calls numbered from `first`) is
    well-formed: the full checker for the batch's first output, a parse of phy2log for the
    others. The very first timed output (number 0) is left to the caller, which scores it
    with its own reasons."""
    from eplbench.checker import check_output
    from eplbench.errors import InvalidPlacement
    from eplbench.problem import Topology

    for offset, (load, output) in enumerate(zip(loads, outputs)):
        index = first + offset
        if index == 0:
            continue
        try:
            if offset == 0:
                check_output(load, output, Topology(*topology))
            else:
                _parse(load, output, topology[0])
        except InvalidPlacement as error:
            return Failure("output", f"timed call {index} (on perturbed loads) returned an "
                                     f"invalid placement: {error.reason}: {error.detail} "
                                     f"(the first, on the instance's loads, was valid)")
    return None


def _parse(load: np.ndarray, output, num_replicas: int) -> None:
    """Raise InvalidPlacement unless `output` is (phy2log, log2phy, logcnt) or phy2log
    alone with phy2log an integer [L, P] array holding every expert of [0, E)."""
    from eplbench.errors import InvalidPlacement

    if isinstance(output, tuple):
        if len(output) != 3:
            raise InvalidPlacement("arity", f"a tuple of {len(output)} arrays")
        output = output[0]
    num_layers, num_experts = load.shape
    if output.dtype.kind not in "iu":
        raise InvalidPlacement("dtype", f"phy2log has dtype {output.dtype}")
    if output.shape != (num_layers, num_replicas):
        raise InvalidPlacement("shape", f"phy2log has shape {list(output.shape)}")
    if output.size and (output.min() < 0 or output.max() >= num_experts):
        raise InvalidPlacement("range", f"phy2log holds ids outside [0, {num_experts})")
    offsets = (np.arange(num_layers) * num_experts)[:, None]
    held = np.bincount((output.astype(np.int64) + offsets).ravel(),
                       minlength=num_layers * num_experts)
    if (held == 0).any():
        raise InvalidPlacement("missing_expert", "some expert has no slot")


class _Late(Exception):
    """The deadline passed before the child answered."""


class _Ended(Exception):
    """The child closed its end of a pipe (it exited, or was killed)."""


class _Child:
    """One heuristic's process tree (the keeper, `process`, and its worker) and the
    parent's ends of the worker's two pipes."""

    def __init__(self, spec: str, memory_limit: int | None = MEMORY_LIMIT):
        self.spec = spec
        self.memory_limit = memory_limit
        self.overhead: float | None = None  # median seconds of an empty round trip
        self._owner = os.getpid()  # a forked copy of this object must not touch the process
        self._keeper: Keeper | None = None
        self._worker: int | None = None  # the worker's pid, as it said before loading
        self._requests: int | None = None  # parent writes requests here
        self._replies: int | None = None  # parent reads replies here

    @property
    def running(self) -> bool:
        return self._keeper is not None and self._owner == os.getpid()

    def start(self) -> Failure | None:
        """Have the template fork the keeper (which forks the worker, which loads the
        heuristic in the background); a Failure if no keeper started."""
        child_ends = []
        try:
            request_read, self._requests = os.pipe()
            child_ends.append(request_read)
            self._replies, reply_write = os.pipe()
            child_ends.append(reply_write)
            self._keeper = start_keeper(self.spec, request_read, reply_write,
                                        int(self.memory_limit or 0))
            os.set_blocking(self._requests, False)
            os.set_blocking(self._replies, False)
        except (OSError, ValueError, TemplateError, subprocess.SubprocessError) as error:
            self.close()
            return Failure("crashed", f"{self.spec}: its process did not start: "
                                      f"{type(error).__name__}: {error}")
        finally:
            for fd in child_ends:
                with suppress(OSError):
                    os.close(fd)
        return None

    def wait_ready(self, deadline: float) -> Failure | None:
        """None once the worker has loaded the heuristic, else why it has not."""
        try:
            header, _ = self._read_frame(deadline)
            worker = header.get("pid")
            if type(worker) is not int or worker <= 0:
                raise WireError("no process id first")
            self._worker = worker
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
            self.sweep()  # nothing the candidate's import started outlives it
            return None
        failure = _child_failure(header)
        self.close()
        if failure is None or failure.reason != "load":
            return Failure("load", f"{self.spec}: its process sent a malformed reply")
        return failure

    def calibrate(self, time_limit: float) -> Failure | None:
        """Time `PINGS` empty round trips (go-sized request, done-sized reply) after two
        untimed ones; `overhead` is their median."""
        deadline = time.monotonic() + time_limit + PIPE_GRACE
        samples = []
        try:
            for index in range(PINGS + 2):
                header, _, seconds = self._round_trip(PING, deadline)
                if header != DONE_HEADER:
                    raise WireError("an unexpected reply to a ping")
                samples.append(seconds)
        except _Late:
            self.close()
            return Failure("timeout", "its process did not answer a ping within the "
                                      f"{time_limit:g} s limit")
        except (_Ended, BrokenPipeError, ConnectionResetError):
            return Failure("crashed", f"the heuristic's process {self._end()} between calls")
        except WireError as error:
            self.close()
            return Failure("output", f"the heuristic's process sent a malformed reply ({error})")
        self.overhead = float(np.median(samples[2:]))
        return None

    def call(self, loads: list[np.ndarray], topology: tuple, time_limit: float,
             old_plan: np.ndarray | None = None) -> Failure | tuple[float, float, list]:
        """(seconds from "go" to "done" by the parent's clock, the worker's own seconds for
        the calls, the outputs) of calls on each of `loads` in turn, or the Failure.
        old_plan: the plan in place ([L, P] int64), given to each call of a heuristic that
        takes one."""
        deadline = time.monotonic() + time_limit + PIPE_GRACE
        loads = [np.ascontiguousarray(load, dtype=load.dtype.newbyteorder("="))
                 for load in loads]
        sent = loads if old_plan is None else [*loads, np.ascontiguousarray(old_plan, np.int64)]
        try:
            self._write_frame({"op": "load", "topology": [int(value) for value in topology],
                               "old_plan": old_plan is not None}, sent, deadline)
            header, _ = self._read_frame(deadline)
            if header != ARMED_HEADER:
                raise WireError("an unexpected reply to the loads")
            header, _, elapsed = self._round_trip(GO, deadline)
            if header != DONE_HEADER:
                return self._refused(header)
            self._write_bytes(SEND, deadline)
            outputs, inside = [], None
            for _ in loads:
                header, arrays = self._read_frame(deadline)
                form, seconds = header.get("form"), header.get("inside")
                if "failure" in header:
                    return self._refused(header)
                if (type(seconds) not in (int, float) or not np.isfinite(seconds)
                        or seconds < 0 or form not in ("tuple", "array")
                        or (form == "array" and len(arrays) != 1)
                        or (inside is not None and seconds != inside)):
                    raise WireError("an output frame that is not one")
                inside = float(seconds)
                outputs.append(arrays[0] if form == "array" else tuple(arrays))
            self._check_quiet()
        except _Late:
            self.close()
            return Failure("timeout", f"no return within the {time_limit:g} s limit")
        except (_Ended, BrokenPipeError, ConnectionResetError):
            return Failure("crashed", f"the heuristic's process {self._end()} during a call")
        except WireError as error:
            self.close()
            return Failure("output", f"the heuristic's process sent a malformed reply ({error})")
        self.sweep()
        return elapsed, inside, outputs

    def _refused(self, header: dict) -> Failure:
        """The failure the worker reported instead of an answer (the processes the call
        started are killed), or `output` for anything else (the tree is killed)."""
        failure = _child_failure(header) if "failure" in header else None
        if failure is None:
            self.close()
            return Failure("output", "the heuristic's process sent a malformed reply")
        self.sweep()
        return failure

    def sweep(self) -> None:
        """Kill every process of this tree but the keeper and the worker: what the
        candidate started and left running."""
        if self.running and self._worker is not None:
            with suppress(Exception):
                kill_descendants(self._keeper.pid, spare=self._worker)

    def close(self) -> None:
        """Kill the tree (and the keeper's process group) and close the pipes; never
        raises."""
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
        """(exit status of the keeper, which passes on the worker's (negative: the
        signal), whether it ended by itself), after up to `grace` seconds for it to exit
        and the kill of its tree; the status is None if it could not be reaped."""
        keeper, self._keeper, self.overhead = self._keeper, None, None
        for fd in (self._requests, self._replies):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._requests = self._replies = None
        if keeper is None or self._owner != os.getpid():
            return None, False
        code = keeper.wait(grace)
        by_itself = code is not None
        if not by_itself:
            # a stopped keeper cannot exit, so orphans stay below it while the tree dies
            keeper.send_signal(signal.SIGSTOP)
            with suppress(Exception):
                kill_descendants(keeper.pid)
            with suppress(OSError):
                os.killpg(keeper.pid, signal.SIGKILL)  # the keeper's session, as a fallback
            keeper.send_signal(signal.SIGKILL)
            code = keeper.wait(10)
        keeper.close()
        return code, by_itself

    def _check_quiet(self) -> None:
        """WireError if the worker has sent something nobody asked for (a forged frame)."""
        if self._replies is not None:
            poller = select.poll()
            poller.register(self._replies, select.POLLIN)
            if poller.poll(0):
                raise WireError("data sent out of turn")

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

    def _round_trip(self, message: bytes, deadline: float) -> tuple[dict, list, float]:
        """Send `message` (GO or PING, of one size) and read the reply frame: (its header,
        its arrays, seconds from just before the write to just after the read)."""
        self._check_quiet()
        start = time.perf_counter()
        self._write_bytes(message, deadline)
        header, arrays = self._read_frame(deadline)
        return header, arrays, time.perf_counter() - start

    def _write_frame(self, header: dict, arrays: list[np.ndarray], deadline: float) -> None:
        for buffer in encode_frame(header, arrays):
            self._write_bytes(buffer, deadline)

    def _write_bytes(self, buffer, deadline: float) -> None:
        if self._requests is None:
            raise _Ended
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


_open_sandboxes: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_sandboxes() -> None:
    for sandbox in list(_open_sandboxes):
        sandbox.close()
