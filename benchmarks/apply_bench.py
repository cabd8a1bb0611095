"""Apply benchmark: one DMS micro-batch against big tables, next to three simpler ways to write it.

What is measured
    For each table size N (ids 1..N, like tests' PEOPLE: id bigint, name string, score double), the
    engine's `history` and `latest` tables are built directly with Spark (full-load rows, clustered by
    id in files of ~250k rows). ~1% of the keys the batch touches already hold a newer CDC version, so
    the batch's changes to them are late. One DMS CDC CSV file of --changes rows (80% U, 10% key-only
    D, 10% I of new ids above N; U/D keys in one contiguous id range in the middle of the table) is then
    applied to a separate copy of the same base tables by each method:

      engine    `apply_batch` on the file: parse, type, sequence, dedup, history (SCD2) MERGE and
                latest (SCD1) MERGE, i.e. everything one micro-batch of the stream does;
      append    plain Delta append of the same typed rows to latest: the write floor (no read, no match);
      delta_rs  delta-rs MERGE into latest of the typed changes deduped to the last change per key, with
                the engine's sequence guard (delete / update only when newer; insert unless a delete);
      rewrite   Spark: latest anti-join the changed keys, union the non-delete changes, overwrite
                (no sequence guard, so late deletes do delete: a lower bound of a full rewrite).

    Only the engine's timer includes parsing the CSV; the other methods get rows parsed and typed before
    their timer (by the engine's own parser, so values and sequences are identical). append, delta_rs
    and rewrite write latest only; the engine writes history and latest. A warm-up pass on a small
    table runs first so the JVM start does not land on the engine's first timing.

    Then the streaming latency: the real stream (`start_query`, 1 s processing-time trigger) on a small
    table; per sample one single-row CDC file is landed and latest is polled (delta-rs, every 0.1 s)
    until the row is visible. file written -> visible, p50 and p95.

    Throughput curve (--curve): batches of several sizes (e.g. 10k, 100k, 1M changes) into one table of
    --curve-rows rows (10M), engine and delta-rs side by side on copies of the same base: changes per second.

    Scale-out (--scale-out N): one batch of N changes into --curve-rows rows, applied by the engine in a fresh
    process on local[1], local[2] and a standalone cluster of two one-core workers started for the run (their
    executors are separate JVMs, so the shuffles go over the network stack), each after a warm-up batch;
    delta-rs, one process, next to it.

How to read it
    seconds   wall clock of one batch on a warm Spark session.
    /eng      method seconds / engine seconds: below 1 the method is faster. append is the floor no
              MERGE can beat; delta_rs is what latest alone costs single-process; the engine also keeps
              history, so it should land somewhere above delta_rs.
    growth    seconds at the largest size / seconds at the smallest. Near 1: the cost follows the batch,
              not the table (file skipping works). Near the size ratio: the method reads or rewrites the
              whole table (rewrite does by design).

Run (writes benchmarks/results/apply-<date>.json):
    python -m benchmarks.apply_bench                                 # 1M and 10M rows, 100k changes
    python -m benchmarks.apply_bench --curve 10000 100000 1000000 --scale-out 1000000   # + curve, scale-out
    python -m benchmarks.apply_bench --sizes 20000 --changes 2000 --latency-samples 3   # smoke run
    python -m benchmarks.apply_bench --sizes --latency-samples 0 --curve 2000 20000 --curve-rows 100000 \
        --scale-out 20000                                            # smoke run of the curve and scale-out
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.apply.batch import apply_batch
from lakehouse.apply.latest import LATEST_META
from lakehouse.changes.normalize import sequence_column, to_changes
from lakehouse.config import TableConfig
from lakehouse.metrics import BatchMetrics
from lakehouse.runner import TableRun, start_query
from lakehouse.session import build_spark
from lakehouse.sources.dms import parse_files
from lakehouse.tables import TablePaths, ensure_tables, history_ddl, latest_ddl, schema_of, table_paths
from tests.conftest import write_dms_csv
from tests.dms_tables import people_config, seq
from tests.spark_cluster import SparkCluster

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

METHODS = ("engine", "append", "delta_rs", "rewrite")
ENGINE_FIGURES = ("rows_read", "applied", "inserted", "updated", "deleted", "late", "seconds", "steps")
RESULTS = Path(__file__).parent / "results"
ROWS_PER_FILE = 250_000
LATE_EVERY = 100  # every 100th key of the table already holds a newer version
LOAD_TS = "2026-03-01 00:00:00"
NEWER_TS = "2026-03-02 00:00:00"
CDC_START = dt.datetime(2026, 3, 1, 10, 0, 0)
CDC_STEP = dt.timedelta(microseconds=500)
LANDING = "file:/landing/people/"  # the _source_file prefix of the base rows (lineage only)
NEWER_FILE = "20260302-000000000.csv"
WARMUP = (10_000, 1_000)  # rows, changes
ENGINE_TABLES = ("history", "latest", "quarantine", "ledger")


# --- the batch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The CDC batch applied to a table of `size` rows: its op mix and the id range of its U/D keys."""

    size: int
    changes: int

    @property
    def inserts(self) -> int:
        return self.changes // 10

    @property
    def deletes(self) -> int:
        return self.changes // 10

    @property
    def updates(self) -> int:
        return self.changes - self.inserts - self.deletes

    @property
    def key_lo(self) -> int:
        return (self.size - self.updates - self.deletes) // 2 + 1

    @property
    def key_hi(self) -> int:
        return self.key_lo + self.updates + self.deletes - 1

    @property
    def late_keys(self) -> int:
        return self.size // LATE_EVERY

    def is_late(self, key: int) -> bool:
        return key <= self.size and key % LATE_EVERY == 0


