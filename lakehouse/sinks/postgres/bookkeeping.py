"""The export lock (a session advisory lock per schema) and the exported Delta version of each table."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from lakehouse.errors import LakehouseError, RetryableError
from lakehouse.sinks.postgres.base import EXPORT_TABLE, _check_schema, _entity, _require_idle

_LOCK_CLASS = 0x4C4B4845  # "LKHE": the first key of every advisory lock this module takes


class ExportBusyError(RetryableError):
    """Another export into the same schema holds the export lock. Nothing was exported; retry later."""


class StaleVersionError(LakehouseError):
    """The Delta version is not newer than the one already exported; nothing was written."""


class ExportedState(NamedTuple):
    """A table's bookkeeping row: the last exported Delta version, the table's path, its Delta table id and the digest
    of the exported version's commit (each None in a row written before it was kept)."""

    version: int
    delta_path: str
    delta_table_id: str | None
    delta_commit: str | None = None


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
    state = exported_state(conn, schema, table)
    return None if state is None else state.version


def exported_state(conn: psycopg.Connection, schema: str, table: str) -> ExportedState | None:
    """The bookkeeping row of `schema.table` (version, Delta path, Delta table id), or None before the first export."""
    _entity(table)
    with conn.transaction(), conn.cursor() as cur:
        return _bookkeeping(cur, schema, table, lock=False)


def needs_export(conn: psycopg.Connection, schema: str, table: str, version: int) -> bool:
    """True when `version` is newer than the exported one: the check `apply_rows` enforces, for callers to skip."""
    last = exported_version(conn, schema, table)
    return last is None or version > last


def _bookkeeping(cur: psycopg.Cursor, schema: str, table: str, *, lock: bool) -> ExportedState | None:
    query = sql.SQL(
        "SELECT exported_version, delta_path, delta_table_id, delta_commit FROM {}.{} WHERE table_name = %s{}"
    ).format(sql.Identifier(schema), sql.Identifier(EXPORT_TABLE), sql.SQL(" FOR UPDATE" if lock else ""))
    try:
        row = cur.execute(query, (table,)).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        raise LakehouseError(
            f"{schema}.{EXPORT_TABLE} does not exist or predates this version: run init_db(conn, {schema!r}) first"
        ) from None
    return None if row is None else ExportedState(*row)
