"""DMS CsvNoSupValue and key changes in one batch: an update that moved its key takes the columns it did not carry
from the old key, and the updates of the new key after it in the same batch (or chain of moves) take them from it."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pyspark.sql import functions as F

from tests.dms_tables import land, people_config, read, run, seq

NOSUP = "_NOSUP_"


def ts(second: int) -> str:
    return f"2026-03-01 09:00:{second:02d}.000000"


def versions(spark, config) -> list[tuple]:
    history = read(spark, config, "history").orderBy("_sequence", "id")
    return [tuple(r) for r in history.select("id", "name", "score", "_op").collect()]


def latest(spark, config) -> list[tuple]:
    return [tuple(r) for r in read(spark, config, "latest").orderBy("id").select("id", "name", "score").collect()]


def test_an_update_after_a_key_move_in_the_same_batch_keeps_the_columns_the_move_took_from_the_old_key(spark, tmp_path):
    config = people_config(tmp_path, no_sup_value=NOSUP)
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00.000000", "1", "Ann", "10", "", ""]])
    run(spark, config)
    land(
        config,
        "20260301-090000000.csv",
        [
            ["U", ts(0), "9", NOSUP, "11", seq(1), "1"],  # key 1 -> 9, name not carried
            ["U", ts(1), "9", NOSUP, "12", seq(2), ""],  # key 9, name not carried
        ],
    )
    result = run(spark, config)

    assert (result.batches[0].quarantined, result.batches[0].unknown_keys) == (0, 0)
    assert versions(spark, config) == [
        (1, "Ann", 10.0, "I"),
        (1, "Ann", 10.0, "D"),
        (9, "Ann", 11.0, "U"),
        (9, "Ann", 12.0, "U"),
    ]
    assert latest(spark, config) == [(9, "Ann", 12.0)]


def test_a_chain_of_key_moves_in_one_batch_carries_the_first_keys_values_to_the_last(spark, tmp_path):
    config = people_config(tmp_path, no_sup_value=NOSUP)
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00.000000", "1", "Ann", "10", "", ""]])
    run(spark, config)
    land(
        config,
        "20260301-090000000.csv",
        [
            ["U", ts(0), "9", NOSUP, "11", seq(1), "1"],  # 1 -> 9
            ["U", ts(1), "12", NOSUP, NOSUP, seq(2), "9"],  # 9 -> 12, carrying nothing but its key
            ["U", ts(2), "12", NOSUP, "13", seq(3), ""],
            ["U", ts(3), "15", NOSUP, "14", seq(4), "12"],  # 12 -> 15
            ["U", ts(4), "20", NOSUP, NOSUP, seq(5), "15"],  # 15 -> 20
            ["U", ts(5), "20", NOSUP, "16", seq(6), ""],
        ],
    )
    result = run(spark, config)

    assert (result.batches[0].quarantined, result.batches[0].unknown_keys) == (0, 0)
    assert versions(spark, config) == [
        (1, "Ann", 10.0, "I"),
        (1, "Ann", 10.0, "D"),
        (9, "Ann", 11.0, "U"),
        (9, "Ann", 11.0, "D"),
        (12, "Ann", 11.0, "U"),
        (12, "Ann", 13.0, "U"),
        (12, "Ann", 13.0, "D"),
        (15, "Ann", 14.0, "U"),
        (15, "Ann", 14.0, "D"),
        (20, "Ann", 14.0, "U"),
        (20, "Ann", 16.0, "U"),
    ]
    assert latest(spark, config) == [(20, "Ann", 16.0)]


def test_a_key_reused_after_its_delete_takes_the_moved_rows_values_not_the_deleted_ones(spark, tmp_path):
    config = people_config(tmp_path, no_sup_value=NOSUP)
    land(
        config,
        "LOAD00000001.csv",
        [
            ["2026-03-01 08:00:00.000000", "1", "Ann", "10", "", ""],
            ["2026-03-01 08:00:00.000000", "9", "Zed", "90", "", ""],
        ],
    )
    run(spark, config)
    land(config, "20260301-085000000.csv", [["D", "2026-03-01 08:50:00.000000", "9", NOSUP, NOSUP, seq(1), ""]])
    run(spark, config)
    land(
        config,
        "20260301-090000000.csv",
        [
            ["U", ts(0), "9", NOSUP, "11", seq(2), "1"],  # 1 -> 9, a key deleted before
            ["U", ts(1), "9", NOSUP, "12", seq(3), ""],
        ],
    )
    run(spark, config)

    assert versions(spark, config) == [
        (1, "Ann", 10.0, "I"),
        (9, "Zed", 90.0, "I"),
        (9, "Zed", 90.0, "D"),
        (1, "Ann", 10.0, "D"),
        (9, "Ann", 11.0, "U"),
        (9, "Ann", 12.0, "U"),
    ]
    assert latest(spark, config) == [(9, "Ann", 12.0)]


CHANGE = (
    "id INT, patient BIGINT, minutes INT, flag INT, since DATE, _op STRING, _sequence STRING, _change_seq STRING, "
    "_valid_from TIMESTAMP, _source_file STRING, _source_row BIGINT, _batch_id BIGINT"
)


def test_consent_flags_of_updates_after_a_key_move_come_from_the_old_key_as_the_patient_does(spark):
    """The patient column unsupplied: the moving update and the update of its new key after it were flagged on a
    NULL patient; both take the patient and its flags from the old key (`flags_follow_unsupplied`)."""
    from lakehouse.apply.history import flags_follow_unsupplied, plan_history

    t = datetime(2026, 1, 1)
    since = date(2025, 1, 1)
    existing = spark.createDataFrame(
        [(1, 7, 30, 1, since, "I", "s10", None, t, "f0", 1, 0, None, True)],
        CHANGE + ", _valid_to TIMESTAMP, _is_current BOOLEAN",
    )
    hour = timedelta(hours=1)
    changes = spark.createDataFrame(
        [
            (9, None, 45, 0, None, "U", "s20", None, t + hour, "f1", 1, 1, True),  # 1 -> 9
            (1, None, None, None, None, "D", "s20", None, t + hour, "f1", 1, 1, False),  # the split's delete of 1
            (9, None, 50, 0, None, "U", "s30", None, t + 2 * hour, "f1", 2, 1, False),
        ],
        CHANGE + ", _key_moved BOOLEAN",
    ).withColumns({"_unsupplied": F.lit("patient"), "_missing": F.lit(True)})

    flagged = flags_follow_unsupplied(changes, ["patient"], ["flag", "since"], "_missing")
    plan = plan_history(flagged, existing, key=["id"], values=["id", "patient", "minutes", "flag", "since"])
    new = plan.where("_action = 'insert' AND _op = 'U'").orderBy("_sequence")
    assert [tuple(r) for r in new.select("id", "patient", "minutes", "flag", "since").collect()] == [
        (9, 7, 45, 1, since),
        (9, 7, 50, 1, since),
    ]
