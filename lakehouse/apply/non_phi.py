"""The non-PHI zone: what it holds, and the write that keeps it so after every batch (DESIGN rule 5).

What the zone holds, for a table with `consent:` (a function of the PHI zone's history, the current
consent policy and the privacy log, whatever the order events came in):

- a version of a row is there only while its patient is consented: the policy's applicable row (the
  patient's, or the device's, the newest wins) allows, and the version's validity starts on or after
  that row's `policy_date`. A withdrawal therefore takes every version of the patient out, history
  included; a re-grant admits the versions from its date on, never the older ones;
- never a version of a forgotten patient (`privacy forget`), whatever arrives later, until a recorded
  re-admission (`privacy readmit`);
- every column masked by its rule, dates as their year (or shifted per patient when the table asks),
  `_sequence` as a keyed token, no lineage column (no file, row or batch id): no date finer than the year;
- latest is exactly the current, not-deleted versions of the zone's history.

The batch write keeps this for the keys a batch touches: every version in the batch's plan (new ones
and the existing ones it re-closed or kept) is admitted or not by the policy the batch was flagged
with, masked, and merged by (masked key, sequence token): inserted if admitted, deleted if not, updated
if it differs; latest takes each touched key's current version if admitted and not a delete, else loses
the key. A batch replayed after a crash brings the zone to the same state. Consent changes reach
versions no batch touches through `consent_sync`; forget and re-admission through `forget`.

The zone's tables are partitioned by `_key_bucket`, a hash of the (masked) key into `privacy.zone_buckets`
buckets. Its keys are pseudonyms, random in value, so the files' min/max statistics cannot narrow a MERGE
to the batch's keys the way the PHI tables' key ranges do: without the buckets every MERGE read every
key of the zone (a one-row MERGE into 8M zone rows: 5.9 s, 2.7 s with 16 buckets). The batch's buckets
go into the MERGE as a literal, which names no pseudonym (the commit's description keeps the condition).
A batch of k keys reads about 1 - (1 - 1/n)^k of the zone's n buckets, and writes a file into each: the
buckets pay off for batches of fewer keys than buckets (`benchmarks/zone_buckets_bench.py`,
`benchmarks/privacy_bench.py --zone-buckets`).

Its root is separate from the PHI lake (its own bucket on AWS); the privacy log and the consent each
table applied stay in the PHI lake (`<lake>/_privacy`), since they hold ids and exact dates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.apply.keys import key_condition
from lakehouse.config import Config, DateShiftSettings, TableConfig
from lakehouse.masking import DateShift, MaskingKey, mask_columns, masked_column, sequence_tokens
from lakehouse.pending import table_version
from lakehouse.policy.build import FLAG_COL, FLAG_DATE_COL, MISSING_COL, flag_changes
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import create_tables, history_properties, insert_if_empty, latest_properties

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BUCKET = "_key_bucket"  # the zone tables' partition column: a hash of the masked key (see the module's docstring)
# The technical columns of the zone: no commit time, change-seq or file name (they are dates), and no batch id
# (batches are numbered in time: a clock that orders and, with the batch log, dates a patient's changes).
HISTORY_META = ["_op", "_is_deleted", "_valid_from", "_valid_to", "_is_current", "_sequence", BUCKET]
LATEST_META = ["_op", "_valid_from", "_sequence", BUCKET]
ADMIT = "_admit"  # the version belongs in the zone (consented at its validity, not forgotten)
CONFLICT_ATTEMPTS = 5  # a zone write run again after another writer of its Delta table committed first
T = TypeVar("T")


@dataclass(frozen=True)
class NonPhiZone:
    """Where the non-PHI zone is, the key its pseudonyms are made with, and whether it takes consented rows only.

    `privacy` is the PHI lake's folder of the privacy log and of the consent each table applied. `patient_tables`:
    (name, patient column) of each zone table with `consent:`, the tables a forget deletes from (a batch that follows
    a forgotten patient's key move forgets the new id in all of them, see `forget.follow_key_moves`).
    """

    root: str
    key: MaskingKey
    privacy: str
    consented_only: bool = True
    buckets: int = 8
    patient_tables: tuple[tuple[str, str], ...] = ()

    def history(self, table: TableConfig) -> str:
        return self.path(table.name, "history")

    def latest(self, table: TableConfig) -> str:
        return self.path(table.name, "latest")

    def path(self, name: str, kind: str) -> str:
        """The zone's `kind` (history or latest) table of the table called `name`."""
        return f"{self.root.rstrip('/')}/{name}/{kind}"


def non_phi_zone(config: Config) -> NonPhiZone | None:
    """The zone of `config`, with its key loaded; None if no table goes there. No key → ConfigError."""
    if not config.paths.non_phi_lake or not any(t.non_phi for t in config.tables.values()):
        return None
    from lakehouse.secrets import masking_key

    privacy = config.privacy
    key = masking_key(env_var=privacy.key_env_var, secret_id=privacy.key_secret_id, json_field=privacy.key_json_field)
    return NonPhiZone(
        root=config.paths.non_phi_lake,
        key=key,
        privacy=f"{config.paths.lake.rstrip('/')}/_privacy",
        consented_only=privacy.consented_only,
        buckets=privacy.zone_buckets,
        patient_tables=tuple((t.name, t.consent.patient_column) for t in zone_tables(config) if t.consent),
    )


def zone_tables(config: Config) -> list[TableConfig]:
    """The tables that go to the non-PHI zone."""
    return [t for t in config.tables.values() if t.non_phi]


def orphan_zone_tables(config: Config) -> list[str]:
    """The folders of the non-PHI root that hold a Delta table no configured zone table writes (a table renamed,
    removed or made PHI-only): withdrawals, forgets and VACUUM never reach them, so they are named to be deleted.
    Local roots are listed from disk, s3:// roots with S3's listing."""
    from lakehouse.pending import local_path

    root = config.paths.non_phi_lake
    if not root:
        return []
    owned = {t.name for t in zone_tables(config)}
    folder = local_path(root)
    if folder is not None:
        found = {p.parent.parent.name for p in folder.glob("*/*/_delta_log") if p.parent.name in ("history", "latest")}
    else:
        found = _s3_zone_folders(root)
    return sorted(found - owned)


def _s3_zone_folders(root: str) -> set[str]:
    """The table folders under an s3:// root that hold history or latest."""
    from lakehouse.aws import client

    bucket, _, prefix = root.split("://", 1)[1].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    s3 = client("s3")
    found = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(prefix) :].rstrip("/")
            for kind in ("history", "latest"):
                listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{name}/{kind}/_delta_log/", MaxKeys=1)
                if listed.get("KeyCount"):
                    found.add(name)
                    break
    return found


