"""Where a source table's Delta tables live, their schemas, and how they are created.

Only table features Athena and delta-rs read are enabled: no deletion vectors, no column mapping,
no v2 checkpoints. Change data feed (a writer-only feature) is on for the history of tables that ask
for it (`change_feed`: the 340B dimensions, which the PostgreSQL export reads), never on latest,
whose changes are history's: it would add the pre- and post-image of every changed row to each MERGE.
Delta keeps file statistics only for the columns reads filter on (keys, validity, batch id): the MERGEs
prune files by key and "as of" queries by validity, and statistics of every other column would only
cost each write (Parquet's own row-group statistics are still written for all of them).
History is partitioned by `_is_current` (after any configured partition columns): a batch re-closes current
versions and adds new ones, so its MERGE rewrites files of current versions only, and the closed versions,
which grow with every day of a snapshot feed, are written once and never again (a table created before this
layout keeps its own; the MERGE is correct on both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from lakehouse.config import Config, TableConfig
from lakehouse.errors import InputError
from lakehouse.pending import local_path, table_version

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType


# The SCD2 columns the ID304B design names for the snapshot dimensions (and the Postgres export keeps),
# derived from the engine's own validity columns whenever a version is written or re-closed.
OPEN_END = "9999-12-31 23:59:59"
DIMENSION_COLUMNS = {
    "effective_stp": ("TIMESTAMP", "_valid_from"),
    "expiration_stp": ("TIMESTAMP", f"coalesce(_valid_to, TIMESTAMP'{OPEN_END}')"),
    "current_version_flg": ("STRING", "CASE WHEN _is_current THEN 'Y' ELSE 'N' END"),
    "change_type": ("STRING", "CASE _op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' END"),
}

# History's bookkeeping columns, after the business columns, in order.
META_COLUMNS = [
    "_op",
    "_is_deleted",
    "_valid_from",
    "_valid_to",
    "_is_current",
    "_sequence",
    "_change_seq",
    "_source_file",
    "_source_row",
    "_batch_id",
]

# A DMS source with CsvNoSupValue: each version's columns DMS did not supply, which it took from the version before it
# (`apply.history`). Kept after the bookkeeping columns, so a late change can re-fill them.
UNSUPPLIED = "_unsupplied"


# Each version's repeats: the changes after it that changed no tracked value (a no-op update, a delete of a deleted
# key), which made no version of their own. A late change landing before one makes it a version again
# (`apply.history`); their lineage is kept here, sorted by sequence. NULL when the version has none.
REPEATS = "_repeats"
REPEAT_FIELDS = [
    "_sequence",
    "_op",
    "_change_seq",
    "_valid_from",
    "_source_file",
    "_source_row",
    "_batch_id",
    UNSUPPLIED,
]
REPEATS_TYPE = (
    "ARRAY<STRUCT<_sequence: STRING, _op: STRING, _change_seq: STRING, _valid_from: TIMESTAMP, _source_file: STRING, "
    "_source_row: BIGINT, _batch_id: BIGINT, _unsupplied: STRING>>"
)
REPEATS_DDL = f"{REPEATS} {REPEATS_TYPE}"


def keeps_unsupplied(table: TableConfig) -> bool:
    """Whether the table's history has `_unsupplied` (a DMS source with `no_sup_value`)."""
    return getattr(table.source, "no_sup_value", None) is not None


QUARANTINE_DDL = (
    "table STRING, batch_id BIGINT, source_file STRING, source_row BIGINT, reason STRING, detail STRING, raw STRING"
)
# The file ledger of a DMS table: each file content it applied, with the first batch and file that did
# (see `apply.ledger`).
LEDGER_DDL = "content_sha256 STRING, source_file STRING, batch_id BIGINT, rows BIGINT"


@dataclass(frozen=True)
class TablePaths:
    """The storage locations of one source table."""

    history: str
    latest: str
    quarantine: str
    checkpoint: str
    ledger: str


