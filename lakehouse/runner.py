"""Running the per-table streaming queries: once (availableNow) or as a long-running stream.

One query per table, each with its own checkpoint. `run_once` drains every table and keeps going
when one fails (the failure is reported and the exit code says so); `run_stream` runs them all on
a processing-time trigger until a stop marker is written (`stop_marker`), SIGTERM or Ctrl-C, then stops
them between micro-batches.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.apply.batch import apply_batch
from lakehouse.apply.consent_sync import sync_consent, zone_is_synced
from lakehouse.apply.ledger import LedgerIndex
from lakehouse.apply.non_phi import NonPhiZone, ensure_non_phi_tables, non_phi_zone, orphan_zone_tables
from lakehouse.apply.snapshot import refusals_pending
from lakehouse.codegen import interpreted, is_small
from lakehouse.config import Config, TableConfig
from lakehouse.delta_log import StateWarmer
from lakehouse.lag import batch_file_stats, lag_seconds
from lakehouse.maintenance import TableMaintenance, marker_time, table_maintenance
from lakehouse.metrics import (
    CONSENT_SYNC,
    POLICY_BUILD,
    SNAPSHOT_REFUSED,
    BatchMetrics,
    CloudWatchMetrics,
    publish_to,
    report,
    report_failure,
)
from lakehouse.ownership import LeaseLostError, check_held, hold
from lakehouse.pending import Pending, pending, unread_files
from lakehouse.policy.job import build_policy_table, policy_is_current, policy_snapshot
from lakehouse.policy.snapshot import PolicySnapshot, fingerprint_of
from lakehouse.policy.store import WriteStats
from lakehouse.sources.dms import read_dms_stream
from lakehouse.sources.snapshot import FILE_GLOBS
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import check_column_types, ensure_tables, table_paths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("lakehouse.runner")
IDLE_VACUUM_CHECK_SECONDS = 600  # how often a stream looks for a VACUUM due on a table that runs no batch
# The batch records and notes a stream keeps per table (it counts every batch): a stream runs for months, and a
# record a batch (~1.3 KB) kept for good is ~0.7 GB of driver memory per table per year at a 60 s trigger.
STREAM_KEEPS = 100
# A stream looks for its stop marker this often (one HEAD request on S3), and waits up to STOP_WAIT_SECONDS for the
# batches running then to end (a snapshot feed's day takes minutes); a signal's stop waits SIGNAL_STOP_WAIT_SECONDS.
STOP_CHECK_SECONDS = 15.0
STOP_WAIT_SECONDS = 3600.0
SIGNAL_STOP_WAIT_SECONDS = 120.0


@dataclass
class TableRun:
    """What one table's query did (a snapshot feed's query reports into the runs of each of its tables).

    A trigger-once run keeps every batch record and note; a stream (`TableRun.streaming`) the last STREAM_KEEPS
    of each, and counts every batch in `batch_count` (`len(batches)` stops growing there).
    """

    table: str
    batches: MutableSequence[BatchMetrics] = field(default_factory=list)
    error: str | None = None
    notes: MutableSequence[str] = field(default_factory=list)
    seconds: float = 0.0  # wall clock of the table's part of a trigger-once run (tables run side by side)
    earlier: int = 0  # batch records let go of (a stream's), counted in `batch_count`

    @classmethod
    def streaming(cls, table: str) -> TableRun:
        return cls(table, batches=deque(maxlen=STREAM_KEEPS), notes=deque(maxlen=STREAM_KEEPS))

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def batch_count(self) -> int:
        """Every batch the run applied, including the records a stream let go of."""
        return self.earlier + len(self.batches)

    def record(self, metrics: BatchMetrics) -> None:
        """Keep a batch's record (a stream's run drops its oldest when full, and counts it)."""
        if isinstance(self.batches, deque) and len(self.batches) == self.batches.maxlen:
            self.earlier += 1
        self.batches.append(metrics)


@dataclass
class Governance:
    """What a run shares across its queries: the consent policy snapshot and the non-PHI zone."""

    policy: PolicySnapshot | None = None
    non_phi: NonPhiZone | None = None
    synced: dict[str, str] = field(default_factory=dict)  # per table, the policy fingerprint its zone applied
    # Per table: held by its batch and by a consent sync between batches, so the two never write the zone at once.
    writing: dict[str, threading.Lock] = field(default_factory=dict)

    def lock(self, table: str) -> threading.Lock:
        return self.writing.setdefault(table, threading.Lock())

    @classmethod
    def of(cls, config: Config, tables: list[TableConfig] | None = None) -> Governance:
        """Load what `tables` (default: all) need; without a masking key the non-PHI zone refuses to start."""
        configure_metrics(config)
        tables = list(config.tables.values()) if tables is None else tables
        return cls(
            policy=policy_snapshot(config) if any(t.consent for t in tables) else None,
            non_phi=non_phi_zone(config) if any(t.non_phi for t in tables) else None,
        )


def configure_metrics(config: Config) -> None:
    """Send batch records to CloudWatch too when the configuration names a namespace."""
    settings = config.metrics
    if settings.cloudwatch_namespace is None:
        publish_to(None)
        return
    from lakehouse.aws import client

    sink = CloudWatchMetrics(
        client("cloudwatch", region=settings.region),
        namespace=settings.cloudwatch_namespace,
        environment=settings.environment_name,
    )
    publish_to(sink)


def table_policy(spark: SparkSession, table: TableConfig, governance: Governance) -> DataFrame | None:
    """The policy snapshot a table with `consent:` is flagged with now (None for the others)."""
    return governance.policy.current(spark) if table.consent and governance.policy else None


def sync_zone(
    spark: SparkSession, config: Config, table: TableConfig, governance: Governance, policy: DataFrame | None
) -> str | None:
    """Apply a consent change to the table's part of the non-PHI zone, if there was one (see `consent_sync`).

    `policy` is `table_policy` of this moment: the sync and the batch that follows see the same policy.
    """
    zone = governance.non_phi
    if zone is None or not table.non_phi:
        return None
    return sync_consent(
        spark,
        table,
        zone,
        phi_history=table_paths(config, table).history,
        policy=policy,
        fingerprint=fingerprint_of(policy) if policy is not None else None,
        synced=governance.synced,
    )


def zone_synced(table: TableConfig, governance: Governance) -> bool:
    """Whether the table's part of the non-PHI zone follows the stored policy already (told without Spark).

    A table with nothing new (`lakehouse.pending`) whose zone does not is synced without starting its query.
    """
    zone = governance.non_phi
    if zone is None or not table.non_phi:
        return True
    fingerprint = governance.policy.stored_fingerprint() if table.consent and governance.policy else None
    return zone_is_synced(table, zone, fingerprint)


def _prepare_tables(
    spark: SparkSession, config: Config, table: TableConfig, governance: Governance
) -> TableMaintenance:
    """The table's upkeep settings, then its tables (created with the maintenance properties if new)."""
    paths = table_paths(config, table)
    upkeep = table_maintenance(config, table, paths, governance.non_phi)
    upkeep.start(spark)  # before the tables are created: they take their maintenance properties from the session
    ensure_tables(spark, table, paths)
    if governance.non_phi is not None and table.non_phi:
        ensure_non_phi_tables(spark, table, governance.non_phi)
    return upkeep


