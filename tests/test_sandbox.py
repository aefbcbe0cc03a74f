"""The sandbox: each heuristic in its own fresh interpreter (no `__main__` re-import, no
process shared with the baseline or another candidate), output back as plain arrays (never
unpickled), and exits, signals and failed starts reported without a traceback; calls timed
by the parent (a candidate's clocks and forged frames change nothing), nothing a candidate
starts outliving its call or eplbench, a memory cap, and load failures found up front."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import eplbench as eb
from eplbench import sandbox, sandbox_template
from eplbench.runner import warmup_weight
from eplbench.sandbox import Sandbox
from eplbench.sandbox_worker import WireError, decode_header, encode_frame, rebuild
from eplbench.timing import DEEPSEEK_V3_SHAPE, deepseek_v3_weight

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
    """sleeps.py blocks until its process is killed: only the sandbox killing it at the
    limit lets `measure` return (the join's guard only turns a hang into a failure)."""
    import threading

    box = {}
    worker = threading.Thread(target=lambda: box.update(results=measure(
        instance, ["deepseek", fixture("sleeps.py")], time_limit=1.0)), daemon=True)
    worker.start()
    worker.join(timeout=600)
    assert not worker.is_alive(), "a call past its time limit was never killed"
    results = box["results"]
    assert results[fixture("sleeps.py")].failure == sandbox.Failure(
        "timeout", "no return within the 1 s limit")
    assert results["deepseek"].failure is None and len(results["deepseek"].seconds) == 2


def test_loads_in_any_byte_order_and_layout_reach_the_heuristic_as_the_same_numbers(instance):
    """A big-endian, non-contiguous copy of the loads (warm-up included) gives the
    heuristic the same numbers: the same placement as the native loads."""
    def foreign(weight):
        return np.asfortranarray(weight.astype(">i8"))

    native = measure(instance, ["deepseek"], repeats=1)["deepseek"]
    with Sandbox(LIMIT) as box:
        result = box.measure(["deepseek"], foreign(instance.weight),
                             instance.topology.as_tuple(),
                             foreign(warmup_weight(instance)), 1)["deepseek"]
    assert result.failure is None, result.failure
    assert all(np.array_equal(a, b) for a, b in zip(result.output, native.output))


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
    box = Sandbox(LIMIT)
    box.measure(["deepseek"], instance.weight, instance.topology.as_tuple(),
                warmup_weight(instance), 1)
    box.close()
    box.close()
    fds_before = set(os.listdir("/proc/self/fd"))  # the template's socket among them

    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    # no template can start
    monkeypatch.setattr(sandbox_template, "_state", sandbox_template._State())
    monkeypatch.setattr(sandbox_template.subprocess, "Popen", refuse)
    box = Sandbox(LIMIT)
    results = box.measure(["deepseek", fixture("round_robin.py")], instance.weight,
                          instance.topology.as_tuple(), warmup_weight(instance), 1)
    assert {m.failure.reason for m in results.values()} == {"crashed"}
    assert all("did not start: BlockingIOError: [Errno 11]" in m.failure.detail
               for m in results.values())
    box.close()
    box.close()
    monkeypatch.undo()

    # a template that ends before it has forked anything
    monkeypatch.setattr(sandbox_template, "_state", sandbox_template._State())
    monkeypatch.setattr(sandbox_template, "BOOT", "import os; os._exit(7)")
    box = Sandbox(LIMIT)
    results = box.measure(["deepseek"], instance.weight, instance.topology.as_tuple(),
                          warmup_weight(instance), 1)
    failure = results["deepseek"].failure
    assert failure.reason == "crashed" and "did not start" in failure.detail, failure
    assert "did not start: TemplateError: the template has ended (exit status 7)" in failure.detail
    box.close()
    box.close()
    monkeypatch.undo()
    assert set(os.listdir("/proc/self/fd")) <= fds_before


# ---------------------------------------------------------------- the template


def test_workers_forked_from_the_template_take_the_callers_context_at_start(
        instance, tmp_path, monkeypatch):
    """One template serves every sandbox of a process; each worker forked from it still
    gets the working directory, environment and import path eplbench has when the worker
    starts (not when the template did), and generators seeded afresh."""
    assert measure(instance, ["deepseek"], repeats=1)["deepseek"].failure is None
    template = sandbox_template._state.template.process.pid
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "context_marker.py").write_text("VALUE = 'found'\n")
    log = tmp_path / "context.log"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EPLBENCH_CONTEXT_LOG", str(log))
    monkeypatch.setenv("EPLBENCH_CONTEXT_VARIABLE", "set late")
    monkeypatch.syspath_prepend(str(extra))
    spec = fixture("reports_context.py")
    for _ in range(2):
        with Sandbox(LIMIT) as box:
            assert box.load_failures([spec]) == {}
            assert _parent_of(box._children[spec]._keeper.pid) == template
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    for seen in (first, second):
        assert Path(seen["cwd"]).resolve() == tmp_path.resolve()
        assert seen["variable"] == "set late" and seen["marker"] == "found"
    assert all(a != b for a, b in zip(first["draws"], second["draws"])), (first, second)


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_killed_template_is_replaced(instance):
    assert measure(instance, ["deepseek"], repeats=1)["deepseek"].failure is None
    old = sandbox_template._state.template.process
    old.kill()
    old.wait(10)
    results = measure(instance, ["deepseek", fixture("round_robin.py")], repeats=1)
    assert all(result.failure is None for result in results.values()), results
    assert sandbox_template._state.template.process.pid != old.pid


