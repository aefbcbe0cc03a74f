"""`eplbench gate`: exit 0 for a candidate as good as the baseline, 1 with the failed check
named for a broken, a worse and a slower one, 2 for bad input."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from eplbench.cli import main
from eplbench.gate import bootstrap_interval, round_log_ratios

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"


def gate(candidate: str, *extra: str):
    result = CliRunner().invoke(main, ["gate", "--candidate", candidate, "-i", "tiny",
                                       "--repeats", "3", "--time-limit", "5", *extra])
    verdicts = dict(re.findall(r"│ tiny\s+│ (valid|gap|speed)\s+│.*?│ (pass|FAIL)\s+│",
                               result.output))
    # the last line is the verdict, naming every failed check
    failed = [f"{check} on tiny" for check, verdict in verdicts.items() if verdict == "FAIL"]
    assert result.output.strip().splitlines()[-1] == (
        f"gate: FAIL ({', '.join(failed)})" if failed else "gate: PASS"), result.output
    return result, verdicts


@pytest.mark.cli
def test_the_vectorised_port_passes_against_the_port():
    """Same placements, faster: every check passes."""
    result, verdicts = gate("deepseek_fast")
    assert result.exit_code == 0, result.output
    assert verdicts == {"valid": "pass", "gap": "pass", "speed": "pass"}


@pytest.mark.cli
def test_a_wrong_shape_fails_validity_with_its_reason():
    result, verdicts = gate(str(HEURISTICS / "wrong_shape.py"))
    assert result.exit_code == 1
    assert verdicts["valid"] == "FAIL"
    assert re.search(r"tiny/\S+\s+│ valid\s+│ shape", result.output), result.output


@pytest.mark.cli
def test_a_slow_candidate_fails_speed_only():
    result, verdicts = gate(str(HEURISTICS / "slow.py"))
    assert result.exit_code == 1
    assert verdicts == {"valid": "pass", "gap": "pass", "speed": "FAIL"}, result.output


@pytest.mark.cli
def test_a_worse_candidate_fails_gap_and_names_the_instances():
    result, verdicts = gate("zigzag", "--max-slowdown", "1000")
    assert result.exit_code == 1
    assert verdicts["gap"] == "FAIL" and verdicts["valid"] == "pass"
    assert re.search(r"tiny/\S+\s+│ gap\s+│ gap [\d.]+% vs [\d.]+%", result.output)


@pytest.mark.cli
def test_bad_input_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["gate", "--candidate", str(tmp_path / "missing.py"),
                                       "-i", "tiny"])
    assert result.exit_code == 2 and "missing.py" in result.output
    result = CliRunner().invoke(main, ["gate", "--candidate", "zigzag", "-i", "tiny",
                                       "--max-gap-increase", "lots"])
    assert result.exit_code == 2


def test_round_log_ratios_pair_rounds_and_the_interval_covers_the_mean():
    """Rounds pair by position (the shorter side decides how many); an instance one side
    lacks is skipped, not the end of the list."""
    rows = pd.DataFrame({"instance": ["a", "a", "c", "b", "b"],
                         "heuristic": ["new", "old", "new", "new", "old"],
                         "runtime_samples": [[2.0, 4.0, 8.0], [1.0, 1.0], [5.0], [3.0],
                                             [1.5]]})
    ratios = round_log_ratios(rows, "new", "old")
    assert np.allclose(np.exp(ratios), [2.0, 4.0, 2.0])
    assert np.allclose(round_log_ratios(rows, "old", "new"), -ratios)
    low, high = bootstrap_interval(ratios)
    assert low <= ratios.mean() <= high and low >= np.log(2.0) - 1e-12


def test_the_bootstrap_interval_is_reproducible():
    values = np.log([0.5, 2.0, 1.3, 0.9, 3.0, 0.7, 1.1])
    assert bootstrap_interval(values) == bootstrap_interval(values)


def synthetic(candidate_gaps, baseline_gaps, candidate_seconds, baseline_seconds,
              candidate_valid=True, candidate_colocated=0, reason="shape", instance_set="s"):
    """A results table of one set: per instance one layer with optimum 100 and 8 slots, the
    candidate's and the baseline's loads 100 * (1 + gap) and their timed rounds; the
    candidate's rows hold `candidate_colocated` co-located replicas (the baseline's none)
    and, when not valid (candidate_valid: one flag, or one per instance), fail for `reason`
    (no loads unless it is a policy breach)."""
    from fractions import Fraction

    from eplbench.gaps import attach_reference
    from eplbench.reference import ReferenceEntry

    rows, entries = [], []
    for index, (mine, theirs) in enumerate(zip(candidate_gaps, baseline_gaps)):
        instance = f"{instance_set}/{index}"
        entries.append(ReferenceEntry(instance, f"{instance_set}{index}", 0, "global",
                                      Fraction(100), Fraction(100), "x", "x"))
        mine_valid = (candidate_valid[index] if isinstance(candidate_valid, list)
                      else candidate_valid)
        for name, gap, seconds, valid, colocated in (
                ("new", mine, candidate_seconds[index], mine_valid, candidate_colocated),
                ("old", theirs, baseline_seconds[index], True, 0)):
            load = Fraction(100) * (1 + Fraction(gap).limit_denominator(10**9))
            scored = valid or reason == "policy"  # a breach keeps its loads, others have none
            rows.append({"instance_set": instance_set, "instance": instance,
                         "instance_hash": f"{instance_set}{index}",
                         "policy": "global", "layer": 0, "heuristic": name, "valid": valid,
                         "reason": "" if valid else reason, "detail": "" if valid else "why",
                         "max_load_num": load.numerator if scored else None,
                         "max_load_den": load.denominator if scored else None,
                         "max_load": float(load) if scored else np.nan, "num_replicas": 8,
                         "colocated_replicas": colocated if scored else None,
                         "runtime_samples": seconds})
    return attach_reference(pd.DataFrame(rows), entries)


def checks_of(table, **limits):
    from eplbench.gate import Limits, verdicts

    checks, _ = verdicts(table, "new", "old", Limits(**limits))
    return dict(zip(checks.check, checks.passed))


STEADY = [[1.0, 1.0, 1.0]] * 6


def test_the_mean_gap_tolerance_decides():
    """+0.04 points on average passes the default +0.05; +0.06 fails; no instance > +1%."""
    base = [0.01] * 6
    assert checks_of(synthetic([0.0104] * 6, base, STEADY, STEADY))["gap"]
    assert not checks_of(synthetic([0.0106] * 6, base, STEADY, STEADY))["gap"]
    assert checks_of(synthetic([0.0106] * 6, base, STEADY, STEADY),
                     max_gap_increase=0.001)["gap"]


def test_one_instance_far_worse_fails_the_gap_check():
    gaps = [0.0] * 5 + [0.02]
    assert not checks_of(synthetic(gaps, [0.0] * 6, STEADY, STEADY),
                         max_gap_increase=1.0)["gap"]


def test_a_slowdown_fails_only_when_it_is_significant():
    """2x slower in every round fails; 2x slower on average but with rounds on both sides
    of 1 (not significant) passes, as asv's rule says."""
    slow = [[2.0, 2.0, 2.0]] * 6
    assert not checks_of(synthetic([0.0] * 6, [0.0] * 6, slow, STEADY))["speed"]
    # geometric mean 1.41x slower, beyond 1.25x, but rounds on both sides of 1
    spread = [[6.0, 0.25, 2.0], [0.3, 5.0, 1.5], [4.0, 0.5, 1.0],
              [0.4, 7.0, 1.2], [3.0, 0.6, 2.2], [0.5, 6.0, 0.9]]
    assert checks_of(synthetic([0.0] * 6, [0.0] * 6, spread, STEADY))["speed"]


