"""History's layout: current versions apart from closed ones (`_is_current` partitions), and what a MERGE rewrites.

A day of a snapshot feed re-closes ~1% of the keys, spread over every file: a MERGE into an unpartitioned history
rewrites all of it, closed versions included, and those grow with every day applied. Partitioned, a batch reads and
rewrites the current partition only, unless a late change re-closes a closed version.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from chispa import assert_df_equality

from lakehouse import tables
from lakehouse.tables import table_paths
from tests.dms_tables import comparable, land, people_config, read, run, seq


def _commits(path: str) -> list[list[dict]]:
    log = Path(path) / "_delta_log"
    return [[json.loads(line) for line in f.read_text().splitlines()] for f in sorted(log.glob("*.json"))]


def _files(commit: list[dict], action: str) -> list[str]:
    return [a[action]["path"] for a in commit if action in a and a[action].get("dataChange", True)]


def _chain(spark, config):
    return (
        read(spark, config, "history")
        .select("id", "name", "_valid_from", "_valid_to", "_is_current")
        .orderBy("id", "_valid_from")
    )


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _land_day(config, hour: int, updates: list[int], n: int) -> None:
    land(
        config,
        f"20260301-{hour:02d}0000000.csv",
        [
            ["U", f"2026-03-01 {hour:02d}:00:00", str(k), f"v{hour}-{k}", "1", seq(n + i), str(k)]
            for i, k in enumerate(updates)
        ],
    )


def test_history_is_partitioned_by_current_and_a_batch_rewrites_no_closed_version(spark, tmp_path):
    config = people_config(tmp_path)
    history = table_paths(config, config.tables["people"]).history
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", str(k), f"p{k}", "1", "", ""] for k in (1, 2, 3)])
    run(spark, config)
    _land_day(config, 9, [1, 2], 1)  # closes the loaded versions of 1 and 2
    run(spark, config)
    _land_day(config, 10, [2, 3], 10)  # re-closes current versions only
    metrics = run(spark, config).batches[-1]

    detail = spark.sql(f"DESCRIBE DETAIL delta.`{history}`").first()
    assert detail["partitionColumns"] == ["_is_current"]
    last = _commits(history)[-1]
    removed, added = _files(last, "remove"), _files(last, "add")
    assert removed and all(p.startswith("_is_current=true/") for p in removed), removed
    assert any(p.startswith("_is_current=false/") for p in added), added  # the re-closed versions moved there
    closed_before = {p for c in _commits(history)[:-1] for p in _files(c, "add") if p.startswith("_is_current=false/")}
    assert closed_before and closed_before.isdisjoint(removed)
    assert (metrics.updated, metrics.late) == (2, 0)
    expected = spark.createDataFrame(
        [
            (1, "p1", ts("2026-03-01 08:00:00"), ts("2026-03-01 09:00:00"), False),
            (1, "v9-1", ts("2026-03-01 09:00:00"), None, True),
            (2, "p2", ts("2026-03-01 08:00:00"), ts("2026-03-01 09:00:00"), False),
            (2, "v9-2", ts("2026-03-01 09:00:00"), ts("2026-03-01 10:00:00"), False),
            (2, "v10-2", ts("2026-03-01 10:00:00"), None, True),
            (3, "p3", ts("2026-03-01 08:00:00"), ts("2026-03-01 10:00:00"), False),
            (3, "v10-3", ts("2026-03-01 10:00:00"), None, True),
        ],
        "id bigint, name string, _valid_from timestamp, _valid_to timestamp, _is_current boolean",
    )
    assert_df_equality(_chain(spark, config), expected, ignore_nullable=True)


def test_a_late_change_between_two_closed_versions_recloses_the_closed_one(spark, tmp_path):
    config = people_config(tmp_path)
    history = table_paths(config, config.tables["people"]).history
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "p1", "1", "", ""]])
    run(spark, config)
    _land_day(config, 9, [1], 1)
    _land_day(config, 11, [1], 2)
    run(spark, config)
    land(config, "20260301-120000000.csv", [["U", "2026-03-01 10:00:00", "1", "late", "1", seq(3), "1"]])
    metrics = run(spark, config).batches[-1]

    assert metrics.late == 1
    removed = _files(_commits(history)[-1], "remove")
    assert any(p.startswith("_is_current=false/") for p in removed), removed  # the closed 09:00 version, re-closed
    expected = spark.createDataFrame(
        [
            (1, "p1", ts("2026-03-01 08:00:00"), ts("2026-03-01 09:00:00"), False),
            (1, "v9-1", ts("2026-03-01 09:00:00"), ts("2026-03-01 10:00:00"), False),
            (1, "late", ts("2026-03-01 10:00:00"), ts("2026-03-01 11:00:00"), False),
            (1, "v11-1", ts("2026-03-01 11:00:00"), None, True),
        ],
        "id bigint, name string, _valid_from timestamp, _valid_to timestamp, _is_current boolean",
    )
    assert_df_equality(_chain(spark, config), expected, ignore_nullable=True)


def test_a_history_created_before_the_partitioning_keeps_its_layout_gets_the_same_rows_and_can_be_moved(
    spark, tmp_path, monkeypatch
):
    def feed(config) -> None:
        land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", str(k), f"p{k}", "1", "", ""] for k in (1, 2, 3)])
        run(spark, config)
        _land_day(config, 9, [1, 2], 1)
        land(config, "20260301-093000000.csv", [["D", "2026-03-01 09:30:00", "3", "", "", seq(5), "3"]])
        run(spark, config)
        land(config, "20260301-120000000.csv", [["U", "2026-03-01 08:30:00", "1", "late", "1", seq(6), "1"]])
        _land_day(config, 13, [2], 7)
        run(spark, config)

    new = people_config(tmp_path / "new")
    feed(new)
    with monkeypatch.context() as patched:  # the layout of a table created by an earlier release
        patched.setattr(tables, "history_partitions", lambda table: list(table.partition_by))
        old = people_config(tmp_path / "old")
        tables.ensure_tables(spark, old.tables["people"], table_paths(old, old.tables["people"]))
    feed(old)

    old_history = table_paths(old, old.tables["people"]).history
    assert spark.sql(f"DESCRIBE DETAIL delta.`{old_history}`").first()["partitionColumns"] == []
    _same_tables(spark, old, new)

    # The README's move to the partitioned layout, as the README prints it, then one more batch on both lakes.
    exec(_readme_move(), {"spark": spark, "HISTORY": old_history})
    for config in (old, new):
        _land_day(config, 14, [1, 3], 8)  # 3 comes back after its delete
        run(spark, config)
    assert spark.sql(f"DESCRIBE DETAIL delta.`{old_history}`").first()["partitionColumns"] == ["_is_current"]
    _same_tables(spark, old, new)


def _readme_move() -> str:
    """The README's snippet moving a history to the partitioned layout (the Python block of "History's layout")."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**History's layout.**") :]
    return section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]


def _same_tables(spark, one, other) -> None:
    for kind in ("history", "latest"):
        assert_df_equality(
            comparable(read(spark, one, kind)),
            comparable(read(spark, other, kind)),
            ignore_nullable=True,
            ignore_row_order=True,
        )
