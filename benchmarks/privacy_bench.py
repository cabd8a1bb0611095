"""Privacy benchmark: the cost of consent flags + the masked non-PHI zone per batch, as a ratio.

What is measured
    The demo's patients table (a full load plus three days of CDC: one micro-batch) is applied twice
    on a warm session, each time into fresh folders:
      plain     no consent flags, no non-PHI zone (the table's `consent` and `phi_columns` removed);
      governed  the shipped configuration: the policy snapshot broadcast-joined to every change, then
                the masked, consented history and latest written to the non-PHI zone as well.
    Each is run --repeat times; the median seconds of one batch and governed/plain are reported.
    With `--zone-buckets 1 4 16` the governed batch runs once per bucket count of the zone
    (`privacy.zone_buckets`) in each round, alternately: what the buckets cost a batch that touches
    all of them (one file per bucket it writes), beside their gain for small batches into a big zone
    (`benchmarks/zone_buckets_bench.py`).
    After each governed run, 1% of the patients withdraw their consent: the seconds of the patients
    table's consent sync (their versions leave the zone's history and latest) are reported too; a
    sync runs once per policy change, not per batch.

Run (writes benchmarks/results/privacy-<date>.json):
    python -m benchmarks.privacy_bench --patients 5000 --repeat 3
    python -m benchmarks.privacy_bench --patients 2000 --repeat 3 --zone-buckets 1 4 16
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from lakehouse.config import load_config
from lakehouse.demo import CONSENT_COLUMNS, generate
from lakehouse.policy.job import build_policy_table
from lakehouse.runner import Governance, TableRun, run_once, start_query, sync_zone, table_policy
from lakehouse.session import build_spark

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"


def _config(home: Path, governed: bool, buckets: int | None = None):
    os.environ["LAKEHOUSE_HOME"] = str(home)
    config = load_config(LOCAL_YAML)
    if governed:
        if buckets is None:
            return config
        return config.model_copy(update={"privacy": config.privacy.model_copy(update={"zone_buckets": buckets})})
    patients = config.tables["patients"].model_copy(update={"consent": None, "phi_columns": {}, "non_phi": False})
    return config.model_copy(update={"tables": {**config.tables, "patients": patients}})


def _one(spark, landing: Path, governed: bool, buckets: int | None = None) -> tuple[float, float | None]:
    """Seconds of the patients batch, and of the consent sync after 1% withdraw (governed only)."""
    home = Path(tempfile.mkdtemp(prefix="privacy-bench-"))
    try:
        shutil.copytree(landing, home / "landing")
        config = _config(home, governed, buckets)
        run_once(spark, config, ["consents"])
        build_policy_table(spark, config)
        run = TableRun("patients")
        governance = Governance.of(config) if governed else Governance()
        patients = config.tables["patients"]
        start_query(
            spark, config, patients, run, trigger={"availableNow": True}, governance=governance
        ).awaitTermination()
        batch = sum(b.seconds for b in run.batches)
        if not governed:
            return batch, None
        _withdraw(
            home, [r.patient_id for r in spark.read.format("delta").load(f"{home}/lake/patients/latest").collect()]
        )
        run_once(spark, config, ["consents"])
        governance.policy.invalidate()  # type: ignore[union-attr]
        started = time.monotonic()
        sync_zone(spark, config, patients, governance, table_policy(spark, patients, governance))
        return batch, time.monotonic() - started
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _withdraw(home: Path, patients: list[int]) -> None:
    """A consents CDC file in which 1% of `patients` withdraw (the demo's DMS layout)."""
    folder = home / "landing" / "dms" / "cpap" / "consents"
    at = "2026-03-09 09:00:00.000000"
    rows = [["I", at, str(2_000_000 + n), str(p), "", "f", at] for n, p in enumerate(sorted(patients)[::100])]
    assert len(CONSENT_COLUMNS) == len(rows[0]) - 1
    with (folder / "20260309-090000000.csv").open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zone-buckets", type=int, nargs="+", help="governed runs per bucket count of the zone")
    args = parser.parse_args()
    os.environ.setdefault("LAKEHOUSE_MASKING_KEY", secrets.token_hex(32))
    spark = build_spark(None, app_name="privacy-bench", extra_conf={"spark.sql.shuffle.partitions": "4"})
    landing = Path(tempfile.mkdtemp(prefix="privacy-bench-landing-"))
    generate(landing, patients=args.patients, days=3)
    _one(spark, landing, governed=True)  # warm-up: JVM, Python workers, the masking UDF
    seconds: dict[str, list[float]] = {"plain": [], "governed": [], "consent_sync": []}
    buckets = {f"governed_buckets_{b}": b for b in args.zone_buckets or []}
    seconds |= {name: [] for name in buckets}
    for _ in range(args.repeat):
        for kind in ("plain", "governed", *buckets):
            batch, sync = _one(spark, landing, governed=kind != "plain", buckets=buckets.get(kind))
            seconds[kind].append(round(batch, 3))
            if sync is not None and kind == "governed":
                seconds["consent_sync"].append(round(sync, 3))
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = medians["governed"] / medians["plain"]
    print(f"patients batch ({args.patients} patients, full load + 3 days of CDC), median of {args.repeat}:")
    print(f"  plain     {medians['plain']:7.2f} s")
    print(f"  governed  {medians['governed']:7.2f} s   governed/plain = {ratio:.2f}x")
    for name, count in buckets.items():
        print(f"  governed, zone in {count:>3} buckets {medians[name]:7.2f} s")
    print(f"  consent sync after 1% withdraw: {medians['consent_sync']:.2f} s (once per policy change)")
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "patients": args.patients,
        "seconds": seconds,
        "median": medians,
        "governed_over_plain": round(ratio, 3),
    }
    out = Path(__file__).parent / "results" / f"privacy-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
