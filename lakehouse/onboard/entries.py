"""A DMS task's table mappings applied to the source tables' columns → the YAML entries of those tables.

The file layout DMS writes for a table (after `Op`): the TimestampColumnName column, the table's
columns in table order (renamed / removed by the transformation rules), the add-column rules' columns
in rule order ($AR_H_CHANGE_SEQ is the change-seq column), then the before-image columns (prefix +
column, for the primary key, the non-LOB columns or all of them). Rules match by source names
(`%` is a wildcard). With AddColumnName=true each file's header says the layout anyway; that is the
setting to prefer. Unsupported rules and settings are errors that say which rule or setting it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakehouse.errors import ConfigError
from lakehouse.onboard.columns import SourceTable, read_columns
from lakehouse.onboard.dms_columns import column_warnings, is_lob, unbounded_numeric
from lakehouse.onboard.given import check_given
from lakehouse.onboard.task import DmsTask, check_target, read_task, task_warnings
from lakehouse.sources.db_types import DIALECTS, spark_type, written_type

CHANGE_SEQ = "$ar_h_change_seq"
_RENAMES = {"rename", "convert-lowercase", "convert-uppercase", "add-prefix", "remove-prefix", "replace-prefix",
            "add-suffix", "remove-suffix", "replace-suffix"}  # fmt: skip


def _like(pattern: str | None, name: str) -> bool:
    """DMS object-locator matching: `%` is any run of characters; case-insensitive."""
    if pattern is None:
        return True
    regex = ".*".join(re.escape(part) for part in str(pattern).split("%"))
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


def _on(rule: dict[str, Any], schema: str, table: str, column: str | None = None) -> bool:
    loc = rule.get("object-locator") or {}
    return (
        _like(loc.get("schema-name"), schema)
        and _like(loc.get("table-name"), table)
        and (column is None or _like(loc.get("column-name"), column))
    )


def _renamed(name: str, rule: dict[str, Any]) -> str:
    action, value, old = rule["rule-action"], str(rule.get("value", "")), str(rule.get("old-value", ""))
    return {
        "rename": value,
        "convert-lowercase": name.lower(),
        "convert-uppercase": name.upper(),
        "add-prefix": value + name,
        "remove-prefix": name.removeprefix(value),
        "replace-prefix": value + name.removeprefix(old) if name.startswith(old) else name,
        "add-suffix": name + value,
        "remove-suffix": name.removesuffix(value),
        "replace-suffix": name.removesuffix(old) + value if name.endswith(old) else name,
    }[action]


def selected(task: DmsTask, tables: dict[tuple[str, str], SourceTable]) -> list[SourceTable]:
    """The tables the task's selection rules include and do not exclude."""
    rules = [r for r in task.rules if r.get("rule-type") == "selection"]
    chosen = []
    for (schema, name), table in sorted(tables.items()):
        actions = {r.get("rule-action") for r in rules if _on(r, schema, name)}
        if actions & {"include", "explicit"} and "exclude" not in actions:
            chosen.append(table)
    return chosen


def _spark(declared: str, dialect: str, where: str, fix: str, number_scale: int | None = None) -> str:
    """The Spark type of `declared`, or a ConfigError naming it and what to do (`fix`)."""
    spark = spark_type(declared, dialect, number_scale=number_scale)
    if spark is None:
        raise ConfigError(f"{where}: type {declared!r} has no Spark type mapping; {fix}")
    return spark


def _type_fix(table: str, column: str) -> str:
    return (
        f"run onboarding again with --type {table}.{column}=TYPE (repeatable): a type that holds its values as DMS "
        "writes them (string holds any), written as the YAML's `columns:` take it"
    )


_DMS_TYPE_FIX = (
    "give the rule one of DMS's data types (string, int4, int8, numeric with precision and scale, datetime…)"
)


def _dms_type(data_type: dict[str, Any]) -> str:
    base = str(data_type.get("type", "string"))
    if data_type.get("precision") is not None:
        return f"{base}({data_type['precision']},{data_type.get('scale', 0)})"
    return base


