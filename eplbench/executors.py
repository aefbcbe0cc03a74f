"""Where work units run: in this process, in a local process pool (`jobs` > 1), or on a Dask
cluster (`scheduler`: the address of its scheduler, e.g. tcp://10.0.0.5:8786). The same
function runs on the same units everywhere; results come back as units finish.

Dask workers run each heuristic call in a child process (the sandbox), started with
subprocess, which works from daemonic worker processes too; the children are stopped
after every unit, since a worker outlives the run.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import Callable, Iterator, Sequence

from eplbench.errors import BadInput

# seconds to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = 30


def run_units(function: Callable, units: Sequence, jobs: int = 1,
              scheduler: str | None = None,
              cleanup: Callable[[], None] | None = None) -> Iterator[tuple[object, object]]:
    """(unit, function(unit)) for every unit, in the order they finish. On a Dask cluster,
    `cleanup()` runs on the worker after each unit: a worker outlives the run, and nothing a
    unit started (sandbox processes) may be left there for the next run to find."""
    if scheduler is not None:
        task = partial(_then_clean, function, cleanup) if cleanup else function
        yield from _on_dask(task, units, scheduler)
    elif jobs > 1 and len(units) > 1:
        yield from _in_pool(function, units, jobs)
    else:
        for unit in units:
            yield unit, function(unit)


def _then_clean(function: Callable, cleanup: Callable[[], None], unit):
    """function(unit), with cleanup() after it whatever happens."""
    try:
        return function(unit)
    finally:
        cleanup()


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: on Linux, be killed when the process that started the pool
    dies (a SIGKILLed `eplbench run -j N` leaves no worker behind)."""
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def _in_pool(function, units, jobs: int):
    import os

    pool = ProcessPoolExecutor(min(jobs, len(units)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(function, unit): unit for unit in units}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_dask(function, units, address: str):
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise BadInput("--scheduler needs Dask: pip install 'eplbench[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise BadInput(f"{address}: no Dask scheduler answers there ({error})") from None
    with client:
        futures = [client.submit(function, unit, pure=False) for unit in units]
        unit_of = {future.key: unit for future, unit in zip(futures, units)}
        for future in dask_completed(futures):
            yield unit_of[future.key], future.result()
