"""The PostgreSQL DDL of the eight 340B dimensions and the export bookkeeping, and `init_db` that applies it."""

from __future__ import annotations

import psycopg
import pyarrow as pa
from psycopg import sql

from lakehouse.errors import LakehouseError
from lakehouse.sinks.postgres.base import EXPORT_TABLE, OPEN_END, _check_schema, _entity, _require_idle
from lakehouse.sinks.postgres.bookkeeping import _lock_key
from lakehouse.sinks.postgres.comments import ABOUT, comment_statements
from lakehouse.sinks.postgres.views import view_statements
from lakehouse.sources.opais_entities import ENTITIES

_PG_TYPES = {"string": "TEXT", "bigint": "BIGINT", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP"}
# Widths fixed by a standard or by our own code. Other strings are TEXT: HRSA publishes no widths, and a
# value one character too long would fail the whole export of the day. Key strings compare bytewise
# (COLLATE "C"): faster index maintenance, and immune to glibc collation changes.
_WIDTHS = {
    "id340b": 'VARCHAR(32) COLLATE "C"',  # e.g. DSH050108: about a dozen characters today
    "state": "VARCHAR(2)",  # USPS codes, territories included
    "zip": "VARCHAR(10)",  # 5 digits; room for a ZIP+4 written into one field
    "zip4": "VARCHAR(4)",
    "npi_number": "VARCHAR(10)",  # CMS NPI: 10 digits
    "content_key": 'VARCHAR(64) COLLATE "C"',  # SHA-256 in hex
}
_HISTORY_TYPES = {  # Spark types of the SCD2 and lineage columns of the Delta history
    "effective_stp": "timestamp",
    "expiration_stp": "timestamp",
    "current_version_flg": "string",
    "change_type": "string",
    "_sequence": "string",
    "_batch_id": "bigint",
}
_ARROW_TYPES = {"string": pa.string(), "bigint": pa.int64(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us")}
_SCD2_COLUMNS = {
    "effective_stp": "TIMESTAMP NOT NULL",
    "expiration_stp": f"TIMESTAMP NOT NULL DEFAULT '{OPEN_END}'",
    "current_version_flg": "CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N'))",
    "change_type": "VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE'))",
    "_sequence": "TEXT NOT NULL",
    "_batch_id": "BIGINT NOT NULL",
    "exported_version": "BIGINT NOT NULL",
}
_EXPORT_DDL = f"""CREATE TABLE IF NOT EXISTS {{schema}}.{EXPORT_TABLE} (
    table_name       TEXT PRIMARY KEY,
    delta_path       TEXT NOT NULL,
    exported_version BIGINT NOT NULL CHECK (exported_version >= 0),
    rows_received    BIGINT NOT NULL,
    rows_written     BIGINT NOT NULL,
    exported_at      TIMESTAMPTZ NOT NULL,
    run_id           TEXT NOT NULL
)"""


def pg_columns(table: str) -> dict[str, str]:
    """The PostgreSQL columns of a dimension, name -> type with constraints, in table order."""
    entity = _entity(table)
    business = {
        name: _WIDTHS.get(name, _PG_TYPES[spark_type]) + (" NOT NULL" if name in entity.primary_key else "")
        for name, spark_type in entity.columns.items()
    }
    return business | _SCD2_COLUMNS


def arrow_schema(table: str) -> pa.Schema:
    """The rows `apply_rows` takes for `table`: business, SCD2 and lineage columns (what the Spark side casts to)."""
    types = _entity(table).columns | _HISTORY_TYPES
    return pa.schema([(name, _ARROW_TYPES[spark_type]) for name, spark_type in types.items()])


def ddl_statements() -> list[tuple[str, str]]:
    """(object, statement) pairs creating the bookkeeping table, every dimension, the BI views and the comments.

    `{schema}` is a placeholder. Every statement is idempotent (IF NOT EXISTS, OR REPLACE). A history
    version is keyed by (primary key..., effective_stp); the partial index serves "current row of this
    key" lookups; the views give BI users the live current rows (see views.py).
    """
    out = [(f"table {EXPORT_TABLE}", _EXPORT_DDL)]
    for name, entity in ENTITIES.items():
        width = max(map(len, pg_columns(name)))
        lines = [f"    {col:<{width}} {type_}," for col, type_ in pg_columns(name).items()]
        key = ", ".join(entity.primary_key)
        lines.append(f"    PRIMARY KEY ({key}, effective_stp)")
        body = "\n".join(lines)
        out.append((f"table {name}", f"CREATE TABLE IF NOT EXISTS {{schema}}.{name} (\n{body}\n)"))
        out.append(
            (
                f"index {name}_current",
                f"CREATE INDEX IF NOT EXISTS {name}_current ON {{schema}}.{name} ({key})\n"
                "    WHERE current_version_flg = 'Y'",
            )
        )
    out += view_statements()
    return out + comment_statements({name: pg_columns(name) for name in ENTITIES})


def render_ddl() -> str:
    """The DDL as the file `ddl/opais_340b.sql` holds it, for DBAs (the code applies `ddl_statements()`)."""
    parts = [
        "-- PostgreSQL DDL of the 340B OPAIS dimensions (SCD2 history) and the export bookkeeping.",
        "-- Generated from lakehouse/sources/opais_entities.py by lakehouse.sinks.postgres.render_ddl(); a test",
        "-- fails when this file and the code differ. Replace {schema} with the target schema (init_db does).",
        "-- Every statement is idempotent. A version is keyed by (key..., effective_stp); an open version has",
        f"-- expiration_stp '{OPEN_END}' and current_version_flg 'Y'. Rows are inserted or updated, never deleted:",
        "-- a key that left the export is a current version with change_type 'DELETE'. The <dimension>_live views",
        "-- hold the live current rows, ce_contract_pharmacy_live joins them for BI; COMMENT ON says what each",
        "-- table, view and column holds. _sequence and _batch_id are the Delta history's lineage; exported_version",
        "-- is the Delta version of the history table that last changed the row.",
        "",
        "CREATE SCHEMA IF NOT EXISTS {schema};",
    ]
    for what, statement in ddl_statements():
        kind, name = what.split()
        if kind == "table":
            about = "last exported Delta version per table" if name == EXPORT_TABLE else ABOUT[name]
            parts += ["", f"-- {name}: {about}"]
        elif kind == "view" and name == view_statements()[0][0].split()[1]:
            parts += ["", "-- BI views: the live current rows of each dimension, and the usual three-way join"]
        elif kind == "comments" and name == EXPORT_TABLE:
            parts += ["", "-- What every table, view and column holds"]
        parts.append(statement if kind == "comments" else statement + ";")
    return "\n".join(parts) + "\n"


def init_db(conn: psycopg.Connection, schema: str) -> list[str]:
    """Create the schema, the bookkeeping table and the dimensions unless they exist; return what was ensured.

    Idempotent and safe to run concurrently (a transaction-level advisory lock serialises DDL per schema).
    Raises if an existing table lacks columns this version of the code writes.
    """
    _check_schema(schema)
    _require_idle(conn)
    ensured = [f"schema {schema}"]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", _lock_key("ddl", schema))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for what, statement in ddl_statements():
            cur.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))  # type: ignore[arg-type]
            kind, name = what.split()
            if kind != "comments":
                ensured.append(f"{kind} {schema}.{name}")
        _check_columns(cur, schema)
    return ensured


def _check_columns(cur: psycopg.Cursor, schema: str) -> None:
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        (schema,),
    )
    found: dict[str, set[str]] = {}
    for table, column in cur.fetchall():
        found.setdefault(table, set()).add(column)
    for name in ENTITIES:
        missing = [c for c in pg_columns(name) if c not in found.get(name, set())]
        if missing:
            raise LakehouseError(
                f"table {schema}.{name} exists without columns {missing}: it predates this DDL. "
                "Add them (ALTER TABLE ... ADD COLUMN, see ddl/opais_340b.sql) and rerun."
            )