def test_an_invalid_candidate_is_not_timed_and_fails_every_check():
    checks = checks_of(synthetic([0.0] * 6, [0.0] * 6, STEADY, STEADY, candidate_valid=False))
    assert checks == {"valid": False, "gap": False, "speed": False, "co-located": True}


def test_each_check_row_gives_both_sides_figures_and_the_failing_instances():
    """Candidate gaps 1% and 3% against 0%, twice as slow in every round, 2 of 8 slots
    co-located: each row's figures, and the one instance beyond +1% named with its gaps."""
    from eplbench.gate import Limits, verdicts

    slow = [[2.0, 2.0, 2.0]] * 2
    table = synthetic([0.01, 0.03], [0.0, 0.0], slow, STEADY[:2], candidate_colocated=2)
    checks, failures = verdicts(table, "new", "old", Limits())
    rows = checks.set_index("check")
    assert rows.loc["valid", "candidate"] == "2/2 instances" and rows.loc["valid", "passed"]
    assert (rows.loc["gap", "candidate"], rows.loc["gap", "baseline"]) == ("2.0000%", "0.0000%")
    assert rows.loc["gap", "note"] == ("over 2 instances: mean +2.0000% > +0.0500%; "
                                       "1 instance(s) above +1.0000%")
    assert (rows.loc["speed", "candidate"], rows.loc["speed", "passed"]) == ("0.5x", False)
    assert rows.loc["speed", "note"].startswith("2x slower than allowed (1.25x)")
    assert (rows.loc["co-located", "candidate"], rows.loc["co-located", "baseline"]) == (
        "25.0%", "0.0%")
    assert failures.to_dict("records") == [
        {"set": "s", "instance": "s/1", "check": "gap",
         "detail": "gap 3.0000% vs 0.0000% (+3.0000% > +1.0000%)"}]


