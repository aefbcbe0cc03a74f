"""Reference values: merge keeps min ub / max lb, refuses contradictions, round-trips exactly;
gaps follow spec §7."""

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import eplbench as eb
from eplbench import BadInput, Topology
from eplbench.gaps import attach_reference, instance_gaps
from eplbench.reference import (ReferenceEntry, check_for_set, merge, read_reference,
                                write_placements, write_reference)


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


def test_merge_keeps_the_first_source_on_ties_and_the_best_ubs_placement():
    first = entry("10", "8", "first", phy2log=[0, 1, 0])
    first.params = {"time_limit": 1}
    second = entry("10", "8", "second", phy2log=[1, 0, 1])
    (tied,) = merge([first, second]).values()
    assert (tied.ub_source, tied.lb_source) == ("first", "first")
    better = entry("9", "9", "better", layer=0, phy2log=[1, 1, 0])
    better.params = {"time_limit": 5}
    (only,) = merge([first, better]).values()
    assert (only.instance, only.instance_hash, only.layer, only.policy) == (
        "set/a", "hash-a", 0, "global")
    assert (only.phy2log, only.params, only.status) == ([1, 1, 0], {"time_limit": 5}, "OPTIMAL")


def test_read_reference_drops_derived_fields_accepts_lb_zero_and_names_the_file(tmp_path):
    path = tmp_path / "reference.json"
    row = {"instance": "set/a", "instance_hash": "hash-a", "layer": 0, "policy": "global",
           "ub": "0", "lb": "0", "ub_source": "s", "lb_source": "s", "status": "OPTIMAL",
           "phy2log": [0, 1], "params": {}}
    path.write_text(json.dumps({"format_version": 1, "entries": [row]}))
    (read,) = read_reference(path)
    assert (read.ub, read.lb, read.phy2log) == (0, 0, [])
    with pytest.raises(BadInput, match=f"^{tmp_path / 'absent.json'}: no such file$"):
        read_reference(tmp_path / "absent.json")
    path.write_text('{"entries": [{"ub": "1/0"}]}')
    with pytest.raises(BadInput, match=r"reference.json: malformed reference file \(ZeroDivisionError"):
        read_reference(path)


def _instance(name, num_layers=2, num_experts=4, topology=(6, 2, 1, 2)):
    from types import SimpleNamespace

    return SimpleNamespace(id=f"set/{name}", content_hash=f"hash-{name}", num_layers=num_layers,
                           num_experts=num_experts, topology=Topology(*topology))


def test_check_for_set_keeps_its_own_entries_and_skips_other_sets():
    mine, also = entry("3", "2", "s"), entry("4", "4", "s", layer=1)
    foreign = [ReferenceEntry(f"other/{k}", f"hash-o{k}", 0, "global", 1, 1, "s", "s")
               for k in range(2)]
    kept = check_for_set([foreign[0], mine, foreign[1], also], [_instance("a")], "ref.json")
    assert kept == [mine, also]
    with pytest.raises(BadInput, match="ref.json: an entry names set/a layer 2"):
        check_for_set([entry("3", "2", "s", layer=2)], [_instance("a")], "ref.json")
    stale = ReferenceEntry("set/a", "hash-old", 0, "global", 1, 1, "s", "s")
    with pytest.raises(BadInput, match=r"^ref.json: the entry for set/a holds a content hash "
                                       r"that matches no instance of the set \(stale or edited\)$"):
        check_for_set([stale], [_instance("a")], "ref.json")


def test_settled_needs_the_same_solver_with_at_least_the_limit_or_a_certificate():
    from eplbench.reference import settled

    def entries(*rows):
        return {row.key: row for row in rows}

    a = _instance("a", num_layers=1)
    open_entry = entry("3", "2", "enum 1.0@here")
    open_entry.params = {"time_limit": 2.0}
    assert settled(entries(open_entry), a, "global", "enum", 2.0)
    assert not settled(entries(open_entry), a, "global", "enum", 2.5)
    assert not settled(entries(open_entry), a, "global", "cpsat", 1.0)
    assert not settled(entries(open_entry), a, "hierarchical", "enum", 1.0)
    unlimited = entry("3", "2", "enum 1.0@here")  # no time_limit recorded
    assert not settled(entries(unlimited), a, "global", "enum", 0.5)
    assert settled(entries(entry("3", "3", "cpsat 9@there")), a, "global", "enum", 60)


def test_policies_for_keeps_hierarchical_only_where_the_hierarchy_divides():
    from eplbench.reference import policies_for

    both = ["global", "hierarchical"]
    assert policies_for(_instance("a"), both) == both
    assert policies_for(_instance("b", num_experts=5), both) == ["global"]
    assert policies_for(_instance("b", num_experts=5), ["hierarchical"]) == []


def test_solve_entries_tag_each_layer_with_solver_origin_and_params():
    from eplbench.reference import solve_entries

    instance = eb.load_instances("tiny")[0]
    rows = solve_entries((instance, "global"), "enum", 1.0, 3, "host")
    assert [row.layer for row in rows] == list(range(instance.num_layers))
    for row in rows:
        assert row.ub_source == row.lb_source
        assert row.ub_source.startswith("enum ") and row.ub_source.endswith("@host")
        assert (row.params["workers"], row.params["time_limit"]) == (3, 1.0)
        assert (row.instance, row.instance_hash) == (instance.id, instance.content_hash)
        assert len(row.phy2log) == instance.topology.num_replicas