def _sync_noted(
    spark: SparkSession,
    config: Config,
    table: TableConfig,
    governance: Governance,
    run: TableRun,
    policy: DataFrame | None,
) -> None:
    """`sync_zone`, its note (if it changed anything) added to the run's notes."""
    note = sync_zone(spark, config, table, governance, policy)
    if note:
        run.notes.append(note)


def _sync_alone(spark: SparkSession, config: Config, table: TableConfig, run: TableRun, governance: Governance) -> None:
    """The consent sync of a table that has no file to apply (what its query does before its first batch)."""
    _prepare_tables(spark, config, table, governance)
    _sync_noted(spark, config, table, governance, run, table_policy(spark, table, governance))


def start_query(
    spark: SparkSession,
    config: Config,
    table: TableConfig,
    run: TableRun,
    *,
    trigger: dict[str, object],
    governance: Governance | None = None,
    path: str | None = None,
) -> StreamingQuery:
    """Start the streaming query that applies `table`'s DMS files (from `path`, default the source's path)."""
    paths = table_paths(config, table)
    governance = governance or Governance()
    upkeep = _prepare_tables(spark, config, table, governance)
    # a consent change reaches the zone even when no file arrives
    _sync_noted(spark, config, table, governance, run, table_policy(spark, table, governance))

    ledger = LedgerIndex(paths.ledger)  # this query's: read at its first batch, then kept up to date
    warming = StateWarmer(spark) if "processingTime" in trigger else None  # a next batch is coming
    types_checked = False

    def each_batch(files: DataFrame, batch_id: int) -> None:
        nonlocal types_checked
        started, clock = datetime.now(UTC), time.monotonic()
        oldest, size = batch_file_stats(files)
        file_stats = time.monotonic() - clock
        session = files.sparkSession  # the query's own
        small = is_small(session, size, [paths.history, paths.latest])
        if warming is not None:
            warming.wait()
        with governance.lock(table.name), interpreted(session, small):
            check_held(config, table.name)  # a lease lost (DynamoDB unreachable too long): no write beside its taker
            policy = table_policy(spark, table, governance)
            _sync_noted(spark, config, table, governance, run, policy)  # the policy may have been refreshed
            if not types_checked:  # once per query, where a type its tables cannot take would fail the batch
                check_column_types(spark, table, paths)
                types_checked = True
            zone = governance.non_phi
            metrics = apply_batch(
                files, batch_id, table=table, paths=paths, policy=policy, non_phi=zone, ledger=ledger, small=small
            )
            metrics.steps["file_stats"] = round(file_stats, 3)
            metrics.lag_seconds = lag_seconds(started, oldest)
            # Compaction and VACUUM when due, by the table's own writer, after the batch's writes.
            metrics.maintenance_seconds = upkeep.after_batch(spark, batch_id)["seconds"]
        if warming is not None:
            zone = governance.non_phi if table.non_phi else None
            warming.start([paths.history, paths.latest, *([zone.history(table), zone.latest(table)] if zone else [])])
        record_batch(run, metrics)

    return (
        read_dms_stream(spark, table.source, path=path, options=config.stream.source_options())
        .writeStream.queryName(f"lakehouse_{table.name}")
        .foreachBatch(each_batch)
        .option("checkpointLocation", paths.checkpoint)
        .trigger(**trigger)
        .start()
    )


