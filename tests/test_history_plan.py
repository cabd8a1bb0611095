"""`plan_history` on one key whose batch mixes every case: a replay, an unchanged update, a late
update inside an old interval, a delete carrying values and a delete of a deleted key."""

from datetime import datetime, timedelta

from chispa import assert_df_equality

from lakehouse.apply.history import plan_history
from lakehouse.apply.latest import latest_changes

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


# CsvNoSupValue: history keeps each update's unsupplied columns, so a late change re-fills the versions after it.
SCORED = CHANGE.replace("name STRING", "name STRING, score INT") + ", _unsupplied STRING"
STORED = SCORED + ", _valid_to TIMESTAMP, _is_current BOOLEAN"


def scored_plan(spark, existing: list[tuple], changes: list[tuple], **options):
    """`plan_history` of changes and stored versions with a name, a score and their `_unsupplied` lists."""
    return plan_history(
        spark.createDataFrame(changes, SCORED),
        spark.createDataFrame(existing, STORED),
        key=["id"],
        values=["id", "name", "score"],
        **options,
    )


def plan_late(spark, existing: list[tuple], changes: list[tuple]):
    plan = scored_plan(spark, existing, changes)
    return plan.select("_sequence", "name", "score", "_action", "_refilled", "_unsupplied", "_resync").orderBy(
        "_sequence", "_action"
    )


def test_a_late_update_refills_the_later_versions_that_lacked_its_column(spark):
    existing = [
        (1, "Ann", 10, "I", "s10", None, t(10), "f0", 1, 0, None, t(20), False),
        (1, "Ann", 20, "U", "s20", None, t(20), "f0", 2, 0, "name", t(30), False),
        (1, "Ann", 30, "U", "s30", None, t(30), "f0", 3, 0, "name", None, True),
    ]
    late = [(1, "Bea", None, "U", "s15", None, t(15), "f1", 1, 1, "score")]
    rows = [tuple(r) for r in plan_late(spark, existing, late).collect()]
    assert rows == [
        ("s10", "Ann", 10, "update", False, None, True),
        ("s15", "Bea", 10, "insert", False, "score", True),
        ("s20", "Bea", 20, "update", True, "name", True),
        ("s30", "Bea", 30, "update", True, "name", True),
    ]


def test_the_refill_stops_at_a_later_version_that_carried_the_column_and_a_delete_carries_it(spark):
    existing = [
        (1, "Ann", 10, "I", "s10", None, t(10), "f0", 1, 0, None, t(20), False),
        (1, "Ann", 20, "U", "s20", None, t(20), "f0", 2, 0, "name", t(30), False),
        (1, "Cy", 30, "U", "s30", None, t(30), "f0", 3, 0, None, t(40), False),
        (1, "Cy", 40, "U", "s40", None, t(40), "f0", 4, 0, "name", None, True),
        (2, "Dan", 10, "I", "s10", None, t(10), "f0", 5, 0, None, t(20), False),
        (2, "Dan", 20, "U", "s20", None, t(20), "f0", 6, 0, "name", t(30), False),
        (2, "Dan", 20, "D", "s30", None, t(30), "f0", 7, 0, None, None, True),
    ]
    late = [
        (1, "Bea", None, "U", "s15", None, t(15), "f1", 1, 1, "score"),
        (2, "Eve", 15, "U", "s15", None, t(15), "f1", 2, 1, None),
    ]
    plan = scored_plan(spark, existing, late)
    rows = [
        tuple(r)
        for r in plan.select("id", "_sequence", "name", "score", "_action").orderBy("id", "_sequence").collect()
    ]
    assert rows == [
        (1, "s10", "Ann", 10, "update"),
        (1, "s15", "Bea", 10, "insert"),
        (1, "s20", "Bea", 20, "update"),
        (1, "s30", "Cy", 30, "keep"),  # it carried its name: the versions after it keep theirs
        (1, "s40", "Cy", 40, "keep"),
        (2, "s10", "Dan", 10, "update"),
        (2, "s15", "Eve", 15, "insert"),
        (2, "s20", "Eve", 20, "update"),
        (2, "s30", "Eve", 20, "update"),  # the delete carries the values of the version it deleted, re-filled
    ]


