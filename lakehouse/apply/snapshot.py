"""One snapshot of one feed, end to end: order check → parse → diff per table → apply → snapshot log.

The snapshot is read completely before anything is written, so bad input applies nothing. The log
(`<lake>/_snapshots/<feed>`, a Delta table) records the file as `started` (its path and SHA-256) before
the first table is written, and turns that entry into `applied` last. A file started and not applied is
finished before any other file of the feed is applied: since every change of a snapshot has the same
sequence whenever it is applied, its rerun converges to the state of a clean run, whereas a later day
diffed against a latest that only some of its writes reached would leave latest and history apart for
good. A snapshot dated before the newest applied one is refused (history would otherwise run
backwards), as is a second, different file for a day already applied, and a file under an applied name
whose content differs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.apply.batch import apply_changes
from lakehouse.changes.snapshot_diff import snapshot_changes
from lakehouse.config import Config
from lakehouse.errors import InputError, LakehouseError, TableNotFoundError
from lakehouse.maintenance import table_maintenance
from lakehouse.metrics import BatchMetrics, report
from lakehouse.ownership import check_held
from lakehouse.sources.snapshot import (
    date_from_path,
    file_digest,
    file_name,
    list_snapshot_files,
    load_snapshot,
    snapshot_order,
)
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import check_column_types, ensure_tables, rows_frame, schema_of, table_paths

log = logging.getLogger("lakehouse.snapshot")

SNAPSHOT_LOG_DDL = (
    "snapshot_date DATE, source_file STRING, batch_id BIGINT, status STRING, detail STRING, "
    "logged_at TIMESTAMP, stats STRING, digest STRING, source_path STRING"
)
# Columns a log written by an older release lacks: added on first use (NULL in its rows: a digest not known).
LOG_COLUMNS_ADDED = {"digest": "STRING", "source_path": "STRING"}
# What `unresolved_refusals` reads of each entry.
SNAPSHOT_LOG_ENTRY = ("snapshot_date", "source_file", "status", "detail", "logged_at")


# How many of a feed's tables are applied at once (the 340B feed has eight).
TABLES_AT_ONCE = 4


class SnapshotRefused(InputError):
    """The snapshot is older than (or a different file for the same day as) one already applied, or would delete
    more of a table than its feed allows. `day`: its date, when known (a content-dated file's is known only once
    it was read). `pending`: False for a refusal that the file's own date must not keep pending (a date in the
    future, a typo: nothing would resolve it until then)."""

    day: date | None = None
    pending: bool = True


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


@dataclass(frozen=True)
class LogEntry:
    """What the feed's log says of one file: applied, started (and maybe not finished) or refused."""

    day: date | None
    file: str
    status: str
    digest: str | None = None  # SHA-256 of its bytes; None in entries written before digests were kept
    path: str | None = None  # where it was read from (to finish a started file)


LOG_ENTRY_COLUMNS = ("snapshot_date", "source_file", "status", "digest", "source_path")


def _ensure_log(spark: SparkSession, path: str) -> None:
    DeltaTable.createIfNotExists(spark).location(path).addColumns(schema_of(spark, SNAPSHOT_LOG_DDL)).execute()
    present = set(spark.read.format("delta").load(path).columns)
    missing = [f"{name} {kind}" for name, kind in LOG_COLUMNS_ADDED.items() if name not in present]
    if missing:
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({', '.join(missing)})")


def _log_entries(spark: SparkSession, path: str) -> list[LogEntry]:
    _ensure_log(spark, path)
    rows = spark.read.format("delta").load(path).select(*LOG_ENTRY_COLUMNS).collect()
    return [LogEntry(*r) for r in rows]


def _local_log_entries(path: str) -> list[LogEntry] | None:
    """The log's entries read by delta-rs, without Spark; None where it cannot tell (not local, not readable)."""
    from lakehouse.readers import open_local

    try:
        table = open_local(path)
    except TableNotFoundError:
        return []
    if table is None:
        return None
    present = {f.name for f in table.schema().fields}
    columns = [c for c in LOG_ENTRY_COLUMNS if c in present]
    rows = table.to_pyarrow_table(columns=columns).to_pylist()
    return [LogEntry(*(r.get(c) for c in LOG_ENTRY_COLUMNS)) for r in rows]


