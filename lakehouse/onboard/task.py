"""A DMS task as `aws dms describe-endpoints` and `aws dms describe-replication-tasks` print it.

Only what shapes the files matters here: the S3 target endpoint's settings (S3Settings, or the older
ExtraConnectionAttributes string), the source endpoint's engine (which names its column types) and, for
Oracle, its NumberDatatypeScale (the scale DMS writes a NUMBER without precision with), and the task's
table mappings (a JSON document inside the task's `TableMappings` string).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.errors import ConfigError
from lakehouse.sources.db_types import NUMBER_SCALES

# DMS EngineName → the dialect of `sources.db_types`.
DIALECTS = {
    "postgres": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "aurora": "mysql",
    "mariadb": "mysql",
    "oracle": "oracle",
    "sqlserver": "sqlserver",
    "azuredb": "sqlserver",
    "azure-sql-managed-instance": "sqlserver",
}


@dataclass(frozen=True)
class S3Target:
    """The S3 target endpoint settings that decide what the files look like and where they land."""

    bucket: str
    folder: str = ""
    data_format: str = "csv"
    add_column_name: bool = False
    include_op_for_full_load: bool = False
    timestamp_column: str | None = None
    delimiter: str = ","
    null_value: str | None = None
    use_no_sup_value: bool = False
    no_sup_value: str | None = None
    cdc_inserts_only: bool = False
    cdc_inserts_and_updates: bool = False
    preserve_transactions: bool = False
    rfc4180: bool = True
    row_delimiter: str = "\n"
    file_time_zone: str | None = None  # DatePartitionTimezone with DatePartitionEnabled: CDC file names' zone


@dataclass(frozen=True)
class DmsTask:
    """One replication task: its identifier, source dialect, S3 target and table-mapping rules."""

    identifier: str
    dialect: str
    target: S3Target
    rules: list[dict[str, Any]] = field(default_factory=list)
    migration_type: str = "full-load-and-cdc"
    settings: dict[str, Any] = field(default_factory=dict)  # ReplicationTaskSettings, parsed
    number_scale: int | None = None  # an Oracle source's NumberDatatypeScale; None: DMS's default (10)


def read_text(path: Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of a file the user named, or a ConfigError saying why it cannot be read (`what` names it)."""
    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {Path(path).resolve()}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {Path(path).resolve()} is a folder: pass the file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def _json(path: Path, what: str, key: str) -> dict[str, Any]:
    """The JSON object of an `aws dms describe-*` output, checked to hold a list of objects under `key`."""
    try:
        document = json.loads(read_text(path, f"{what} file"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(
            f"{what} file {path} holds a JSON {_kind(document)}; expected the object `aws dms {what}` prints, "
            f'{{"{key}": [...]}}'
        )
    items = document.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{what} file {path}: {key} must be a list of objects, as `aws dms {what}` prints it")
    return document


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "y", "yes", "1")


def _settings(endpoint: dict[str, Any], kind: str = "S3Settings") -> dict[str, Any]:
    """The endpoint's `kind` settings (S3Settings, OracleSettings) with lower-case keys, completed from
    ExtraConnectionAttributes (`key=value;...`)."""
    given = endpoint.get(kind) or {}
    if not isinstance(given, dict):
        raise ConfigError(f"endpoint {endpoint.get('EndpointIdentifier')}: {kind} must be an object")
    settings = {k.lower(): v for k, v in given.items()}
    for pair in str(endpoint.get("ExtraConnectionAttributes") or "").split(";"):
        key, _, value = pair.partition("=")
        if key.strip():
            settings.setdefault(key.strip().lower(), value.strip())
    return settings


def _number_scale(endpoint: dict[str, Any]) -> int | None:
    """An Oracle source endpoint's NumberDatatypeScale (OracleSettings, or numberDataTypeScale= in its
    ExtraConnectionAttributes), or None where it is not set (DMS then writes a NUMBER without precision with 10
    digits after the point)."""
    value = _settings(endpoint, "OracleSettings").get("numberdatatypescale")
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]+", text) or int(text) not in NUMBER_SCALES:
        raise ConfigError(
            f"source endpoint {endpoint.get('EndpointIdentifier')}: NumberDatatypeScale {value!r} is not one DMS "
            f"takes (0..{NUMBER_SCALES[-1]}, -1 or -2); fix it in the endpoint's OracleSettings or "
            "ExtraConnectionAttributes (numberDataTypeScale=)"
        )
    return int(text)


