"""The privacy log: who was forgotten or re-admitted, by pseudonym only, and when (`<lake>/_privacy/log`).

One Delta table of events, appended to, never rewritten:

- ``forget_started``: a forget's intent, written before anything is deleted (`tables`: each zone table's
  Delta version before it). From then on the patient is blocked from the zone.
- ``forgotten``: the one record of a finished forget (`tables`: rows removed per table, counted from the
  Delta commits of that forget's own deletes; `rows_removed`; `vacuumed`).
- ``readmitted``: the recorded re-admission that lifts the block.

The log's order is the order of its commits, whatever the clocks of the hosts that wrote them (an EMR stream, a
laptop, a Glue job): a patient's last event decides, so a forget that sorted before the readmission committed ahead
of it would leave a forgotten patient in the zone. `append_all` keeps that order in `at` (see there).

It lives in the PHI lake, not in the zone: it links pseudonyms to exact times, and each event keeps the patient's
raw id (`patient_id`), so a patient stays blocked when the masking key changes: events are read under the key in
use (their `patient` is recomputed from `patient_id`). Events recorded before ids were kept carry only the
pseudonym of their key. A zone written by an older version kept its records in `<non_phi_lake>/_privacy/forgotten`,
where the zone's readers could see them: the first read moves them into the log (those patients stay forgotten)
and deletes them there.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from delta.tables import DeltaTable

from lakehouse.apply.non_phi import NonPhiZone
from lakehouse.errors import RetryableError
from lakehouse.maintenance import file_system
from lakehouse.masking import pseudonym
from lakehouse.pending import local_path, table_version
from lakehouse.tables import rows_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

LOG_DDL = (
    "event STRING, patient STRING, forget_id STRING, tables STRING, rows_removed BIGINT, vacuumed BOOLEAN, "
    "at TIMESTAMP, patient_id STRING"
)
BLOCKING = ("forget_started", "forgotten")
APPENDS = "lakehouse-privacy-log"  # the Delta application id of every append (`append_all`)
ATTEMPTS = 20  # appends tried before giving up while others keep committing first
TICK = timedelta(microseconds=1)  # a TIMESTAMP's resolution: the least step after the last event


@dataclass(frozen=True)
class Event:
    """One event of the privacy log."""

    event: str
    patient: str
    at: datetime
    forget_id: str | None = None
    tables: dict[str, int] | None = None
    rows_removed: int | None = None
    vacuumed: bool | None = None
    patient_id: str | None = None  # the raw id (None in events recorded before ids were kept)


def log_path(zone: NonPhiZone) -> str:
    return f"{zone.privacy}/log"


def _legacy_path(zone: NonPhiZone) -> str:
    return f"{zone.root.rstrip('/')}/_privacy/forgotten"


def read_events(spark: SparkSession, zone: NonPhiZone) -> list[Event]:
    """Every event, oldest first (legacy records of an older layout moved in first, as `forgotten` events)."""

    if DeltaTable.isDeltaTable(spark, _legacy_path(zone)):
        _move_legacy(spark, zone)
    events: list[Event] = []
    for row in _log_rows(spark, log_path(zone)):
        tables = json.loads(row.tables) if row.tables else None
        patient_id = row.asDict().get("patient_id")
        patient = row.patient if patient_id is None else pseudonym(patient_id, zone.key)
        values = (row.forget_id, tables, row.rows_removed, row.vacuumed, patient_id)
        events.append(Event(row.event, patient, _utc(row.at), *values))  # type: ignore[arg-type]
    order = {"forget_started": 0, "forgotten": 1, "readmitted": 2}
    return sorted(events, key=lambda e: (e.at, order.get(e.event, 3)))


# The rows of local logs this process read, by the newest commit file they were read at (version, mtime, size): a
# batch, a sync and a forget each read the log several times, and it changes only at a forget or a re-admission.
_ROWS: dict[tuple[str, int, int, int], list[Row]] = {}
_ROWS_LOCK = threading.Lock()


def _log_rows(spark: SparkSession, path: str) -> list[Row]:
    """The log's rows (times as UTC micros), read again only when a local log has a new commit file."""
    stamp = _local_commit(path)
    if stamp is not None:
        with _ROWS_LOCK:
            if stamp in _ROWS:
                return _ROWS[stamp]
    if not DeltaTable.isDeltaTable(spark, path):
        return []
    reader = spark.read.format("delta")
    if stamp is not None:  # the rows of the version listed, whatever was committed since
        reader = reader.option("versionAsOf", stamp[1])
    rows = _with_utc_times(reader.load(path), "at").collect()
    if stamp is not None:
        with _ROWS_LOCK:
            if len(_ROWS) >= 16:
                _ROWS.pop(next(iter(_ROWS)))
            _ROWS[stamp] = rows
    return rows