def check_order(applied: list[tuple[date, str]], name: str, day: date) -> bool:
    """False if a file of this name was applied already for this day; raises SnapshotRefused if it would go
    backwards (see `check_same_content` for whether it is the same file)."""
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


def check_same_content(applied: list[LogEntry], name: str, day: date, digest: str) -> None:
    """Refuse a file under the (date, name) of an applied one whose content differs (a corrected export uploaded
    again under the same key), naming both digests; an entry without a digest (an older release's) matches."""
    logged = {e.digest for e in applied if (e.day, e.file) == (day, name) and e.digest is not None}
    if not logged or digest in logged:
        return
    refused = SnapshotRefused(
        f"snapshot {name} ({day}) was applied already with different content (SHA-256 {', '.join(sorted(logged))}; "
        f"this file: {digest}): a file delivered again under an applied name is skipped only when it is the same "
        "file, so nothing was written. If it is a corrected export, the next day's snapshot carries its corrections "
        "(a snapshot is the whole state); until a newer day is applied every run of this feed fails here"
    )
    refused.day = day
    raise refused


def check_not_future(name: str, day: date, *, today: date | None = None) -> None:
    """Refuse a file dated after tomorrow (UTC; a day ahead allows for an exporter's zone): a typo in its name
    (2026-12-23 for 2026-11-23) would make every real day until then older than it, and refused."""
    today = today or datetime.now(UTC).date()
    if day > today + timedelta(days=1):
        refused = SnapshotRefused(
            f"snapshot {name} is dated {day}, after tomorrow ({today + timedelta(days=1)}, UTC): a date in the future "
            "is taken for a typo in the name, since applied it would refuse every real day until then as older. "
            "Nothing was written; land the file again under a name with its real date"
        )
        refused.pending = False
        raise refused


def _unfinished(entries: list[LogEntry]) -> list[LogEntry]:
    """The files the log shows started and not applied, oldest first (an applied file's entry says `applied`)."""
    applied = {(e.day, e.file) for e in entries if e.status == "applied"}
    started = {e for e in entries if e.status == "started" and (e.day, e.file) not in applied}
    return sorted(started, key=lambda e: (e.day or date.min, e.file))


def _finish_unfinished(
    spark: SparkSession, config: Config, feed_name: str, entries: list[LogEntry], result: SnapshotResult, digest: str
) -> SnapshotResult | None:
    """Apply the file an earlier run started and did not finish, before this one (None when there is none, or it
    is this very file); refuse this file if that one cannot be read any more, or if this is another file under the
    started one's name."""
    unfinished = _unfinished(entries)
    if not unfinished:
        return None
    first = unfinished[0]
    same_name = first.file == result.file and (first.day == result.date or result.date is None)
    if same_name and (first.digest is None or first.digest == digest):
        return None  # this file's own rerun
    if same_name:
        raise _refused(
            result,
            f"snapshot {result.file} ({first.day}) was started by an earlier run with other content (SHA-256 "
            f"{first.digest}; this file: {digest}) and not finished: some of the feed's tables hold the started "
            "file's changes. Nothing was written; land the file it was started with again (the same bytes) and rerun. "
            "A corrected file is applied by the next day's snapshot, which carries its corrections",
        )
    problem = _unreadable(first)
    if problem:
        raise _refused(
            result,
            f"snapshot {result.file} cannot be applied while {first.file} ({first.day}) is not finished: an earlier "
            "run started it and failed after writing some of the feed's tables, and another file applied now would "
            f"leave latest and history apart for good. {first.file} cannot be read at {first.path} ({problem}): "
            f"land it there again, unchanged (SHA-256 {first.digest}), and rerun, or apply it with `lakehouse snapshot "
            f"load <file> --feed {feed_name}`; then apply {result.file}. Nothing was written for {result.file}",
        )
    log.info(json.dumps({"event": "snapshot_finish", "feed": feed_name, "file": first.file, "date": str(first.day)}))
    # Its deletes were checked (or allowed) when it started, and some tables already hold them.
    return apply_snapshot(spark, config, feed_name, first.path, allow_deletes=True)


