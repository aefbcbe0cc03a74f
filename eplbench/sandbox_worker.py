"""The sandbox's child processes: the template, the keepers it forks, and the worker each
keeper forks to load one heuristic and answer calls over two pipes.

`eplbench.sandbox_template` starts a fresh interpreter (never by multiprocessing, so the
caller's `__main__` is not imported again) that loads this file by its path and runs
`template`: it imports numpy, torch and eplbench's heuristic loader once, runs no code of
any candidate's, and forks a **keeper** for each request eplbench sends on its socket,
reporting each keeper's exit code on the status pipe that came with the request. The
keeper takes eplbench's import path, environment, working directory and stderr from the
request and a session of its own; it runs no code of the candidate's either. It makes
itself a child subreaper (processes orphaned below it are re-parented to it, not to init,
so that everything the candidate starts stays in its tree), watches the eplbench process
(a pidfd, else its pid every tenth of a second) and forks the **worker**, which sets
`PR_SET_PDEATHSIG` (SIGKILL when the keeper dies, checked against a race), caps its
address space (`RLIMIT_AS`), draws fresh seeds, loads the heuristic and answers calls.
When the worker ends, the keeper kills whatever is left below it and exits with the
worker's status (its exit code, or the same signal); when eplbench dies, the template and
every keeper kill their trees and exit. Only eplbench, the template and the keepers are
trusted; the worker runs the candidate's code.

Requests and replies are frames of plain data (`encode_frame` / `decode_header`): an
8-byte little-endian length, a JSON header, then the raw bytes of each array the header
lists (`{"dtype": "<i8", "shape": [2, 12]}`, numeric and bool dtypes only, native byte
order, C order). Nothing on the wire is pickled, so a reply can hold numbers and strings
but no object of the candidate's making.

The worker's replies:
- `{"pid": n}` first, before anything of the candidate's is imported (the parent kills
  every process of the keeper's tree but this one after each call);
- `{"ready": true}` once the heuristic has loaded, or `{"failure": ["load", detail]}`;
- to `{"op": "ping"}`: `{"op": "done"}` at once (the parent times these round trips);
- to `{"op": "load", "topology": [...]}` with n load matrices: `{"op": "armed"}` once they
  are tensors; the next request is then `{"op": "time"}` (as long as a ping), on which the
  worker calls the heuristic on each matrix in turn and sends `{"op": "done"}` at once;
  then, asked with `{"op": "send"}` (so that it is blocked, as after a ping, when the
  parent reads "done"), one frame per output: `{"form": "tuple" | "array", "inside": s}` with its arrays (a tuple
  or list of arrays, or one array returned alone as vLLM's policy returns phy2log; `inside`
  is the worker's own `perf_counter` seconds for the n calls, reported beside the parent's
  measurement, never used as it);
- `{"failure": [reason, detail]}` instead: `raised` (the call raised), `memory` (an
  allocation failed under the cap) or `output` (something else than arrays, or a list of
  them, was returned).
A candidate that exits during a call (`sys.exit`, `os._exit`) ends the worker with its
status, which the keeper passes on and the parent reports.

The worker binds the functions it serves with before the candidate is imported, and is
not registered in `sys.modules`, so a candidate that replaces `time.perf_counter`,
`os.write` or `eplbench.sandbox_worker` at import does not change how it answers (the
parent's clock, not the worker's, is the official one anyway).
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys
import time
from contextlib import suppress

LENGTH = struct.Struct("<Q")
# largest JSON header and largest total of array bytes one frame may carry
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 28
MAX_DIMENSIONS = 32
# dtypes that may cross the process boundary (see `wire_dtypes`)
WIRE_DTYPE_NAMES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                    "uint64", "float16", "float32", "float64", "complex64", "complex128")
# longest detail string a failure may carry
MAX_DETAIL = 2000
# frames smaller than this go out in one write
SMALL_FRAME = 1 << 16
# Linux prctl options
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# seconds between the keeper's checks when it has no pidfd to wait on
KEEPER_POLL = 0.1
# a keeper's exit code, as the template writes it on its status pipe
STATUS = struct.Struct("<i")
# largest request the template reads (a JSON message: spec, sys.path, environment)
MAX_REQUEST_BYTES = 1 << 20


class WireError(Exception):
    """A frame that is not well-formed plain data, or an output that cannot become one."""


class Closed(Exception):
    """The other end closed its pipe."""


# ---------------------------------------------------------------- frames (both ends)

_wire_dtypes = None


def wire_dtypes() -> dict:
    """`dtype.str` in native byte order -> dtype, for the dtypes that may cross."""
    global _wire_dtypes
    if _wire_dtypes is None:
        import numpy as np

        _wire_dtypes = {np.dtype(name).str: np.dtype(name) for name in WIRE_DTYPE_NAMES}
    return _wire_dtypes


def encode_frame(header: dict, arrays=()) -> list:
    """The byte buffers of one frame: length, JSON header (with the arrays' dtype and shape
    under "arrays"), then each non-empty array's bytes. Arrays must be of a wire dtype."""
    metas = []
    for array in arrays:
        if array.dtype.str not in wire_dtypes():
            raise WireError(f"dtype {array.dtype} cannot cross")
        metas.append({"dtype": array.dtype.str, "shape": list(array.shape)})
    body = json.dumps({**header, "arrays": metas}, allow_nan=False).encode()
    if not metas:
        return [LENGTH.pack(len(body)) + body]
    import numpy as np

    return [LENGTH.pack(len(body)), body,
            *(memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
              for array in arrays if array.size)]