def record_batch(run: TableRun, metrics: BatchMetrics) -> None:
    """A DMS batch's bookkeeping once its writes are done: the run's record and notes, the log line and metrics."""
    run.record(metrics)
    if metrics.reloaded_files:
        run.notes.append(
            f"table reload ({'; '.join(metrics.reloaded_files)}): not taken as a new full state, its rows sort "
            "before every CDC row; see README 'A table reload'"
        )
    report(metrics)


def start_feed_query(
    spark: SparkSession, config: Config, feed: str, runs: dict[str, TableRun], *, trigger: dict[str, object]
) -> StreamingQuery:
    """Start the streaming query that applies a snapshot feed's files, oldest snapshot date first.

    A micro-batch takes every file that has landed and applies them in the order of the dates in their
    names (never their modification times: S3 keeps those to the second, and a copy changes them). A
    refused snapshot (older than one applied, or a second file for a day, or deleting more than
    `max_delete_fraction`) is logged and fails the run. A stream, whose exit code is read only when it stops,
    also counts it at once as a StreamTaskFailures of SNAPSHOT_REFUSED, which the deploy alarms on.
    """
    from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot, refuse
    from lakehouse.sources.snapshot import content_dates, read_snapshot_stream, snapshot_order

    streaming = "processingTime" in trigger

    def each_batch(files: DataFrame, batch_id: int) -> None:
        paths = [path for (path,) in files.select("path").collect()]
        setting = config.snapshots[feed].date
        dates = content_dates(paths) if setting.source == "content" and len(paths) > 1 else {}
        for path in sorted(paths, key=lambda p: snapshot_order(p, setting, dates.get(p))):
            try:
                result = apply_snapshot(spark, config, feed, path)
            except SnapshotRefused as exc:
                result = refuse(spark, config, feed, path, exc)
                if streaming:
                    report_failure(SNAPSHOT_REFUSED)
            for metrics in result.metrics:
                runs[metrics.table].record(metrics)
            for run in runs.values():
                run.notes.append(f"{result.file}: {result.status}" + (f" ({result.detail})" if result.detail else ""))
                if result.status == "refused" and run.error is None:  # the run exits non-zero, saying why
                    run.error = f"snapshot refused: {result.detail}"

    return (
        read_snapshot_stream(spark, config.snapshots[feed])
        .writeStream.queryName(f"lakehouse_snapshot_{feed}")
        .foreachBatch(each_batch)
        .option("checkpointLocation", feed_checkpoint(config, feed))
        .trigger(**trigger)
        .start()
    )


