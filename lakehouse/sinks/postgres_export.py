"""Export dimension history tables to PostgreSQL from the Delta change data feed, exactly once.

Per table: the last exported Delta version is read from the bookkeeping table; the history rows
inserted or re-closed since then (the change feed's inserts and update post-images, the newest per
version of a key) are bulk-upserted, and the new version is recorded in the same PostgreSQL
transaction. A crash anywhere leaves PostgreSQL at the last committed version, and a rerun exports
from there: the rows converge to those of a clean run. The first export of a table is a full load.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.config import Config, PostgresTarget
from lakehouse.errors import ConfigError, InputError, LakehouseError
from lakehouse.tables import table_paths

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from lakehouse.sinks.postgres import PostgresSettings

log = logging.getLogger("lakehouse.export")

# A change-feed version older than the table's log retention is gone; the export then reloads in full. Delta says so
# in several ways: a commit cleaned from the log (the state at the first version wanted cannot be rebuilt), a change
# file vacuumed, a version not there.
_CDF_GONE = (
    "VersionNotFound",
    "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
    "DELTA_TRUNCATED_TRANSACTION_LOG",
    "Could not find any delta files",
    "Unable to reconstruct state",
    "not available",
    "does not exist",
)


@dataclass
class ExportResult:
    """What the export did for one table."""

    table: str
    from_version: int | None
    to_version: int | None
    rows: int = 0
    mode: str = "skipped"  # full | incremental | up_to_date | skipped
    seconds: float = 0.0


@functools.cache
def local_copy_of(uri: str) -> str:
    """A local file holding the S3 object `uri` (libpq reads sslrootcert from a path): the CA bundle the deploy
    uploads next to the configuration, so Glue and EMR jobs need no file installed on their machines."""
    from urllib.parse import urlparse

    from lakehouse.aws import client

    parsed = urlparse(uri)
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-ca-"))
    target = folder / Path(parsed.path).name
    try:
        client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
    except Exception as exc:
        raise ConfigError(
            f"postgres.sslrootcert {uri} could not be read ({exc}): `make deploy-artifacts` uploads the RDS CA bundle "
            "there; the job's role needs s3:GetObject on it"
        ) from None
    return str(target)


def settings_for(target: PostgresTarget) -> PostgresSettings:
    """Connection settings from the environment or Secrets Manager, with the YAML's schema and TLS options."""
    from lakehouse.sinks.postgres import PostgresSettings

    overrides = {"schema": target.db_schema}
    overrides |= {k: v for k in ("sslmode", "sslrootcert") if (v := getattr(target, k))}
    if str(overrides.get("sslrootcert", "")).startswith(("s3://", "s3a://")):
        overrides["sslrootcert"] = local_copy_of(overrides["sslrootcert"])
    if target.credentials == "secret":
        from lakehouse.aws import client

        return PostgresSettings.from_secret(target.secret_id, client=client("secretsmanager"), **overrides)
    return replace(PostgresSettings.from_env(target.env_prefix), **overrides)


def export_columns(spark: SparkSession, history: str, table: str) -> list[str]:
    """The history columns PostgreSQL keeps: every column of the dimension's DDL that history has."""
    from lakehouse.sinks.postgres import pg_columns

    present = set(spark.read.format("delta").load(history).columns)
    return [c for c in pg_columns(table) if c in present]


