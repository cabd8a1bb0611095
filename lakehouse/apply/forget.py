"""Forget a patient in the non-PHI zone, re-admit one, and purge the files older versions still read.

`forget_patient` is atomic from the user's view and resumable after a crash at any point:
1. an intent (`forget_started`, with each table's Delta version before it) goes to the privacy log;
   from then on every write of the zone leaves the patient out;
2. the patient's rows are deleted table by table, each delete a Delta commit tagged with the forget's id;
3. one record (`forgotten`) says how many rows each table lost, summed from the metrics of the tagged
   commits: a rerun after a crash finishes the same forget and counts each delete once.
A forgotten patient stays out whatever arrives later (updates, late data, a consent re-grant, replays)
until `readmit_patient` records a re-admission; the consent rules then decide again what of them the
zone holds (`consent_sync`). A forget takes no lease (every writer of the zone reads the log again after
its writes); a re-admission holds the leases of the tables it rewrites, as it restores rows.

The deletes rewrite the files (deletion vectors are off, so rows are not merely hidden); the files
before them stay readable by Delta time travel until VACUUM removes them, which it does only for files
older than the tables' retention (`delta.deletedFileRetentionDuration`, 7 days by default).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from lakehouse.apply import privacy_log
from lakehouse.apply.consent_sync import delete_patients, end_resync, record_resync, resync_patients
from lakehouse.apply.non_phi import NonPhiZone, retry_conflicts, zone_tables
from lakehouse.apply.privacy_log import Event
from lakehouse.config import Config, TableConfig
from lakehouse.errors import InputError
from lakehouse.faults import crash_point
from lakehouse.masking import pseudonym, pseudonym_prefix
from lakehouse.ownership import UnitBusyError, check_held, hold
from lakehouse.pending import table_version
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import table_paths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("lakehouse.privacy")

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
DEFAULT_RETENTION_HOURS = 168.0


@dataclass
class Forgotten:
    """What `forget_patient` removed (the record of the forget)."""

    patient: str  # the pseudonym
    rows: dict[str, int] = field(default_factory=dict)
    vacuumed: bool = False
    resumed: bool = False  # an interrupted forget was finished
    already: bool = False  # the patient was forgotten before: nothing was done
    known: bool = True  # the PHI history holds rows of the patient (else: a mistyped id, or one not arrived yet)


Target = tuple[str, str, str]  # (`<table>.<history|latest>`, its patient column, its path) of a zone table


def _targets(config: Config, zone: NonPhiZone) -> list[Target]:
    """Every zone table a patient's rows can be in."""
    tables = [(t.name, t.consent.patient_column) for t in zone_tables(config) if t.consent is not None]
    return _paths_of(zone, tables)


def _paths_of(zone: NonPhiZone, tables: list[tuple[str, str]]) -> list[Target]:
    return [
        (f"{name}.{kind}", column, zone.path(name, kind)) for name, column in tables for kind in ("history", "latest")
    ]


