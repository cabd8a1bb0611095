"""Consent changes reach the whole non-PHI zone, not only the keys a batch touches.

A withdrawal must take every version of the patient out of the zone, and a re-grant bring back the
versions from its date on, though no batch of the table may touch them. So before a table's batch
(and before its query starts) the policy in hand is compared with the one the table last applied
(`<lake>/_privacy/consent_applied/<table>`, PHI side: it holds ids and dates); the patients whose
policy rows differ are re-synced: their rows leave the zone's history and latest, and their versions
in the PHI history that the policy and the privacy log admit come back, masked. A table that never
applied a policy, whose zone has an older layout, or whose masking key changed (its pseudonyms would no
longer join, nor could a forget find them), is rebuilt whole the same way.

Every step is idempotent. A sync records its intent before its first write (the patients it is about to re-sync, or
"rebuild", in `<lake>/_privacy/consent_pending/<table>`, with the applied policy's version then) and writes the
applied policy last: its new version ends the intent in the same commit. A crash or a failed write anywhere is
finished by the next sync, which re-syncs the pending patients too (or rebuilds again) even if the policy went back
to the applied one meanwhile: the diff alone would then be empty, and a patient half re-synced for a grant since
deleted would stay in the zone without consent. A forget runs beside a sync (it takes no lease): after its writes a
sync or rebuild reads the privacy log again and deletes the patients forgotten since it first read it
(`remove_forgotten_since`). The check costs nothing while the policy is unchanged (its fingerprint is remembered),
and `zone_is_synced` answers it without Spark for a local lake, so `lakehouse run` starts no query for a table with
nothing new whose zone already follows the stored policy (and has no intent pending).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from lakehouse.apply import privacy_log
from lakehouse.apply.non_phi import (
    ADMIT,
    BUCKET,
    HISTORY_META,
    LATEST_META,
    NonPhiZone,
    history_columns,
    latest_columns,
    pseudonyms,
    zone_properties,
    zone_rows,
    zone_schemas,
)
from lakehouse.config import TableConfig
from lakehouse.delta_log import committed_files, partition_columns
from lakehouse.faults import crash_point
from lakehouse.masking import pseudonym
from lakehouse.pending import local_path, table_version
from lakehouse.policy.build import POLICY_COLUMNS, POLICY_SCHEMA
from lakehouse.policy.snapshot import fingerprint_of
from lakehouse.tables import STATS_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("lakehouse.privacy")

NO_POLICY = "no policy"
# The version of what the zone's columns become from a table's configuration: raise it when `non_phi.to_zone`
# changes a column's name or type, and every zone is rebuilt by its table's next run.
ZONE_LAYOUT = 5  # 3: partitioned by `_key_bucket`; 4: no `_batch_id`, technical dates years when shifting; 5: a
# grant without a date admits nothing (a zone of 4 may hold versions it admitted "since always": rebuilt)


# What a table's pending intent says (the userMetadata of its newest commit): its rows are the patients to re-sync.
RESYNC, REBUILD, DONE = "resync", "rebuild", "done"


def applied_path(zone: NonPhiZone, table: TableConfig) -> str:
    return f"{zone.privacy}/consent_applied/{table.name}"


def pending_path(zone: NonPhiZone, table: TableConfig) -> str:
    return f"{zone.privacy}/consent_pending/{table.name}"


def sync_consent(
    spark: SparkSession,
    table: TableConfig,
    zone: NonPhiZone,
    *,
    phi_history: str,
    policy: DataFrame | None,
    fingerprint: str | None,
    synced: dict[str, str],
) -> str | None:
    """Apply the policy to the table's part of the zone if it changed since the table last did; say what was done.

    The table's zone is rebuilt whole when it never applied a policy, or when its layout or the masking key
    changed (its pseudonyms would no longer join, nor could a forget find them). The patients of an interrupted sync
    (its pending intent) are re-synced too, and an interrupted rebuild is done again. `synced` remembers, per
    table, what this process applied, so an unchanged policy costs nothing.
    """
    zone_id = _zone_id(table, zone)
    stamp = _stamp(fingerprint, zone_id)
    if synced.get(table.name) == stamp:
        return None
    synced.pop(table.name, None)  # a sync that fails below must not pass for done if the policy goes back
    applied = applied_path(zone, table)
    newest = _newest_commit(spark, applied)
    stored = newest.metadata
    intent = _intent(spark, zone, table, applied_version=newest.version)
    pending = intent.kind if intent is not None else None
    done = None
    if stored == stamp and pending is None:
        pass
    elif pending == REBUILD or stored is None or stored.rsplit("|", 1)[-1] != zone_id:
        spark.read.format("delta").load(phi_history)  # brings the driver's snapshot up to the newest version
        empty = committed_files(spark, phi_history) == 0  # from the commit's checksum (no Spark job) where there is one
        if pending == REBUILD or not (empty and _current_layout(spark, table, zone)):  # else a first run
            done = rebuild(spark, table, zone, phi_history=phi_history, policy=policy)  # writes the applied policy
            synced[table.name] = stamp
            return done
    elif policy is not None:
        ids = set(_policy_diff(spark, applied, stored.rsplit("|", 1)[0], policy, fingerprint))
        if pending == RESYNC:  # the patients an interrupted sync was re-syncing, whatever the policy is now
            ids |= {row[0] for row in spark.read.format("delta").load(pending_path(zone, table)).collect()}
        if ids:
            changed = spark.createDataFrame([(i,) for i in sorted(ids)], "patient_id bigint")
            first = functools.partial(
                _record_intent, spark, zone, table, RESYNC, changed, applied_version=newest.version
            )
            wrote = resync_patients(
                spark, table, zone, phi_history=phi_history, policy=policy, patients=changed, before_writing=first
            )
            done = f"consent changes of {len(ids)} patients " + (
                "applied to the non-PHI zone" if wrote else "checked: no row of theirs to change in the non-PHI zone"
            )
    if stored != stamp or pending is not None:  # writing the applied policy ends an intent recorded or found
        _write_applied(spark, zone, table, policy, stamp, legacy_intent=intent is not None and intent.legacy)
    synced[table.name] = stamp
    return done


# The policy diffs this process computed: (fingerprint applied, fingerprint now) → the patients whose rows differ.
# Policies are told by their content, so the tables that applied the same policy share one diff. (A stamp that named a
# policy its table never applied, before fingerprint_of, did not outlive the zone layout 5: every zone was rebuilt.)
_DIFFS: dict[tuple[str, str], frozenset[int]] = {}
_DIFFS_LOCK = threading.Lock()  # tables sync side by side


def _policy_diff(
    spark: SparkSession, applied: str, applied_fingerprint: str, policy: DataFrame, fingerprint: str | None
) -> frozenset[int]:
    """The patients whose policy rows differ between the applied policy (at `applied`) and `policy`."""
    key = (applied_fingerprint, fingerprint) if fingerprint is not None and applied_fingerprint != NO_POLICY else None
    with _DIFFS_LOCK:
        if key is not None and key in _DIFFS:
            return _DIFFS[key]
    current = policy.select(*POLICY_COLUMNS)
    before = spark.read.format("delta").load(applied).select(*POLICY_COLUMNS)
    changed = current.exceptAll(before).unionByName(before.exceptAll(current)).select("patient_id").distinct()
    diff = frozenset(row[0] for row in changed.collect())
    if key is not None:
        with _DIFFS_LOCK:
            if len(_DIFFS) >= 8:
                _DIFFS.pop(next(iter(_DIFFS)))
            _DIFFS[key] = diff
    return diff


def _write_applied(
    spark: SparkSession,
    zone: NonPhiZone,
    table: TableConfig,
    policy: DataFrame | None,
    stamp: str,
    *,
    legacy_intent: bool = False,
) -> None:
    """Store the policy the table's zone now follows: a new version of the applied table ends the intent recorded at
    the version before (`_intent`). An intent of an older engine is cleared by a `DONE` after it."""
    rows = policy.select(*POLICY_COLUMNS) if policy is not None else spark.createDataFrame([], POLICY_SCHEMA)
    rows.write.format("delta").mode("overwrite").option("userMetadata", stamp).save(applied_path(zone, table))
    if legacy_intent:
        _record_intent(spark, zone, table, DONE)


def _record_intent(
    spark: SparkSession,
    zone: NonPhiZone,
    table: TableConfig,
    kind: str,
    patients: DataFrame | None = None,
    *,
    applied_version: int = -1,
) -> None:
    """Write what the table's sync is about to do (`RESYNC` of `patients`, `REBUILD`) while the applied policy is at
    `applied_version` (-1: not written yet). The intent is pending until the applied policy is written again."""
    rows = patients.select("patient_id") if patients is not None else spark.createDataFrame([], "patient_id bigint")
    metadata = kind if kind == DONE else f"{kind}|applied={applied_version}"
    rows.write.format("delta").mode("overwrite").option("userMetadata", metadata).save(pending_path(zone, table))


def record_resync(spark: SparkSession, zone: NonPhiZone, table: TableConfig, patients: DataFrame) -> bool:
    """Record a re-sync of `patients` (raw `patient_id`s) outside a sync (a re-admission) as the table's intent, so
    the table's next sync finishes it if the writer dies; whether the intent is the caller's own to end with a `DONE`
    commit (`end_resync`; a sync's own is ended by the applied policy's new version). A sync's intent pending already
    is kept: its patients are re-synced with these (a rebuild pending re-syncs every patient), and it stays pending
    for the sync that recorded it.

    Call it holding the table's lease: no sync may record or end an intent in between."""
    applied = _newest_commit(spark, applied_path(zone, table))
    pending = _intent(spark, zone, table, applied_version=applied.version)
    if pending is not None and pending.kind == REBUILD:
        return False
    # The sync's patients are the policy's bigint ids: a larger id (a decimal(20) column) has no policy row to sync.
    ids = {row[0] for row in patients.select(F.col("patient_id").cast("bigint")).collect()} - {None}
    if not ids:
        return False
    if pending is not None:
        ids |= {row[0] for row in spark.read.format("delta").load(pending_path(zone, table)).collect()}
    frame = spark.createDataFrame([(i,) for i in sorted(ids, key=str)], "patient_id bigint")
    _record_intent(spark, zone, table, RESYNC, frame, applied_version=applied.version)
    return pending is None