def feed_checkpoint(config: Config, feed: str) -> str:
    """Where a snapshot feed's query keeps its checkpoint."""
    return f"{config.paths.checkpoints.rstrip('/')}/_snapshots/{feed}"


def _error_text(exc: BaseException) -> str:
    """The useful line of an error raised inside foreachBatch (Spark wraps it in a long trace)."""
    text = str(exc)
    for marker in ("lakehouse.errors.", "lakehouse.ownership.", "pyspark.errors."):
        if marker in text:
            tail = text.split(marker)[-1]
            return tail.split("\n")[0]
    return text.strip().split("\n")[0][:2000]


def selected(config: Config, names: list[str] | None) -> tuple[list[TableConfig], list[str]]:
    """The DMS tables and snapshot feeds to run: all, or those named (a table of a feed selects its feed)."""
    if not names:
        return list(config.dms_tables().values()), list(config.snapshots)
    feeds = [n for n in names if n in config.snapshots]
    tables = []
    for table in (config.table(n) for n in names if n not in config.snapshots):
        if table.source.kind == "snapshot":
            feeds.append(table.source.feed)
        else:
            tables.append(table)
    return tables, list(dict.fromkeys(feeds))


def _feed_runs(config: Config, feed: str, *, streaming: bool = False) -> dict[str, TableRun]:
    run = TableRun.streaming if streaming else TableRun
    return {name: run(name) for name in config.feed_tables(feed)}


def _failed(runs: list[TableRun], name: str, exc: BaseException) -> None:
    error = _error_text(exc)
    for run in runs:
        run.error = error
    log.error('{"event": "table_failed", "table": "%s", "error": %r}', name, error)


def closed_paths(config: Config, tables: list[TableConfig]) -> dict[str, str]:
    """Each DMS table's path narrowed to the landing router's closed folders (no handoff configured: none)."""
    if config.handoff is None or not tables:
        return {}
    from lakehouse.handoff import closed_source_path, open_folder

    p_date, p_hour = open_folder(config.handoff)
    log.info('{"event": "closed_folders", "before": "p_date=%s/p_hour=%s"}', p_date, p_hour)
    return {t.name: closed_source_path(t.source.path, p_date, p_hour) for t in tables}


def _nothing_new(state: Pending | None, runs: list[TableRun]) -> bool:
    """True (and noted on every run) when the query would find nothing: then it is not started."""
    if state is None or not state.nothing_new:
        return False
    for run in runs:
        run.notes.append("nothing new")
    return True