def frame_bytes(header: dict) -> bytes:
    """One array-less frame as bytes (the fixed messages of the timing protocol)."""
    return b"".join(encode_frame(header))


def decode_header(body: bytes) -> tuple[dict, list[tuple[object, tuple, int]]]:
    """The header and, per array, (dtype, shape, byte count); WireError when malformed."""
    try:
        header = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise WireError(f"header is not JSON ({type(error).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise WireError("header is not an object with an array list")
    layouts, total = [], 0
    for meta in header["arrays"]:
        if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str):
            raise WireError("array without a dtype")
        dtype = wire_dtypes().get(meta["dtype"])
        if dtype is None:
            raise WireError(f"dtype {meta['dtype'][:40]!r} is not a numeric or bool dtype")
        shape = meta.get("shape")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
                or not all(type(n) is int and 0 <= n <= MAX_ARRAY_BYTES for n in shape)):
            raise WireError("array shape is not a list of sizes")
        count = dtype.itemsize
        for n in shape:
            count *= n
            if count > MAX_ARRAY_BYTES:
                raise WireError("arrays over the size limit")
        total += count
        if total > MAX_ARRAY_BYTES:
            raise WireError("arrays over the size limit")
        layouts.append((dtype, tuple(shape), count))
    return header, layouts


