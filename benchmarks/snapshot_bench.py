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
    then INSERT/UPDATE; ~45 ms per covered entity on this machine class, i.e. about 68 minutes for
    90,000 entities). `benchmarks.pg_export_bench` measures that baseline's per-entity cost on this
    machine; pass it with --row-by-row-ms (default 45).

Run (writes benchmarks/results/snapshot-<date>.json):
    python -m benchmarks.snapshot_bench                      # full size
    python -m benchmarks.snapshot_bench --entities 5000      # a quicker look
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
from lakehouse.sinks.postgres_export import export_postgres
from lakehouse.sources.opais_synth import write_export


def _config(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing")}},
            "postgres": {"schema": "opais"},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=90_000)
    parser.add_argument("--row-by-row-ms", type=float, default=45.0, help="ID304B's cost per covered entity")
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
                "exported_rows": {r.table: r.rows for r in exported},
            }
            print(f"day {day}: apply {applied:.1f} s, export {export_seconds:.1f} s")
    finally:
        server.stop()
    baseline = args.entities * args.row_by_row_ms / 1000
    for day in ("day0", "day1"):
        measured[day]["row_by_row_seconds"] = round(baseline, 1)
        measured[day]["speedup"] = round(baseline / measured[day]["total_seconds"], 1)
    print(f"\n{'':8}{'parse+apply':>12}{'export':>9}{'total':>9}{'row-by-row':>12}{'x':>7}")
    for day in ("day0", "day1"):
        m = measured[day]
        print(
            f"{day:8}{m['apply_seconds']:>11.1f}s{m['export_seconds']:>8.1f}s{m['total_seconds']:>8.1f}s"
            f"{baseline:>11.0f}s{m['speedup']:>6.1f}x"
        )
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "entities": args.entities,
        "export_bytes": [p.stat().st_size for p in files],
        "row_by_row_ms_per_entity": args.row_by_row_ms,
        "measured": measured,
    }
    out = Path(__file__).parent / "results" / f"snapshot-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
