"""The sandbox: each heuristic in its own fresh interpreter (no `__main__` re-import, no
process shared with the baseline or another candidate), output back as plain arrays (never
unpickled), and exits, signals and failed starts reported without a traceback."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import eplbench as eb
from eplbench import sandbox
from eplbench.runner import warmup_weight
from eplbench.sandbox import Sandbox
from eplbench.sandbox_worker import WireError, decode_header, encode_frame, rebuild

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"
# generous: no test here depends on how fast a call is
LIMIT = 60.0


def fixture(name: str) -> str:
    return str(HEURISTICS / name)


@pytest.fixture(scope="module")
def instance():
    return next(i for i in eb.load_instances("tiny") if i.topology.num_nodes > 1)


def measure(instance, specs, time_limit=LIMIT, repeats=2):
    with Sandbox(time_limit) as box:
        return box.measure(specs, instance.weight, instance.topology.as_tuple(),
                           warmup_weight(instance), repeats)


def max_loads(instance, output):
    return eb.check_output(instance.weight, output, instance.topology).max_load


def test_a_script_without_a_main_guard_is_evaluated(tmp_path):
    """multiprocessing's spawn would import the script again in each child (which then
    evaluates again, and every program scores 0); the sandbox's children never import it."""
    program = tmp_path / "port.py"
    program.write_text("from eplbench.heuristics.deepseek_fast import rebalance_experts\n")
    script = tmp_path / "evaluate_it.py"
    script.write_text("import json\nimport eplbench\n"
                      f"print(json.dumps(eplbench.evaluate_stage1({str(program)!r})))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result and result["combined_score"] > 0, result


def test_output_is_never_unpickled(instance, tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("EPLBENCH_MARKER", str(marker))
    results = measure(instance, ["deepseek", fixture("returns_reducer.py")])
    assert not marker.exists()
    failure = results[fixture("returns_reducer.py")].failure
    assert failure.reason == "output" and "item 2" in failure.detail and "Payload" in failure.detail
    assert results["deepseek"].failure is None


@pytest.mark.parametrize("name, words", [("returns_masked.py", "masked array"),
                                         ("returns_own_class.py", "Placement"),
                                         ("returns_dict.py", "dict")])
def test_only_tensors_and_plain_arrays_cross(instance, name, words):
    """A masked array, an object of the candidate's own class, a dict: reason `output`,
    saying what came back; the heuristics measured beside it are unaffected."""
    results = measure(instance, ["deepseek", fixture(name), fixture("round_robin.py")])
    failure = results[fixture(name)].failure
    assert failure is not None and failure.reason == "output", failure
    assert words in failure.detail
    own = torch.from_numpy(instance.weight)
    expected = eb.load_heuristic("deepseek")(own, *instance.topology.as_tuple())
    for spec, output in [("deepseek", expected), (fixture("round_robin.py"), None)]:
        assert results[spec].failure is None and len(results[spec].seconds) == 2
        assert isinstance(results[spec].output, tuple)
        assert all(type(item) is np.ndarray for item in results[spec].output)
    assert all(np.array_equal(got, want.numpy())
               for got, want in zip(results["deepseek"].output, expected))


def test_a_candidate_cannot_patch_the_baseline(instance):
    """The candidate replaces the DeepSeek port's functions at import; the baseline runs in
    its own process, so its placements are those of a run without the candidate."""
    alone = measure(instance, ["deepseek"])["deepseek"]
    beside = measure(instance, ["deepseek", fixture("patches_deepseek.py")])
    assert beside[fixture("patches_deepseek.py")].failure is None
    assert beside["deepseek"].failure is None
    assert max_loads(instance, beside["deepseek"].output) == max_loads(instance, alone.output)
    assert all(np.array_equal(a, b) for a, b in zip(beside["deepseek"].output, alone.output))


@pytest.mark.parametrize("name, detail", [
    ("exits.py", "exited with status 0 during a call"),
    ("crashes.py", "exited with status 3 during a call"),
    ("kills_itself.py", "killed by signal 9 (SIGKILL) during a call")])
def test_an_exit_during_a_call_names_its_status(instance, name, detail):
    results = measure(instance, [fixture(name), "deepseek"])
    failure = results[fixture(name)].failure
    assert failure.reason == "crashed" and detail in failure.detail, failure
    assert results["deepseek"].failure is None


def test_a_bare_array_crosses_as_one_array(instance):
    """vLLM's policy returns phy2log alone: it arrives as that array, not in a tuple."""
    results = measure(instance, ["deepseek", fixture("vllm_style.py")])
    output = results[fixture("vllm_style.py")].output
    assert type(output) is np.ndarray and output.dtype == np.int64
    assert np.array_equal(output, results["deepseek"].output[0])


def test_a_call_that_never_returns_times_out_and_the_others_go_on(instance):
    results = measure(instance, ["deepseek", fixture("sleeps.py")], time_limit=1.0)
    assert results[fixture("sleeps.py")].failure.reason == "timeout"
    assert results["deepseek"].failure is None and len(results["deepseek"].seconds) == 2


def test_close_stops_the_processes_a_candidate_started(instance, tmp_path, monkeypatch):
    log = tmp_path / "pids"
    monkeypatch.setenv("EPLBENCH_PID_LOG", str(log))
    results = measure(instance, [fixture("spawns_sleeper.py")], repeats=1)
    assert results[fixture("spawns_sleeper.py")].failure is None
    pids = [int(line) for line in log.read_text().split()]
    assert pids and all(_gone(pid) for pid in pids)


def _gone(pid: int, wait: float = 10.0) -> bool:
    """The process has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_close_twice_and_after_a_failed_start_raises_nothing(instance, monkeypatch):
    fds_before = set(os.listdir("/proc/self/fd"))
    box = Sandbox(LIMIT)
    box.measure(["deepseek"], instance.weight, instance.topology.as_tuple(),
                warmup_weight(instance), 1)
    box.close()
    box.close()

    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sandbox.subprocess, "Popen", refuse)
    box = Sandbox(LIMIT)
    results = box.measure(["deepseek", fixture("round_robin.py")], instance.weight,
                          instance.topology.as_tuple(), warmup_weight(instance), 1)
    assert {m.failure.reason for m in results.values()} == {"crashed"}
    assert all("did not start" in m.failure.detail for m in results.values())
    box.close()
    box.close()
    monkeypatch.undo()

    # started, but the process ends before it has loaded anything
    monkeypatch.setattr(sandbox, "BOOT", "import os; os._exit(7)")
    box = Sandbox(LIMIT)
    results = box.measure(["deepseek"], instance.weight, instance.topology.as_tuple(),
                          warmup_weight(instance), 1)
    failure = results["deepseek"].failure
    assert failure.reason == "crashed" and "exited with status 7 while loading" in failure.detail
    box.close()
    box.close()
    assert set(os.listdir("/proc/self/fd")) <= fds_before


def test_a_load_failure_is_reported_once_per_sandbox(instance):
    with Sandbox(LIMIT) as box:
        for _ in range(2):
            results = box.measure(["deepseek", fixture("no_entry.py")], instance.weight,
                                  instance.topology.as_tuple(), warmup_weight(instance), 1)
            assert results[fixture("no_entry.py")].failure.reason == "load"
            assert results["deepseek"].failure is None


@pytest.mark.parametrize("meta", [
    {"dtype": "|O", "shape": [2]},  # object arrays would unpickle
    {"dtype": "<i8,<f8", "shape": [2]},  # structured
    {"dtype": "(2,)<i8", "shape": [2]},  # sub-array
    {"dtype": "<i8", "shape": [-1]},
    {"dtype": "<i8", "shape": [True]},
    {"dtype": "<i8", "shape": [2.0]},
    {"dtype": "<i8", "shape": [1 << 40, 1 << 40]},
    {"dtype": "<i8"},
])
def test_the_wire_refuses_what_is_not_plain_numeric_data(meta):
    with pytest.raises(WireError):
        decode_header(json.dumps({"arrays": [meta]}).encode())


def test_the_wire_round_trips_numeric_arrays():
    arrays = [np.arange(6, dtype=np.int32).reshape(2, 3), np.array([True, False]),
              np.zeros((0, 4), dtype=np.float64)]
    length, body, *raw = encode_frame({"seconds": 0.5}, arrays)
    header, layouts = decode_header(bytes(body))
    assert header["seconds"] == 0.5 and len(raw) == 2  # an empty array sends no bytes
    raw = iter(raw)
    rebuilt = [rebuild(dtype, shape, bytearray(next(raw)) if count else bytearray())
               for dtype, shape, count in layouts]
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(arrays, rebuilt))