def rebuild(dtype, shape: tuple, data: bytearray):
    """An array from its raw bytes (writable, owned by no one else)."""
    import numpy as np

    if not data:
        return np.zeros(shape, dtype)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def truncated(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + " [...]"


def describe_bytes(count: int) -> str:
    """A byte count as people write memory limits (1.5 GiB, 512 MiB)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.4g} {unit}"
    return f"{count} bytes"


PING = frame_bytes({"op": "ping"})
GO = frame_bytes({"op": "time"})  # as long as PING: the parent subtracts the ping's cost
DONE = frame_bytes({"op": "done"})
ARMED = frame_bytes({"op": "armed"})
SEND = frame_bytes({"op": "send"})


# ---------------------------------------------------------------- process trees (Linux)


def _prctl(option: int, value: int) -> bool:
    """prctl(option, value) through libc; False where there is none or it refuses."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def live_children() -> dict[int, list[int]]:
    """Parent pid -> pids of its children that have not ended (zombies left out), from
    /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return children
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 512)
            finally:
                os.close(fd)
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            state, ppid = data[data.rindex(b")") + 2:].split(b" ", 2)[:2]
        except (OSError, ValueError):
            continue  # ended meanwhile, or not ours to read
        if state not in (b"Z", b"X"):
            children.setdefault(int(ppid), []).append(int(name))
    return children


def descendants(root: int) -> list[int]:
    """Every live process below `root` (children, their children, ...)."""
    children, found, todo = live_children(), [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(root: int, spare: int | None = None, rounds: int = 100) -> None:
    """SIGKILL every process below `root` except `spare` (whose own descendants are killed
    too), again until none is left: a process forked meanwhile is found on the next pass
    (`root` must be alive and a subreaper for orphans to stay below it)."""
    for _ in range(rounds):
        victims = [pid for pid in descendants(root) if pid != spare]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def template(parent_pid: str, control_fd: str) -> None:
    """The template: import what every worker needs, then fork a keeper for each request
    on `control_fd` (a SOCK_SEQPACKET socket from eplbench) and report each keeper's exit
    code on the status pipe that came with its request; exit once the socket has closed
    (eplbench closed it, or died) and every keeper has ended (each ends with eplbench).

    A request is a JSON message {"spec", "memory_limit", "path", "env", "cwd"} with four
    file descriptors: the worker's request and reply pipe ends, the write end of the status
    pipe and the keeper's stdout (eplbench's stderr). The reply is {"pid": n} (with a pidfd
    of the keeper where the system has them), or {"error": text}."""
    import socket

    parent_pid = int(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    parent = _pidfd(parent_pid)  # for the keepers, which watch eplbench
    if os.getppid() != parent_pid:  # eplbench died before it could be watched
        os._exit(1)
    control = socket.socket(fileno=int(control_fd))
    _preload()
    keepers = _Keepers()
    serving = True
    while serving or keepers.status_fds:
        ready = _poll([*([control.fileno()] if serving else []), *keepers.pidfds.values()],
                      None if keepers.all_watched() else KEEPER_POLL)
        if serving and control.fileno() in ready:
            serving = _serve_request(control, parent, parent_pid, keepers)
            if not serving:
                control.close()
        keepers.reap()


class _Keepers:
    """The template's live keepers: pid -> status pipe (write end), pid -> pidfd."""

    def __init__(self):
        self.status_fds: dict[int, int] = {}
        self.pidfds: dict[int, int] = {}

    def all_watched(self) -> bool:
        return len(self.pidfds) == len(self.status_fds)

    def fds(self) -> list[int]:
        return [*self.status_fds.values(), *self.pidfds.values()]

    def add(self, pid: int, status_fd: int) -> int | None:
        self.status_fds[pid] = status_fd
        watched = _pidfd(pid)
        if watched is not None:
            self.pidfds[pid] = watched
        return watched

    def reap(self) -> None:
        """Collect every ended keeper and write its exit code (a signed 32-bit int;
        negative: the signal) to its status pipe."""
        while self.status_fds:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status_fd = self.status_fds.pop(pid, None)
            if pid in self.pidfds:
                os.close(self.pidfds.pop(pid))
            if status_fd is not None:
                with suppress(OSError):
                    os.write(status_fd, STATUS.pack(os.waitstatus_to_exitcode(status)))
                os.close(status_fd)


def _poll(fds: list[int], timeout: float | None) -> set[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)}


def _preload() -> None:
    """Import what every worker imports (numpy, torch, eplbench's loader) once, here; a
    failure is left for the worker to meet and report."""
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401

        import eplbench.errors  # noqa: F401
        import eplbench.heuristics  # noqa: F401
    except BaseException:  # noqa: BLE001 - e.g. no torch: each worker says so
        pass


def _serve_request(control, parent, parent_pid, keepers: _Keepers) -> bool:
    """Fork a keeper for the request waiting on `control`; False once eplbench has closed
    it."""
    import socket

    try:
        message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST_BYTES, 4)
    except OSError:
        return False
    if not message:
        return False
    try:
        request = json.loads(message)
        if len(fds) != 4:
            raise ValueError(f"{len(fds)} file descriptors")
        request_fd, reply_fd, status_fd, out_fd = fds
        pid = os.fork()
    except Exception as error:  # noqa: BLE001 - said to eplbench, which fails that start
        for fd in fds:
            with suppress(OSError):
                os.close(fd)
        _reply(control, {"error": f"{type(error).__name__}: {error}"})
        return True
    if pid == 0:  # the keeper holds nothing of the template's but eplbench's pidfd
        for fd in [control.fileno(), status_fd, *keepers.fds()]:
            with suppress(OSError):
                os.close(fd)
        _become_keeper(request, request_fd, reply_fd, out_fd, parent, parent_pid)
    for fd in (request_fd, reply_fd, out_fd):
        os.close(fd)
    watched = keepers.add(pid, status_fd)
    _reply(control, {"pid": pid}, [] if watched is None else [watched])
    return True


def _reply(control, message: dict, fds=()) -> None:
    import socket

    with suppress(OSError):
        socket.send_fds(control, [json.dumps(message).encode()], list(fds))


