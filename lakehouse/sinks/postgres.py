"""PostgreSQL sink: the 340B dimensions' history (SCD2) rows, exported once per Delta version.

The only module that imports psycopg. One export of one table is one transaction: the rows are
COPYed into a temporary table, upserted set-based into the dimension (a history version is identified
by its key plus `effective_stp`), and the table's bookkeeping row in `lakehouse_export` is moved to
the Delta version the rows came from. A crash anywhere leaves the old rows and the old version, so a
rerun exports the same version again and converges to the state of a clean run.

    settings = PostgresSettings.from_secret("prod/lakehouse/pg", client=secrets_client, sslmode="verify-full",
                                            sslrootcert="/etc/ssl/rds-global-bundle.pem")
    with connect(settings) as conn, export_lock(conn, settings.schema):
        init_db(conn, settings.schema)
        if needs_export(conn, settings.schema, "dim_ce", version):
            apply_rows(conn, schema=settings.schema, table="dim_ce", rows=arrow_table,
                       delta_path=path, version=version, run_id=run_id)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import SecretStr

from lakehouse.errors import ConfigError, InputError, LakehouseError, RetryableError
from lakehouse.sources.opais_entities import ENTITIES, Entity

try:
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lakehouse.sinks.postgres needs psycopg 3: pip install 'psycopg[binary]>=3.2,<4' "
        "(a dependency of lakehouse; a cluster without it needs it added to the job's Python packages)"
    ) from exc
try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        "lakehouse.sinks.postgres needs pyarrow (EMR and Glue ship it; locally: pip install -e '.[local]')"
    ) from exc

__all__ = [
    "EXPORT_TABLE",
    "OPEN_END",
    "ExportBusyError",
    "PostgresConnectError",
    "PostgresSettings",
    "StaleVersionError",
    "apply_rows",
    "arrow_schema",
    "connect",
    "ddl_statements",
    "export_lock",
    "exported_version",
    "init_db",
    "needs_export",
    "pg_columns",
    "render_ddl",
    "row_by_row_baseline",
]

EXPORT_TABLE = "lakehouse_export"
OPEN_END = "9999-12-31 23:59:59"  # ID304B's open-ended expiration, kept for its consumers
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# --- DDL ------------------------------------------------------------------------------------------

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
_ABOUT = {
    "dim_ce": "covered entities",
    "dim_ce_medicaid": "Medicaid numbers of a covered entity",
    "dim_ce_npi": "NPIs of a covered entity",
    "dim_ce_street_address": "street address of a covered entity",
    "dim_ce_billing_address": "billing address of a covered entity",
    "dim_ce_shipping_address": "shipping addresses of a covered entity",
    "dim_ce_contract_pharmacy": "contracts between a covered entity and a pharmacy",
    "dim_pharmacy": "contract pharmacies",
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
    """(object, statement) pairs creating the bookkeeping table and every dimension; `{schema}` is a placeholder.

    Every statement is idempotent (IF NOT EXISTS). A history version is keyed by (primary key...,
    effective_stp); the partial index serves "current row of this key" lookups.
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
    return out


def render_ddl() -> str:
    """The DDL as the file `ddl/opais_340b.sql` holds it, for DBAs (the code applies `ddl_statements()`)."""
    parts = [
        "-- PostgreSQL DDL of the 340B OPAIS dimensions (SCD2 history) and the export bookkeeping.",
        "-- Generated from lakehouse/sources/opais_entities.py by lakehouse.sinks.postgres.render_ddl(); a test",
        "-- fails when this file and the code differ. Replace {schema} with the target schema (init_db does).",
        "-- Every statement is idempotent. A version is keyed by (key..., effective_stp); an open version has",
        f"-- expiration_stp '{OPEN_END}' and current_version_flg 'Y'. Rows are inserted or updated, never deleted.",
        "-- _sequence and _batch_id are the Delta history's lineage; exported_version is the Delta version of the",
        "-- history table that last changed the row.",
        "",
        "CREATE SCHEMA IF NOT EXISTS {schema};",
    ]
    for what, statement in ddl_statements():
        name = what.split()[1]
        about = "last exported Delta version per table" if name == EXPORT_TABLE else _ABOUT.get(name, "")
        if what.startswith("table"):
            parts += ["", f"-- {name}: {about}"]
        parts.append(statement + ";")
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
            ensured.append(f"{what.split()[0]} {schema}.{what.split()[1]}")
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


# --- settings and connection ----------------------------------------------------------------------