def test_a_policy_breach_fails_validity_and_says_what_it_bought():
    """A candidate 1% below the optimum of the declared policy because it breaks it: invalid
    on both instances, each failure giving its reason, detail and gap."""
    from eplbench.gate import Limits, verdicts

    table = synthetic([-0.01, -0.02], [0.0, 0.0], STEADY[:2], STEADY[:2],
                      candidate_valid=False, reason="policy")
    checks, failures = verdicts(table, "new", "old", Limits())
    assert checks.set_index("check").loc["valid", "candidate"] == "0/2 instances"
    assert failures.detail.tolist() == ["policy: why (its gap -1.0000%)",
                                        "policy: why (its gap -2.0000%)"]


COLOCATED_NOTE = "share of slots holding a second replica of an expert on its GPU"


def test_a_candidate_equal_to_the_baseline_passes_every_check_row():
    """Same gaps, same times in every round: the whole table, row by row."""
    from eplbench.gate import Limits, verdicts

    checks, failures = verdicts(synthetic([0.0] * 6, [0.0] * 6, STEADY, STEADY),
                                "new", "old", Limits())
    assert checks.to_dict("records") == [
        {"set": "s", "check": "valid", "candidate": "6/6 instances", "baseline": "",
         "limit": "all", "passed": True, "note": ""},
        {"set": "s", "check": "gap", "candidate": "0.0000%", "baseline": "0.0000%",
         "limit": "+0.0500% mean, +1.0000% any instance", "passed": True,
         "note": "over 6 instances: mean +0.0000%"},
        {"set": "s", "check": "speed", "candidate": "1x", "baseline": "1x", "limit": ">= 0.8x",
         "passed": True, "note": "over 6 instances, 95% interval 1x..1x, not significant"},
        {"set": "s", "check": "co-located", "candidate": "0.0%", "baseline": "0.0%",
         "limit": "not gated", "passed": True, "note": COLOCATED_NOTE}]
    assert failures.empty and list(failures.columns) == ["set", "instance", "check", "detail"]


def test_an_invalid_candidate_gets_every_check_row_with_its_reason():
    from eplbench.gate import Limits, verdicts

    table = synthetic([0.0] * 2, [0.0] * 2, STEADY[:2], STEADY[:2], candidate_valid=False)
    checks, failures = verdicts(table, "new", "old", Limits())
    assert checks.drop(columns="set").to_dict("records")[:3] == [
        {"check": "valid", "candidate": "0/2 instances", "baseline": "", "limit": "all",
         "passed": False, "note": ""},
        {"check": "gap", "candidate": "-", "baseline": "-", "limit": "-", "passed": False,
         "note": "no instance where both are valid and have reference values"},
        {"check": "speed", "candidate": "-", "baseline": "1x", "limit": ">= 0.8x",
         "passed": False, "note": "no valid instance to time"}]
    assert checks.set_index("check").loc["co-located", "candidate"] == "-"  # nothing scored
    assert failures.to_dict("records") == [
        {"set": "s", "instance": f"s/{index}", "check": "valid", "detail": "shape: why"}
        for index in range(2)]


