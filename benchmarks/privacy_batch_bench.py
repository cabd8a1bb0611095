"""One-row batches of a table with consent flags and a non-PHI zone: where their seconds go, side by side.

What is measured
    The privacy tests' lake (`tests/privacy_lake.py`: the shipped `config/local.yaml`, a masking key, a
    consent policy) and its `patients` table, which every batch writes five ways: history, latest, the file
    ledger, and the zone's history and latest. One patient and one consent are applied first; then each
    sample lands a one-row CDC file of a patient and runs `run_once` on the table (the trigger-once path of
    Step Functions; the stream's batch is the same code). The first sample warms up and is dropped. Per
    batch: the engine's seconds (`BatchMetrics.seconds`), its timed steps (`BatchMetrics.steps`: the writes
    run side by side, so they overlap), and the run's wall clock.

    `--trees A B` runs the same profile on two checkouts, alternately (A B A B ...), each in its own
    Python process and Spark, in one run: "before" and "after" under the same load.

Run (writes benchmarks/results/privacy-batch-<date>.json):
    python -m benchmarks.privacy_batch_bench
    python -m benchmarks.privacy_batch_bench --trees /tmp/base . --rounds 2 --samples 6
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESULTS = HERE / "benchmarks" / "results"


def child(samples: int) -> dict:
    sys.path.insert(0, str(Path.cwd() / "tests"))
    from privacy_lake import PrivacyLake

    from lakehouse.session import build_spark

    home = Path(tempfile.mkdtemp(prefix="privacy-batch-"))
    spark = build_spark(None, app_name="lakehouse-privacy-batch", local_dir=str(home / "spark-local"))
    lake = PrivacyLake(home / "lake", secrets.token_hex(32), spark)
    lake.consent(1, True)
    lake.land("patients", [lake.patient(1), lake.patient(2)])
    lake.run(["consents", "patients"])
    batches = []
    for i in range(samples + 1):
        lake.land("patients", [lake.patient(1 + i % 2)])
        started = time.monotonic()
        (run,) = lake.run(["patients"])
        wall = time.monotonic() - started
        batch = run.batches[-1]
        batches.append({"wall": round(wall, 3), "engine": batch.seconds, "steps": batch.steps})
    spark.stop()
    return {"batches": batches[1:]}


def run_child(tree: Path, samples: int) -> dict:
    from benchmarks import trees  # the parent's: a child runs on a tree that may not have it

    return trees.run_child(Path(__file__).resolve(), tree, ["--samples", str(samples)])


def summarize(profiles: list[dict]) -> dict:
    batches = [b for p in profiles for b in p["batches"]]
    steps = sorted({k for b in batches for k in b["steps"]})
    return {
        "wall_p50": statistics.median(b["wall"] for b in batches),
        "engine_p50": statistics.median(b["engine"] for b in batches),
        "steps_p50": {s: statistics.median(b["steps"].get(s, 0.0) for b in batches) for s in steps},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--samples", type=int, default=6, help="one-row batches per round (plus one warm-up)")
    parser.add_argument("--rounds", type=int, default=1, help="profiles per checkout")
    parser.add_argument("--trees", type=Path, nargs="+", default=[HERE], help="checkouts to profile, alternately")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.samples)))
        return
    from benchmarks import trees

    roots = [t.resolve() for t in args.trees]
    profiles = trees.alternate(roots, args.rounds, lambda tree: run_child(tree, args.samples))
    report = {
        "benchmark": "privacy-batch",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "params": {"samples": args.samples, "rounds": args.rounds, "table": "patients (consent, non-PHI zone)"},
        "trees": {tree: {"summary": summarize(p), "profiles": p} for tree, p in profiles.items()},
    }
    for tree, result in report["trees"].items():
        summary = result["summary"]
        print(f"\n== {tree} ==\nwall p50 {summary['wall_p50']:.2f} s   engine p50 {summary['engine_p50']:.2f} s")
        print("steps (s, p50, side by side): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["steps_p50"].items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"privacy-batch-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
