"""Reading a table "as of" a time.

`as_of` answers from the history table's validity columns — the same WHERE an Athena user writes,
since Athena has no Delta time travel. `latest_at` uses Delta's own version/timestamp travel.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.config import TableConfig
from lakehouse.errors import InputError, TableNotFoundError
from lakehouse.tables import META_COLUMNS, REPEATS, UNSUPPLIED, derived_history_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

AS_OF_SQL = """SELECT * FROM {history}
WHERE _valid_from <= TIMESTAMP '{at}'
  AND (_valid_to IS NULL OR _valid_to > TIMESTAMP '{at}')
  AND NOT _is_deleted"""


def sql_time(at: datetime) -> str:
    """A time as a SQL TIMESTAMP literal's text: seconds, plus the fraction when it has one."""
    return f"{at:%Y-%m-%d %H:%M:%S.%f}".rstrip("0").rstrip(".") if at.microsecond else f"{at:%Y-%m-%d %H:%M:%S}"


def as_of_columns(table: TableConfig) -> list[str]:
    """The columns `as_of` returns for `table`: business (and consent, SCD2) columns, then the validity interval."""
    return [*table.columns, *derived_history_columns(table), "_valid_from", "_valid_to"]


def athena_as_of_sql(table: TableConfig, at: datetime) -> str:
    """A ready-to-run Athena query of the rows of `table` live at `at` (UTC): what `as_of` returns, in SQL.

    Athena has no Delta time travel, so it filters the history table's validity columns, exactly as
    `as_of` does; the table is the Glue catalog's `<table>_history` of the PHI zone's database.
    """
    quoted = ", ".join(f'"{c.lower()}"' for c in as_of_columns(table))
    columns = textwrap.fill(quoted, 110, initial_indent="SELECT ", subsequent_indent="       ", break_on_hyphens=False)
    order = ", ".join(f'"{c.lower()}"' for c in table.primary_key)
    return (
        f"-- {table.name} as of {sql_time(at)} UTC (run in the PHI zone's Glue database, e.g. lakehouse_prod_phi)\n"
        f"{columns}\n"
        f"FROM {table.name}_history\n" + AS_OF_SQL.split("\n", 1)[1].format(at=sql_time(at)) + f"\nORDER BY {order}"
    )


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time as a naive UTC time: one without an offset is UTC ('2026-03-02',
    '2026-03-02 10:00:00', '2026-03-02T10:00:00.5'); one with an offset is converted
    ('2026-03-02T10:00:00+02:00' is 08:00 UTC, as is '2026-03-02T08:00:00Z')."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{text!r} is not a time; write it as ISO 8601, e.g. 2026-03-02 10:00:00") from None
    try:
        return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is in the year 10000 in UTC
        raise InputError(
            f"{text!r} is outside the times that can be read (years 1 to 9999) once converted to UTC; "
            "give a time within them"
        ) from None


def _read(spark: SparkSession, path: str) -> DataFrame:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        raise TableNotFoundError(f"no Delta table at {path}; run `lakehouse run` first")
    return spark.read.format("delta").load(path)


def as_of(spark: SparkSession, history_path: str, at: datetime) -> DataFrame:
    """The rows that were live at `at` (UTC), with their business columns, from the history table."""
    from pyspark.sql import functions as F

    history = _read(spark, history_path)
    # A literal in the session's time zone (UTC): PySpark would read a naive datetime in the machine's zone.
    at_utc = F.lit(at.isoformat(sep=" ")).cast("timestamp")
    live = history.where(
        (history["_valid_from"] <= at_utc)
        & (history["_valid_to"].isNull() | (history["_valid_to"] > at_utc))
        & ~history["_is_deleted"]
    )
    return live.drop(*[c for c in META_COLUMNS if c not in ("_valid_from", "_valid_to")], UNSUPPLIED, REPEATS)


def latest_at(
    spark: SparkSession, latest_path: str, *, version: int | None = None, timestamp: str | None = None
) -> DataFrame:
    """The latest table at a Delta version or commit timestamp (Delta time travel).

    `timestamp` is read as `parse_time` reads it (UTC unless it has an offset). A version or time the table's
    commits do not cover is an InputError with Delta's reason (its first and last commit).
    """
    from pyspark.errors import AnalysisException

    at = None if timestamp is None else parse_time(timestamp)
    _read(spark, latest_path)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    if at is not None:
        reader = reader.option("timestampAsOf", at.isoformat(sep=" "))
    try:
        return reader.load(latest_path)
    except AnalysisException as exc:
        if version is None and at is None:
            raise
        asked = f"version {version}" if at is None else f"time {sql_time(at)} UTC"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{latest_path} cannot be read at {asked}: {reason}") from None
