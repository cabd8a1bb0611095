"""Known limits (README), each shown as it is today: an expected failure while the limit holds, a failure the day it
is removed, so that the README and this file are updated with the fix."""

from __future__ import annotations

import pytest

from tests.dms_tables import apply_landed, land, people_config, read, seq

T = "2026-03-01 "
LOAD = [[T + "08:00:00", "1", "Ann", "10", "", ""]]
NO_OP = [["U", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]]  # an update that changes no tracked value
LATE = [["U", T + "09:00:00", "1", "Bob", "10", seq(1), "1"]]  # committed between the load and the no-op


def current_name(spark, config) -> str:
    return read(spark, config, "latest").select("name").first()[0]


def test_a_late_change_before_a_no_op_update_applied_earlier_is_current(spark, tmp_path):
    """One batch of the three files keeps Ann (the no-op, after Bob, is a version with Ann's values); two batches,
    the late file last, make Bob current: wrong current data after a file-order shuffle (README, 'A change that
    repeats the state before it')."""
    once, twice = people_config(tmp_path / "once"), people_config(tmp_path / "twice")
    for config in (once, twice):
        land(config, "LOAD00000001.csv", LOAD)
        land(config, "20260301-100000000.csv", NO_OP)
    apply_landed(spark, twice, 0)
    for config in (once, twice):
        land(config, "20260301-120000000.csv", LATE)
    apply_landed(spark, once, 0)
    apply_landed(spark, twice, 1)

    assert current_name(spark, once) == "Ann"
    if current_name(spark, twice) == "Bob":
        pytest.xfail("the known limit: an update that changed nothing is not kept; a late change before it is current")
    assert current_name(spark, twice) == "Ann", "neither the limit's Bob nor the right Ann"
    pytest.fail("the no-op limit is gone: say so in the README ('Known limits') and make this a plain test")
