"""Table maintenance the stream does itself, between its own batches: compaction, VACUUM, Delta log settings.

Every micro-batch adds a few small files to each table it writes (history, latest, quarantine and the
non-PHI zone's two). Left alone that is tens of thousands of files per table per day, which every
MERGE, every "as of" query and every Athena scan pays for. The stream's own foreachBatch runs the
upkeep right after the batch's writes: the table's one writer (DESIGN.md) also compacts and vacuums
it, so no second writer ever races the stream, and the stream never stops for it.

- Compaction (`maintenance.compaction.method: optimize`; `benchmarks/compaction_bench.py` compares the methods):
  Delta's OPTIMIZE bin-packs the small files into files of `target_file_mb`, when `every_batches` or
  `every_minutes` have passed since the last one or `min_files` files were added since. It rewrites
  rows, never changes them (a `dataChange=false` commit: "as of", latest, the change feed and Delta time
  travel see the same rows). A commit that conflicts with another writer (a privacy purge's DELETE
  that committed first) is abandoned and retried at the next batch: Delta's conflict check is what
  keeps a compaction from writing back rows the purge removed.
- VACUUM deletes the files no version younger than `vacuum.retention_hours` needs (the time travel
  horizon) once at start and every `vacuum.every_hours`.
- Table properties (`delta.checkpointInterval`, log and deleted-file retention, auto compaction and
  optimized writes for the other methods) are set when the query starts, if they differ. None is a
  reader or writer table feature: Athena, Trino and delta-rs read the tables as before.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.config import Config, MaintenanceSettings, TableConfig
from lakehouse.pending import local_path
from lakehouse.spark_threads import run_side_by_side
from lakehouse.tables import TablePaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.apply.non_phi import NonPhiZone

log = logging.getLogger("lakehouse.maintenance")


def session_conf(settings: MaintenanceSettings) -> dict[str, str]:
    """Session settings of the compaction method: OPTIMIZE's and auto compaction's file sizes."""
    target = str(settings.compaction.target_file_mb * 1024 * 1024)
    conf = {"spark.databricks.delta.optimize.maxFileSize": target}
    if settings.compaction.method == "auto_compact":
        conf |= {
            "spark.databricks.delta.autoCompact.maxFileSize": target,
            "spark.databricks.delta.autoCompact.minNumFiles": str(settings.compaction.min_files),
        }
    return conf


def set_table_properties(spark: SparkSession, paths: list[str], settings: MaintenanceSettings) -> list[str]:
    """Set the maintenance properties on the existing Delta tables at `paths` where they differ; return those changed.

    One commit per changed table, none when they already match (so a restart adds no commits).
    """
    from delta.tables import DeltaTable

    from lakehouse.delta_log import table_properties

    wanted = settings.table_properties()
    changed = []
    for path in paths:
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        current = table_properties(spark, path, list(wanted))
        differ = {k: v for k, v in wanted.items() if current.get(k) != v}
        if differ:
            assignments = ", ".join(f"'{k}' = '{v}'" for k, v in differ.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")
            changed.append(path)
    return changed


def file_count(spark: SparkSession, path: str) -> int:
    """How many data files the Delta table at `path` has, as its writer last committed it.

    From the commit's checksum Delta holds in the driver (`lakehouse.delta_log`): no Spark job per table
    after every batch, as `DESCRIBE DETAIL` ran.
    """
    from lakehouse.delta_log import committed_files

    return committed_files(spark, path)


def compact(spark: SparkSession, path: str) -> dict[str, int]:
    """OPTIMIZE (bin-packing) the Delta table at `path`; return the files removed and added."""
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).optimize().executeCompaction().select("metrics").first()
    metrics = row["metrics"] if row else None
    return {
        "removed": int(metrics["numFilesRemoved"]) if metrics else 0,
        "added": int(metrics["numFilesAdded"]) if metrics else 0,
    }


def vacuum(spark: SparkSession, path: str, retention_hours: float) -> None:
    """VACUUM the Delta table at `path`, keeping every file a version younger than `retention_hours` needs."""
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, path).vacuum(retention_hours)


@dataclass
class TableMaintenance:
    """The upkeep of the Delta tables one streaming query writes, run from its foreachBatch after each batch.

    `tables` maps a name for the record (e.g. "history", "non_phi.latest") to the table's path.
    """

    settings: MaintenanceSettings
    tables: dict[str, str]
    marker: str  # a file whose modification time says when these tables were last vacuumed
    table: str = ""
    conf: dict[str, str] = field(default_factory=dict)  # session settings the query starts with
    batches_since: int = 0
    compacted_at: float = field(default_factory=time.monotonic)
    files_after: dict[str, int] = field(default_factory=dict)  # file counts after the last compaction

    def start(self, spark: SparkSession) -> None:
        """Before the query starts (and its tables are created): session settings and table properties.

        Tables created from now on take the properties from the session's defaults; existing ones that
        differ get them in one commit each.
        """
        defaults = {
            f"spark.databricks.delta.properties.defaults.{key.removeprefix('delta.')}": value
            for key, value in self.settings.table_properties().items()
        }
        for key, value in (session_conf(self.settings) | defaults | self.conf).items():
            spark.conf.set(key, value)
        set_table_properties(spark, list(self.tables.values()), self.settings)

    def after_batch(self, spark: SparkSession, batch_id: int) -> dict[str, object]:
        """Compact and VACUUM what is due, once the batch's writes have committed; return what was done."""
        started = time.monotonic()
        self.batches_since += 1
        done: dict[str, object] = {}
        if self.settings.compaction.method == "optimize":
            files = {name: file_count(spark, path) for name, path in self.tables.items()}
            due = self._compaction_due(files)
            if due:
                done["compacted"] = self._compact(spark, due)
                files |= {n: self.files_after[n] for n in due if n in self.files_after}
            done["files"] = files
        if self.settings.vacuum.enabled and self._vacuum_due(spark):
            done["vacuumed"] = self._vacuum(spark)
        done["seconds"] = round(time.monotonic() - started, 3)
        if "compacted" in done or "vacuumed" in done:
            log.info(json.dumps({"event": "maintenance", "table": self.table, "batch_id": batch_id, **done}))
        return done

    def vacuum_when_idle(self, spark: SparkSession) -> list[str]:
        """VACUUM when due although no batch ran: a table that gets no file runs no batch, and what a forget deleted
        from it stayed readable by time travel for as long. Returns the tables vacuumed (none when not due)."""
        if not self.vacuum_may_be_due() or not self._vacuum_due(spark):
            return []
        vacuumed = self._vacuum(spark)
        log.info(json.dumps({"event": "maintenance", "table": self.table, "batch_id": None, "vacuumed": vacuumed}))
        return vacuumed

    def vacuum_may_be_due(self) -> bool:
        """False when the marker, on local disk, says no VACUUM is due (told without Spark); True otherwise."""
        if not self.settings.vacuum.enabled:
            return False
        marker = local_path(self.marker)
        if marker is None or not marker.exists():
            return True
        return time.time() - marker.stat().st_mtime >= self.settings.vacuum.every_hours * 3600

    def _compaction_due(self, files: dict[str, int]) -> list[str]:
        settings = self.settings.compaction
        scheduled = (settings.every_batches is not None and self.batches_since >= settings.every_batches) or (
            settings.every_minutes is not None and time.monotonic() - self.compacted_at >= settings.every_minutes * 60
        )
        if scheduled:
            return list(self.tables)
        # Files added since the last compaction (a table not compacted since the start counts all its files).
        return [n for n, c in files.items() if c - self.files_after.get(n, 0) >= settings.min_files]

    def _compact(self, spark: SparkSession, names: list[str]) -> dict[str, dict[str, int]]:
        from lakehouse.delta_log import conflict_errors

        conflicts = conflict_errors()

        def one(name: str) -> dict[str, int]:
            try:
                return compact(spark, self.tables[name])
            except conflicts as exc:
                # Another writer (a privacy purge) committed first: nothing was written; the next batch retries.
                log.warning(json.dumps({"event": "compaction_conflict", "table": self.table, "delta_table": name,
                                        "error": str(exc).split("\n")[0]}))  # fmt: skip
                return {"removed": 0, "added": 0, "conflict": 1}

        results = dict(zip(names, run_side_by_side([lambda n=n: one(n) for n in names]), strict=True))
        for name in names:
            if not results[name].get("conflict"):
                self.files_after[name] = file_count(spark, self.tables[name])
        if len(names) == len(self.tables) and not any(r.get("conflict") for r in results.values()):
            self.batches_since, self.compacted_at = 0, time.monotonic()
        return results

    def _vacuum_due(self, spark: SparkSession) -> bool:
        # The last VACUUM's time survives restarts in the marker; a first start only sets it (new tables hold
        # nothing to vacuum, and a test or a short `lakehouse run` does not pay for a VACUUM of every table).
        touched = marker_time(spark, self.marker)
        if touched is None:
            touch(spark, self.marker)
            return False
        return time.time() - touched >= self.settings.vacuum.every_hours * 3600

    def _vacuum(self, spark: SparkSession) -> list[str]:

        hours = self.settings.vacuum.retention_hours
        run_side_by_side([lambda p=p: vacuum(spark, p, hours) for p in self.tables.values()])
        touch(spark, self.marker)
        return list(self.tables)


