"""The job scripts run locally with spark-submit in local mode, as EMR steps and Glue jobs run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from lakehouse.demo_snapshots import write_pecos
from tests.conftest import started_jvm_conf, write_dms_csv
from tests.dms_tables import PEOPLE, seq

ROOT = Path(__file__).resolve().parents[1]
DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"


def spark_submit(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`spark-submit --packages <delta> <script> <args>` with this interpreter as the Python of driver and workers."""
    import pyspark

    if pyspark.__version__.startswith("4"):
        pytest.skip("the spark-submit smoke runs pin the Spark 3.5 / Delta 3.3 production line")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [str(bin_dir / "spark-submit"), "--master", "local[2]", "--packages", DELTA_PACKAGE, *started_jvm_conf()]
    command += [script, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def write_config(root: Path, data: dict) -> Path:
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def paths(root: Path) -> dict[str, str]:
    return {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")}


@pytest.mark.slow
def test_apply_once_job_applies_a_table_and_exits_zero(tmp_path):
    people = {**PEOPLE, "source": {**PEOPLE["source"], "path": str(tmp_path / "landing" / "people")}}
    config = write_config(tmp_path, {"paths": paths(tmp_path), "tables": {"people": people}})
    write_dms_csv(
        tmp_path / "landing" / "people",
        "20260301-090000000.csv",
        [
            ["I", "2026-03-01 09:00:00", "1", "Ann", "1.5", seq(1), ""],
            ["I", "2026-03-01 09:00:01", "2", "Bo", "2", seq(2), ""],
        ],
    )
    done = spark_submit("batch/apply_once.py", "--JOB_NAME", "smoke", "--config", str(config), "--table", "people")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "people: 1 batches" in done.stdout
    latest = DeltaTable(str(tmp_path / "lake" / "people" / "latest")).to_pyarrow_table()
    assert sorted(latest.column("name").to_pylist()) == ["Ann", "Bo"]


def load_job(script: str):
    """The job script `script` as a module, to call its `work` in this process (on the tests' Spark session)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(script).stem + "_job", ROOT / script)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


@pytest.mark.slow
def test_snapshot_load_job_applies_earlier_days_first_refuses_an_older_one_and_allows_deletes_when_told(
    spark, tmp_path, monkeypatch, capsys
):
    from lakehouse.apply.snapshot import SnapshotRefused
    from lakehouse.jobs import job_args

    folder = tmp_path / "landing" / "pecos"
    day1, day2 = write_pecos(folder, clinicians=20)
    feed = {
        "kind": "csv",
        "path": str(folder),
        "primary_key": ["npi", "ind_enrl_id", "org_pac_id", "adrs_id"],
        "nullable_key_columns": ["org_pac_id"],
        "npi_columns": ["npi"],
        "columns": dict.fromkeys(
            ["npi", "ind_enrl_id", "org_pac_id", "adrs_id", "provider_last_name", "state"], "string"
        ),
    }
    config = write_config(tmp_path, {"paths": paths(tmp_path), "snapshots": {"pecos": feed}})
    # Day 2's job starts first (the trigger starts one per object): it applies day 1, landed before it, first.
    done = spark_submit("batch/snapshot_load.py", "--config", str(config), "--key", str(day2))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2026-03-01: applied" in done.stdout and "2026-03-02: applied" in done.stdout

    # The same job's next two days in this process (a spark-submit each took ~40 s of CI): its `work`, as `main`
    # calls it with the arguments parsed from the command line, on the tests' session.
    job = load_job("batch/snapshot_load.py")
    monkeypatch.setattr(job, "build_spark", lambda config, app_name: spark)
    optional = ["bucket", "feed", "allow_deletes", "lease_wait_seconds"]

    def work(*argv: str) -> int:
        return job.work(job_args(["--config", str(config), *argv], required=["config", "key"], optional=optional))

    older = folder / day1.name.replace("2026-03-01", "2026-02-28")
    older.write_bytes(day1.read_bytes())
    with pytest.raises(SnapshotRefused, match="older than"):  # `main` prints it in one line and exits 2
        work("--key", str(older))
    # A day keeping 5 of its rows would delete more than a tenth of the table: applied only when allowed.
    day3 = folder / day2.name.replace("2026-03-02", "2026-03-03")
    day3.write_text("".join(day2.read_text(encoding="utf-8").splitlines(keepends=True)[:6]), encoding="utf-8")
    with pytest.raises(SnapshotRefused, match="would delete more of a table than max_delete_fraction"):
        work("--key", str(day3))
    capsys.readouterr()
    assert work("--key", str(day3), "--allow_deletes", "true") == 0
    assert "2026-03-03: applied" in capsys.readouterr().out
    assert DeltaTable(str(tmp_path / "lake" / "pecos" / "latest")).to_pyarrow_table().num_rows == 5


def test_a_job_with_a_bad_config_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path, {"paths": paths(tmp_path), "tables": {"x": {"primary_key": ["id"]}}})
    done = subprocess.run(
        [sys.executable, "batch/apply_once.py", "--config", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "tables.x.source" in done.stderr and "Traceback" not in done.stderr


def test_a_snapshot_load_with_a_bad_lease_wait_says_so_in_one_line(tmp_path):
    feed = {"kind": "opais", "path": str(tmp_path)}
    config = write_config(tmp_path, {"paths": paths(tmp_path), "snapshots": {"opais": feed}})
    done = subprocess.run(
        [sys.executable, "batch/snapshot_load.py", "--config", str(config), "--key", str(tmp_path / "x.zip"),
         "--feed", "opais", "--lease_wait_seconds", "an hour"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--lease_wait_seconds takes a number of seconds (0 or more), not 'an hour'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_snapshot_load_hands_the_reader_the_key_the_trigger_passed_whole(aws, monkeypatch):
    """Found by review: the trigger passes the key as S3 names it (decoded), the job made `s3://bucket/key` of it and
    the reader decoded that URI's path again: `%2B` became `+`, and `#` started a fragment (the key was cut)."""
    from lakehouse.config import SnapshotDate
    from lakehouse.sources.snapshot import date_from_path, file_name, local_copy

    job = load_job("batch/snapshot_load.py")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="landing")
    name = "OPA_CE_DAILY_PUBLIC_2026-11-23 v%2B1+b #2 ?é.zip"
    s3.put_object(Bucket="landing", Key=f"opais/340b/{name}", Body=b"the export")
    s3.put_object(Bucket="landing", Key="opais/340b/OPA_CE_DAILY_PUBLIC_2026-11-23 v+1+b ", Body=b"another object")

    uri = job.snapshot_uri("landing", f"opais/340b/{name}")

    assert file_name(uri) == name
    assert date_from_path(uri, SnapshotDate()).isoformat() == "2026-11-23"
    with local_copy(uri) as local:
        assert local.read_bytes() == b"the export"
    assert job.snapshot_uri(None, "/data/opais/a #1.zip") == "/data/opais/a #1.zip"  # a local path stays a path


def test_the_stream_job_streams_the_dms_tables_only_unless_a_feed_is_named(monkeypatch):
    """Found by review: the deployed stream step (no --tables) also held every snapshot feed's lease, so the snapshot
    trigger's load job waited for it and failed every day."""
    from lakehouse.config import load_config
    from lakehouse.errors import ConfigError

    job = load_job("streaming/dms_stream.py")
    config = load_config(ROOT / "config" / "local.yaml")
    streamed: list[list[str] | None] = []
    monkeypatch.setattr(job, "load_job_config", lambda args: config)
    monkeypatch.setattr(job, "build_spark", lambda config, app_name: None)
    monkeypatch.setattr(job, "glue_job", lambda spark, name: __import__("contextlib").nullcontext())
    monkeypatch.setattr(job, "run_stream", lambda spark, config, tables, job: streamed.append(tables) or [])

    assert job.work({"JOB_NAME": "dms_stream", "config": "c"}) == 0
    assert job.work({"JOB_NAME": "dms_stream", "config": "c", "tables": "opais,patients"}) == 0

    dms = sorted(config.dms_tables())
    assert config.snapshots and streamed[0] == dms
    assert not set(streamed[0]) & set(config.snapshots)
    assert streamed[1] == ["opais", "patients"]
    feeds_only = config.model_copy(update={"tables": {n: t for n, t in config.tables.items() if n not in dms}})
    monkeypatch.setattr(job, "load_job_config", lambda args: feeds_only)
    with pytest.raises(ConfigError, match="no DMS table to stream"):  # never all the feeds by default
        job.work({"JOB_NAME": "dms_stream", "config": "c"})
