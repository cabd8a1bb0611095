"""Where the fixed cost of a small micro-batch goes: one-row batches through the real stream, profiled.

What is measured
    A 10,000-row table (the apply benchmark's PEOPLE shape) and the real stream (`start_query`, 1 s
    processing-time trigger) on a warm session with Spark's event log on. Per sample one single-row CDC
    file is landed and latest is polled until the row is visible (as the apply benchmark's latency). The
    first sample warms up and is dropped. For every other micro-batch:

      engine s       the engine's own seconds (`BatchMetrics.seconds`, inside foreachBatch);
      latency s      file written -> row visible in latest;
      trigger phases the query's progress durations: latestOffset (listing), queryPlanning, walCommit,
                     addBatch (our foreachBatch), commitOffsets;
      jobs           Spark jobs per batch, and the seconds of jobs by the engine line that started them
                     (PySpark's call site), summed (jobs of writes side by side overlap, so the sum can
                     exceed the wall time).

    `--trees A B` runs the same profile on two checkouts of the engine, alternately (A B A B ...), each in
    its own Python process and Spark, in one run: "before" and "after" side by side under the same load.

Run (writes benchmarks/results/batch-profile-<date>.json):
    python -m benchmarks.batch_profile                             # this checkout, 10 samples
    python -m benchmarks.batch_profile --trees /tmp/base . --rounds 2 --samples 6
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESULTS = HERE / "benchmarks" / "results"


# --- the child: one profile on the checkout it was started in -----------------------------------------


def _events(folder: Path) -> list[dict]:
    events = []
    for path in folder.iterdir():
        with path.open() as f:
            events += [json.loads(line) for line in f if line.strip()]
    return events


def _jobs(events: list[dict]) -> list[dict]:
    """Every job: start and end (epoch ms) and the engine line that started it."""
    starts = {e["Job ID"]: e for e in events if e["Event"] == "SparkListenerJobStart"}
    ends = {e["Job ID"]: e for e in events if e["Event"] == "SparkListenerJobEnd"}
    jobs = []
    for job_id, start in starts.items():
        properties = start.get("Properties") or {}
        site = properties.get("callSite.short", "?")
        jobs.append({"start": start["Submission Time"], "end": ends[job_id]["Completion Time"], "site": site})
    return jobs


def _windows(progress: list[dict]) -> list[tuple[float, float, dict]]:
    """(start ms, end ms, durations) of every trigger that ran a batch."""
    out = []
    for p in progress:
        if p.get("numInputRows", 0) == 0 and "addBatch" not in p.get("durationMs", {}):
            continue
        start = dt.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
        out.append((start, start + p["durationMs"]["triggerExecution"], p["durationMs"]))
    return out


def _apply_bench():
    """This checkout's apply benchmark (its helpers drive the stream), over the engine of the checkout profiled."""
    spec = importlib.util.spec_from_file_location("apply_bench", HERE / "benchmarks" / "apply_bench.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["apply_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def child(samples: int, rows: int, gap: float) -> dict:
    from lakehouse.session import build_spark

    root = Path(tempfile.mkdtemp(prefix="batch-profile-"))
    events = root / "events"
    events.mkdir()
    spark = build_spark(
        None,
        app_name="lakehouse-batch-profile",
        extra_conf={"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri()},
    )
    try:
        latency, run, progress = _apply_bench().stream_samples(spark, root / "t", samples, rows, gap=gap)
    finally:
        spark.stop()
    jobs = _jobs(_events(events))
    shutil.rmtree(root, ignore_errors=True)
    windows = _windows(progress)[1:]  # the warm-up batch
    per_batch = []
    for start, end, durations in windows:
        inside = [j for j in jobs if start <= j["start"] <= end]
        by_site = collections.Counter()
        for j in inside:
            by_site[j["site"]] += (j["end"] - j["start"]) / 1000
        per_batch.append({"durations_ms": durations, "jobs": len(inside), "job_seconds_by_site": dict(by_site)})
    batches = run.batches[1:]
    return {
        "engine_seconds": [b.seconds for b in batches],
        "engine_steps": [getattr(b, "steps", {}) for b in batches],
        "latency_seconds": latency,
        "batches": per_batch,
    }


# --- the parent ----------------------------------------------------------------------------------------


def run_child(tree: Path, samples: int, rows: int, gap: float) -> dict:
    from benchmarks import trees  # the parent's: a child runs on a tree that may not have it

    return trees.run_child(
        Path(__file__).resolve(), tree, ["--samples", str(samples), "--rows", str(rows), "--gap", str(gap)]
    )


def summarize(profiles: list[dict]) -> dict:
    """Medians over every batch of every round: seconds, latency, phases, jobs, job seconds by call site."""
    batches = [b for p in profiles for b in p["batches"]]
    phases = sorted({k for b in batches for k in b["durations_ms"]})
    sites = collections.defaultdict(list)
    for b in batches:
        for site in {s for bb in batches for s in bb["job_seconds_by_site"]}:
            sites[site].append(b["job_seconds_by_site"].get(site, 0.0))
    return {
        "engine_seconds_p50": statistics.median(s for p in profiles for s in p["engine_seconds"]),
        "latency_p50": statistics.median(s for p in profiles for s in p["latency_seconds"]),
        "latency_p95": sorted(s for p in profiles for s in p["latency_seconds"])[
            max(0, round(0.95 * sum(len(p["latency_seconds"]) for p in profiles)) - 1)
        ],
        "jobs_per_batch_p50": statistics.median(b["jobs"] for b in batches),
        "engine_steps_p50": {
            step: statistics.median(s.get(step, 0.0) for p in profiles for s in p["engine_steps"])
            for step in sorted({k for p in profiles for s in p["engine_steps"] for k in s})
        },
        "phase_ms_p50": {k: statistics.median(b["durations_ms"].get(k, 0) for b in batches) for k in phases},
        "job_seconds_by_site_mean": {
            s: round(statistics.mean(v), 3) for s, v in sorted(sites.items(), key=lambda kv: -sum(kv[1]))
        },
    }


def print_summary(name: str, summary: dict) -> None:
    print(f"\n== {name} ==")
    print(
        f"engine s p50 {summary['engine_seconds_p50']:.2f}   latency p50 {summary['latency_p50']:.2f} "
        f"p95 {summary['latency_p95']:.2f}   jobs/batch {summary['jobs_per_batch_p50']}"
    )
    print("phases (ms, p50): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["phase_ms_p50"].items()))
    print("engine steps (s, p50): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["engine_steps_p50"].items()))
    for site, seconds in list(summary["job_seconds_by_site_mean"].items())[:25]:
        print(f"  {seconds:7.3f} s  {site}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--samples", type=int, default=10, help="one-row batches per round (plus one warm-up)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the table")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds between a row visible and the next file (default 0: back to back)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="profiles per checkout")
    parser.add_argument("--trees", type=Path, nargs="+", default=[HERE], help="checkouts to profile, alternately")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.samples, args.rows, args.gap)))
        return
    from benchmarks import trees

    roots = [t.resolve() for t in args.trees]
    profiles = trees.alternate(roots, args.rounds, lambda tree: run_child(tree, args.samples, args.rows, args.gap))
    report = {
        "benchmark": "batch-profile",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "params": {
            "samples": args.samples,
            "rows": args.rows,
            "gap_seconds": args.gap,
            "rounds": args.rounds,
            "trigger": "1 second",
        },
        "trees": {tree: {"summary": summarize(p), "profiles": p} for tree, p in profiles.items()},
    }
    for tree, result in report["trees"].items():
        print_summary(tree, result["summary"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"batch-profile-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
