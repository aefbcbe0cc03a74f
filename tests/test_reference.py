"""Reference values: merge keeps min ub / max lb, refuses contradictions, round-trips exactly;
gaps follow spec §7."""

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from eplbench import BadInput
from eplbench.gaps import attach_reference, instance_gaps
from eplbench.reference import (ReferenceEntry, merge, read_reference, write_placements,
                                write_reference)


def entry(ub, lb, source, layer=0, policy="global", phy2log=(0, 1)):
    return ReferenceEntry("set/a", "hash-a", layer, policy, Fraction(ub), Fraction(lb),
                          source, source, list(phy2log))


def test_merge_keeps_min_ub_and_max_lb():
    merged = merge([entry("10", "7", "x"), entry("19/2", "6", "y"), entry("11", "8", "z")])
    (only,) = merged.values()
    assert (only.ub, only.lb, only.ub_source, only.lb_source) == (Fraction(19, 2), 8, "y", "z")
    assert only.status == "FEASIBLE"


def test_merge_refuses_lb_above_ub_naming_both_sources():
    with pytest.raises(BadInput, match="lb 12 from B exceeds ub 10 from A"):
        merge([entry("10", "9", "A"), entry("13", "12", "B")])


def test_round_trip_is_exact(tmp_path):
    path = write_reference(tmp_path / "reference.json",
                           [entry("100/3", "100/3", "s"), entry("7", "13/2", "s", layer=1)])
    back = read_reference(path)
    assert [(e.ub, e.lb, e.status) for e in back] == [
        (Fraction(100, 3), Fraction(100, 3), "OPTIMAL"), (7, Fraction(13, 2), "FEASIBLE")]


def test_malformed_reference_file(tmp_path):
    path = tmp_path / "reference.json"
    path.write_text('{"entries": [{"ub": "1/0"}]}')
    with pytest.raises(BadInput, match="reference.json: malformed"):
        read_reference(path)


def test_placements_keep_the_lowest_ub_per_layer_and_the_newest_on_ties(tmp_path):
    path = tmp_path / "answers.json"
    write_placements(path, [entry("10", "9", "s", phy2log=[0, 0, 1]),
                            entry("7", "7", "s", layer=1, phy2log=[1, 0, 1])])
    write_placements(path, [entry("11", "9", "t", phy2log=[1, 1, 0]),  # worse: kept out
                            entry("7", "7", "t", layer=1, phy2log=[0, 1, 1]),  # tie: replaces
                            entry("5", "5", "t", policy="hierarchical", phy2log=[]),  # none
                            entry("6", "5", "t", policy="hierarchical", phy2log=[0, 1, 0])])
    rows = json.loads(path.read_text())["placements"]
    assert [(row["layer"], row["policy"], row["ub"], row["phy2log"]) for row in rows] == [
        (0, "global", "10", [0, 0, 1]), (0, "hierarchical", "6", [0, 1, 0]),
        (1, "global", "7", [0, 1, 1])]
    assert {row["instance"] for row in rows} == {"set/a"}
    assert {row["instance_hash"] for row in rows} == {"hash-a"}