def _unescaped(text: str) -> str:
    """A CSV setting as DMS takes it: describe-endpoints and ExtraConnectionAttributes write a tab, a newline or a
    carriage return escaped (`\\t`, `\\n`, `\\r`)."""
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def _target(endpoint: dict[str, Any]) -> S3Target:
    s = _settings(endpoint)
    if not s.get("bucketname"):
        raise ConfigError(f"target endpoint {endpoint.get('EndpointIdentifier')} has no S3Settings.BucketName")
    data_format = str(s.get("dataformat") or "csv").lower()
    if data_format not in ("csv", "parquet"):
        raise ConfigError(f"S3Settings DataFormat {data_format!r} is not supported: use csv or parquet")
    return S3Target(
        bucket=str(s["bucketname"]),
        folder=str(s.get("bucketfolder") or "").strip("/"),
        data_format=data_format,
        add_column_name=_flag(s.get("addcolumnname", False)),
        include_op_for_full_load=_flag(s.get("includeopforfullload", False)),
        timestamp_column=str(s["timestampcolumnname"]) if s.get("timestampcolumnname") else None,
        delimiter=_unescaped(str(s.get("csvdelimiter") or ",")),
        # CsvNullValue "" (describe-endpoints prints the default so) is the default: an empty field is NULL.
        null_value=str(s["csvnullvalue"]) if s.get("csvnullvalue") else None,
        # CSV only: DMS writes no marker into Parquet, whatever the setting says (a NULL for an unlogged column).
        use_no_sup_value=_flag(s.get("usecsvnosupvalue", False)) and data_format == "csv",
        no_sup_value=str(s["csvnosupvalue"]) if s.get("csvnosupvalue") else None,
        cdc_inserts_only=_flag(s.get("cdcinsertsonly", False)),
        cdc_inserts_and_updates=_flag(s.get("cdcinsertsandupdates", False)),
        preserve_transactions=_flag(s.get("preservetransactions", False)),
        rfc4180=_flag(s.get("rfc4180", True)),
        # describe-endpoints prints the default as the escaped text "\\n".
        row_delimiter=_unescaped(str(s.get("csvrowdelimiter") or "\n")),
        file_time_zone=(
            str(s["datepartitiontimezone"])
            if _flag(s.get("datepartitionenabled", False)) and s.get("datepartitiontimezone")
            else None
        ),
    )


