"""The end-of-run summary `lakehouse run` prints: what each table did, its row counts, an as-of query.

Counts and the as-of example are read with delta-rs where it can (`lakehouse.readers`), so a run that had
nothing to do prints its summary without starting Spark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse.config import Config
from lakehouse.readers import as_of_local, count_rows, open_local, utc_naive, valid_from_bounds_local
from lakehouse.runner import TableRun, lazy_session
from lakehouse.tables import table_paths
from lakehouse.timetravel import AS_OF_SQL

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class _Counter:
    """Row counts and the as-of example of a table: delta-rs where it reads the table, else Spark."""

    def __init__(self, spark: Callable[[], SparkSession]) -> None:
        self.spark = spark

    def exists(self, path: str) -> bool:
        from lakehouse.errors import TableNotFoundError

        try:
            return open_local(path) is not None or self._spark_exists(path)
        except TableNotFoundError:
            return False

    def _spark_exists(self, path: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark(), path)

    def count(self, path: str) -> int:
        local = count_rows(path)
        return local if local is not None else self.spark().read.format("delta").load(path).count()

    def valid_from_bounds(self, path: str) -> tuple[datetime, datetime]:
        local = valid_from_bounds_local(path)
        if local is not None:
            return local
        from pyspark.sql import functions as F

        history = self.spark().read.format("delta").load(path)
        row = history.agg(F.min("_valid_from").alias("lo"), F.max("_valid_from").alias("hi")).first()
        return utc_naive(row["lo"]), utc_naive(row["hi"])

    def live_at(self, path: str, at: datetime) -> int:
        local = as_of_local(path, at, key=[], limit=0)
        if local is not None:
            return local.total
        from lakehouse.timetravel import as_of

        return as_of(self.spark(), path, at).count()


def print_summary(spark: SparkSession | Callable[[], SparkSession], config: Config, runs: list[TableRun]) -> None:
    """Print one line per table, then an as-of example on the first table that has history."""
    counter = _Counter(lazy_session(spark))
    width = max([len(r.table) for r in runs] + [16]) + 2
    policy_source = config.policy.source_table if config.policy else None
    print("\n== lakehouse run ==")
    print(
        f"{'table':<{width}}{'batches':>8}{'read':>9}{'applied':>9}{'late':>6}{'quar.':>7}{'latest':>9}"
        f"{'history':>9}{'secs':>7}  status"
    )
    example = None
    for run in runs:
        paths = table_paths(config, config.table(run.table))
        total = {k: sum(getattr(b, k) for b in run.batches) for k in ("rows_read", "applied", "late", "quarantined")}
        if counter.exists(paths.history):
            latest, versions = counter.count(paths.latest), counter.count(paths.history)
        else:  # the query failed before it created its tables
            latest, versions = 0, 0
        status = "ok" if run.ok else f"FAILED: {run.error}"
        if run.notes:
            status += f"; {run.notes[-1]}" + (f" (and {len(run.notes) - 1} more)" if len(run.notes) > 1 else "")
        print(
            f"{run.table:<{width}}{len(run.batches):>8}{total['rows_read']:>9}{total['applied']:>9}{total['late']:>6}"
            f"{total['quarantined']:>7}{latest:>9}{versions:>9}{run.seconds:>7.1f}  {status}"
        )
        if example is None and versions and run.table != policy_source:
            example = (run.table, paths.history)
    if example is None:
        return
    name, path = example
    low, high = counter.valid_from_bounds(path)
    # A whole hour after the middle: never the exact commit time of someone's row (that would be PHI in a log).
    middle = low + (high - low) / 2
    at = (middle + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    print(f"\nAs of {at:%Y-%m-%d %H:%M:%S} UTC, {name} had {counter.live_at(path, at)} live rows. The same in Athena:")
    print(AS_OF_SQL.format(history=f"{name}_history", at=f"{at:%Y-%m-%d %H:%M:%S}"))
    print(f"\nTry: lakehouse as-of {name} --at '{at:%Y-%m-%d %H:%M:%S}'")
