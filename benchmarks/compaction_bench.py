"""Compaction benchmark: which of Delta OSS 3.3's ways keeps the stream's tables small at the least cost per batch.

What is measured
    The demo's devices table (consent flags and the non-PHI zone, so five Delta tables per batch) after
    its full load and demo CDC, then --batches micro-batches of one CDC file of --rows updates each
    (the same files for every method), applied by the real streaming query (availableNow, one file a
    batch), once per method, each into fresh folders on one warm session:
      none            no compaction (every batch adds its files);
      optimize_write  `delta.autoOptimize.optimizeWrite`: each write shuffled into fewer files;
      auto_compact    `delta.autoOptimize.autoCompact` (minNumFiles = --min-files): Delta compacts after a
                      commit that leaves that many small files;
      optimize        the engine's OPTIMIZE between batches, every --every batches.
    For each: data files per table at the end (current version, and Parquet files on disk), and the
    median and mean seconds per batch (the batch's writes + the maintenance after it).

Run (writes benchmarks/results/compaction-<date>.json):
    python -m benchmarks.compaction_bench --batches 40 --rows 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
from pathlib import Path

from lakehouse.config import MaintenanceSettings, load_config
from lakehouse.demo import generate
from lakehouse.demo_feed import DevicesFeed, devices_of
from lakehouse.maintenance import file_count
from lakehouse.runner import Governance, run_once
from lakehouse.session import build_spark
from lakehouse.tables import table_paths

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
METHODS = ("none", "optimize_write", "auto_compact", "optimize")
RESULTS = Path(__file__).resolve().parent / "results"


def demo_config(home: Path, *, maintenance: dict, max_files_per_trigger: int | None = None):
    """The shipped configuration under `home`, with only the consents and devices tables, and `maintenance`."""
    os.environ["LAKEHOUSE_HOME"] = str(home)
    config = load_config(LOCAL_YAML)
    tables = {n: config.tables[n] for n in ("consents", "devices")}
    if max_files_per_trigger is not None:
        devices = tables["devices"]
        source = devices.source.model_copy(update={"max_files_per_trigger": max_files_per_trigger})
        tables["devices"] = devices.model_copy(update={"source": source})
    settings = MaintenanceSettings.model_validate(maintenance)
    return config.model_copy(update={"tables": tables, "maintenance": settings})


def delta_tables(config) -> dict[str, str]:
    """The devices query's Delta tables: PHI history, latest, and the non-PHI zone's two."""
    table = config.tables["devices"]
    paths, zone = table_paths(config, table), Governance.of(config).non_phi
    return {
        "history": paths.history,
        "latest": paths.latest,
        "non_phi.history": zone.history(table),
        "non_phi.latest": zone.latest(table),
    }


def _settings(method: str, every: int, min_files: int) -> dict:
    compaction = {"method": method, "min_files": min_files, "every_batches": every, "every_minutes": None}
    if method == "optimize":  # on its schedule only: the file-count trigger is measured apart
        compaction["min_files"] = 10**6
    return {"compaction": compaction, "vacuum": {"enabled": False}}


def _one(spark, template: Path, feed_files: list[Path], method: str, args) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"compaction-{method}-"))
    try:
        shutil.copytree(template, home / "landing")
        config = demo_config(home, maintenance=_settings(method, args.every, args.min_files), max_files_per_trigger=1)
        run_once(spark, config, ["consents", "devices"])
        tables = delta_tables(config)
        start = {name: file_count(spark, path) for name, path in tables.items()}
        folder = home / "landing/dms/cpap/devices"
        for path in feed_files:
            shutil.copy2(path, folder / path.name)
        (run,) = run_once(spark, config, ["devices"])
        assert run.ok, run.error
        per_batch = [b.seconds + b.maintenance_seconds for b in run.batches]
        return {
            "batches": len(run.batches),
            "median_batch_seconds": round(statistics.median(per_batch), 3),
            "mean_batch_seconds": round(statistics.mean(per_batch), 3),
            "maintenance_seconds": round(sum(b.maintenance_seconds for b in run.batches), 3),
            "files_before": start,
            "files": {name: file_count(spark, path) for name, path in tables.items()},
            "parquet_on_disk": {name: len(list(Path(path).rglob("*.parquet"))) for name, path in tables.items()},
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=50, help="updates per CDC file (one file per batch)")
    parser.add_argument("--every", type=int, default=10, help="optimize: OPTIMIZE every this many batches")
    parser.add_argument("--min-files", type=int, default=10, help="auto_compact: minNumFiles")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    os.environ.setdefault("LAKEHOUSE_MASKING_KEY", secrets.token_hex(32))
    spark = build_spark(None, app_name="compaction-bench")
    work = Path(tempfile.mkdtemp(prefix="compaction-bench-"))
    template = work / "landing"
    generate(template, patients=200, days=3)
    # The feed's files, written once from the demo's devices: every method applies the same bytes.
    config = demo_config(work / "seed", maintenance={"compaction": {"method": "none"}})
    shutil.copytree(template, work / "seed" / "landing")
    run_once(spark, config, ["consents", "devices"])
    feed = DevicesFeed(work / "feed", devices_of(spark, delta_tables(config)["latest"]))
    feed_files = [feed.land(args.rows) for _ in range(args.batches)]
    _one(spark, template, feed_files[:2], "none", args)  # warm-up: JVM, Python workers, the masking UDF
    results = {}
    for method in args.methods:
        results[method] = _one(spark, template, feed_files, method, args)
        print(method, json.dumps(results[method]), flush=True)
    report = {
        "benchmark": "compaction",
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "spark": spark.version,
        "batches": args.batches,
        "rows_per_batch": args.rows,
        "optimize_every_batches": args.every,
        "auto_compact_min_files": args.min_files,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compaction-{report['date']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'method':15} {'median s':>9} {'mean s':>7}  files history/latest/non-PHI history/latest")
    for method, r in results.items():
        files = "/".join(str(r["files"][k]) for k in ("history", "latest", "non_phi.history", "non_phi.latest"))
        print(f"{method:15} {r['median_batch_seconds']:9.2f} {r['mean_batch_seconds']:7.2f}  {files}")
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
