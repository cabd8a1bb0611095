"""PostgreSQL sink: the 340B dimensions' history (SCD2) rows, exported once per Delta version.

The only package that imports psycopg. One export of one table is one transaction: the rows are
COPYed into a temporary table, upserted set-based into the dimension (a history version is identified
by its key plus `effective_stp`), and the table's bookkeeping row in `lakehouse_export` is moved to
the Delta version (and Delta table id) the rows came from. A full export (`replace=True`) also deletes
the versions its rows do not hold. A crash anywhere leaves the old rows and the old version, so a
rerun exports the same version again and converges to the state of a clean run.

    settings = PostgresSettings.from_secret("prod/lakehouse/pg", client=secrets_client, sslmode="verify-full",
                                            sslrootcert="/etc/ssl/rds-global-bundle.pem")
    with connect(settings) as conn, export_lock(conn, settings.schema):
        init_db(conn, settings.schema)
        if needs_export(conn, settings.schema, "dim_ce", version):
            apply_rows(conn, schema=settings.schema, table="dim_ce", rows=arrow_table,
                       delta_path=path, version=version, run_id=run_id)

Modules: `ddl` (tables, `init_db`), `settings` (connection settings, `connect`), `bookkeeping` (export
lock, exported versions), `load` (`apply_rows`), `base` (what they share).
"""

from __future__ import annotations

try:
    import psycopg  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lakehouse.sinks.postgres needs psycopg 3: pip install 'psycopg[binary]>=3.2,<4' "
        "(a dependency of lakehouse; a cluster without it needs it added to the job's Python packages)"
    ) from exc
try:
    import pyarrow  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        "lakehouse.sinks.postgres needs pyarrow (EMR and Glue ship it; locally: pip install -e '.[local]')"
    ) from exc

from lakehouse.sinks.postgres.base import EXPORT_TABLE, OPEN_END
from lakehouse.sinks.postgres.bookkeeping import (
    ExportBusyError,
    ExportedState,
    StaleVersionError,
    export_lock,
    exported_state,
    exported_version,
    needs_export,
)
from lakehouse.sinks.postgres.ddl import arrow_schema, ddl_statements, init_db, pg_columns, render_ddl
from lakehouse.sinks.postgres.load import apply_rows, row_by_row_baseline
from lakehouse.sinks.postgres.settings import PostgresConnectError, PostgresSettings, connect

__all__ = [
    "EXPORT_TABLE",
    "OPEN_END",
    "ExportBusyError",
    "ExportedState",
    "PostgresConnectError",
    "PostgresSettings",
    "StaleVersionError",
    "apply_rows",
    "arrow_schema",
    "connect",
    "ddl_statements",
    "export_lock",
    "exported_state",
    "exported_version",
    "init_db",
    "needs_export",
    "pg_columns",
    "render_ddl",
    "row_by_row_baseline",
]
