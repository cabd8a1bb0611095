"""A trigger-once `run` of several tables: one after another (the runner today) against side by side.

What is measured
    The privacy tests' lake (`tests/privacy_lake.py`: the shipped `config/local.yaml`, a masking key, a
    consent policy). Each sample grants one more patient's consent, lands one row each for `patients`,
    `devices` and `therapy_sessions`, applies the consent source, then times the run of the three tables:
    `seq` as `run_once` runs them (one query after another), `sbs` as three `run_once`s in threads (each
    table under its own lease, the way `run_stream` runs its queries together). Modes alternate
    (seq sbs seq sbs ...) in one process and one Spark session, so both see the same load. Wall clock of
    the three tables' run, per sample.

    It measures the case for starting a run's tables side by side (issue 14); the runner does not do that yet.

Run (writes benchmarks/results/run-tables-<date>.json):
    python -m benchmarks.run_tables_bench --rounds 2 --samples 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESULTS = HERE / "benchmarks" / "results"
TABLES = ["patients", "devices", "therapy_sessions"]


def one_mode(spark, mode: str, samples: int) -> list[float]:
    """Seconds of each sample's run of the three tables on a fresh lake, in `mode` ("seq" or "sbs")."""
    from lakehouse.apply.batch import run_side_by_side
    from lakehouse.runner import run_once
    from tests.privacy_lake import START, PrivacyLake

    root, key = Path(tempfile.mkdtemp(prefix="run-tables-")), secrets.token_hex(32)
    os.environ.update(LAKEHOUSE_HOME=str(root), LAKEHOUSE_MASKING_KEY=key)
    lake = PrivacyLake(root, key, spark)
    seconds = []
    for sample in range(samples):
        patient = 5000 + sample
        lake.consent(patient, True, signed=START - dt.timedelta(days=30))
        lake.land("patients", [lake.patient(patient)])
        lake.land("devices", [lake.device(f"DV-{patient}", patient)])
        lake.land("therapy_sessions", [lake.session(patient * 10, f"DV-{patient}")])
        os.environ.update(lake.environment)
        run_once(spark, lake.config, ["consents"])
        started = time.monotonic()
        if mode == "seq":
            runs = run_once(spark, lake.config, TABLES)
        else:
            tasks = [lambda t=t: run_once(spark, lake.config, [t]) for t in TABLES]
            runs = [r for table_runs in run_side_by_side(tasks) for r in table_runs]
        seconds.append(round(time.monotonic() - started, 2))
        failed = {r.table: r.error for r in runs if not r.ok}
        if failed:
            raise SystemExit(f"a table failed in mode {mode}: {failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="seq/sbs pairs (default 2)")
    parser.add_argument("--samples", type=int, default=3, help="runs per mode and round (default 3)")
    args = parser.parse_args()

    from lakehouse.session import build_spark

    spark = build_spark(None, app_name="run-tables-bench")
    runs: dict[str, list[float]] = {"seq": [], "sbs": []}
    for round_ in range(args.rounds):
        for mode in ("seq", "sbs"):
            runs[mode] += one_mode(spark, mode, args.samples)
            print(f"round {round_ + 1} {mode}: {runs[mode][-args.samples :]}", flush=True)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    result = {
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "tables": TABLES,
        "seconds": runs,
        "median": medians,
        "seq_over_sbs": round(medians["seq"] / medians["sbs"], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"run-tables-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median": medians, "seq_over_sbs": result["seq_over_sbs"], "written": str(out)}))


if __name__ == "__main__":
    main()