# --- what a version becomes in the zone (pure DataFrame -> DataFrame) --------------------------------------


def admitted(versions: DataFrame, *, table: TableConfig, policy: DataFrame | None, consented_only: bool) -> DataFrame:
    """`versions` flagged again with the current `policy`, plus `_admit`: consented at the version's validity.

    The flags a version got when it was applied are history (the PHI zone keeps them); what decides the
    zone is the policy now. The policy's date is a day: a version valid from that day on is admitted.
    Without a date nothing is: a grant that cannot say from when admits no version (`flag_changes`
    flags it 0 too).
    """
    if table.consent is None:
        return versions.withColumn(ADMIT, F.lit(not consented_only))
    if policy is None:
        raise ValueError(f"table {table.name} is flagged with consent: its zone rows need the policy")
    flagged = flag_changes(
        versions.drop(FLAG_COL, FLAG_DATE_COL),
        policy,
        patient_col=table.consent.patient_column,
        device_col=table.consent.device_column,
    ).drop(MISSING_COL)
    since = F.col(FLAG_DATE_COL).cast("timestamp")
    consented = (F.col(FLAG_COL) == 1) & (F.col("_valid_from") >= since)  # NULL `since`: not consented
    return flagged.withColumn(ADMIT, F.coalesce(consented, F.lit(False)) | F.lit(not consented_only))


def to_zone(rows: DataFrame, *, table: TableConfig, key: MaskingKey) -> DataFrame:
    """The zone's columns of `rows` (history or latest columns, plus `_admit` when present), every one masked."""
    shifting = isinstance(table.non_phi_dates, DateShiftSettings)
    # The technical dates are years even when the table shifts its dates: one commit time (or the policy's date, or
    # the load's 1970-01-01) is shared by many patients, so shifted copies of it would give their offsets away.
    rules: dict[str, str] = {**table.phi_columns, "_valid_from": "year", "_valid_to": "year"}
    if table.consent:
        rules |= {FLAG_COL: "keep", FLAG_DATE_COL: "year"}
    shift = None
    if shifting and table.consent:
        shift = DateShift(table.consent.patient_column, table.non_phi_dates.shift_days)  # type: ignore[union-attr]
    names = [c for c in [*table.columns, *HISTORY_META, ADMIT] if c in rows.columns]
    tokens = sequence_tokens(F.col("_sequence"), table=table.name, key=key)
    selected = rows.select(*[tokens.alias(c) if c == "_sequence" else F.col(f"`{c}`") for c in names])
    return mask_columns(selected, {c: m for c, m in rules.items() if c in names}, key=key, shift=shift)