def test_a_replayed_late_update_plans_no_refill_and_versions_stored_without_the_list_are_kept(spark):
    existing = [
        (1, "Ann", 10, "I", "s10", None, t(10), "f0", 1, 0, None, t(15), False),
        (1, "Bea", 10, "U", "s15", None, t(15), "f1", 1, 1, "score", t(20), False),
        (1, "Bea", 20, "U", "s20", None, t(20), "f0", 2, 0, "name", None, True),
        (2, "Old", 10, "U", "s20", None, t(20), "f0", 3, 0, None, None, True),  # stored before lists were kept
    ]
    changes = [
        (1, "Bea", None, "U", "s15", None, t(15), "f1", 1, 1, "score"),  # the late update's file again
        (2, "New", None, "U", "s10", None, t(10), "f1", 2, 1, "score"),
    ]
    plan = scored_plan(spark, existing, changes)
    rows = plan.select("id", "_sequence", "name", "_action", "_refilled").orderBy("id", "_sequence", "_action")
    assert [tuple(r) for r in rows.collect()] == [
        (1, "s10", "Ann", "keep", False),
        (1, "s15", "Bea", "keep", False),
        (1, "s15", "Bea", "replay", False),
        (1, "s20", "Bea", "keep", False),
        (2, "s10", "New", "insert", False),
        (2, "s20", "Old", "keep", False),
    ]


def test_an_update_lacking_a_column_first_among_the_rows_read_keeps_its_value_and_passes_it_on(spark):
    """Only versions open at the batch's oldest change are read: the one a stored update took its name from may be
    absent. It keeps its name, and a new update lacking the name after it takes that name."""
    existing = [(1, "Ann", 20, "U", "s20", None, t(20), "f0", 2, 0, "name", None, True)]
    changes = [
        (1, None, 15, "U", "s15", None, t(15), "f1", 1, 1, "name"),  # late and lacking the name too
        (1, None, 30, "U", "s30", None, t(30), "f1", 2, 1, "name"),
    ]
    rows = [tuple(r) for r in plan_late(spark, existing, changes).collect()]
    assert [r[:5] for r in rows] == [
        ("s15", None, 15, "insert", False),  # nothing before it was read: NULL, as before
        ("s20", "Ann", 20, "update", False),
        ("s30", "Ann", 30, "insert", False),
    ]