def end_resync(spark: SparkSession, zone: NonPhiZone, table: TableConfig) -> None:
    """End the intent `record_resync` recorded as the caller's own, once its writes (and their
    `remove_forgotten_since`) are done."""
    _record_intent(spark, zone, table, DONE)


@dataclass(frozen=True)
class Intent:
    kind: str  # RESYNC or REBUILD
    legacy: bool  # written by an engine that cleared it with a DONE commit


def _intent(spark: SparkSession | None, zone: NonPhiZone, table: TableConfig, *, applied_version: int) -> Intent | None:
    """What an interrupted sync of the table left to do, None when nothing (or, without `spark`, not a local lake).

    An intent names the applied policy's version when it was recorded: once the applied policy has a newer
    version, the sync that recorded it finished. One of an older engine (no version) is pending until a `DONE`.
    """
    newest = _newest_commit(spark, pending_path(zone, table))
    if newest.metadata is None or newest.metadata == DONE:
        return None
    kind, _, since = newest.metadata.partition("|applied=")
    if not since:
        return Intent(kind, legacy=True)
    return Intent(kind, legacy=False) if int(since) == applied_version else None


@dataclass(frozen=True)
class Commit:
    version: int  # -1: no table there (or, without Spark, not a local one)
    metadata: str | None  # its userMetadata