def changed_rows(
    spark: SparkSession, history: str, *, key: list[str], columns: list[str], since: int | None, until: int
) -> tuple[DataFrame, str]:
    """History rows written after version `since` up to `until` (all rows at `until` when `since` is None)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    full = spark.read.format("delta").option("versionAsOf", until).load(history).select(*columns)
    if since is None:
        return full, "full"
    newest = Window.partitionBy(*[F.col(f"`{k}`") for k in [*key, "_sequence"]]).orderBy(
        F.col("_commit_version").desc()
    )
    try:
        # The state at the first version wanted is rebuilt when the feed is made (its commits may be cleaned from the
        # log), and its files are resolved by the first row: fail here, not inside the transaction.
        feed = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", since + 1)
            .option("endingVersion", until)
            .load(history)
            .where(F.col("_change_type").isin("insert", "update_postimage"))
        )
        rows = feed.withColumn("_n", F.row_number().over(newest)).where("_n = 1").select(*columns)
        rows.limit(1).collect()
    except Exception as exc:
        if not any(marker in str(exc) for marker in _CDF_GONE):
            raise
        log.warning("change feed of %s since version %s is gone (log retention); exporting in full", history, since)
        return full, "full"
    return rows, "incremental"


def to_arrow(rows: DataFrame) -> list[pa.RecordBatch]:
    """Collect a DataFrame as Arrow batches (no Python row objects)."""
    if hasattr(rows, "toArrow"):  # Spark 4
        return rows.toArrow().to_batches()
    return rows._collect_as_arrow()  # Spark 3.5: the Arrow path toPandas uses


def export_postgres(
    spark: SparkSession,
    config: Config,
    *,
    settings: PostgresSettings | None = None,
    crash_hook: Callable[[], None] | None = None,
) -> list[ExportResult]:
    """Export every configured dimension; one transaction per table, under the schema's export lock.

    A table whose export fails (an input or user error) does not keep the others from being exported; the export
    then raises, naming each failed table and why.
    """
    from lakehouse.sinks.postgres import connect, export_lock, init_db

    if config.postgres is None:
        raise ConfigError("no `postgres:` section in the configuration: nothing to export to", file=config.source_file)
    settings = settings or settings_for(config.postgres)
    schema = settings.schema
    run_id = uuid.uuid4().hex[:12]
    results = []
    with connect(settings) as conn:
        init_db(conn, schema)
        with export_lock(conn, schema, timeout=config.postgres.lock_timeout_seconds):
            failures = []
            for name in config.export_tables():
                try:
                    results.append(_export_table(spark, config, conn, schema, name, run_id, crash_hook))
                except LakehouseError as exc:  # the other tables are still exported; this one says why not
                    log.error('{"event": "export_failed", "table": "%s", "error": %s}', name, json.dumps(str(exc)))
                    failures.append(f"{name}: {exc}")
    if failures:
        exported = ", ".join(r.table for r in results) or "none"
        raise InputError(
            f"the export of {len(failures)} table(s) failed (exported: {exported}): " + "; ".join(failures)
        )
    return results


def _export_table(
    spark: SparkSession,
    config: Config,
    conn: psycopg.Connection,
    schema: str,
    name: str,
    run_id: str,
    crash_hook: Callable[[], None] | None,
) -> ExportResult:
    """Export one dimension in one transaction: its change feed since the exported version, or all of it."""
    from delta.tables import DeltaTable

    from lakehouse.sinks.postgres import EXPORT_TABLE, apply_rows, exported_version

    started = time.monotonic()
    table = config.table(name)
    history = table_paths(config, table).history
    if not DeltaTable.isDeltaTable(spark, history):
        return ExportResult(name, None, None, mode="skipped")
    until = int(DeltaTable.forPath(spark, history).history(1).select("version").first()[0])
    since = exported_version(conn, schema, name)
    if since is not None and since > until:
        raise InputError(
            f"{schema}.{name} holds version {since} of {history}, which is at version {until}: the Delta "
            f"table was made again, and its versions are not the ones exported. To export it in full, "
            f"delete its bookkeeping row (DELETE FROM {schema}.{EXPORT_TABLE} WHERE table_name = "
            f"'{name}'), then export again",
            table=name,
        )
    result = ExportResult(name, since, until, mode="up_to_date")
    if since is None or since < until:
        columns = export_columns(spark, history, name)
        rows, result.mode = changed_rows(
            spark, history, key=table.primary_key, columns=columns, since=since, until=until
        )
        result.rows = apply_rows(
            conn,
            schema=schema,
            table=name,
            rows=to_arrow(rows),
            delta_path=history,
            version=until,
            run_id=run_id,
            crash_hook=crash_hook,
        )
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        '{"event": "export", "table": "%s", "mode": "%s", "from_version": %s, "to_version": %s, '
        '"rows": %d, "seconds": %s}',
        name,
        result.mode,
        "null" if since is None else since,
        until,
        result.rows,
        result.seconds,
    )
    return result
