"""batch/privacy.py: `lakehouse privacy` as a job, the way the deployed zones are reached (deploy/README.md section 8).

The job is run as spark-submit runs it (its own `main`, its own argument parser), in this process, on a small lake
of the shipped local configuration.
"""

from __future__ import annotations

import runpy
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.masking import pseudonym
from tests.privacy_lake import LOCAL_YAML, START, ZONE_TABLES, PrivacyLake, fresh_lake

ROOT = Path(__file__).resolve().parents[1]
P = 4201


def privacy_job(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """batch/privacy.py with `argv`, as spark-submit runs it: exit code, stdout, stderr."""
    saved = sys.argv
    sys.argv = [str(ROOT / "batch" / "privacy.py"), *argv]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / "batch" / "privacy.py"), run_name="__main__")
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(exit_.value.code or 0), out, err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--command", "purge"], "--command takes one of forget, readmit, sync, vacuum, not 'purge'"),
        (["--command", "forget"], "--command forget needs --patient"),
        (["--command", "readmit", "--patient", " "], "--command readmit needs --patient"),
        (["--command", "vacuum", "--patient", "4201"], "--command vacuum takes --hours, not --patient"),
        (["--command", "forget", "--patient", "1", "--hours", "0"], "takes --patient, --vacuum_hours, not --hours"),
        (["--command", "sync", "--table", "patients"], "--table: privacy sync acts on every table of the non-PHI"),
        (["--command", "sync", "--rebuild", "yes"], "--rebuild takes true or false, not 'yes'"),
        (["--command", "vacuum", "--hours", "a week"], "--hours takes a number of hours (0 or more), not 'a week'"),
        (["--command", "forget", "--patient", "1", "--vacuum_hours", "-1"], "--vacuum_hours takes a number of hours"),
    ],
)
def test_a_request_the_command_does_not_take_is_refused_before_anything_is_read(tmp_path, capsys, arguments, message):
    missing = tmp_path / "missing.yaml"  # refused first: the configuration is never read
    code, _, err = privacy_job(["--config", str(missing), *arguments], capsys)
    assert code == 2 and message in err, err
    assert "configuration file not found" not in err


def test_a_misspelt_job_argument_is_refused_with_the_jobs_arguments(capsys):
    code, _, err = privacy_job(["--config", "c.yaml", "--command", "forget", "--patiant", "1"], capsys)
    assert code == 2 and "unknown argument --patiant: did you mean --patient?" in err and "--vacuum_hours" in err


def zone_rows(lake: PrivacyLake, patient: int) -> int:
    mine = pseudonym(patient, lake.zone.key)
    return sum(
        lake.non_phi(t, kind).where(F.col("patient_id") == mine).count()
        for t in ZONE_TABLES
        for kind in ("history", "latest")
    )


def test_the_job_forgets_readmits_syncs_and_vacuums_as_the_cli_does(spark, tmp_path, monkeypatch, capsys):
    lake = fresh_lake(spark, tmp_path, monkeypatch)
    lake.consent(P, True, signed=START - timedelta(days=30))
    lake.land("patients", [lake.patient(P)])
    lake.land("devices", [lake.device("DV-4201", P)])
    lake.land("therapy_sessions", [lake.session(P * 10, "DV-4201")])
    lake.run()
    assert zone_rows(lake, P) == 6
    job = ["--JOB_NAME", "lakehouse-test-privacy", "--config", str(LOCAL_YAML)]

    code, out, _ = privacy_job([*job, "--command", "forget", "--patient", str(P)], capsys)
    assert code == 0 and "removed from the non-PHI zone: 6 rows" in out
    assert zone_rows(lake, P) == 0
    log = spark.read.format("delta").load(f"{lake.config.paths.lake}/_privacy/log")
    assert [r.event for r in log.orderBy("at").collect()] == ["forget_started", "forgotten"]

    code, _, err = privacy_job([*job, "--command", "forget", "--patient", str(P), "--vacuum_hours", "0"], capsys)
    assert code == 2 and "--vacuum_hours 0 is below" in err and "--vacuum-hours" not in err

    code, out, _ = privacy_job([*job, "--command", "readmit", "--patient", str(P)], capsys)
    assert code == 0 and "re-admission recorded" in out
    assert zone_rows(lake, P) == 6

    code, out, _ = privacy_job([*job, "--command", "sync"], capsys)
    assert code == 0 and "patients: the zone already follows the consent policy" in out

    code, out, _ = privacy_job([*job, "--command", "vacuum"], capsys)
    assert code == 0 and "vacuumed 6 tables of the non-PHI zone (retention 168 hours)" in out