def test_descriptors_numbered_past_1024_are_waited_on(instance, monkeypatch):
    """A busy process's pipes and sockets may be numbered past select's limit of 1024: the
    template, its socket and the status pipes still work (poll, not select)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open 1200 descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        monkeypatch.setattr(sandbox_template, "_state", sandbox_template._State())
        specs = ["deepseek", fixture("round_robin.py")]
        fds_before = None
        for _ in range(2):  # the first starts the template
            with Sandbox(LIMIT) as box:
                results = box.measure(specs, instance.weight, instance.topology.as_tuple(),
                                      warmup_weight(instance), 1)
                keepers = [box._children[spec]._keeper.pid for spec in specs]
            assert all(result.failure is None for result in results.values()), results
            assert all(_gone(pid) for pid in keepers)
            fds_before = fds_before or set(os.listdir("/proc/self/fd"))
        assert set(os.listdir("/proc/self/fd")) <= fds_before  # each keeper's fds closed
        assert sandbox_template._state.template.control.fileno() > 1024
    finally:
        sandbox_template._state.discard()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("how, reason, detail", [
    ("exit", "crashed", "its process exited with status 7 while loading"),
    ("hang", "timeout", "its process did not load it within 2 s"),
    ("garble", "load", "its process sent a malformed reply ("),
    ("forge", "load", "its process sent a malformed reply"),
    ("forge_empty", "load", "its process sent a malformed reply")])
def test_a_candidate_that_fails_while_loading_is_named_with_the_reason(
        instance, monkeypatch, how, reason, detail):
    monkeypatch.setenv("EPLBENCH_AT_IMPORT", how)
    monkeypatch.setattr(sandbox, "STARTUP_LIMIT", 2.0)  # the hanging one waits this long
    spec = fixture("misbehaves_at_import.py")
    failure = measure(instance, [spec], repeats=1)[spec].failure
    assert failure is not None and failure.reason == reason, failure
    if how.startswith("forge"):  # a well-formed frame that says nothing it may say
        assert failure.detail == f"{spec}: {detail}"
    else:
        assert failure.detail.startswith(f"{spec}: {detail}"), failure


def test_a_load_failure_is_reported_once_per_sandbox(instance):
    """Found once, the failure is given again without a new process; after close the
    sandbox starts afresh."""
    spec, tries = fixture("no_entry.py"), []
    with Sandbox(LIMIT) as box:
        for round_index in range(3):
            if round_index == 2:
                box.close()
            results = box.measure(["deepseek", spec], instance.weight,
                                  instance.topology.as_tuple(), warmup_weight(instance), 1)
            assert results[spec].failure.reason == "load"
            assert results["deepseek"].failure is None
            tries.append(box._children[spec])
    assert tries[1] is tries[0] and tries[2] is not tries[0]


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


# ---------------------------------------------------------------- timing from outside


def measure_v3(specs, repeats=3):
    """Each spec timed on DeepSeek-V3-shaped loads (a call of the vectorised port takes
    milliseconds: 20 of them are well above any pipe's round trip)."""
    with Sandbox(LIMIT) as box:
        return box.measure(specs, deepseek_v3_weight(0).numpy(),
                           DEEPSEEK_V3_SHAPE["hierarchical"], deepseek_v3_weight(1).numpy(),
                           repeats)


def test_a_candidates_clocks_do_not_time_it():
    """A candidate that replaces perf_counter, perf_counter_ns, monotonic, process_time and
    eplbench.timing.timed_call at import, doing 20x DeepSeek's work, is as slow as an honest
    candidate doing the same work (the parent's clock times both), and clearly slower than
    1x. Generous factors: only ratios of calls made side by side."""
    patched, honest = fixture("patches_clocks.py"), fixture("deepseek_20x.py")
    results = measure_v3([patched, honest, "deepseek_fast"])
    assert all(m.failure is None and len(m.seconds) == 3 for m in results.values()), results
    honest_time = results[honest].median_seconds
    assert 0.5 < results[patched].median_seconds / honest_time < 2.0, results
    assert results["deepseek_fast"].median_seconds / honest_time < 0.4, results
    # the worker's own clock is kept beside the parent's, one figure per sample
    assert all(len(m.inside_seconds) == len(m.seconds) for m in results.values())
    assert all(m.overhead_seconds > 0 for m in results.values())


def test_a_forged_done_frame_is_refused():
    """A candidate writing the worker's "done" onto its reply pipe as its call starts (a
    parent timing until "done" would stop its clock at once) is refused: reason output."""
    meddler = fixture("meddles.py")
    results = measure_v3([meddler, "deepseek_fast"], repeats=1)
    failure = results[meddler].failure
    assert failure is not None and failure.reason == "output", failure
    assert "malformed" in failure.detail
    assert not results[meddler].seconds
    assert results["deepseek_fast"].failure is None


@pytest.mark.parametrize("meddle, reason, detail", [
    # a failure may name only what a worker can report; "timeout" is the parent's to give
    ("forge_failure", "output", "the heuristic's process sent a malformed reply"),
    ("close_pipes", "crashed",
     "the heuristic's process closed its pipe without exiting (it was killed) during a call"),
    # the template that would report the keeper's exit is gone
    ("kill_template", "crashed", "the heuristic's process stopped answering during a call")])
def test_a_candidate_meddling_with_the_plumbing_gets_a_reason_of_its_own(
        instance, monkeypatch, meddle, reason, detail):
    monkeypatch.setenv("EPLBENCH_MEDDLE", meddle)
    meddler = fixture("meddles.py")
    results = measure(instance, [meddler, "deepseek"], repeats=1)
    assert results[meddler].failure == sandbox.Failure(reason, detail)
    assert results["deepseek"].failure is None
    # and the next sandbox works (with a new template where the old one was killed)
    assert measure(instance, ["deepseek"], repeats=1)["deepseek"].failure is None


def test_a_signal_without_a_name_is_reported_by_number(instance, monkeypatch):
    monkeypatch.setenv("EPLBENCH_SIGNAL", "40")  # a real-time signal: it terminates
    failure = measure(instance, [fixture("kills_itself.py")], repeats=1)[
        fixture("kills_itself.py")].failure
    assert failure == sandbox.Failure(
        "crashed", "the heuristic's process was killed by signal 40 (an unknown signal) "
                   "during a call")


def test_perturbed_loads_are_seeded_and_floats_move_by_at_most_one_percent():
    integers = np.arange(64, dtype=np.int64).reshape(2, 32) * 1000
    assert np.array_equal(sandbox.perturbed(integers, 3), sandbox.perturbed(integers, 3))
    assert not np.array_equal(sandbox.perturbed(integers, 3), sandbox.perturbed(integers, 4))
    floats = np.random.default_rng(0).uniform(1e-3, 1e3, (4, 64))
    moved = sandbox.perturbed(floats, 1)
    assert moved.dtype == floats.dtype and (np.abs(moved / floats - 1) <= 0.01).all()
    assert (moved > floats).any() and (moved < floats).any()
    assert sandbox.perturbed(floats.astype(np.float32), 1).dtype == np.float32
    # what is neither an integer nor a float, or past int64, is copied
    for other in (np.array([[True, False]]), np.array([[2**64 - 1, 5]], dtype=np.uint64)):
        assert np.array_equal(sandbox.perturbed(other, 1), other)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_perturbed_integer_loads_move_as_documented(dtype):
    """Each integer load moves by its 1/32 (rounded down) up, down or not at all, plus 0
    or 1 token, never below 0 nor past its dtype, and keeps its dtype."""
    top = int(np.iinfo(dtype).max)
    weight = np.random.default_rng(0).integers(0, top, (4, 256), endpoint=True).astype(dtype)
    weight[0, :64], weight[1, :64] = 0, top
    moved = sandbox.perturbed(weight, 1)
    assert moved.dtype == weight.dtype
    loads, after = weight.astype(object), moved.astype(object)  # Python ints: no wrapping
    step, share = after - loads, loads // 32
    assert ((after >= 0) & (after <= top)).all()
    free = loads + share + 1 <= top  # room to move up in full
    allowed = [step == direction * share + token for direction in (-1, 0, 1) for token in (0, 1)]
    assert np.logical_or.reduce(allowed)[free].all()
    wide = free & (share >= 2)
    for direction in (-1, 0, 1):  # every direction is taken somewhere
        assert ((step == direction * share) | (step == direction * share + 1))[wide].any()
    assert set(step[0, :64]) == {0, 1}  # zero loads: a token or none
    assert (after[1, :64] <= top).all() and (after[1, :64] < top).any()  # at the top: down


def test_calls_after_the_first_get_loads_of_their_own(instance, tmp_path, monkeypatch):
    """No timed call repeats an earlier one's loads (a memo of outputs would make repeats
    free): the first timed call gets the instance's loads, every later one a perturbed copy;
    the baseline and the candidate get the same sequence."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    first, second = (str(shutil.copy(HEURISTICS / "logs_calls.py", tmp_path / f"{name}.py"))
                     for name in "ab")
    results = measure(instance, [first, second], repeats=4)
    assert all(m.failure is None and len(m.seconds) == 4 for m in results.values())
    calls = {name: [] for name in "ab"}
    for line in log.read_text().splitlines():
        name, digest = line.split()
        calls[name].append(digest)
    for name in "ab":
        timed = calls[name][1:]  # after the warm-up
        assert len(timed) == len(set(timed)), timed
        assert timed[0] == _digest(instance.weight)
    assert calls["a"][1:] == calls["b"][1:]
    # the output kept is the one on the instance's own loads
    own = eb.load_heuristic("deepseek_fast")(torch.from_numpy(instance.weight),
                                             *instance.topology.as_tuple())
    assert all(np.array_equal(got, want.numpy())
               for got, want in zip(results[first].output, own))


def _digest(weight) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(weight).tobytes()).hexdigest()[:16]


def test_under_a_coarse_clock_calls_are_batched_and_every_output_checked(instance, tmp_path,
                                                                         monkeypatch):
    """With a clock tick longer than a call the parent times doubling batches of calls,
    each on loads of its own; an output that is not a placement in any of them refuses the
    heuristic (reason output), though the first call's was valid. One whose first output
    is invalid too is left to the scorer, which names its own reason (shape)."""
    from eplbench import timing

    monkeypatch.setattr(timing, "_tick", 0.002)  # 5 ticks: 10 ms a sample
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    results = measure(instance, ["deepseek_fast", fixture("breaks_after_first.py"),
                                 fixture("wrong_shape.py")], repeats=4)
    wrong = results[fixture("wrong_shape.py")]
    assert wrong.failure is None and len(wrong.seconds) == 4
    with pytest.raises(eb.InvalidPlacement, match="shape"):
        eb.check_output(instance.weight, wrong.output, instance.topology)
    good = results["deepseek_fast"]
    assert good.failure is None and len(good.seconds) == 4
    assert good._next_load > 2  # batches of more than one call
    failure = results[fixture("breaks_after_first.py")].failure
    assert failure is not None and failure.reason == "output", failure
    assert "timed call" in failure.detail and "invalid placement" in failure.detail
    # no call after the batch that held the first invalid output (call 3: the warm-up,
    # then a sample of one call, then the batch of two calls or the next sample of one)
    assert len(log.read_text().split()) in (3, 4)


class _ScriptedChild:
    """Stands in for a heuristic's process: a batch of n calls takes `overhead` + n *
    `per_call` seconds by the parent's clock (half of that inside) and returns `output`
    for each call."""

    def __init__(self, per_call: float, overhead: float, output):
        self.per_call, self.overhead, self.output, self.batches = per_call, overhead, output, []

    def call(self, loads, topology, time_limit, old_plan=None):
        self.batches.append(len(loads))
        assert len(self.batches) < 20, "no end to the doubling"
        work = self.per_call * len(loads)
        return self.overhead + work, work / 2, [self.output] * len(loads)


@pytest.mark.parametrize("per_call, batches", [
    (0.75, [1]),
    (0.25, [1]),  # a call of the threshold itself (the 0.25 s round trip) is enough
    (0.1, [1, 2, 4])])  # doubling until the batch reaches the threshold
def test_a_sample_is_its_time_less_an_empty_round_trips_per_call(instance, monkeypatch,
                                                                  per_call, batches):
    result, child = _scripted_sample(instance, monkeypatch, per_call, LIMIT)
    assert result.failure is None and child.batches == batches
    assert result.seconds == [pytest.approx(per_call, abs=1e-12)]
    assert result.inside_seconds == [pytest.approx(per_call / 2, abs=1e-12)]


def test_the_doubling_stops_at_the_largest_batch(instance, monkeypatch):
    """Calls too short for the clock even by the thousand: the sample is the largest
    batch's time per call, never a batch beyond it."""
    monkeypatch.setattr(sandbox, "MAX_BATCH", 4)
    result, child = _scripted_sample(instance, monkeypatch, 0.01, LIMIT)
    assert result.failure is None and child.batches == [1, 2, 4]
    assert result.seconds == [pytest.approx(0.01, abs=1e-12)]


def test_a_sample_over_the_time_limit_is_a_timeout(instance, monkeypatch):
    result, _ = _scripted_sample(instance, monkeypatch, 0.75, 0.75)  # at the limit: fine
    assert result.failure is None
    result, _ = _scripted_sample(instance, monkeypatch, 0.8, 0.75)
    assert result.failure == sandbox.Failure("timeout", "a call took 0.8 s, over the 0.75 s "
                                                        "limit")


def _scripted_sample(instance, monkeypatch, per_call: float, time_limit: float):
    """One `_timed` sample of a scripted child (round trip 0.25 s, the parent's clock
    fine enough that the round trip is the threshold): (the Measurement, the child)."""
    from eplbench import timing

    monkeypatch.setattr(timing, "_tick", 1e-6)
    output = tuple(part.numpy() for part in eb.load_heuristic("deepseek_fast")(
        torch.from_numpy(instance.weight), *instance.topology.as_tuple()))
    box = Sandbox(time_limit)
    child = box._children["scripted"] = _ScriptedChild(per_call, 0.25, output)
    result = sandbox.Measurement()
    alive = box._timed("scripted", sandbox._Loads(instance.weight),
                       instance.topology.as_tuple(), result)
    assert alive == (result.failure is None)
    box._children.clear()
    return result, child


@pytest.mark.parametrize("answer, failure", [
    ("done", None),
    ("armed", sandbox.Failure("output", "the heuristic's process sent a malformed reply (an "
                                        "unexpected reply to a ping)")),
    ("silence", sandbox.Failure("timeout", "its process did not answer a ping within the "
                                           "0.25 s limit")),
    ("close", sandbox.Failure("crashed", "the heuristic's process stopped answering between "
                                         "calls"))])
def test_calibration_times_its_pings_and_names_what_went_wrong(monkeypatch, answer, failure):
    """A thread plays the worker: it answers every ping with `answer` (or not at all, or
    closes its pipe after the first); calibration sends PINGS + 2 pings when all goes well
    and says why it stopped when not."""
    from eplbench.sandbox_worker import ARMED, DONE

    monkeypatch.setattr(sandbox, "PIPE_GRACE", 0.25)
    child = sandbox._Child("played")
    request_read, child._requests = os.pipe()
    child._replies, reply_write = os.pipe()
    pings = []

    def worker():
        with open(request_read, "rb", buffering=0) as requests:
            while requests.read(len(sandbox.PING)):
                pings.append(1)
                if answer == "close":
                    break
                if answer != "silence":
                    os.write(reply_write, DONE if answer == "done" else ARMED)
        os.close(reply_write)

    if answer == "done":  # the k-th round trip takes k + 1 seconds by a scripted clock
        ticks = iter([tick for k in range(sandbox.PINGS + 2) for tick in (10.0 * k,
                                                                          11.0 * k + 1)])
        monkeypatch.setattr(sandbox.time, "perf_counter", lambda: next(ticks))
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    # only the silent worker's test waits for the clock
    assert child.calibrate(0.25 if answer == "silence" else LIMIT) == failure
    overhead = child.overhead
    child.close()
    thread.join(10)
    if failure is None:  # the median of all but the first two: of 3 ... 9 seconds
        assert len(pings) == sandbox.PINGS + 2 and overhead == 6.0


def _played_call(loads: list, on_load: bytes, outputs: list, time_limit=LIMIT) -> object:
    """`_Child.call` against a thread playing the worker: it answers the load frame with
    `on_load`, "time" with DONE and "send" with `outputs`, a list of (header, arrays)
    frames, whose JSON may hold NaN (what a real worker never sends), or raw bytes."""
    from eplbench.sandbox_worker import DONE, LENGTH

    child = sandbox._Child("played")
    request_read, child._requests = os.pipe()
    child._replies, reply_write = os.pipe()

    def frame(header, arrays):
        metas = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
        body = json.dumps({**header, "arrays": metas}).encode()
        return LENGTH.pack(len(body)) + body + b"".join(a.tobytes() for a in arrays)

    def worker():
        with open(request_read, "rb", buffering=0) as requests:
            def exactly(count):
                data = b""
                while len(data) < count and (chunk := requests.read(count - len(data))):
                    data += chunk
                return data

            while head := exactly(LENGTH.size):
                header, layouts = decode_header(exactly(LENGTH.unpack(head)[0]))
                for _, _, count in layouts:
                    exactly(count)
                answer = {"load": on_load, "time": DONE,
                          "send": b"".join(output if isinstance(output, bytes)
                                           else frame(*output) for output in outputs)}
                os.write(reply_write, answer[header["op"]])
        os.close(reply_write)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        return child.call(loads, (4, 1, 1, 2), time_limit)
    finally:
        child.close()
        thread.join(10)


def test_a_call_takes_only_well_formed_output_frames():
    from eplbench.sandbox_worker import ARMED, DONE, LENGTH, MAX_HEADER_BYTES

    load, plan = np.ones((1, 4), np.int64), np.arange(4, dtype=np.int64)
    malformed = "the heuristic's process sent a malformed reply ({})"
    not_one = malformed.format("an output frame that is not one")
    cases = [
        ([load], DONE, [], malformed.format("an unexpected reply to the loads")),
        ([load], ARMED, [({"form": "tuple", "inside": -1.0}, [plan])], not_one),
        ([load], ARMED, [({"form": "tuple", "inside": float("nan")}, [plan])], not_one),
        ([load], ARMED, [({"form": "tuple", "inside": "0.5"}, [plan])], not_one),
        ([load], ARMED, [({"form": "list", "inside": 0.5}, [plan])], not_one),
        ([load], ARMED, [({"form": "array", "inside": 0.5}, [plan, plan])], not_one),
        ([load, load], ARMED, [({"form": "tuple", "inside": 0.5}, [plan]),
                               ({"form": "tuple", "inside": 0.25}, [plan])], not_one),
        # a frame after the outputs: nobody asked for it
        ([load], ARMED, [({"form": "tuple", "inside": 0.5}, [plan]), DONE],
         malformed.format("data sent out of turn")),
        ([load], ARMED, [LENGTH.pack(MAX_HEADER_BYTES + 1)],
         malformed.format(f"a header of {MAX_HEADER_BYTES + 1} bytes"))]
    for loads, on_load, outputs, detail in cases:
        assert _played_call(loads, on_load, outputs) == sandbox.Failure("output", detail), (
            on_load, outputs)
    # what a real worker sends: the same seconds on every output, 0 included
    _, inside, [output] = _played_call([load], ARMED, [({"form": "array", "inside": 0}, [plan])])
    assert inside == 0.0 and np.array_equal(output, plan)
    _, inside, outputs = _played_call([load, load], ARMED,
                                      [({"form": "tuple", "inside": 0.5}, [plan, plan])] * 2)
    assert inside == 0.5 and len(outputs) == 2 and all(len(o) == 2 for o in outputs)
    # a header of the largest size allowed
    body = json.dumps({"form": "array", "inside": 0.5, "arrays": [
        {"dtype": plan.dtype.str, "shape": [4]}], "pad": ""}).encode()
    body = body[:-2] + b"x" * (MAX_HEADER_BYTES - len(body)) + body[-2:]
    _, _, [output] = _played_call([load], ARMED, [LENGTH.pack(len(body)) + body
                                                  + plan.tobytes()])
    assert len(body) == MAX_HEADER_BYTES and np.array_equal(output, plan)


def test_a_call_answered_at_once_is_in_time_under_a_deadline_of_less_than_a_second(
        monkeypatch):
    from eplbench.sandbox_worker import ARMED

    monkeypatch.setattr(sandbox, "PIPE_GRACE", 0.25)
    plan = np.arange(4, dtype=np.int64)
    reply = _played_call([np.ones((1, 4), np.int64)], ARMED,
                         [({"form": "array", "inside": 0.5}, [plan])], time_limit=0.25)
    assert not isinstance(reply, sandbox.Failure), reply


def test_a_failed_calibration_is_the_heuristics_failure():
    class Refusing:
        overhead = None

        def calibrate(self, time_limit):
            return sandbox.Failure("timeout", "no answer to a ping")

    box = Sandbox(LIMIT)
    box._children["refusing"] = Refusing()
    result = sandbox.Measurement()
    assert box._calibrate("refusing", result) is False
    assert result.failure == sandbox.Failure("timeout", "no answer to a ping")
    box._children.clear()


def test_each_call_of_a_batch_gets_loads_of_its_own(instance, tmp_path, monkeypatch):
    from eplbench import timing

    monkeypatch.setattr(timing, "_tick", 0.002)  # 5 ticks: 10 ms a sample, so batches
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    spec = fixture("logs_calls.py")
    result = measure(instance, [spec], repeats=2)[spec]
    assert result.failure is None and result._next_load > 2
    timed = log.read_text().split()[1::2][1:]  # the digests after the warm-up's
    assert len(timed) == result._next_load == len(set(timed))


def test_a_call_long_enough_for_the_clock_is_timed_alone(instance, tmp_path, monkeypatch):
    """A call of 0.2 s (far above the clock's tick and a pipe's round trip) is one sample."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    monkeypatch.setenv("EPLBENCH_CALL_SLEEP", "0.2")
    spec = fixture("logs_calls.py")
    result = measure(instance, [spec], repeats=3)[spec]
    assert result.failure is None and len(result.seconds) == 3
    assert result._next_load == 3 and len(log.read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("good_calls", [2, 0])
def test_a_call_that_raises_ends_the_heuristics_calls(instance, tmp_path, monkeypatch,
                                                      good_calls):
    """The third call (the second timed one), or the warm-up, raises: reason raised, the
    scored output kept where there is one, and no call after it."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    monkeypatch.setenv("EPLBENCH_BREAK_BY", "raising")
    monkeypatch.setenv("EPLBENCH_GOOD_CALLS", str(good_calls))
    spec = fixture("breaks_after_first.py")
    result = measure(instance, [spec, "deepseek"], repeats=3)[spec]
    assert result.failure is not None and result.failure.reason == "raised", result.failure
    assert f"refused on call {good_calls + 1}" in result.failure.detail
    assert (result.output is not None) == (good_calls > 1)
    assert len(log.read_text().splitlines()) == good_calls + 1


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_the_plan_in_place_reaches_every_call(instance, tmp_path, monkeypatch, dtype):
    """... as int64, whatever integers the caller's plan is in."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    spec = fixture("keeps_old_plan.py")
    plan = eb.load_heuristic("deepseek_fast")(torch.from_numpy(instance.weight),
                                              *instance.topology.as_tuple())[0].numpy()
    with Sandbox(LIMIT) as box:
        result = box.measure([spec], instance.weight, instance.topology.as_tuple(),
                             warmup_weight(instance), 2,
                             old_plans={spec: plan.astype(dtype)})[spec]
    assert result.failure is None and np.array_equal(result.output, plan)
    assert result.output.dtype == np.int64
    assert set(log.read_text().split()) == {"given"}


# ---------------------------------------------------------------- nothing outlives a call


@pytest.mark.parametrize("name", ["spawns_session_sleeper.py", "forks_sleeper.py"])
def test_what_a_candidate_starts_dies_with_its_call(instance, tmp_path, monkeypatch, name):
    """A process started in a session of its own (out of the process group) or a plain
    os.fork() copy is dead as soon as the call has returned, the sandbox still open."""
    log = tmp_path / "pids"
    monkeypatch.setenv("EPLBENCH_PID_LOG", str(log))
    with Sandbox(LIMIT) as box:
        results = box.measure([fixture(name)], instance.weight, instance.topology.as_tuple(),
                              warmup_weight(instance), 1)
        assert results[fixture(name)].failure is None
        # warm-up and round 0, and more calls where a sample batched them: the number of
        # calls per sample depends on the machine's speed, so only the floor is fixed
        pids = [int(line) for line in log.read_text().split()]
        assert len(pids) >= 2 and all(_gone(pid) for pid in pids)
        # and the heuristic's own process serves the next call
        again = box.measure([fixture(name)], instance.weight, instance.topology.as_tuple(),
                            warmup_weight(instance), 1)
        assert again[fixture(name)].failure is None
    later = [int(line) for line in log.read_text().split()]
    assert len(later) >= len(pids) + 2 and all(_gone(pid) for pid in later)


def test_a_timeout_kills_what_the_call_started(instance, tmp_path, monkeypatch):
    log = tmp_path / "pids"
    monkeypatch.setenv("EPLBENCH_PID_LOG", str(log))
    results = measure(instance, [fixture("spawns_then_hangs.py")], time_limit=1.0)
    assert results[fixture("spawns_then_hangs.py")].failure.reason == "timeout"
    pids = [int(line) for line in log.read_text().split()]
    assert pids and all(_gone(pid) for pid in pids)


KILLED_PARENT = """
import os, signal, sys, threading, time
import numpy as np
from eplbench.sandbox import Sandbox

spec, log = sys.argv[1], sys.argv[2]
weight = np.arange(12, dtype=np.int64).reshape(2, 6)
box = Sandbox(600.0)
threading.Thread(target=box.measure, args=([spec], weight, (8, 2, 2, 4), weight, 1),
                 daemon=True).start()
deadline = time.monotonic() + 120
while not (os.path.exists(log) and open(log).read().strip()) and time.monotonic() < deadline:
    time.sleep(0.05)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_eplbench_leaves_no_process_behind(tmp_path):
    """The process that holds a Sandbox is SIGKILLed while its candidate is in a call that
    started a sleeper in a session of its own: the candidate's processes and the sleeper
    all die with it."""
    spec = str(shutil.copy(HEURISTICS / "spawns_then_hangs.py", tmp_path / "hangs_here.py"))
    log = tmp_path / "pids"
    script = tmp_path / "holder.py"
    script.write_text(KILLED_PARENT)
    env = {**os.environ, "EPLBENCH_PID_LOG": str(log)}
    with open(tmp_path / "stderr", "w") as stderr:  # not a pipe: survivors would hold it
        holder = subprocess.Popen([sys.executable, str(script), spec, str(log)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    assert holder.wait(180) == -signal.SIGKILL, (tmp_path / "stderr").read_text()
    pids = [int(line) for line in log.read_text().split()]
    assert pids and all(_gone(pid) for pid in pids)
    deadline = time.monotonic() + 10
    # the template, its keepers and their workers (forks of it) carry its command line
    ours = (sandbox_template.WORKER_FILE, str(holder.pid))
    while _running_with(*ours) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running_with(*ours)


def _running_with(*arguments: str) -> list[int]:
    """Live processes (not zombies) with every one of `arguments` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if all(word.encode() in words for word in arguments) and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


# ---------------------------------------------------------------- memory


def test_without_a_memory_limit_a_heuristic_runs(instance):
    with Sandbox(LIMIT, memory_limit=None) as box:
        result = box.measure(["deepseek"], instance.weight, instance.topology.as_tuple(),
                             warmup_weight(instance), 1)["deepseek"]
    assert result.failure is None and len(result.seconds) == 1


def test_an_allocation_past_the_memory_cap_is_reason_memory(instance, monkeypatch):
    cap = 3 << 29  # 1.5 GiB
    monkeypatch.setenv("EPLBENCH_ALLOC_BYTES", str(3 * cap))
    with Sandbox(LIMIT, memory_limit=cap) as box:
        results = box.measure([fixture("allocates.py"), "deepseek"], instance.weight,
                              instance.topology.as_tuple(), warmup_weight(instance), 2)
    failure = results[fixture("allocates.py")].failure
    assert failure is not None and failure.reason == "memory", failure
    assert "1.5 GiB" in failure.detail
    assert results["deepseek"].failure is None and len(results["deepseek"].seconds) == 2


# ---------------------------------------------------------------- load failures up front


def test_load_failures_names_the_specs_that_cannot_be_loaded(instance, tmp_path):
    bad = {fixture("syntax_error.py"): "SyntaxError",
           fixture("no_entry.py"): "rebalance_experts",
           fixture("raises_at_import.py"): "refuses to load",
           str(tmp_path / "missing.py"): "no such file",
           "no_such_module_for_eplbench:rebalance": "cannot import",
           "eplbench.heuristics.deepseek_fast:no_such_function": "no_such_function"}
    good = ["deepseek", fixture("round_robin.py")]
    with Sandbox(LIMIT) as box:
        failures = box.load_failures([*good, *bad])
        assert set(failures) == set(bad), failures
        for spec, words in bad.items():
            assert failures[spec].reason == "load" and words in failures[spec].detail
        # the loadable ones' processes are kept for the calls that follow
        keepers = {spec: box._children[spec]._keeper.pid for spec in good}
        results = box.measure([*good, *bad], instance.weight, instance.topology.as_tuple(),
                              warmup_weight(instance), 1)
        assert {spec: box._children[spec]._keeper.pid for spec in good} == keepers
        assert all(results[spec].failure is None for spec in good)
        assert all(results[spec].failure.reason == "load" for spec in bad)
        assert box.load_failures(good) == {}


def test_results_rows_carry_both_clocks():
    """runtime_s is the parent's figure; runtime_inside_s the worker's, beside it."""
    import eplbench as eb
    from eplbench.runner import RunOptions, run_heuristics

    rows = run_heuristics(["zigzag"], eb.load_instances("tiny")[:1], RunOptions(repeats=2))
    assert (rows.runtime_s > 0).all() and (rows.runtime_inside_s > 0).all()
    assert not (rows.runtime_s == rows.runtime_inside_s).all()


# a two-layer, four-expert batch on (P=6, 1 group, 1 node, 2 GPUs): what every output of a
# timed batch is checked against once the first has been scored
BATCH_LOAD = np.array([[5, 3, 2, 1], [0, 4, 4, 1]], dtype=np.int64)
BATCH_PHY2LOG = np.array([[0, 1, 2, 3, 0, 1], [1, 2, 0, 3, 1, 2]], dtype=np.int64)
BATCH_TOPOLOGY = (6, 1, 1, 2)


@pytest.mark.parametrize("later, reason", [
    ((BATCH_PHY2LOG, BATCH_PHY2LOG), "arity: a tuple of 2 arrays"),
    (BATCH_PHY2LOG.astype(np.float64), "dtype: phy2log has dtype float64"),
    (BATCH_PHY2LOG[:, :5], "shape: phy2log has shape [2, 5]"),
    (BATCH_PHY2LOG[:1], "shape: phy2log has shape [1, 6]"),
    (np.where(BATCH_PHY2LOG == 3, 4, BATCH_PHY2LOG), "range: phy2log holds ids outside [0, 4)"),
    (np.where(BATCH_PHY2LOG == 0, -1, BATCH_PHY2LOG), "range: phy2log holds ids outside [0, 4)"),
    (np.array([[0, 1, 2, 3, 0, 1], [1, 2, 0, 0, 1, 2]]), "missing_expert: some expert has no slot"),
])
def test_every_later_output_of_a_timed_batch_must_be_a_placement(later, reason):
    """A heuristic cannot return a real placement on the scored call and anything cheaper
    on the calls that are only timed: each later output of a batch must be phy2log (alone
    or first of three) with the right dtype, shape and ids, holding every expert."""
    loads = [BATCH_LOAD, BATCH_LOAD + 1, BATCH_LOAD + 2]
    good = (BATCH_PHY2LOG, None, None)
    assert sandbox._check_batch(loads, 4, [good, BATCH_PHY2LOG, good], BATCH_TOPOLOGY) is None
    failure = sandbox._check_batch(loads, 4, [good, later, good], BATCH_TOPOLOGY)
    assert failure.reason == "output"
    assert failure.detail.startswith(f"timed call 5 (on perturbed loads) returned an invalid "
                                     f"placement: {reason}")


def test_a_batchs_first_output_gets_the_full_checker_unless_it_is_the_scored_one():
    """The first output of a batch goes through the one checker (which also sees, here, a
    replica count that disagrees with phy2log); call 0 is scored by the caller instead."""
    logcnt = np.array([[1, 1, 1, 1], [1, 1, 1, 1]])  # phy2log holds 6 replicas a layer
    cheat = (BATCH_PHY2LOG, None, logcnt)
    failure = sandbox._check_batch([BATCH_LOAD], 3, [cheat], BATCH_TOPOLOGY)
    assert failure.reason == "output"
    assert failure.detail.startswith("timed call 3 (on perturbed loads) returned an invalid "
                                     "placement: logcnt_mismatch: logcnt[0, 0] = 1")
    assert sandbox._check_batch([BATCH_LOAD], 0, [cheat], BATCH_TOPOLOGY) is None
