"""Export dimension history tables to PostgreSQL from the Delta change data feed, exactly once.

Per table: the last exported Delta version is read from the bookkeeping table; the history rows
inserted or re-closed since then (the change feed's inserts and update post-images, the newest per
version of a key) are bulk-upserted, and the new version is recorded in the same PostgreSQL
transaction. A crash anywhere leaves PostgreSQL at the last committed version, and a rerun exports
from there: the rows converge to those of a clean run.

A full export replaces the table's rows with the Delta history, in the same transaction: the first export of a
table, a Delta table made again (its id, kept with the version, differs: moved aside and rebuilt at the same path),
the same table whose exported version is now another commit (put back from an older copy, then committed up to or
past that version again: a digest of the exported commit is kept with the version) or a commit gone from the log, a
bookkeeping row from before the id was kept, a change feed that is gone (log retention, vacuumed files), and a change
feed that deletes versions (a RESTORE, a DELETE of a day's versions).
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
from lakehouse.delta_log import table_state
from lakehouse.errors import ConfigError, InputError, LakehouseError
from lakehouse.sinks.delta_changes import commit_fingerprint, export_rows, to_arrow  # noqa: F401 (benchmarks: to_arrow)
from lakehouse.sources.opais_entities import ENTITIES
from lakehouse.tables import table_paths

if TYPE_CHECKING:
    import psycopg
    from pyspark.sql import SparkSession

    from lakehouse.sinks.postgres import ExportedState, PostgresSettings

log = logging.getLogger("lakehouse.export")


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


def export_postgres(
    spark: SparkSession,
    config: Config,
    *,
    settings: PostgresSettings | None = None,
    crash_hook: Callable[[], None] | None = None,
) -> list[ExportResult]:
    """Export every configured dimension; one transaction per table, under the schema's export lock.

    A table whose export fails (whatever the error: an input or user error, a Spark or Delta failure, PostgreSQL
    refusing its rows) does not keep the others from being exported; the export then raises, naming each failed table
    and why. A connection to PostgreSQL that is lost stops the run at once (the next tables could not be written), and
    so does what `crash_hook` raises (it stands in for the process dying, in tests).
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
            crashed: list[BaseException] = []
            hook = None if crash_hook is None else functools.partial(_crash, crash_hook, crashed)
            for name in config.export_tables():
                try:
                    results.append(_export_table(spark, config, conn, schema, name, run_id, hook))
                except Exception as exc:  # the other tables are still exported; this one says why not
                    if crashed or conn.closed or conn.broken:  # no table can be written now: the run stops
                        raise
                    why = str(exc) if isinstance(exc, LakehouseError) else f"{type(exc).__name__}: {exc}"
                    log.error('{"event": "export_failed", "table": "%s", "error": %s}', name, json.dumps(why))
                    if not isinstance(exc, LakehouseError):
                        log.debug("the export of %s failed", name, exc_info=True)
                    failures.append(f"{name}: {why}")
    if failures:
        exported = ", ".join(r.table for r in results) or "none"
        raise InputError(
            f"the export of {len(failures)} table(s) failed (exported: {exported}): " + "; ".join(failures)
        )
    return results


def _crash(hook: Callable[[], None], crashed: list[BaseException]) -> None:
    """Run a test's crash hook, noting that it raised: what it raises ends the run, as the process dying would."""
    try:
        hook()
    except BaseException as exc:
        crashed.append(exc)
        raise


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

    from lakehouse.sinks.postgres import apply_rows, exported_state

    started = time.monotonic()
    if name not in ENTITIES:
        raise ConfigError(
            f"postgres.tables names {name}, which is not one of the 340B dimensions ({', '.join(ENTITIES)}): the "
            "PostgreSQL export writes only those, into the tables of ddl/opais_340b.sql. Remove it from "
            "postgres.tables; the other tables are exported",
            file=config.source_file,
            key="postgres.tables",
        )
    table = config.table(name)
    history = table_paths(config, table).history
    if not DeltaTable.isDeltaTable(spark, history):
        return ExportResult(name, None, None, mode="skipped")
    until, table_id = table_state(spark, history)
    state = exported_state(conn, schema, name)
    commit = functools.partial(commit_fingerprint, spark, history)
    since = _incremental_from(state, name, until, table_id, commit=commit)
    result = ExportResult(name, None if state is None else state.version, until, mode="up_to_date")
    if since is None or since < until:
        columns = export_columns(spark, history, name)
        rows, result.mode = export_rows(
            spark, history, key=table.primary_key, columns=columns, since=since, until=until
        )
        result.rows = apply_rows(
            conn,
            schema=schema,
            table=name,
            rows=rows,
            delta_path=history,
            version=until,
            run_id=run_id,
            delta_table_id=table_id,
            delta_commit=commit(until),
            replace=result.mode == "full",
            crash_hook=crash_hook,
        )
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        '{"event": "export", "table": "%s", "mode": "%s", "from_version": %s, "to_version": %s, '
        '"rows": %d, "seconds": %s}',
        name,
        result.mode,
        "null" if result.from_version is None else result.from_version,
        until,
        result.rows,
        result.seconds,
    )
    return result


def _incremental_from(
    state: ExportedState | None, name: str, until: int, table_id: str, *, commit: Callable[[int], str | None]
) -> int | None:
    """The version after which the change feed holds what PostgreSQL lacks, or None for a full export: the first
    export, and whenever the exported versions may not be this Delta table's. `commit(version)` is the digest of a
    commit of the table (None: gone from the log)."""
    if state is None:
        return None
    if state.delta_table_id == table_id and state.version <= until:
        # The same table; a copy put back that has committed up to the exported version again has another commit
        # there. A row from before the digest was kept is taken as matching (its next export records one).
        now = state.delta_commit and commit(state.version)
        if state.delta_commit is None or now == state.delta_commit:
            return state.version
        if now is None:
            why = f"version {state.version}, exported last, is gone from the Delta log: it cannot be checked"
        else:
            why = (
                f"version {state.version} of the Delta table is another commit than the one exported (the table was "
                "put back from an older copy and committed again?)"
            )
        log.warning(json.dumps({"event": "export_in_full", "table": name, "reason": why}))
        return None
    if state.delta_table_id == table_id:  # the same table, older than what PostgreSQL holds: a copy put back?
        raise InputError(
            f"the Delta table of {name} is at version {until}, below version {state.version} of the same table already "
            "exported (it was put back from an older copy?): PostgreSQL holds changes the table no longer has. Nothing "
            f"was written. To make PostgreSQL hold exactly this table's history, delete its bookkeeping row (DELETE "
            f"FROM <schema>.lakehouse_export WHERE table_name = '{name}') and export again: a full export replaces "
            "its rows",
            table=name,
        )
    if state.delta_table_id is None:
        why = "its bookkeeping row predates the Delta table id, so a table made again cannot be told apart"
    else:
        why = f"the Delta table was made again (id {table_id}; version {state.version} was of {state.delta_table_id})"
    log.warning(json.dumps({"event": "export_in_full", "table": name, "reason": why}))
    return None
