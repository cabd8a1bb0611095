"""The end-of-run summary `lakehouse run` prints: what each table did, its row counts, an as-of query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.config import Config
from lakehouse.runner import TableRun
from lakehouse.tables import table_paths
from lakehouse.timetravel import AS_OF_SQL, as_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def print_summary(spark: SparkSession, config: Config, runs: list[TableRun]) -> None:
    """Print one line per table, then an as-of example on the first table that has history."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    width = max([len(r.table) for r in runs] + [16]) + 2
    policy_source = config.policy.source_table if config.policy else None
    print("\n== lakehouse run ==")
    print(
        f"{'table':<{width}}{'batches':>8}{'read':>9}{'applied':>9}{'late':>6}{'quar.':>7}{'latest':>9}"
        f"{'history':>9}  status"
    )
    example = None
    for run in runs:
        paths = table_paths(config, config.table(run.table))
        total = {k: sum(getattr(b, k) for b in run.batches) for k in ("rows_read", "applied", "late", "quarantined")}
        if DeltaTable.isDeltaTable(spark, paths.history):
            latest = spark.read.format("delta").load(paths.latest).count()
            history = spark.read.format("delta").load(paths.history)
            versions = history.count()
        else:  # the query failed before it created its tables
            latest, versions, history = 0, 0, None
        status = "ok" if run.ok else f"FAILED: {run.error}"
        if run.notes:
            status += f"; {run.notes[-1]}" + (f" (and {len(run.notes) - 1} more)" if len(run.notes) > 1 else "")
        print(
            f"{run.table:<{width}}{len(run.batches):>8}{total['rows_read']:>9}{total['applied']:>9}{total['late']:>6}"
            f"{total['quarantined']:>7}{latest:>9}{versions:>9}  {status}"
        )
        if example is None and history is not None and versions and run.table != policy_source:
            example = (run.table, paths.history, history)
    if example is None:
        return
    name, path, history = example
    bounds = history.agg(F.min("_valid_from").alias("lo"), F.max("_valid_from").alias("hi")).first()
    at = bounds["lo"] + (bounds["hi"] - bounds["lo"]) / 2
    rows = as_of(spark, path, at)
    print(f"\nAs of {at:%Y-%m-%d %H:%M:%S} UTC, {name} had {rows.count()} live rows. The same in Athena:")
    print(AS_OF_SQL.format(history=f"{name}_history", at=f"{at:%Y-%m-%d %H:%M:%S}"))
    print(f"\nTry: lakehouse as-of {name} --at '{at:%Y-%m-%d %H:%M:%S}'")