def _local_commit(path: str) -> tuple[str, int, int, int] | None:
    """The local Delta table's newest commit file as (path, version, mtime, size); None for a remote or no table.

    The file's time and size tell a log put back from a copy and committed to again up to the same version.
    """
    version = table_version(path)
    folder = local_path(path)
    if version is None or folder is None:
        return None
    try:
        stat = (folder / "_delta_log" / f"{version:020d}.json").stat()
    except FileNotFoundError:
        return None
    return path, version, stat.st_mtime_ns, stat.st_size


def _move_legacy(spark: SparkSession, zone: NonPhiZone) -> None:
    """Move the records an older version kept in the zone (`<non_phi_lake>/_privacy/forgotten`: pseudonyms with
    exact times, where the zone's readers could see them) into the log, then delete them there. Rerun after a
    crash between the two, it appends none twice."""
    from pyspark.errors import AnalysisException

    try:
        legacy = _with_utc_times(spark.read.format("delta").load(_legacy_path(zone)), "forgotten_at").collect()
    except AnalysisException:  # another reader (a table beside this one) has just moved it
        return
    logged = set()
    if DeltaTable.isDeltaTable(spark, log_path(zone)):
        log = _with_utc_times(spark.read.format("delta").load(log_path(zone)), "at")
        logged = {(r.patient, r.at) for r in log.collect()}
    moved = [
        Event("forgotten", r.patient, _utc(r.forgotten_at), rows_removed=r.rows_removed, vacuumed=r.vacuumed)
        for r in legacy
        if (r.patient, r.forgotten_at) not in logged
    ]
    if moved:  # their own times kept: a rerun after a crash finds them by them, and appends none twice
        _commit(spark, zone, moved, after_last=False)
    fs, path = file_system(spark, _legacy_path(zone))
    fs.delete(path, True)


def _with_utc_times(frame: DataFrame, column: str) -> DataFrame:
    """`frame` with its TIMESTAMP `column` collected as naive UTC datetimes (as the log writes them): collected as
    it is, PySpark would make it the machine's local time, whose repeated fall-back hour sorts a later event first."""
    from pyspark.sql import functions as F

    utc = F.when(F.col(column).isNotNull(), F.unix_micros(column))
    return frame.withColumn(column, utc)


def _utc(micros: int | None) -> datetime | None:
    return None if micros is None else datetime(1970, 1, 1) + timedelta(microseconds=micros)


def forgotten(events: list[Event]) -> set[str]:
    """The pseudonyms blocked from the zone: their last event is a forget (started or finished)."""
    last: dict[str, str] = {}
    for event in events:
        last[event.patient] = event.event
    return {patient for patient, event in last.items() if event in BLOCKING}


def forgotten_frame(spark: SparkSession, zone: NonPhiZone) -> DataFrame | None:
    """The forgotten pseudonyms as a one-column frame `patient`, or None when there are none."""
    return patients_frame(spark, forgotten(read_events(spark, zone)))


def patients_frame(spark: SparkSession, patients: set[str]) -> DataFrame | None:
    """Pseudonyms as a one-column frame `patient`, or None when there are none."""
    if not patients:
        return None
    return rows_frame(spark, [(p,) for p in sorted(patients)], "patient STRING")


def append(spark: SparkSession, zone: NonPhiZone, event: Event) -> None:
    """Add one event to the log (one Delta commit)."""
    append_all(spark, zone, [event])


