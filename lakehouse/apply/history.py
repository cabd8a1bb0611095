"""History (SCD2): every change of every key, each a version with a validity interval.

A version is valid from its commit time (inclusive) to the next version's commit time (exclusive);
the last version of a key is open (`_valid_to` NULL, `_is_current` true). A delete is a version too
(`_is_deleted`, carrying the values it deleted, so no NULL is ever stored as if it were a value),
which is what keeps a late update from resurrecting a deleted key.

A change that repeats the state before it (an update that changes no tracked value, a delete of a deleted key) makes
no version; the version before it keeps its lineage in `_repeats`. A late change landing right before it later makes
it a version after all, as one batch of every change would have: the tables do not depend on how files fell into
batches.

`plan_history` is pure: it merges a batch of changes into the existing versions of the keys it
touches and says, per row, what the MERGE must do. Replaying a batch plans nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

from lakehouse.apply.keys import key_condition
from lakehouse.tables import (  # UNSUPPLIED: the columns of a change DMS wrote as CsvNoSupValue, comma-separated
    REPEAT_FIELDS,
    REPEATS,
    REPEATS_TYPE,
    UNSUPPLIED,
    insert_if_empty,
)

if TYPE_CHECKING:
    from delta.tables import DeltaTable


# The repeats a version keeps at most, its newest (a key whose source restates it every minute would grow without end).
MAX_REPEATS = 100


def _c(name: str) -> Column:
    return F.col("`" + name + "`")


def plan_history(
    changes: DataFrame,
    existing: DataFrame,
    *,
    key: list[str],
    values: list[str],
    ignore: list[str] = (),
    one_partition: bool = False,
    keys_moved: bool = True,
    drop_repeats: bool = False,
) -> DataFrame:
    """Combine new `changes` with the `existing` history rows of their keys.

    Returns every row with `_action`:
      insert     a new version to insert;          update  an existing version whose interval changed;
      keep       an existing version left as is;   replay  a change already in history (same sequence, a version's
                                                           or a repeat's);
      unchanged  an update that changes no tracked value (or a delete of a deleted key): no version, a repeat kept
                 in the `_repeats` of the version before it (which is an `update` then, or an `insert`);
      replay_conflict  a change with an applied change's sequence but other values: reported, not applied;
      drop       (`drop_repeats`) an existing version a late change right before it made a repeat of it (a delete
                 after a late delete, an update equal to a late one): one batch would have made it no version. The
                 current version left after a dropped current one has its sequence in `_replaces`.
    and `_late` (a new version older than one already in history), `_unknown_key` (a U or D with no live
    version of its key before it; a moving U of a key change, `_key_moved`, is not one). A stored repeat a late change
    landed right before makes a version again: an `insert` with `_stored_repeat` (no row of this batch).

    One shuffle and one sort by key: each step looks at the neighbouring rows that still count (lag/lead
    IGNORE NULLS over rows the earlier steps kept), so no row is set aside and joined back in. `one_partition` (a
    small batch's few rows): no shuffle at all, the rows are planned in one partition. `keys_moved=False` (the
    batch's counts found no key change) spares the job that looks for chained key moves.
    """
    columns = [*values, "_op", "_sequence", "_change_seq", "_valid_from", "_source_file", "_source_row", "_batch_id"]
    unsupplied = UNSUPPLIED in changes.columns  # a source with DMS's CsvNoSupValue (`DmsSource.no_sup_value`)
    old = _stored_rows(existing, values, with_unsupplied=unsupplied)
    new = changes.select(
        *[_c(c) for c in columns],
        F.lit(False).alias("_existing"),
        F.lit(False).alias("_stored_repeat"),
        F.lit(None).cast("timestamp").alias("_old_valid_to"),
        F.lit(None).cast("boolean").alias("_old_is_current"),
        F.lit(None).cast(REPEATS_TYPE).alias("_old_repeats"),
        (F.col("_key_moved") if "_key_moved" in changes.columns else F.lit(False)).alias("_key_moved"),
        *([F.col(UNSUPPLIED)] if UNSUPPLIED in changes.columns else []),
    )
    # Existing rows first on a tie: a new row with an existing row's sequence is a replay of it.
    ordered = Window.partitionBy(*[_c(k) for k in key]).orderBy(F.col("_sequence"), F.col("_existing").desc())
    rows = old.unionByName(new)
    if one_partition:  # one partition is already clustered by key: the windows below shuffle nothing
        rows = rows.coalesce(1)
    if unsupplied:
        chained = keys_moved and _moves_chain(changes, key)
        filled = [c for c in values if c not in key]
        rows = _refill_existing(rows, filled, ordered)
        rows = _fill_unsupplied(rows, filled, ordered, chained=chained)
        if one_partition:  # the fill's join shuffled the rows
            rows = rows.coalesce(1)
    else:
        rows = rows.withColumn("_refilled", F.lit(False))
    tracked = [c for c in values if c not in key and c not in ignore]
    applied = F.lag(F.struct(*[_c(c).alias(c) for c in ["_sequence", "_op", *tracked]])).over(ordered)
    rows = rows.withColumn("_applied", applied).withColumn(
        "_replay",
        ~F.col("_existing") & F.coalesce(F.col("_applied._sequence") == F.col("_sequence"), F.lit(False)),
    )
    # A replay whose values differ from the applied change of its sequence (DESIGN rule 1: two changes with one
    # sequence are reported): the applied one stays. A delete is compared by its op alone (a stored delete
    # carries the values of the version it closed).
    differs = F.lit(False)
    for c in tracked:
        differs = differs | ~_c(c).eqNullSafe(F.col("_applied").getField(c))
    rows = rows.withColumn(
        "_replay_conflict",
        F.col("_replay") & ((F.col("_applied._op") != F.col("_op")) | ((F.col("_op") != "D") & differs)),
    ).drop("_applied")

    fields = ["_op", "_valid_from", "_existing", "_refilled", *tracked]
    rows = _nearest(rows, ~F.col("_replay"), fields, ordered, before="_live_before")
    prev_op = F.col("_live_before._op")
    same = F.lit(True)
    for c in tracked:
        same = same & _c(c).eqNullSafe(F.col("_live_before").getField(c))
    repeats = (
        ~F.col("_replay")
        & prev_op.isNotNull()
        # A full-load row sorts before every CDC row yet may be timed after it (a reload's transfer time): a CDC
        # change equal to such a row still starts its own version, at its own time.
        & (F.col("_live_before._valid_from") <= F.col("_valid_from"))
        & (((F.col("_op") != "D") & (prev_op != "D") & same) | ((F.col("_op") == "D") & (prev_op == "D")))
    )
    # A stored version repeats the one right before it, which is late (or re-filled by a late change). A current one
    # goes too: the version before it becomes current, and latest takes it in place of it (`_replaces`).
    # A stored repeat (`_stored_rows`) that still repeats the row before it stays one; one that no longer does (a late
    # change landed right before it) is a version again.
    rows = rows.withColumn("_unchanged", (~F.col("_existing") | F.col("_stored_repeat")) & repeats)
    if drop_repeats:
        before_changed = ~F.col("_live_before._existing") | F.col("_live_before._refilled")
        rows = rows.withColumn("_unchanged", F.col("_unchanged") | (F.col("_existing") & repeats & before_changed))
    # A U or D with no live version of its key before it: the source changed a key this table never held
    # (a key update without before-images, a full load that missed rows). It is still applied, so a late
    # insert of the key lands before it; the batch counts it apart (DESIGN rule 4: reported, not hidden).
    rows = rows.withColumn(
        "_unknown_key",
        (~F.col("_existing") | F.col("_stored_repeat"))
        & ~F.col("_replay")
        & ~F.col("_unchanged")
        & F.col("_op").isin("U", "D")
        & ~F.col("_key_moved")
        & (prev_op.isNull() | (prev_op == "D")),
    )
    planned = _intervals(rows, key=key, values=values, ordered=ordered)
    if drop_repeats:
        # Latest holds the sequence of a dropped current version: the new current one replaces it there.
        dropped_current = F.when((F.col("_action") == "drop") & F.col("_old_is_current"), F.col("_sequence"))
        by_key = Window.partitionBy(*[_c(k) for k in key])
        planned = planned.withColumn("_replaces", F.when(F.col("_is_current"), F.max(dropped_current).over(by_key)))
    if unsupplied:
        # A key with a re-filled version, or a replay (after a crash between the history and latest commits the
        # re-fill is in history already): its current version goes to latest again (`latest.latest_changes`).
        by_key = Window.partitionBy(*[_c(k) for k in key])
        planned = planned.withColumn("_resync", F.max(F.col("_refilled") | F.col("_replay")).over(by_key))
    # The stored repeats still repeats are in their version's `_repeats` again, and have no row of their own.
    planned = planned.where(F.col("_action") != "repeat")
    return planned.drop("_live_before", "_unchanged", "_replay", "_key_moved", "_old_repeats")


def _stored_rows(existing: DataFrame, values: list[str], *, with_unsupplied: bool) -> DataFrame:
    """The stored versions of the batch's keys and, as rows of their own after each, its stored repeats (the
    version's values with the repeat's lineage, `_stored_repeat`): a late change may land before one, which then
    differs from the row before it and is a version again, as it would have been had the late change come first."""
    lineage = [f for f in REPEAT_FIELDS if f != UNSUPPLIED]
    unsupplied = F.col(UNSUPPLIED) if UNSUPPLIED in existing.columns else F.lit(None).cast("string")
    own = F.struct(*[_c(f) for f in lineage], unsupplied.alias(UNSUPPLIED), F.lit(False).alias("_stored_repeat"))
    if REPEATS in existing.columns:
        stored = F.col(REPEATS)
        flagged = F.transform(stored, lambda r: r.withField("_stored_repeat", F.lit(True)))
        entries = F.when(stored.isNull(), F.array(own)).otherwise(F.concat(F.array(own), flagged))
    else:  # a history from before repeats were kept (`tables.ensure_tables` adds the column)
        stored, entries = F.lit(None).cast(REPEATS_TYPE), F.array(own)
    rows = existing.select(
        *[_c(c) for c in values],
        "_valid_to",
        "_is_current",
        stored.alias("_old_repeats"),
        F.explode(entries).alias("_e"),
    )
    repeat = F.col("_e._stored_repeat")
    return rows.select(
        *[_c(c) for c in values],
        *[F.col("_e").getField(f).alias(f) for f in lineage],
        *([F.col("_e").getField(UNSUPPLIED).alias(UNSUPPLIED)] if with_unsupplied else []),
        F.lit(True).alias("_existing"),
        repeat.alias("_stored_repeat"),
        F.when(~repeat, F.col("_valid_to")).alias("_old_valid_to"),
        F.when(~repeat, F.col("_is_current")).alias("_old_is_current"),
        F.when(~repeat, F.col("_old_repeats")).alias("_old_repeats"),
        F.lit(False).alias("_key_moved"),
    )


def flags_follow_unsupplied(
    changes: DataFrame, consent_columns: Sequence[str], flags: Sequence[str], missing: str
) -> DataFrame:
    """A change whose patient (or device) column DMS wrote as CsvNoSupValue was flagged on a NULL id: its consent
    `flags` are taken from the key's version before it too, as that column is (`_fill_unsupplied`), and it is not
    counted in `missing` (no policy row applies). The non-PHI zone flags again from the filled rows."""
    named = F.split(F.col(UNSUPPLIED), ",")
    lacking = F.lit(False)
    for c in consent_columns:
        lacking = lacking | F.coalesce(F.array_contains(named, c), F.lit(False))
    carried = F.concat_ws(",", F.col(UNSUPPLIED), *[F.lit(f) for f in flags])
    return changes.withColumns(
        {UNSUPPLIED: F.when(lacking, carried).otherwise(F.col(UNSUPPLIED)), missing: F.col(missing) & ~lacking}
    )


_LINEAGE = ["_sequence", "_source_file", "_source_row"]  # a change, and the split's delete of its old key
_MAX_ROUNDS = 64  # of `_follow_moves`, each following twice as many moves back as the one before


def _moves_chain(changes: DataFrame, key: list[str]) -> bool:
    """Whether a moving U that lacks columns reaches a key the batch deletes after it (a later move may leave from it:
    1 -> 9 -> 12). It looks at the batch's changes alone (materialized by then, `apply.batch`): one small job, and a
    second, a join of those moves with the batch's deletes, only when the batch moved a key without every column."""
    if "_key_moved" not in changes.columns:
        return False
    reached = changes.where(F.col("_key_moved") & (F.col("_op") == "U") & F.col(UNSUPPLIED).isNotNull()).select(
        *[_c(k).alias(f"__key{i}") for i, k in enumerate(key)], F.col("_sequence").alias("__reached")
    )
    if reached.isEmpty():
        return False
    deleted = changes.where(F.col("_op") == "D").select(*[_c(k) for k in key], F.col("_sequence").alias("__deleted"))
    on = F.col("__deleted") > F.col("__reached")
    for i, k in enumerate(key):
        on = on & F.col(f"__key{i}").eqNullSafe(_c(k))
    return not reached.join(deleted, on).isEmpty()


def _refill_existing(rows: DataFrame, columns: list[str], ordered: Window) -> DataFrame:
    """A stored update that lacked a column (listed in its stored `_unsupplied`) took it from the version before it.
    A late change that carries the column and lands before it, with no version carrying the column in between, is
    that version now: the stored update takes the late change's value, as it would have in one batch (`_refilled`
    where a value changed). Otherwise it keeps what it stored: the version it took from need not be among the rows
    read (only those open at the batch's oldest change are). A late moving U that lacks the column is left out
    (a README known limit), as are a replay of an applied change (it sorts after it and carries nothing new) and a
    reload's row (sorted before the CDC rows, timed after them).

    The rows of the batch lacking a column then fill from these (`_fill_unsupplied`, which takes a stored version
    as it is)."""
    named = F.split(F.col(UNSUPPLIED), ",")
    before = ordered.rowsBetween(Window.unboundedPreceding, -1)
    existing = F.col("_existing")
    missing = {c: F.coalesce(F.array_contains(named, c), F.lit(False)) for c in columns}
    moved = F.col("_key_moved") & (F.col("_op") == "U")
    rows = rows.withColumn(
        "__replay", ~existing & F.coalesce(F.lag("_sequence").over(ordered) == F.col("_sequence"), F.lit(False))
    )
    carrier = {
        c: F.last(
            F.when(
                (~missing[c] | moved) & ~F.col("__replay"),
                F.struct((~existing & ~missing[c]).alias("late"), _c(c).alias("v"), F.col("_valid_from").alias("at")),
            ),
            ignorenulls=True,
        ).over(before)
        for c in columns
    }
    rows = rows.withColumn("__carrier", F.struct(*[carrier[c].alias(c) for c in columns]))
    stored_update = existing & (F.col("_op") == "U")
    refilled = {}
    for c in columns:
        late = F.col("__carrier").getField(c)
        # A reload's row sorts before the CDC rows yet is timed after them: not a version they took anything from.
        before_it = late.getField("late") & (late.getField("at") <= F.col("_valid_from"))
        refilled[c] = F.when(
            stored_update & missing[c] & F.coalesce(before_it, F.lit(False)), late.getField("v")
        ).otherwise(_c(c))
    differs = F.lit(False)
    for c in columns:
        differs = differs | ~refilled[c].eqNullSafe(_c(c))
    rows = rows.withColumn("_refilled", existing & differs)
    return rows.withColumns(refilled).drop("__replay", "__carrier")


def _fill_unsupplied(rows: DataFrame, columns: list[str], ordered: Window, *, chained: bool = False) -> DataFrame:
    """An update's columns DMS wrote as CsvNoSupValue (absent from the source's supplemental log: the update did
    not change them) take the key's value before it: that of the nearest earlier row of the key that carried it.
    An update that moved its key (`_key_moved`) takes them from its old key, through the delete of the old key the
    split made beside it (same sequence, file and row), and carries them on: an update of the new key after it takes
    them from it, in the same batch too.

    `chained` (`_moves_chain`): a move may leave a key an earlier move of the batch reached (1 -> 9 -> 12) and take
    what that move took in turn; the moves are followed back to a key's own values (`_follow_moves`). Otherwise one
    window and one join fill every row, as many moves as the batch holds.

    A stored version (re-filled by `_refill_existing`) carries every column it holds.
    """
    named = F.split(F.col(UNSUPPLIED), ",")
    before = ordered.rowsBetween(Window.unboundedPreceding, -1)
    missing = {c: ~F.col("_existing") & F.coalesce(F.array_contains(named, c), F.lit(False)) for c in columns}
    moved = F.col("_key_moved") & (F.col("_op") == "U")
    lineage = F.struct(*[F.col(n) for n in _LINEAGE])
    # Per column, the nearest earlier row of the key that carries it (`v`), or a moving U that lacks it (`pending`:
    # its value is the one it took from its old key, found below); `__move`, the nearest earlier moving U.
    marks = {
        c: F.when(~missing[c] | moved, F.struct(missing[c].alias("pending"), F.when(~missing[c], _c(c)).alias("v")))
        for c in columns
    }
    rows = rows.withColumns(
        {
            "__last": F.struct(*[F.last(marks[c], ignorenulls=True).over(before).alias(c) for c in columns]),
            "__move": F.last(F.when(moved, lineage), ignorenulls=True).over(before),
        }
    )
    # Each move's values: its old key's before it, which the split's delete of that key (same lineage) holds.
    moves = rows.where((F.col("_op") == "D") & ~F.col("_existing")).select(
        lineage.alias("__id"), F.col("__last").alias("__state"), "__move"
    )
    if chained:
        moves = _follow_moves(moves, {c: rows.schema[c].dataType for c in columns})
    # A moving U looks up its own move; any other row the nearest moving U before it (used where it is pending).
    lookup = F.when(~moved & F.col("__move").isNotNull(), F.col("__move")).otherwise(lineage)
    rows = rows.withColumn("__lookup", lookup).join(
        moves.select("__id", F.col("__state").alias("__moved")), F.col("__lookup") == F.col("__id"), "left"
    )
    filled = {}
    for c in columns:
        last, taken = F.col("__last").getField(c), F.col("__moved").getField(c)
        state = F.when(moved | F.coalesce(last.getField("pending"), F.lit(False)), taken).otherwise(last)
        filled[c] = F.when(missing[c] & (F.col("_op") == "U"), state.getField("v")).otherwise(_c(c))
    # History keeps the list of an update's own columns DMS did not supply (`_refill_existing` reads it); a moving
    # U's values are its own from then on (it took them from its old key), as are an insert's and a delete's.
    kept = F.when(F.col("_existing") | ((F.col("_op") == "U") & ~F.col("_key_moved")), F.col(UNSUPPLIED))
    return rows.withColumns({**filled, UNSUPPLIED: kept}).drop("__last", "__move", "__lookup", "__id", "__moved")


def _follow_moves(moves: DataFrame, types: dict[str, DataType]) -> DataFrame:
    """Resolve the moves whose old key's value is itself pending on an earlier move (pointer jumping): each round a
    move takes, for the columns it still lacks, what the move it points to holds, and points where that one points;
    the moves left to follow halve each round. A move points only to an earlier one, so no round goes in circles.
    Each round is materialized (small: one row per delete of the batch), its pending moves counted."""

    def pending(state: Column) -> Column:
        lacking = F.lit(False)
        for c in types:
            lacking = lacking | F.coalesce(state.getField(c).getField("pending"), F.lit(False))
        return lacking

    moves = moves.localCheckpoint()
    for _ in range(_MAX_ROUNDS):
        if moves.where(pending(F.col("__state"))).isEmpty():
            break
        earlier = moves.select(
            F.col("__id").alias("__to"), F.col("__state").alias("__took"), F.col("__move").alias("__then")
        )
        on = (F.col("__move") == F.col("__to")) & (F.col("__to._sequence") < F.col("__id._sequence"))
        joined = moves.join(earlier, on, "left")
        state = {}
        for c, t in types.items():
            own, took = F.col("__state").getField(c), F.col("__took").getField(c)
            nothing = F.struct(F.lit(False).alias("pending"), F.lit(None).cast(t).alias("v"))  # no value before it
            state[c] = F.when(F.coalesce(own.getField("pending"), F.lit(False)), F.coalesce(took, nothing)).otherwise(
                own
            )
        resolved = F.struct(*[state[c].alias(c) for c in types])
        moves = joined.select(
            "__id", resolved.alias("__state"), F.when(pending(resolved), F.col("__then")).alias("__move")
        ).localCheckpoint()
    return moves


def _nearest(
    rows: DataFrame, counts: Column, fields: list[str], ordered: Window, *, before: str, after: str | None = None
) -> DataFrame:
    """`rows` plus `before` (and `after`): the nearest earlier (later) row of the key where `counts` holds.

    Each is a struct of `fields`, NULL when there is none; rows where `counts` is false are skipped over.
    """
    rows = rows.withColumn("_counted", F.when(counts, F.struct(*[_c(f).alias(f) for f in fields])))
    neighbours = {before: F.expr("lag(_counted) IGNORE NULLS").over(ordered)}
    if after:
        neighbours[after] = F.expr("lead(_counted) IGNORE NULLS").over(ordered)
    return rows.withColumns(neighbours).drop("_counted")


def _intervals(rows: DataFrame, *, key: list[str], values: list[str], ordered: Window) -> DataFrame:
    """Validity intervals, current flags and actions; a version is a row that is neither a replay nor unchanged."""
    version = ~F.col("_replay") & ~F.col("_unchanged")
    carried_columns = [c for c in values if c not in key]
    fields = ["_sequence", "_op", "_valid_from", "_existing", "_refilled", *carried_columns]
    rows = _nearest(rows, version, fields, ordered, before="_before", after="_after")
    # A version ends where any later version starts, not only the next: a reload's full-load rows sort before the
    # CDC rows of their key but are timed after them, and ending at the next one's start would overlap those.
    # The rows after this one, as the rows before it in the reverse order: a running frame, linear in a key's rows
    # (a frame to unbounded following recomputes its aggregate for every row).
    later = (
        Window.partitionBy(*[_c(k) for k in key])
        .orderBy(F.col("_sequence").desc(), F.col("_existing").asc())
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    next_from = F.min(F.when(version, F.col("_valid_from"))).over(later)
    prev_op = F.col("_before._op")
    # A delete carries the values of the version it deletes: a new one, and a stored one whose version before it is
    # new (a late change landed between; not a reload's row, timed after it) or was re-filled (`_refill_existing`).
    deletes = version & (F.col("_op") == "D") & prev_op.isNotNull() & (prev_op != "D")
    late_before = ~F.col("_before._existing") & (F.col("_before._valid_from") <= F.col("_valid_from"))
    before_changed = late_before | F.col("_before._refilled")
    carry = deletes & (~F.col("_existing") | before_changed)
    carried = {c: F.when(carry, F.col("_before").getField(c)).otherwise(_c(c)) for c in carried_columns}
    recarried = F.lit(False)
    for c in carried_columns:
        recarried = recarried | ~carried[c].eqNullSafe(_c(c))
    by_key = Window.partitionBy(*[_c(k) for k in key])
    newest_existing = F.max(F.when(F.col("_existing"), F.col("_sequence"))).over(by_key)
    planned = rows.withColumns(
        {
            **carried,
            "_refilled": F.col("_refilled") | (F.col("_existing") & carry & recarried),
            "_valid_to": F.when(version & F.col("_after").isNotNull(), F.greatest(next_from, F.col("_valid_from"))),
            "_is_current": F.when(version, F.col("_after").isNull()),
            "_is_deleted": F.when(version, F.col("_op") == "D"),
            "_late": F.when(
                version, ~F.col("_existing") & F.coalesce(F.col("_sequence") < newest_existing, F.lit(False))
            ),
        }
    )
    # Each version keeps the lineage of the rows after it that made no version (new and stored repeats, dropped
    # versions), sorted by sequence: a late change landing before one makes it a version again.
    holder = F.when(version, F.col("_sequence")).when(F.col("_unchanged"), F.col("_before._sequence"))
    lineage = F.struct(*[(_c(f) if f in rows.columns else F.lit(None).cast("string")).alias(f) for f in REPEAT_FIELDS])
    held = F.collect_list(F.when(F.col("_unchanged"), lineage)).over(Window.partitionBy(*[_c(k) for k in key], holder))
    planned = planned.withColumn("_held", F.array_sort(held))
    # The newest MAX_REPEATS: a late change before an older one (forgotten) starts its version all the same, and the
    # values current after it are right as long as one repeat after it is kept (the newest always is).
    newest = F.when(F.size("_held") > MAX_REPEATS, F.slice("_held", -MAX_REPEATS, MAX_REPEATS)).otherwise(
        F.col("_held")
    )
    planned = planned.withColumn(REPEATS, F.when(version & (F.size("_held") > 0), newest).cast(REPEATS_TYPE)).drop(
        "_held"
    )
    changed = (
        ~F.col("_old_valid_to").eqNullSafe(F.col("_valid_to"))
        | ~F.col("_old_is_current").eqNullSafe(F.col("_is_current"))
        | ~F.col("_old_repeats").eqNullSafe(F.col(REPEATS))
    )
    action = (
        F.when(F.col("_replay_conflict"), F.lit("replay_conflict"))
        .when(F.col("_replay"), F.lit("replay"))
        .when(F.col("_unchanged") & F.col("_stored_repeat"), F.lit("repeat"))
        .when(F.col("_unchanged") & F.col("_existing"), F.lit("drop"))
        .when(F.col("_unchanged"), F.lit("unchanged"))
        .when(~F.col("_existing") | F.col("_stored_repeat"), F.lit("insert"))
        .when(changed | F.col("_refilled"), F.lit("update"))
        .otherwise(F.lit("keep"))
    )
    return planned.withColumn("_action", action).drop("_before", "_after", "_replay_conflict")


def merge_history(
    delta_table: DeltaTable,
    plan: DataFrame,
    *,
    key: list[str],
    columns: list[str],
    within: Column | None = None,
    derived: dict[str, str] | None = None,
    reclose: bool = True,
    current_only: bool = False,
    nullable: Sequence[str] = (),
    path: str | None = None,
) -> None:
    """Insert new versions, re-close changed intervals (re-fill values) and delete repeats (`drop`); matched on
    (key, _sequence), so a replay is a no-op.

    `derived` columns (name -> SQL expression over the plan's columns) are written with every insert
    and re-close, e.g. the ID304B `expiration_stp` from `_valid_to`. `reclose=False` (the plan has no
    `update` or `drop` rows, e.g. a first load) lets Delta take its insert-only path: no target file is rewritten.
    `current_only` (the plan re-closes no closed version: no late change lands between two closed ones) matches
    current versions only, so Delta reads and rewrites only history's `_is_current` partition
    (`tables.history_partitions`). Inserts lose no match by it: a version with a new row's key and sequence would be
    among the existing versions the plan read (those open at the batch's oldest change), so the plan has that row
    as a replay, never as an insert.
    `nullable` key columns are matched NULL-safe. With the table's `path`, a history that holds no file yet gets the
    inserts appended (`tables.insert_if_empty`, from the snapshot `delta_table` read: make it just before).
    """
    derived = derived or {}
    on = F.expr(f"{key_condition(key, nullable)} AND t._sequence = s._sequence")
    if within is not None:  # a literal range on the target lets Delta skip files by their statistics
        on = on & within
    if current_only:  # a literal on the partition column: Delta leaves the closed versions' files alone
        on = on & F.expr("t._is_current = true")
    actions = ["insert", "update", "drop"] if reclose else ["insert"]
    source = plan.where(F.col("_action").isin(*actions)).select(
        *[_c(c) for c in columns], "_action", *[F.expr(e).alias(n) for n, e in derived.items()]
    )
    written = [*columns, *derived]
    inserts = source.where(F.col("_action") == "insert").select(*[F.col(f"`{c}`") for c in written])
    if path is not None and insert_if_empty(inserts, path, refresh=False):
        return
    # An update re-closes a version and takes the values a late change re-filled (`plan_history`'s `_refilled`).
    reclosed = [*[c for c in columns if c not in key], *derived]
    merge = delta_table.alias("t").merge(source.alias("s"), on)
    if reclose:
        merge = merge.whenMatchedDelete(condition="s._action = 'drop'").whenMatchedUpdate(
            condition="s._action = 'update'", set={f"`{c}`": f"s.`{c}`" for c in reclosed}
        )
    insert = {f"`{c}`": f"s.`{c}`" for c in written}
    merge.whenNotMatchedInsert(condition="s._action = 'insert'", values=insert).execute()
