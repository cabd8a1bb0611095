"""Spark session factory.

Local: delta-spark from pip, its jars resolved by Spark from Maven Central once, then used from a cache
folder, and Spark's log quiet unless `verbose` (`lakehouse.spark_local`).
Cluster (EMR with the delta-defaults classification, Glue with `--datalake-formats delta`): Delta is
already on the classpath, so nothing is downloaded; only the settings the engine relies on are set.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lakehouse.config import Config
from lakehouse.jvm_calls import cache_function_lookups

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Settings the engine relies on, whatever the runtime.
ENGINE_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Spark 4 turns ANSI on by default; the engine casts with try_cast and wants the same
    # semantics on both lines.
    "spark.sql.ansi.enabled": "false",
    # DMS timestamps are UTC; never let the machine's zone shift them.
    "spark.sql.session.timeZone": "UTC",
    # A new source column (a YAML change) is added to the zone's tables by their MERGE (history and latest get it at
    # a run's start: tables.ensure_tables).
    "spark.databricks.delta.schema.autoMerge.enabled": "true",
    # Parquet timestamps as INT64 microseconds, not Spark's legacy INT96: other readers (delta-rs, Athena)
    # read them exactly, including the ID304B open end 9999-12-31 that overflows INT96's nanoseconds.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Dates before 1582-10-15 (placeholders such as 0001-01-01, old birth dates) are written and read as they are,
    # in the proleptic Gregorian calendar Athena, Trino, delta-rs and Spark 4 use; Spark 3.5's default refuses
    # to write them at all (a batch that failed on every retry).
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
    # Parsed snapshots travel from the driver to Spark as Arrow batches, decoded on the executors: below this
    # threshold Spark would keep them as a local relation on the driver, where every plan over a 400k-row
    # 340B table is optimized and shipped with its rows (seconds per table).
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.localRelationThreshold": "0",
    # Athena does not document deletion vectors: never write them.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Shuffle files, spills and cached blocks (a batch's changes are PHI) are written to local disk encrypted, and
    # PySpark sends local data over a socket instead of a temporary file: a crash leaves no plain PHI behind.
    "spark.io.encryption.enabled": "true",
    # Every MERGE source of the engine is already materialized and immutable (a local checkpoint of the
    # batch's plan, or a local relation), so Delta's own copy of it would be work done twice.
    "spark.databricks.delta.merge.materializeSource": "none",
    # History is partitioned by `_is_current`: Delta's shuffle by partition values before a MERGE's write would
    # send every current version to one task (one core writing the whole current partition, on any cluster).
    "spark.databricks.delta.merge.repartitionBeforeWrite.enabled": "false",
    # A join whose every shuffled partition of one side is this small hashes that side instead of sorting both
    # (a MERGE's join of a batch with the files it touches, a snapshot's diff): 100k changes into 10M rows and a
    # 340B day measured 3-10% faster. Bounded per partition, so it cannot run out of memory the way a bigger
    # hash table would.
    "spark.sql.adaptive.maxShuffledHashJoinLocalMapThreshold": "64m",
}

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.driver.memory": "4g",
}


def session_settings(
    config: Config | None, extra_conf: dict[str, str] | None = None
) -> tuple[str | None, dict[str, str]]:
    """The master (None: the cluster's) and the Spark settings a session for `config` is built with."""
    local = config is None or config.environment == "local"
    conf = {**ENGINE_CONF, **(LOCAL_CONF if local else {})}
    if config is not None:
        conf.update(config.spark.conf)
    conf.update(extra_conf or {})
    master = config.spark.master if config is not None else "local[2]"
    return master, conf


def build_spark(
    config: Config | None = None,
    *,
    app_name: str = "lakehouse",
    extra_conf: dict[str, str] | None = None,
    verbose: bool = False,
    local_dir: str | None = None,
) -> SparkSession:
    """Build (or reuse) the SparkSession for `config`'s environment.

    `environment: local` adds the Delta jars (cached after their first resolution), a quiet log
    (`verbose`: Spark's own log settings and Ivy's output) and a scratch folder of the engine's own
    (`spark.local_dir`, or `local_dir`; see `lakehouse.local_dir`); `aws` leaves the classpath, the log and
    local folders to the cluster. `spark.conf` from the YAML and `extra_conf` win over the defaults.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ImportError(
            "pyspark is not installed. Locally run `make run` (it installs the `local` extra: "
            "pip install 'lakehouse[local]'); on EMR/Glue pyspark comes with the runtime."
        ) from None

    local = config is None or config.environment == "local"
    master, conf = session_settings(config, extra_conf)
    if local and SparkSession.getActiveSession() is None:
        from lakehouse.spark_local import local_conf

        if "spark.local.dir" not in conf and not _running():
            from lakehouse.local_dir import default_root, prepare_local_dir

            conf["spark.local.dir"] = prepare_local_dir(local_dir or default_root(config))

        # Python workers must use this interpreter (its pandas/pyarrow), not whatever is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf = local_conf(conf, verbose=verbose)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    cache_function_lookups()
    if not verbose:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _running() -> bool:
    """Whether this process already has a SparkContext (the builder reuses it; its settings are fixed)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None