def _become_keeper(request: dict, request_fd, reply_fd, out_fd, parent, parent_pid) -> None:
    """In the forked child: take eplbench's current path, environment, directory and
    stderr, a session of its own, then `keep` (never returns)."""
    try:
        os.setsid()
        for target in (1, 2):
            os.dup2(out_fd, target)
        os.close(out_fd)
        sys.path[:] = request["path"]
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        keep(request["spec"], request_fd, reply_fd, parent, parent_pid,
             int(request["memory_limit"]))
    except BaseException:  # noqa: BLE001 - a fault of the keeper's own: say where
        import traceback

        traceback.print_exc()
    os._exit(1)


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (for systems without pidfds)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def keep(spec: str, request_fd: int, reply_fd: int, parent: int | None, parent_pid: int,
         memory_limit: int) -> None:
    """The keeper: fork the worker, then wait until it ends (or eplbench does). parent:
    a pidfd of eplbench (None where there are none)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    keeper = os.getpid()

    def stop(*_):
        kill_descendants(keeper)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    if _gone(parent_pid):  # eplbench died before we could watch it
        stop()
    sys.stdout.flush()
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if parent is not None:
            os.close(parent)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != keeper:  # the keeper died before the death signal was set
            os._exit(1)
        try:
            main(spec, request_fd, reply_fd, memory_limit)
        except BaseException:  # noqa: BLE001 - a fault of the worker's own: say where
            import traceback

            traceback.print_exc()
            _exit(1)
        _exit(0)
    for fd in (request_fd, reply_fd):
        os.close(fd)
    status = _wait_for(worker, parent, parent_pid)
    if status is None:  # eplbench has gone
        stop()
    kill_descendants(keeper)
    _exit_like(status)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_for(worker: int, parent: int | None, parent_pid: int) -> int | None:
    """The worker's wait status once it has ended, or None once eplbench has; reaps the
    orphans re-parented to the keeper meanwhile."""
    poller = select.poll()
    watched = _pidfd(worker)
    for fd in (watched, parent):
        if fd is not None:
            poller.register(fd, select.POLLIN)
    timeout = 1000 if watched is not None and parent is not None else KEEPER_POLL * 1000
    while True:
        ready = {fd for fd, _ in poller.poll(timeout)}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == worker:
                return status
            if pid == 0:
                break
        if (parent is not None and parent in ready) or _gone(parent_pid):
            return None


def _exit_like(status: int) -> None:
    """Exit as the worker did: its exit code, or killed by the same signal."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    import resource

    for step in (lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)),
                 lambda: signal.signal(-code, signal.SIG_DFL),  # refused for SIGKILL
                 lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code]),
                 lambda: os.kill(os.getpid(), -code)):
        try:
            step()
        except (OSError, ValueError):
            pass
    os._exit(128 - code)


# ---------------------------------------------------------------- the worker's side


class _Pipes:
    """The worker's ends, with the os functions bound before any candidate code runs."""

    def __init__(self, request_fd: int, reply_fd: int):
        self.request_fd, self.reply_fd = request_fd, reply_fd
        self._readv, self._write = os.readv, os.write

    def read_exactly(self, count: int) -> bytearray:
        data = bytearray(count)
        view, done = memoryview(data), 0
        while done < count:
            got = self._readv(self.request_fd, [view[done:]])
            if got == 0:
                raise Closed
            done += got
        return data

    def read_request(self) -> tuple[dict, list]:
        (length,) = LENGTH.unpack(self.read_exactly(LENGTH.size))
        header, layouts = decode_header(bytes(self.read_exactly(length)))
        return header, [rebuild(dtype, shape, self.read_exactly(count))
                        for dtype, shape, count in layouts]

    def send_bytes(self, data) -> None:
        view = memoryview(data)
        while view:
            view = view[self._write(self.reply_fd, view):]

    def send(self, header: dict, arrays=()) -> None:
        buffers = encode_frame(header, arrays)
        if sum(len(buffer) for buffer in buffers) <= SMALL_FRAME:
            buffers = [b"".join(buffers)]
        for buffer in buffers:
            self.send_bytes(buffer)


def _exit_status(code) -> int:
    """The process status `sys.exit(code)` would give."""
    if code is None:
        return 0
    return code & 0xFF if isinstance(code, int) else 1


