"""DMS CsvNoSupValue and late data: a late update that carries a column re-fills the versions written after it that
lacked the column (they took it from the version before them, which the late update now is), in history and latest,
as one batch of the same files would have; a replay, a crash between the writes and a re-landed file change nothing
twice."""

from __future__ import annotations

import pytest

from tests.dms_tables import (
    apply_landed,
    assert_same_tables,
    land,
    people_config,
    read,
    run,
    seq,
    storage_unavailable,
)

NOSUP = "_NOSUP_"
LOAD = [
    ["2026-03-01 08:00:00.000000", "1", "Ann", "10", "", ""],
    ["2026-03-01 08:00:00.000000", "2", "Bob", "20", "", ""],
]
ON_TIME = [
    ["U", "2026-03-01 09:00:02.000000", "1", NOSUP, "20", seq(2), ""],
    ["U", "2026-03-01 09:00:03.000000", "1", NOSUP, "30", seq(3), ""],
    ["U", "2026-03-01 09:00:02.000000", "2", NOSUP, "25", seq(4), ""],
    ["D", "2026-03-01 09:00:05.000000", "2", NOSUP, NOSUP, seq(5), ""],
]
LATE = [
    ["U", "2026-03-01 09:00:01.000000", "1", "Bea", NOSUP, seq(1), ""],
    ["U", "2026-03-01 09:00:01.000000", "2", "Cid", NOSUP, seq(0), ""],
]


def versions(spark, config) -> list[tuple]:
    history = read(spark, config, "history").orderBy("id", "_sequence")
    return [tuple(r) for r in history.select("id", "name", "score", "_op", "_unsupplied").collect()]


def test_a_late_update_refills_the_later_versions_as_one_batch_would_and_its_replays_change_nothing(spark, tmp_path):
    # Loaded before the table kept the lists (no no_sup_value yet): its history gets the column, NULL for these.
    land(people_config(tmp_path / "late"), "LOAD00000001.csv", LOAD)
    run(spark, people_config(tmp_path / "late"))
    late = people_config(tmp_path / "late", no_sup_value=NOSUP)
    land(late, "20260301-090000000.csv", ON_TIME)
    run(spark, late)
    land(late, "20260301-100000000.csv", LATE)
    result = run(spark, late)

    assert (result.batches[0].applied, result.batches[0].late) == (2, 2)
    assert versions(spark, late) == [
        (1, "Ann", 10.0, "I", None),
        (1, "Bea", 10.0, "U", "score"),
        (1, "Bea", 20.0, "U", "name"),  # re-filled: it took its name from the version before it
        (1, "Bea", 30.0, "U", "name"),
        (2, "Bob", 20.0, "I", None),
        (2, "Cid", 20.0, "U", "score"),
        (2, "Cid", 25.0, "U", "name"),
        (2, "Cid", 25.0, "D", None),  # a delete carries the values it deleted: re-filled too
    ]
    latest = [tuple(r) for r in read(spark, late, "latest").select("id", "name", "score").collect()]
    assert latest == [(1, "Bea", 30.0)]

    # The same files in one batch.
    once = people_config(tmp_path / "once", no_sup_value=NOSUP)
    for name, records in (("LOAD00000001.csv", LOAD), ("20260301-090000000.csv", ON_TIME)):
        land(once, name, records)
    land(once, "20260301-100000000.csv", LATE)
    run(spark, once)
    assert_same_tables(spark, late, once)

    # The late file landed again under another name: a replay of applied contents, nothing written.
    land(late, "20260301-110000000.csv", LATE)
    replay = run(spark, late)
    assert (replay.batches[0].applied, len(replay.batches[0].replayed_files)) == (0, 1)
    assert_same_tables(spark, late, once)


def test_a_late_update_whose_batch_failed_between_its_writes_refills_on_replay(spark, tmp_path, monkeypatch):
    """The batch's writes run side by side: history may commit the re-filled versions and latest not. The replay
    finds the late update in history already (nothing re-filled then), yet brings latest's current row up to date.
    (The other way, latest committed alone, the replay plans the same re-fill again: the equal-sequence clause
    finds nothing to change.)"""
    from lakehouse.apply import batch

    clean, crashed = (people_config(tmp_path / name, no_sup_value=NOSUP) for name in ("clean", "crashed"))
    for config in (clean, crashed):
        land(config, "LOAD00000001.csv", LOAD)
        land(config, "20260301-090000000.csv", ON_TIME)
        apply_landed(spark, config, 0)
        land(config, "20260301-100000000.csv", LATE)
    apply_landed(spark, clean, 1)

    with monkeypatch.context() as patched:
        patched.setattr(batch, "merge_latest", storage_unavailable)
        with pytest.raises(OSError, match="storage unavailable"):
            apply_landed(spark, crashed, 1)
    assert read(spark, crashed, "latest").where("name = 'Bea'").count() == 0  # latest has not been re-filled

    replay = apply_landed(spark, crashed, 1)
    assert replay.reconciles
    assert_same_tables(spark, crashed, clean)
    assert [tuple(r) for r in read(spark, crashed, "latest").select("id", "name", "score").collect()] == [
        (1, "Bea", 30.0)
    ]