def with_bucket(rows: DataFrame, *, table: TableConfig, buckets: int) -> DataFrame:
    """`rows` (zone rows: the key masked) with `_key_bucket`, the key's hash in [0, buckets)."""
    key = F.xxhash64(*[F.col(f"`{k}`") for k in table.primary_key])
    return rows.withColumn(BUCKET, F.pmod(key, F.lit(buckets)).cast("int"))


def zone_rows(
    versions: DataFrame,
    *,
    table: TableConfig,
    zone: NonPhiZone,
    policy: DataFrame | None,
    forgotten: DataFrame | None,
) -> DataFrame:
    """`versions` of the PHI history as zone rows with `_admit` (consented at their validity and not forgotten)."""
    rows = to_zone(
        admitted(versions, table=table, policy=policy, consented_only=zone.consented_only), table=table, key=zone.key
    )
    rows = with_bucket(rows, table=table, buckets=zone.buckets)
    if forgotten is None or table.consent is None:
        return rows
    patient = table.consent.patient_column
    blocked = F.broadcast(forgotten.select(F.col("patient").alias("__forgotten")))
    return (
        rows.join(blocked, F.col(f"`{patient}`") == F.col("__forgotten"), "left")
        .withColumn(ADMIT, F.col(ADMIT) & F.col("__forgotten").isNull())
        .drop("__forgotten")
    )


def pseudonyms(ids: DataFrame, column: str, *, key: MaskingKey) -> DataFrame:
    """The distinct pseudonyms of `ids[column]` as a one-column frame `patient`."""
    return ids.select(masked_column(ids, column, "pseudonym", key=key).alias("patient")).distinct()


# --- the tables ----------------------------------------------------------------------------------------------


def history_columns(table: TableConfig) -> list[str]:
    return [*table.columns, *HISTORY_META]


def latest_columns(table: TableConfig) -> list[str]:
    return [*table.columns, *LATEST_META]


def zone_schemas(spark: SparkSession, table: TableConfig, zone: NonPhiZone) -> dict[str, object]:
    """The zone's history and latest schemas for `table` (the masked types: a year is an int)."""
    from lakehouse.tables import history_ddl, schema_of

    empty = spark.createDataFrame([], schema_of(spark, history_ddl(table)))
    masked = to_zone(empty, table=table, key=zone.key)
    history = with_bucket(masked, table=table, buckets=zone.buckets).select(*history_columns(table))
    return {"history": history.schema, "latest": history.select(*latest_columns(table)).schema}


def zone_properties(table: TableConfig, kind: str) -> dict[str, str]:
    """The zone's history or latest table properties (statistics without the PHI zone's lineage columns)."""
    if kind == "history":
        return history_properties(table, lineage=False)
    return latest_properties(table, lineage=False)


def ensure_non_phi_tables(spark: SparkSession, table: TableConfig, zone: NonPhiZone) -> None:
    """Create the zone's history and latest tables, with the masked columns' types, if absent.

    A table of an older layout is left as it is: the consent sync rebuilds it (see `consent_sync`).
    """
    if all(table_version(path) is not None for path in (zone.history(table), zone.latest(table))):
        return  # local tables that exist: createIfNotExists would only load their logs
    schemas = zone_schemas(spark, table, zone)
    create_tables(
        spark,
        [
            (zone.history(table), schemas["history"], [BUCKET], zone_properties(table, "history")),
            (zone.latest(table), schemas["latest"], [BUCKET], zone_properties(table, "latest")),
        ],
    )


# --- the batch write ----------------------------------------------------------------------------------------