def check_target(t: S3Target, dialect: str | None = None) -> list[str]:
    """Refuse the settings whose files the engine cannot read right; the warnings for those it can read.

    Raises ConfigError naming the setting, why, and what to set; returns warning lines for the YAML header.
    `dialect` is the source engine's (an Oracle source's updates may lack columns, see below).
    """
    for setting, on, ops in (
        ("CdcInsertsOnly", t.cdc_inserts_only, "I"),
        ("CdcInsertsAndUpdates", t.cdc_inserts_and_updates, "I or U"),
    ):
        # DMS then writes CDC records without Op: every row would be quarantined (no header) or taken as
        # an insert (header), and a key change would never delete its old key.
        if on and not t.include_op_for_full_load:
            raise ConfigError(
                f"S3Settings {setting}=true without IncludeOpForFullLoad writes CDC files without the Op column; "
                f"the engine needs it: set IncludeOpForFullLoad=true (Op is then {ops} on every row) or {setting}=false"
            )
    if t.data_format == "csv" and not t.rfc4180:
        raise ConfigError(
            "S3Settings Rfc4180=false writes CSV values as they are, without quotes around a value that holds the "
            "delimiter, a quote or a newline and without doubling its quotes; the engine reads RFC 4180 quoting, so "
            'such a value would be split, lose its quotes, or (a value starting with a quote, `"Doc" Smith`) run into '
            "the following records: set Rfc4180=true (the default) or DataFormat=parquet"
        )
    if t.use_no_sup_value and not t.no_sup_value:
        raise ConfigError(
            "S3Settings UseCsvNoSupValue=true without CsvNoSupValue writes NULL for a column the source's supplemental "
            "log lacks, and an update would be applied with NULL over its real value: set CsvNoSupValue to a text no "
            "value holds (e.g. _NOSUP_), which the engine reads as 'unchanged'"
        )
    if t.use_no_sup_value and t.no_sup_value == (t.null_value or ""):
        raise ConfigError(
            f"S3Settings CsvNoSupValue {t.no_sup_value!r} is also CsvNullValue: an unchanged column and a NULL could "
            "not be told apart; give them different texts"
        )
    if t.data_format == "csv" and len(t.delimiter) != 1:
        raise ConfigError(
            f"S3Settings CsvDelimiter {t.delimiter!r} is {len(t.delimiter)} characters; the engine reads CSV whose "
            "fields are separated by one character (a comma by default; a tab may be written \\t): set CsvDelimiter "
            "to one character, or DataFormat=parquet"
        )
    if t.data_format == "csv" and t.row_delimiter not in ("\n", "\r\n"):
        raise ConfigError(
            f"S3Settings CsvRowDelimiter {t.row_delimiter!r} ends records with another text than a line break; the "
            "engine reads records ending in a newline (a file's last record without one is held as cut short): "
            "set CsvRowDelimiter to \\n (the default) or DataFormat=parquet"
        )
    if t.file_time_zone and t.file_time_zone.upper() not in ("UTC", "GMT", "ETC/UTC") and not t.timestamp_column:
        raise ConfigError(
            f"S3Settings DatePartitionTimezone {t.file_time_zone!r} names CDC files by that zone's local time, and "
            "without a TimestampColumnName the engine dates and orders changes by the file name's time, read as UTC "
            "(off by the zone's offset; a daylight-saving change reorders an hour). Set TimestampColumnName (the "
            "commit time, in UTC), or leave DatePartitionTimezone unset"
        )
    if t.preserve_transactions:
        raise ConfigError(
            "S3Settings PreserveTransactions=true writes all tables' changes into CdcPath in transaction order; "
            "the engine reads one folder per table: set it to false"
        )
    warnings = []
    if dialect == "oracle" and not t.use_no_sup_value:
        warnings.append(
            "Oracle source without UseCsvNoSupValue: an update carries only the columns in the table's supplemental "
            "log, so with PRIMARY KEY logging (what AddSupplementalLogging sets) every column it did not change "
            "arrives as NULL and is applied as NULL. Log all columns at the source (ALTER TABLE ... ADD SUPPLEMENTAL "
            "LOG DATA (ALL) COLUMNS), or write CSV with UseCsvNoSupValue=true and a CsvNoSupValue: the engine then "
            "keeps those columns' values (Parquet output carries no such marker)"
        )
    if t.cdc_inserts_only:
        return [
            *warnings,
            "CdcInsertsOnly=true: DMS writes only the source's inserts; updates and deletes never arrive, so the "
            "tables keep each row as first inserted and rows deleted at the source stay",
        ]
    if t.cdc_inserts_and_updates:
        return [
            *warnings,
            "CdcInsertsAndUpdates=true: DMS writes no deletes; rows deleted at the source stay in latest and "
            "history as open versions",
        ]
    return warnings