def table_paths(config: Config, table: TableConfig) -> TablePaths:
    """`<lake>/<table>/{history,latest,quarantine,ledger}` and `<checkpoints>/<table>`."""
    lake = config.paths.lake.rstrip("/")
    return TablePaths(
        history=f"{lake}/{table.name}/history",
        latest=f"{lake}/{table.name}/latest",
        quarantine=f"{lake}/{table.name}/quarantine",
        checkpoint=f"{config.paths.checkpoints.rstrip('/')}/{table.name}",
        ledger=f"{lake}/{table.name}/ledger",
    )


def _ddl(columns: dict[str, str]) -> str:
    return ", ".join(f"`{c}` {t}" for c, t in columns.items())


def derived_history_columns(table: TableConfig) -> dict[str, str]:
    """Extra history columns (name -> SQL expression over the plan) a table keeps: the ID304B ones for snapshots."""
    return {name: expr for name, (_, expr) in DIMENSION_COLUMNS.items()} if table.source.kind == "snapshot" else {}


STATS_COLUMNS = "delta.dataSkippingStatsColumns"


def table_properties(*, change_feed: bool, stats_columns: list[str]) -> dict[str, str]:
    """The Delta properties the engine sets on the tables it creates."""
    return {
        "delta.enableChangeDataFeed": "true" if change_feed else "false",
        "delta.enableDeletionVectors": "false",
        STATS_COLUMNS: ",".join(f"`{c}`" for c in stats_columns),
    }


def _key_stats(table: TableConfig) -> list[str]:
    # Delta keeps no statistics of booleans, and partition columns need none.
    return [k for k in table.primary_key if table.columns[k] != "boolean" and k not in table.partition_by]


def history_partitions(table: TableConfig) -> list[str]:
    """History's partition columns: the configured ones, then `_is_current` (current versions apart from closed)."""
    return [*table.partition_by, "_is_current"]


def history_properties(table: TableConfig, *, lineage: bool = True) -> dict[str, str]:
    stats = [*_key_stats(table), "_valid_from", "_valid_to", *(["_batch_id"] if lineage else [])]
    stats += [c for c in derived_history_columns(table) if DIMENSION_COLUMNS[c][0] == "TIMESTAMP"]
    return table_properties(change_feed=table.change_feed, stats_columns=stats)


def latest_properties(table: TableConfig, *, lineage: bool = True) -> dict[str, str]:
    stats = [*_key_stats(table), "_valid_from", *(["_batch_id"] if lineage else [])]
    return table_properties(change_feed=False, stats_columns=stats)


QUARANTINE_PROPERTIES = table_properties(
    change_feed=False, stats_columns=["batch_id", "source_file", "source_row", "reason"]
)


def history_ddl(table: TableConfig) -> str:
    meta = (
        "_op STRING, _is_deleted BOOLEAN, _valid_from TIMESTAMP, _valid_to TIMESTAMP, _is_current BOOLEAN, "
        "_sequence STRING, _change_seq STRING, _source_file STRING, _source_row BIGINT, _batch_id BIGINT"
    )
    derived = {name: DIMENSION_COLUMNS[name][0] for name in derived_history_columns(table)}
    unsupplied = f"{UNSUPPLIED} STRING" if keeps_unsupplied(table) else ""
    return ", ".join(p for p in (_ddl(table.columns), _ddl(derived), meta, unsupplied, REPEATS_DDL) if p)


def latest_ddl(table: TableConfig) -> str:
    meta = (
        "_op STRING, _sequence STRING, _change_seq STRING, _valid_from TIMESTAMP, _source_file STRING, "
        "_source_row BIGINT, _batch_id BIGINT"
    )
    return f"{_ddl(table.columns)}, {meta}"