def _describe(error: BaseException) -> str:
    import traceback

    try:
        message = str(error)
    except BaseException:  # noqa: BLE001 - a candidate's __str__ may itself fail
        message = "<unprintable>"
    try:
        where = traceback.extract_tb(error.__traceback__)[-1]
        place = f" ({where.filename}:{where.lineno})"
    except Exception:  # noqa: BLE001 - no frame to name
        place = ""
    return truncated(f"{type(error).__name__}: {message}{place}")


# what torch's and the C++ allocators say when an allocation fails
_ALLOCATION_WORDS = ("can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc",
                     "Cannot allocate memory")


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    try:
        message = str(error)
    except BaseException:  # noqa: BLE001
        return False
    return isinstance(error, RuntimeError) and any(w in message for w in _ALLOCATION_WORDS)


def _as_wire_array(item, torch):
    """A returned tensor or array as a plain ndarray of a wire dtype; WireError otherwise."""
    import numpy as np

    if isinstance(item, torch.Tensor):
        try:
            item = item.detach().cpu().resolve_conj().resolve_neg().numpy()
        except Exception as error:  # noqa: BLE001
            raise WireError(f"a {item.dtype} tensor that cannot become a numpy array "
                            f"({type(error).__name__}: {error})") from None
    if type(item) is not np.ndarray:  # noqa: E721 - subclasses (masked arrays) do not cross
        kind = "numpy masked array" if isinstance(item, np.ma.MaskedArray) else (
            f"{type(item).__module__}.{type(item).__qualname__}"
            if isinstance(item, np.ndarray) else type(item).__qualname__)
        raise WireError(f"{kind}, not a tensor or a plain numpy array")
    native = item.dtype.newbyteorder("=") if item.dtype.byteorder not in "=|" else item.dtype
    if native.str not in wire_dtypes():
        raise WireError(f"an array of dtype {item.dtype}, not a numeric or bool dtype")
    if item.nbytes > MAX_ARRAY_BYTES:
        raise WireError(f"an array of {item.nbytes} bytes, over the {MAX_ARRAY_BYTES} limit")
    return np.ascontiguousarray(item, dtype=native)


def _output_frame(output, inside: float, torch) -> tuple[dict, list]:
    """The frame for one call's output: its arrays, or an `output` failure saying why not."""
    try:
        if isinstance(output, (tuple, list)):
            arrays = []
            for index, item in enumerate(output):
                try:
                    arrays.append(_as_wire_array(item, torch))
                except WireError as error:
                    raise WireError(f"item {index} of the returned {type(output).__name__} "
                                    f"is a {error}") from None
            form = "tuple"
        else:
            try:
                arrays, form = [_as_wire_array(output, torch)], "array"
            except WireError as error:
                raise WireError(f"returned a {error} (expected tensors: (phy2log, log2phy, "
                                f"logcnt) or phy2log alone)") from None
        if sum(array.nbytes for array in arrays) > MAX_ARRAY_BYTES:
            raise WireError(f"output over {MAX_ARRAY_BYTES} bytes")
    except WireError as error:
        return {"failure": ["output", truncated(f"output cannot be transferred: {error}")]}, []
    return {"form": form, "inside": inside}, arrays


def main(spec: str, request_fd, reply_fd, memory_limit="0") -> None:
    """The worker: load `spec`, say ready, then answer requests until the parent closes
    the pipe."""
    pipes = _Pipes(int(request_fd), int(reply_fd))
    try:
        _serve(spec, pipes, int(memory_limit))
    except (Closed, BrokenPipeError):  # the parent has gone: nothing to answer
        _exit(0)