def _newest_commit(spark: SparkSession | None, path: str) -> Commit:
    """The newest commit of the Delta table at `path`: from the log's files for a local lake, else with `history(1)`
    (without `spark`, none)."""
    folder = local_path(path)
    if folder is not None:
        version = table_version(path)
        if version is None:
            return Commit(-1, None)
        try:
            lines = (folder / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
        except FileNotFoundError:
            return Commit(-1, None)
        infos = [action["commitInfo"] for action in map(json.loads, filter(None, lines)) if "commitInfo" in action]
        return Commit(version, infos[0].get("userMetadata") if infos else None)
    if spark is None:
        return Commit(-1, None)
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return Commit(-1, None)
    row = DeltaTable.forPath(spark, path).history(1).select("version", "userMetadata").first()
    return Commit(int(row[0]), row[1])  # type: ignore[index]


def _stamp(fingerprint: str | None, zone_id: str) -> str:
    return f"{fingerprint or NO_POLICY}|{zone_id}"


def _zone_id(table: TableConfig, zone: NonPhiZone) -> str:
    """Names the zone's layout for `table` and the masking key (by an HMAC of a constant: the key is not recoverable).

    Told from the configuration alone (columns, types, rules, dates option, buckets, `privacy.consented_only` and
    `consent.device_column`; `ZONE_LAYOUT` for the code), so `zone_is_synced` needs no Spark.
    """
    layout = [ZONE_LAYOUT, list(table.columns.items()), sorted(table.phi_columns.items()), str(table.non_phi_dates)]
    layout.append(zone.buckets)
    # Which rows the zone takes: a change here must reach the rows no batch touches (unconsented ones out when the
    # zone turns consented-only, per-device refusals once a device column is named). Appended only when not the
    # default, so the zone of a table with the defaults keeps the id it had before they were named here.
    if not zone.consented_only:
        layout.append(["consented_only", False])
    if table.consent is not None and table.consent.device_column:
        layout.append(["device_column", table.consent.device_column])
    if "birth_year" in table.phi_columns.values():  # its "90 or older" year moves each January: rebuilt then
        # The year of the cap's F.current_date(), the session's UTC one ("utc": a zone stamped with a local year
        # before is rebuilt once, its cap may be a year stale).
        layout.append(["utc", datetime.now(UTC).year])
    text = json.dumps([*layout, HISTORY_META, LATEST_META]) + str(pseudonym("lakehouse non-PHI zone", zone.key))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def zone_is_synced(table: TableConfig, zone: NonPhiZone, fingerprint: str | None) -> bool:
    """Whether the table's zone applied the policy of `fingerprint` with this layout and key (told without Spark).

    False when it cannot tell (a lake not on local disk, no sync yet) or a sync of the table was interrupted (its
    intent is pending): then a sync decides.
    """
    applied = _newest_commit(None, applied_path(zone, table))
    if _intent(None, zone, table, applied_version=applied.version) is not None:
        return False
    return applied.metadata == _stamp(fingerprint, _zone_id(table, zone))


def _current_layout(spark: SparkSession, table: TableConfig, zone: NonPhiZone) -> bool:
    """Whether the zone's tables have the columns, types and partitioning this version of the engine writes."""
    expected = zone_schemas(spark, table, zone)
    for kind, path in (("history", zone.history(table)), ("latest", zone.latest(table))):
        actual = spark.read.format("delta").load(path).schema
        if [(f.name, f.dataType) for f in actual] != [(f.name, f.dataType) for f in expected[kind]]:  # type: ignore[attr-defined]
            return False
        if partition_columns(spark, path) != [BUCKET]:
            return False
    return True


def rebuild(
    spark: SparkSession, table: TableConfig, zone: NonPhiZone, *, phi_history: str, policy: DataFrame | None
) -> str:
    """Write the table's zone history and latest anew from the PHI history (after a layout change or key rotation).

    Its intent is recorded first and the policy it applied stored last (so `privacy sync --rebuild` stamps the zone
    too): one interrupted anywhere is done again by the table's next sync, whatever the policy or layout is then.
    """
    from delta.tables import DeltaTable

    applied = _newest_commit(spark, applied_path(zone, table))
    _record_intent(spark, zone, table, REBUILD, applied_version=applied.version)
    versions = spark.read.format("delta").load(phi_history)
    rows, blocked = _admitted_rows(spark, versions, table, zone, policy)
    # An overwrite keeps the table's properties: statistics columns of an older layout (its `_batch_id`) would
    # name a column the new schema lacks, and Delta refuses the overwrite. They are set to this layout's first.
    for kind in ("history", "latest"):
        path = getattr(zone, kind)(table)
        if DeltaTable.isDeltaTable(spark, path):
            stats = zone_properties(table, kind)[STATS_COLUMNS]
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{STATS_COLUMNS}' = '{stats}')")
    for path, frame in _zone_frames(rows, table, zone):
        writer = frame.repartition(BUCKET).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        writer.partitionBy(BUCKET).save(path)  # one file per bucket, not one per bucket and input partition
        crash_point(table.name, "sync", "after_rebuild_" + path.rsplit("/", 1)[1])
    remove_forgotten_since(spark, table, zone, blocked)
    stamp = _stamp(fingerprint_of(policy) if policy is not None else None, _zone_id(table, zone))
    _write_applied(spark, zone, table, policy, stamp)
    return "non-PHI zone rebuilt from the PHI history"


def resync_patients(
    spark: SparkSession,
    table: TableConfig,
    zone: NonPhiZone,
    *,
    phi_history: str,
    policy: DataFrame | None,
    patients: DataFrame,
    before_writing: Callable[[], None] | None = None,
) -> bool:
    """Replace the zone rows of `patients` (a frame of raw `patient_id`s) by what the policy admits of them now;
    whether anything was written.

    `before_writing` runs before the first write (the sync's intent). Nothing is written, and it does not run, when
    the policy admits no row of them and the zone holds none (a consent delivered before the patient's rows); an
    append of no rows is not made (a withdrawal only deletes).
    """
    if table.consent is None:
        return False
    column = table.consent.patient_column
    rows, blocked = _admitted_rows(spark, _phi_versions(spark, table, phi_history, patients), table, zone, policy)
    resynced = pseudonyms(patients, "patient_id", key=zone.key).localCheckpoint(eager=True)
    frames = [(path, frame, not frame.isEmpty()) for path, frame in _zone_frames(rows, table, zone)]
    appending = any(nonempty for _, _, nonempty in frames)
    if not appending and not _zone_holds(spark, table, zone, resynced):
        return False
    if before_writing is not None:
        before_writing()
    for path, frame, nonempty in frames:
        delete_patients(spark, path, column, resynced)
        crash_point(table.name, "sync", "after_delete_" + path.rsplit("/", 1)[1])
        if nonempty:
            frame.write.format("delta").mode("append").save(path)
            crash_point(table.name, "sync", "after_append_" + path.rsplit("/", 1)[1])
    if appending:
        remove_forgotten_since(spark, table, zone, blocked)
    return True


def _phi_versions(spark: SparkSession, table: TableConfig, phi_history: str, patients: DataFrame) -> DataFrame:
    """The PHI history's versions of `patients` (a frame of raw `patient_id`s)."""
    assert table.consent is not None
    ids = F.broadcast(patients.select(F.col("patient_id").alias("__patient")).distinct())
    on = F.col(f"`{table.consent.patient_column}`") == F.col("__patient")
    return spark.read.format("delta").load(phi_history).join(ids, on, "left_semi")


def _zone_holds(spark: SparkSession, table: TableConfig, zone: NonPhiZone, patients: DataFrame) -> bool:
    """Whether the table's zone history or latest holds a row of `patients` (a frame of pseudonyms `patient`)."""
    assert table.consent is not None
    masked = F.broadcast(patients.select(F.col("patient").alias("__patient")))  # a table may have a `patient` column
    on = F.col(f"`{table.consent.patient_column}`") == F.col("__patient")
    held = [
        spark.read.format("delta").load(path).join(masked, on, "left_semi").select(F.lit(1).alias("n"))
        for path in (zone.history(table), zone.latest(table))
    ]
    return held[0].unionAll(held[1]).count() > 0  # one job (isEmpty takes partitions a few at a time: one job each)


def delete_patients(spark: SparkSession, path: str, column: str, patients: DataFrame) -> None:
    """Delete the rows whose `column` is one of `patients` (a frame of pseudonyms `patient`) from a zone table.

    A MERGE, not a DELETE with the values in its condition: no pseudonym lands in the commit's description.
    """
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(F.broadcast(patients).alias("s"), f"t.`{column}` = s.patient")
        .whenMatchedDelete()
        .execute()
    )


