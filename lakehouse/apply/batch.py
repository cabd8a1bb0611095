"""One micro-batch of one table, end to end: parse → changes → dedup → plan → quarantine, history, latest.

Every write is idempotent on its own, so a batch replayed after a crash (Structured Streaming re-runs
the same batch id with the same files) converges to the state of a clean run whichever writes had
committed: quarantine rows are inserted only if absent, history versions are matched on (key,
sequence), and latest is guarded by the sequence. That is also why the writes, each to its own Delta
table, run side by side once the plan is computed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from lakehouse.apply import privacy_log
from lakehouse.apply.consent_sync import remove_forgotten_since
from lakehouse.apply.forget import follow_key_moves
from lakehouse.apply.history import UNSUPPLIED, flags_follow_unsupplied, merge_history, plan_history
from lakehouse.apply.keys import semi_join_keys
from lakehouse.apply.latest import LATEST_META, latest_changes, merge_latest
from lakehouse.apply.ledger import BatchFiles, LedgerIndex, classify_files, record_files, reloaded_files
from lakehouse.apply.non_phi import NonPhiZone, retry_conflicts, write_non_phi
from lakehouse.apply.pruning import key_ranges, within_ranges
from lakehouse.changes.dedup import mark_duplicates
from lakehouse.changes.normalize import split_key_changes, to_changes
from lakehouse.config import CONSENT_COLUMNS, SnapshotTableSource, TableConfig
from lakehouse.delta_log import committed_version
from lakehouse.errors import ConfigError, InputError
from lakehouse.faults import crash_point
from lakehouse.masking import pseudonym, pseudonym_prefix
from lakehouse.metrics import BatchMetrics
from lakehouse.policy.build import MISSING_COL, flag_changes
from lakehouse.sources.dms import parse_files
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import META_COLUMNS, REPEATS, TablePaths, derived_history_columns, keeps_unsupplied

log = logging.getLogger("lakehouse.batch")

MAX_KEYS_TO_COLLECT = 500_000
UNKNOWN_KEY_EXAMPLES = 5
# Up to this many changes, their keys are broadcast to pick the existing history versions: history is
# then filtered where it is read, instead of being shuffled to meet the keys (tens of MB at most).
MAX_KEYS_TO_BROADCAST = 1_000_000
# Up to this many keys (numeric, collected for the key ranges), they pick the history versions as an IN list.
MAX_KEYS_AS_LITERALS = 1_000


def _count(condition: F.Column) -> F.Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def apply_batch(
    files: DataFrame,
    batch_id: int,
    *,
    table: TableConfig,
    paths: TablePaths,
    policy: DataFrame | None = None,
    non_phi: NonPhiZone | None = None,
    ledger: LedgerIndex | None = None,
    small: bool = False,
) -> BatchMetrics:
    """Apply the DMS files of one micro-batch to the table's Delta tables; return its metrics.

    `policy` (a snapshot of the consent policy) is required for a table with `consent:`; `non_phi`
    writes the masked, consented rows to the non-PHI zone too. `ledger` is the streaming query's index of
    its file ledger (read once, not each batch). `small` (a few small files into small tables,
    `codegen.is_small`): the batch's rows stay in one partition, so its dedup, counts and plan shuffle nothing.
    """
    started = time.monotonic()
    metrics = BatchMetrics(table=table.name, batch_id=batch_id)
    business = list(table.source.business_columns)
    parsed = parse_files(files, table.source)
    changes = split_key_changes(to_changes(parsed, table, batch_id), table)
    if table.consent:
        if policy is None:
            raise ConfigError(f"table {table.name} is flagged with consent, but no policy snapshot was given")
        changes = flag_changes(
            changes, policy, patient_col=table.consent.patient_column, device_col=table.consent.device_column
        )
        if UNSUPPLIED in changes.columns:
            ids = [c for c in (table.consent.patient_column, table.consent.device_column) if c]
            changes = flags_follow_unsupplied(changes, ids, list(CONSENT_COLUMNS), MISSING_COL)
    if small:  # one partition is already clustered by any key: no shuffle before the dedup's window
        changes = changes.coalesce(1)
    # Parsed once: materialized and cut loose from the files (cheaper than a cache; Spark frees the blocks
    # once the DataFrame is gone). Lazily: the files' contents below materialize it, in the same job.
    marked = mark_duplicates(changes, table.primary_key, business).localCheckpoint(eager=False)
    if small:  # a checkpoint forgets that it is one partition; this says it again (no shuffle for the counts)
        marked = marked.coalesce(1)
    step = _Steps(metrics)
    with step("parse"):
        contents = marked.where(~F.col("_synthetic")).groupBy("_source_file", "_content_hash").count().collect()
    with step("ledger_lookup"):
        files = classify_files(
            marked.sparkSession, paths.ledger, {r[0]: (r[1], int(r[2])) for r in contents}, batch_id, ledger
        )
        reloads = reloaded_files(marked.sparkSession, paths.ledger, files, batch_id)
    metrics.reloaded_files = [f"{_name(f)} = {where}" for f, where in sorted(reloads.items())]
    if reloads:
        log.warning(
            json.dumps(
                {
                    "event": "table_reload",
                    "table": table.name,
                    "batch_id": batch_id,
                    "files": metrics.reloaded_files,
                    "note": "a DMS table reload is not taken as a new full state: its rows sort before every CDC "
                    "row, keys it lacks stay; rebuild the table from the reload (README: 'A table reload')",
                }
            )
        )
    apply_changes(
        marked,
        batch_id,
        table=table,
        paths=paths,
        metrics=metrics,
        non_phi=non_phi,
        files=files,
        policy=policy,
        one_partition=small,
    )
    if ledger is not None:  # the batch's writes (its ledger append among them) are committed
        ledger.add([digest for digest, _rows in files.applied.values()])
    metrics.seconds = round(time.monotonic() - started, 3)
    return metrics


def apply_changes(
    marked: DataFrame,
    batch_id: int,
    *,
    table: TableConfig,
    paths: TablePaths,
    metrics: BatchMetrics,
    non_phi: NonPhiZone | None = None,
    files: BatchFiles | None = None,
    policy: DataFrame | None = None,
    history_first: bool = False,
    one_partition: bool = False,
) -> None:
    """Write a change stream (rows marked with `_reason` and `_duplicate`) to quarantine, history and latest.

    This is the part every source shares: DMS files and snapshot diffs both end here. `marked` is read
    several times: pass it materialized (a local checkpoint; a lazy one is materialized by the first count).
    `files` (DMS) says which files are replays of contents already applied: their rows are counted as
    replayed, never written; the others are recorded in the file ledger with the batch's other writes.
    `non_phi` (with the `policy` a table with `consent:` was flagged with) writes the non-PHI zone too.
    `history_first`: changes computed from latest itself (a snapshot's diff) must be in history before latest
    changes. A rerun after a crash between the two then diffs against the same latest, finds the same changes,
    and history takes them as replays; written side by side, latest could commit alone, and the rerun's diff
    would find nothing to do while history never had the day. `one_partition`: a small batch's plan is made in
    one partition (no shuffle).
    """
    spark = marked.sparkSession
    business = list(table.columns)
    replays = sorted(files.replayed) if files else []
    replay = F.col("_source_file").isin(replays) if replays else F.lit(False)
    valid = F.col("_reason").isNull() & ~replay
    step = _Steps(metrics)
    # The keys come with the first counts (one job fewer) when the batch's files say there are few enough.
    keys_with_counts = files is not None and _keys_listed(
        marked, table.primary_key[0], 2 * sum(rows for _hash, rows in files.applied.values())
    )
    with step("changes"):
        first = _first_counts(marked, table, replay, keys=keys_with_counts)
    metrics.policy_missing = int(first["policy_missing"] or 0)
    metrics.optional_absent = int(first["absent"] or 0)
    for name in ("files", "rows_read", "key_changes", "quarantined", "duplicates", "null_sequence"):
        setattr(metrics, name, int(first[name] or 0))
    if table.source.change_seq_column is None:
        metrics.null_sequence = 0
    file_replays = int(first["file_replays"] or 0)
    metrics.replayed_files = [f"{_name(f)} = {where}" for f, where in sorted((files.replayed if files else {}).items())]
    changes = marked.where(valid & ~F.col("_duplicate"))

    def quarantine() -> None:
        if metrics.quarantined:
            with step("quarantine"):
                _write_quarantine(marked.where(F.col("_reason").isNotNull() & ~replay), table, paths, batch_id, metrics)
        crash_point(table.name, batch_id, "after_quarantine")

    def ledger() -> None:
        if files is not None:
            record_files(spark, paths.ledger, files, batch_id)

    if first["min_valid_from"] is None:
        metrics.replayed = file_replays
        run_side_by_side([quarantine, ledger])
        return

    # Only versions of the batch's keys can change, and only those still open at its oldest change; the
    # key ranges are literals, so Delta skips files by their min/max statistics (a big win when keys cluster).
    key = table.primary_key[0]
    with step("keys"):
        keys = sorted(first["keys"]) if first["keys"] is not None else _batch_keys(changes, key, metrics.rows_read)
    ranges = key_ranges(keys) if keys is not None else [(first["key_lo"], first["key_hi"])]

    def in_key_range(alias: str = "") -> F.Column:
        return within_ranges(f"{alias}`{key}`", ranges)

    history = spark.read.format("delta").load(paths.history)
    # The oldest change's instant, exactly: collected, it is a naive datetime in the driver's zone whose `fold` tells
    # the two 01:30s of a fall-back apart; as a literal PySpark would read it with time.mktime, which drops the
    # fold and picks either (an hour late misses the version the change belongs in).
    oldest = first["min_valid_from"]
    oldest_micros = int(oldest.replace(microsecond=0).timestamp()) * 1_000_000 + oldest.microsecond
    open_versions = F.col("_valid_to").isNull() | (F.col("_valid_to") >= F.timestamp_micros(F.lit(oldest_micros)))
    few_keys = keys is not None and len(keys) <= MAX_KEYS_AS_LITERALS
    if few_keys and len(table.primary_key) == 1 and not table.nullable_key:
        # A few keys: a literal IN list (Delta skips files by it too), no job to broadcast them.
        existing = history.where(in_key_range() & open_versions & F.col(f"`{key}`").isin(keys))
    else:
        batch_keys = changes.select(*table.primary_key).distinct()
        if metrics.rows_read <= MAX_KEYS_TO_BROADCAST:
            batch_keys = F.broadcast(batch_keys)
        existing = semi_join_keys(
            history.where(in_key_range() & open_versions), batch_keys, table.primary_key, table.nullable_key
        )
    # Materialized and cut loose from the history table: a MERGE into history invalidates cached results
    # that read it, and the latest MERGE must see the plan as it was, not recompute it on the new version.
    # (A local checkpoint is not a cache: Spark's ContextCleaner frees its blocks once the plan is gone.) The
    # plan's counts materialize it, in the same job, before anything is written.
    plan = plan_history(
        changes,
        existing,
        key=table.primary_key,
        values=business,
        ignore=table.tracked_ignore,
        one_partition=one_partition,
        keys_moved=metrics.key_changes > 0,
        # A snapshot's diff is computed from latest: its days are never late, and history must go first (below).
        drop_repeats=not history_first,
    ).localCheckpoint(eager=False)
    if one_partition:
        plan = plan.coalesce(1)
    with step("plan"):
        counts = _count_plan(plan, metrics)
    metrics.replayed += file_replays
    if metrics.unknown_keys:
        _report_unknown_keys(plan, table, batch_id, metrics, non_phi)
    if metrics.replay_conflicts:
        log.warning(
            json.dumps(
                {
                    "event": "replay_conflicts",
                    "table": table.name,
                    "batch_id": batch_id,
                    "rows": metrics.replay_conflicts,
                    "rule": "a change with the sequence of a change already in history but other values: the "
                    "applied one is kept, this one counted as replayed (within one batch such pairs are "
                    "quarantined as duplicate_sequence)",
                }
            )
        )
    if not metrics.reconciles:
        raise InputError(
            f"row counts do not reconcile, nothing was written to history: {metrics.to_json()}",
            table=table.name,
            batch_id=batch_id,
        )
    if non_phi is not None and metrics.key_changes:  # before any zone write reads the privacy log
        with step("key_moves"):
            follow_key_moves(changes, table=table, zone=non_phi, batch_id=batch_id)
    versions: dict[str, int] = {}

    def history_versions() -> None:
        with step("history"):
            merge_history(
                DeltaTable.forPath(spark, paths.history),
                plan,
                key=table.primary_key,
                columns=[*business, *META_COLUMNS, *([UNSUPPLIED] if keeps_unsupplied(table) else []), REPEATS],
                within=in_key_range("t."),
                derived=derived_history_columns(table),
                reclose=counts["reclosed"] + metrics.repeats_removed > 0,
                current_only=counts["reclosed_closed"] == 0,
                nullable=table.nullable_key,
                path=paths.history,
            )
            crash_point(table.name, batch_id, "after_history")
            versions["history"] = committed_version(spark, paths.history)

    def latest_rows() -> None:
        latest_columns = [*business, *LATEST_META]
        with step("latest"):
            merge_latest(
                DeltaTable.forPath(spark, paths.latest),
                latest_changes(plan, batch_id=batch_id, columns=latest_columns),
                key=table.primary_key,
                columns=latest_columns,
                within=in_key_range("t."),
                # A replay finds this batch's own versions in history; only keys new to history skip the upsert.
                new_keys_only=counts["existing"] == 0,
                nullable=table.nullable_key,
                refill=UNSUPPLIED in plan.columns,
                path=paths.latest,
            )
            crash_point(table.name, batch_id, "after_latest")
            versions["latest"] = committed_version(spark, paths.latest)

    def non_phi_zone() -> None:
        zone = non_phi
        assert zone is not None
        with step("non_phi"):
            blocked = privacy_log.forgotten(privacy_log.read_events(spark, zone))
            write_non_phi(
                plan,
                table=table,
                zone=zone,
                policy=policy,
                forgotten=privacy_log.patients_frame(spark, blocked),
                dropped=metrics.repeats_removed > 0,
            )
            retry_conflicts(lambda: remove_forgotten_since(spark, table, zone, blocked))
        crash_point(table.name, batch_id, "after_non_phi")

    # Each write goes to its own Delta table and is idempotent on its own (a replay converges whichever of
    # them committed before a crash), so they run side by side: one's planning and commit overlap another's
    # Spark jobs, and a MERGE that rewrites one file keeps one core busy, not both.
    first, then = [quarantine, ledger, history_versions], [latest_rows]
    if non_phi is not None and table.non_phi:
        then.append(non_phi_zone)
    if metrics.repeats_removed or metrics.repeats_restored:
        # History last: a replay after a crash finds the repeats still there and removes them from the zone too, or
        # makes them versions again, in latest too (after history, a restored current version would be a stored one,
        # which latest takes only from its own batch).
        run_side_by_side([quarantine, ledger, *then])
        run_side_by_side([history_versions])
    elif history_first:
        run_side_by_side(first)
        run_side_by_side(then)
    else:
        run_side_by_side(first + then)
    metrics.versions = {name: versions[name] for name in ("history", "latest")}


def _first_counts(marked: DataFrame, table: TableConfig, replay: Column, *, keys: bool = False) -> Row:
    """The batch's counts, its oldest change and its key range, in one job (which also materializes `marked`).

    Rows of `replay` files (contents the ledger has applied before) are counted apart and nowhere else.
    `keys`: also the distinct keys of the changes to apply (`keys`, unsorted), as `_batch_keys` gives them."""
    valid = F.col("_reason").isNull() & ~replay
    key = F.col(f"`{table.primary_key[0]}`")
    batch_keys = F.collect_set(F.when(valid & ~F.col("_duplicate"), key)) if keys else F.lit(None)
    return marked.agg(
        # The size of a set, not countDistinct: a distinct aggregate next to others costs Spark an extra shuffle.
        F.size(F.collect_set("_source_file")).alias("files"),
        _count(~F.col("_synthetic")).alias("rows_read"),
        _count(F.col("_synthetic")).alias("key_changes"),
        _count(replay).alias("file_replays"),
        _count(F.col("_reason").isNotNull() & ~replay).alias("quarantined"),
        _count(F.col("_duplicate") & ~replay).alias("duplicates"),
        _count(valid & F.col("_change_seq").isNull() & ~F.col("_synthetic")).alias("null_sequence"),
        (_count(valid & F.col("_absent").isNotNull()) if "_absent" in marked.columns else F.lit(0)).alias("absent"),
        F.min(F.when(valid, F.col("_valid_from"))).alias("min_valid_from"),
        F.min(F.when(valid, key)).alias("key_lo"),
        F.max(F.when(valid, key)).alias("key_hi"),
        (_count(valid & F.col(MISSING_COL)) if MISSING_COL in marked.columns else F.lit(0)).alias("policy_missing"),
        batch_keys.alias("keys"),
    ).first()


def _keys_listed(changes: DataFrame, key: str, rows: int) -> bool:
    """Whether the distinct keys of `rows` changes are listed on the driver to be split into ranges (numeric, not too
    many); else one min/max range. (The first key column is never NULL in a change that is applied.)"""
    return isinstance(changes.schema[key].dataType, NumericType) and rows <= MAX_KEYS_TO_COLLECT


def _batch_keys(changes: DataFrame, key: str, rows: int) -> list | None:
    """The batch's distinct keys, sorted, where they can be split into ranges (`_keys_listed`); else None."""
    if not _keys_listed(changes, key, rows):
        return None  # one min/max range: no key list on the driver
    return sorted(r[0] for r in changes.select(F.col(f"`{key}`")).distinct().collect())  # no range-sort job


class _Steps:
    """Times the steps of a batch into `metrics.steps` (where a batch's seconds go, in its record)."""

    def __init__(self, metrics: BatchMetrics) -> None:
        self.metrics = metrics

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.metrics.steps[name] = round(time.monotonic() - started, 3)


def _count_plan(plan: DataFrame, metrics: BatchMetrics) -> dict[str, int]:
    """Fill the batch's counts from the plan; return what the MERGEs need to know (re-closes, of closed versions
    among them, existing versions).

    A U of a key with no live version before it counts as inserted (it is the key's first live row), never
    as updated; it and a D of such a key also count as `unknown_keys`.
    """
    # A stored repeat made a version again (`plan_history`) is no row of this batch: it is counted apart (`restored`),
    # and in `unknown_keys` when it revives a deleted key.
    inserted = (F.col("_action") == "insert") & ~F.col("_stored_repeat")
    restored = (F.col("_action") == "insert") & F.col("_stored_repeat")
    unknown = (F.col("_action") == "insert") & F.col("_unknown_key")
    row = plan.agg(
        _count(inserted).alias("applied"),
        _count(inserted & ((F.col("_op") == "I") | ((F.col("_op") == "U") & unknown))).alias("inserted"),
        _count(inserted & (F.col("_op") == "U") & ~unknown).alias("updated"),
        _count(inserted & (F.col("_op") == "D")).alias("deleted"),
        _count(unknown).alias("unknown_keys"),
        _count(restored).alias("repeats_restored"),
        _count(inserted & F.col("_late")).alias("late"),
        _count(F.col("_action") == "unchanged").alias("unchanged"),
        _count(F.col("_action").isin("replay", "replay_conflict")).alias("replayed"),
        _count(F.col("_action") == "replay_conflict").alias("replay_conflicts"),
        _count(F.col("_action") == "update").alias("reclosed"),
        _count(F.col("_action").isin("update", "drop") & ~F.col("_old_is_current")).alias("reclosed_closed"),
        _count(F.col("_existing")).alias("existing"),
        _count(F.col("_action") == "drop").alias("repeats_removed"),
    ).first()
    names = ("applied", "inserted", "updated", "deleted", "late", "unchanged", "replayed", "replay_conflicts")
    for name in (*names, "unknown_keys", "repeats_removed", "repeats_restored"):
        setattr(metrics, name, int(row[name] or 0))
    return {name: int(row[name] or 0) for name in ("reclosed", "reclosed_closed", "existing")}


def _report_unknown_keys(
    plan: DataFrame, table: TableConfig, batch_id: int, metrics: BatchMetrics, non_phi: NonPhiZone | None
) -> None:
    """A warning line with the count and a few example keys (pseudonym prefixes, key at hand, but of public data).

    Only a snapshot feed's keys (public 340B and CMS data) are shown as they are. Of a DMS table every key column
    not marked `keep` is shown as the first characters of its pseudonym (HMAC with the non-PHI zone's key, as that
    zone shows it: enough to find the row there, not the whole pseudonym); without the key only the count. A
    table that is not in the zone may still hold PHI (the consent records, a PHI-only table), and the line goes
    to logs that more people read than the lake.
    """
    phi = not isinstance(table.source, SnapshotTableSource)
    examples: list[str] = []
    if not phi or non_phi is not None:
        rows = (
            plan.where((F.col("_action") == "insert") & F.col("_unknown_key"))
            .select(*[F.col(f"`{k}`").cast("string") for k in table.primary_key])
            .distinct()
            .limit(UNKNOWN_KEY_EXAMPLES)
            .collect()
        )
        for r in rows:
            shown = [
                v
                if not phi or table.phi_columns.get(k) == "keep" or v is None
                else pseudonym_prefix(pseudonym(v, non_phi.key))  # type: ignore[union-attr,arg-type]
                for k, v in zip(table.primary_key, r, strict=True)
            ]
            examples.append("|".join("" if v is None else str(v) for v in shown))
    metrics.unknown_key_examples = sorted(examples)
    log.warning(
        json.dumps(
            {
                "event": "unknown_keys",
                "table": table.name,
                "batch_id": batch_id,
                "rows": metrics.unknown_keys,
                "examples": metrics.unknown_key_examples,
                "pseudonyms": phi,
                "rule": "an update or delete of a key latest does not hold is applied: a U as the key's first "
                "version (counted as inserted), a D as a delete version that keeps a late insert from reviving it",
            }
        )
    )


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _write_quarantine(
    rows: DataFrame, table: TableConfig, paths: TablePaths, batch_id: int, metrics: BatchMetrics
) -> None:
    spark = rows.sparkSession
    reasons = rows.groupBy("_reason").count().collect()
    metrics.quarantine_reasons = {r["_reason"]: int(r["count"]) for r in reasons}
    if "duplicate_sequence" in metrics.quarantine_reasons:
        # A count, never the keys: they may be PHI (patient ids). The quarantine table has the rows.
        keys = rows.where(F.col("_reason") == "duplicate_sequence").select(*table.primary_key).distinct()
        metrics.duplicate_sequence_keys = keys.count()
    source = rows.select(
        F.lit(table.name).alias("table"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.col("_source_file").alias("source_file"),
        F.col("_source_row").alias("source_row"),
        F.col("_reason").alias("reason"),
        F.col("_detail").alias("detail"),
        F.col("_raw").alias("raw"),
    )
    (
        DeltaTable.forPath(spark, paths.quarantine)
        .alias("t")
        .merge(
            source.alias("s"),
            # Snapshot rows have no row number: their raw text tells them apart.
            "t.source_file = s.source_file AND t.source_row <=> s.source_row AND t.reason = s.reason "
            "AND t.raw <=> s.raw",
        )
        .whenNotMatchedInsertAll()
        .execute()
    )