def run_once(
    spark: SparkSession | Callable[[], SparkSession],
    config: Config,
    tables: list[str] | None = None,
    *,
    job: str | None = None,
) -> list[TableRun]:
    """Apply everything that has landed (availableNow), the tables side by side; never stop at a failure.

    The consent source goes first and the policy is rebuilt from it; then the other tables and the snapshot
    feeds run `config.stream.tables_at_once` at a time: each has its own query, checkpoint, lease and Delta
    tables, so one's planning and commits overlap another's Spark jobs (a run costs about its slowest table,
    not the sum).

    Each table (each feed) is applied under its unit's lease (lakehouse.ownership): a unit another job is
    writing is reported as failed, untouched. A table or feed whose checkpoint already holds every landed
    file is not started at all (see `lakehouse.pending`), so `spark` may be a function that builds the
    session when it is first needed.
    """
    session = lazy_session(spark)
    dms, feeds = selected(config, tables)
    governance = Governance.of(config, dms)
    source = config.policy.source_table if config.policy else None
    paths = closed_paths(config, dms)
    runs = {table.name: TableRun(table.name) for table in sorted(dms, key=lambda t: t.name != source)}
    feed_runs = {feed: _feed_runs(config, feed) for feed in feeds}

    def table_task(table: TableConfig) -> Callable[[], None]:
        return functools.partial(
            _apply_table, session, config, table, runs[table.name], governance, path=paths.get(table.name), job=job
        )

    for table in dms:  # the policy is rebuilt from the consent source before the tables it flags
        if table.name == source:
            table_task(table)()
    failed = runs[source].error if source in runs else None
    rest = []
    for table in dms:
        if table.name == source:
            continue
        if failed and table.consent is not None:  # never flagged with a stale policy (the deployed flows agree)
            runs[table.name].error = (
                f"not applied: the consent source {source} or the policy build failed ({failed}), and this table's "
                "rows are flagged by the policy; fix that and run again"
            )
            continue
        rest.append(table_task(table))
    rest += [functools.partial(_apply_feed, session, config, feed, feed_runs[feed], job=job) for feed in feeds]
    if rest:
        run_side_by_side(rest, at_once=config.stream.tables_at_once)
    if governance.non_phi is not None:
        _note_orphan_zone_tables(config, [runs[t.name] for t in dms if t.non_phi])
    return [*runs.values(), *(run for by_table in feed_runs.values() for run in by_table.values())]


def _note_orphan_zone_tables(config: Config, runs: list[TableRun]) -> None:
    """Name, on the zone tables' runs, the non-PHI zone's tables no configured table writes any more."""
    orphans: list[str] = []
    try:
        orphans = orphan_zone_tables(config)
    except Exception as exc:  # a listing refused (permissions): said, never a failed run
        note = f"the non-PHI zone's folders could not be listed to find tables left behind ({exc})"
    else:
        if not orphans:
            return
        note = (
            f"the non-PHI zone holds tables no configured table writes: {', '.join(orphans)} (renamed, removed or "
            "made PHI-only): withdrawals, forgets and VACUUM do not reach them; delete their folders under "
            f"{config.paths.non_phi_lake}"
        )
    log.warning(json.dumps({"event": "zone_orphans", "tables": orphans, "note": note}))
    for run in runs:
        run.notes.append(note)


def _apply_table(
    session: Callable[[], SparkSession],
    config: Config,
    table: TableConfig,
    run: TableRun,
    governance: Governance,
    *,
    path: str | None,
    job: str | None,
) -> None:
    """One table's part of `run_once`: its query (or its consent sync alone), then the policy if it is the source."""
    started = time.monotonic()
    source = config.policy.source_table if config.policy else None
    try:
        idle = _nothing_new(pending(path or table.source.path, table_paths(config, table).checkpoint), [run])
        if idle and not zone_synced(table, governance):
            with hold(config, [table.name], job=job):  # no file to apply: the consent sync alone, no query
                _sync_alone(session(), config, table, run, governance)
        if idle:
            _vacuum_idle(session, config, table, run, governance, job=job)
        if not idle:
            with hold(config, [table.name], job=job):
                trigger = {"availableNow": True}
                query = start_query(session(), config, table, run, trigger=trigger, governance=governance, path=path)
                query.awaitTermination()
                if not run.batches:  # nothing new after all (told by the query where `pending` cannot: S3)
                    _vacuum_idle(session, config, table, run, governance, job=job)
        if table.name == source and not (idle and policy_is_current(config)):
            stats = build_policy_table(session(), config, job=job)  # under the source's lease
            if governance.policy is not None:
                governance.policy.invalidate()
            run.notes.append(_policy_note(stats))
    except Exception as exc:  # one table's failure must not stop the others; it is reported
        _failed([run], table.name, exc)
    run.seconds = round(time.monotonic() - started, 3)


def _policy_note(stats: WriteStats) -> str:
    """What a policy build did, for the run's notes: rebuilt, or refused because a newer build is stored."""
    if stats.newer_stored is not None:
        newer = stats.newer_stored.version
        return f"policy not written: the store holds a build from a newer consents version ({newer})"
    return f"policy rebuilt: {stats.rows} rows"


