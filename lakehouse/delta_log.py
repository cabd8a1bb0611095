"""A Delta table's version and file count as this process last committed or read it, without a Spark job.

After each write a batch records the version it committed, and the maintenance counts each table's
files. Delta's public API answers both at a price paid on every batch: `history(1)` reads the log
(~0.7 s a table), and `detail()` right after a commit rebuilds the table's state with Spark jobs
(1-3 s a table). Yet Delta already holds both in the driver: the snapshot its own commit installed,
with the commit's checksum (the `<version>.crc` Delta 3 computes at commit: numFiles, table size).

`committed_files` and `committed_version` read that snapshot through Py4J. It is the table's state as
this process knows it, which is the table's state for its one writer (DESIGN.md) right after its own
commit; a reader that must see other writers' commits uses `history()`. Where the snapshot or its
checksum is not there (another Delta line, Spark Connect) the public API answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lakehouse.delta_log")


def committed_files(spark: SparkSession, path: str) -> int:
    """How many data files the Delta table at `path` has, as this process last committed or read it."""
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            checksum = snapshot.checksumOpt()
            if checksum.isDefined():
                return int(checksum.get().numFiles())
        except Exception as exc:  # a Delta without this checksum API: the public API answers
            log.debug("no checksum in Delta's snapshot of %s: %s", path, exc)
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).detail().select("numFiles").first()[0])


def committed_version(spark: SparkSession, path: str) -> int:
    """The version of the Delta table at `path` this process last committed or read."""
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        return int(snapshot.version())
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def table_properties(spark: SparkSession, path: str, keys: list[str]) -> dict[str, str | None]:
    """The values of the table properties `keys` of the Delta table at `path`, at its newest version.

    From the table's metadata in the driver (Delta reads it from the commit's checksum), after a listing of
    its log for newer commits; `DESCRIBE DETAIL` would rebuild the table's state for its file count.
    """
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, path)  # brings the driver's snapshot up to the table's newest version
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            configuration = snapshot.metadata().configuration()
            values = [configuration.get(key) for key in keys]
            return {k: (v.get() if v.isDefined() else None) for k, v in zip(keys, values, strict=True)}
        except Exception as exc:  # a Delta without these: the public API answers
            log.debug("no metadata in Delta's snapshot of %s: %s", path, exc)
    current = DeltaTable.forPath(spark, path).detail().select("properties").first()["properties"] or {}
    return {key: current.get(key) for key in keys}


def _snapshot(spark: SparkSession, path: str) -> object | None:  # py4j: a Delta Snapshot
    try:
        jvm = spark.sparkContext._jvm
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        snapshot = delta_log.unsafeVolatileSnapshot()
        return snapshot if int(snapshot.version()) >= 0 else None  # -1: no table (yet) at the path
    except Exception as exc:  # Spark Connect (no JVM), or a Delta without these: the public API answers
        log.debug("no Delta snapshot in the driver for %s: %s", path, exc)
        return None