def forget_patient(
    spark: SparkSession,
    config: Config,
    zone: NonPhiZone,
    patient_id: str,
    *,
    vacuum_hours: float | None = None,
    option: str = "--vacuum-hours",
) -> Forgotten:
    """Delete every row of `patient_id` from the zone, record it once by pseudonym; optionally VACUUM.

    `option` is how the caller spells `vacuum_hours` in a refusal (the Glue job's `--vacuum_hours`).
    """
    from delta.tables import DeltaTable

    targets = [(n, c, p) for n, c, p in _targets(config, zone) if DeltaTable.isDeltaTable(spark, p)]
    if vacuum_hours is not None:
        check_vacuum_hours(spark, [p for _, _, p in targets], vacuum_hours, option=option)
    patient_id = patient_key(spark, config, patient_id)
    patient = pseudonym(patient_id, zone.key)
    assert patient is not None
    known = _in_phi_history(spark, config, patient_id)
    events = [e for e in privacy_log.read_events(spark, zone) if e.patient == patient]
    finished = {e.forget_id for e in events if e.event == "forgotten"}
    started = {e.forget_id: e for e in events if e.event == "forget_started" and e.forget_id not in finished}
    if not started and patient in privacy_log.forgotten(events):
        if all(e.patient_id is None for e in events):  # recorded before ids were kept: keep it now (key rotation)
            privacy_log.append(spark, zone, Event("forgotten", patient, privacy_log.now(), patient_id=patient_id))
        found = _delete_again(spark, targets, patient)
        if vacuum_hours is not None:
            vacuum(spark, [p for _, _, p in targets], vacuum_hours, option=option)
        return Forgotten(patient=patient, rows=found, already=True, vacuumed=vacuum_hours is not None, known=known)
    if started:
        intent, resumed = next(iter(started.values())), True
    else:
        versions = {name: _version(spark, path) for name, _, path in targets}
        intent = Event("forget_started", patient, privacy_log.now(), uuid.uuid4().hex, versions, patient_id=patient_id)
        privacy_log.append(spark, zone, intent)
        resumed = False
    crash_point("privacy", "forget", "after_intent")
    rows = _delete_and_record(spark, zone, targets, intent, vacuum_hours=vacuum_hours, option=option)
    log.info(
        json.dumps({"event": "patient_forgotten", "patient": pseudonym_prefix(patient), "rows": sum(rows.values())})
    )
    return Forgotten(patient=patient, rows=rows, vacuumed=vacuum_hours is not None, resumed=resumed, known=known)


def _delete_and_record(
    spark: SparkSession,
    zone: NonPhiZone,
    targets: list[Target],
    intent: Event,
    *,
    vacuum_hours: float | None = None,
    option: str = "--vacuum-hours",
) -> dict[str, int]:
    """Steps 2 and 3 of a forget whose `intent` is in the log: the deletes (tagged with its id), an optional VACUUM,
    the record; {table: rows removed}."""
    patient = intent.patient
    blocked = spark.createDataFrame([(patient,)], "patient STRING")

    def delete_from(table: list[Target]) -> None:
        for name, column, path in table:
            retry_conflicts(lambda path=path, column=column: delete_patients(spark, path, column, blocked))
            crash_point("privacy", "forget", f"after_{name}")

    tables: dict[str, list[Target]] = {}
    for target in targets:
        tables.setdefault(target[0].rsplit(".", 1)[0], []).append(target)  # "<table>.history", "<table>.latest"
    with _tagged(spark, intent.forget_id):  # type: ignore[arg-type]
        run_side_by_side([functools.partial(delete_from, table) for table in tables.values()])  # tables side by side
    rows = {name: _rows_deleted(spark, path, intent, name) for name, _, path in targets}
    if vacuum_hours is not None:
        vacuum(spark, [p for _, _, p in targets], vacuum_hours, option=option)
    record = Event(
        "forgotten",
        patient,
        privacy_log.now(),
        intent.forget_id,
        rows,
        sum(rows.values()),
        vacuum_hours is not None,
        intent.patient_id,
    )
    privacy_log.append(spark, zone, record)
    if _readmitted_during(spark, zone, patient, intent.forget_id):  # type: ignore[arg-type]
        # The patient was not blocked between the re-admission and this record: what a writer restored after the
        # deletes above stays unless deleted now (the record blocks every write from here on).
        _delete_again(spark, targets, patient)
    return rows


def _readmitted_during(spark: SparkSession, zone: NonPhiZone, patient: str, forget_id: str) -> bool:
    """Whether a re-admission of `patient` was recorded between the intent and the record of forget `forget_id`."""
    events = [(e.event, e.forget_id) for e in privacy_log.read_events(spark, zone) if e.patient == patient]
    if ("forget_started", forget_id) not in events or ("forgotten", forget_id) not in events:
        return False
    between = events[events.index(("forget_started", forget_id)) + 1 : events.index(("forgotten", forget_id))]
    return ("readmitted", None) in between


