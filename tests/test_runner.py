"""The runner: heuristics timed interleaved, the same rows from a local process pool and a
Dask cluster, and a run that is interrupted resumes without redoing finished instances."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dask
import distributed
import pandas as pd

import eplbench as eb
from eplbench.results import read_results
from eplbench import runner
from eplbench.runner import TIMING_COLUMNS, RunOptions, kept_sandboxes, run_heuristics

LOGS_CALLS = Path(__file__).parent / "fixtures" / "heuristics" / "logs_calls.py"


def test_calls_are_interleaved_round_by_round(tmp_path, monkeypatch):
    """Warm-ups first, then round r starts r places further along the heuristics."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    first, second = (str(shutil.copy(LOGS_CALLS, tmp_path / f"{name}.py")) for name in "ab")
    run_heuristics([second], eb.load_instances("tiny")[:1],
                   RunOptions(repeats=3, baseline=first))
    order = [line.split()[0] for line in log.read_text().splitlines()]
    # a timed call may repeat itself when the clock is coarse: compare runs of one name
    runs = [name for index, name in enumerate(order) if index == 0 or order[index - 1] != name]
    # warm-ups a b, round 0 a b, round 1 b a, round 2 a b
    assert runs == ["a", "b", "a", "b", "a", "b"], order


def test_kept_sandboxes_start_each_child_once_for_several_runs(child_starts):
    started, instances = child_starts, eb.load_instances("tiny")[:2]
    run_heuristics(["zigzag"], instances[:1], RunOptions(repeats=1))
    assert len(started) == 2 and not runner._sandboxes  # zigzag, deepseek; stopped at the end
    with kept_sandboxes():
        with kept_sandboxes():
            run_heuristics(["zigzag"], instances[:1], RunOptions(repeats=1))
        run_heuristics(["zigzag"], instances[1:], RunOptions(repeats=1))
        assert len(started) == 4 and runner._sandboxes  # running until the outer block ends
    assert not runner._sandboxes


def test_dask_cluster_gives_the_same_rows_as_the_process_pool():
    instances = eb.load_instances("tiny")[:4]
    with dask.config.set({"distributed.worker.daemon": False}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as cluster:
            on_dask = run_heuristics(["zigzag", "swap_search"], instances,
                                     RunOptions(repeats=1, scheduler=cluster.scheduler_address))
            with distributed.Client(cluster.scheduler_address) as client:
                # a worker outlives the run: no sandbox of this run may be left on it
                left = client.run(lambda: len(__import__("eplbench.runner").runner._sandboxes))
            assert set(left.values()) == {0}, left
    pooled = run_heuristics(["zigzag", "swap_search"], instances, RunOptions(repeats=1, jobs=2))
    assert len(pooled) == 3 * sum(instance.num_layers for instance in instances)
    key = ["instance", "heuristic", "layer"]
    pd.testing.assert_frame_equal(
        *(table.drop(columns=[c for c in TIMING_COLUMNS if c in table])
          .sort_values(key).reset_index(drop=True) for table in (on_dask, pooled)))


def test_an_interrupted_run_resumes_without_redoing_finished_instances(tmp_path):
    log, out = tmp_path / "calls.log", tmp_path / "results.parquet"
    env = {**os.environ, "EPLBENCH_CALL_LOG": str(log), "EPLBENCH_CALL_SLEEP": "0.2"}
    command = [sys.executable, "-m", "eplbench", "run", "-H", str(LOGS_CALLS), "-i", "tiny",
               "--repeats", "1", "--out", str(out)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    first.wait(60)
    partial = read_results(out)  # a whole table, never a half-written file
    finished = set(partial.instance_hash)
    assert 0 < len(finished) < len(eb.load_instances("tiny"))  # stopped part way
    calls_before = Counter(log.read_text().split()[1::2])
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    calls_after = Counter(log.read_text().split()[1::2])
    done_weights = {_digest(i.weight) for i in eb.load_instances("tiny")
                    if i.content_hash in finished}
    assert all(calls_after[w] == calls_before[w] for w in done_weights)
    table = read_results(out)
    assert set(table.instance_hash) == {i.content_hash for i in eb.load_instances("tiny")}
    assert not table.duplicated(["instance", "heuristic", "layer"]).any()
    kept = table[table.instance_hash.isin(finished)].set_index(["instance", "heuristic", "layer"])
    earlier = partial.set_index(["instance", "heuristic", "layer"]).loc[kept.index]
    assert (kept.runtime_s == earlier.runtime_s).all()  # measured once, not again


def _digest(weight) -> str:
    import hashlib

    import torch

    return hashlib.sha256(torch.from_numpy(weight).numpy().tobytes()).hexdigest()[:16]


def test_a_killed_run_leaves_no_pool_worker_behind(tmp_path):
    """SIGKILL of `eplbench run -j 2` mid-run: its pool workers (and their sandboxes) die."""
    env = {**os.environ, "EPLBENCH_CALL_LOG": str(tmp_path / "calls.log"),
           "EPLBENCH_CALL_SLEEP": "0.5"}
    run = subprocess.Popen([sys.executable, "-m", "eplbench", "run", "-H", str(LOGS_CALLS),
                            "-i", "tiny", "--repeats", "1", "-j", "2"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "calls.log").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    children = _descendants(run.pid)
    assert children, "the run started no worker"
    run.kill()
    run.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]


def _descendants(root: int) -> list[int]:
    """Pids of every process below `root`, from /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                                 .split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parent_of.items():
            if ppid == parent:
                found.append(pid)
                frontier.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