_ENV = {  # field -> the libpq variable read when the prefixed one is absent
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "schema": None,
}


@dataclass(frozen=True)
class PostgresSettings:
    """Where and how to connect. The password is a SecretStr: repr, str and errors never show it.

    TLS settings go to libpq unchanged; for RDS use sslmode="verify-full" with sslrootcert pointing at the
    RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
    """

    host: str
    dbname: str
    user: str
    password: SecretStr | None = None
    port: int = 5432
    sslmode: SslMode = "prefer"
    sslrootcert: str | None = None
    schema: str = "lakehouse"
    connect_timeout: int = 10
    application_name: str = "lakehouse"

    def __post_init__(self) -> None:
        if isinstance(self.password, str):  # accept a plain string, keep it wrapped
            object.__setattr__(self, "password", SecretStr(self.password))
        for name in ("host", "dbname", "user"):
            if not getattr(self, name):
                raise ConfigError(f"PostgreSQL {name} is empty; expected a non-empty string", key=name)
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"PostgreSQL port {self.port} is out of range; expected 1..65535", key="port")
        if self.sslmode not in get_args(SslMode):
            raise ConfigError(
                f"sslmode {self.sslmode!r} is unknown; expected one of {get_args(SslMode)}", key="sslmode"
            )
        _check_schema(self.schema)

    @property
    def dsn(self) -> str:
        """The connection string without the password (for logs and messages)."""
        params = {k: v for k, v in self._libpq().items() if k != "password"}
        return psycopg.conninfo.make_conninfo(**params)

    def _libpq(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
        }
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        if self.password is not None:
            params["password"] = self.password.get_secret_value()
        return params

    @classmethod
    def from_env(cls, prefix: str = "LAKEHOUSE_PG_", *, environ: Mapping[str, str] | None = None) -> PostgresSettings:
        """Read `<prefix>HOST`, `<prefix>PORT`, ... falling back to libpq's PGHOST, PGPORT, PGDATABASE, PGUSER,
        PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT, PGAPPNAME. `<prefix>SCHEMA` has no fallback."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, fallback in _ENV.items():
            for var in filter(None, (prefix + name.upper(), fallback)):
                if env.get(var):
                    values[name] = _typed(name, env[var], var)
                    break
        for name in ("host", "dbname", "user"):
            if name not in values:
                looked = " or ".join(filter(None, (prefix + name.upper(), _ENV[name])))
                raise ConfigError(f"PostgreSQL {name} is not set: set {looked}", key=looked)
        return cls(**values)

    @classmethod
    def from_secret(cls, secret_id: str, *, client: Any, **overrides: Any) -> PostgresSettings:
        """Read an RDS-shaped Secrets Manager secret with `client` (a boto3 secretsmanager client).

        overrides set what the secret does not hold: schema, sslmode, sslrootcert, dbname, ...
        """
        response = client.get_secret_value(SecretId=secret_id)
        return cls.from_secret_value(response["SecretString"], secret_id=secret_id, **overrides)

    @classmethod
    def from_secret_value(
        cls, value: str | Mapping[str, Any], *, secret_id: str = "the secret", **overrides: Any
    ) -> PostgresSettings:
        """Parse the RDS secret JSON: username, password, host, port, dbname (default postgres), engine.

        sslmode defaults to verify-full here (RDS speaks TLS): pass sslrootcert, the RDS CA bundle.
        """
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"{secret_id} is not JSON; expected the RDS secret shape", key="SecretString"
                ) from None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{secret_id} is not a JSON object; expected the RDS secret shape", key="SecretString")
        missing = [k for k in ("username", "password", "host") if not value.get(k)]
        if missing:
            raise ConfigError(
                f"{secret_id} lacks {missing}; expected keys username, password, host, port", key=missing[0]
            )
        engine = str(value.get("engine", "postgres"))
        if "postgres" not in engine:
            raise ConfigError(f"{secret_id} is for engine {engine!r}; expected postgres", key="engine")
        values: dict[str, Any] = {
            "host": value["host"],
            "port": _typed("port", value.get("port", 5432), f"{secret_id} port"),
            "dbname": value.get("dbname") or "postgres",
            "user": value["username"],
            "password": SecretStr(str(value["password"])),
            "sslmode": "verify-full",
        }
        return cls(**(values | overrides))


def _typed(name: str, raw: Any, where: str) -> Any:
    if name in ("port", "connect_timeout"):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} is {raw!r}; expected an integer", key=where) from None
    return SecretStr(raw) if name == "password" else raw


class PostgresConnectError(RetryableError):
    """The server could not be reached or refused the login. Nothing was exported."""


def connect(settings: PostgresSettings) -> psycopg.Connection:
    """Open an autocommit connection (each sink function runs its own transactions)."""
    try:
        return psycopg.connect(**settings._libpq(), autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
        if settings.password is not None:
            reason = reason.replace(settings.password.get_secret_value(), "**********")
        raise PostgresConnectError(
            f"could not connect to PostgreSQL at {settings.host}:{settings.port}, database {settings.dbname}, "
            f"user {settings.user}, sslmode {settings.sslmode}: {reason}. Check {_hint(reason)}."
        ) from None


def _hint(reason: str) -> str:
    lowered = reason.lower()
    if "password" in lowered or "authentication" in lowered:
        return "the user and its password (LAKEHOUSE_PG_PASSWORD / PGPASSWORD, or the secret)"
    if "ssl" in lowered or "certificate" in lowered:
        return "sslmode and sslrootcert (for RDS: verify-full with the RDS CA bundle)"
    if "does not exist" in lowered:
        return "the database and user names"
    return "host and port, that the server runs, and that the network (security group, VPC) lets this host in"


# --- export lock and bookkeeping ------------------------------------------------------------------

_LOCK_CLASS = 0x4C4B4845  # "LKHE": the first key of every advisory lock this module takes


class ExportBusyError(RetryableError):
    """Another export into the same schema holds the export lock. Nothing was exported; retry later."""


class StaleVersionError(LakehouseError):
    """The Delta version is not newer than the one already exported; nothing was written."""


def _lock_key(kind: str, name: str) -> tuple[int, int]:
    digest = hashlib.sha256(f"{kind}:{name}".encode()).digest()
    return _LOCK_CLASS, int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@contextmanager
def export_lock(conn: psycopg.Connection, schema: str, *, timeout: float = 60.0, poll: float = 0.5) -> Iterator[None]:
    """Hold the schema's export lock (a session-level advisory lock) for the duration of the block.

    Waits up to `timeout` seconds for another export to finish, then raises ExportBusyError naming the
    holder's pid. The server releases the lock by itself if this session dies.
    """
    _check_schema(schema)
    _require_idle(conn)
    key = _lock_key("export", schema)
    deadline = time.monotonic() + timeout
    while not _fetch(conn, "SELECT pg_try_advisory_lock(%s, %s)", key)[0][0]:
        if time.monotonic() >= deadline:
            holders = _fetch(
                conn,
                """SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l
                   LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = %s
                     AND l.objsubid = 2 AND l.granted""",
                key,
            )
            who = ", ".join(f"pid {pid}" + (f" ({app})" if app else "") for pid, app in holders) or "a session"
            raise ExportBusyError(
                f"another export into schema {schema} is running ({who} from pg_locks); "
                f"waited {timeout:g} s. Nothing was exported; retry later."
            )
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
    try:
        yield
    finally:
        # An aborted transaction left open by the block cannot run the unlock; closing the session releases it.
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            _fetch(conn, "SELECT pg_advisory_unlock(%s, %s)", key)


def _fetch(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Run a query in its own transaction (or savepoint), so that it works with and without autocommit."""
    with conn.transaction():
        return conn.execute(query, params).fetchall()