def _delete_again(spark: SparkSession, targets: list[Target], patient: str) -> dict[str, int]:
    """A forget run again is a repair too: rows of the forgotten patient found in the zone (written back by a writer
    that did not see the forget, a restore of the zone's files) are deleted; {table: rows found}, no new record."""
    blocked = spark.createDataFrame([(patient,)], "patient STRING")
    found = {}
    for name, column, path in targets:
        rows = spark.read.format("delta").load(path).where(F.col(f"`{column}`") == patient).count()
        if rows:
            retry_conflicts(lambda path=path, column=column: delete_patients(spark, path, column, blocked))
            found[name] = rows
    if found:
        log.warning(
            json.dumps({"event": "forgotten_rows_found_again", "patient": pseudonym_prefix(patient), "rows": found})
        )
    return found


def follow_key_moves(changes: DataFrame, *, table: TableConfig, zone: NonPhiZone, batch_id: int) -> list[str]:
    """Forget the new id of every forgotten patient whose id the batch's `changes` move; the new ids' pseudonyms.

    A source that renumbers a patient (DMS: a `U` whose before-image key is the old id, `split_key_changes`) deletes
    the old key and inserts the new one, and its cascade moves the consents, devices and sessions to the new id:
    unfollowed, the zone would admit a forgotten patient again under the new id's pseudonym. So for a table whose
    primary key holds its consent patient column, each move from a forgotten id is a forget of the new id, recorded
    in the privacy log as `privacy forget` records one (intent, deletes from every zone table with consent, record;
    the raw id kept), before the batch's zone write: every later write of every table blocks it, and rows of it that
    a writer admitted before (the cascade's consents and devices may arrive first) are deleted. Moves within one
    batch are followed in a chain (A → B → C forgets B and C).

    Each follow's id is derived from the change (table, pseudonyms, sequence): a replayed batch finishes a follow a
    crash interrupted and records none twice, and never forgets again a new id re-admitted since (`privacy readmit`
    of the new id lifts it; a re-admission of the old id lifts the old id's own forget only).
    """
    consent = table.consent
    prefix = getattr(table.source, "before_image_prefix", None)
    if consent is None or not prefix or consent.patient_column not in table.primary_key:
        return []
    new, old = consent.patient_column, f"{prefix}{consent.patient_column}"
    if old not in changes.columns or "_key_moved" not in changes.columns:
        return []
    moved = F.col("_key_moved") & F.col(f"`{old}`").isNotNull() & ~F.col(f"`{old}`").eqNullSafe(F.col(f"`{new}`"))
    pairs = [
        (r[0], r[1], r[2])
        for r in changes.where(moved & F.col(f"`{new}`").isNotNull())
        .select(F.col(f"`{old}`").cast("string"), F.col(f"`{new}`").cast("string"), F.col("_sequence"))
        .distinct()
        .collect()
    ]
    if not pairs:
        return []
    # A session of its own: a forget tags its Delta commits through the session's conf (`_tagged`), and the batches
    # of other tables commit beside this one through the batch's session.
    spark = changes.sparkSession.newSession()
    events = privacy_log.read_events(spark, zone)
    blocked = privacy_log.forgotten(events)
    if not any(pseudonym(o, zone.key) in blocked for o, _, _ in pairs):
        return []
    from delta.tables import DeltaTable

    tables = list(zone.patient_tables) or [(table.name, new)]
    targets = [t for t in _paths_of(zone, tables) if DeltaTable.isDeltaTable(spark, t[2])]
    followed: list[str] = []
    todo = sorted(pairs, key=lambda p: p[2])
    while True:  # a chain A → B → C within the batch: B is blocked once its move is followed
        ready = [p for p in todo if pseudonym(p[0], zone.key) in blocked]
        if not ready:
            return followed
        for old_id, new_id, sequence in ready:
            todo.remove((old_id, new_id, sequence))
            before, after = pseudonym(old_id, zone.key), pseudonym(new_id, zone.key)
            assert before is not None and after is not None
            forget_id = uuid.uuid5(uuid.NAMESPACE_URL, f"lakehouse:key-move:{table.name}:{before}:{after}:{sequence}")
            rows = _follow(spark, zone, targets, after, new_id, forget_id.hex, events)
            if rows is None:  # followed before and re-admitted since, or forgotten on its own: nothing to do
                blocked |= privacy_log.forgotten([e for e in events if e.patient == after])
                continue
            blocked.add(after)
            followed.append(after)
            events = privacy_log.read_events(spark, zone)
            log.warning(
                json.dumps(
                    {
                        "event": "forget_followed_key_move",
                        "table": table.name,
                        "batch_id": batch_id,
                        "moved_from": pseudonym_prefix(before),
                        "patient": pseudonym_prefix(after),
                        "rows": sum(rows.values()),
                        "note": "a forgotten patient's id was changed at the source: the new id is forgotten too "
                        "(`lakehouse privacy readmit` with the new id lifts it)",
                    }
                )
            )