def remove_forgotten_since(spark: SparkSession, table: TableConfig, zone: NonPhiZone, blocked: set[str]) -> None:
    """After a write of the zone: delete the rows of the patients forgotten since the writer read `blocked`.

    Every writer of the zone (a batch's MERGEs, a consent sync's appends, a rebuild's overwrites) reads the privacy
    log, computes its rows without the patients it blocks, then writes. `privacy forget` takes no lease: one that
    began in between (with the older list) may have deleted the patient's rows before the write committed, which then
    wrote them back, and no later writer would remove them (they block the patient, so they never touch its rows).
    Read after the write, the log names such a patient, and its rows go; a forget that begins later deletes what the
    write wrote itself. A crash between the write and this step is left to the writer's rerun, which reads the log
    anew: a batch is replayed, a sync done again (the applied policy is written after it), and a failed
    `privacy sync --rebuild` is run again.
    """
    if table.consent is None:  # a forget deletes from the tables with consent only
        return
    late = privacy_log.forgotten(privacy_log.read_events(spark, zone)) - blocked
    frame = privacy_log.patients_frame(spark, late)
    if frame is None:
        return
    for path in (zone.history(table), zone.latest(table)):
        delete_patients(spark, path, table.consent.patient_column, frame)
    log.info(json.dumps({"event": "forgotten_during_write", "table": table.name, "patients": len(late)}))


def _admitted_rows(
    spark: SparkSession, versions: DataFrame, table: TableConfig, zone: NonPhiZone, policy: DataFrame | None
) -> tuple[DataFrame, set[str]]:
    """The zone rows `versions` admits now, and the forgotten pseudonyms they leave out (`remove_forgotten_since`)."""
    blocked = privacy_log.forgotten(privacy_log.read_events(spark, zone))
    forgotten = privacy_log.patients_frame(spark, blocked)
    rows = zone_rows(versions, table=table, zone=zone, policy=policy, forgotten=forgotten)
    return rows.where(F.col(ADMIT)).drop(ADMIT).localCheckpoint(eager=True), blocked


def _zone_frames(rows: DataFrame, table: TableConfig, zone: NonPhiZone) -> list[tuple[str, DataFrame]]:
    """The zone history and latest rows of `rows`: latest is the current versions that are not deletes."""
    history = rows.select(*[F.col(f"`{c}`") for c in history_columns(table)])
    latest = rows.where(F.col("_is_current") & ~F.col("_is_deleted")).select(
        *[F.col(f"`{c}`") for c in latest_columns(table)]
    )
    return [(zone.history(table), history), (zone.latest(table), latest)]
