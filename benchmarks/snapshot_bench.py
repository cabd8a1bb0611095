"""Snapshot benchmark: a full-size 340B export end to end — parse → Delta dimensions → PostgreSQL.

What is measured
    The synthetic generator writes a full-size export (--entities, default 90,000 covered entities, ~5
    contract pharmacies each, ~200 MB of JSON in a ZIP) for day 0, and the day-1 export of the same
    seed (~1% of entities edited, some gone, some new). On a warm Spark session (local[2]) and a
    PostgreSQL server started like the tests' fixture (durable settings):

      day 0     `apply_snapshot` (parse, diff against the empty tables, history + latest of the eight
                dimensions), then `export_postgres` (first export: full load);
      day 1     the same for the next day: the diff finds the ~1% that changed; the export reads the
                Delta change feed since the exported version.

    The reference is the ID304B design's row-by-row load (per covered entity: SELECT its current row,
    then INSERT/UPDATE, each row committed on its own). It is measured in the same run, on the same
    server: after the two days, the day-0 rows of --sample covered entities (their children, contracts
    and contracted pharmacies, read from the Delta history) go through `row_by_row_baseline` into a
    schema of their own, and the time per covered entity is extrapolated to the whole export. The
    issue's figure, 45 ms per covered entity measured on an earlier machine, is reported next to it.

Run (writes benchmarks/results/snapshot-<date>.json):
    python -m benchmarks.snapshot_bench                      # full size
    python -m benchmarks.snapshot_bench --entities 5000 --sample 200     # a quicker look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from lakehouse.apply.snapshot import apply_snapshot
from lakehouse.config import Config
from lakehouse.session import build_spark
from lakehouse.sinks.postgres import connect, init_db, row_by_row_baseline
from lakehouse.sinks.postgres_export import export_columns, export_postgres, to_arrow
from lakehouse.sources.opais_synth import write_export
from lakehouse.tables import table_paths

ISSUE_MS_PER_ENTITY = 45.0  # ID304B's row-by-row cost per covered entity, as the issue measured it


def _config(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing")}},
            "postgres": {"schema": "opais"},
        }
    )


def sample_rows(spark, config: Config, versions: dict[str, int], entities: int, seed: int = 340) -> dict:
    """The rows of `entities` random covered entities at the given history versions, as Arrow batches per table:
    theirs, their children's, and the pharmacies their contracts name."""
    from pyspark.sql import functions as F

    def history(name: str):
        path = table_paths(config, config.tables[name]).history
        columns = export_columns(spark, path, name)
        reader = spark.read.format("delta")
        if versions.get(name) is not None:  # None: the day wrote nothing to that table
            reader = reader.option("versionAsOf", versions[name])
        return reader.load(path).select(*columns)

    owners = history("dim_ce").select("id340b", "ce_id").orderBy(F.rand(seed)).limit(entities).localCheckpoint()
    rows = {
        name: history(name).join(owners, ["id340b", "ce_id"], "left_semi")
        for name in config.tables
        if name != "dim_pharmacy"
    }
    pharmacies = rows["dim_ce_contract_pharmacy"].select("pharmacy_id").distinct()
    rows["dim_pharmacy"] = history("dim_pharmacy").join(pharmacies, "pharmacy_id", "left_semi")
    return {name: to_arrow(df) for name, df in rows.items()}


