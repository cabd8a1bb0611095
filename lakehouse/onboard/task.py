"""A DMS task as `aws dms describe-endpoints` and `aws dms describe-replication-tasks` print it.

Only what shapes the files matters here: the S3 target endpoint's settings (S3Settings, or the older
ExtraConnectionAttributes string), the source endpoint's engine (which names its column types), and
the task's table mappings (a JSON document inside the task's `TableMappings` string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.errors import ConfigError

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


@dataclass(frozen=True)
class DmsTask:
    """One replication task: its identifier, source dialect, S3 target and table-mapping rules."""

    identifier: str
    dialect: str
    target: S3Target
    rules: list[dict[str, Any]] = field(default_factory=list)


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {Path(path).resolve()}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not JSON: {exc}") from None


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "y", "yes", "1")


def _settings(endpoint: dict[str, Any]) -> dict[str, Any]:
    """S3Settings with lower-case keys, completed from ExtraConnectionAttributes (`key=value;...`)."""
    settings = {k.lower(): v for k, v in (endpoint.get("S3Settings") or {}).items()}
    for pair in str(endpoint.get("ExtraConnectionAttributes") or "").split(";"):
        key, _, value = pair.partition("=")
        if key.strip():
            settings.setdefault(key.strip().lower(), value.strip())
    return settings


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
        delimiter=str(s.get("csvdelimiter") or ","),
        # CsvNullValue "" (describe-endpoints prints the default so) is the default: an empty field is NULL.
        null_value=str(s["csvnullvalue"]) if s.get("csvnullvalue") else None,
        # CSV only: DMS writes no marker into Parquet, whatever the setting says (a NULL for an unlogged column).
        use_no_sup_value=_flag(s.get("usecsvnosupvalue", False)) and data_format == "csv",
        no_sup_value=str(s["csvnosupvalue"]) if s.get("csvnosupvalue") else None,
        cdc_inserts_only=_flag(s.get("cdcinsertsonly", False)),
        cdc_inserts_and_updates=_flag(s.get("cdcinsertsandupdates", False)),
        preserve_transactions=_flag(s.get("preservetransactions", False)),
        rfc4180=_flag(s.get("rfc4180", True)),
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
    endpoints = {e.get("EndpointArn"): e for e in _json(endpoints_file, "describe-endpoints").get("Endpoints", [])}
    tasks = _json(tasks_file, "describe-replication-tasks").get("ReplicationTasks", [])
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
    try:
        mappings = json.loads(task.get("TableMappings") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"task {task.get('ReplicationTaskIdentifier')}: TableMappings is not JSON: {exc}") from None
    rules = sorted(mappings.get("rules", []), key=lambda r: int(str(r.get("rule-id", 0)) or 0))
    return DmsTask(
        identifier=str(task.get("ReplicationTaskIdentifier")),
        dialect=DIALECTS.get(engine, ""),
        target=_target(target),
        rules=rules,
    )
