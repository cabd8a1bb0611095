"""Where a source table's Delta tables live, their schemas, and how they are created.

Only table features Athena and delta-rs read are enabled: no deletion vectors, no column mapping,
no v2 checkpoints; change data feed (a writer-only feature) is on for the Postgres export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.config import Config, TableConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

TABLE_PROPERTIES = {
    "delta.enableChangeDataFeed": "true",
    "delta.enableDeletionVectors": "false",
}

QUARANTINE_DDL = (
    "table STRING, batch_id BIGINT, source_file STRING, source_row BIGINT, reason STRING, detail STRING, raw STRING"
)


@dataclass(frozen=True)
class TablePaths:
    """The storage locations of one source table."""

    history: str
    latest: str
    quarantine: str
    checkpoint: str


def table_paths(config: Config, table: TableConfig) -> TablePaths:
    """`<lake>/<table>/{history,latest,quarantine}` and `<checkpoints>/<table>`."""
    lake = config.paths.lake.rstrip("/")
    return TablePaths(
        history=f"{lake}/{table.name}/history",
        latest=f"{lake}/{table.name}/latest",
        quarantine=f"{lake}/{table.name}/quarantine",
        checkpoint=f"{config.paths.checkpoints.rstrip('/')}/{table.name}",
    )


def _ddl(columns: dict[str, str]) -> str:
    return ", ".join(f"`{c}` {t}" for c, t in columns.items())


def history_ddl(table: TableConfig) -> str:
    meta = (
        "_op STRING, _is_deleted BOOLEAN, _valid_from TIMESTAMP, _valid_to TIMESTAMP, _is_current BOOLEAN, "
        "_sequence STRING, _change_seq STRING, _source_file STRING, _source_row BIGINT, _batch_id BIGINT"
    )
    return f"{_ddl(table.source.business_columns)}, {meta}"


def latest_ddl(table: TableConfig) -> str:
    meta = (
        "_op STRING, _sequence STRING, _change_seq STRING, _valid_from TIMESTAMP, _source_file STRING, "
        "_source_row BIGINT, _batch_id BIGINT"
    )
    return f"{_ddl(table.source.business_columns)}, {meta}"


def schema_of(spark: SparkSession, ddl: str) -> StructType:
    """Parse a DDL column list (works on Spark 3.5 and 4)."""
    return spark.createDataFrame([], ddl).schema


def ensure_tables(spark: SparkSession, table: TableConfig, paths: TablePaths) -> None:
    """Create the history, latest and quarantine tables if they do not exist yet."""
    from delta.tables import DeltaTable

    for path, ddl, partitions in (
        (paths.history, history_ddl(table), table.partition_by),
        (paths.latest, latest_ddl(table), table.partition_by),
        (paths.quarantine, QUARANTINE_DDL, []),
    ):
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema_of(spark, ddl))
        if partitions:
            builder = builder.partitionedBy(*partitions)
        for key, value in TABLE_PROPERTIES.items():
            builder = builder.property(key, value)
        builder.execute()
