"""The `lakehouse` command: user errors are one clear line and exit 2; the stream stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lakehouse.cli import main
from tests.conftest import write_dms_csv
from tests.dms_tables import PEOPLE, seq


def test_missing_config_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "run"]) == 2
    assert "configuration file not found" in capsys.readouterr().err


def test_unknown_table_names_the_configured_ones(capsys):
    assert main(["as-of", "patient", "--at", "2026-03-01"]) == 2
    err = capsys.readouterr().err
    assert "no table 'patient'" in err and "patients" in err


def test_bad_time_is_a_clear_error(capsys):
    assert main(["as-of", "patients", "--at", "yesterday"]) == 2
    assert "is not a time" in capsys.readouterr().err


def test_as_of_before_any_run_says_what_to_do(spark, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path), sort_keys=False))
    assert main(["--config", str(config), "as-of", "people", "--at", "2026-03-01"]) == 2
    assert "run `lakehouse run` first" in capsys.readouterr().err


def test_as_of_sql_prints_an_athena_query_of_the_columns_as_of_shows(capsys):
    assert main(["as-of", "dim_ce", "--at", "2026-03-02T06:00:00.250", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert "FROM dim_ce_history\n" in sql and 'ORDER BY "id340b", "ce_id"' in sql
    assert sql.count("TIMESTAMP '2026-03-02 06:00:00.25'") == 2 and "AND NOT _is_deleted" in sql
    assert '"effective_stp"' in sql and '"_valid_to"' in sql and '"_sequence"' not in sql


def _config(root: Path, trigger_seconds: float = 1) -> dict:
    return {
        "environment": "local",
        "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "chk")},
        "stream": {"trigger_seconds": trigger_seconds},
        "tables": {"people": {**PEOPLE, "source": {**PEOPLE["source"], "path": str(root / "landing" / "people")}}},
    }


def _wait_for_batch(proc: subprocess.Popen, deadline: float, stderr: Path) -> str:
    for line in proc.stdout:  # type: ignore[union-attr]
        if '"event": "batch"' in line:
            return line
        assert time.monotonic() < deadline, "no batch reported in time"
    proc.wait(timeout=60)
    raise AssertionError(
        f"the stream ended (rc {proc.returncode}) before reporting a batch; its stderr ends:\n"
        + stderr.read_text(errors="replace")[-4000:]
    )


@pytest.mark.slow
def test_stream_applies_files_as_they_land_and_stops_cleanly_on_sigterm(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path), sort_keys=False))
    landing = tmp_path / "landing" / "people"
    write_dms_csv(landing, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "1", "", ""]])
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:  # the child keeps its own copy of the file
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "--config", str(config), "stream"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        assert '"applied": 1' in _wait_for_batch(proc, deadline, stderr)
        write_dms_csv(landing, "20260301-090000000.csv", [["U", "2026-03-01 09:00:00", "1", "Ann B", "2", seq(1), "1"]])
        assert '"updated": 1' in _wait_for_batch(proc, deadline, stderr)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "people: 2 batches" in out


def test_a_run_with_nothing_new_answers_without_spark(spark, tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path), sort_keys=False))
    write_dms_csv(
        tmp_path / "landing" / "people", "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "1", "", ""]]
    )
    assert main(["--config", str(config), "run", "--no-demo"]) == 0
    assert re.search(r"^people\s+1\s+1\s+1\s", capsys.readouterr().out, re.MULTILINE)

    def no_spark(*args, **kwargs):
        raise AssertionError("nothing new: Spark must not start")

    monkeypatch.setattr("lakehouse.cli._spark", no_spark)
    assert main(["--config", str(config), "run", "--no-demo"]) == 0
    out = capsys.readouterr().out
    # the example's time is a whole hour after the middle of the commits: never a row's exact commit time
    assert "ok; nothing new" in out and "As of 2026-03-01 09:00:00 UTC, people had 1 live rows" in out