def retry_conflicts(write: Callable[[], T]) -> T:
    """`write()` (a MERGE or delete of a zone table), run again when another writer of that Delta table committed first.

    A batch's zone tables have other writers beside it: `privacy forget` (which takes no lease), and the batch of
    another table that follows a forgotten patient's key move (`forget.follow_key_moves`) deletes the new id's rows
    from every zone table while their own batches run. Each zone write is idempotent (rows matched by key and
    sequence token, deletes by pseudonym): run again on the table's new version it converges, and a row of a
    patient forgotten meanwhile that it writes back is removed by the writer's own read of the log after it
    (`consent_sync.remove_forgotten_since`). After `CONFLICT_ATTEMPTS` the conflict is raised (a replay converges).
    """
    from lakehouse.delta_log import conflict_errors

    conflicts = conflict_errors()
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return write()
        except conflicts:
            if attempt == CONFLICT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def write_non_phi(
    plan: DataFrame,
    *,
    table: TableConfig,
    zone: NonPhiZone,
    policy: DataFrame | None,
    forgotten: DataFrame | None,
    dropped: bool = False,
) -> None:
    """Bring the zone's history and latest up to date for every version and key in the batch's `plan`.

    `forgotten`: the pseudonyms of forgotten patients (`privacy_log.patients_frame`), read for every write.
    `dropped`: the plan removes repeats from history (`drop`); they leave the zone too.
    """

    versions = plan.where((F.col("_existing") & (F.col("_action") != "drop")) | (F.col("_action") == "insert"))
    rows = zone_rows(versions, table=table, zone=zone, policy=policy, forgotten=forgotten)
    if dropped:
        repeats = zone_rows(
            plan.where(F.col("_action") == "drop"), table=table, zone=zone, policy=policy, forgotten=None
        )
        rows = rows.unionByName(repeats.withColumn(ADMIT, F.lit(False)))
    rows = rows.localCheckpoint(eager=True)
    on = f"t.{BUCKET} = s.{BUCKET} AND {key_condition(table.primary_key, table.nullable_key)}"
    buckets = sorted(row[0] for row in rows.select(BUCKET).distinct().collect())
    if len(buckets) < zone.buckets:  # a literal on the partition column: the other buckets' files are not read
        on += f" AND t.{BUCKET} IN ({', '.join(map(str, buckets or [-1]))})"
    # Two tables, each MERGE idempotent on its own (a replay converges whichever committed): side by side.
    run_side_by_side(
        [
            lambda: retry_conflicts(lambda: _merge_history(rows, on=on, table=table, zone=zone)),
            lambda: retry_conflicts(lambda: _merge_latest(rows, on=on, table=table, zone=zone)),
        ]
    )


def _changed(columns: list[str]) -> str:
    return " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns)


def _merge_history(rows: DataFrame, *, on: str, table: TableConfig, zone: NonPhiZone) -> None:
    from delta.tables import DeltaTable

    columns = history_columns(table)
    target = DeltaTable.forPath(rows.sparkSession, zone.history(table))  # the newest version: no second log read
    if insert_if_empty(
        rows.where(F.col(ADMIT)).select(*[F.col(f"`{c}`") for c in columns]), zone.history(table), refresh=False
    ):
        return
    on = f"{on} AND t._sequence = s._sequence"
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    (
        target.alias("t")
        .merge(rows.select(*[F.col(f"`{c}`") for c in columns], ADMIT).alias("s"), on)
        .whenMatchedDelete(condition=f"NOT s.{ADMIT}")
        .whenMatchedUpdate(condition=f"s.{ADMIT} AND ({_changed(columns)})", set=values)
        .whenNotMatchedInsert(condition=f"s.{ADMIT}", values=values)
        .execute()
    )


def _merge_latest(rows: DataFrame, *, on: str, table: TableConfig, zone: NonPhiZone) -> None:
    from delta.tables import DeltaTable

    columns = latest_columns(table)
    current = rows.where(F.col("_is_current")).select(
        *[F.col(f"`{c}`") for c in columns], (F.col(ADMIT) & ~F.col("_is_deleted")).alias("_present")
    )
    target = DeltaTable.forPath(rows.sparkSession, zone.latest(table))  # the newest version: no second log read
    if insert_if_empty(
        current.where("_present").select(*[F.col(f"`{c}`") for c in columns]), zone.latest(table), refresh=False
    ):
        return
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    (
        target.alias("t")
        .merge(current.alias("s"), on)
        .whenMatchedDelete(condition="NOT s._present")
        .whenMatchedUpdate(condition=f"s._present AND ({_changed(columns)})", set=values)
        .whenNotMatchedInsert(condition="s._present", values=values)
        .execute()
    )
