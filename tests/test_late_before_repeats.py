"""A change that repeats the state before it (an update that changes no tracked value, a delete of a deleted key)
makes no version; the version before it keeps it in `_repeats`. A late change landing right before it later makes it
a version again: the tables after a split of the files into batches equal those of one batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import tables
from lakehouse.apply import batch, history
from lakehouse.tables import REPEATS, REPEATS_DDL, table_paths
from tests.dms_tables import (
    apply_landed,
    assert_same_tables,
    land,
    people_config,
    read,
    seq,
    storage_unavailable,
)

T = "2026-03-01 "
LOAD = [[T + "08:00:00", "1", "Ann", "10", "", ""]]


def lakes(spark, tmp_path: Path, batches: list[dict[str, list[list[str]]]], **source: object):
    """Two lakes of the same files: `once` applies them in one batch, `split` in one batch per dict of files (its
    metrics in `split.batches`)."""
    once, split = people_config(tmp_path / "once", **source), people_config(tmp_path / "split", **source)
    for config in (once, split):
        land(config, "LOAD00000001.csv", LOAD)
    split_batches = []
    for batch_id, files in enumerate(batches):
        for config in (once, split):
            for name, records in files.items():
                land(config, name, records)
        split_batches.append(apply_landed(spark, split, batch_id))
    apply_landed(spark, once, 0)
    return once, split, split_batches


def current(spark, config) -> list[tuple]:
    return [(r.name, r.score) for r in read(spark, config, "latest").collect()]


def test_a_late_update_before_a_no_op_applied_earlier_leaves_the_no_op_current(spark, tmp_path):
    """Ann, a no-op restating Ann (applied, kept as a repeat), then Bob committed between them: the no-op is a version
    after Bob, and Ann current, as in one batch (before repeats were kept, Bob was current)."""
    no_op = {"20260301-100000000.csv": [["U", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]]}
    late = {"20260301-120000000.csv": [["U", T + "09:00:00", "1", "Bob", "10", seq(1), "1"]]}
    once, split, batches = lakes(spark, tmp_path, [no_op, late])

    assert current(spark, split) == [("Ann", 10.0)]
    # Bob applied; the no-op a version again, counted apart (no row of the late batch).
    assert (batches[1].applied, batches[1].late, batches[1].repeats_restored) == (1, 1, 1)
    assert_same_tables(spark, once, split)
    history = read(spark, split, "history").orderBy("_sequence").collect()
    assert [(r.name, r._change_seq, r._is_current, r._repeats) for r in history] == [
        ("Ann", None, False, None),
        ("Bob", seq(1), False, None),
        ("Ann", seq(2), True, None),
    ]


def test_a_no_op_kept_as_a_repeat_and_sent_again_is_a_replay(spark, tmp_path):
    """The no-op's row again in another file (a re-delivery with one more row): a replay of the kept repeat, neither
    applied nor counted as unchanged a second time."""
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", LOAD)
    no_op = ["U", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]
    first_file = land(config, "20260301-100000000.csv", [no_op])
    first = apply_landed(spark, config, 0)
    assert (first.unchanged, first.inserted, first.updated) == (1, 1, 0)
    (version,) = read(spark, config, "history").collect()
    assert [(x._change_seq, x._op, Path(x._source_file).name, x._batch_id) for x in version._repeats] == [
        (seq(2), "U", "20260301-100000000.csv", 0)
    ]

    first_file.unlink()  # gone from the landing area (a lifecycle rule): the next batch reads only the new file
    land(config, "20260301-110000000.csv", [no_op, ["U", T + "11:00:00", "1", "Cid", "10", seq(3), "1"]])
    second = apply_landed(spark, config, 1)
    # Replayed: the load file's row (its file applied before) and the no-op's.
    assert (second.replayed, second.unchanged, second.updated) == (2, 0, 1), second.to_json()
    assert current(spark, config) == [("Cid", 10.0)]
    assert read(spark, config, "history").count() == 2


def test_a_late_insert_between_two_deletes_leaves_the_key_deleted(spark, tmp_path):
    """A delete, a second delete of the deleted key (kept as a repeat), then a late re-insert between them: the
    second delete is a version again, carrying the insert's values, and the key is not live (before repeats were
    kept, the late insert brought it back)."""
    deletes = {
        "20260301-100000000.csv": [["D", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]],
        "20260301-110000000.csv": [["D", T + "11:00:00", "1", "Ann", "10", seq(4), "1"]],
    }
    late = {"20260301-120000000.csv": [["I", T + "10:30:00", "1", "Bob", "20", seq(3), ""]]}
    once, split, _batches = lakes(spark, tmp_path, [deletes, late])

    assert current(spark, split) == []
    assert_same_tables(spark, once, split)
    last = read(spark, split, "history").where("_is_current").collect()
    assert [(r._op, r._change_seq, r.name, r._is_deleted) for r in last] == [("D", seq(4), "Bob", True)]


def test_a_version_dropped_as_a_repeat_comes_back_when_a_late_change_lands_before_it(spark, tmp_path):
    """Bob (applied), a late Bob before it (which makes the first Bob a repeat: dropped, kept in the late one's
    repeats), then Cid between the two: the first Bob is a version again and current, as in one batch."""
    batches = [
        {"20260301-100000000.csv": [["U", T + "10:40:00", "1", "Bob", "10", seq(4), "1"]]},
        {"20260301-110000000.csv": [["U", T + "10:00:00", "1", "Bob", "10", seq(2), "1"]]},
        {"20260301-120000000.csv": [["U", T + "10:20:00", "1", "Cid", "10", seq(3), "1"]]},
    ]
    once, split, _batches = lakes(spark, tmp_path, batches)

    assert current(spark, split) == [("Bob", 10.0)]
    assert_same_tables(spark, once, split)
    assert [r._change_seq for r in read(spark, split, "history").orderBy("_sequence").collect()] == [
        None,
        seq(2),
        seq(3),
        seq(4),
    ]


def test_a_late_update_before_a_no_op_that_lacked_a_column_makes_it_the_version_later_ones_fill_from(spark, tmp_path):
    """DMS CsvNoSupValue: a no-op restating Ann (its score not supplied), then an update of the score alone (which takes
    Ann); a late Bea (without a score) lands before the no-op. The no-op is a version again (Ann, the score before
    it), and the update after it keeps Ann, as in one batch (before repeats were kept, the late Bea re-filled it)."""
    nosup = "_NOSUP_"
    on_time = {
        "20260301-100000000.csv": [
            ["U", T + "10:00:00", "1", "Ann", nosup, seq(2), ""],
            ["U", T + "11:00:00", "1", nosup, "30", seq(3), ""],
        ]
    }
    late = {"20260301-120000000.csv": [["U", T + "09:00:00", "1", "Bea", nosup, seq(1), ""]]}
    once, split, _batches = lakes(spark, tmp_path, [on_time, late], no_sup_value=nosup)

    history = read(spark, split, "history").orderBy("_sequence")
    assert [tuple(r) for r in history.select("name", "score", "_unsupplied").collect()] == [
        ("Ann", 10.0, None),
        ("Bea", 10.0, "score"),
        ("Ann", 10.0, "score"),  # the no-op, a version again: its score from the version before it
        ("Ann", 30.0, "name"),
    ]
    assert current(spark, split) == [("Ann", 30.0)]
    assert_same_tables(spark, once, split)


def test_a_history_created_before_repeats_were_kept_gets_the_column_and_keeps_them_from_then_on(
    spark, tmp_path, monkeypatch
):
    config = people_config(tmp_path)
    people = config.tables["people"]
    ddl = tables.history_ddl(people)
    with monkeypatch.context() as patched:  # the columns of a history created by an earlier release
        patched.setattr(tables, "history_ddl", lambda table: ddl.replace(f", {REPEATS_DDL}", ""))
        tables.ensure_tables(spark, people, table_paths(config, people))
    assert REPEATS not in read(spark, config, "history").columns
    tables.ensure_tables(spark, people, table_paths(config, people))
    assert REPEATS in read(spark, config, "history").columns
    land(config, "LOAD00000001.csv", LOAD)
    land(config, "20260301-100000000.csv", [["U", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]])
    apply_landed(spark, config, 0)
    assert [r[REPEATS] is not None for r in read(spark, config, "history").collect()] == [True]

    land(config, "20260301-120000000.csv", [["U", T + "09:00:00", "1", "Bob", "10", seq(1), "1"]])
    apply_landed(spark, config, 1)
    assert current(spark, config) == [("Ann", 10.0)]


def test_an_update_kept_as_a_repeat_after_a_late_delete_revives_the_key_and_is_reported(spark, tmp_path):
    """Ann, a no-op restating Ann (kept), then a late delete before it: the no-op is a version again after the delete,
    the key live (as in one batch), and the batch counts it in `unknown_keys` (an update after a delete, the rule one
    batch applies to it)."""
    no_op = {"20260301-100000000.csv": [["U", T + "12:00:00", "1", "Ann", "10", seq(4), "1"]]}
    late = {"20260301-120000000.csv": [["D", T + "11:00:00", "1", "Ann", "10", seq(2), "1"]]}
    once, split, batches = lakes(spark, tmp_path, [no_op, late])

    assert current(spark, split) == [("Ann", 10.0)]
    assert (batches[1].deleted, batches[1].repeats_restored, batches[1].unknown_keys) == (1, 1, 1)
    assert_same_tables(spark, once, split)


def test_a_version_keeps_its_newest_repeats_and_a_late_change_before_a_forgotten_one_leaves_the_right_values(
    spark, tmp_path, monkeypatch
):
    monkeypatch.setattr(history, "MAX_REPEATS", 2)
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", LOAD)
    no_ops = [["U", T + f"1{n}:00:00", "1", "Ann", "10", seq(2 * n), "1"] for n in (1, 2, 3)]
    land(config, "20260301-100000000.csv", no_ops)
    apply_landed(spark, config, 0)
    (version,) = read(spark, config, "history").collect()
    assert [x._change_seq for x in version._repeats] == [seq(4), seq(6)]  # the newest two

    # Bob before the forgotten no-op (seq 2): the next kept one (seq 4) is a version again, and Ann current.
    land(config, "20260301-120000000.csv", [["U", T + "10:30:00", "1", "Bob", "10", seq(1), "1"]])
    late = apply_landed(spark, config, 1)
    assert (late.applied, late.repeats_restored) == (1, 1)
    rows = read(spark, config, "history").orderBy("_sequence").collect()
    assert [(r.name, r._change_seq, str(r._valid_to), [x._change_seq for x in r._repeats or []]) for r in rows] == [
        ("Ann", None, "2026-03-01 10:30:00", []),
        ("Bob", seq(1), "2026-03-01 12:00:00", []),
        ("Ann", seq(4), "None", [seq(6)]),
    ]
    assert current(spark, config) == [("Ann", 10.0)]


@pytest.mark.parametrize("failing", ["merge_latest", "merge_history"])
def test_a_batch_restoring_a_repeat_that_fails_in_a_write_converges_on_replay(spark, tmp_path, monkeypatch, failing):
    """History goes last in a batch that makes a repeat a version again: a replay after a failed latest write finds
    the repeat still kept and brings latest to the restored version (written side by side, history committed and
    the replay found nothing new for latest); after a failed history write (latest committed) it writes history.
    `once` is a clean run of the same two batches."""
    no_op = {"20260301-100000000.csv": [["U", T + "10:00:00", "1", "Ann", "10", seq(2), "1"]]}
    late = {"20260301-120000000.csv": [["U", T + "09:00:00", "1", "Bob", "10", seq(1), "1"]]}
    once, split, _batches = lakes(spark, tmp_path, [no_op])
    for config in (once, split):
        for name, records in late.items():
            land(config, name, records)
    apply_landed(spark, once, 1)
    with monkeypatch.context() as patched:
        patched.setattr(batch, failing, storage_unavailable)
        with pytest.raises(OSError, match="storage unavailable"):
            apply_landed(spark, split, 1)
    apply_landed(spark, split, 1)  # the replay
    assert current(spark, split) == [("Ann", 10.0)]
    assert_same_tables(spark, once, split)