def exported_version(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """The last Delta version exported into `schema.table`, or None before the first export."""
    _entity(table)
    with conn.transaction(), conn.cursor() as cur:
        row = _bookkeeping(cur, schema, table, lock=False)
    return None if row is None else row[0]


def needs_export(conn: psycopg.Connection, schema: str, table: str, version: int) -> bool:
    """True when `version` is newer than the exported one: the check `apply_rows` enforces, for callers to skip."""
    last = exported_version(conn, schema, table)
    return last is None or version > last


def _bookkeeping(cur: psycopg.Cursor, schema: str, table: str, *, lock: bool) -> tuple[int, str] | None:
    query = sql.SQL("SELECT exported_version, delta_path FROM {}.{} WHERE table_name = %s{}").format(
        sql.Identifier(schema), sql.Identifier(EXPORT_TABLE), sql.SQL(" FOR UPDATE" if lock else "")
    )
    try:
        return cur.execute(query, (table,)).fetchone()
    except psycopg.errors.UndefinedTable:
        raise LakehouseError(f"{schema}.{EXPORT_TABLE} does not exist: run init_db(conn, {schema!r}) first") from None


# --- apply ----------------------------------------------------------------------------------------


def apply_rows(
    conn: psycopg.Connection,
    *,
    schema: str,
    table: str,
    rows: pa.Table | Iterable[pa.RecordBatch],
    delta_path: str,
    version: int,
    run_id: str,
    crash_hook: Callable[[], None] | None = None,
) -> int:
    """Upsert history rows into `schema.table` and record `version` as exported, in one transaction.

    rows: the net post-images since the last export, one per (key..., effective_stp), with the table's
    columns in any order (`exported_version` may be absent: it is set to `version`). A stored version
    whose values are unchanged is left alone. Returns the rows inserted or updated.

    Raises StaleVersionError when `version` is not newer than the exported one (see `needs_export`), and
    InputError when PostgreSQL refuses the rows; either way nothing is committed. `crash_hook` runs after
    the rows are written and before the bookkeeping moves (tests simulate crashes there).
    """
    entity = _entity(table)
    _check_schema(schema)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a Delta table version (an int >= 0), got {version!r}")
    if not delta_path or not run_id:
        raise ValueError("delta_path and run_id must be non-empty: they are recorded in the bookkeeping")
    _require_idle(conn)
    columns = [c for c in pg_columns(table) if c != "exported_version"]
    target, stage = sql.Identifier(schema, table), sql.Identifier(f"lakehouse_stage_{table}")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", _lock_key("table", f"{schema}.{table}"))
        _refuse_stale(cur, schema, table, version, delta_path)
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                stage, _names(columns), target
            )
        )
        try:
            received = _copy_csv(cur, stage, columns, _batches(rows, columns, table))
            written = cur.execute(_upsert(entity, target, stage, columns), {"version": version}).rowcount
        except psycopg.errors.CardinalityViolation:
            raise InputError(
                "two rows share a (key, effective_stp): rows must be one per history version. "
                f"Nothing was committed; {schema}.{table} stays at its last exported version",
                table=table,
            ) from None
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            where = f" ({exc.diag.context.strip()})" if exc.diag.context else ""
            raise InputError(
                f"PostgreSQL refused the rows: {exc.diag.message_primary}{where}. "
                f"Nothing was committed; {schema}.{table} stays at its last exported version",
                table=table,
            ) from None
        if crash_hook is not None:
            crash_hook()
        _record(cur, schema, table, delta_path, version, run_id, received, written)
    return written


