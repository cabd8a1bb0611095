"""One snapshot of one feed, end to end: order check → parse → diff per table → apply → snapshot log.

The snapshot is read completely before anything is written, so bad input applies nothing. The log
(`<lake>/_snapshots/<feed>`, a Delta table) is written last: a run that crashed half-way finds the
snapshot not logged and applies it again, and since every change of a snapshot has the same sequence
whenever it is applied, the tables converge to the state of a clean run. A snapshot dated before the
newest applied one is refused (history would otherwise run backwards), as is a second, different file
for a day already applied.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.apply.batch import apply_changes
from lakehouse.changes.snapshot_diff import snapshot_changes
from lakehouse.config import Config
from lakehouse.errors import InputError
from lakehouse.maintenance import table_maintenance
from lakehouse.metrics import BatchMetrics, report
from lakehouse.ownership import check_held
from lakehouse.sources.snapshot import date_from_path, file_name, load_snapshot
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import ensure_tables, rows_frame, schema_of, table_paths

log = logging.getLogger("lakehouse.snapshot")

SNAPSHOT_LOG_DDL = (
    "snapshot_date DATE, source_file STRING, batch_id BIGINT, status STRING, detail STRING, "
    "logged_at TIMESTAMP, stats STRING"
)
# What `unresolved_refusals` reads of each entry.
SNAPSHOT_LOG_ENTRY = ("snapshot_date", "source_file", "status", "detail", "logged_at")


# How many of a feed's tables are applied at once (the 340B feed has eight).
TABLES_AT_ONCE = 4


class SnapshotRefused(InputError):
    """The snapshot is older than (or a different file for the same day as) one already applied, or would delete
    more of a table than its feed allows. `day`: its date, when known (a content-dated file's is known only once
    it was read)."""

    day: date | None = None


# Below this many deletes a snapshot is never refused for them, unless it would empty the table.
DELETE_GUARD_MIN_ROWS = 10


@dataclass
class _TableDiff:
    name: str
    changes: DataFrame
    live: int  # rows in latest before the snapshot (counted only when it deletes some)
    deletes: int
    seconds: float  # the diff's


def too_many_deletes(deletes: int, live: int, max_fraction: float) -> bool:
    """True when a snapshot deleting `deletes` of a table's `live` rows should be refused: more than `max_fraction`
    of them, and at least DELETE_GUARD_MIN_ROWS (or every row of a smaller table)."""
    return deletes > max_fraction * live and deletes >= min(live, DELETE_GUARD_MIN_ROWS)


def check_deletes(diffs: list[_TableDiff], feed: str, file: str, max_fraction: float) -> None:
    """Refuse a snapshot that would delete too much of any of its tables (a file cut short, emptied or filtered
    deletes every key it lacks), naming each such table and the way to apply it anyway."""
    over = [d for d in diffs if too_many_deletes(d.deletes, d.live, max_fraction)]
    if not over:
        return
    tables = "; ".join(f"{d.name}: {d.deletes:,} of {d.live:,} live rows, {d.deletes / d.live:.0%}" for d in over)
    raise SnapshotRefused(
        f"snapshot {file} would delete more of a table than max_delete_fraction {max_fraction:g} (snapshots.{feed}) "
        f"allows ({tables}); a file cut short, emptied or filtered deletes every key it lacks, so nothing was written. "
        f"An incomplete file: land the whole one and apply it with `lakehouse snapshot load <file> --feed {feed}` (a "
        "run does not read a file name twice). If the source really dropped the rows: the same command with "
        "--allow-deletes, or raise max_delete_fraction"
    )


@dataclass
class SnapshotResult:
    """What applying one snapshot file did."""

    feed: str
    file: str
    date: date | None = None
    status: str = "applied"  # applied | already_applied | refused
    detail: str = ""
    metrics: list[BatchMetrics] = field(default_factory=list)
    seconds: float = 0.0


def snapshot_batch_id(day: date) -> int:
    """The batch id of a snapshot's writes: its date as yyyymmdd, the same whenever it is applied."""
    return int(day.strftime("%Y%m%d"))


def log_path(config: Config, feed: str) -> str:
    return f"{config.paths.lake.rstrip('/')}/_snapshots/{feed}"


def _applied(spark: SparkSession, path: str) -> list[tuple[date, str]]:
    DeltaTable.createIfNotExists(spark).location(path).addColumns(schema_of(spark, SNAPSHOT_LOG_DDL)).execute()
    rows = spark.read.format("delta").load(path).where("status = 'applied'").select("snapshot_date", "source_file")
    return [(r[0], r[1]) for r in rows.collect()]


def check_order(applied: list[tuple[date, str]], name: str, day: date) -> bool:
    """False if this very file was applied already; raises SnapshotRefused if it would go backwards."""
    if (day, name) in applied:
        return False
    try:
        _check_order(applied, name, day)
    except SnapshotRefused as exc:
        exc.day = day  # logged with the refusal (a content-dated file's date is known only here)
        raise
    return True


