"""What every part of the PostgreSQL sink shares: table names, the open end, and small checks."""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg
from psycopg import sql

from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.sources.opais_entities import ENTITIES, Entity

EXPORT_TABLE = "lakehouse_export"
OPEN_END = "9999-12-31 23:59:59"  # ID304B's open-ended expiration, kept for its consumers

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