def cdc_record(op: str, key: int, position: int, start: dt.datetime = CDC_START) -> list[str]:
    """One DMS CDC row in the PEOPLE layout: Op, ts, id, name, score, seq, BI_id."""
    ts = (start + position * CDC_STEP).strftime("%Y-%m-%d %H:%M:%S.%f")
    if op == "D":  # PostgreSQL writes only the key of a deleted row
        return ["D", ts, str(key), "", "", seq(position + 1), str(key)]
    before = str(key) if op == "U" else ""
    return [op, ts, str(key), f"name-{key}-v2", str(key % 997 / 10), seq(position + 1), before]


def write_cdc_file(folder: Path, batch: Batch, seed: int = 7) -> int:
    """Write the batch as one CDC file (ops shuffled, commit times increasing); return latest's expected rows."""
    rng = random.Random(seed)
    keys = list(range(batch.key_lo, batch.key_hi + 1))
    rng.shuffle(keys)
    ops = [("D", k) for k in keys[: batch.deletes]] + [("U", k) for k in keys[batch.deletes :]]
    ops += [("I", batch.size + 1 + i) for i in range(batch.inserts)]
    rng.shuffle(ops)
    write_dms_csv(folder, "20260301-100000000.csv", [cdc_record(op, key, i) for i, (op, key) in enumerate(ops)])
    live_deletes = sum(1 for op, key in ops if op == "D" and not batch.is_late(key))
    return batch.size + batch.inserts - live_deletes


# --- the base tables ------------------------------------------------------------------------------


def base_versions(spark: SparkSession, batch: Batch) -> DataFrame:
    """Every history row: the full load of ids 1..N, and a newer CDC version (2026-03-02) of every 100th key."""
    from pyspark.sql import functions as F

    ids = spark.range(1, batch.size + 1)
    key = F.col("id")
    late = key % LATE_EVERY == 0  # one base for every batch of a size: ~1% of any batch's keys are late
    row = (key - 1) % ROWS_PER_FILE
    file = F.format_string("LOAD%08d.csv", F.floor((key - 1) / ROWS_PER_FILE) + 1)
    load_ts, newer_ts = F.lit(LOAD_TS).cast("timestamp"), F.lit(NEWER_TS).cast("timestamp")
    no_seq = F.lit(None).cast("string")
    load = ids.select(
        key,
        F.concat(F.lit("name-"), key).alias("name"),
        (key % 1000 / 10).alias("score"),
        F.lit("I").alias("_op"),
        F.lit(False).alias("_is_deleted"),
        load_ts.alias("_valid_from"),
        F.when(late, newer_ts).alias("_valid_to"),
        (~late).alias("_is_current"),
        sequence_column(F.lit(True), load_ts, no_seq, file, row).alias("_sequence"),
        no_seq.alias("_change_seq"),
        F.concat(F.lit(LANDING), file).alias("_source_file"),
        row.alias("_source_row"),
        F.lit(0).alias("_batch_id"),
    )
    change_seq = F.concat(F.lit("20260302"), F.lpad(key.cast("string"), 27, "0"))
    newer = ids.where(late).select(
        key,
        F.concat(F.lit("name-"), key, F.lit("-newer")).alias("name"),
        (key % 1000 / 10 + 1).alias("score"),
        F.lit("U").alias("_op"),
        F.lit(False).alias("_is_deleted"),
        newer_ts.alias("_valid_from"),
        F.lit(None).cast("timestamp").alias("_valid_to"),
        F.lit(True).alias("_is_current"),
        sequence_column(F.lit(False), newer_ts, change_seq, F.lit(NEWER_FILE), key).alias("_sequence"),
        change_seq.alias("_change_seq"),
        F.lit(LANDING + NEWER_FILE).alias("_source_file"),
        key.alias("_source_row"),
        F.lit(0).alias("_batch_id"),
    )
    return load.unionByName(newer)