def _follow(
    spark: SparkSession,
    zone: NonPhiZone,
    targets: list[Target],
    patient: str,
    patient_id: str,
    forget_id: str,
    events: list[Event],
) -> dict[str, int] | None:
    """Forget `patient` (the new id of a key move) with the id `forget_id`: {table: rows removed}, or None when there
    is nothing to do (the forget `forget_id` was recorded before, or `patient` is forgotten already)."""
    mine = [e for e in events if e.patient == patient]
    started = [e for e in mine if e.forget_id == forget_id and e.event == "forget_started"]
    if any(e.forget_id == forget_id and e.event == "forgotten" for e in mine):
        return None
    if started:  # interrupted: finished while the patient is still blocked by it, not after a re-admission
        if patient not in privacy_log.forgotten(mine):
            return None
        intent = started[0]
    elif patient in privacy_log.forgotten(mine):
        return None
    else:
        versions = {name: _version(spark, path) for name, _, path in targets}
        intent = Event("forget_started", patient, privacy_log.now(), forget_id, versions, patient_id=patient_id)
        privacy_log.append(spark, zone, intent)
    return _delete_and_record(spark, zone, targets, intent)


def patient_key(spark: SparkSession, config: Config, patient_id: str) -> str:
    """`patient_id` as the zone hashes it: cast to the patient column's type and back to text (` 42` → `42` for
    a bigint column), so a forget finds the patient's rows; InputError when it is not a value of that type."""
    tables = [t for t in zone_tables(config) if t.consent is not None]
    if not tables:
        return patient_id
    table = tables[0]
    column = table.consent.patient_column  # type: ignore[union-attr]
    column_type = table.columns[column]
    value = (
        spark.createDataFrame([(patient_id,)], "patient_id STRING")
        .select(F.expr(f"try_cast(patient_id AS {column_type})").cast("string"))  # '4.2' is no bigint, never 4
        .first()[0]  # type: ignore[index]
    )
    if value is None:
        raise InputError(
            f"the patient id given is not a {column_type} (the type of {table.name}.{column}): nothing was done. "
            "Pass the id as the source database writes it."  # not the id itself: the message may reach CloudWatch
        )
    return value


def _in_phi_history(spark: SparkSession, config: Config, patient_id: str) -> bool:
    """Whether any PHI history of a table with consent holds a row of the patient."""
    from delta.tables import DeltaTable

    for table in zone_tables(config):
        history = table_paths(config, table).history
        if table.consent is None or not DeltaTable.isDeltaTable(spark, history):
            continue
        column = F.col(f"`{table.consent.patient_column}`").cast("string")
        if not spark.read.format("delta").load(history).where(column == patient_id).isEmpty():
            return True
    return False


@dataclass
class Readmitted:
    """What `readmit_patient` did."""

    patient: str  # the pseudonym
    recorded: bool  # the patient was forgotten, and the re-admission is recorded (else nothing was recorded)
    forgotten_again: bool = False  # a forget recorded while it ran is the later event: the patient stays out


