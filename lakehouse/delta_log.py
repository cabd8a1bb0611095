"""A Delta table's version, file count and properties as this process last committed or read it, without a Spark job.

After each write a batch records the version it committed, the maintenance counts each table's files, and
each query start checks the tables' properties. Delta's public API answers with a log read (`history(1)`)
or with `DESCRIBE DETAIL`, which right after a commit rebuilds the table's state with Spark jobs. Delta
already holds the answers in the driver: the snapshot its own commit installed, with the commit's checksum
(the `<version>.crc` Delta 3 computes at commit: numFiles, table size) and the table's metadata.

This does not make the state rebuild free: the next MERGE into the table rebuilds it anyway (measured in the
README's performance section). It saves the rebuild of tables nothing reads next, and the jobs themselves.

The functions here read that snapshot through Py4J. It is the table's state as this process knows it,
which is the table's state for its one writer (DESIGN.md) right after its own commit; `table_properties`
first looks for newer commits. Where the snapshot or its checksum is not there (another Delta line,
Spark Connect) the public API answers.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lakehouse.delta_log")


def committed_files(spark: SparkSession, path: str) -> int:
    """How many data files the Delta table at `path` has, as this process last committed or read it."""
    checksum = _checksum(spark, path)
    if checksum is not None:
        return int(checksum.numFiles())
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).detail().select("numFiles").first()[0])


def empty_version(spark: SparkSession, path: str, *, refresh: bool = True) -> int | None:
    """The newest version of the Delta table at `path` if it holds no data file then (a table just made, or one whose
    rows were all deleted), else None: from the commit's checksum, without a Spark job. None where no checksum says.

    `refresh=False`: the caller has just brought the driver's snapshot up to date (a `DeltaTable.forPath` for its write,
    a `spark.read` of the table), so the log is not listed again (a LIST request per write on S3)."""
    from delta.tables import DeltaTable

    if refresh:
        DeltaTable.forPath(spark, path)  # brings the driver's snapshot up to the table's newest version
    snapshot = _snapshot(spark, path)
    checksum = _checksum(spark, path)
    if snapshot is None or checksum is None or int(checksum.numFiles()) != 0:
        return None
    return int(snapshot.version())


def committed_bytes(spark: SparkSession, path: str) -> int | None:
    """The size of the Delta table's data files at `path`, as this process last committed or read it; None where
    no checksum says (no table there, another Delta line)."""
    checksum = _checksum(spark, path)
    return int(checksum.tableSizeBytes()) if checksum is not None else None


def committed_version(spark: SparkSession, path: str) -> int:
    """The version of the Delta table at `path` this process last committed or read."""
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        return int(snapshot.version())
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def table_state(spark: SparkSession, path: str) -> tuple[int, str]:
    """The newest version of the Delta table at `path` and the table's id (the metadata id Delta gives a table when
    it is made: a table made again at the same path has another). Both from one snapshot in the driver, without a
    Spark job; through the public API where there is none (a log read and DESCRIBE DETAIL, which runs jobs)."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)  # brings the driver's snapshot up to the table's newest version
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            return int(snapshot.version()), str(snapshot.metadata().id())
        except Exception as exc:  # a Delta without these: the public API answers
            log.debug("no metadata in Delta's snapshot of %s: %s", path, exc)
    version = int(table.history(1).select("version").first()[0])
    return version, str(table.detail().select("id").first()[0])


