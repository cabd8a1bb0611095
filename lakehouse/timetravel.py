"""Reading a table "as of" a time.

`as_of` answers from the history table's validity columns — the same WHERE an Athena user writes,
since Athena has no Delta time travel. `latest_at` uses Delta's own version/timestamp travel.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from lakehouse.apply.history import META_COLUMNS
from lakehouse.errors import LakehouseError, TableNotFoundError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

AS_OF_SQL = """SELECT * FROM {history}
WHERE _valid_from <= TIMESTAMP '{at}'
  AND (_valid_to IS NULL OR _valid_to > TIMESTAMP '{at}')
  AND NOT _is_deleted"""


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time ('2026-03-02', '2026-03-02 10:00:00', '2026-03-02T10:00:00.5') as UTC."""
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise LakehouseError(f"{text!r} is not a time; write it as ISO 8601, e.g. 2026-03-02 10:00:00") from None


def _read(spark: SparkSession, path: str) -> DataFrame:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        raise TableNotFoundError(f"no Delta table at {path}; run `lakehouse run` first")
    return spark.read.format("delta").load(path)


def as_of(spark: SparkSession, history_path: str, at: datetime) -> DataFrame:
    """The rows that were live at `at` (UTC), with their business columns, from the history table."""
    history = _read(spark, history_path)
    live = history.where(
        (history["_valid_from"] <= at)
        & (history["_valid_to"].isNull() | (history["_valid_to"] > at))
        & ~history["_is_deleted"]
    )
    return live.drop(*[c for c in META_COLUMNS if c not in ("_valid_from", "_valid_to")])


def latest_at(
    spark: SparkSession, latest_path: str, *, version: int | None = None, timestamp: str | None = None
) -> DataFrame:
    """The latest table at a Delta version or commit timestamp (Delta time travel)."""
    _read(spark, latest_path)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    if timestamp is not None:
        reader = reader.option("timestampAsOf", timestamp)
    return reader.load(latest_path)
