"""The 340B OPAIS export → one DataFrame per business entity (parsed on the driver, memory flat)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from lakehouse.config import OpaisFeed, TableConfig
from lakehouse.errors import InputError
from lakehouse.sources.opais import log_progress, parse_export
from lakehouse.sources.snapshot import LoadedSnapshot, date_from_path, file_name, local_copy

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("lakehouse.opais")


def arrow_to_spark(spark: SparkSession, table: pa.Table, columns: dict[str, str]) -> DataFrame:
    """A Spark DataFrame of an Arrow table, typed by `columns` (Arrow carries the batches, not Python rows)."""
    ddl = ", ".join(f"`{c}` {t}" for c, t in columns.items())
    # Integers stay Python ints where a column has NULLs (pandas would turn them into floats).
    frame = table.select(list(columns)).to_pandas(integer_object_nulls=True, date_as_object=True)
    return spark.createDataFrame(frame, schema=ddl)


def load_opais(spark: SparkSession, feed: OpaisFeed, path: str, tables: dict[str, TableConfig]) -> LoadedSnapshot:
    """Parse the export at `path` completely, then hand its eight entities to Spark."""
    name = file_name(path)
    with local_copy(path) as local:
        parsed = parse_export(local, progress=log_progress)
    if parsed.stats.entities == 0:
        raise InputError(
            f"snapshot {name} holds no covered entities; applying it would expire every row of the 340B "
            "dimensions, so it is refused (nothing was written). Check the download."
        )
    if feed.date.source == "name":
        day = date_from_path(path, feed.date, kind=feed.kind)
    elif parsed.stats.max_edit_date is None:
        raise InputError(f"snapshot {name}: no editDate anywhere, so it has no content date; use date.source: name")
    else:
        day = parsed.stats.max_edit_date.date()
    if parsed.stats.pharmacy_conflicts or parsed.stats.contract_conflicts:
        log.warning(
            json.dumps(
                {
                    "event": "snapshot_conflicts",
                    "file": name,
                    "pharmacies": parsed.stats.pharmacy_conflicts,
                    "pharmacy_examples": parsed.stats.pharmacy_conflict_examples,
                    "contracts": parsed.stats.contract_conflicts,
                    "rule": "deterministic pick: newest editDate, then smallest values",
                }
            )
        )
    notes = []
    if parsed.stats.unknown_fields:
        unknown = {"event": "snapshot_unknown_fields", "file": name, "fields": parsed.stats.unknown_fields}
        log.warning(json.dumps(unknown))
        listed = ", ".join(f"{path} ({count:,})" for path, count in parsed.stats.unknown_fields.items())
        notes.append(f"JSON fields no column reads, ignored (objects that have them): {listed}")
    frames = {
        table_name: arrow_to_spark(spark, parsed.tables[table_name], table.source.business_columns)
        for table_name, table in tables.items()
    }
    return LoadedSnapshot(file=name, date=day, tables=frames, stats=parsed.stats.as_dict(), notes=notes)