def row_by_row_ms(settings, rows: dict, entities: int) -> tuple[float, int]:
    """ID304B's way on the sampled rows, into an empty schema: milliseconds per covered entity, rows written."""
    with connect(replace(settings, schema="rowwise")) as conn:
        init_db(conn, "rowwise")
        started = time.perf_counter()
        written = sum(row_by_row_baseline(conn, "rowwise", name, batches, version=1) for name, batches in rows.items())
        seconds = time.perf_counter() - started
    return seconds / entities * 1000, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=90_000)
    parser.add_argument("--sample", type=int, default=1000, help="covered entities for the row-by-row baseline")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lakehouse-bench-opais")
    args = parser.parse_args()

    from tests.pg_server import start_server

    args.cache.mkdir(parents=True, exist_ok=True)
    files = []
    for day in (0, 1):
        path = args.cache / f"{args.entities}" / f"OPA_CE_DAILY_PUBLIC_2026-03-0{day + 1}.zip"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            print(f"writing {path} ...")
            write_export(path, entities=args.entities, seed=1, day=day, zip=True)
        files.append(path)
    root = Path(tempfile.mkdtemp(prefix="snapshot-bench-"))
    config = _config(root)
    server = start_server(durable=True)
    settings = replace(server.settings(), schema="opais")
    spark = build_spark(None, app_name="snapshot-bench", extra_conf={"spark.sql.shuffle.partitions": "8"})
    measured = {}
    try:
        # Warm-up on a small export into scratch tables: the JVM's first Delta commands are not the load's cost.
        warmup = root / "warmup" / "OPA_CE_DAILY_PUBLIC_2026-01-01.zip"
        warmup.parent.mkdir(parents=True)
        write_export(warmup, entities=300, seed=2, day=0, zip=True)
        apply_snapshot(spark, _config(root / "warmup"), "opais", str(warmup))
        for day, path in enumerate(files):
            started = time.monotonic()
            result = apply_snapshot(spark, config, "opais", str(path))
            applied = time.monotonic() - started
            started = time.monotonic()
            exported = export_postgres(spark, config, settings=settings)
            export_seconds = time.monotonic() - started
            measured[f"day{day}"] = {
                "apply_seconds": round(applied, 1),
                "export_seconds": round(export_seconds, 1),
                "total_seconds": round(applied + export_seconds, 1),
                "changes": {m.table: m.applied for m in result.metrics},
                "history_versions": {m.table: m.versions.get("history") for m in result.metrics},
                "exported_rows": {r.table: r.rows for r in exported},
            }
            print(f"day {day}: apply {applied:.1f} s, export {export_seconds:.1f} s", flush=True)
        sample = min(args.sample, args.entities)
        print(f"row-by-row baseline on {sample:,} covered entities ...", flush=True)
        rows = sample_rows(spark, config, measured["day0"]["history_versions"], sample)
        ms_per_entity, written = row_by_row_ms(settings, rows, sample)
    finally:
        server.stop()
    baselines = {"measured": args.entities * ms_per_entity / 1000, "issue": args.entities * ISSUE_MS_PER_ENTITY / 1000}
    for day in ("day0", "day1"):
        measured[day]["row_by_row_seconds"] = {k: round(v, 1) for k, v in baselines.items()}
        measured[day]["speedup"] = {k: round(v / measured[day]["total_seconds"], 1) for k, v in baselines.items()}
    print(f"\nrow-by-row: {ms_per_entity:.1f} ms per covered entity here ({written:,} rows of {sample:,} entities)")
    print(f"\n{'':8}{'parse+apply':>12}{'export':>9}{'total':>9}{'row-by-row':>12}{'x':>7}{'x at 45 ms':>12}")
    for day in ("day0", "day1"):
        m = measured[day]
        print(
            f"{day:8}{m['apply_seconds']:>11.1f}s{m['export_seconds']:>8.1f}s{m['total_seconds']:>8.1f}s"
            f"{baselines['measured']:>11.0f}s{m['speedup']['measured']:>6.1f}x{m['speedup']['issue']:>11.1f}x"
        )
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "entities": args.entities,
        "export_bytes": [p.stat().st_size for p in files],
        "row_by_row_ms_per_entity": {"measured": round(ms_per_entity, 2), "issue": ISSUE_MS_PER_ENTITY},
        "row_by_row_sample": {"entities": sample, "rows": written},
        "measured": measured,
    }
    out = Path(__file__).parent / "results" / f"snapshot-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
