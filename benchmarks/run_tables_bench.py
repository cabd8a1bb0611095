"""A trigger-once `run` of several tables: one after another against side by side (`stream.tables_at_once`).

What is measured
    The privacy tests' lake (`tests/privacy_lake.py`: the shipped `config/local.yaml`, a masking key, a
    consent policy). Each sample grants one more patient's consent, lands one row each for `patients`,
    `devices` and `therapy_sessions`, applies the consent source, then times `run_once` of the three tables
    with `stream.tables_at_once` = 1 (one query after another) and each of `--at-once` (default 2 and 3).
    Modes alternate (1 2 3 1 2 3 ...) in one process and one Spark session, so all see the same load. Wall
    clock of the three tables' run, per sample.

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


def one_mode(spark, at_once: int, samples: int) -> list[float]:
    """Seconds of each sample's run of the three tables on a fresh lake, `at_once` tables at a time."""
    from lakehouse.runner import run_once
    from tests.privacy_lake import START, PrivacyLake

    root, key = Path(tempfile.mkdtemp(prefix="run-tables-")), secrets.token_hex(32)
    os.environ.update(LAKEHOUSE_HOME=str(root), LAKEHOUSE_MASKING_KEY=key)
    lake = PrivacyLake(root, key, spark)
    config = lake.config.model_copy(
        update={"stream": lake.config.stream.model_copy(update={"tables_at_once": at_once})}
    )
    seconds = []
    for sample in range(samples):
        patient = 5000 + sample
        lake.consent(patient, True, signed=START - dt.timedelta(days=30))
        lake.land("patients", [lake.patient(patient)])
        lake.land("devices", [lake.device(f"DV-{patient}", patient)])
        lake.land("therapy_sessions", [lake.session(patient * 10, f"DV-{patient}")])
        os.environ.update(lake.environment)
        run_once(spark, config, ["consents"])
        started = time.monotonic()
        runs = run_once(spark, config, TABLES)
        seconds.append(round(time.monotonic() - started, 2))
        failed = {r.table: r.error for r in runs if not r.ok}
        if failed:
            raise SystemExit(f"a table failed with tables_at_once={at_once}: {failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every mode (default 2)")
    parser.add_argument("--samples", type=int, default=3, help="runs per mode and round (default 3)")
    parser.add_argument("--at-once", type=int, nargs="+", default=[2, 3], help="tables_at_once to compare with 1")
    args = parser.parse_args()

    from lakehouse.session import build_spark

    spark = build_spark(None, app_name="run-tables-bench")
    modes = [1, *[n for n in args.at_once if n != 1]]
    runs: dict[str, list[float]] = {str(n): [] for n in modes}
    for round_ in range(args.rounds):
        for n in modes:
            runs[str(n)] += one_mode(spark, n, args.samples)
            print(f"round {round_ + 1} tables_at_once={n}: {runs[str(n)][-args.samples :]}", flush=True)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    result = {
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "tables": TABLES,
        "seconds_by_tables_at_once": runs,
        "median": medians,
        "one_by_one_over": {mode: round(medians["1"] / m, 2) for mode, m in medians.items() if mode != "1"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"run-tables-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median": medians, "one_by_one_over": result["one_by_one_over"], "written": str(out)}))


if __name__ == "__main__":
    main()