def _unreadable(entry: LogEntry) -> str | None:
    """Why a started file cannot be applied again as it was started (None when it can)."""
    if entry.path is None:
        return "no path logged"
    try:
        digest = file_digest(entry.path)
    except Exception as exc:  # a missing file or object, no access: the refusal names it
        return f"{type(exc).__name__}: {exc}"
    if entry.digest is not None and digest != entry.digest:
        return f"its content changed: SHA-256 {digest}"
    return None


def _refused(result: SnapshotResult, message: str) -> SnapshotRefused:
    refused = SnapshotRefused(message)
    refused.day = result.date
    return refused


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


def _write_log(
    spark: SparkSession,
    path: str,
    result: SnapshotResult,
    stats: dict[str, object],
    *,
    digest: str | None = None,
    source_path: str | None = None,
) -> None:
    """Add the entry (date, file, status) to the log. `applied` turns the file's `started` entry into it (one entry
    per applied file); a refusal logged again updates its detail and time; any other entry logged again is kept as
    it was (a rerun's `started` keeps the first one's time)."""
    _ensure_log(spark, path)
    row = [
        (
            result.date,
            result.file,
            snapshot_batch_id(result.date) if result.date else None,
            result.status,
            result.detail,
            datetime.now(UTC).replace(tzinfo=None),
            json.dumps(stats, default=str, sort_keys=True),
            digest,
            source_path,
        )
    ]
    source = rows_frame(spark, row, SNAPSHOT_LOG_DDL)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(
            source.alias("s"),
            "t.snapshot_date <=> s.snapshot_date AND t.source_file = s.source_file "
            "AND (t.status = s.status OR (t.status = 'started' AND s.status = 'applied'))",
        )
        .whenMatchedUpdate("s.status = 'refused'", {"detail": "s.detail", "logged_at": "s.logged_at"})
        .whenMatchedUpdateAll("t.status = 'started' AND s.status = 'applied'")
        .whenNotMatchedInsertAll()
        .execute()
    )


def already_applied(config: Config, feed_name: str, path: str) -> SnapshotResult | None:
    """The result for a snapshot file the feed's log shows applied already, told without Spark (delta-rs
    reads the log); None when it was not, or cannot be told that way (the date is in the content, the log is
    not local): then `apply_snapshot` decides."""
    feed = config.snapshots[feed_name]
    if feed.date.source != "name":
        return None
    name = file_name(path)
    day = date_from_path(path, feed.date, kind=feed.kind)
    entries = _local_log_entries(log_path(config, feed_name))
    if entries is None:
        return None
    same = [e for e in entries if e.status == "applied" and (e.day, e.file) == (day, name)]
    if not same or any(e.digest is not None and e.digest != file_digest(path) for e in same):
        return None  # not applied, or other content: `apply_snapshot` refuses it
    return SnapshotResult(feed=feed_name, file=name, date=day, status="already_applied")


def landed_before(spark: SparkSession, config: Config, feed_name: str, path: str) -> list[str]:
    """The files in the feed's folder dated before the file at `path` and not yet decided, oldest first: what must be
    applied before it (a job per landed file may start for day N+1 before day N's; applied first, N+1 would have
    N refused as older, and its day lost). Files dated on or before the newest applied day, and files the log shows
    applied or refused, are left out: they would only be refused again. Only for feeds dated by name: a
    content-dated file's date needs a parse of it."""
    feed = config.snapshots[feed_name]
    if feed.date.source != "name":
        return []
    day = date_from_path(path, feed.date, kind=feed.kind)
    entries = _log_entries(spark, log_path(config, feed_name))
    newest = max((e.day for e in entries if e.status == "applied"), default=date.min)
    decided = {(e.day, e.file) for e in entries if e.status in ("applied", "refused")}
    earlier = []
    for other in list_snapshot_files(spark, feed):
        try:
            other_day = date_from_path(other, feed.date, kind=feed.kind)
        except InputError:
            continue  # no date in its name: the stream's run names it
        if newest < other_day < day and (other_day, file_name(other)) not in decided:
            earlier.append(other)
    return sorted(earlier, key=lambda p: snapshot_order(p, feed.date))