def _vacuum_idle(
    session: Callable[[], SparkSession],
    config: Config,
    table: TableConfig,
    run: TableRun,
    governance: Governance,
    *,
    unit: str | None = None,
    job: str | None,
) -> None:
    """The VACUUM a table with nothing new is due (no batch ran to do it); on local disk, told without Spark.

    `unit`: the write unit whose lease it takes (the table's own, or its snapshot feed's)."""
    upkeep = table_maintenance(config, table, table_paths(config, table), governance.non_phi)
    if not upkeep.vacuum_may_be_due():
        return
    with hold(config, [unit or table.name], job=job):
        vacuumed = upkeep.vacuum_when_idle(session())
    if vacuumed:
        run.notes.append(f"vacuumed (no batch ran): {', '.join(vacuumed)}")


def _apply_feed(
    session: Callable[[], SparkSession], config: Config, feed: str, runs: dict[str, TableRun], *, job: str | None
) -> None:
    """One snapshot feed's part of `run_once`: its query applies every file that landed, for all its tables."""
    started = time.monotonic()
    settings = config.snapshots[feed]
    try:
        state = pending(settings.path, feed_checkpoint(config, feed), glob=FILE_GLOBS[settings.kind])
        unread = unread_files(settings.path, FILE_GLOBS[settings.kind])
        if unread:
            shown = ", ".join(unread[:3]) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
            for run in runs.values():
                run.notes.append(f"not read (a {settings.kind} feed reads {FILE_GLOBS[settings.kind]}): {shown}")
        ran = not _nothing_new(state, list(runs.values()))
        tables = config.feed_tables(feed)
        due = [
            n
            for n, t in tables.items()
            if table_maintenance(config, t, table_paths(config, t), None).vacuum_may_be_due()
        ]
        if ran or due:
            # One lease over the query and the upkeep: a snapshot load waiting for the feed never slips in between.
            with hold(config, [feed], job=job):
                if ran:
                    start_feed_query(session(), config, feed, runs, trigger={"availableNow": True}).awaitTermination()
                if not any(run.batches for run in runs.values()):  # no file applied: the VACUUM no apply did
                    for name in due:
                        _vacuum_idle(session, config, tables[name], runs[name], Governance(), unit=feed, job=job)
        refused = refusals_pending(session, config, feed)
        for run in runs.values():
            if refused and run.error is None:
                run.error = refused
    except Exception as exc:
        _failed(list(runs.values()), feed, exc)
    for run in runs.values():
        run.seconds = round(time.monotonic() - started, 3)


def lazy_session(spark: SparkSession | Callable[[], SparkSession]) -> Callable[[], SparkSession]:
    """A function returning the session: `spark` itself, or built by `spark()` on first use."""
    from pyspark.sql import SparkSession

    if isinstance(spark, SparkSession):
        return lambda: spark
    build, lock = functools.cache(spark), threading.Lock()

    def session() -> SparkSession:
        with lock:  # tables run side by side: one of them builds it
            return build()

    return session


def run_stream(
    spark: SparkSession,
    config: Config,
    tables: list[str] | None = None,
    stop: threading.Event | None = None,
    *,
    job: str | None = None,
) -> list[TableRun]:
    """Run every table's query on a processing-time trigger until the stop marker is written, `stop` is set,
    SIGTERM or Ctrl-C.

    The stream holds the leases of every unit it writes for as long as it runs: no batch job writes them then.
    The stop marker (`stop_marker`: `<checkpoints>/_stop`, local or s3://) is how a deployed stream is stopped: in
    YARN cluster mode the driver never receives the signal an EMR step's cancel sends to spark-submit. Any object
    written there after this stream started stops it within STOP_CHECK_SECONDS: the batches running end (up to
    STOP_WAIT_SECONDS), the leases are given back and the runs returned (the stream's script then exits 0 unless a
    run failed). The marker is left in place for every other stream on the same checkpoints; one written before a
    stream started does not stop it.
    """
    started = time.time()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    dms, feeds = selected(config, tables)
    with hold(config, [t.name for t in dms] + feeds, job=job):
        runs = _run_stream(spark, config, dms, feeds, stop, StopMarker(stop_marker(config), since=started))
    log.info(json.dumps({"event": "stream_ended", "failed": [r.table for r in runs if not r.ok]}))
    return runs


