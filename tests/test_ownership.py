"""One writer per table: the lease of a write unit, on a lock file and on DynamoDB (a moto server).

A second job that wants a unit another job holds is refused with who holds it, and writes nothing; leases
are re-entrant in one process, freed at the end (or when the holder dies: the kernel drops a flock; a
DynamoDB lease expires); the Glue flow no longer runs a snapshot feed once per table.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lakehouse.config import Config
from lakehouse.ownership import LeaseLostError, UnitBusyError, check_held, hold
from tests.conftest import make_config
from tests.dms_tables import PEOPLE


def local_config(root: Path) -> Config:
    return make_config(root, {"people": copy.deepcopy(PEOPLE)})


def dynamodb_config(root: Path, aws, *, lease_seconds: float = 30, wait_seconds: float = 0) -> Config:
    table = "lakehouse-test-leases"
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "unit", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "unit", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    config = local_config(root)
    locks = {"store": "dynamodb", "dynamodb_table": table, "lease_seconds": lease_seconds}
    locks["wait_seconds"] = wait_seconds
    return Config.model_validate({**config.model_dump(by_alias=True, exclude={"source_file"}), "locks": locks})


def hold_in_another_process(config: Config, unit: str, seconds: float) -> subprocess.Popen:
    """A second process (another job) that takes `unit` and keeps it for `seconds`."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from lakehouse.config import Config
        from lakehouse.ownership import hold
        config = Config.model_validate_json(sys.stdin.read())
        with hold(config, [{unit!r}], job="other-job"):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    process.stdin.write(config.model_dump_json(by_alias=True))
    process.stdin.close()
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_unit_held_by_another_process_is_refused_with_its_holder(tmp_path: Path) -> None:
    config = local_config(tmp_path)
    other = hold_in_another_process(config, "people", 30)
    try:
        with pytest.raises(UnitBusyError) as refused, hold(config, ["people"], job="this-job"):
            pytest.fail("the lease was given twice")
        message = str(refused.value)
        assert "unit 'people'" in message and "other-job" in message and "one writer per table" in message
    finally:
        other.kill()
        other.wait()
    with hold(config, ["people"], job="this-job"):  # the kernel dropped the dead process's lock
        pass


def test_leases_are_reentrant_in_one_process_and_given_back(tmp_path: Path) -> None:
    config = local_config(tmp_path)
    with hold(config, ["people", "opais"]), hold(config, ["opais"]):
        pass
    other = hold_in_another_process(config, "opais", 0)
    other.wait()
    assert other.returncode == 0


def test_a_dynamodb_lease_is_refused_while_held_and_taken_over_once_expired(tmp_path: Path, aws, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    config = dynamodb_config(tmp_path, aws, lease_seconds=30)
    dynamodb, table = aws.client("dynamodb"), "lakehouse-test-leases"

    def lease(unit: str, expires_in: int) -> dict:
        return {
            "unit": {"S": unit},
            "holder": {"S": "other-job ip-10-0-0-1 pid 7"},
            "since": {"S": "2026-11-23 09:00:00 UTC"},
            "expires_at": {"N": str(int(time.time()) + expires_in)},
        }

    dynamodb.put_item(TableName=table, Item=lease("people", 60))  # another job, alive
    refused = r"being written by other-job ip-10-0-0-1 pid 7 .* lease until"
    with pytest.raises(UnitBusyError, match=refused), hold(config, ["people"], job="this-job"):
        pytest.fail("the lease was given twice")
    kept = dynamodb.get_item(TableName=table, Key={"unit": {"S": "people"}})["Item"]
    assert kept["holder"]["S"] == "other-job ip-10-0-0-1 pid 7"  # untouched

    dynamodb.put_item(TableName=table, Item=lease("opais", -1))  # another job that died: its lease expired
    with hold(config, ["opais"], job="this-job"):
        item = dynamodb.get_item(TableName=table, Key={"unit": {"S": "opais"}})["Item"]
        assert item["holder"]["S"].startswith("this-job ") and int(item["expires_at"]["N"]) > time.time() + 20
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"unit": {"S": "opais"}})  # given back