def _serve(spec: str, pipes: _Pipes, memory_limit: int) -> None:
    for fd in (pipes.request_fd, pipes.reply_fd):
        os.set_inheritable(fd, False)  # not passed on to processes the candidate starts
    pipes.send({"pid": os.getpid()})
    limit_words = ""
    if memory_limit > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        limit_words = f" under the {describe_bytes(memory_limit)} memory limit"
    try:
        import numpy as np  # noqa: F401
        import torch

        from eplbench.errors import BadInput
        from eplbench.heuristics import load_heuristic
    except BaseException as error:  # noqa: BLE001 - e.g. a memory limit below torch's needs
        pipes.send({"failure": ["load", f"{spec}: the sandbox could not import torch and "
                                        f"eplbench{limit_words}: {_describe(error)}"]})
        _exit(0)
    torch.set_num_threads(1)
    _fresh_seeds(np, torch)
    from_numpy = torch.from_numpy  # bound before the candidate's import can replace it
    try:
        heuristic = load_heuristic(spec)
    except BadInput as error:
        _send_load_failure(pipes, str(error), limit_words)
    except SystemExit as stop:
        _exit(_exit_status(stop.code))
    except BaseException as error:  # noqa: BLE001 - whatever the candidate's import raised
        _send_load_failure(pipes, f"{spec}: import failed: {_describe(error)}", limit_words)
    pipes.send({"ready": True})
    _answer(heuristic, pipes, torch, from_numpy, limit_words)


def _fresh_seeds(np, torch) -> None:
    """New seeds for Python's, numpy's and torch's global generators, as a fresh interpreter
    has (a worker forked from the template would start from the template's state, the
    same in every worker)."""
    import random

    random.seed()
    np.random.seed()
    torch.seed()


def _send_load_failure(pipes: _Pipes, detail: str, limit_words: str) -> None:
    if "MemoryError" in detail and limit_words:
        detail += f" ({limit_words.strip()})"
    pipes.send({"failure": ["load", truncated(detail)]})
    _exit(0)


def _answer(heuristic, pipes: _Pipes, torch, from_numpy, limit_words: str,
            perf_counter=time.perf_counter, waitpid=os.waitpid) -> None:
    """Answer pings and calls until the parent closes the pipe (with functions bound
    before the candidate's code could replace them)."""
    send_bytes, read_request = pipes.send_bytes, pipes.read_request
    while True:
        _flush_prints()
        _reap(waitpid)
        request, arrays = read_request()
        op = request.get("op")
        if op == "ping":
            send_bytes(DONE)
            continue
        if op != "load":
            raise WireError(f"unexpected request {op!r}")
        topology = [int(value) for value in request["topology"]]
        old_plan = arrays.pop() if request.get("old_plan") is True else None
        tensors = [from_numpy(weight) for weight in arrays]
        # each call its own copy of the plan in place, made before the clock starts
        plans = ([from_numpy(old_plan.copy()) for _ in tensors]
                 if old_plan is not None and heuristic.old_plan_keyword else [None] * len(tensors))
        send_bytes(ARMED)
        request, _ = read_request()
        if request.get("op") != "time":
            raise WireError(f"unexpected request {request.get('op')!r} after load")
        outputs = []
        try:
            start = perf_counter()
            for tensor, plan in zip(tensors, plans):
                outputs.append(heuristic(tensor, *topology, old_plan=plan))
            inside = perf_counter() - start
        except SystemExit as stop:
            _exit(_exit_status(stop.code))
        except BaseException as error:  # noqa: BLE001 - any failure of the candidate is its result
            del outputs
            reason = "memory" if _out_of_memory(error) else "raised"
            detail = _describe(error)
            if reason == "memory":
                detail = f"an allocation failed{limit_words} ({detail})"
            pipes.send({"failure": [reason, truncated(detail)]})
            continue
        send_bytes(DONE)
        # wait to be asked for the outputs: blocked here, as after a ping, the worker leaves
        # the processor to the parent as soon as "done" is written
        request, _ = read_request()
        if request.get("op") != "send":
            raise WireError(f"unexpected request {request.get('op')!r} after done")
        del tensors, plans
        for output in outputs:
            try:
                header, output_arrays = _output_frame(output, inside, torch)
            except BaseException as error:  # noqa: BLE001 - e.g. out of memory converting it
                reason = "memory" if _out_of_memory(error) else "output"
                header, output_arrays = {"failure": [reason, _describe(error)]}, []
            pipes.send(header, output_arrays)
            if "failure" in header:
                break


def _reap(waitpid) -> None:
    """Collect the exit status of this process's children that have ended (the parent
    kills what a candidate leaves running after each call)."""
    while True:
        try:
            pid, _ = waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _exit(status: int) -> None:
    """End this process now with `status` (no interpreter shutdown: no atexit handler of
    the candidate runs), after what the candidate printed."""
    _flush_prints()
    os._exit(status)


def _flush_prints() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the candidate closed or replaced
            pass


if __name__ == "__main__":
    template(*sys.argv[1:])
