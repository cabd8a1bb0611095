"""One multi-batch DMS run with every ordering rule and quirk, laid out as DMS lays files out.

Spark and Delta cost seconds per micro-batch, so the files are applied once (a module fixture) and
each test below states one behaviour and checks it on the keys that exercise it.

    LOAD00000001.csv      full load without Op                                         08:00
    20260301-090000000    CDC written before before-image columns were enabled (5 fields after Op)
    20260301-100000000    CDC with the BI_id before-image column; late rows; change-seq restart
    LOAD00000002.csv      a full-load file that lands after the CDC files
"""

from __future__ import annotations

import os
from datetime import datetime
from itertools import pairwise

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.timetravel import as_of
from tests.dms_tables import land, people_config, read, run, seq

T = "2026-03-01 "
CDC1 = [  # previous layout: ts, id, name, score, seq
    ["U", T + "09:00:00", "1", "Ann Lee", "1", seq(1)],
    ["U", T + "09:00:05", "1", "Ann Lee-Smith", "1", seq(2)],  # same key again in the same file
    ["D", T + "09:01:00", "2", "", "", seq(3)],  # PostgreSQL delete: key only
    ["U", T + "09:02:00", "3", "Cy", "3", seq(4)],  # changes nothing tracked
    ["I", T + "09:04:00", "7", "Gus", "7", seq(6)],
    ["I", T + "09:04:00", "7", "Gus", "7", seq(6)],  # the same change delivered twice
    ["X", T + "09:05:00", "8", "Hal", "8", seq(7)],  # unknown op
    ["I", T + "09:05:01", "", "Nokey", "8", seq(8)],  # null key
    ["I", T + "09:05:02", "9", "Ida", "abc", seq(9)],  # type mismatch
    ["U", T + "09:05:03", "5", "Eve", "5", "12x"],  # bad change-seq
    ["I", T + "09:06:00", "10", 'Hale, "Jo"\nJr', "10", seq(10)],  # RFC 4180 quoting
    ["U", T + "09:10:00", "13", "Hank New", "13", seq(11)],  # cached during the full load
    ["D", T + "09:20:00", "6", "", "", seq(12)],
]
CDC2 = [  # current layout: ts, id, name, score, seq, BI_id
    ["U", T + "08:30:00", "2", "Bob Late", "2", seq(0), "2"],  # late update of a key deleted at 09:01
    ["U", T + "08:30:00", "1", "Ann Old", "1", seq(0), "1"],  # late update, older than the current row
    ["U", T + "09:30:00", "40", "Dee", "4", seq(20), "4"],  # key-changing update 4 → 40
    ["I", T + "10:00:00", "11", "Ivy", "11", seq(40), ""],
    ["U", T + "10:00:01", "11", "Ivy B", "11", f"{3:035d}", "11"],  # DMS task restarted: counter reset
    ["I", T + "10:01:00", "12", "Jay", "12", seq(30), ""],  # same sequence, different values:
    ["I", T + "10:01:00", "12", "Jem", "12", seq(30), ""],  # an input error, quarantined
    ["I", T + "10:02:00", "6", "Fay Again", "6", seq(31), ""],  # re-insert after a delete
]


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    config = people_config(
        tmp_path_factory.mktemp("scenario"),
        max_files_per_trigger=1,
        previous_layouts=[["ts", "id", "name", "score", "seq"]],
    )
    files = [
        land(
            config,
            "LOAD00000001.csv",
            [
                [T + "08:00:00", str(i), n, str(i), "", ""]
                for i, n in [(1, "Ann"), (2, "Bob"), (3, "Cy"), (4, "Dee"), (5, "Eve"), (6, "Fay")]
            ],
        ),
        land(config, "20260301-090000000.csv", CDC1),
        land(config, "20260301-100000000.csv", CDC2),
        land(config, "LOAD00000002.csv", [[T + "08:00:00", "13", "Hank", "13", "", ""]]),
    ]
    for i, path in enumerate(files):  # the file source takes files oldest first
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    result = run(spark, config)
    return config, result


def names_as_of(spark, config, at: str) -> dict[int, str]:
    from lakehouse.tables import table_paths

    rows = as_of(spark, table_paths(config, config.tables["people"]).history, datetime.fromisoformat(at)).collect()
    return {r["id"]: r["name"] for r in rows}


def history_of(spark, config, key: int) -> list[tuple]:
    rows = read(spark, config, "history").where(F.col("id") == key).orderBy("_sequence").collect()
    return [(r["name"], r["_op"], r["_valid_from"], r["_valid_to"], r["_is_current"]) for r in rows]