def test_a_malformed_placements_file_is_named(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text('{"rows": []}')
    with pytest.raises(BadInput, match="answers.json: malformed placements file"):
        write_placements(path, [entry("1", "1", "s")])


def test_gaps_exact_and_interval():
    table = pd.DataFrame({
        "heuristic": ["h", "h"], "instance": ["set/a", "set/a"],
        "instance_hash": ["hash-a", "hash-a"], "layer": [0, 1], "valid": [True, True],
        "policy": ["global", "global"], "max_load_num": [12, 9], "max_load_den": [1, 1]})
    refs = [entry("10", "10", "s"), entry("9", "6", "s", layer=1)]
    out = attach_reference(table, refs)
    assert out.gap_lo.tolist() == [pytest.approx(0.2), 0.0]
    assert out.gap_hi.tolist() == [pytest.approx(0.2), pytest.approx(0.5)]
    (row,) = instance_gaps(out).itertuples()
    assert not row.certified
    assert row.gap_lo == pytest.approx(21 / 19 - 1) and row.gap_hi == pytest.approx(21 / 16 - 1)
    assert np.isnan(attach_reference(table.assign(instance_hash="other"), refs).gap_hi).all()


def test_solve_resumes_and_parallel_solves_agree(tmp_path):
    """`eplbench solve -j 2` writes the same bounds as one process; run again, it solves
    nothing (every layer is settled) and leaves the file as it was."""
    from click.testing import CliRunner

    from eplbench.cli import main
    from eplbench.instances import load_instances, save_set

    folder = save_set(tmp_path / "set", "t", load_instances("tiny")[:3])
    files = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"reference-{jobs}.json"
        result = CliRunner().invoke(main, ["solve", str(folder), "--time-limit", "5", "-j", jobs,
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        files[jobs] = {entry.key: (entry.ub, entry.lb) for entry in read_reference(out)}
    assert files["1"] == files["2"] and len(files["1"]) == 2 * 3 * 2
    before = (tmp_path / "reference-2.json").read_text()
    again = CliRunner().invoke(main, ["solve", str(folder), "--time-limit", "5",
                                      "--out", str(tmp_path / "reference-2.json")])
    assert "6 instance-policies were settled already" in again.output
    assert (tmp_path / "reference-2.json").read_text() == before


def test_solve_again_resolves_what_is_not_certified(tmp_path):
    """After a solve with no time (nothing proven beyond the no-search bounds), a second
    solve with the same limit skips every instance; with --again it skips only those whose
    layers are all certified."""
    from click.testing import CliRunner

    from eplbench.cli import main
    from eplbench.instances import load_instances, save_set

    folder = save_set(tmp_path / "set", "t", load_instances("tiny")[:3])
    out = tmp_path / "reference.json"
    command = ["solve", str(folder), "--policy", "global", "--time-limit", "0", "--out", str(out)]
    assert CliRunner().invoke(main, command).exit_code == 0
    entries = read_reference(out)
    certified = {e.instance for e in entries} - {e.instance for e in entries
                                                 if e.status != "OPTIMAL"}
    assert len(certified) < 3, "some tiny layer needs search"
    assert "3 instance-policies were settled already" in CliRunner().invoke(main, command).output
    again = CliRunner().invoke(main, command + ["--again"])
    assert again.exit_code == 0, again.output
    assert "3 instance-policies were settled" not in again.output
    if certified:
        assert f"{len(certified)} instance-policies were settled already" in again.output


def _tampered(tmp_path, change) -> str:
    """A copy of tiny's reference file with `change(rows)` applied; returns its path."""
    import json

    from eplbench.instances import reference_path

    data = json.loads(reference_path("tiny").read_text())
    change(data["entries"])
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    return str(path)


def _swap_hashes(rows):
    """The first entry takes the hash of another instance's entry (which goes)."""
    first = rows[0]
    other = next(row for row in rows if row["instance"] != first["instance"]
                 and (row["layer"], row["policy"]) == (first["layer"], first["policy"]))
    rows.remove(other)
    first["instance_hash"] = other["instance_hash"]


@pytest.mark.parametrize("change, says", [
    (lambda rows: rows[0].update(lb="1000000000"), "above ub"),
    (lambda rows: rows.append(dict(rows[0])), "more than one entry"),
    (_swap_hashes, "holds the hash of"),
    (lambda rows: rows[0].update(instance_hash="0" * 64), "matches no instance"),
], ids=["lb-above-ub", "duplicate", "another-instance", "stale-hash"])
def test_every_command_refuses_a_tampered_reference(tmp_path, change, says):
    from click.testing import CliRunner

    from eplbench.cli import main

    path = _tampered(tmp_path, change)
    for command in (["run", "-H", "zigzag"], ["gate", "--candidate", "zigzag"]):
        result = CliRunner().invoke(main, [*command, "-i", "tiny", "--repeats", "2",
                                           "--reference", path])
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert path in line and says in line


def test_bundled_references_hold_no_placements():
    from eplbench.instances import BUNDLED

    for path in BUNDLED.glob("*/reference.json"):
        assert "phy2log" not in path.read_text(), path


def test_solve_writes_placements_apart_and_they_reach_the_ub(tmp_path):
    import json

    from click.testing import CliRunner

    import eplbench as eb
    from eplbench.cli import main
    from eplbench.instances import load_instances, save_set

    instances = load_instances("tiny")[:2]
    folder = save_set(tmp_path / "set", "t", instances)
    placements = tmp_path / "answers.json"
    result = CliRunner().invoke(main, ["solve", str(folder), "--time-limit", "5",
                                       "--placements", str(placements)])
    assert result.exit_code == 0, result.output
    assert "phy2log" not in (folder / "reference.json").read_text()
    by_hash = {instance.content_hash: instance for instance in instances}
    ubs = {entry.key: entry.ub for entry in read_reference(folder / "reference.json")}
    rows = json.loads(placements.read_text())["placements"]
    assert len(rows) == len(ubs) == 2 * 2 * 2
    for row in rows:
        instance = by_hash[row["instance_hash"]]
        layer = row["layer"]
        load = eb.check(instance.weight[layer:layer + 1], np.array([row["phy2log"]]),
                        instance.topology).max_load[0]
        assert load == ubs[row["instance_hash"], layer, row["policy"]]
