"""Latest (SCD1): one row per live key, written by MERGE with a sequence guard.

The guard (`s._sequence > t._sequence`) is what makes the MERGE idempotent and late-safe: a change
older than the row already there never overwrites it, and a replayed batch changes nothing. The one
exception is named by the plan (`_replaces`): history dropped the current version as a repeat of the
late one before it, which takes its place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.apply.keys import key_condition
from lakehouse.tables import insert_if_empty

if TYPE_CHECKING:
    from delta.tables import DeltaTable

LATEST_META = ["_op", "_sequence", "_change_seq", "_valid_from", "_source_file", "_source_row", "_batch_id"]


def latest_changes(plan: DataFrame, *, batch_id: int, columns: list[str]) -> DataFrame:
    """The current version of every key this batch touched, as a source for the latest MERGE.

    Existing versions written by this same batch id are included: after a crash between the history
    and latest commits, the replay finds them in history and still brings latest up to date. So is the current
    version of a key whose versions a late change re-filled (`_resync`), for `merge_latest(refill=True)`, and one that
    takes the place of a current version history dropped as a repeat (`_replaces`).
    """
    wanted = (F.col("_action") == "insert") | (F.col("_existing") & (F.col("_batch_id") == batch_id))
    if "_resync" in plan.columns:  # a key with a version re-filled by a late change (`history.plan_history`)
        wanted = wanted | (F.col("_existing") & F.col("_resync"))
    replaces = ["_replaces"] if "_replaces" in plan.columns else []  # the sequence of a dropped current version
    if replaces:  # its place goes to the version now current, which may be a stored one
        wanted = wanted | F.col("_replaces").isNotNull()
    return plan.where(F.col("_is_current") & wanted).select(*[F.col(f"`{c}`") for c in [*columns, *replaces]])


def merge_latest(
    delta_table: DeltaTable,
    source: DataFrame,
    *,
    key: list[str],
    columns: list[str],
    within: Column | None = None,
    new_keys_only: bool = False,
    nullable: Sequence[str] = (),
    refill: bool = False,
    path: str | None = None,
) -> None:
    """Upsert newer rows, delete keys whose newest change is a delete, ignore anything older.

    `new_keys_only` (no key of the batch has an earlier version in history, so none can be in latest)
    lets Delta take its insert-only path: no target file is rewritten. `nullable` key columns are matched
    NULL-safe. `refill` (a source with DMS's CsvNoSupValue): a row of the same sequence with other values is the
    same version re-filled by a late change (`history.plan_history`), and is written too. A source row whose
    `_replaces` is the target's sequence takes the place of a current version history dropped as a repeat.
    With the table's `path`, a latest that holds no file yet gets the inserts appended (`tables.insert_if_empty`, from
    the snapshot `delta_table` read: make it just before).
    """
    inserts = source.where("_op <> 'D'").select(*[F.col(f"`{c}`") for c in columns])
    if path is not None and insert_if_empty(inserts, path, refresh=False):
        return
    on = F.expr(key_condition(key, nullable))
    if within is not None:  # a literal range on the target lets Delta skip files by their statistics
        on = on & within
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    merge = delta_table.alias("t").merge(source.alias("s"), on)
    if not new_keys_only:
        merge = merge.whenMatchedDelete(condition="s._sequence > t._sequence AND s._op = 'D'").whenMatchedUpdate(
            condition="s._sequence > t._sequence", set=values
        )
    if not new_keys_only and "_replaces" in source.columns:
        # The key's current version was dropped as a repeat of the late one before it (`history.plan_history`).
        merge = merge.whenMatchedUpdate(condition="s._replaces = t._sequence AND s._op <> 'D'", set=values)
    if not new_keys_only and refill:
        differs = " OR ".join(f"NOT (s.`{c}` <=> t.`{c}`)" for c in columns)
        refilled = f"s._sequence = t._sequence AND s._op <> 'D' AND ({differs})"
        merge = merge.whenMatchedUpdate(condition=refilled, set=values)
    merge.whenNotMatchedInsert(condition="s._op <> 'D'", values=values).execute()
