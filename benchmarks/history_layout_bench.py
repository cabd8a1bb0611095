"""A day's history MERGE as history grows: history unpartitioned against partitioned by `_is_current`.

What is measured
    A history of `--current` current versions and `k` x as many closed ones (k = `--closed`: a snapshot feed
    after ~100 k days of 1% changes), in files of ~250k rows, both layouts from the same rows. One "day" then
    re-closes 1% of the keys, spread over every file (as a snapshot diff's changes are), and inserts their new
    versions, through the engine's own `merge_history`: the unpartitioned table as before (every version can
    match), the partitioned one with `current_only` (what a batch that re-closes no closed version runs). Each
    MERGE runs on a fresh copy of the base, layouts alternately, `--rounds` times; the median is reported, with
    the rows Delta copied (rewrote unchanged).

Run (writes benchmarks/results/history-layout-<date>.json):
    python -m benchmarks.history_layout_bench                        # 400k current, k = 0 1 4, 3 rounds
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.report import save_report
from lakehouse.apply.history import merge_history
from lakehouse.session import build_spark

ROWS_PER_FILE = 250_000
COLUMNS = ["k", "v", "_valid_from", "_valid_to", "_is_current", "_sequence"]


def base_rows(spark: SparkSession, current: int, closed_per_key: int) -> DataFrame:
    """`current` open versions (sequence s9) and `closed_per_key` closed ones per key before them."""
    keys = spark.range(current).withColumnRenamed("id", "k")
    now = keys.select(
        "k",
        F.sha2(F.col("k").cast("string"), 256).alias("v"),
        F.lit("2026-03-01").cast("timestamp").alias("_valid_from"),
        F.lit(None).cast("timestamp").alias("_valid_to"),
        F.lit(True).alias("_is_current"),
        F.lit("s9").alias("_sequence"),
    )
    if not closed_per_key:
        return now
    days = spark.range(closed_per_key).withColumnRenamed("id", "d")
    old = keys.crossJoin(days).select(
        "k",
        F.sha2(F.concat_ws("-", "k", "d"), 256).alias("v"),
        F.lit("2025-01-01").cast("timestamp").alias("_valid_from"),
        F.lit("2026-03-01").cast("timestamp").alias("_valid_to"),
        F.lit(False).alias("_is_current"),
        F.concat(F.lit("s0-"), F.col("d").cast("string")).alias("_sequence"),
    )
    return now.unionByName(old)


def write_base(rows: DataFrame, path: Path, *, partitioned: bool, total: int) -> None:
    files = max(1, -(-total // ROWS_PER_FILE))
    writer = rows.repartition(files).write.format("delta")
    if partitioned:
        writer = writer.partitionBy("_is_current")
    writer.save(str(path))


def day_plan(spark: SparkSession, current: int) -> DataFrame:
    """1% of the keys, spread: each one's current version re-closed and a new version inserted."""
    keys = spark.range(0, current, 100).withColumnRenamed("id", "k")
    day = F.lit("2026-03-02").cast("timestamp")
    reclose = keys.select(
        "k",
        F.sha2(F.col("k").cast("string"), 256).alias("v"),
        F.lit("2026-03-01").cast("timestamp").alias("_valid_from"),
        day.alias("_valid_to"),
        F.lit(False).alias("_is_current"),
        F.lit("s9").alias("_sequence"),
        F.lit("update").alias("_action"),
    )
    insert = keys.select(
        "k",
        F.lit("new").alias("v"),
        day.alias("_valid_from"),
        F.lit(None).cast("timestamp").alias("_valid_to"),
        F.lit(True).alias("_is_current"),
        F.lit("s10").alias("_sequence"),
        F.lit("insert").alias("_action"),
    )
    return reclose.unionByName(insert).localCheckpoint()


def one_merge(spark: SparkSession, base: Path, work: Path, *, partitioned: bool, current: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    plan = day_plan(spark, current)
    started = time.monotonic()
    merge_history(DeltaTable.forPath(spark, str(work)), plan, key=["k"], columns=COLUMNS, current_only=partitioned)
    seconds = time.monotonic() - started
    metrics = DeltaTable.forPath(spark, str(work)).history(1).select("operationMetrics").first()[0]
    table = spark.read.format("delta").load(str(work))
    if table.where("_is_current").count() != current:
        raise AssertionError("the MERGE left a key with other than one current version")
    return {"seconds": round(seconds, 3), "rows_copied": int(metrics["numTargetRowsCopied"])}


def run_size(spark: SparkSession, root: Path, current: int, closed_per_key: int, rounds: int) -> dict:
    total = current * (1 + closed_per_key)
    rows = base_rows(spark, current, closed_per_key)
    bases = {name: root / f"base-{name}" for name in ("unpartitioned", "partitioned")}
    for name, path in bases.items():
        write_base(rows, path, partitioned=name == "partitioned", total=total)
    runs: dict[str, list[dict]] = {name: [] for name in bases}
    for _ in range(rounds):
        for name, path in bases.items():
            runs[name].append(one_merge(spark, path, root / "work", partitioned=name == "partitioned", current=current))
    for path in bases.values():
        shutil.rmtree(path, ignore_errors=True)
    result = {
        name: {
            "seconds_p50": statistics.median(r["seconds"] for r in rs),
            "seconds": [r["seconds"] for r in rs],
            "rows_copied": rs[0]["rows_copied"],
        }
        for name, rs in runs.items()
    }
    unpartitioned, partitioned = (result[n]["seconds_p50"] for n in ("unpartitioned", "partitioned"))
    return {
        "current": current,
        "closed": current * closed_per_key,
        "history_rows": total,
        **result,
        "unpartitioned_over_partitioned": round(unpartitioned / partitioned, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--current", type=int, default=400_000, help="current versions (keys)")
    parser.add_argument("--closed", type=int, nargs="+", default=[0, 1, 4], help="closed versions per key")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    spark = build_spark(None, app_name="lakehouse-history-layout", extra_conf={"spark.sql.shuffle.partitions": "8"})
    root = Path(tempfile.mkdtemp(prefix="history-layout-"))
    try:
        points = []
        for k in args.closed:
            point = run_size(spark, root, args.current, k, args.rounds)
            points.append(point)
            print(
                f"history {point['history_rows']:>10,} rows ({point['closed']:,} closed): "
                f"unpartitioned {point['unpartitioned']['seconds_p50']:6.2f} s "
                f"({point['unpartitioned']['rows_copied']:,} rows rewritten), "
                f"partitioned {point['partitioned']['seconds_p50']:6.2f} s "
                f"({point['partitioned']['rows_copied']:,}): {point['unpartitioned_over_partitioned']}x",
                flush=True,
            )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    save_report(
        "history-layout", {"current": args.current, "closed_per_key": args.closed, "rounds": args.rounds}, points=points
    )


if __name__ == "__main__":
    main()