def _check_order(applied: list[tuple[date, str]], name: str, day: date) -> None:
    for applied_day, applied_file in applied:
        if applied_day == day:
            raise SnapshotRefused(
                f"snapshot {name} is dated {day}, and {applied_file} was already applied for that day; "
                "a second file for one day is refused (remove it from the landing folder)"
            )
    newest = max(applied, default=None)
    if newest and day < newest[0]:
        raise SnapshotRefused(
            f"snapshot {name} is dated {day}, older than {newest[1]} ({newest[0]}) already applied; applying it "
            "would run history backwards, so it is refused (nothing was written; remove it from the landing folder)"
        )


def unresolved_refusals(
    entries: list[tuple[date, str, str, str | None, datetime | None]],
) -> list[tuple[date, str, str | None]]:
    """The refused snapshots of a feed's log (date, file, status, detail, logged_at) that are still not resolved:
    nothing newer applied since, and the file not applied after its refusal. A refusal for going backwards, or for
    a second file of a day applied already, resolves itself; a content-dated file refused because it differs from
    the same name already applied for its day stays pending until a newer day is applied."""
    newest = max((day for day, _, status, _, _ in entries if status == "applied"), default=None)
    applied_at: dict[tuple[date, str], list[datetime | None]] = {}
    for day, file, status, _, logged_at in entries:
        if status == "applied":
            applied_at.setdefault((day, file), []).append(logged_at)

    def pending(day: date, file: str, refused_at: datetime | None) -> bool:
        if newest is not None and day < newest:
            return False
        if (day, file) not in applied_at:
            return newest is None or day > newest
        # The same file applied for its day: pending only if that was before it was refused (a changed file).
        return refused_at is not None and all(at is not None and at < refused_at for at in applied_at[(day, file)])

    return sorted(
        {
            (day, file, detail)
            for day, file, status, detail, logged_at in entries
            if status == "refused" and day is not None and pending(day, file, logged_at)
        },
        key=lambda e: (e[0], e[1]),
    )


def refusals_pending(session: Callable[[], SparkSession], config: Config, feed_name: str) -> str | None:
    """Why the feed's run must fail while a refused snapshot is still not applied (None when none is): the file is
    in the stream's checkpoint, so without this the next run (a flow's retry) would say "nothing new" and pass."""
    from lakehouse.readers import snapshot_log_local

    path = log_path(config, feed_name)
    entries = snapshot_log_local(path)
    if entries is None:
        spark = session()
        if not DeltaTable.isDeltaTable(spark, path):
            return None
        rows = spark.read.format("delta").load(path).select(*SNAPSHOT_LOG_ENTRY)
        entries = [tuple(r) for r in rows.collect()]
    pending = unresolved_refusals(entries)
    if not pending:
        return None
    day, file, detail = pending[-1]
    return (
        f"snapshot {file} ({day}) was refused and is still not applied ({detail}). Apply it if it is right "
        f"(`lakehouse snapshot load <path>/{file} --allow-deletes`, or the snapshot job with --allow_deletes true), "
        "or land a corrected or newer file; until then every run of this feed fails here"
    )


def _write_log(spark: SparkSession, path: str, result: SnapshotResult, stats: dict[str, object]) -> None:
    row = [
        (
            result.date,
            result.file,
            snapshot_batch_id(result.date) if result.date else None,
            result.status,
            result.detail,
            datetime.now(UTC).replace(tzinfo=None),
            json.dumps(stats, default=str, sort_keys=True),
        )
    ]
    source = rows_frame(spark, row, SNAPSHOT_LOG_DDL)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(
            source.alias("s"),
            "t.snapshot_date <=> s.snapshot_date AND t.source_file = s.source_file AND t.status = s.status",
        )
        .whenMatchedUpdate("s.status = 'refused'", {"detail": "s.detail", "logged_at": "s.logged_at"})
        .whenNotMatchedInsertAll()
        .execute()
    )


def already_applied(config: Config, feed_name: str, path: str) -> SnapshotResult | None:
    """The result for a snapshot file the feed's log shows applied already, told without Spark (delta-rs
    reads the log); None when it was not, or cannot be told that way (the date is in the content, the log is
    not local): then `apply_snapshot` decides."""
    from lakehouse.readers import applied_snapshots_local

    feed = config.snapshots[feed_name]
    if feed.date.source != "name":
        return None
    name = file_name(path)
    day = date_from_path(path, feed.date)
    applied = applied_snapshots_local(log_path(config, feed_name))
    if applied is None or (day, name) not in applied:
        return None
    return SnapshotResult(feed=feed_name, file=name, date=day, status="already_applied")