def test_the_speed_floor_is_one_over_the_allowed_slowdown_and_inclusive():
    """2x slower in every round (significant): exactly at the floor of --max-slowdown 2
    passes, and fails with 1.9; its note says how much slower than allowed."""
    from eplbench.gate import Limits, verdicts

    table = synthetic([0.0] * 3, [0.0] * 3, [[2.0] * 3] * 3, STEADY[:3])
    at_floor = verdicts(table, "new", "old", Limits(max_slowdown=2.0))[0].set_index("check")
    assert at_floor.loc["speed"].to_dict() == {
        "set": "s", "candidate": "0.5x", "baseline": "1x", "limit": ">= 0.5x", "passed": True,
        "note": "over 3 instances, 95% interval 0.5x..0.5x"}
    below = verdicts(table, "new", "old", Limits(max_slowdown=1.9))[0].set_index("check")
    assert below.loc["speed"].to_dict() == {
        "set": "s", "candidate": "0.5x", "baseline": "1x", "limit": ">= 0.526x",
        "passed": False, "note": "2x slower than allowed (1.9x); over 3 instances, "
                                 "95% interval 0.5x..0.5x"}


def test_gaps_compare_only_instances_where_both_are_valid():
    """The candidate is invalid on instance 1, where the baseline's gap is 10%: the gap
    check compares instance 0 alone."""
    from eplbench.gate import Limits, verdicts

    table = synthetic([0.0, 0.0], [0.0, 0.1], STEADY[:2], STEADY[:2],
                      candidate_valid=[True, False])
    row = verdicts(table, "new", "old", Limits())[0].set_index("check").loc["gap"]
    assert (row.candidate, row.baseline, row.note) == (
        "0.0000%", "0.0000%", "over 1 instances: mean +0.0000%")


def test_a_mean_gap_increase_exactly_at_the_tolerance_passes():
    table = synthetic([0.0005], [0.0], STEADY[:1], STEADY[:1])
    assert checks_of(table, max_gap_increase=0.0005)["gap"]
    assert not checks_of(table, max_gap_increase=0.0004)["gap"]


def test_a_steady_speedup_is_significant():
    """1.5x faster in every round: the interval lies wholly above 1 (significant)."""
    from eplbench.gate import Limits, verdicts

    table = synthetic([0.0] * 3, [0.0] * 3, [[2.0] * 3] * 3, [[3.0] * 3] * 3)
    row = verdicts(table, "new", "old", Limits())[0].set_index("check").loc["speed"]
    assert (row.candidate, row.passed, row.note) == (
        "1.5x", True, "over 3 instances, 95% interval 1.5x..1.5x")


def test_sets_keep_the_order_of_the_table():
    """Checks come set by set in the order the sets first appear, not sorted by name."""
    from eplbench.gate import Limits, verdicts

    table = pd.concat([synthetic([0.0], [0.0], STEADY[:1], STEADY[:1], instance_set=name)
                       for name in ("zeta", "alpha")], ignore_index=True)
    checks = verdicts(table, "new", "old", Limits())[0]
    assert list(dict.fromkeys(checks.set)) == ["zeta", "alpha"]


def test_the_speed_check_counts_only_instances_the_candidate_ran_on():
    """A results file where the candidate has no rows on instance 2 (a run cut short): the
    speed row is timed over the two instances it ran on."""
    from eplbench.gate import Limits, verdicts

    table = synthetic([0.0] * 3, [0.0] * 3, STEADY[:3], STEADY[:3])
    table = table[(table.heuristic == "old") | (table.instance != "s/2")]
    row = verdicts(table, "new", "old", Limits())[0].set_index("check").loc["speed"]
    assert row.note.startswith("over 2 instances")