def readmit_patient(
    spark: SparkSession, config: Config, zone: NonPhiZone, patient_id: str, policy: DataFrame | None
) -> Readmitted:
    """Lift a forget: record the re-admission, then restore what the consent policy admits of the patient.

    It holds the leases of every write unit with a table it rewrites (`readmission_leases`): a batch or a consent
    sync beside it could delete what it restores (it read the log while the patient was still blocked) or write the
    patient's versions a second time. After its writes it reads the log again: a forget recorded meanwhile (forget
    takes no lease) comes after the re-admission, and the writes' own re-reads leave the patient out
    (`forgotten_again`).

    Each table's re-sync is its sync intent until done: killed once the re-admission is recorded, the tables' next
    runs finish it (killed before, nothing is recorded: run it again). When the patient was not forgotten nothing is
    recorded in the log; the rows are re-synced all the same.
    """
    patient_id = patient_key(spark, config, patient_id)
    patient = pseudonym(patient_id, zone.key)
    assert patient is not None
    tables = [table for table in zone_tables(config) if table.consent is not None]
    with readmission_leases(config):
        # Each table's re-sync is recorded as its sync intent first: a re-admission killed once recorded is finished
        # by each table's next run, under the log as it is then (a forget begun meanwhile may have deleted the rows
        # before they were restored, and be the later event).
        ids = {table.name: _patient_ids(spark, table, patient_id) for table in tables}
        _check_leases(config)
        owned = [table for table in tables if record_resync(spark, zone, table, ids[table.name])]
        recorded = patient in privacy_log.forgotten(privacy_log.read_events(spark, zone))
        if recorded:
            privacy_log.append(spark, zone, Event("readmitted", patient, privacy_log.now(), patient_id=patient_id))
        for table in tables:
            history = table_paths(config, table).history
            resync_patients(spark, table, zone, phi_history=history, policy=policy, patients=ids[table.name])
        _check_leases(config)  # a lease lost meanwhile: its taker may have recorded an intent of its own
        for table in owned:  # a sync's intent found pending stays for that sync (it holds this patient too)
            end_resync(spark, zone, table)
        again = patient in privacy_log.forgotten(privacy_log.read_events(spark, zone))
    event = "patient_forgotten_during_readmission" if again else "patient_readmitted"
    log.info(json.dumps({"event": event, "patient": pseudonym_prefix(patient), "recorded": recorded}))
    return Readmitted(patient=patient, recorded=recorded, forgotten_again=again)


def _check_leases(config: Config) -> None:
    """LeaseLostError when a lease of `readmission_units` was lost (DynamoDB unreachable too long)."""
    for unit in readmission_units(config):
        check_held(config, unit)


def _patient_ids(spark: SparkSession, table: TableConfig, patient_id: str) -> DataFrame:
    """`patient_id` as a one-row frame `patient_id` of the type of the table's consent patient column."""
    assert table.consent is not None
    column_type = table.columns[table.consent.patient_column]
    return spark.createDataFrame([(patient_id,)], "patient_id STRING").select(
        F.col("patient_id").cast(column_type).alias("patient_id")
    )


def readmission_units(config: Config) -> list[str]:
    """The write units a re-admission rewrites tables of: those of the zone's tables with consent."""
    tables = {t.name for t in zone_tables(config) if t.consent is not None}
    return [unit for unit, members in config.write_units().items() if tables & set(members)]


@contextmanager
def readmission_leases(config: Config) -> Iterator[None]:
    """Hold `readmission_units`' leases (re-entrant); held by another job: UnitBusyError saying what to do."""
    with ExitStack() as stack:
        try:
            stack.enter_context(hold(config, readmission_units(config), job="lakehouse privacy readmit"))
        except UnitBusyError as exc:
            busy = str(exc).split(": one writer per table")[0]  # the unit, its holder and since when
            raise UnitBusyError(
                f"cannot re-admit the patient now: {busy}. Nothing was recorded: the patient stays forgotten. A "
                "re-admission rewrites the patient's rows in the tables of that unit, and a writer beside it could "
                "delete them again or write them twice. Run `lakehouse privacy readmit` again when that job has "
                "finished; a stream holds its tables for as long as it runs: stop it, re-admit, then start it again."
            ) from None
        yield