def _upsert(entity: Entity, target: sql.Identifier, stage: sql.Identifier, columns: list[str]) -> sql.Composed:
    key = [*entity.primary_key, "effective_stp"]
    values = [c for c in columns if c not in key]
    return sql.SQL(
        # In key order: the B-tree inserts then append to few pages instead of splitting pages at random.
        "INSERT INTO {target} AS t ({columns}, exported_version) SELECT {columns}, %(version)s FROM {stage} "
        "ORDER BY {key} ON CONFLICT ({key}) DO UPDATE SET {sets}, exported_version = EXCLUDED.exported_version "
        "WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        target=target,
        stage=stage,
        columns=_names(columns),
        key=_names(key),
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values),
        old=sql.SQL(", ").join(sql.Identifier("t", c) for c in values),
        new=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in values),
    )


def _refuse_stale(cur: psycopg.Cursor, schema: str, table: str, version: int, delta_path: str) -> None:
    row = _bookkeeping(cur, schema, table, lock=True)
    if row is None:
        return
    last, last_path = row
    if last_path != delta_path:
        raise InputError(
            f"{schema}.{table} was exported from {last_path}, not {delta_path}: versions of two Delta tables "
            f"are not comparable. If the table moved, update {schema}.{EXPORT_TABLE}.delta_path, then rerun",
            table=table,
        )
    if version <= last:
        raise StaleVersionError(
            f"{schema}.{table} already holds Delta version {last}; version {version} is not newer. "
            "Nothing was written (skip tables for which needs_export() is False)"
        )


def _record(
    cur: psycopg.Cursor, schema: str, table: str, path: str, version: int, run_id: str, received: int, written: int
) -> None:
    done = cur.execute(
        sql.SQL(
            "INSERT INTO {} AS e (table_name, delta_path, exported_version, rows_received, rows_written, "
            "exported_at, run_id) VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s) "
            "ON CONFLICT (table_name) DO UPDATE SET delta_path = EXCLUDED.delta_path, "
            "exported_version = EXCLUDED.exported_version, rows_received = EXCLUDED.rows_received, "
            "rows_written = EXCLUDED.rows_written, exported_at = EXCLUDED.exported_at, run_id = EXCLUDED.run_id "
            "WHERE e.exported_version < EXCLUDED.exported_version"
        ).format(sql.Identifier(schema, EXPORT_TABLE)),
        (table, path, version, received, written, run_id),
    )
    if done.rowcount != 1:  # unreachable under the table lock; kept as the last line of defence
        raise StaleVersionError(f"{schema}.{table} moved past version {version} during this export; rolled back")