def append_all(spark: SparkSession, zone: NonPhiZone, events: list[Event]) -> None:
    """Add events to the log in one Delta commit (none: no commit), each after every event committed before it.

    Each event's `at` is the later of its own (the writer's clock) and one microsecond after the event before it,
    the log's last one read just before the commit: so sorting by `at` gives the commit order even when the clocks
    of the hosts that append disagree. After an event from a clock ahead, the next ones' `at` is that clock's time,
    not their writer's: the log promises order, and an `at` late by a clock's lead is no time the zone shows.

    Two appends that read the log at once must not both commit on what they read: every append is a Delta
    idempotent write of one application id (`APPENDS`) whose version is the log's version read plus one. Delta then
    refuses the second of two racing commits (ConcurrentTransactionException), or skips it when the other's had
    committed before it began; either way it reads the log again and tries once more, so an event committed is
    always after every event committed before it. (Ordering by each row's commit version instead would need Delta's
    row tracking or the log's JSON commits, kept only 30 days; the microsecond step keeps the log a plain table.)
    """
    if events:
        _commit(spark, zone, events, after_last=True)


def _commit(spark: SparkSession, zone: NonPhiZone, events: list[Event], *, after_last: bool) -> None:
    """Append `events` in one commit, retried while another append commits first (`append_all`); `after_last`:
    their `at` moved after the log's last event's."""
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    raced = (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        MetadataChangedException,  # a concurrent append added `patient_id` to an older log's schema
        ProtocolChangedException,  # two first appends created the log at once
    )
    for _ in range(ATTEMPTS):
        version, last = _head(spark, zone)
        stamped = _after(events, last) if after_last else events
        rows = [
            (e.event, e.patient, e.forget_id, json.dumps(e.tables, sort_keys=True) if e.tables is not None else None,
             e.rows_removed, e.vacuumed, e.at, e.patient_id)
            for e in stamped
        ]  # fmt: skip
        tag = uuid.uuid4().hex
        writer = (
            rows_frame(spark, rows, LOG_DDL)
            .write.format("delta")
            .mode("append")
            .option("mergeSchema", "true")  # ids added later
            .option("txnAppId", APPENDS)
            .option("txnVersion", version + 1)
            .option("userMetadata", tag)
        )
        try:
            writer.save(log_path(zone))
        except raced:
            continue
        if _committed(spark, zone, version, tag):
            return
    raise RetryableError(
        f"the privacy log {log_path(zone)} kept changing: {ATTEMPTS} appends in a row found another committed "
        "first. Nothing of this event was recorded; run the command again."
    )


def _head(spark: SparkSession, zone: NonPhiZone) -> tuple[int, datetime | None]:
    """The log's Delta version, then its last event's `at` ((-1, None) before the first event).

    The version is read first: the events read after it are those of that version or of a later one, so `at` is
    after all of that version's, and an append committed since is one the append's own commit finds (`append_all`).
    """
    if not DeltaTable.isDeltaTable(spark, log_path(zone)):
        return -1, None
    version = _version(spark, log_path(zone))
    return version, _utc(max((row.at for row in _log_rows(spark, log_path(zone)) if row.at is not None), default=None))


def _after(events: list[Event], last: datetime | None) -> list[Event]:
    """`events` in their order, each `at` moved, if need be, to one microsecond after the one before."""
    stamped = []
    for event in events:
        if last is not None and event.at <= last:
            event = replace(event, at=last + TICK)
        stamped.append(event)
        last = event.at
    return stamped


def _committed(spark: SparkSession, zone: NonPhiZone, read: int, tag: str) -> bool:
    """Whether a commit after version `read` carries `tag` (Delta skips an idempotent write silently)."""
    newer = _version(spark, log_path(zone)) - read
    if newer <= 0:
        return False
    log = DeltaTable.forPath(spark, log_path(zone))
    commits = log.history(newer).select("version", "userMetadata").collect()
    if min((c[0] for c in commits), default=read + 2) > read + 1:  # appended to in between: read them all
        commits = log.history().select("version", "userMetadata").collect()
    return any(c[0] > read and c[1] == tag for c in commits)


def _version(spark: SparkSession, path: str) -> int:
    """The log's newest version (a local log's from its file names, no Spark)."""
    local = table_version(path)
    if local is not None:
        return local
    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])  # type: ignore[index]


def now() -> datetime:
    """The time an event is recorded (UTC, naive like Spark's TIMESTAMP)."""
    return datetime.now(UTC).replace(tzinfo=None)