def stop_marker(config: Config) -> str:
    """Where an object stops every stream on these checkpoints (written after it started): `<checkpoints>/_stop`."""
    return f"{config.paths.checkpoints.rstrip('/')}/_stop"


@dataclass
class StopMarker:
    """A stream's stop request that needs no signal: an object at `path` written after `since` (epoch seconds).

    Looked for every STOP_CHECK_SECONDS (a HEAD request on S3); a failed look is logged and the stream goes on.
    """

    path: str
    since: float
    next_check: float = 0.0  # monotonic

    def written(self, spark: SparkSession) -> bool:
        if time.monotonic() < self.next_check:
            return False
        self.next_check = time.monotonic() + STOP_CHECK_SECONDS
        try:
            at = marker_time(spark, self.path)
        except Exception as exc:  # S3 unreachable a moment: the next look tries again
            log.warning(json.dumps({"event": "stop_marker_unreadable", "marker": self.path, "error": _error_text(exc)}))
            return False
        if at is None or at < self.since:
            return False
        log.info(json.dumps({"event": "stream_stop_requested", "marker": self.path}))
        return True


def _run_stream(
    spark: SparkSession,
    config: Config,
    dms: list[TableConfig],
    feeds: list[str],
    stop: threading.Event,
    marker: StopMarker,
) -> list[TableRun]:
    trigger = {"processingTime": f"{config.stream.trigger_seconds} seconds"}
    governance = Governance.of(config, dms)
    queries: list[tuple[StreamingQuery, list[TableRun]]] = []
    zone_runs: list[tuple[TableConfig, TableRun]] = []
    policy_source: StreamPolicy | None = None
    for table in dms:
        run = TableRun.streaming(table.name)
        query = start_query(spark, config, table, run, trigger=trigger, governance=governance)
        queries.append((query, [run]))
        if governance.non_phi is not None and table.non_phi:
            zone_runs.append((table, run))
        if config.policy is not None and table.name == config.policy.source_table:
            policy_source = StreamPolicy(config, run, retry_seconds=config.stream.trigger_seconds)
    for feed in feeds:
        feed_runs = _feed_runs(config, feed, streaming=True)
        queries.append((start_feed_query(spark, config, feed, feed_runs, trigger=trigger), list(feed_runs.values())))
    next_sync = time.monotonic() + config.stream.trigger_seconds
    next_vacuum = time.monotonic() + IDLE_VACUUM_CHECK_SECONDS
    wait = SIGNAL_STOP_WAIT_SECONDS
    while not stop.is_set() and all(q.isActive for q, _ in queries):
        stop.wait(0.5)
        if marker.written(spark):
            wait = STOP_WAIT_SECONDS
            break
        try:
            if policy_source is not None:
                policy_source.rebuild_when_applied(spark, governance)
            if zone_runs and time.monotonic() >= next_sync:
                sync_between_batches(spark, config, zone_runs, governance)
                next_sync = time.monotonic() + config.stream.trigger_seconds
            if time.monotonic() >= next_vacuum:
                vacuum_between_batches(spark, config, dms, governance)
                next_vacuum = time.monotonic() + IDLE_VACUUM_CHECK_SECONDS
        except LeaseLostError as exc:  # the stream stops: another job writes these tables now
            log.error('{"event": "stream_stopped", "error": %r}', str(exc))
            for _, runs in queries:
                for run in runs:
                    run.error = run.error or str(exc)
            break
    _stop_between_batches([query for query, _ in queries], wait)
    for query, runs in queries:
        if query.exception() is not None:
            for run in runs:
                run.error = _error_text(query.exception())
    return [run for _, runs in queries for run in runs]