def _batches(rows: pa.Table | Iterable[pa.RecordBatch], columns: list[str], table: str) -> Iterator[pa.RecordBatch]:
    """The rows as batches of at most 50k rows with exactly `columns`, timestamps as naive UTC."""
    source = rows.to_batches(max_chunksize=50_000) if isinstance(rows, pa.Table) else rows
    for batch in source:
        names = set(batch.schema.names) - {"exported_version"}
        if names != set(columns):
            raise InputError(
                f"the rows' columns differ from the table's: missing {sorted(set(columns) - names)}, "
                f"unexpected {sorted(names - set(columns))}",
                table=table,
            )
        arrays = []
        for name in columns:
            array = batch.column(name)
            if pa.types.is_timestamp(array.type) and array.type.tz is not None:
                array = array.cast(pa.timestamp(array.type.unit))  # the stored instant, i.e. UTC
            arrays.append(array)
        yield pa.RecordBatch.from_arrays(arrays, names=columns)


def _copy_csv(cur: psycopg.Cursor, stage: sql.Identifier, columns: list[str], batches: Iterable[pa.RecordBatch]) -> int:
    """COPY the batches as CSV that Arrow writes in C++ (an unquoted empty field is NULL, "" an empty string)."""
    received = 0
    options = pa_csv.WriteOptions(include_header=False)
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(stage, _names(columns))) as copy:
        for batch in batches:
            buffer = io.BytesIO()
            pa_csv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
            received += batch.num_rows
    return received


def row_by_row_baseline(
    conn: psycopg.Connection, schema: str, table: str, rows: pa.Table | Iterable[pa.RecordBatch], *, version: int = 0
) -> int:
    """ID304B's way, for benchmarks only: per row, SELECT the stored version by key, then UPDATE or INSERT it,
    committed on its own (two round trips and a commit per row). Same end state as `apply_rows`, without
    the bookkeeping; returns rows written."""
    entity = _entity(table)
    columns = [c for c in pg_columns(table) if c != "exported_version"]
    key = [*entity.primary_key, "effective_stp"]
    values = [c for c in columns if c not in key]
    target = sql.Identifier(schema, table)
    match = sql.SQL(" AND ").join(sql.SQL("{} = %({})s").format(sql.Identifier(c), sql.SQL(c)) for c in key)
    select = sql.SQL("SELECT {} FROM {} WHERE {}").format(_names(values), target, match)
    update = sql.SQL("UPDATE {} SET {}, exported_version = %(exported_version)s WHERE {}").format(
        target, sql.SQL(", ").join(sql.SQL("{} = %({})s").format(sql.Identifier(c), sql.SQL(c)) for c in values), match
    )
    insert = sql.SQL("INSERT INTO {} ({}, exported_version) VALUES ({}, %(exported_version)s)").format(
        target, _names(columns), sql.SQL(", ").join(sql.SQL("%({})s").format(sql.SQL(c)) for c in columns)
    )
    written = 0
    for batch in _batches(rows, columns, table):
        for row in batch.to_pylist():
            row["exported_version"] = version
            stored = conn.execute(select, row).fetchone()
            if stored is None:
                conn.execute(insert, row)
            elif stored != tuple(row[c] for c in values):
                conn.execute(update, row)
            else:
                continue
            if not conn.autocommit:
                conn.commit()
            written += 1
    return written


# --- helpers --------------------------------------------------------------------------------------

_SCHEMA = re.compile(r"^[^\x00]{1,63}$")


def _entity(table: str) -> Entity:
    if table not in ENTITIES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(ENTITIES)}")
    return ENTITIES[table]


def _check_schema(schema: str) -> None:
    if not isinstance(schema, str) or not _SCHEMA.match(schema) or len(schema.encode()) > 63:
        raise ConfigError(f"schema name {schema!r} is not usable: expected 1 to 63 bytes", key="schema")


def _require_idle(conn: psycopg.Connection) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise LakehouseError(
            "the connection has an open transaction; commit or roll it back first: "
            "the sink runs its own transactions so that an export commits as a whole"
        )


def _names(columns: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))