def read_task(endpoints_file: Path, tasks_file: Path, task_id: str | None = None) -> DmsTask:
    """The task (the only one, or `task_id`) with its endpoints, from the two describe-* outputs."""
    endpoints_doc = _json(endpoints_file, "describe-endpoints", "Endpoints")
    endpoints = {e.get("EndpointArn"): e for e in endpoints_doc.get("Endpoints", [])}
    tasks = _json(tasks_file, "describe-replication-tasks", "ReplicationTasks").get("ReplicationTasks", [])
    chosen = [t for t in tasks if task_id in (None, t.get("ReplicationTaskIdentifier"))]
    if len(chosen) != 1:
        names = [t.get("ReplicationTaskIdentifier") for t in tasks]
        raise ConfigError(f"{tasks_file} has tasks {names}: pass --task-id to pick one" if chosen else
                          f"no task {task_id!r} in {tasks_file}; it has {names}")  # fmt: skip
    task = chosen[0]
    target = endpoints.get(task.get("TargetEndpointArn"))
    if target is None or str(target.get("EngineName", "")).lower() != "s3":
        raise ConfigError(
            f"task {task.get('ReplicationTaskIdentifier')}: its target endpoint {task.get('TargetEndpointArn')} is "
            f"not an S3 endpoint in {endpoints_file} (run `aws dms describe-endpoints` without filters)"
        )
    source = endpoints.get(task.get("SourceEndpointArn")) or {}
    engine = str(source.get("EngineName", "")).lower()
    where = f"task {task.get('ReplicationTaskIdentifier')} in {tasks_file}"
    try:
        mappings = json.loads(task.get("TableMappings") or "{}")
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: TableMappings is not JSON: {exc}") from None
    if not isinstance(mappings, dict):
        raise ConfigError(
            f'{where}: TableMappings holds a JSON {_kind(mappings)}; expected an object {{"rules": [...]}}'
        )
    rules = mappings.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ConfigError(f"{where}: TableMappings' rules must be a list of objects (the table-mapping rules)")
    return DmsTask(
        identifier=str(task.get("ReplicationTaskIdentifier")),
        dialect=DIALECTS.get(engine, ""),
        target=_target(target),
        rules=sorted(rules, key=lambda r: _rule_id(r, where)),
        migration_type=str(task.get("MigrationType") or "full-load-and-cdc"),
        settings=_task_settings(task.get("ReplicationTaskSettings"), where),
        number_scale=_number_scale(source) if DIALECTS.get(engine) == "oracle" else None,
    )


def _task_settings(text: Any, where: str) -> dict[str, Any]:
    """The task's ReplicationTaskSettings (a JSON string in describe-replication-tasks); {} when absent."""
    if not text:
        return {}
    try:
        settings = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: ReplicationTaskSettings is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: ReplicationTaskSettings holds a JSON {_kind(settings)}; expected an object")
    return settings


def task_warnings(task: DmsTask, lob_columns: list[str]) -> list[str]:
    """Warnings about what the task's settings do to the files: LOB values cut or left out, TRUNCATE unseen.

    `lob_columns` are the replicated tables' LOB columns as `table.column` (DMS's LOB handling applies to them).
    """
    warnings = []
    metadata = task.settings.get("TargetMetadata") or {}
    shown = ", ".join(lob_columns[:6]) + (f" and {len(lob_columns) - 6} more" if len(lob_columns) > 6 else "")
    if lob_columns and not _flag(metadata.get("SupportLobs", True)):
        warnings.append(
            f"SupportLobs=false: DMS does not replicate LOB columns ({shown}), so the lake has no values for them; "
            "set TargetMetadata.SupportLobs=true, or drop those columns from the generated entries"
        )
    elif lob_columns and not _flag(metadata.get("FullLobMode", False)):
        size = metadata.get("LobMaxSize") or 32
        warnings.append(
            f"limited LOB mode (LobMaxSize={size} KB): DMS cuts a value of a LOB column ({shown}) longer than that "
            "to its first LobMaxSize KB and says so only in the task's log, so such values arrive cut short in the "
            "lake. Set LobMaxSize above the longest value the source holds (check with a max(length(...)) query)"
        )
    if task.migration_type != "full-load":
        warnings.append(
            "a TRUNCATE (or DROP) at the source reaches the S3 target as no delete records (at most as files "
            "removed), so the rows it removed stay current in latest and history: after one, rebuild the table as "
            "after a reload (README, DMS reloads)"
        )
    return warnings


def _rule_id(rule: dict[str, Any], where: str) -> int:
    """The rule's `rule-id` (DMS's are numbers, often written as text), the order the rules apply in."""
    value = rule.get("rule-id", 0)
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        raise ConfigError(
            f"{where}: rule {rule.get('rule-name') or '(no rule-name)'} has rule-id {value!r}; DMS rule ids are "
            "numbers: fix it in the task's table mappings"
        ) from None
