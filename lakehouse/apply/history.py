"""History (SCD2): every change of every key, each a version with a validity interval.

A version is valid from its commit time (inclusive) to the next version's commit time (exclusive);
the last version of a key is open (`_valid_to` NULL, `_is_current` true). A delete is a version too
(`_is_deleted`, carrying the values it deleted, so no NULL is ever stored as if it were a value),
which is what keeps a late update from resurrecting a deleted key.

`plan_history` is pure: it merges a batch of changes into the existing versions of the keys it
touches and says, per row, what the MERGE must do. Replaying a batch plans nothing new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from delta.tables import DeltaTable

META_COLUMNS = [
    "_op",
    "_is_deleted",
    "_valid_from",
    "_valid_to",
    "_is_current",
    "_sequence",
    "_change_seq",
    "_source_file",
    "_source_row",
    "_batch_id",
]


def _c(name: str) -> Column:
    return F.col("`" + name + "`")


def plan_history(
    changes: DataFrame, existing: DataFrame, *, key: list[str], values: list[str], ignore: list[str] = ()
) -> DataFrame:
    """Combine new `changes` with the `existing` history rows of their keys.

    Returns every row with `_action`:
      insert     a new version to insert;          update  an existing version whose interval changed;
      keep       an existing version left as is;   replay  a change already in history (same sequence);
      unchanged  an update that changes no tracked value (or a delete of a deleted key): no version.
    and `_late` (a new version older than one already in history).
    """
    columns = [*values, "_op", "_sequence", "_change_seq", "_valid_from", "_source_file", "_source_row", "_batch_id"]
    old = existing.select(
        *[_c(c) for c in columns],
        F.lit(True).alias("_existing"),
        F.col("_valid_to").alias("_old_valid_to"),
        F.col("_is_current").alias("_old_is_current"),
    )
    new = changes.select(
        *[_c(c) for c in columns],
        F.lit(False).alias("_existing"),
        F.lit(None).cast("timestamp").alias("_old_valid_to"),
        F.lit(None).cast("boolean").alias("_old_is_current"),
    )
    by_key = Window.partitionBy(*[_c(k) for k in key])
    ordered = by_key.orderBy(F.col("_sequence"), F.col("_existing").desc())
    same_as_previous = F.coalesce(F.lag("_sequence").over(ordered) == F.col("_sequence"), F.lit(False))
    rows = old.unionByName(new).withColumn("_replay", ~F.col("_existing") & same_as_previous)
    live = rows.where(~F.col("_replay"))
    ordered = by_key.orderBy("_sequence")
    tracked = [c for c in values if c not in key and c not in ignore]
    same = F.lit(True)
    for c in tracked:
        same = same & _c(c).eqNullSafe(F.lag(_c(c)).over(ordered))
    prev_op = F.lag("_op").over(ordered)
    unchanged = (
        ~F.col("_existing")
        & prev_op.isNotNull()
        & (((F.col("_op") != "D") & (prev_op != "D") & same) | ((F.col("_op") == "D") & (prev_op == "D")))
    )
    live = live.withColumn("_unchanged", unchanged)
    versions = _intervals(live.where(~F.col("_unchanged")), key=key, values=values, ordered=ordered, by_key=by_key)
    skipped = (
        live.where(F.col("_unchanged"))
        .withColumn("_action", F.lit("unchanged"))
        .unionByName(rows.where(F.col("_replay")).withColumn("_action", F.lit("replay")), allowMissingColumns=True)
    )
    return versions.unionByName(skipped, allowMissingColumns=True).drop("_unchanged", "_replay")


def _intervals(live: DataFrame, *, key: list[str], values: list[str], ordered: Window, by_key: Window) -> DataFrame:
    next_from = F.lead("_valid_from").over(ordered)
    is_current = F.lead("_sequence").over(ordered).isNull()
    prev_op = F.lag("_op").over(ordered)
    # A new delete carries the values of the version it deletes.
    carry = ~F.col("_existing") & (F.col("_op") == "D") & prev_op.isNotNull() & (prev_op != "D")
    carried = {c: F.when(carry, F.lag(_c(c)).over(ordered)).otherwise(_c(c)) for c in values if c not in key}
    newest_existing = F.max(F.when(F.col("_existing"), F.col("_sequence"))).over(by_key)
    planned = live.withColumns(
        {
            **carried,
            "_valid_to": F.when(next_from.isNotNull(), F.greatest(next_from, F.col("_valid_from"))),
            "_is_current": is_current,
            "_is_deleted": F.col("_op") == "D",
            "_late": ~F.col("_existing") & F.coalesce(F.col("_sequence") < newest_existing, F.lit(False)),
        }
    )
    changed = ~F.col("_old_valid_to").eqNullSafe(F.col("_valid_to")) | ~F.col("_old_is_current").eqNullSafe(
        F.col("_is_current")
    )
    return planned.withColumn(
        "_action",
        F.when(~F.col("_existing"), F.lit("insert")).when(changed, F.lit("update")).otherwise(F.lit("keep")),
    )


def merge_history(
    delta_table: DeltaTable,
    plan: DataFrame,
    *,
    key: list[str],
    columns: list[str],
    within: Column | None = None,
    derived: dict[str, str] | None = None,
    reclose: bool = True,
) -> None:
    """Insert new versions and re-close changed intervals; matched on (key, _sequence), so a replay is a no-op.

    `derived` columns (name -> SQL expression over the plan's columns) are written with every insert
    and re-close, e.g. the ID304B `expiration_stp` from `_valid_to`. `reclose=False` (the plan has no
    `update` rows, e.g. a first load) lets Delta take its insert-only path: no target file is rewritten.
    """
    derived = derived or {}
    on = F.expr(" AND ".join([f"t.`{k}` = s.`{k}`" for k in key] + ["t._sequence = s._sequence"]))
    if within is not None:  # a literal range on the target lets Delta skip files by their statistics
        on = on & within
    actions = ["insert", "update"] if reclose else ["insert"]
    source = plan.where(F.col("_action").isin(*actions)).select(
        *[_c(c) for c in columns], "_action", *[F.expr(e).alias(n) for n, e in derived.items()]
    )
    written = [*columns, *derived]
    reclosed = ["_valid_to", "_is_current", *derived]
    merge = delta_table.alias("t").merge(source.alias("s"), on)
    if reclose:
        merge = merge.whenMatchedUpdate(condition="s._action = 'update'", set={f"`{c}`": f"s.`{c}`" for c in reclosed})
    insert = {f"`{c}`": f"s.`{c}`" for c in written}
    merge.whenNotMatchedInsert(condition="s._action = 'insert'", values=insert).execute()