def replayed(moved: dict, loads: dict | None = None) -> pd.DataFrame:
    """Replay rows: heuristic -> [window][layer] weights received (None: no plan before),
    and heuristic -> [window][layer] served max load (None: an invalid plan; default 1)."""
    rows = []
    for name, windows in moved.items():
        for window, layers in enumerate(windows):
            for layer, value in enumerate(layers):
                load = (loads or {}).get(name, [[1.0] * len(layers)] * len(windows))
                load = load[window][layer]
                rows.append({"heuristic": name, "instance": f"w/{window}", "layer": layer,
                             "moved": np.nan if value is None else value,
                             "moved_inter_node": np.nan if value is None else value / 2,
                             "max_load": np.nan if load is None else load,
                             "valid": load is not None, "reason": None if load else "shape",
                             "detail": None if load else "wrong shape"})
    return pd.DataFrame(rows)


def test_migration_fails_beyond_the_share_and_names_the_windows_above():
    from eplbench.gate import migration

    base = [[None, None], [10, 10], [10, 10]]
    # one window above the share, the mean within it: a pass, with nothing listed
    row, failed = migration(replayed({"new": [[None, None], [12, 12], [9, 9]], "old": base}),
                            "new", "old", 0.10)
    assert row == {"check": "migration", "candidate": "10.5 / layer",
                   "baseline": "10.0 / layer", "limit": "+10%", "passed": True,
                   "note": "weights received per layer and rebalance, over 4 "
                           "layer-rebalances; inter-node 5.2 vs 5.0"}
    assert failed == []
    row, failed = migration(replayed({"new": [[None, None], [15, 11], [10, 10]], "old": base}),
                            "new", "old", 0.10)
    assert not row["passed"]
    assert failed == [{"instance": "w/1", "check": "migration",
                       "detail": "13.0 weights received per layer vs 10.0"}]


def test_migration_at_the_limit_passes_and_a_window_at_it_is_not_listed():
    from eplbench.gate import migration

    base = [[None, None], [10, 10], [10, 10]]
    row, failed = migration(replayed({"new": base, "old": base}), "new", "old", 0.0)
    assert row["passed"] and failed == []
    row, failed = migration(replayed({"new": [[None, None], [10, 10], [20, 20]], "old": base}),
                            "new", "old", 0.0)
    assert not row["passed"]
    assert failed == [{"instance": "w/2", "check": "migration",
                       "detail": "20.0 weights received per layer vs 10.0"}]


def test_migration_counts_only_rebalances_both_sides_made():
    from eplbench.gate import migration

    row, _ = migration(replayed({"new": [[100, 100], [0, 2]], "old": [[None, None], [2, 2]]}),
                       "new", "old", 0.0)
    assert (row["passed"], row["candidate"]) == (True, "1.0 / layer")
    row, failed = migration(replayed({"new": [[None, None]], "old": [[None, None]]}), "new",
                            "old", 0.0)
    assert row == {"check": "migration", "candidate": "-", "baseline": "-", "limit": "+0%",
                   "passed": False,
                   "note": "no rebalance where both have a plan before and after"}
    assert failed == []


@pytest.mark.cli
def test_a_candidate_that_moves_more_weights_fails_the_migration_check():
    runner = CliRunner()
    arguments = ["gate", "-i", "tiny", "--repeats", "2", "--max-slowdown", "1000",
                 "--simulate", "2x16", "--max-migration-increase", "50%"]
    result = runner.invoke(main, [*arguments, "--candidate", "deepseek", "--baseline",
                                  "budgeted@2"])
    assert result.exit_code == 1
    assert re.search(r"simulated-2x16 │ migration\s+│ [\d.]+ / layer\s+│ [\d.]+ / layer\s+"
                     r"│ \+50%\s+│ FAIL", result.output), result.output
    assert "migration on simulated-2x16" in result.output.splitlines()[-1]
    result = runner.invoke(main, [*arguments, "--candidate", "budgeted@2", "--baseline",
                                  "deepseek"])
    assert re.search(r"simulated-2x16 │ migration .*│ pass", result.output), result.output
    # plans changed by at most 2 weights each serve the drifting loads worse
    assert re.search(r"simulated-2x16 │ served load .*│ FAIL", result.output), result.output