def table_properties(spark: SparkSession, path: str, keys: list[str]) -> dict[str, str | None]:
    """The values of the table properties `keys` of the Delta table at `path`, at its newest version.

    From the table's metadata in the driver, after a listing of its log for newer commits; `DESCRIBE DETAIL`
    would rebuild the table's state for its file count.
    """
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)  # brings the driver's snapshot up to the table's newest version
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            configuration = snapshot.metadata().configuration()
            values = [configuration.get(key) for key in keys]
            return {k: (v.get() if v.isDefined() else None) for k, v in zip(keys, values, strict=True)}
        except Exception as exc:  # a Delta without these: the public API answers
            log.debug("no metadata in Delta's snapshot of %s: %s", path, exc)
    current = table.detail().select("properties").first()["properties"] or {}
    return {key: current.get(key) for key in keys}


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    """The partition columns of the Delta table at `path`, at its newest version (as `table_properties` reads)."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)  # brings the driver's snapshot up to the table's newest version
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            columns = snapshot.metadata().partitionColumns()
            return [str(columns.apply(i)) for i in range(columns.size())]
        except Exception as exc:  # a Delta without these: the public API answers
            log.debug("no metadata in Delta's snapshot of %s: %s", path, exc)
    return list(table.detail().select("partitionColumns").first()["partitionColumns"])


def warm_state(spark: SparkSession, paths: list[str]) -> None:
    """Build the state (file list and statistics) of each Delta table's version this process last committed.

    The next MERGE into a table, and the next read that skips files by their statistics, need the state of
    its newest version, and Delta builds it with Spark jobs the first time it is asked for (about 0.4 s on a
    small table, one after each commit). A long-running stream calls this once a batch has committed, while
    it waits for its next trigger, so the next batch finds the state built. The MERGE asks the same snapshot
    (no commit came between), so it is the same state, cached by Delta and dropped with the snapshot.
    """

    def build(path: str) -> None:
        snapshot = _snapshot(spark, path)
        if snapshot is None:
            return
        try:
            snapshot.withStats().count()  # what data skipping reads: the file list with parsed statistics
        except Exception as exc:  # stopped meanwhile, or a Delta without it: the next batch builds it
            log.debug("no state built for %s: %s", path, exc)

    from lakehouse.spark_threads import run_side_by_side

    # Side by side (each build is a few one-task jobs), in the caller's job group: a stopping query cancels them.
    run_side_by_side([partial(build, path) for path in paths])


class StateWarmer:
    """`warm_state` in a thread of its own between a stream's batches; the next batch waits for it to end.

    The batch waits rather than building the same state beside it: one build, never two at once.
    """

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self._thread: threading.Thread | None = None

    def start(self, paths: list[str]) -> None:
        """Build the state of the tables at `paths` (after the one started before, if any, ended)."""
        from lakehouse.spark_threads import in_callers_context

        self.wait()
        target = in_callers_context(lambda: warm_state(self._spark, paths))  # the query's job group
        self._thread = threading.Thread(target=target, name="lakehouse-warm-state", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Return once the build started last has ended."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _snapshot(spark: SparkSession, path: str) -> object | None:  # py4j: a Delta Snapshot
    try:
        jvm = spark.sparkContext._jvm
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        snapshot = delta_log.unsafeVolatileSnapshot()
        return snapshot if int(snapshot.version()) >= 0 else None  # -1: no table (yet) at the path
    except Exception as exc:  # Spark Connect (no JVM), or a Delta without these: the public API answers
        log.debug("no Delta snapshot in the driver for %s: %s", path, exc)
        return None


def _checksum(spark: SparkSession, path: str) -> object | None:  # py4j: the commit's VersionChecksum
    snapshot = _snapshot(spark, path)
    if snapshot is not None:
        try:
            checksum = snapshot.checksumOpt()
            if checksum.isDefined():
                return checksum.get()
        except Exception as exc:  # a Delta without this checksum API: the public API answers
            log.debug("no checksum in Delta's snapshot of %s: %s", path, exc)
    return None


def conflict_errors() -> tuple[type[Exception], ...]:
    """Delta's write-conflict exceptions as PySpark raises them (another writer of the table committed first).

    Delta's Python classes are siblings: none derives from DeltaConcurrentModificationException, so an `except` of
    that one alone misses a ConcurrentDeleteReadException (a purge's delete under an OPTIMIZE or a MERGE).
    """
    from delta import exceptions

    return (
        exceptions.ConcurrentAppendException,
        exceptions.ConcurrentDeleteDeleteException,
        exceptions.ConcurrentDeleteReadException,
        exceptions.ConcurrentTransactionException,
        exceptions.ConcurrentWriteException,
        exceptions.DeltaConcurrentModificationException,
        exceptions.MetadataChangedException,
        exceptions.ProtocolChangedException,
    )