def apply_snapshot(
    spark: SparkSession, config: Config, feed_name: str, path: str, *, allow_deletes: bool = False
) -> SnapshotResult:
    """Apply the snapshot file at `path` to every table of the feed; refuse it if it is out of order, or if it
    would delete more of a table than the feed's `max_delete_fraction` (unless `allow_deletes`)."""
    started = time.monotonic()
    feed = config.snapshots[feed_name]
    tables = config.feed_tables(feed_name)
    result = SnapshotResult(feed=feed_name, file=file_name(path))
    history_log = log_path(config, feed_name)
    applied = _applied(spark, history_log)
    if feed.date.source == "name":
        result.date = date_from_path(path, feed.date)
        if not check_order(applied, result.file, result.date):
            result.status = "already_applied"
            return result
    loaded = load_snapshot(spark, feed, path, tables)
    # A content-dated file named as one applied for its date may be that file again, or a new export whose newest
    # edit is no newer (HRSA's fixed name, a day of deletions only): told apart by its diff below, never by name.
    same_day_and_name = False
    if feed.date.source == "content":  # the date is known only now
        result.date = loaded.date
        same_day_and_name = not check_order(applied, result.file, result.date)
        if same_day_and_name and result.date < max(day for day, _name in applied):
            result.status = "already_applied"  # an older day's file again (a replayed batch): nothing to diff
            return result
    batch_id = snapshot_batch_id(result.date)
    log.info(json.dumps({"event": "snapshot", "feed": feed_name, "file": result.file, "date": str(result.date)}))
    # The tables' upkeep, as a DMS table's query has it: properties (log retention, the export's horizon) before
    # the tables are created, compaction and VACUUM when due after the apply (each day rewrites the dimensions).
    upkeeps = [table_maintenance(config, t, table_paths(config, t), None) for t in tables.values()]
    for upkeep in upkeeps:
        upkeep.start(spark)

    def diff_table(name: str) -> _TableDiff:
        diff_started = time.monotonic()
        table = tables[name]
        paths = table_paths(config, table)
        ensure_tables(spark, table, paths)
        business = list(table.columns)
        latest = spark.read.format("delta").load(paths.latest)
        current = latest.select(*[F.col(f"`{c}`") for c in business])
        # Materialized and cut loose from latest, which this very apply rewrites (a cache of it would be
        # invalidated by that MERGE and recomputed against the new state); by the count of deletes below,
        # before anything is written.
        changes = snapshot_changes(
            loaded.tables[name],
            current,
            key=table.primary_key,
            values=business,
            ignore=table.tracked_ignore,
            nullable=table.nullable_key,
            day=result.date,
            source_file=result.file,
            batch_id=batch_id,
        ).localCheckpoint(eager=False)
        deletes = changes.where((F.col("_op") == "D") & F.col("_reason").isNull()).count()
        live = latest.count() if deletes else 0
        return _TableDiff(name, changes, live, deletes, seconds=time.monotonic() - diff_started)

    def apply_table(diff: _TableDiff) -> BatchMetrics:
        table_started = time.monotonic()
        table = tables[diff.name]
        metrics = BatchMetrics(table=diff.name, batch_id=batch_id)
        # The changes are a diff against latest: history commits first (see `apply_changes`).
        apply_changes(
            diff.changes, batch_id, table=table, paths=table_paths(config, table), metrics=metrics, history_first=True
        )
        metrics.files = 1
        metrics.seconds = round(diff.seconds + time.monotonic() - table_started, 3)
        report(metrics)
        return metrics

    # The tables are independent Delta tables; diffed and applied side by side, one table's commits and planning
    # overlap another's Spark jobs. Every table is diffed before any is written, so a snapshot refused for its
    # deletes writes nothing; the log is written only if every table was applied.
    diffs = run_side_by_side([partial(diff_table, name) for name in tables], at_once=TABLES_AT_ONCE)
    if same_day_and_name:
        changed = sum(d.changes.where(F.col("_reason").isNull()).count() for d in diffs)
        if not changed:
            result.status = "already_applied"
            return result
        refused = SnapshotRefused(
            f"snapshot {result.file} is dated {result.date} by its newest edit, as the {result.file} already applied "
            f"for that day, but its content differs ({changed} changes against latest): its changes cannot be dated "
            "after that day's. Land the exports under names with their date and set the feed's date.source: name, "
            "or wait for an export with a newer edit (it applies these changes too)"
        )
        refused.day = result.date
        raise refused
    if not allow_deletes:
        try:
            check_deletes(diffs, feed_name, result.file, feed.max_delete_fraction)
        except SnapshotRefused as exc:
            exc.day = result.date
            raise
    check_held(config, feed_name)  # a lease lost while the file was parsed and diffed: nothing written
    result.metrics = run_side_by_side([partial(apply_table, diff) for diff in diffs], at_once=TABLES_AT_ONCE)
    _write_log(spark, history_log, result, loaded.stats)
    result.detail = "; ".join(loaded.notes)
    for upkeep in upkeeps:
        upkeep.after_batch(spark, batch_id)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def refuse(spark: SparkSession, config: Config, feed_name: str, path: str, error: SnapshotRefused) -> SnapshotResult:
    """Record a refused snapshot in the feed's log (once) and report it; the file stays where it landed."""
    name = file_name(path)
    feed = config.snapshots[feed_name]
    day = error.day
    if day is None and feed.date.source == "name":
        try:
            day = date_from_path(path, feed.date)
        except InputError:
            day = None
    result = SnapshotResult(feed=feed_name, file=name, date=day, status="refused", detail=str(error))
    _write_log(spark, log_path(config, feed_name), result, {})
    log.warning(json.dumps({"event": "snapshot_refused", "feed": feed_name, "file": name, "reason": str(error)}))
    return result