def test_a_migration_limit_needs_a_trace():
    result = CliRunner().invoke(main, ["gate", "--candidate", "zigzag", "-i", "tiny",
                                       "--max-migration-increase", "5%"])
    assert result.exit_code == 2 and "needs --trace or --simulate" in result.output


def test_served_load_fails_a_plan_that_serves_worse_than_the_baseline():
    from eplbench.gate import served_load

    moved = {"new": [[0, 0], [0, 0]], "old": [[0, 0], [0, 0]]}
    base = [[100.0, 100.0], [100.0, 100.0]]
    row, failed = served_load(replayed(moved, {"new": [[100.0, 100.0], [100.0, 100.1]],
                                                "old": base}), "new", "old", 0.0005)
    assert row == {"check": "served load", "candidate": "+0.0250%", "baseline": "0",
                   "limit": "+0.0500%", "passed": True,
                   "note": "max load serving the next window against the baseline's, mean "
                           "over 4 window-layers"}
    assert failed == []
    row, failed = served_load(replayed(moved, {"new": [[100.0, 100.0], [100.0, 100.3]],
                                                "old": base}), "new", "old", 0.0005)
    assert not row["passed"]
    assert failed == [{"instance": "w/1", "check": "served load",
                       "detail": "max load +0.1500% against the baseline's, mean over layers"}]
    row, failed = served_load(replayed(moved, {"new": [[90.0, 90.0], [None, None]],
                                                "old": base}), "new", "old", 0.0005)
    assert not row["passed"] and "invalid on 1 window(s)" in row["note"]
    assert failed == [{"instance": "w/1", "check": "served load",
                       "detail": "shape: wrong shape"}]


def test_served_load_at_the_limit_passes_and_a_window_at_it_is_not_listed():
    from eplbench.gate import served_load

    moved = {"new": [[0, 0], [0, 0]], "old": [[0, 0], [0, 0]]}
    base = [[100.0, 100.0], [100.0, 100.0]]
    row, failed = served_load(replayed(moved, {"new": base, "old": base}), "new", "old", 0.0)
    assert row["passed"] and failed == []
    row, failed = served_load(replayed(moved, {"new": [[100.0, 100.0], [100.0, 102.0]],
                                                "old": base}), "new", "old", 0.0)
    assert not row["passed"]
    assert failed == [{"instance": "w/1", "check": "served load",
                       "detail": "max load +1.0000% against the baseline's, mean over layers"}]
    # no window where both serve: no mean, and a failure
    row, _ = served_load(replayed(moved, {"new": [[None, None], [None, None]], "old": base}),
                         "new", "old", 0.0)
    assert (row["passed"], row["candidate"]) == (False, "+nan%")
    assert "over 0 window-layers; invalid on 2 window(s)" in row["note"]


@pytest.mark.cli
def test_a_trace_file_is_replayed_for_the_migration_check(tmp_path):
    """Three records of 2 layers x 64 experts (the ADRS topology), one window each."""
    import json

    rng = np.random.default_rng(4)
    records = [rng.integers(0, 500, (2, 64)).tolist() for _ in range(3)]
    trace = tmp_path / "expert-load.json"
    trace.write_text(json.dumps({"load_history": [{"logical_expert_load": r}
                                                  for r in records]}))
    result = CliRunner().invoke(main, ["gate", "--candidate", "deepseek_fast", "-i", "tiny",
                                       "--repeats", "2", "--max-slowdown", "1000",
                                       "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    # the same plans as the baseline's: the same weights moved, the same loads served
    assert re.search(r"expert-load │ migration\s+│ ([\d.]+) / layer\s+│ \1 / layer", result.output)
    assert re.search(r"expert-load │ served load\s+│ \+0\.0000%", result.output), result.output
    bad = CliRunner().invoke(main, ["gate", "--candidate", "deepseek_fast", "-i", "tiny",
                                    "--trace", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "missing.json" in bad.output
