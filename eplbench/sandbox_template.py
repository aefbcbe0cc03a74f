"""The template the sandbox's keepers are forked from.

A fresh interpreter that imports torch costs about two seconds of processor time; a
keeper forked from one that already has costs milliseconds. Each eplbench process (and
each process forked from it: a forked copy never uses its parent's) starts one template
the first time a sandbox needs a keeper: an interpreter started with `subprocess` (never
by multiprocessing, so the caller's `__main__` is not imported again) that loads
`sandbox_worker` by its path, imports numpy, torch and eplbench's heuristic loader, and
runs no candidate code, ever (`sandbox_worker.template`). For each keeper eplbench sends
it a request on a Unix socket with the worker's two pipe ends, the write end of a status
pipe and eplbench's stderr; the template forks, the child takes eplbench's current import
path, environment and working directory and becomes the keeper, and the template answers
with the keeper's pid (and a pidfd of it) and later writes its exit code on the status
pipe. The template ends once eplbench's end of the socket has closed (eplbench closed it
at exit, or died) and every keeper has ended (each ends with eplbench: it watches it).

What torch and numpy read at import (thread counts, allocator settings) comes from the
environment the template started in; the template runs single-threaded libraries
(OMP/OpenBLAS/MKL thread counts of 1, as spec §7 runs heuristics).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

from eplbench.sandbox_worker import STATUS

# seconds the template may take to start (import torch and eplbench) and fork a keeper
STARTUP_LIMIT = 120.0
# the template's first line: the parent's import path, then sandbox_worker.template(...)
# loaded from its file, not as `eplbench.sandbox_worker` (a candidate that replaces that
# module in sys.modules changes nothing its worker runs)
BOOT = ("import sys, json, importlib.util as u; sys.path[:] = json.loads(sys.argv[1]); "
        "s = u.spec_from_file_location('eplbench_sandbox_template', sys.argv[2]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); m.template(*sys.argv[3:])")
WORKER_FILE = str(Path(__file__).with_name("sandbox_worker.py"))
# the template's libraries run one thread each (a fork copies only the forking thread)
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
# largest reply the template sends ({"pid": n} or {"error": text})
MAX_REPLY_BYTES = 1 << 16


class TemplateError(Exception):
    """The template could not fork a keeper (it died, or refused the request)."""


class Keeper:
    """A keeper the template forked: its pid, a pidfd of it (None where the system has
    none) and the read end of the pipe its exit code arrives on."""

    def __init__(self, pid: int, pidfd: int | None, status_fd: int):
        self.pid = pid
        self.returncode: int | None = None  # as subprocess gives it (negative: the signal)
        self._pidfd = pidfd
        self._status: int | None = status_fd

    def poll(self) -> int | None:
        return self.wait(0.0)

    def wait(self, timeout: float) -> int | None:
        """The exit code once the keeper has ended (waiting up to `timeout` seconds), else
        None; None for good if the template died before it could tell."""
        if self.returncode is None and self._status is not None:
            if _readable(self._status, timeout):
                data = os.read(self._status, STATUS.size)
                if len(data) == STATUS.size:
                    (self.returncode,) = STATUS.unpack(data)
                self._close_status()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the keeper (through its pidfd, so never a process that took its pid)."""
        if self.returncode is not None:
            return
        with suppress(OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def close(self) -> None:
        self._close_status()
        if self._pidfd is not None:
            with suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def _close_status(self) -> None:
        if self._status is not None:
            with suppress(OSError):
                os.close(self._status)
            self._status = None


def start_keeper(spec: str, request_fd: int, reply_fd: int, memory_limit: int) -> Keeper:
    """Have this process's template fork a keeper for `spec`, whose worker reads requests on
    `request_fd` and writes replies on `reply_fd` (the caller closes its copies); a dead
    template is replaced once. Raises TemplateError or OSError when no keeper started."""
    message = json.dumps({"spec": spec, "memory_limit": int(memory_limit),
                          "path": list(sys.path), "env": dict(os.environ),
                          "cwd": os.getcwd()}).encode()
    with _state.lock:
        try:
            return _state.current().fork_keeper(message, request_fd, reply_fd)
        except (TemplateError, OSError):
            _state.discard()
        return _state.current().fork_keeper(message, request_fd, reply_fd)


class _Template:
    """A running template and eplbench's end of its control socket."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, *_interpreter_flags(), "-c", BOOT, json.dumps(sys.path),
                 WORKER_FILE, str(os.getpid()), str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=2 if _has_stderr() else subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env={**os.environ, **SINGLE_THREADED}, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours

    def fork_keeper(self, message: bytes, request_fd: int, reply_fd: int) -> Keeper:
        status_read, status_write = os.pipe()
        out_fd = _stderr_or_null()
        try:
            socket.send_fds(self.control, [message], [request_fd, reply_fd, status_write,
                                                      out_fd])
            os.close(status_write)
            status_write = None
            reply, fds = self._reply()
        except OSError as error:
            os.close(status_read)
            raise TemplateError(self._ended(f"{type(error).__name__}: {error}")) from None
        except BaseException:
            os.close(status_read)
            raise
        finally:
            if status_write is not None:
                os.close(status_write)
            if out_fd != 2:
                os.close(out_fd)
        pid = reply.get("pid")
        if type(pid) is not int or pid <= 0:
            os.close(status_read)
            for fd in fds:
                os.close(fd)
            raise TemplateError(str(reply.get("error", "a malformed reply")))
        return Keeper(pid, fds[0] if fds else None, status_read)

    def _reply(self) -> tuple[dict, list[int]]:
        if not _readable(self.control.fileno(), STARTUP_LIMIT):
            raise TemplateError(f"no answer within {STARTUP_LIMIT:g} s")
        data, fds, _, _ = socket.recv_fds(self.control, MAX_REPLY_BYTES, 1)
        if not data:
            raise TemplateError(self._ended("it closed its socket"))
        try:
            return json.loads(data), fds
        except ValueError:
            raise TemplateError("a malformed reply") from None

    def _ended(self, otherwise: str) -> str:
        """'the template has ended (exit status n)' once it has (it closed the socket on its
        way out: waits a little for its status), else `otherwise`."""
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        code = self.process.poll()
        return otherwise if code is None else f"the template has ended (exit status {code})"

    def stop(self) -> None:
        """Close the socket (a live template ends once its keepers have) and reap it if
        it has ended."""
        with suppress(OSError):
            self.control.close()
        self.process.poll()


class _State:
    """This process's template (None until the first keeper), and the lock that keeps one
    request and its reply together on the socket."""

    def __init__(self):
        self.lock = threading.Lock()
        self.template: _Template | None = None

    def current(self) -> _Template:
        if self.template is None:
            self.template = _Template()
        return self.template

    def discard(self) -> None:
        template, self.template = self.template, None
        if template is not None:
            template.stop()
            with suppress(OSError):
                template.process.kill()
            with suppress(subprocess.TimeoutExpired):
                template.process.wait(10)

    def forget_in_child(self) -> None:
        """In a process forked from this one: a template of its own when it needs one (the
        socket copy is closed; the parent's template serves the parent only)."""
        template, self.template = self.template, None
        self.lock = threading.Lock()
        if template is not None:
            with suppress(OSError):
                template.control.close()
            template.process.returncode = 0  # not ours to wait for


_state = _State()
os.register_at_fork(after_in_child=_state.forget_in_child)


@atexit.register
def _close_template() -> None:
    if _state.template is not None:
        _state.template.stop()


def _readable(fd: int, timeout: float) -> bool:
    """Whether `fd` has data (or end of file) within `timeout` seconds (poll, not select:
    a busy process's descriptors may be numbered past select's limit of 1024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _stderr_or_null() -> int:
    """Our stderr's descriptor, or /dev/null opened if there is none (the caller closes
    that one)."""
    return 2 if _has_stderr() else os.open(os.devnull, os.O_WRONLY)


def _has_stderr() -> bool:
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def _interpreter_flags() -> list[str]:
    """This interpreter's -W / -X / -O ... flags, for the child (as multiprocessing does)."""
    try:
        return subprocess._args_from_interpreter_flags()
    except Exception:  # noqa: BLE001 - a private helper: without it, no flags
        return []
