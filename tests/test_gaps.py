"""Gaps against reference values (spec section 7), on small hand-made tables: the reference of
the declared policy, layer sums before the ratio, uncertified references as intervals, and
the split of a gap into hierarchy, replication and packing. Expected values are worked out
here by hand from the rows."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from eplbench.gaps import GAP_COLUMNS, attach_reference, attribution, instance_gaps
from eplbench.reference import ReferenceEntry


def entry(instance_hash, layer, policy, ub, lb=None):
    """A reference; certified (OPTIMAL) when lb is not given."""
    lb = ub if lb is None else lb
    return ReferenceEntry(f"set/{instance_hash}", instance_hash, layer, policy, Fraction(ub),
                          Fraction(lb), "test", "test")


def rows(loads, policy="hierarchical", heuristic="h", instance="i", valid=True):
    """One results row per layer of one instance; loads: Fractions or None (no loads)."""
    return pd.DataFrame([{"heuristic": heuristic, "instance": f"set/{instance}",
                          "instance_hash": instance, "instance_set": "set", "layer": layer,
                          "policy": policy, "valid": valid,
                          "max_load_num": None if load is None else Fraction(load).numerator,
                          "max_load_den": None if load is None else Fraction(load).denominator}
                         for layer, load in enumerate(loads)])


def test_each_row_gets_the_reference_of_its_declared_policy():
    """Global optimum 10, hierarchical 11 for the same layer: a hierarchical row is compared
    with 11 and keeps 10 as its global bound; a global row is compared with 10."""
    entries = [entry("i", 0, "global", 10), entry("i", 0, "hierarchical", 11)]
    table = pd.concat([rows([Fraction(121, 10)]), rows([Fraction(121, 10)], policy="global",
                                                         heuristic="g")], ignore_index=True)
    out = attach_reference(table, entries)
    first, second = out.iloc[0], out.iloc[1]
    assert (first.ref_policy, first.ref_status, first.ref_ub_num, first.ref_lb_num) == (
        "hierarchical", "OPTIMAL", 11, 11)
    assert (first.global_lb_num, first.global_lb_den) == (10, 1)
    assert first.gap_lo == first.gap_hi == pytest.approx(0.1)
    assert (second.ref_policy, second.ref_ub_num) == ("global", 10)
    assert second.gap_lo == pytest.approx(0.21)


def test_an_uncertified_reference_gives_an_interval_and_no_reference_gives_nan():
    """ub 12, lb 10, load 15: gap_lo (15 - 12) / 12, gap_hi (15 - 10) / 10; layer 1 has no
    reference at all; a zero optimum gives 0 for a zero load and inf otherwise."""
    entries = [entry("i", 0, "hierarchical", 12, 10), entry("z", 0, "hierarchical", 0)]
    table = pd.concat([rows([15, 7]), rows([0], instance="z"), rows([3], instance="z",
                                                                    heuristic="w")],
                      ignore_index=True)
    out = attach_reference(table, entries)
    assert (out.gap_lo[0], out.gap_hi[0]) == (0.25, 0.5)
    assert (out.ref_ub_den[0], out.ref_lb_den[0], out.ref_status[0]) == (1, 1, "FEASIBLE")
    assert out.loc[1, GAP_COLUMNS].isna().all()
    assert (out.gap_hi[2], out.gap_hi[3]) == (0.0, np.inf)


def test_rows_without_loads_keep_their_reference_but_no_gap():
    out = attach_reference(rows([None]), [entry("i", 0, "hierarchical", 10)])
    assert out.ref_ub_num[0] == 10 and np.isnan(out.gap_lo[0]) and np.isnan(out.gap_hi[0])
    bare = rows([5]).drop(columns=["max_load_num", "max_load_den"])
    assert np.isnan(attach_reference(bare, [entry("i", 0, "hierarchical", 10)]).gap_hi[0])


def test_an_instance_gap_is_taken_on_layer_sums():
    """Loads 12 and 30 against optima 10 and 20: (42 - 30) / 30 = 40%, not the mean of the
    layer gaps (20% and 50%); lb 18 on layer 1 makes gap_hi (42 - 28) / 28 = 50%."""
    entries = [entry("i", 0, "hierarchical", 10), entry("i", 1, "hierarchical", 20, 18)]
    gaps = instance_gaps(attach_reference(rows([12, 30]), entries))
    assert gaps.to_dict("records") == [{"heuristic": "h", "instance": "set/i", "valid": True,
                                        "certified": False, "gap_lo": 0.4, "gap_hi": 0.5}]


def test_instances_missing_a_layer_reference_are_left_out_and_flags_cover_every_layer():
    """j lacks layer 1's reference and k every reference: left out, and the instances after
    them kept in the table's order (m before i); i is invalid on layer 0 only."""
    entries = [entry(name, layer, "hierarchical", 10 * (layer + 1))
               for name in ("i", "m") for layer in (0, 1)] + [entry("j", 0, "hierarchical", 10)]
    table = pd.concat([rows([10, 20], instance="j"), rows([None], instance="k"),
                       rows([11, 22], instance="m"), rows([10, 20], valid=False)],
                      ignore_index=True)
    table.loc[len(table) - 1, "valid"] = True
    gaps = instance_gaps(attach_reference(table, entries))
    assert gaps.instance.tolist() == ["set/m", "set/i"]
    assert gaps.gap_hi.tolist() == pytest.approx([0.1, 0.0])
    assert (gaps.valid.tolist(), gaps.certified.tolist()) == ([True, False], [True, True])
    nothing = instance_gaps(attach_reference(rows([1]), []))
    assert nothing.empty and list(nothing.columns) == [
        "heuristic", "instance", "valid", "certified", "gap_lo", "gap_hi"]
    unloaded = instance_gaps(attach_reference(rows([None]), [entry("i", 0, "hierarchical", 1)]))
    assert unloaded.valid[0] and np.isnan(unloaded.gap_lo[0]) and np.isnan(unloaded.gap_hi[0])


