"""A full snapshot → the change stream, by diffing it against the current state (the latest table).

new key → I, a tracked value changed → U, key gone → D (carrying the values it deletes), unchanged →
nothing. Every change of one snapshot takes the snapshot's own date as its commit time, so its
sequence is the same whenever the snapshot is applied: a replay after a crash converges, and
applying the same snapshot twice changes nothing.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.changes.normalize import sequence_column


def _c(name: str) -> Column:
    return F.col("`" + name + "`")


def _current(name: str) -> str:
    return f"__current_{name}"


def snapshot_changes(
    snapshot: DataFrame,
    current: DataFrame,
    *,
    key: list[str],
    values: list[str],
    ignore: list[str] | tuple[str, ...] = (),
    nullable: list[str] | tuple[str, ...] = (),
    day: date,
    source_file: str,
    batch_id: int,
) -> DataFrame:
    """The changes that turn `current` (business columns of the live rows) into `snapshot`.

    `snapshot` may carry `_reason`/`_detail`/`_raw` (rows to quarantine, never diffed) and `_duplicate`
    (identical repeats, counted and skipped). A row the source quarantined holds its key: a live row that agrees
    with it on every key column it has a value for is not deleted by this snapshot (a bad value today does not
    mean the entity is gone; a NULL key part of a quarantined row is unknown, so it holds every value).
    `nullable` key columns may be NULL and are matched NULL-safe.
    Returns business columns plus the change-stream columns `apply_changes` expects.
    """
    has = set(snapshot.columns)
    rows = snapshot.withColumns(
        {
            "_reason": F.col("_reason") if "_reason" in has else F.lit(None).cast("string"),
            "_detail": F.col("_detail") if "_detail" in has else F.lit(None).cast("string"),
            "_raw": F.col("_raw") if "_raw" in has else F.lit(None).cast("string"),
            "_duplicate": F.col("_duplicate") if "_duplicate" in has else F.lit(False),
        }
    )
    null_key = F.lit(False)
    for k in key:
        if k not in nullable:
            null_key = null_key | _c(k).isNull()
    rows = rows.withColumns(
        {
            "_reason": F.when(F.col("_reason").isNull() & null_key, F.lit("null_key")).otherwise(F.col("_reason")),
            "_detail": F.when(
                F.col("_reason").isNull() & null_key, F.lit(f"primary key {key} has an empty value")
            ).otherwise(F.col("_detail")),
            "_raw": F.when(
                F.col("_reason").isNull() & null_key, F.to_json(F.struct(*[_c(c) for c in values]))
            ).otherwise(F.col("_raw")),
        }
    )
    applicable = F.col("_reason").isNull() & ~F.col("_duplicate")
    present = rows.where(applicable).select(*[_c(c) for c in values], F.lit(True).alias("_in_snapshot"))
    live = current.select(*[_c(c).alias(_current(c)) for c in values], F.lit(True).alias("_in_current"))
    on = F.lit(True)
    for k in key:
        on = on & (_c(k).eqNullSafe(_c(_current(k))) if k in nullable else _c(k) == _c(_current(k)))
    joined = present.join(live, on=on, how="full")
    # A key part may be NULL on both sides (a nullable key column): the key is the side that has the row.
    joined = joined.withColumns(
        {k: F.when(F.col("_in_snapshot").isNotNull(), _c(k)).otherwise(_c(_current(k))) for k in key}
    )
    tracked = [c for c in values if c not in key and c not in ignore]
    same = F.lit(True)
    for c in tracked:
        same = same & _c(c).eqNullSafe(_c(_current(c)))
    in_snapshot = F.col("_in_snapshot").isNotNull()
    in_current = F.col("_in_current").isNotNull()
    op = F.when(in_snapshot & ~in_current, F.lit("I")).when(in_snapshot & ~same, F.lit("U")).when(~in_snapshot, "D")
    changes = joined.withColumn("_op", op).where(F.col("_op").isNotNull())
    if "_reason" in has:
        changes = _hold_quarantined_keys(changes, snapshot, key, nullable)
    # The day's midnight read in the session's time zone (UTC): PySpark would read a datetime literal in the
    # driver's own zone (a New York laptop's snapshot would be valid from 05:00 UTC).
    effective = F.lit(day.isoformat()).cast("timestamp")
    business = [_c(c) if c in key else F.when(in_snapshot, _c(c)).otherwise(_c(_current(c))).alias(c) for c in values]
    lineage = {
        "_sequence": sequence_column(F.lit(False), effective, F.lit(None), F.lit(""), F.lit(0)),
        "_change_seq": F.lit(None).cast("string"),
        "_valid_from": effective,
        "_source_file": F.lit(source_file),
        "_source_row": F.lit(None).cast("long"),
        "_batch_id": F.lit(batch_id).cast("long"),
    }
    applied = changes.select(
        *business,
        F.col("_op"),
        *[e.alias(n) for n, e in lineage.items()],
        F.lit(None).cast("string").alias("_reason"),
        F.lit(None).cast("string").alias("_detail"),
        F.lit(None).cast("string").alias("_raw"),
        F.lit(False).alias("_duplicate"),
    )
    skipped = rows.where(~applicable).select(
        *[_c(c) for c in values],
        F.lit(None).cast("string").alias("_op"),
        *[e.alias(n) for n, e in lineage.items()],
        "_reason",
        "_detail",
        "_raw",
        "_duplicate",
    )
    return applied.unionByName(skipped).withColumn("_synthetic", F.lit(False))


def _hold(name: str) -> str:
    return f"__held_{name}"


# A quarantined row's key parts are unknown (not NULL) when its record could not be read whole or typed.
_KEY_UNKNOWN = ("unterminated_record", "malformed_record", "type_mismatch", "null_key")


def _hold_quarantined_keys(
    changes: DataFrame, snapshot: DataFrame, key: list[str], nullable: list[str] | tuple[str, ...] = ()
) -> DataFrame:
    """`changes` without the deletes of live rows a quarantined row of `snapshot` names.

    A NULL key part holds any value, except in a `nullable` key column of a row read whole (a duplicate, a bad
    encoding): there NULL is the row's value (a clinician without a group) and holds only the live rows without one.
    The quarantined rows of a day are few: they are broadcast, and each delete is checked against all of them.
    """
    has_key = F.lit(False)
    for k in key:
        has_key = has_key | _c(k).isNotNull()
    held = snapshot.where(F.col("_reason").isNotNull() & has_key).select(
        *[_c(k).alias(_hold(k)) for k in key], F.col("_reason").isin(*_KEY_UNKNOWN).alias("__held_unknown")
    )
    names = F.lit(True)
    for k in key:
        held_k = F.col(_hold(k))
        if k in nullable:
            names = names & ((held_k.isNull() & F.col("__held_unknown")) | held_k.eqNullSafe(_c(k)))
        else:
            names = names & (held_k.isNull() | (held_k == _c(k)))
    return changes.join(F.broadcast(held), (F.col("_op") == "D") & names, "left_anti")