def conform(df: DataFrame, ddl: str) -> DataFrame:
    """The columns of `ddl`, in its order and with its types."""
    from pyspark.sql import functions as F

    schema = schema_of(df.sparkSession, ddl)
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def append_clustered(df: DataFrame, path: str, rows: int) -> None:
    """Append `df` in files of ~ROWS_PER_FILE rows, range-partitioned and sorted by id."""
    files = max(1, math.ceil(rows / ROWS_PER_FILE))
    df.repartitionByRange(files, "id").sortWithinPartitions("id", "_sequence").write.format("delta").mode(
        "append"
    ).save(path)


def write_base(spark: SparkSession, table: TableConfig, paths: TablePaths, batch: Batch) -> None:
    """Create the engine's tables (its schemas and properties), then append the base rows."""
    ensure_tables(spark, table, paths)
    versions = base_versions(spark, batch)
    append_clustered(conform(versions, history_ddl(table)), paths.history, batch.size + batch.late_keys)
    append_clustered(conform(versions.where("_is_current"), latest_ddl(table)), paths.latest, batch.size)


def paths_in(folder: Path) -> TablePaths:
    return TablePaths(
        history=str(folder / "history"),
        latest=str(folder / "latest"),
        quarantine=str(folder / "quarantine"),
        checkpoint=str(folder / "checkpoint"),
        ledger=str(folder / "ledger"),
    )


def copy_tables(base: Path, dest: Path, names: tuple[str, ...]) -> TablePaths:
    for name in names:
        shutil.copytree(base / name, dest / name)
    return paths_in(dest)


# --- the typed changes the other methods start from ------------------------------------------------


@dataclass(frozen=True)
class Staged:
    all_rows: str  # every valid change, typed (Parquet)
    last_per_key: str  # the newest change of each key (Parquet)


def stage_changes(spark: SparkSession, table: TableConfig, landing: Path, folder: Path) -> Staged:
    """Parse and type the CDC file with the engine's own parser, so every method sees the same rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    files = spark.read.format("binaryFile").load(str(landing))
    columns = [*table.source.business_columns, *LATEST_META]
    typed = to_changes(parse_files(files, table.source), table, batch_id=1).where(F.col("_reason").isNull())
    staged = Staged(all_rows=str(folder / "all"), last_per_key=str(folder / "last"))
    typed.select(*columns).write.parquet(staged.all_rows)
    newest = Window.partitionBy("id").orderBy(F.col("_sequence").desc())
    (
        spark.read.parquet(staged.all_rows)
        .withColumn("_n", F.row_number().over(newest))
        .where("_n = 1")
        .drop("_n")
        .write.parquet(staged.last_per_key)
    )
    return staged


def cached(df: DataFrame) -> DataFrame:
    df.persist()
    df.count()
    return df


def arrow_changes(staged: Staged, latest: str) -> pa.Table:
    """The deduped changes as a pyarrow table with latest's exact schema (delta-rs checks types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    target = pa.schema(DeltaTable(latest).schema().to_arrow())
    return pq.read_table(staged.last_per_key).select(target.names).cast(target)