def file_system(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem of `path` (local or s3://) and its Path, through py4j."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def marker_time(spark: SparkSession, path: str) -> float | None:
    """The modification time (epoch seconds) of the file at `path` (local or s3://), None if there is none."""
    fs, hadoop_path = file_system(spark, path)
    if not fs.exists(hadoop_path):
        return None
    return fs.getFileStatus(hadoop_path).getModificationTime() / 1000


def touch(spark: SparkSession, path: str) -> None:
    """Write an empty file at `path` (local or s3://), replacing it: its modification time is now."""
    fs, hadoop_path = file_system(spark, path)
    fs.create(hadoop_path, True).close()


def table_maintenance(
    config: Config, table: TableConfig, paths: TablePaths, non_phi: NonPhiZone | None
) -> TableMaintenance:
    """The upkeep of every Delta table `table`'s query writes: history, latest, quarantine, ledger, non-PHI zone."""
    tables = {"history": paths.history, "latest": paths.latest, "quarantine": paths.quarantine}
    if table.source.kind == "dms":
        tables["ledger"] = paths.ledger  # the file ledger: one small commit per micro-batch too
    if non_phi is not None and table.non_phi:
        tables |= {"non_phi.history": non_phi.history(table), "non_phi.latest": non_phi.latest(table)}
    return TableMaintenance(
        config.maintenance,
        tables,
        marker=f"{paths.checkpoint.rstrip('/')}/_vacuumed",
        table=table.name,
        conf=config.stream.spark_conf(),
    )
