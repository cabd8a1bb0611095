"""`plan_history` on one key whose batch mixes every case: a replay, an unchanged update, a late
update inside an old interval, a delete carrying values and a delete of a deleted key."""

from datetime import datetime, timedelta

from chispa import assert_df_equality

from lakehouse.apply.history import plan_history

CHANGE = (
    "id INT, name STRING, _op STRING, _sequence STRING, _change_seq STRING, _valid_from TIMESTAMP, "
    "_source_file STRING, _source_row BIGINT, _batch_id BIGINT"
)
HISTORY = CHANGE + ", _valid_to TIMESTAMP, _is_current BOOLEAN"


def t(hour: int) -> datetime:
    return datetime(2026, 1, 1) + timedelta(hours=hour)


def test_one_key_with_every_kind_of_change(spark):
    existing = spark.createDataFrame(
        [
            (1, "a", "I", "s10", None, t(10), "f0", 1, 0, t(20), False),
            (1, "b", "U", "s20", None, t(20), "f0", 2, 0, None, True),
            (2, "x", "I", "s10", None, t(10), "f0", 3, 0, None, True),  # a key the batch leaves alone
        ],
        HISTORY,
    )
    changes = spark.createDataFrame(
        [
            (1, "b", "U", "s20", None, t(20), "f0", 2, 1),  # replay of an existing version
            (1, "a", "U", "s15", None, t(15), "f1", 1, 1),  # late, and the same values as s10: unchanged
            (1, "c", "U", "s17", None, t(17), "f1", 2, 1),  # late: lands inside [10, 20)
            (1, "d", "U", "s30", None, t(30), "f1", 3, 1),
            (1, None, "D", "s40", None, t(40), "f1", 4, 1),  # a key-only delete: carries "d"
            (1, None, "D", "s50", None, t(50), "f1", 5, 1),  # a delete of a deleted key: unchanged
            (2, "x", "U", "s05", None, t(5), "f1", 6, 1),  # late and older than every version of key 2
        ],
        CHANGE,
    )
    plan = plan_history(changes, existing, key=["id"], values=["id", "name"])
    got = plan.select("id", "_sequence", "name", "_action", "_valid_to", "_is_current", "_is_deleted", "_late")
    expected = spark.createDataFrame(
        [
            (1, "s10", "a", "update", t(17), False, False, False),
            (1, "s15", "a", "unchanged", None, None, None, None),
            (1, "s17", "c", "insert", t(20), False, False, True),
            (1, "s20", "b", "update", t(30), False, False, False),
            (1, "s20", "b", "replay", None, None, None, None),
            (1, "s30", "d", "insert", t(40), False, False, False),
            (1, "s40", "d", "insert", None, True, True, False),
            (1, "s50", None, "unchanged", None, None, None, None),
            (2, "s05", "x", "insert", t(10), False, False, True),
            (2, "s10", "x", "keep", None, True, False, False),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_update_without_its_patient_column_keeps_the_patient_and_the_consent_flags_of_the_version_before(spark):
    """CsvNoSupValue: the update was flagged on a NULL patient id; the patient and its flags come from the version
    before it, and it is not counted as a change no policy row applies to."""
    from pyspark.sql import functions as F

    from lakehouse.apply.history import flags_follow_unsupplied

    schema = CHANGE.replace("name STRING", "patient BIGINT, minutes INT, flag INT, since DATE")
    existing = spark.createDataFrame(
        [(1, 7, 30, 1, datetime(2025, 1, 1).date(), "I", "s10", None, t(10), "f0", 1, 0, None, True)],
        schema + ", _valid_to TIMESTAMP, _is_current BOOLEAN",
    )
    changes = spark.createDataFrame([(1, None, 45, 0, None, "U", "s20", None, t(20), "f1", 1, 1)], schema).withColumns(
        {"_unsupplied": F.lit("patient"), "_missing": F.lit(True)}
    )

    flagged = flags_follow_unsupplied(changes, ["patient"], ["flag", "since"], "_missing")
    assert flagged.select("_unsupplied", "_missing").first() == ("patient,flag,since", False)
    plan = plan_history(flagged, existing, key=["id"], values=["id", "patient", "minutes", "flag", "since"])
    new = plan.where("_action = 'insert'").select("patient", "minutes", "flag", "since").first()
    assert tuple(new) == (7, 45, 1, datetime(2025, 1, 1).date())
