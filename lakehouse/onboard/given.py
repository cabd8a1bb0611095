"""What the operator gives `lakehouse onboard dms` on the command line: tables' keys (`--key`) and columns' types
(`--type`), parsed and checked against the tables the task replicates (a misspelt name would be ignored silently).
"""

from __future__ import annotations

import difflib
from typing import Any

from lakehouse.errors import ConfigError
from lakehouse.onboard.columns import SourceTable
from lakehouse.onboard.task import DmsTask
from lakehouse.sources.db_types import spark_type


def parse_keys(items: list[str]) -> dict[str, list[str]]:
    """`--key TABLE=COL[,COL]` options → {table: [columns]}.

    >>> parse_keys(["orders=order_id", "lines=order_id, line_no"])
    {'orders': ['order_id'], 'lines': ['order_id', 'line_no']}
    """
    keys = {}
    for item in items:
        table, _, columns = item.partition("=")
        if not table.strip() or not columns.strip():
            raise ConfigError(f"--key {item!r}: expected TABLE=COL[,COL]")
        keys[table.strip()] = [c.strip() for c in columns.split(",")]
    return keys


def parse_types(items: list[str]) -> dict[str, dict[str, str]]:
    """`--type TABLE.COLUMN=TYPE` options → {table: {column: type}}; the type may hold commas and brackets.

    >>> parse_types(["readings.period=string", "readings.amount=numeric(12,2)"])
    {'readings': {'period': 'string', 'amount': 'numeric(12,2)'}}
    """
    types: dict[str, dict[str, str]] = {}
    for item in items:
        name, _, type_ = item.partition("=")
        table, _, column = name.strip().rpartition(".")
        if not table.strip() or not column.strip() or not type_.strip():
            raise ConfigError(f"--type {item!r}: expected TABLE.COLUMN=TYPE, e.g. --type readings.period=string")
        types.setdefault(table.strip(), {})[column.strip()] = type_.strip()
    return types


def _close(name: str, names: list[str]) -> str:
    close = [n for n in names if n.lower() == name.lower()] or difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_tables(option: str, given: dict[str, Any], tables: list[SourceTable], task: str) -> None:
    names = sorted({t.name for t in tables})
    unknown = [name for name in given if name not in names]
    if not unknown:
        return
    form = "=..." if option == "--key" else ".COLUMN=..."
    hints = [f"{option} {name}{form}{_close(name, names)}" for name in unknown]
    raise ConfigError(
        f"{', '.join(hints)}: no such table among those task {task} replicates, which are {names} (their names "
        f"in the source, as the column list spells them); fix the name or drop the {option}"
    )


SPARK_ALIASES = {"integer": "int", "long": "bigint"}  # Spark's other names of one type


def check_given(
    keys: dict[str, list[str]], types: dict[str, dict[str, str]], tables: list[SourceTable], task: DmsTask
) -> None:
    """Refuse a --key or --type for a table the task does not replicate, a --type for a column its table lacks, and
    a --type the configuration would not read under the source's dialect."""
    _check_tables("--key", keys, tables, task.identifier)
    _check_tables("--type", types, tables, task.identifier)
    for table in tables:
        columns = [c for c, _ in table.columns]
        for column, type_ in types.get(table.name, {}).items():
            given = f"--type {table.name}.{column}={type_}"
            if column not in columns:
                raise ConfigError(
                    f"{given}: table {table.name} has no column {column}{_close(column, columns)}; its columns are "
                    f"{columns}"
                )
            read = spark_type(type_, task.dialect)
            if read is None:
                raise ConfigError(
                    f"{given}: {type_!r} is no type the configuration reads (source: {task.dialect or 'unknown'}); "
                    "give one of the source's own types (varchar(40), numeric(10,2)…) or string"
                )
            plain = spark_type(type_)  # the name as Spark's own, if it is one
            spark = SPARK_ALIASES.get(plain, plain) if plain is not None else None
            if spark is not None and read != spark:  # a name both know (timestamp, date, float) read the source's way
                raise ConfigError(
                    f"{given}: the configuration reads {type_!r} as this source's type, {read}, not Spark's {spark}; "
                    f"give the source's own type for {spark} (or {read} if that is what you meant)"
                )