def test_a_retry_waits_out_the_lease_of_a_job_killed_hard(tmp_path: Path, aws, monkeypatch) -> None:
    """Found by review: a job killed by Glue's timeout or an OOM never gives its lease back; the flows' retries (at
    most 420 s of waits) came while it was still valid and failed the unit. With `locks.wait_seconds` (the deploy
    waits longer than a lease lasts) the retry takes the unit once the dead lease expires."""
    from lakehouse import ownership

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    monkeypatch.setattr(ownership, "LEASE_POLL_SECONDS", 0.5)
    config = dynamodb_config(tmp_path, aws, wait_seconds=20)
    dead = {"unit": {"S": "people"}, "holder": {"S": "killed-job ip-10-0-0-1 pid 7"}, "since": {"S": "earlier"},
            "expires_at": {"N": str(int(time.time()) + 3)}}  # fmt: skip
    aws.client("dynamodb").put_item(TableName="lakehouse-test-leases", Item=dead)
    started = time.monotonic()
    with hold(config, ["people"], job="retry"):
        assert 1 < time.monotonic() - started < 15
    assert render_aws_locks()["wait_seconds"] > load_lease_seconds()


def render_aws_locks() -> dict:
    """The locks of the shipped AWS configuration, as its file says."""
    import yaml

    return yaml.safe_load((Path(__file__).parents[1] / "config" / "aws.yaml").read_text())["locks"]


def load_lease_seconds() -> float:
    from lakehouse.config import LockSettings

    return render_aws_locks().get("lease_seconds", LockSettings.model_fields["lease_seconds"].default)


def test_run_once_reports_a_busy_table_and_applies_the_others(tmp_path: Path, spark) -> None:
    from lakehouse.runner import run_once
    from tests.conftest import write_dms_csv
    from tests.dms_tables import seq

    config = make_config(tmp_path, {"people": copy.deepcopy(PEOPLE), "others": copy.deepcopy(PEOPLE)})
    for name in ("people", "others"):
        write_dms_csv(
            tmp_path / "landing" / name,
            "20260301-090000000.csv",
            [["I", "2026-03-01 09:00:00", "1", "Ann", "1", seq(1), ""]],
        )
    other = hold_in_another_process(config, "people", 120)
    try:
        runs = {r.table: r for r in run_once(spark, config)}
    finally:
        other.kill()
        other.wait()

    assert "being written by other-job" in runs["people"].error and not runs["people"].batches
    assert runs["others"].ok and len(runs["others"].batches) == 1
    assert not (tmp_path / "lake" / "people").exists()  # refused before its first write


def test_a_writer_whose_lease_was_taken_over_stops_before_its_next_batch(tmp_path: Path, aws, monkeypatch, spark):
    """Found by review: a failed renewal was only logged; a job cut off from DynamoDB longer than the lease kept
    writing beside the job that took the unit over. Now its renewal finds the other holder and its batch stops."""
    from lakehouse.runner import run_once
    from lakehouse.tables import table_paths
    from tests.conftest import write_dms_csv
    from tests.dms_tables import seq

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    config = dynamodb_config(tmp_path, aws, lease_seconds=30)  # renewed every 10 s
    dynamodb, table = aws.client("dynamodb"), "lakehouse-test-leases"
    row = ["I", "2026-03-01 09:00:00", "1", "Ann", "1", seq(1), ""]
    write_dms_csv(tmp_path / "landing" / "people", "20260301-090000000.csv", [row])
    with hold(config, ["people"], job="this-job"):
        taker = {"unit": {"S": "people"}, "holder": {"S": "taker ip-10-0-0-2 pid 9"}, "since": {"S": "now"},
                 "expires_at": {"N": str(int(time.time()) + 600)}}  # fmt: skip
        dynamodb.put_item(TableName=table, Item=taker)  # it expired unrenewed, and another job took it
        deadline = time.time() + 25
        while time.time() < deadline:
            try:
                check_held(config, "people")
            except LeaseLostError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the renewal never found the lease taken over")
        (run,) = run_once(spark, config, ["people"])
    assert not run.ok and "another job took it over" in run.error and not run.batches
    latest = Path(table_paths(config, config.tables["people"]).latest)
    assert not list(latest.rglob("*.parquet"))  # nothing written beside the taker
    item = dynamodb.get_item(TableName=table, Key={"unit": {"S": "people"}})["Item"]
    assert item["holder"]["S"] == "taker ip-10-0-0-2 pid 9"  # not given back: it is the taker's