# --- the methods ----------------------------------------------------------------------------------


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return round(time.perf_counter() - started, 3)


def run_engine(spark: SparkSession, table: TableConfig, landing: Path, paths: TablePaths) -> tuple[float, dict]:
    result: dict[str, BatchMetrics] = {}

    def run() -> None:
        files = spark.read.format("binaryFile").load(str(landing))
        result["metrics"] = apply_batch(files, 1, table=table, paths=paths)

    seconds = timed(run)
    return seconds, {k: getattr(result["metrics"], k) for k in ENGINE_FIGURES}


def run_append(spark: SparkSession, staged: Staged, latest: str) -> float:
    rows = cached(spark.read.parquet(staged.all_rows))
    try:
        return timed(lambda: rows.write.format("delta").mode("append").save(latest))
    finally:
        rows.unpersist()


def run_delta_rs(staged: Staged, latest: str) -> float:
    from deltalake import DeltaTable

    source = arrow_changes(staged, latest)

    def run() -> None:
        (
            # streamed_exec=False: with a small in-memory source delta-rs may prune target files by its stats
            DeltaTable(latest)
            .merge(source=source, predicate="t.id = s.id", source_alias="s", target_alias="t", streamed_exec=False)
            .when_matched_delete(predicate="s._op = 'D' AND s._sequence > t._sequence")
            .when_matched_update_all(predicate="s._sequence > t._sequence")
            .when_not_matched_insert_all(predicate="s._op <> 'D'")
            .execute()
        )

    return timed(run)


def run_rewrite(spark: SparkSession, staged: Staged, latest: str) -> float:
    from pyspark.sql import functions as F

    changes = cached(spark.read.parquet(staged.last_per_key))

    def run() -> None:
        current = spark.read.format("delta").load(latest)
        kept = current.join(changes.select("id"), "id", "left_anti")
        added = changes.where(F.col("_op") != "D").select(*current.columns)
        kept.unionByName(added).write.format("delta").mode("overwrite").save(latest)

    try:
        return timed(run)
    finally:
        changes.unpersist()


def live_rows(path: str) -> int:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_dataset().count_rows()


def prepare_base(spark: SparkSession, table: TableConfig, size: int, folder: Path) -> Path:
    """The base tables of `size` rows in `folder` (built once; every batch of that size starts from a copy)."""
    done = folder / "_complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_base(spark, table, paths_in(folder), Batch(size, 0))
        done.write_text("")
    return folder


def prepare_batch(spark: SparkSession, table: TableConfig, batch: Batch, folder: Path) -> tuple[Path, Staged, int]:
    """The batch's CDC file in `folder/landing`, its rows staged for the other methods, latest's expected rows."""
    shutil.rmtree(folder, ignore_errors=True)
    expected = write_cdc_file(folder / "landing", batch)
    return folder / "landing", stage_changes(spark, table, folder / "landing", folder / "staged"), expected


def run_methods(
    spark: SparkSession,
    table: TableConfig,
    base: Path,
    landing: Path,
    staged: Staged,
    work: Path,
    methods: tuple[str, ...] = METHODS,
) -> tuple[dict, dict, dict]:
    """Apply the batch with `methods`, each on its own copy of the base tables."""
    shutil.rmtree(work, ignore_errors=True)
    copies = {m: copy_tables(base, work / m, ("latest",)) for m in methods if m != "engine"}
    seconds: dict[str, float] = {}
    metrics: dict = {}
    if "engine" in methods:
        copies["engine"] = copy_tables(base, work / "engine", ENGINE_TABLES)
        seconds["engine"], metrics = run_engine(spark, table, landing, copies["engine"])
    if "append" in methods:
        seconds["append"] = run_append(spark, staged, copies["append"].latest)
    if "delta_rs" in methods:
        seconds["delta_rs"] = run_delta_rs(staged, copies["delta_rs"].latest)
    if "rewrite" in methods:
        seconds["rewrite"] = run_rewrite(spark, staged, copies["rewrite"].latest)
    rows = {m: live_rows(copies[m].latest) for m in ("engine", "delta_rs", "rewrite") if m in methods}
    shutil.rmtree(work, ignore_errors=True)
    return seconds, metrics, rows