def test_a_stored_version_a_late_change_makes_a_repeat_is_dropped_as_one_batch_would_make_none(spark):
    existing = spark.createDataFrame(
        [
            (1, "a", "I", "s10", None, t(10), "f0", 1, 0, t(30), False),
            (1, "a", "D", "s30", None, t(30), "f0", 2, 0, None, True),  # a repeat of the late delete
            (2, "a", "I", "s10", None, t(10), "f0", 3, 0, t(30), False),
            (2, "b", "U", "s30", None, t(30), "f0", 4, 0, t(40), False),  # a repeat of the late update
            (2, "c", "U", "s40", None, t(40), "f0", 5, 0, None, True),
            (3, "a", "I", "s10", None, t(10), "f0", 6, 0, t(30), False),
            (3, "b", "U", "s30", None, t(30), "f0", 7, 0, None, True),  # current: the late one replaces it
            (4, "a", "I", "s10", None, t(10), "f0", 8, 0, t(30), False),
            (4, "b", "U", "s30", None, t(30), "f0", 9, 0, None, True),  # current until the batch's s40: it goes
            (5, "a", "I", "s10", None, t(10), "f0", 10, 0, t(30), False),
            (5, "b", "U", "s30", None, t(30), "f0", 11, 0, None, True),  # only a no-op after it: it goes too
            (6, "a", "I", "s10", None, t(10), "f0", 12, 0, t(20), False),  # two equal updates an older engine kept:
            (6, "b", "U", "s20", None, t(20), "f0", 13, 0, t(30), False),  # a late one between them leaves s20
            (6, "b", "U", "s30", None, t(30), "f0", 14, 0, None, True),  # current, stored, in s30's place in latest
        ],
        HISTORY,
    )
    changes = spark.createDataFrame(
        [
            (1, None, "D", "s20", None, t(20), "f1", 1, 1),
            (2, "b", "U", "s20", None, t(20), "f1", 2, 1),
            (3, "b", "U", "s20", None, t(20), "f1", 3, 1),
            (4, "b", "U", "s20", None, t(20), "f1", 4, 1),
            (4, "c", "U", "s40", None, t(40), "f1", 5, 1),
            (5, "b", "U", "s20", None, t(20), "f1", 6, 1),
            (5, "b", "U", "s40", None, t(40), "f1", 7, 1),
            (6, "b", "U", "s25", None, t(25), "f1", 8, 1),
        ],
        CHANGE,
    )
    plan = plan_history(changes, existing, key=["id"], values=["id", "name"], drop_repeats=True)
    got = plan.select("id", "_sequence", "_action", "_valid_to", "_is_current", "_replaces").orderBy("id", "_sequence")
    assert [tuple(r) for r in got.collect()] == [
        (1, "s10", "update", t(20), False, None),
        (1, "s20", "insert", None, True, "s30"),  # latest has no row of a deleted key: the clause finds none
        (1, "s30", "drop", None, None, None),
        (2, "s10", "update", t(20), False, None),
        (2, "s20", "insert", t(40), False, None),
        (2, "s30", "drop", None, None, None),
        (2, "s40", "keep", None, True, None),
        (3, "s10", "update", t(20), False, None),
        (3, "s20", "insert", None, True, "s30"),  # latest holds s30: s20 takes its place
        (3, "s30", "drop", None, None, None),
        (4, "s10", "update", t(20), False, None),
        (4, "s20", "insert", t(40), False, None),
        (4, "s30", "drop", None, None, None),
        (4, "s40", "insert", None, True, "s30"),  # newer than s30: latest's sequence guard takes it first
        (5, "s10", "update", t(20), False, None),
        (5, "s20", "insert", None, True, "s30"),
        (5, "s30", "drop", None, None, None),
        (5, "s40", "unchanged", None, None, None),
        (6, "s10", "keep", t(20), False, None),
        (6, "s20", "update", None, True, "s30"),
        (6, "s25", "unchanged", None, None, None),
        (6, "s30", "drop", None, None, None),
    ]
    columns = ["id", "name", "_op", "_sequence"]
    sent = latest_changes(plan, batch_id=1, columns=columns).select(*columns, "_replaces").orderBy("id")
    assert [tuple(r) for r in sent.collect()] == [
        (1, "a", "D", "s20", "s30"),
        (3, "b", "U", "s20", "s30"),
        (4, "c", "U", "s40", "s30"),
        (5, "b", "U", "s20", "s30"),
        (6, "b", "U", "s20", "s30"),  # a stored version, sent to latest for its place
    ]
    kept = plan_history(changes, existing, key=["id"], values=["id", "name"])  # a snapshot's diff keeps them
    assert kept.where("_action = 'drop'").count() == 0


def test_stored_updates_a_late_change_refills_into_repeats_are_dropped(spark):
    """s30 lacked the score and took 10; s40 lacked the name and took Bea from s30. A late s20 (Bea, 20) re-fills s30
    to (Bea, 20), a repeat of it, and s40 is then a repeat of s30: one batch makes neither a version."""
    existing = [
        (1, "Ann", 10, "I", "s10", None, t(10), "f0", 1, 0, None, t(30), False),
        (1, "Bea", 10, "U", "s30", None, t(30), "f0", 2, 0, "score", t(40), False),
        (1, "Bea", 20, "U", "s40", None, t(40), "f0", 3, 0, "name", t(50), False),
        (1, "Cy", 30, "U", "s50", None, t(50), "f0", 4, 0, None, None, True),
    ]
    late = [(1, "Bea", 20, "U", "s20", None, t(20), "f1", 1, 1, None)]
    plan = scored_plan(spark, existing, late, drop_repeats=True)
    rows = plan.select("_sequence", "_action", "_valid_to").orderBy("_sequence")
    assert [tuple(r) for r in rows.collect()] == [
        ("s10", "update", t(20)),
        ("s20", "insert", t(50)),
        ("s30", "drop", None),
        ("s40", "drop", None),
        ("s50", "keep", None),
    ]