class _tagged:
    """Tag the Delta commits made inside it with `tag` (their commitInfo.userMetadata)."""

    def __init__(self, spark: SparkSession, tag: str) -> None:
        self.spark, self.tag = spark, tag

    def __enter__(self) -> None:
        self.spark.conf.set(USER_METADATA, self.tag)

    def __exit__(self, *exc: object) -> None:
        self.spark.conf.unset(USER_METADATA)


def _version(spark: SparkSession, path: str) -> int:
    """The newest version of the Delta table at `path` (a local table's from its log's file names, no Spark)."""
    from delta.tables import DeltaTable

    local = table_version(path)
    if local is not None:
        return local
    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])  # type: ignore[index]


def _rows_deleted(spark: SparkSession, path: str, intent: Event, name: str) -> int:
    """Rows deleted by the commits of this forget after the version the intent saw (each commit once)."""
    from delta.tables import DeltaTable

    since = (intent.tables or {}).get(name, -1)
    newer = _version(spark, path) - since  # the commits since the intent only, not the table's whole history
    if newer <= 0:
        return 0
    table = DeltaTable.forPath(spark, path)
    commits = table.history(newer).select("version", "userMetadata", "operationMetrics").collect()
    if min((c["version"] for c in commits), default=since + 2) > since + 1:  # committed to in between: all of it
        commits = table.history().select("version", "userMetadata", "operationMetrics").collect()
    total = 0
    for commit in commits:
        if commit["version"] > since and commit["userMetadata"] == intent.forget_id:
            metrics = commit["operationMetrics"] or {}
            total += int(metrics.get("numTargetRowsDeleted", metrics.get("numDeletedRows", 0)))
    return total


# --- physical purge -----------------------------------------------------------------------------------------


def _retention_hours(spark: SparkSession, path: str) -> float:
    """The table's `delta.deletedFileRetentionDuration` in hours (7 days when not set)."""
    from delta.tables import DeltaTable

    properties = DeltaTable.forPath(spark, path).detail().select("properties").first()[0] or {}  # type: ignore[index]
    text = str(properties.get("delta.deletedFileRetentionDuration", "")).lower()
    match = re.fullmatch(r"(?:interval\s+)?(\d+)\s*(week|day|hour|minute|second)s?", text.strip())
    if not match:
        return DEFAULT_RETENTION_HOURS
    per_hour = {"week": 168, "day": 24, "hour": 1, "minute": 1 / 60, "second": 1 / 3600}
    return int(match.group(1)) * per_hour[match.group(2)]


def check_vacuum_hours(spark: SparkSession, paths: list[str], hours: float, *, option: str = "--vacuum-hours") -> None:
    """Refuse, before anything is done, a VACUUM that Delta's retention check would refuse half-way (`option`: the
    command's name for `hours`, as the message tells the user what to pass)."""
    if hours < 0:
        raise InputError(f"{option} must be 0 or more, got {hours:g}")
    if spark.conf.get(RETENTION_CHECK, "true").lower() == "false" or not paths:
        return
    retention = max(_retention_hours(spark, p) for p in paths)
    if hours < retention:
        raise InputError(
            f"{option} {hours:g} is below the non-PHI tables' retention of {retention:g} hours, so Delta "
            "would refuse the VACUUM: files younger than that may still be read by a query or a writer that "
            f"started on an older version. Nothing was done. Either pass {option} {retention:g} or more "
            "(it removes the files replaced more than that long ago: run `lakehouse privacy vacuum` again once "
            f"{retention:g} hours have passed to purge this forget's), or, to purge the files now while nothing "
            f'else reads or writes the non-PHI zone, set `{RETENTION_CHECK}: "false"` under spark.conf in the '
            "configuration and rerun."
        )


def vacuum(spark: SparkSession, paths: list[str], hours: float, *, option: str = "--vacuum-hours") -> None:
    """VACUUM each table: remove the files no version younger than `hours` reads (after `check_vacuum_hours`)."""
    from delta.tables import DeltaTable

    check_vacuum_hours(spark, paths, hours, option=option)
    for path in paths:
        DeltaTable.forPath(spark, path).vacuum(hours)