def staged(global_lb, policy_lb, pack_lb, load, valid=True, instance="i"):
    """One layer with the columns `attribution` reads (bounds as integers)."""
    return pd.DataFrame([{"heuristic": "h", "instance": instance, "instance_set": "s",
                          "valid": valid, "layer": 0, "global_lb_num": global_lb,
                          "global_lb_den": 1, "ref_lb_num": policy_lb, "ref_lb_den": 1,
                          "pack_lb_num": pack_lb, "pack_lb_den": 1, "max_load_num": load,
                          "max_load_den": 1}])


def test_attribution_clamps_each_stage_at_the_one_before():
    """A policy bound below the global one and a packing bound below the policy's (bounds
    not proven): those stages read 0, and the rest of the gap goes to the next stage."""
    out = attribution(pd.concat([staged(10, 9, 8, 12), staged(10, 11, 10, 13, instance="j"),
                                 staged(0, 0, 0, 0, instance="z")], ignore_index=True))
    assert out.to_dict("records") == [
        {"heuristic": "h", "instance": "i", "instance_set": "s", "hierarchy": 0.0,
         "replication": 0.0, "packing": 0.2},
        {"heuristic": "h", "instance": "j", "instance_set": "s", "hierarchy": 0.1,
         "replication": 0.0, "packing": 0.2},
        {"heuristic": "h", "instance": "z", "instance_set": "s", "hierarchy": 0.0,
         "replication": 0.0, "packing": 0.0}]


STAGE_COLUMNS = ["heuristic", "instance", "instance_set", "hierarchy", "replication",
                 "packing"]


def test_attribution_skips_invalid_and_unsolved_instances_and_keeps_the_order():
    table = pd.concat([staged(10, 11, 12, 13, valid=False), staged(10, None, 12, 13,
                                                                    instance="j"),
                       staged(10, 10, 10, 11, instance="m"),
                       staged(10, 10, 10, 12, instance="a")], ignore_index=True)
    assert attribution(table).instance.tolist() == ["m", "a"]
    skipped = attribution(table.iloc[:2])
    assert skipped.empty and list(skipped.columns) == STAGE_COLUMNS
    no_stage = attribution(staged(10, 11, 12, 13).drop(columns=["pack_lb_num"]))
    assert no_stage.empty and list(no_stage.columns) == STAGE_COLUMNS
    unnamed = attribution(staged(10, 10, 10, 11).drop(columns=["instance_set"]))
    assert unnamed.instance_set.tolist() == [""]
