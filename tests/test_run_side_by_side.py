"""`lakehouse run` applies its tables side by side (`stream.tables_at_once`), each under its own lease.

Promises: a table another job holds fails alone, untouched, while the others are applied side by side (their
times overlap: a run costs about its slowest table, not the sum), and the next run applies it; the tables then
equal those of a run that applied them one after another.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from chispa import assert_df_equality

from lakehouse.config import Config
from lakehouse.runner import run_once
from lakehouse.tables import table_paths
from tests.conftest import make_config
from tests.dms_tables import PEOPLE, comparable, land, read, seq
from tests.test_ownership import hold_in_another_process

T = "2026-03-01 "
TABLES = ("a", "b", "c")


def three_tables(root: Path, *, at_once: int) -> Config:
    """Three DMS tables, each with a full load and a CDC file (an update, a delete, a late update, an insert)."""
    config = make_config(root, {name: copy.deepcopy(PEOPLE) for name in TABLES})
    config = config.model_copy(update={"stream": config.stream.model_copy(update={"tables_at_once": at_once})})
    for n, name in enumerate(TABLES):
        land(
            config,
            "LOAD00000001.csv",
            [[T + "08:00:00", str(i), f"{name}{i}", str(i + n), "", ""] for i in range(8)],
            name,
        )
        land(
            config,
            "20260301-090000000.csv",
            [
                ["U", T + "09:00:00", "1", f"{name}-new", "1", seq(10), "1"],
                ["D", T + "09:00:01", "2", "", "", seq(11), "2"],
                ["U", T + "08:30:00", "1", f"{name}-late", "1", seq(5), "1"],
                ["I", T + "09:00:02", "40", f"{name}40", "4", seq(12), ""],
            ],
            name,
        )
    return config


def timed_run(spark, config: Config):
    started = time.monotonic()
    runs = run_once(spark, config)
    return runs, time.monotonic() - started


def test_tables_side_by_side_equal_one_after_another_and_a_held_table_fails_alone(spark, tmp_path):
    one_by_one = three_tables(tmp_path / "one_by_one", at_once=1)
    side_by_side = three_tables(tmp_path / "side_by_side", at_once=3)

    runs_one, wall_one = timed_run(spark, one_by_one)
    assert [r.table for r in runs_one] == list(TABLES)
    assert all(r.ok and len(r.batches) == 1 for r in runs_one), [(r.table, r.error) for r in runs_one]
    assert wall_one >= sum(r.seconds for r in runs_one) > 0  # one after another: at least the sum of its tables

    other = hold_in_another_process(side_by_side, "b", 600)
    try:
        runs, wall = timed_run(spark, side_by_side)
    finally:
        other.kill()
        other.wait()
    held = {r.table: r for r in runs}
    assert held["a"].ok and held["c"].ok, (held["a"].error, held["c"].error)
    assert held["b"].error and "other-job" in held["b"].error
    assert not Path(table_paths(side_by_side, side_by_side.tables["b"]).history).exists()  # untouched
    assert wall < held["a"].seconds + held["c"].seconds  # side by side: their times overlap

    again = {r.table: r for r in run_once(spark, side_by_side)}
    assert all(r.ok for r in again.values()), {t: r.error for t, r in again.items()}
    assert len(again["b"].batches) == 1 and "nothing new" in again["a"].notes and "nothing new" in again["c"].notes

    for name in TABLES:
        for kind in ("history", "latest", "quarantine"):
            assert_df_equality(
                comparable(read(spark, side_by_side, kind, name)),
                comparable(read(spark, one_by_one, kind, name)),
                ignore_row_order=True,
            )
        latest = read(spark, side_by_side, "latest", name)
        assert latest.count() == 8  # 8 loaded, 1 deleted, 1 inserted
        assert latest.where("id = 1").first()["name"] == f"{name}-new"  # the late update lost to the newer one
