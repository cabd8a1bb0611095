"""The source tables' column lists, as a database catalog prints them (CSV with a header, or JSON).

Field names are those of the catalogs, any case: PostgreSQL / MySQL / SQL Server `information_schema.
columns` (table_schema, table_name, column_name, ordinal_position, data_type, character_maximum_length,
numeric_precision, numeric_scale; PostgreSQL's udt_name; MySQL's column_type and column_key), Oracle
ALL_TAB_COLUMNS (owner, table_name, column_name, column_id, data_type, data_precision, data_scale). The
primary key comes from a `column_key` of PRI (MySQL) or a `primary_key` / `is_primary_key` / `pk` field
(true, or the column's position in the key); `--key` on the command line names it otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.errors import ConfigError
from lakehouse.onboard.task import read_text
from lakehouse.sources.db_types import spark_type

_FIELDS = {
    "schema": ("table_schema", "owner", "schema", "schema_name"),
    "table": ("table_name", "table"),
    "column": ("column_name", "column", "name"),
    "position": ("ordinal_position", "column_id", "position"),
    "full_type": ("column_type",),
    "type": ("data_type", "type", "udt_name"),
    "udt": ("udt_name",),
    "length": ("character_maximum_length",),
    "precision": ("numeric_precision", "data_precision", "precision"),
    "scale": ("numeric_scale", "data_scale", "scale"),
    "key": ("primary_key", "is_primary_key", "pk", "column_key", "key"),
}
_SIZED = {"numeric", "decimal", "number", "dec", "float"}


@dataclass
class SourceTable:
    """One source table: its columns in table order (name, declared type) and primary key."""

    schema: str
    name: str
    columns: list[tuple[str, str]] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)


def _pick(row: dict[str, Any], name: str) -> Any:
    for alias in _FIELDS[name]:
        value = row.get(alias)
        if value not in (None, ""):
            return value
    return None


def _declared(row: dict[str, Any]) -> str:
    """The type as declared: MySQL's column_type, else data_type with precision and scale where they count.

    PostgreSQL's data_type says only ARRAY or USER-DEFINED for arrays, enums, composites and extension types;
    its udt_name says which (`_int4` is an int4 array): an array is given as its udt_name, a user-defined type
    as its udt_name where that names a text type (hstore, citext…), else as `user-defined <udt_name>`, which
    is text too (an enum named `date` is not a date). bit and bit varying keep their length. A NUMBER with a scale
    and no precision (Oracle's INTEGER: DATA_PRECISION NULL, DATA_SCALE 0) is `NUMBER(*,0)`.
    """
    if _pick(row, "full_type"):
        return str(_pick(row, "full_type"))
    base = str(_pick(row, "type") or "")
    udt, length = _pick(row, "udt"), _pick(row, "length")
    if base.lower() == "array":
        return str(udt) if udt else "array"
    if base.lower() == "user-defined":
        known = udt is not None and spark_type(str(udt), "postgres") == "string"
        return str(udt) if known else f"user-defined {udt or ''}".strip()
    if base.lower() in ("bit", "bit varying") and length is not None:
        return f"{base}({length})"
    precision, scale = _pick(row, "precision"), _pick(row, "scale")
    if base.lower() not in _SIZED or "(" in base:
        return base
    if precision is None:
        # Oracle's INTEGER is NUMBER(*,0): no precision, scale 0 (NUMBER(*,s) likewise). It keeps its scale: DMS's
        # NumberDatatypeScale is for a NUMBER with neither, and decimal(38,10) or double would hold ids otherwise.
        return f"{base}(*,{scale})" if scale is not None and base.lower() != "float" else base
    if scale is None or base.lower() == "float":
        return f"{base}({precision})"
    return f"{base}({precision},{scale})"


def _key_rank(value: Any) -> int | None:
    """The column's place in the primary key (1-based) from a flag or a position; None if not a key column."""
    text = str(value).strip().lower() if value is not None else ""
    if text.isdigit() and text not in ("0", "1"):
        return int(text)
    return 1 if text in ("1", "true", "t", "y", "yes", "pri", "p") else None


def _rows(path: Path) -> list[dict[str, Any]]:
    text = read_text(path, "column list", encoding="utf-8-sig")
    if str(path).lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"column list {path} is not JSON: {exc}") from None
        rows = data.get("columns", data.get("rows", [])) if isinstance(data, dict) else data
    else:
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise ConfigError(f"column list {path} is not CSV: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"column list {path}: expected rows of fields (a CSV header, or a JSON list of objects)")
    return [{str(k).strip().lower(): v for k, v in r.items()} for r in rows]


def _position(value: Any, default: int, where: str) -> int:
    """A column's place in its table (ordinal_position / column_id), 1-based; the row's place when absent."""
    if value is None:
        return default
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ConfigError(
            f"{where}: ordinal_position (or column_id) is {value!r}; expected the column's place in its table, "
            "a whole number (1 for the first column)"
        )
    return int(number)


def read_columns(path: Path) -> dict[tuple[str, str], SourceTable]:
    """The tables of a column list, keyed by (schema, table) as the source names them, columns in table order."""
    found: dict[tuple[str, str], list[tuple[int, str, str, int | None]]] = {}
    for i, row in enumerate(_rows(path)):
        schema, table, column = _pick(row, "schema"), _pick(row, "table"), _pick(row, "column")
        if not (schema and table and column):
            raise ConfigError(f"column list {path}, row {i + 1}: needs a schema, a table and a column name; got {row}")
        declared = _declared(row)
        if not declared:
            raise ConfigError(f"column list {path}, row {i + 1}: column {table}.{column} has no data type")
        position = _position(_pick(row, "position"), i + 1, f"column list {path}, row {i + 1} ({table}.{column})")
        found.setdefault((str(schema), str(table)), []).append(
            (position, str(column), declared, _key_rank(_pick(row, "key")))
        )
    tables = {}
    for (schema, table), columns in found.items():
        columns.sort()
        key = sorted((rank, position, name) for position, name, _, rank in columns if rank is not None)
        tables[(schema, table)] = SourceTable(
            schema=schema,
            name=table,
            columns=[(name, declared) for _, name, declared, _ in columns],
            primary_key=[name for _, _, name in key],
        )
    return tables