def check_rows(rows: dict, expected: int) -> None:
    print(f"  latest rows: {json.dumps(rows)}, expected {expected} (rewrite has no guard: late deletes delete)")
    if rows.get("engine") != rows.get("delta_rs") or rows.get("engine") != expected:
        engine, delta_rs = rows.get("engine"), rows.get("delta_rs")
        print(f"  WARNING: latest rows differ: engine {engine}, delta-rs {delta_rs}", flush=True)


def run_size(spark: SparkSession, table: TableConfig, batch: Batch, folder: Path) -> dict:
    """Build the base tables and the batch for one size, run every method; seconds and row counts."""
    started = time.perf_counter()
    base = prepare_base(spark, table, batch.size, folder / "base")
    landing, staged, expected = prepare_batch(spark, table, batch, folder / f"batch-{batch.changes}")
    print(f"  base tables and batch ready in {time.perf_counter() - started:.1f} s", flush=True)

    seconds, metrics, rows = run_methods(spark, table, base, landing, staged, folder / "work")
    print("  " + "  ".join(f"{m} {s:.2f} s" for m, s in seconds.items()), flush=True)
    print(f"  engine: {json.dumps(metrics)}", flush=True)
    check_rows(rows, expected)
    return {
        "rows": batch.size,
        "changes": batch.changes,
        "seconds": seconds,
        "x_engine": {m: round(seconds[m] / seconds["engine"], 3) for m in METHODS},
        "latest_rows": {**rows, "expected": expected},
        "engine_metrics": metrics,
    }


# --- throughput curve -----------------------------------------------------------------------------


def run_curve(spark: SparkSession, table: TableConfig, size: int, changes: list[int], folder: Path) -> list[dict]:
    """Batches of several sizes into one table: changes per second of the engine and of delta-rs."""
    base = prepare_base(spark, table, size, folder / "base")
    points = []
    for count in changes:
        print(f"curve: {count:,} changes into {size:,} rows", flush=True)
        landing, staged, expected = prepare_batch(spark, table, Batch(size, count), folder / f"batch-{count}")
        seconds, metrics, rows = run_methods(
            spark, table, base, landing, staged, folder / "work", methods=("engine", "delta_rs")
        )
        check_rows(rows, expected)
        rates = {m: round(count / s) for m, s in seconds.items()}
        print(f"  seconds {seconds}, changes/s {rates}, engine steps {metrics.get('steps')}", flush=True)
        points.append(
            {
                "rows": size,
                "changes": count,
                "seconds": seconds,
                "changes_per_second": rates,
                "engine_over_delta_rs": round(seconds["engine"] / seconds["delta_rs"], 3),
                "engine_metrics": metrics,
                "latest_rows": {**rows, "expected": expected},
            }
        )
        shutil.rmtree(folder / f"batch-{count}", ignore_errors=True)
    return points


# --- streaming latency ----------------------------------------------------------------------------


def visible(latest: str, key: int) -> bool:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    found = DeltaTable(latest).to_pyarrow_dataset().to_table(columns=["id"], filter=ds.field("id") == key)
    return found.num_rows > 0


def land_and_wait(query: StreamingQuery, landing: Path, staging: Path, latest: str, key: int, timeout: float) -> float:
    """Land a one-row CDC file (atomically: written aside, then renamed in); seconds until latest shows it."""
    start = dt.datetime(2026, 3, 1, 12, 0, 0)
    staged = write_dms_csv(staging, f"20260301-12{key:010d}.csv", [cdc_record("I", key, key, start=start)])
    os.replace(staged, landing / staged.name)
    written = time.perf_counter()
    while not visible(latest, key):
        if not query.isActive:
            raise RuntimeError(f"the stream stopped: {query.exception()}")
        if time.perf_counter() - written > timeout:
            raise TimeoutError(f"id {key} not visible in latest after {timeout:.0f} s")
        time.sleep(0.1)
    return round(time.perf_counter() - written, 3)


