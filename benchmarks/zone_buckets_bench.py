"""A one-row batch's write to the non-PHI zone as the zone grows: one bucket against `privacy.zone_buckets`.

What is measured
    The demo's `patients` table (its shipped masking rules; consent off, so every version is admitted) with a
    zone of `--rows` patients, one current version each, in history and latest. One batch then updates one
    patient: the engine's own `write_non_phi` MERGEs the update into the zone's history (the old version
    closed, the new one inserted) and latest. The zone's keys are pseudonyms: with one bucket (the layout
    before buckets) Delta reads every key of both tables to find the touched file; with n (`--buckets`,
    8 is the default of `privacy.zone_buckets`) it reads the batch's bucket, 1/n of the zone. Every layout
    holds the same rows; each batch runs on a fresh copy of its base, layouts alternately, `--rounds`
    times; the median seconds are reported, with each one's ratio to one bucket.

Run (writes benchmarks/results/zone-buckets-<date>.json):
    python -m benchmarks.zone_buckets_bench                     # zones of 100k and 2M patients, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.report import save_report
from lakehouse.apply.non_phi import BUCKET, NonPhiZone, latest_columns, write_non_phi, zone_rows
from lakehouse.config import TableConfig, load_config
from lakehouse.masking import MaskingKey
from lakehouse.session import build_spark

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
ROWS_PER_FILE = 250_000
DAY1, DAY2 = "2026-03-01 08:00:00", "2026-03-02 08:00:00"


def patients_table() -> TableConfig:
    os.environ.setdefault("LAKEHOUSE_HOME", tempfile.gettempdir())
    table = load_config(LOCAL_YAML).tables["patients"]
    return table.model_copy(update={"consent": None})


def versions(spark: SparkSession, table: TableConfig, ids: DataFrame, *, day: str, current: bool) -> DataFrame:
    """PHI history versions of the patients in `ids` (column `id`), valid from `day`, as a batch's plan has them."""
    values = {
        name: F.col("id").cast(kind) if name == "patient_id" else F.concat(F.lit(f"{name}-"), F.col("id")).cast(kind)
        for name, kind in table.columns.items()
    }
    values["date_of_birth"] = F.date_add(F.lit("1950-01-01").cast("date"), (F.col("id") % 20000).cast("int"))
    values["updated_at"] = F.lit(day).cast("timestamp")
    return ids.select(
        *[value.alias(name) for name, value in values.items()],
        F.lit("U" if current else "I").alias("_op"),
        F.lit(False).alias("_is_deleted"),
        F.lit(day if current else DAY1).cast("timestamp").alias("_valid_from"),
        F.lit(None if current else DAY2).cast("timestamp").alias("_valid_to"),
        F.lit(current).alias("_is_current"),
        F.concat(F.lit(day), F.col("id")).alias("_sequence"),
        F.lit(1).cast("bigint").alias("_batch_id"),
    )


def write_base(spark: SparkSession, table: TableConfig, zone: NonPhiZone, rows: int, root: Path) -> None:
    base = versions(spark, table, spark.range(rows), day=DAY1, current=True)
    zoned = zone_rows(base, table=table, zone=zone, policy=None, forgotten=None).drop("_admit")
    files = max(1, -(-rows // ROWS_PER_FILE))
    zoned = zoned.repartition(files).localCheckpoint()
    for kind, frame in (("history", zoned), ("latest", zoned.select(*latest_columns(table)))):
        frame.write.format("delta").partitionBy(BUCKET).save(str(root / kind))


def one_batch(spark: SparkSession, table: TableConfig, zone: NonPhiZone, base: Path, rows: int) -> float:
    work = Path(zone.root) / table.name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    patient = spark.range(rows // 2, rows // 2 + 1)
    closed = versions(spark, table, patient, day=DAY1, current=False)
    opened = versions(spark, table, patient, day=DAY2, current=True)
    plan = (
        closed.withColumns({"_existing": F.lit(True), "_action": F.lit("update")})
        .unionByName(opened.withColumns({"_existing": F.lit(False), "_action": F.lit("insert")}))
        .localCheckpoint()
    )
    started = time.monotonic()
    write_non_phi(plan, table=table, zone=zone, policy=None, forgotten=None)
    seconds = time.monotonic() - started
    history = spark.read.format("delta").load(zone.history(table))
    if history.count() != rows + 1 or spark.read.format("delta").load(zone.latest(table)).count() != rows:
        raise AssertionError("the batch did not close one version and insert one")
    return seconds


def run_size(
    spark: SparkSession, table: TableConfig, key: MaskingKey, root: Path, rows: int, rounds: int, buckets: list[int]
) -> dict:
    zones = {b: NonPhiZone(str(root / f"zone-{b}"), key, str(root / "privacy"), False, b) for b in [1, *buckets]}
    bases = {b: root / f"base-{b}" for b in zones}
    for b, zone in zones.items():
        write_base(spark, table, zone, rows, bases[b])
    seconds: dict[int, list[float]] = {b: [] for b in zones}
    for _ in range(rounds):
        for b, zone in zones.items():
            seconds[b].append(round(one_batch(spark, table, zone, bases[b], rows), 3))
    for path in [*bases.values(), *(Path(z.root) for z in zones.values())]:
        shutil.rmtree(path, ignore_errors=True)
    p50 = {b: statistics.median(s) for b, s in seconds.items()}
    return {
        "zone_rows": rows,
        **{f"buckets_{b}": {"seconds_p50": p50[b], "seconds": seconds[b]} for b in zones},
        **{f"one_over_{b}": round(p50[1] / p50[b], 2) for b in buckets},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 2_000_000], help="patients in the zone")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--buckets", type=int, nargs="+", default=[8, 16], help="bucket counts beside one bucket")
    args = parser.parse_args(argv)
    spark = build_spark(None, app_name="lakehouse-zone-buckets", extra_conf={"spark.sql.shuffle.partitions": "8"})
    table, key = patients_table(), MaskingKey(secrets.token_bytes(32))
    root = Path(tempfile.mkdtemp(prefix="zone-buckets-"))
    try:
        points = []
        for rows in args.rows:
            point = run_size(spark, table, key, root, rows, args.rounds, args.buckets)
            points.append(point)
            others = ", ".join(
                f"{b} buckets {point[f'buckets_{b}']['seconds_p50']:6.2f} s ({point[f'one_over_{b}']}x)"
                for b in args.buckets
            )
            print(
                f"zone of {rows:>10,} patients: one-row batch, "
                f"1 bucket {point['buckets_1']['seconds_p50']:6.2f} s, {others}",
                flush=True,
            )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    save_report("zone-buckets", {"rows": args.rows, "rounds": args.rounds, "buckets": args.buckets}, points=points)


if __name__ == "__main__":
    main()