def apply_snapshot(
    spark: SparkSession, config: Config, feed_name: str, path: str, *, allow_deletes: bool = False
) -> SnapshotResult:
    """Apply the snapshot file at `path` to every table of the feed; refuse it if it is out of order, or if it
    would delete more of a table than the feed's `max_delete_fraction` (unless `allow_deletes`).

    A file of the feed that an earlier run started and did not finish is applied first (its result's metrics
    come first in this one's); if it cannot be read any more, this file is refused, naming it."""
    started = time.monotonic()
    feed = config.snapshots[feed_name]
    tables = config.feed_tables(feed_name)
    result = SnapshotResult(feed=feed_name, file=file_name(path))
    history_log = log_path(config, feed_name)
    entries = _log_entries(spark, history_log)
    digest = file_digest(path)
    finished: list[SnapshotResult] = []

    def finish_unfinished() -> list[tuple[date, str]]:
        """Finish what an earlier run left started, then the (date, name) of every applied file."""
        nonlocal entries
        while (done := _finish_unfinished(spark, config, feed_name, entries, result, digest)) is not None:
            finished.append(done)
            left = _unfinished(entries)
            entries = _log_entries(spark, history_log)
            if _unfinished(entries) == left:  # applied without being logged (cannot be): never loop on it
                raise LakehouseError(f"snapshot {left[0].file} was applied again and is still not logged as applied")
        result.metrics = [m for done in finished for m in done.metrics]
        result.detail = "".join(
            f"finished {d.file} ({d.date}) first, left half-applied by a run before; " for d in finished
        )
        return [(e.day, e.file) for e in entries if e.status == "applied"]

    if feed.date.source == "name":
        result.date = date_from_path(path, feed.date, kind=feed.kind)
        check_not_future(result.file, result.date)
        applied = finish_unfinished()
        if not check_order(applied, result.file, result.date):
            check_same_content([e for e in entries if e.status == "applied"], result.file, result.date, digest)
            result.status = "already_applied"
            return result
    loaded = load_snapshot(spark, feed, path, tables)
    # A content-dated file named as one applied for its date may be that file again, or a new export whose newest
    # edit is no newer (HRSA's fixed name, a day of deletions only): told apart by its diff below, never by name.
    same_day_and_name = False
    if feed.date.source == "content":  # the date is known only now
        result.date = loaded.date
        applied = finish_unfinished()
        same_day_and_name = not check_order(applied, result.file, result.date)
        same_bytes = any(
            e.digest == digest
            for e in entries
            if e.status == "applied" and (e.day, e.file) == (result.date, result.file)
        )
        if same_day_and_name and (same_bytes or result.date < max(day for day, _name in applied)):
            # The very file again, or an older day's file again (a replayed batch): nothing to diff.
            result.status = "already_applied"
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
        check_column_types(spark, table, paths)  # before any write of the day's rows
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
    # Before the first write: until `applied` is logged, no other file of the feed is applied (this one first).
    _write_log(spark, history_log, replace(result, status="started"), {}, digest=digest, source_path=path)
    result.metrics += run_side_by_side([partial(apply_table, diff) for diff in diffs], at_once=TABLES_AT_ONCE)
    _write_log(spark, history_log, result, loaded.stats, digest=digest, source_path=path)
    result.detail += "; ".join(loaded.notes)
    for upkeep in upkeeps:
        upkeep.after_batch(spark, batch_id)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def refuse(spark: SparkSession, config: Config, feed_name: str, path: str, error: SnapshotRefused) -> SnapshotResult:
    """Record a refused snapshot in the feed's log (once) and report it; the file stays where it landed."""
    name = file_name(path)
    feed = config.snapshots[feed_name]
    day = error.day
    if day is None and feed.date.source == "name" and error.pending:
        try:
            day = date_from_path(path, feed.date, kind=feed.kind)
        except InputError:
            day = None
    result = SnapshotResult(feed=feed_name, file=name, date=day, status="refused", detail=str(error))
    _write_log(spark, log_path(config, feed_name), result, {})
    log.warning(json.dumps({"event": "snapshot_refused", "feed": feed_name, "file": name, "reason": str(error)}))
    return result