def table_entry(
    task: DmsTask,
    table: SourceTable,
    key: list[str] | None = None,
    landing: str | None = None,
    types_given: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(target table name, YAML entry) of one source table under the task's transformation rules.

    `landing` replaces `s3://<BucketName>` in the path (e.g. a local folder the files were copied to);
    `types_given` are types for columns by name (`--type`), read as the source's dialect reads them.
    """
    where = f"task {task.identifier}, table {table.schema}.{table.name}"
    schema, name = table.schema, table.name
    names = {c: c for c, _ in table.columns}
    # the type as the source, --type or a change-data-type rule names it
    declared = {c: (types_given or {}).get(c, t) for c, t in table.columns}
    types = {
        c: _spark(t, task.dialect, f"{where}, column {c}", _type_fix(table.name, c), task.number_scale)
        for c, t in declared.items()
    }
    lob = {c for c, t in table.columns if is_lob(t, task.dialect)}  # by the source's type: what DMS sees
    removed: set[str] = set()
    added: list[tuple[str, str, str, str]] = []  # name, Spark type, expression, DMS type
    before: dict[str, Any] | None = None
    primary_key = key or table.primary_key
    for rule in (r for r in task.rules if r.get("rule-type") == "transformation"):
        target, action = rule.get("rule-target"), rule.get("rule-action")
        if not _on(rule, table.schema, table.name):
            continue
        if target == "schema" and action in _RENAMES:
            schema = _renamed(schema, rule)
        elif target == "table" and action in _RENAMES:
            name = _renamed(name, rule)
        elif target == "table" and action == "define-primary-key" and not key:
            primary_key = list((rule.get("primary-key-def") or {}).get("columns", []))
        elif target == "column" and action == "add-column":
            expression = str(rule.get("expression", ""))
            if not rule.get("value"):
                raise ConfigError(f"{where}: add-column rule {rule.get('rule-id')} has no value (the column's name)")
            dms = _dms_type(rule.get("data-type") or {})
            at = f"{where}, add-column rule {rule.get('rule-id')}"
            added.append((str(rule["value"]), _spark(dms, "dms", at, _DMS_TYPE_FIX), expression, dms))
        elif target == "column" and action == "add-before-image-columns":
            before = rule.get("before-image-def") or {}
        elif target == "column" and action in (*_RENAMES, "remove-column", "change-data-type"):
            for column in [c for c, _ in table.columns if _on(rule, table.schema, table.name, c)]:
                if action == "remove-column":
                    removed.add(column)
                elif action == "change-data-type":
                    declared[column] = _dms_type(rule.get("data-type") or {})
                    at = f"{where}, change-data-type rule {rule.get('rule-id')}, column {column}"
                    types[column] = _spark(declared[column], "dms", at, _DMS_TYPE_FIX)
                else:
                    names[column] = _renamed(names[column], rule)
        elif target in ("schema", "table", "column"):
            raise ConfigError(
                f"{where}: transformation rule {rule.get('rule-id')} ({target} {action}) is not supported by "
                "onboarding; write that table's entry by hand"
            )
    kept = [c for c, _ in table.columns if c not in removed]
    columns: dict[str, str] = {}
    if task.target.timestamp_column:
        columns[task.target.timestamp_column] = "string"
    # Written so that the configuration reads each back as the type it is here under the source's dialect (a SQL
    # Server datetime2 is a timestamp, but `timestamp` is SQL Server's row version).
    columns.update({names[c]: written_type(types[c], task.dialect, declared[c]) for c in kept})
    columns.update({n: written_type(t, task.dialect, dms) for n, t, _, dms in added})
    folder = f"{task.target.folder}/" if task.target.folder else ""
    path = f"{landing or f's3://{task.target.bucket}'}/{folder}{schema}/{name}"
    source: dict[str, Any] = {"kind": "dms", "path": path, "format": task.target.data_format}
    if task.target.data_format == "csv":
        source["header"] = task.target.add_column_name
        if task.target.delimiter != ",":
            source["delimiter"] = task.target.delimiter
        if task.target.null_value is not None:
            source["null_value"] = task.target.null_value
    if task.target.use_no_sup_value:
        source["no_sup_value"] = task.target.no_sup_value
    source["op_in_full_load"] = task.target.include_op_for_full_load
    if task.target.timestamp_column:
        source["timestamp_column"] = task.target.timestamp_column
    change_seq = [n for n, _, e, _ in added if e.strip().lower() == CHANGE_SEQ]
    if change_seq:
        source["change_seq_column"] = change_seq[0]
    unknown_key = [k for k in primary_key if k not in names and k not in names.values()]
    if not primary_key or unknown_key:
        raise ConfigError(
            f"{where}: no primary key" + (f" (unknown columns {unknown_key})" if unknown_key else "")
            + f"; mark it in the column list or pass --key {table.name}=col1,col2"
        )  # fmt: skip
    key_names = [names.get(k, k) for k in primary_key]
    if before is not None:
        prefix, suffix = str(before.get("column-prefix", "BI_")), str(before.get("column-suffix", ""))
        if suffix or not prefix:
            raise ConfigError(f"{where}: before-image columns need a column-prefix and no column-suffix here")
        chosen = {"pk-only": [c for c in kept if names[c] in key_names], "non-lob": [c for c in kept if c not in lob]}
        for c in chosen.get(str(before.get("column-filter", "pk-only")), kept):
            columns[prefix + names[c]] = written_type(types[c], task.dialect, declared[c])
        source["before_image_prefix"] = prefix
    if task.dialect in DIALECTS:
        source["dialect"] = task.dialect  # the database whose type names `columns` may use
    source["columns"] = columns
    return name, {"primary_key": key_names, "source": source}


def yaml_name(name: str) -> str:
    """A table name the configuration accepts: lower_snake_case."""
    snake = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    return snake if re.match(r"[a-z]", snake) else f"t_{snake}"


def onboard_dms(
    endpoints: Path,
    tasks: Path,
    columns: Path,
    *,
    task_id: str | None = None,
    landing: str | None = None,
    keys: dict[str, list[str]] | None = None,
    types: dict[str, dict[str, str]] | None = None,
) -> str:
    """The `tables:` YAML of every table the task replicates, checked by the configuration's own models.

    `keys` gives tables' primary keys, `types` columns' types (`{table: {column: type}}`, a type as the YAML's
    `columns:` take it under the source's dialect), both by the names the column list spells.
    """
    task = read_task(endpoints, tasks, task_id)
    warnings = check_target(task.target, task.dialect)
    tables = selected(task, read_columns(columns))
    if not tables:
        raise ConfigError(f"no table of {columns} is selected by the selection rules of task {task.identifier}")
    check_given(keys or {}, types or {}, tables, task)
    lobs = [f"{t.name}.{c}" for t in tables for c, declared in t.columns if is_lob(declared, task.dialect)]
    warnings += task_warnings(task, lobs)
    warnings += column_warnings(
        [f"{t.name}.{c}" for t in tables for c, declared in t.columns if unbounded_numeric(declared, task.dialect)]
    )
    entries: dict[str, dict[str, Any]] = {}
    for table in tables:
        key, given = (keys or {}).get(table.name), (types or {}).get(table.name)
        name, entry = table_entry(task, table, key, landing.rstrip("/") if landing else None, given)
        name = yaml_name(name)
        entries[yaml_name(f"{table.schema}_{name}") if name in entries else name] = entry
    _validate(entries)
    return _render(task, entries, warnings)


def _validate(entries: dict[str, dict[str, Any]]) -> None:
    from lakehouse.config import Config

    try:
        Config.model_validate({"paths": {"landing": "l", "lake": "k", "checkpoints": "c"}, "tables": entries})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"the generated entries do not validate: {problems}") from None


def _render(task: DmsTask, entries: dict[str, dict[str, Any]], warnings: list[str]) -> str:
    t = task.target
    settings = (
        f"DataFormat={t.data_format}, AddColumnName={str(t.add_column_name).lower()}, IncludeOpForFullLoad="
        f"{str(t.include_op_for_full_load).lower()}, TimestampColumnName={t.timestamp_column or '-'}"
    )
    header = [
        f"# Generated by `lakehouse onboard dms` from task {task.identifier} (source: {task.dialect or 'unknown'};",
        f"# S3 target s3://{t.bucket}/{t.folder}: {settings}).",
        "# Columns are in the order DMS writes them after Op. Add `consent:` / `phi_columns:` where a table",
        "# holds PHI, and the `paths:` of your environment.",
        *(f"# WARNING: {w}." for w in warnings),
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump({"tables": entries}, sort_keys=False, allow_unicode=True)
