"""What a Delta table changed after an exported version, read as Arrow: its change feed, or its whole history.

The export reads the change feed after the version PostgreSQL holds. It reads the whole history instead when that
feed is gone (the log cleaned past it, its files vacuumed), and when the table is not the one exported (made again
at the same path: another table id, see `delta_log.table_state`), and when the feed deletes a version the table
no longer holds (a RESTORE to an older version, a DELETE of a bad day's versions): a full export replaces PostgreSQL's
rows with the history, so those versions go there too. The engine's own commits never delete a version of a
snapshot table (a MERGE that closes one writes its pre- and post-image; only a DMS table's batch removes a repeat a
late change made, README "History"), so a normal day stays incremental. Reading here ends before any PostgreSQL
transaction starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("lakehouse.export")

# A change-feed version older than the table's log retention is gone; the export then reloads in full. Delta says so
# in several ways: a commit cleaned from the log (the state at the first version wanted cannot be rebuilt), a change
# file vacuumed, a version not there. A file that is gone is known by its class (`file_missing`): each file system
# words it its own way (local "File ... does not exist", S3A "No such file or directory: s3a://..."); the texts
# below are for the other cases, and for errors that carry no Java exception (Spark Connect).
_CDF_GONE = (
    "VersionNotFound",
    "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
    "DELTA_MISSING_CHANGE_DATA",  # the feed was off for a version of the range: only the history has its rows
    "DELTA_TRUNCATED_TRANSACTION_LOG",
    "Could not find any delta files",
    "Unable to reconstruct state",
    "not available",
    "does not exist",
    "No such file or directory",
)


def changed_rows(
    spark: SparkSession, history: str, *, key: list[str], columns: list[str], since: int | None, until: int
) -> tuple[DataFrame, str]:
    """History rows written after version `since` up to `until` (all rows at `until` when `since` is None).

    Incremental rows are the newest change of each version (key..., `_sequence`), with its `_change_type`: an insert
    or update post-image, or a "delete" of a version the table no longer holds. At the same commit an insert wins over
    a delete: a rewrite of a file (RESTORE, an overwrite) removes and adds the same version in one commit. Reading them
    can still find a change file gone (vacuumed): `export_rows` reads them and falls back then.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    full = spark.read.format("delta").option("versionAsOf", until).load(history).select(*columns)
    if since is None:
        return full, "full"
    kept = F.when(F.col("_change_type") == "delete", 0).otherwise(1)
    newest = Window.partitionBy(*[F.col(f"`{k}`") for k in [*key, "_sequence"]]).orderBy(
        F.col("_commit_version").desc(), kept.desc()
    )
    try:
        # The state at the first version wanted is rebuilt when the feed is made: its commits may be cleaned from
        # the log.
        feed = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", since + 1)
            .option("endingVersion", until)
            .load(history)
            .where(F.col("_change_type").isin("insert", "update_postimage", "delete"))
        )
    except Exception as exc:
        if not feed_gone(exc):
            raise
        log.warning("change feed of %s since version %s is gone (log retention); exporting in full", history, since)
        return full, "full"
    newest_changes = feed.withColumn("_n", F.row_number().over(newest)).where("_n = 1")
    return newest_changes.select(*columns, "_change_type"), "incremental"


def export_rows(
    spark: SparkSession, history: str, *, key: list[str], columns: list[str], since: int | None, until: int
) -> tuple[list[pa.RecordBatch], str]:
    """`changed_rows` read as Arrow batches of `columns` (before any PostgreSQL transaction starts): mode "full" or
    "incremental". The history is read in full instead of its change feed when the feed's files are found gone only
    as they are read (vacuumed), and when the feed deletes a version (see `changed_rows`): only a full export removes
    versions from PostgreSQL."""
    import pyarrow.compute as pc

    rows, mode = changed_rows(spark, history, key=key, columns=columns, since=since, until=until)
    try:
        batches = to_arrow(rows)
    except Exception as exc:
        if mode == "full" or not feed_gone(exc):
            raise
        log.warning("change files of %s after version %s are gone (vacuumed); exporting in full", history, since)
    else:
        if mode == "full":
            return batches, mode
        deleted = sum(pc.sum(pc.equal(b.column("_change_type"), "delete")).as_py() or 0 for b in batches)
        if not deleted:
            return [b.select(columns) for b in batches], mode
        log.warning(
            "the change feed of %s after version %s deletes %d version(s) (a RESTORE, a DELETE): exporting in full",
            history,
            since,
            deleted,
        )
    rows, mode = changed_rows(spark, history, key=key, columns=columns, since=None, until=until)
    return to_arrow(rows), mode


def commit_fingerprint(spark: SparkSession, history: str, version: int) -> str | None:
    """A digest of commit `version` of the Delta table at `history` (its `_delta_log/<version>.json`), or None when
    the log no longer holds that commit (cleaned by log retention).

    Commits are never rewritten, so the digest tells the commit PostgreSQL was exported from from another one at the
    same version: a table put back from an older copy (same table id) that has committed up to that version again.
    Read in the driver through the table's file system (local, s3a), without a Spark job."""
    import hashlib

    jvm = spark.sparkContext._jvm
    commit = jvm.org.apache.hadoop.fs.Path(f"{history.rstrip('/')}/_delta_log/{version:020d}.json")
    fs = commit.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(commit):
        return None
    stream = fs.open(commit)
    try:
        content = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()
    return hashlib.sha256(content).hexdigest()[:32]


def feed_gone(exc: BaseException) -> bool:
    """Whether reading a change feed failed because a version or file of it is gone (not some other failure)."""
    return file_missing(exc) or any(marker in str(exc) for marker in _CDF_GONE)


def file_missing(exc: BaseException) -> bool:
    """Whether a Spark error is, or was caused by, a java.io.FileNotFoundException (Spark's own
    SparkFileNotFoundException is one): a file the Delta log names is gone, whatever the file system calls it."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)  # Py4JJavaError, CapturedException
    try:
        for _ in range(20):  # a cause chain is short; a cycle would not end
            if java is None:
                return False
            kind = java.getClass()
            while kind is not None:
                if kind.getName() == "java.io.FileNotFoundException":
                    return True
                kind = kind.getSuperclass()
            java = java.getCause()
    except Exception as inner:  # the JVM is gone, or no Java exception after all: the texts decide
        log.debug("could not read the Java causes of %r: %s", exc, inner)
    return False


def to_arrow(rows: DataFrame) -> list[pa.RecordBatch]:
    """Collect a DataFrame as Arrow batches (no Python row objects)."""
    if hasattr(rows, "toArrow"):  # Spark 4
        return rows.toArrow().to_batches()
    return rows._collect_as_arrow()  # Spark 3.5: the Arrow path toPandas uses