def schema_of(spark: SparkSession, ddl: str) -> StructType:
    """Parse a DDL column list (works on Spark 3.5 and 4)."""
    return spark.createDataFrame([], ddl).schema


def _as_utc(value: object) -> object:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


# Up to this many rows, `rows_frame` writes them into the plan as literals.
MAX_LITERAL_ROWS = 256


def rows_frame(spark: SparkSession, rows: list[tuple], ddl: str) -> DataFrame:
    """A DataFrame of a few Python `rows` with the columns of `ddl`.

    A few rows (a batch's files, one log entry) become literals of the plan: `createDataFrame` would send them
    through a Python worker, a process and a job stage of their own, for each small write of every batch.
    """
    if not rows or len(rows) > MAX_LITERAL_ROWS:
        # A naive datetime is UTC here; createDataFrame would take it in the machine's time zone.
        utc = [tuple(_as_utc(v) for v in row) for row in rows]
        return spark.createDataFrame(utc, ddl)
    from pyspark.sql import functions as F

    def literal(value: object) -> Column:
        # A naive datetime (UTC here) as text: F.lit would read it in the machine's time zone, not the session's.
        return F.lit(value.isoformat(sep=" ") if isinstance(value, datetime) else value)

    fields = schema_of(spark, ddl).fields
    structs = [
        F.struct(*[literal(value).cast(f.dataType).alias(f.name) for f, value in zip(fields, row, strict=True)])
        for row in rows
    ]
    return spark.range(1).select(F.inline(F.array(*structs)))


def insert_if_empty(rows: DataFrame, path: str, *, refresh: bool = True) -> bool:
    """Append `rows` (what a MERGE's insert clause would write) to the Delta table at `path` if it holds no file, and
    say whether it did; False: the caller MERGEs. A MERGE into a table without files only inserts, after planning a
    join with it: ~1 s against an append's ~0.2 s for a one-row batch, and a first full load is not joined at all.

    Taken only where the append writes what the MERGE would: every column of `rows` is a column of the table, of its
    type, by its exact name (else the MERGE adds a new column, or casts); a table column `rows` lacks is NULL, as in
    the MERGE. A replay after a crash finds the rows in the table and MERGEs. The append carries a Delta app
    transaction (the table's version it found empty), so a second writer appending to the same empty version (one
    whose lease ran out beside the new holder) does not add its rows too: Delta refuses it with a conflict if it began
    before the first committed, and skips it after (its MERGE would have merged its rows into the first's).
    `refresh=False`: the caller's `DeltaTable.forPath` for its MERGE has just read the table's newest version."""
    from pyspark.sql import functions as F

    from lakehouse.delta_log import empty_version

    spark = rows.sparkSession
    version = empty_version(spark, path, refresh=refresh)
    if version is None:
        return False
    schema = spark.read.format("delta").load(path).schema  # the driver's snapshot: no job
    stored = {f.name: f.dataType.simpleString() for f in schema}
    if any(stored.get(f.name) != f.dataType.simpleString() for f in rows.schema):
        return False
    given = set(rows.columns)
    columns = [F.col(f"`{f.name}`") if f.name in given else F.lit(None).cast(f.dataType).alias(f.name) for f in schema]
    (
        rows.select(*columns)
        .write.format("delta")
        .mode("append")
        .option("txnAppId", "lakehouse-insert-if-empty")
        .option("txnVersion", version)
        .save(path)
    )
    return True


def ensure_tables(spark: SparkSession, table: TableConfig, paths: TablePaths) -> None:
    """Create the history, latest and quarantine tables (and a DMS table's file ledger) if they do not exist yet."""
    tables = [
        (paths.history, history_ddl(table), history_partitions(table), history_properties(table)),
        (paths.latest, latest_ddl(table), table.partition_by, latest_properties(table)),
        (paths.quarantine, QUARANTINE_DDL, [], QUARANTINE_PROPERTIES),
    ]
    if table.source.kind == "dms":
        tables.append((paths.ledger, LEDGER_DDL, [], table_properties(change_feed=False, stats_columns=[])))
    # A local history this call creates has every column; any other may be older than one of them.
    created = local_path(paths.history) is not None and table_version(paths.history) is None
    create_tables(spark, tables)
    if not created:
        _add_columns(spark, table, paths)