def stop_between_batches(query: StreamingQuery, wait_seconds: float = 120) -> None:
    deadline = time.monotonic() + wait_seconds
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stream_samples(
    spark: SparkSession, root: Path, samples: int, rows: int = 10_000, timeout: float = 300, gap: float = 0.0
) -> tuple[list[float], TableRun, list[dict]]:
    """One-row files landed one by one under the real stream (1 s trigger) on a fresh table of `rows` rows: each
    file's seconds until its row is visible in latest (the first, a warm-up, dropped), the run, the progress.

    Each file lands `gap` seconds after the one before it became visible: 0 is back to back (the stream never
    idles); DMS lands a table's file every `CdcMaxBatchInterval` (60 s by default), so a stream mostly waits."""
    shutil.rmtree(root, ignore_errors=True)  # a fresh table and checkpoint
    config = people_config(root)
    table = config.tables["people"]
    paths = table_paths(config, table)
    write_base(spark, table, paths, Batch(rows, 0))
    landing = Path(table.source.path)
    landing.mkdir(parents=True, exist_ok=True)
    run = TableRun(table.name)
    query = start_query(spark, config, table, run, trigger={"processingTime": "1 second"})
    try:
        keys = range(rows + 1, rows + samples + 2)
        seconds = []
        for k in keys:
            seconds.append(land_and_wait(query, landing, root / "staging", paths.latest, k, timeout))
            time.sleep(gap)
        seconds = seconds[1:]
        time.sleep(1.5)  # the last trigger's progress
        progress = [p if isinstance(p, dict) else json.loads(p.json) for p in query.recentProgress]
    finally:
        stop_between_batches(query)
    return seconds, run, progress


def measure_latency(spark: SparkSession, root: Path, samples: int, rows: int = 10_000, timeout: float = 300) -> dict:
    """file landed -> row visible in latest, through the real stream on a 1 s trigger (first sample is warm-up)."""
    seconds, run, _ = stream_samples(spark, root, samples, rows, timeout)
    return {
        "trigger": "processingTime 1 second",
        "table_rows": rows,
        "samples": seconds,
        "batch_seconds": [b.seconds for b in run.batches[1:]],  # the engine's own time per micro-batch
        "batch_steps": [b.steps for b in run.batches[1:]],
        "p50": percentile(seconds, 50),
        "p95": percentile(seconds, 95),
    }


# --- scale-out ------------------------------------------------------------------------------------


MASTER_CONF = {
    "local[1]": {"spark.master": "local[1]"},
    "local[2]": {"spark.master": "local[2]"},
    # Two executors of one core each, one per worker; the driver runs no tasks there.
    "standalone 2x1": {
        "spark.executor.cores": "1",
        "spark.cores.max": "2",
        "spark.executor.memory": "3g",
        "spark.driver.memory": "3g",
    },
}


def engine_child(master: str, conf: dict[str, str], base: Path, landing: Path, work: Path) -> dict:
    """In a fresh process: warm up, then apply the batch once with the engine on `master`."""
    spark = build_spark(
        None,
        app_name=f"lakehouse-apply-bench-{master}",
        extra_conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "6g", **conf},
    )
    try:
        table = people_config(work / "config").tables["people"]
        warm = work / "warmup"
        warm_batch = Batch(*WARMUP)
        write_base(spark, table, paths_in(warm / "base"), warm_batch)
        write_cdc_file(warm / "landing", warm_batch)
        run_engine(spark, table, warm / "landing", copy_tables(warm / "base", warm / "engine", ENGINE_TABLES))
        paths = copy_tables(base, work / "engine", ENGINE_TABLES)
        seconds, metrics = run_engine(spark, table, landing, paths)
        cores = spark.sparkContext.defaultParallelism
    finally:
        spark.stop()
    return {"master": master, "cores": cores, "seconds": seconds, "engine_metrics": metrics}