@dataclass
class StreamPolicy:
    """A stream that applies the consent source rebuilds the policy after each batch of it, as `run` does after the
    source's query: without it, a withdrawal applied to the source never reached the policy, so the zone kept the
    patient until someone ran `lakehouse policy build`. The next sync or batch of each table reads the new policy.

    A build runs at most once per policy `refresh_seconds` (the tables read the policy that often anyway; a build
    reads the whole consent source and the store). A failed build is logged and tried again after `retry_seconds`;
    the tables go on with the policy they have.
    """

    config: Config
    run: TableRun  # the consent source's
    retry_seconds: float
    built: int = -1  # batches of the source the stored policy was built after; -1: not built by this stream yet
    next_build: float = 0.0  # monotonic time before which no build starts (the interval, or a retry's wait)

    def rebuild_when_applied(self, spark: SparkSession, governance: Governance) -> None:
        batches = self.run.batch_count  # not len(batches): a stream's run keeps the last STREAM_KEEPS only
        if self.built == -1 and policy_is_current(self.config):
            self.built = batches
        if batches == self.built or time.monotonic() < self.next_build:
            return
        try:
            stats = build_policy_table(spark, self.config)
        except Exception as exc:  # the stream goes on; tried again later
            self.next_build = time.monotonic() + self.retry_seconds
            log.error('{"event": "policy_build_failed", "error": %r}', _error_text(exc))
            report_failure(POLICY_BUILD)
            return
        assert self.config.policy is not None
        self.next_build = time.monotonic() + self.config.policy.refresh_seconds
        if stats.newer_stored is None:  # else a newer build won: built again after refresh_seconds
            self.built = batches
        if governance.policy is not None:
            governance.policy.invalidate()
        self.run.notes.append(_policy_note(stats))
        if stats.newer_stored is None:
            log.info('{"event": "policy_rebuilt", "rows": %d, "source_batches": %d}', stats.rows, batches)


def sync_between_batches(
    spark: SparkSession, config: Config, zone_runs: list[tuple[TableConfig, TableRun]], governance: Governance
) -> None:
    """Apply a consent change to the zone of each table whose query is between batches (a stream's idle tables).

    A table that gets no file runs no batch, and so no batch's sync: this one reaches it. A table in a batch
    is skipped (its batch syncs). A failure is logged and tried again at the next interval.
    """
    for table, run in zone_runs:
        lock = governance.lock(table.name)
        if not lock.acquire(blocking=False):
            continue
        try:
            check_held(config, table.name)  # LeaseLostError stops the stream (it is not caught below)
        except LeaseLostError:
            lock.release()
            raise
        try:
            note = sync_zone(spark, config, table, governance, table_policy(spark, table, governance))
        except Exception as exc:  # the stream goes on; the next interval or batch tries again
            log.error('{"event": "consent_sync_failed", "table": "%s", "error": %r}', table.name, _error_text(exc))
            report_failure(CONSENT_SYNC)
            continue
        finally:
            lock.release()
        if note:
            run.notes.append(note)
            log.info('{"event": "consent_sync", "table": "%s", "note": "%s"}', table.name, note)


def vacuum_between_batches(
    spark: SparkSession, config: Config, tables: list[TableConfig], governance: Governance
) -> None:
    """The VACUUM of each table that is due and between batches (a stream's idle tables run no batch to do it)."""
    for table in tables:
        lock = governance.lock(table.name)
        if not lock.acquire(blocking=False):
            continue
        try:
            check_held(config, table.name)
            table_maintenance(config, table, table_paths(config, table), governance.non_phi).vacuum_when_idle(spark)
        except LeaseLostError:
            raise  # the stream stops
        except Exception as exc:  # the stream goes on; the next check tries again
            log.error('{"event": "vacuum_failed", "table": "%s", "error": %r}', table.name, _error_text(exc))
        finally:
            lock.release()


def _stop_between_batches(queries: list[StreamingQuery], wait_seconds: float) -> None:
    """Stop each query as soon as it is between micro-batches, all of them watched at once; a batch still running
    after `wait_seconds` is cut short (nothing of it is committed to the checkpoint: the next start replays it)."""
    deadline = time.monotonic() + wait_seconds
    running = list(queries)
    while running:
        late = time.monotonic() >= deadline
        for query in list(running):
            if late or not query.isActive or not query.status.get("isTriggerActive"):
                query.stop()
                running.remove(query)
        if running:
            time.sleep(0.2)
