"""The PostgreSQL DDL of the eight 340B dimensions and the export bookkeeping, and `init_db` that applies it."""

from __future__ import annotations

import re

import psycopg
import pyarrow as pa
from psycopg import sql

from lakehouse.errors import LakehouseError
from lakehouse.sinks.postgres.base import EXPORT_TABLE, OPEN_END, _check_schema, _entity, _require_idle
from lakehouse.sinks.postgres.bookkeeping import _lock_key
from lakehouse.sinks.postgres.comments import ABOUT, comment_statements
from lakehouse.sinks.postgres.views import JOIN_VIEW, JOINED, drop_changed_views, live_view, view_statements
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
    run_id           TEXT NOT NULL,
    delta_table_id   TEXT,
    delta_commit     TEXT
)"""
# A bookkeeping table made before the Delta table's id was kept gets the column (NULL in its rows: such a table is
# exported in full once, since its row cannot tell a table made again from the one exported).
_EXPORT_UPGRADE = f"ALTER TABLE {{schema}}.{EXPORT_TABLE} ADD COLUMN IF NOT EXISTS delta_table_id TEXT"
# Likewise the exported commit's digest (NULL in its rows: taken as matching, and recorded by the table's next export).
_EXPORT_COMMIT = f"ALTER TABLE {{schema}}.{EXPORT_TABLE} ADD COLUMN IF NOT EXISTS delta_commit TEXT"


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
    out = [(f"table {EXPORT_TABLE}", _EXPORT_DDL), (f"column {EXPORT_TABLE}.delta_table_id", _EXPORT_UPGRADE)]
    out.append((f"column {EXPORT_TABLE}.delta_commit", _EXPORT_COMMIT))
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
        f"-- expiration_stp '{OPEN_END}' and current_version_flg 'Y'. An export inserts or updates versions; a full",
        "-- export (the first, a Delta table made again, a change feed gone) replaces the table's rows with the Delta",
        "-- history. A key that left the export is a current version with change_type 'DELETE'. The <dimension>_live",
        "-- views hold the live current rows, ce_contract_pharmacy_live joins them for BI (a view whose columns",
        "-- changed is dropped and made again by init_db, keeping its grants); COMMENT ON says what each",
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
    Raises a LakehouseError naming the statements to run when an existing table lacks columns this version of the
    code writes, or has one of a type that would refuse them; nothing is changed then. A view whose columns changed
    (a column added to a dimension) is dropped and made again in the same transaction, with its grants.
    """
    _check_schema(schema)
    _require_idle(conn)
    ensured = [f"schema {schema}"]
    statements = ddl_statements()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", _lock_key("ddl", schema))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for stage in (("table", "column", "index"), ("view",), ("comments",)):
            if stage == ("view",):  # the views read the tables' columns: check those first
                _check_columns(cur, schema)
                grants = drop_changed_views(cur, schema)
            for what, statement in statements:
                kind, name = what.split()
                if kind in stage:
                    cur.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))  # type: ignore[arg-type]
                    if kind != "comments":
                        ensured.append(f"{kind} {schema}.{name}")
            if stage == ("view",):
                for grant in grants:
                    cur.execute(grant)
    return ensured


def _name(*parts: str) -> str:
    """A qualified name as a DBA writes it: quoted only where it has to be."""
    return ".".join(p if re.fullmatch(r"[a-z_][a-z0-9_]*", p) else '"' + p.replace('"', '""') + '"' for p in parts)


def _views_reading(schema: str, table: str) -> str:
    views = [JOIN_VIEW] if table in JOINED.values() else []
    return ", ".join(_name(schema, v) for v in [*views, live_view(table)])


def _check_columns(cur: psycopg.Cursor, schema: str) -> None:
    cur.execute(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace s ON s.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
           WHERE s.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped""",
        (schema,),
    )
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for table, column, type_name, category in cur.fetchall():
        found.setdefault(table, {})[column] = (type_name, category)
    for name in ENTITIES:
        wanted = pg_columns(name)
        missing = [c for c in wanted if c not in found.get(name, {})]
        if missing:
            alter = "; ".join(
                f"ALTER TABLE {_name(schema, name)} ADD COLUMN {_name(c)} {_bare_type(wanted[c])}" for c in missing
            )
            raise LakehouseError(
                f"table {schema}.{name} lacks columns {missing}: it predates this DDL (ddl/opais_340b.sql). Nothing "
                f"was changed. Add them, then rerun: {alter}"
            )
        spark_types = _entity(name).columns | _HISTORY_TYPES | {"exported_version": "bigint"}
        for column, spark_type in spark_types.items():
            type_name, category = found[name][column]
            if _refuses(spark_type, type_name, category):
                raise LakehouseError(
                    f"{schema}.{name}.{column} is {type_name}, where the export writes {_PG_TYPES[spark_type].lower()} "
                    "values: PostgreSQL would refuse them (or shift them) in every export of the table. Nothing was "
                    "changed. Change the column (with a USING clause where its values need converting), then rerun, "
                    f"which makes the views again: DROP VIEW IF EXISTS {_views_reading(schema, name)}; "
                    f"ALTER TABLE {_name(schema, name)} ALTER COLUMN {_name(column)} TYPE {_bare_type(wanted[column])}"
                )


def _refuses(spark_type: str, type_name: str, category: str) -> bool:
    """Whether a column of `type_name` (of pg_type category `category`) refuses every value of `spark_type` the export
    writes: a string into a number or a boolean, and so on. A timestamp with time zone would take the naive UTC
    values in the session's time zone: shifted, so refused too. A narrower type of the same kind (INTEGER for BIGINT,
    VARCHAR(1)) refuses only values too big for it; PostgreSQL names those."""
    if spark_type == "timestamp":
        return not (type_name.startswith("timestamp") and type_name.endswith("without time zone"))
    return category != {"string": "S", "bigint": "N", "boolean": "B"}[spark_type]


def _bare_type(spec: str) -> str:
    """The type of a column's DDL without its constraints: what ALTER TABLE ... ADD COLUMN takes on a filled table."""
    return re.split(r" (?:NOT NULL|DEFAULT|CHECK)\b", spec, maxsplit=1)[0]
