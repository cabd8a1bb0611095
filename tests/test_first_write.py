"""A table's first batch appends: a MERGE into a table that holds no file could only insert, so the rows its insert
clause would write are appended (no join planned: ~0.2 s against ~1 s for a one-row batch). The tables must be the
ones MERGEs would make, also when a batch fails between its writes and is replayed."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable

from lakehouse.apply import batch
from lakehouse.tables import ensure_tables, insert_if_empty, table_paths
from tests.dms_tables import (
    PEOPLE,
    apply_landed,
    assert_same_tables,
    land,
    people_config,
    read,
    seq,
    storage_unavailable,
)

T = "2026-03-01 "
LOAD = [[T + "08:00:00", "1", "Ann", "10", "", ""], [T + "08:00:00", "2", "Bea", "20", "", ""]]
CDC = [["U", T + "10:00:00", "1", "Bob", "11", seq(2), "1"], ["D", T + "10:00:00", "2", "", "", seq(3), "2"]]


def operations(spark, path: str) -> list[str]:
    """The Delta operations of the table's commits, oldest first."""
    return [r.operation for r in DeltaTable.forPath(spark, path).history().orderBy("version").collect()]


def test_the_first_batch_is_appended_the_next_merged_and_the_tables_are_what_merges_make(spark, tmp_path):
    config = people_config(tmp_path / "lake")
    land(config, "LOAD00000001.csv", LOAD)
    first = apply_landed(spark, config, 0)
    land(config, "20260301-100000000.csv", CDC)
    second = apply_landed(spark, config, 1)

    paths = table_paths(config, config.tables["people"])
    for path in (paths.history, paths.latest):
        assert operations(spark, path)[1:] == ["WRITE", "MERGE"], path
    assert (first.inserted, second.updated, second.deleted) == (2, 1, 1)
    history = read(spark, config, "history").orderBy("id", "_sequence").collect()
    assert [(r.id, r.name, r._is_current, r._is_deleted) for r in history] == [
        (1, "Ann", False, False),
        (1, "Bob", True, False),
        (2, "Bea", False, False),
        (2, "Bea", True, True),  # a delete carries the values it deleted
    ]
    assert [(r.id, r.name) for r in read(spark, config, "latest").collect()] == [(1, "Bob")]


@pytest.mark.parametrize("failing", ["merge_latest", "merge_history"])
def test_a_first_batch_failing_in_one_write_after_the_other_was_appended_converges_on_replay(
    spark, tmp_path, monkeypatch, failing
):
    """The writes run side by side: one appended, the other failed. The replay finds the appended table holding the
    batch's rows (it MERGEs them as replays) and appends to the other; then the next batch. `clean` had no failure."""
    clean, crashed = people_config(tmp_path / "clean"), people_config(tmp_path / "crashed")
    for config in (clean, crashed):
        land(config, "LOAD00000001.csv", LOAD)
    apply_landed(spark, clean, 0)
    with monkeypatch.context() as patched:
        patched.setattr(batch, failing, storage_unavailable)
        with pytest.raises(OSError, match="storage unavailable"):
            apply_landed(spark, crashed, 0)
    replay = apply_landed(spark, crashed, 0)
    assert replay.reconciles
    for config in (clean, crashed):
        land(config, "20260301-100000000.csv", CDC)
        apply_landed(spark, config, 1)
    assert_same_tables(spark, clean, crashed)
    paths = table_paths(crashed, crashed.tables["people"])
    written = paths.latest if failing == "merge_history" else paths.history
    assert operations(spark, written)[1] == "WRITE"


def test_a_column_added_to_the_yaml_is_added_to_stored_tables_empty_or_not(spark, tmp_path):
    """`city` added to `columns:` after the tables were made: at the next run's start history and latest get the
    column (ALTER, NULL in stored rows), so the batch's plan can read the stored versions with it (it failed with
    "cannot resolve `city`" before) and the first batch of an empty table appends it."""
    layout = list(PEOPLE["source"]["columns"].items())
    with_city = dict([*layout[:4], ("city", "string"), *layout[4:]])  # DMS's order: after score, before seq
    empty, applied = people_config(tmp_path / "empty"), people_config(tmp_path / "applied")
    ensure_tables(spark, empty.tables["people"], table_paths(empty, empty.tables["people"]))  # a query, no file yet
    land(applied, "LOAD00000001.csv", LOAD)
    apply_landed(spark, applied, 0)

    for root in ("empty", "applied"):
        config = people_config(tmp_path / root, columns=with_city)
        land(config, "20260301-100000000.csv", [["U", T + "10:00:00", "1", "Bob", "11", "Oslo", seq(2), "1"]])
        assert apply_landed(spark, config, 1).reconciles
        history = read(spark, config, "history").where("id = 1").orderBy("_sequence").collect()
        assert [(r.name, r.city) for r in history][-1] == ("Bob", "Oslo"), root
        assert [(r.name, r.city) for r in read(spark, config, "latest").where("id = 1").collect()] == [("Bob", "Oslo")]
        if root == "applied":
            assert [(r.name, r.city) for r in history] == [("Ann", None), ("Bob", "Oslo")]
    made_empty = table_paths(empty, empty.tables["people"])
    for path in (made_empty.history, made_empty.latest):
        assert operations(spark, path)[-2:] == ["ADD COLUMNS", "WRITE"], path


def test_a_second_writer_of_the_same_empty_version_does_not_add_the_rows_again(spark, tmp_path, monkeypatch):
    """Two writers found the table empty at one version (a writer whose lease ran out beside the new one): the first
    appends; the second's append carries the same Delta app transaction, which Delta finds committed and skips (one
    that began before the first committed fails with a conflict), where a blind append would write the rows twice."""
    from lakehouse import delta_log

    path = str(tmp_path / "t")
    spark.sql(f"CREATE TABLE delta.`{path}` (id BIGINT, name STRING) USING DELTA")
    rows = spark.createDataFrame([(1, "Ann")], "id BIGINT, name STRING")
    found = delta_log.empty_version(spark, path)
    assert insert_if_empty(rows, path)
    monkeypatch.setattr(delta_log, "empty_version", lambda _spark, _path, **_: found)  # what the second writer saw
    insert_if_empty(rows, path)
    assert spark.read.format("delta").load(path).count() == 1