def test_a_lease_left_unrenewed_for_two_periods_stops_the_writes(tmp_path: Path, aws, monkeypatch) -> None:
    from lakehouse import ownership

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    config = dynamodb_config(tmp_path, aws, lease_seconds=30)
    with hold(config, ["people"], job="this-job"):
        check_held(config, "people")
        lease = ownership._leases["lakehouse-test-leases#people"]
        lease.valid_until = time.time() + 9  # two renewals failed (DynamoDB unreachable): 9 of 30 s left
        with pytest.raises(LeaseLostError, match=r"it was not renewed and expires in \d+ s"):
            check_held(config, "people")


def test_a_stream_whose_idle_tables_lease_was_taken_over_stops(tmp_path: Path, aws, monkeypatch, spark) -> None:
    """Found by review: a table that gets no file runs no batch, so its lease was never checked while the stream
    went on with that table's upkeep between batches (consent sync, VACUUM) beside the job that took it over."""
    import threading

    from lakehouse import runner

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    monkeypatch.setattr(runner, "IDLE_VACUUM_CHECK_SECONDS", 1)
    config = dynamodb_config(tmp_path, aws, lease_seconds=30)
    dynamodb, table = aws.client("dynamodb"), "lakehouse-test-leases"
    (tmp_path / "landing" / "people").mkdir(parents=True)
    stop, result = threading.Event(), {}
    stream = threading.Thread(target=lambda: result.update(runs=runner.run_stream(spark, config, ["people"], stop)))
    stream.start()
    try:
        deadline = time.time() + 60
        while "Item" not in dynamodb.get_item(TableName=table, Key={"unit": {"S": "people"}}):
            assert time.time() < deadline, "the stream never took its lease"
            time.sleep(0.5)
        taker = {"unit": {"S": "people"}, "holder": {"S": "taker ip-10-0-0-2 pid 9"}, "since": {"S": "now"},
                 "expires_at": {"N": str(int(time.time()) + 600)}}  # fmt: skip
        dynamodb.put_item(TableName=table, Item=taker)
        stream.join(timeout=60)
        assert not stream.is_alive(), "the stream went on beside the job that took its table over"
    finally:
        stop.set()
        stream.join(timeout=120)
    (run,) = result["runs"]
    assert "another job took it over" in run.error


def test_a_job_may_wait_for_a_unit_until_its_holder_is_done(tmp_path: Path, monkeypatch) -> None:
    """The snapshot load waits for the flow's run of its feed (found by review: refused, its file waited a day)."""
    from lakehouse import ownership

    monkeypatch.setattr(ownership, "LEASE_POLL_SECONDS", 0.5)
    config = local_config(tmp_path)
    other = hold_in_another_process(config, "people", 3)
    try:
        with pytest.raises(UnitBusyError), hold(config, ["people"], wait_seconds=1):
            pytest.fail("the lease was given twice")
        started = time.monotonic()
        with hold(config, ["people"], job="waiting-job", wait_seconds=30):
            waited = time.monotonic() - started
        assert 1 < waited < 25  # taken once the other job let go (it held the unit for 3 s)
    finally:
        other.kill()
        other.wait()