def test_latest_holds_the_newest_live_version_of_every_key(spark, scenario):
    config, _ = scenario
    expected = spark.createDataFrame(
        [
            (1, "Ann Lee-Smith"),
            (3, "Cy"),
            (5, "Eve"),
            (6, "Fay Again"),
            (7, "Gus"),
            (10, 'Hale, "Jo"\nJr'),
            (11, "Ivy B"),
            (13, "Hank New"),
            (40, "Dee"),
        ],
        "id bigint, name string",
    )
    actual = read(spark, config, "latest").select("id", "name").orderBy("id")
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_every_batch_reconciles_read_rows_with_where_they_ended(scenario):
    _, result = scenario
    assert [b.files for b in result.batches] == [1, 1, 1, 1]
    assert all(b.reconciles for b in result.batches), [b.to_json() for b in result.batches]
    assert sum(b.rows_read for b in result.batches) == 6 + len(CDC1) + len(CDC2) + 1


def test_late_update_lands_inside_the_right_interval(scenario):
    _, result = scenario
    assert history_of_names(scenario, 1) == ["Ann", "Ann Old", "Ann Lee", "Ann Lee-Smith"]
    assert result.batches[2].late == 2


def history_of_names(scenario, key: int) -> list[str]:
    config, _ = scenario
    from pyspark.sql import SparkSession

    return [row[0] for row in history_of(SparkSession.getActiveSession(), config, key)]


def test_as_of_answers_from_the_validity_columns(spark, scenario):
    config, _ = scenario
    assert names_as_of(spark, config, T + "08:15:00")[1] == "Ann"
    assert names_as_of(spark, config, T + "08:45:00")[1] == "Ann Old"
    assert names_as_of(spark, config, T + "09:00:02")[1] == "Ann Lee"
    assert names_as_of(spark, config, T + "08:45:00")[2] == "Bob Late"
    assert 2 not in names_as_of(spark, config, T + "09:01:00")  # end of an interval is exclusive


def test_validity_intervals_chain_without_gaps(spark, scenario):
    config, _ = scenario
    rows = history_of(spark, config, 1)
    for (_, _, _, valid_to, current), (_, _, next_from, _, _) in pairwise(rows):
        assert valid_to == next_from and not current
    assert rows[-1][3] is None and rows[-1][4]


def test_delete_closes_the_version_and_keeps_its_values(spark, scenario):
    config, _ = scenario
    # Not NULLs from the key-only D row: the values of the version it deleted, the late update's (as one batch)
    assert history_of(spark, config, 2)[-1][:2] == ("Bob Late", "D")
    assert history_of(spark, config, 2)[-1][4]


def test_late_update_after_delete_does_not_resurrect(spark, scenario):
    config, _ = scenario
    assert read(spark, config, "latest").where("id = 2").count() == 0
    assert [r[:2] for r in history_of(spark, config, 2)] == [("Bob", "I"), ("Bob Late", "U"), ("Bob Late", "D")]


def test_reinsert_after_delete_opens_a_new_version(spark, scenario):
    config, _ = scenario
    assert [r[:2] for r in history_of(spark, config, 6)] == [("Fay", "I"), ("Fay", "D"), ("Fay Again", "I")]


def test_update_that_changes_nothing_makes_no_version(spark, scenario):
    config, result = scenario
    assert [r[:2] for r in history_of(spark, config, 3)] == [("Cy", "I")]
    assert result.batches[1].unchanged == 1


def test_key_changing_update_removes_the_old_key(spark, scenario):
    config, result = scenario
    assert [r[:2] for r in history_of(spark, config, 4)] == [("Dee", "I"), ("Dee", "D")]
    assert [r[:2] for r in history_of(spark, config, 40)] == [("Dee", "U")]
    assert result.batches[2].key_changes == 1


def test_duplicate_delivery_is_applied_once(spark, scenario):
    config, result = scenario
    assert len(history_of(spark, config, 7)) == 1
    assert result.batches[1].duplicates == 1


def test_change_seq_restart_is_ordered_by_commit_time(spark, scenario):
    config, _ = scenario
    assert [r[0] for r in history_of(spark, config, 11)] == ["Ivy", "Ivy B"]


def test_load_file_landing_after_cdc_sorts_before_it(spark, scenario):
    config, result = scenario
    assert [r[0] for r in history_of(spark, config, 13)] == ["Hank", "Hank New"]
    assert result.batches[3].late == 1


def test_bad_rows_are_quarantined_with_their_reason(spark, scenario):
    config, result = scenario
    quarantine = read(spark, config, "quarantine")
    reasons = {(r["reason"], r["source_row"]) for r in quarantine.collect()}
    assert reasons == {
        ("unknown_op", 6),
        ("null_key", 7),
        ("type_mismatch", 8),
        ("bad_change_seq", 9),
        ("duplicate_sequence", 5),
        ("duplicate_sequence", 6),
    }
    detail = quarantine.where("reason = 'type_mismatch'").first()["detail"]
    assert detail == "column score: 'abc' is not a valid double"
    assert result.batches[2].duplicate_sequence_keys == 1  # a count: keys may be PHI, the rows are in quarantine


def test_null_change_seq_rows_are_counted(scenario):
    _, result = scenario
    assert result.batches[0].null_sequence == 6 and result.batches[3].null_sequence == 1