def create_tables(spark: SparkSession, tables: list[tuple[str, StructType | str, list[str], dict[str, str]]]) -> None:
    """Create the Delta tables (path, schema or DDL column list, partition columns, properties) that do not exist yet,
    side by side: each is a commit and a Spark job of its own (~0.4 s); a new table's first run makes four to six."""
    from delta.tables import DeltaTable

    from lakehouse.spark_threads import run_side_by_side

    def create(path: str, schema: StructType | str, partitions: list[str], properties: dict[str, str]) -> None:
        columns = schema_of(spark, schema) if isinstance(schema, str) else schema
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(columns)
        if partitions:
            builder = builder.partitionedBy(*partitions)
        for key, value in properties.items():
            builder = builder.property(key, value)
        builder.execute()

    # A local table that exists is skipped: createIfNotExists would only load its log.
    missing = [spec for spec in tables if table_version(spec[0]) is None]
    run_side_by_side([partial(create, *spec) for spec in missing])


def _add_columns(spark: SparkSession, table: TableConfig, paths: TablePaths) -> None:
    """Add the columns a stored history or latest lacks: a column added to `columns:` (the source table got one),
    `_unsupplied` (before `no_sup_value` was set, or before it was kept), `_repeats` (before repeats were kept).
    Stored rows have NULL there: a stored version has no value of the new column (its next change gives one), no list
    of unsupplied columns and no repeats. The batch's plan reads the stored versions with every configured column:
    without the column it would fail."""
    business = [f"`{column}` {kind}" for column, kind in table.columns.items()]
    wanted = {
        paths.history: [*business, *([f"{UNSUPPLIED} STRING"] if keeps_unsupplied(table) else []), REPEATS_DDL],
        paths.latest: business,
    }
    for path, columns in wanted.items():
        have = {name.lower() for name in spark.read.format("delta").load(path).columns}
        missing = [ddl for ddl in columns if ddl.split(" ", 1)[0].strip("`").lower() not in have]
        if missing:
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({', '.join(missing)})")


def check_column_types(spark: SparkSession, table: TableConfig, paths: TablePaths) -> None:
    """Refuse a column whose type in `columns:` its existing tables cannot take (a YAML edit, a mapping changed
    between releases: `tinyint(1)` was boolean), naming both types and what to do. Spark would fail the batch's
    union with the stored versions with a message that gives the column's position, not its name. Called where
    that union would fail: a query's first batch (after the consent sync, which needs no business column) and a
    snapshot day's diff (before any write).

    A type the stored one combines with still applies (an `int` column in a `bigint` table)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import StructField, StructType

    wanted = schema_of(spark, _ddl(table.columns))
    for path in (paths.history, paths.latest):
        stored = {f.name.lower(): f.dataType for f in spark.read.format("delta").load(path).schema}
        for field in wanted.fields:
            have = stored.get(field.name.lower())
            if have is None or have == field.dataType:
                continue
            frames = [spark.createDataFrame([], StructType([StructField("c", t)])) for t in (have, field.dataType)]
            try:
                frames[0].unionByName(frames[1])  # analysed at once: no job runs
            except AnalysisException:
                raise InputError(
                    f"table {table.name}: column {field.name} is {have.simpleString()} in its Delta table {path}, "
                    f"but its `columns:` type is {field.dataType.simpleString()}, which Spark cannot combine with "
                    f"it. Write {have.simpleString()} for it in `columns:` to keep the table as it is, or move the "
                    "table's Delta tables and checkpoint aside and apply the landed files again to take the new type."
                ) from None
