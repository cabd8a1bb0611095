"""Consent sync benchmark: what a policy change costs the tables with consent before their next batch.

What is measured
    The demo lake (`--patients`, full load + 3 days of CDC) is applied once. Then, per round, 1% of the patients
    withdraw (a consents CDC file), the consents table is applied and the policy built, and each table with
    `consent:` (patients, devices, therapy_sessions) syncs its part of the non-PHI zone one after the other, as
    `lakehouse run` does for a table with nothing new. Reported: the seconds of each table's sync and their sum, and
    the Delta commits the syncs made (versions added to the zone's, applied policies' and intents' tables).

    Then, the same round: consents of 1% as many patients the lake has no row of yet (the consent source delivered
    first), and the three tables' syncs again (reported as `new_patients`); then one patient with rows forgotten
    (`privacy forget`: the zone's six tables, the privacy log; reported as `forget`).

    Run it in two checkouts to compare them (copy this file into the other's benchmarks/):
        python -m benchmarks.consent_sync_bench --label before   # in the older checkout
        python -m benchmarks.consent_sync_bench --label after
    (each writes benchmarks/results/consent-sync-<label>-<date>.json of its checkout).
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import save_report

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
CONSENT_TABLES = ["patients", "devices", "therapy_sessions"]


def _versions(root: Path) -> int:
    """The Delta commits under `root` (every `_delta_log/<n>.json`)."""
    return sum(1 for p in root.rglob("_delta_log/*.json") if p.stem.isdigit())


def _withdraw(home: Path, patients: list[int], round_: int) -> None:
    """A consents CDC file in which 1% of `patients` (a different 1% each round) withdraw."""
    from lakehouse.demo import CONSENT_COLUMNS

    folder = home / "landing" / "dms" / "cpap" / "consents"
    at = f"2026-03-{10 + round_:02d} 09:00:00.000000"
    chosen = sorted(patients)[round_::100]
    rows = [["I", at, str(3_000_000 + 10_000 * round_ + n), str(p), "", "f", at] for n, p in enumerate(chosen)]
    assert len(CONSENT_COLUMNS) == len(rows[0]) - 1
    with (folder / f"202603{10 + round_:02d}-090000000.csv").open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(rows)


def _new_consents(home: Path, count: int, round_: int) -> None:
    """A consents CDC file granting consent to `count` patients the lake has no row of."""
    folder = home / "landing" / "dms" / "cpap" / "consents"
    at = f"2026-03-{10 + round_:02d} 10:00:00.000000"
    first = 9_000_000 + 10_000 * round_
    rows = [["I", at, str(4_000_000 + first + n), str(first + n), "", "t", at] for n in range(count)]
    with (folder / f"202603{10 + round_:02d}-100000000.csv").open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="run")
    args = parser.parse_args()

    from lakehouse.apply.forget import forget_patient
    from lakehouse.apply.non_phi import non_phi_zone
    from lakehouse.config import load_config
    from lakehouse.demo import generate
    from lakehouse.policy.job import build_policy_table
    from lakehouse.runner import Governance, run_once, sync_zone, table_policy
    from lakehouse.session import build_spark

    os.environ.setdefault("LAKEHOUSE_MASKING_KEY", secrets.token_hex(32))
    home = Path(tempfile.mkdtemp(prefix="consent-sync-bench-"))
    os.environ["LAKEHOUSE_HOME"] = str(home)
    spark = build_spark(None, app_name="consent-sync-bench", extra_conf={"spark.sql.shuffle.partitions": "4"})
    try:
        generate(home / "landing", patients=args.patients, days=3)
        config = load_config(LOCAL_YAML)
        run_once(spark, config)  # every table, the zone built
        patients = [r.patient_id for r in spark.read.format("delta").load(f"{home}/lake/patients/latest").collect()]
        seconds: dict[str, list[float]] = {t: [] for t in [*CONSENT_TABLES, "total", "new_patients", "forget"]}
        commits: list[int] = []

        def sync_all(expect: str) -> float:
            run_once(spark, config, ["consents"])
            build_policy_table(spark, config)
            governance = Governance.of(config)  # a new run's: nothing remembered
            total = 0.0
            for name in CONSENT_TABLES:
                table = config.tables[name]
                started = time.monotonic()
                note = sync_zone(spark, config, table, governance, table_policy(spark, table, governance))
                assert note and expect in note, (name, note)
                total += time.monotonic() - started
            return round(total, 3)

        for round_ in range(args.repeat):
            _withdraw(home, patients, round_)
            run_once(spark, config, ["consents"])
            build_policy_table(spark, config)
            governance = Governance.of(config)  # a new run's: nothing remembered
            before = _versions(home)
            total = 0.0
            for name in CONSENT_TABLES:
                table = config.tables[name]
                started = time.monotonic()
                note = sync_zone(spark, config, table, governance, table_policy(spark, table, governance))
                took = time.monotonic() - started
                assert note and "consent changes" in note, (name, note)
                seconds[name].append(round(took, 3))
                total += took
            seconds["total"].append(round(total, 3))
            commits.append(_versions(home) - before)
            _new_consents(home, max(1, len(patients) // 100), round_)
            seconds["new_patients"].append(sync_all("consent changes"))
            started = time.monotonic()
            forgotten = forget_patient(spark, config, non_phi_zone(config), str(sorted(patients)[50 + round_]))
            assert sum(forgotten.rows.values()) > 0, forgotten
            seconds["forget"].append(round(time.monotonic() - started, 3))
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    print(f"consent sync after 1% of {args.patients} patients withdraw, median of {args.repeat} ({args.label}):")
    for name in CONSENT_TABLES:
        print(f"  {name:<17} {medians[name]:6.2f} s")
    print(f"  {'all three':<17} {medians['total']:6.2f} s, {statistics.median(commits)} Delta commits")
    print(f"consents of patients without rows yet, all three: {medians['new_patients']:6.2f} s")
    print(f"a forget of one patient:                          {medians['forget']:6.2f} s")
    params = {"patients": args.patients, "repeat": args.repeat, "label": args.label}
    save_report(f"consent-sync-{args.label}", params, seconds=seconds, median=medians, commits=commits)


if __name__ == "__main__":
    main()
