"""Running the per-table streaming queries: once (availableNow) or as a long-running stream.

One query per table, each with its own checkpoint. `run_once` drains every table and keeps going
when one fails (the failure is reported and the exit code says so); `run_stream` runs them all on
a processing-time trigger until SIGTERM / Ctrl-C, then stops them between micro-batches.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakehouse.apply.batch import apply_batch
from lakehouse.config import Config, TableConfig
from lakehouse.metrics import BatchMetrics, report
from lakehouse.sources.dms import read_dms_stream
from lakehouse.tables import ensure_tables, table_paths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("lakehouse.runner")


@dataclass
class TableRun:
    """What one table's query did."""

    table: str
    batches: list[BatchMetrics] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def start_query(
    spark: SparkSession, config: Config, table: TableConfig, run: TableRun, *, trigger: dict[str, object]
) -> StreamingQuery:
    """Start the streaming query that applies `table`'s DMS files; its metrics go into `run`."""
    paths = table_paths(config, table)
    ensure_tables(spark, table, paths)

    def each_batch(files: DataFrame, batch_id: int) -> None:
        metrics = apply_batch(files, batch_id, table=table, paths=paths)
        run.batches.append(metrics)
        report(metrics)

    return (
        read_dms_stream(spark, table.source)
        .writeStream.queryName(f"lakehouse_{table.name}")
        .foreachBatch(each_batch)
        .option("checkpointLocation", paths.checkpoint)
        .trigger(**trigger)
        .start()
    )


def _error_text(exc: BaseException) -> str:
    """The useful line of an error raised inside foreachBatch (Spark wraps it in a long trace)."""
    text = str(exc)
    for marker in ("lakehouse.errors.", "pyspark.errors."):
        if marker in text:
            tail = text.split(marker)[-1]
            return tail.split("\n")[0]
    return text.strip().split("\n")[0][:2000]


def selected_tables(config: Config, names: list[str] | None) -> list[TableConfig]:
    """The configured tables, or the named ones (an unknown name is a ConfigError)."""
    return [config.table(n) for n in names] if names else list(config.tables.values())


def run_once(spark: SparkSession, config: Config, tables: list[str] | None = None) -> list[TableRun]:
    """Apply everything that has landed, table by table (trigger availableNow); never stop at a failure."""
    runs = []
    for table in selected_tables(config, tables):
        run = TableRun(table.name)
        try:
            start_query(spark, config, table, run, trigger={"availableNow": True}).awaitTermination()
        except Exception as exc:  # one table's failure must not stop the others; it is reported
            run.error = _error_text(exc)
            log.error('{"event": "table_failed", "table": "%s", "error": %r}', table.name, run.error)
        runs.append(run)
    return runs


def run_stream(
    spark: SparkSession, config: Config, tables: list[str] | None = None, stop: threading.Event | None = None
) -> list[TableRun]:
    """Run every table's query on a processing-time trigger until `stop` is set, SIGTERM or Ctrl-C."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    trigger = {"processingTime": f"{config.stream.trigger_seconds} seconds"}
    runs = {t.name: TableRun(t.name) for t in selected_tables(config, tables)}
    queries = {name: start_query(spark, config, config.table(name), run, trigger=trigger) for name, run in runs.items()}
    while not stop.is_set() and all(q.isActive for q in queries.values()):
        stop.wait(0.5)
    for name, query in queries.items():
        _stop_between_batches(query)
        if query.exception() is not None:
            runs[name].error = _error_text(query.exception())
    return list(runs.values())


def _stop_between_batches(query: StreamingQuery, wait_seconds: float = 120) -> None:
    deadline = time.monotonic() + wait_seconds
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()