def run_scale_out(root: Path, base: Path, landing: Path, changes: int, delta_rs_seconds: float) -> dict:
    """The same batch by the engine on local[1], local[2] and a standalone cluster of two one-core workers."""
    runs = []
    for master, conf in MASTER_CONF.items():
        work = root / "scale" / master.replace(" ", "-").replace("[", "").replace("]", "")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"scale-out: {master} (load {os.getloadavg()[0]:.1f})", flush=True)
        if master.startswith("standalone"):
            cluster = SparkCluster(work / "cluster", workers=2, cores=1, worker_memory="3g").start()
            try:
                runs.append(child_engine(master, {**conf, "spark.master": cluster.master_url}, base, landing, work))
            finally:
                cluster.stop()
        else:
            runs.append(child_engine(master, conf, base, landing, work))
        print(f"  {runs[-1]['seconds']:.2f} s on {runs[-1]['cores']} cores", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    one = runs[0]["seconds"]
    for r in runs:
        r["speedup_vs_local1"] = round(one / r["seconds"], 2)
        r["changes_per_second"] = round(changes / r["seconds"])
    return {"changes": changes, "runs": runs, "delta_rs_seconds": delta_rs_seconds}


def child_engine(master: str, conf: dict[str, str], base: Path, landing: Path, work: Path) -> dict:
    arguments = {"master": master, "conf": conf, "base": str(base), "landing": str(landing), "work": str(work)}
    command = [sys.executable, "-m", "benchmarks.apply_bench", "--engine-child", json.dumps(arguments)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"the engine on {master} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report ---------------------------------------------------------------------------------------


def machine(spark: SparkSession) -> dict:
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": spark.sparkContext._jvm.System.getProperty("java.version"),  # type: ignore[union-attr]
        "spark": spark.version,
        "delta_spark": metadata.version("delta-spark"),
        "deltalake": metadata.version("deltalake"),
        "pyarrow": metadata.version("pyarrow"),
        "spark_conf": {k: spark.conf.get(k) for k in ("spark.driver.memory", "spark.sql.shuffle.partitions")},
    }


def growth(results: list[dict]) -> dict:
    """Per method: seconds at the largest size / seconds at the smallest."""
    small, large = min(results, key=lambda r: r["rows"]), max(results, key=lambda r: r["rows"])
    return {
        "from_rows": small["rows"],
        "to_rows": large["rows"],
        "by_method": {m: round(large["seconds"][m] / small["seconds"][m], 2) for m in METHODS},
    }


def print_table(results: list[dict], changes: int) -> None:
    print(f"\n== apply: one batch of {changes:,} changes (seconds; /eng = method seconds / engine seconds) ==")
    heads = [f"{m} s" for m in METHODS] + [f"{m}/eng" for m in METHODS[1:]]
    print(f"{'rows':>12}" + "".join(f"{h:>14}" for h in heads))
    for r in results:
        cells = [f"{r['seconds'][m]:.2f}" for m in METHODS] + [f"{r['x_engine'][m]:.3f}" for m in METHODS[1:]]
        print(f"{r['rows']:>12,}" + "".join(f"{c:>14}" for c in cells))


def print_growth(results: list[dict]) -> None:
    if len({r["rows"] for r in results}) < 2:
        print("\n(one size only: no growth)")
        return
    g = growth(results)
    small, large = min(results, key=lambda r: r["rows"]), max(results, key=lambda r: r["rows"])
    print(f"\n== growth from {g['from_rows']:,} to {g['to_rows']:,} rows ({g['to_rows'] / g['from_rows']:.1f}x) ==")
    for m in METHODS:
        print(f"{m:>10}  {small['seconds'][m]:8.2f} s -> {large['seconds'][m]:8.2f} s   {g['by_method'][m]:.2f}x")


def print_latency(latency: dict) -> None:
    samples = ", ".join(f"{s:.2f}" for s in latency["samples"])
    print(f"\n== streaming latency ({latency['trigger']}, {latency['table_rows']:,}-row table) ==")
    print(f"file written -> visible in latest: p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s  [{samples}]")
    print(f"engine seconds per micro-batch (inside that): {latency['batch_seconds']}")


def save(report: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"apply-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


# --- main -----------------------------------------------------------------------------------------


def print_curve(points: list[dict]) -> None:
    print(f"\n== throughput: batches into {points[0]['rows']:,} rows (changes per second) ==")
    print(f"{'changes':>10}{'engine s':>11}{'delta-rs s':>12}{'engine /s':>12}{'delta-rs /s':>13}{'eng/d-rs':>10}")
    for p in points:
        s, r = p["seconds"], p["changes_per_second"]
        print(
            f"{p['changes']:>10,}{s['engine']:>11.2f}{s['delta_rs']:>12.2f}{r['engine']:>12,}{r['delta_rs']:>13,}"
            f"{p['engine_over_delta_rs']:>10.2f}"
        )


def print_scale_out(scale: dict) -> None:
    print(f"\n== scale-out: the engine on one batch of {scale['changes']:,} changes ==")
    for r in scale["runs"]:
        print(
            f"{r['master']:>16}  {r['cores']} cores  {r['seconds']:8.2f} s  {r['changes_per_second']:>9,}/s  "
            f"x{r['speedup_vs_local1']:.2f} vs local[1]"
        )
    print(f"{'delta-rs':>16}  (one process)  {scale['delta_rs_seconds']:8.2f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000], help="table rows")
    parser.add_argument("--changes", type=int, default=100_000, help="rows in the CDC batch")
    parser.add_argument("--latency-samples", type=int, default=10, help="streaming samples (0: skip)")
    parser.add_argument("--curve", type=int, nargs="*", default=[], help="throughput curve: batch sizes (changes)")
    parser.add_argument("--curve-rows", type=int, default=10_000_000, help="table rows of the curve")
    parser.add_argument(
        "--scale-out", type=int, default=0, help="changes of the scale-out batch (into --curve-rows; 0: skip)"
    )
    parser.add_argument("--root", type=Path, help="where the tables go (default: a temp dir, removed at the end)")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(size < args.changes for size in args.sizes):
        parser.error("every size must be at least --changes (the batch's keys lie inside the table)")
    if any(c > args.curve_rows for c in [*args.curve, args.scale_out]):
        parser.error("curve and scale-out batches must be at most --curve-rows")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.engine_child:
        a = json.loads(args.engine_child)
        result = engine_child(a["master"], a["conf"], Path(a["base"]), Path(a["landing"]), Path(a["work"]))
        print(json.dumps(result))
        return
    root = args.root or Path(tempfile.mkdtemp(prefix="apply-bench-"))
    spark = build_spark(
        None,
        app_name="lakehouse-apply-bench",
        extra_conf={"spark.driver.memory": args.driver_memory, "spark.sql.shuffle.partitions": "8"},
    )
    results, curve, scale, latency = [], [], None, None
    try:
        table = people_config(root / "config").tables["people"]
        print(f"warm-up: {WARMUP[0]:,} rows, {WARMUP[1]:,} changes (load {os.getloadavg()[0]:.1f})", flush=True)
        run_size(spark, table, Batch(*WARMUP), root / "warmup")
        for size in args.sizes:
            print(f"{size:,} rows, {args.changes:,} changes (load {os.getloadavg()[0]:.1f})", flush=True)
            results.append(run_size(spark, table, Batch(size, args.changes), root / f"rows-{size}"))
        if args.curve:
            curve = run_curve(spark, table, args.curve_rows, args.curve, root / f"rows-{args.curve_rows}")
        latency = measure_latency(spark, root / "latency", args.latency_samples) if args.latency_samples else None
        if args.scale_out:
            folder = root / f"rows-{args.curve_rows}"
            base = prepare_base(spark, table, args.curve_rows, folder / "base")
            landing, staged, _ = prepare_batch(spark, table, Batch(args.curve_rows, args.scale_out), folder / "scale")
            delta_rs = run_methods(spark, table, base, landing, staged, folder / "work", methods=("delta_rs",))[0]
        report = {
            "benchmark": "apply",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(spark),
            "params": {
                "sizes": args.sizes,
                "changes": args.changes,
                "rows_per_file": ROWS_PER_FILE,
                "curve": args.curve,
                "curve_rows": args.curve_rows,
                "scale_out": args.scale_out,
            },
        }
    except BaseException:
        spark.stop()
        raise
    spark.stop()  # the scale-out runs start their own Spark
    try:
        if args.scale_out:
            scale = run_scale_out(root, base, landing, args.scale_out, delta_rs["delta_rs"])
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    report |= {
        "results": results,
        "growth": growth(results) if len(set(args.sizes)) > 1 else None,
        "curve": curve,
        "scale_out": scale,
        "latency": latency,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    if results:
        print_table(results, args.changes)
        print_growth(results)
    if curve:
        print_curve(curve)
    if scale:
        print_scale_out(scale)
    if latency:
        print_latency(latency)
    print(f"\nwritten to {save(report)}")


if __name__ == "__main__":
    main()
