"""The long-running stream's seams with the world around it (found by review): a snapshot its feed query refuses
is counted where the deploy's alarms look, its driver's memory stays bounded however long it runs, and it stops
on a marker object as well as on a signal (an EMR step's cancel never reaches a driver in YARN cluster mode).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lakehouse.config import Config
from lakehouse.runner import run_stream
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import PEOPLE, seq
from tests.test_csv_snapshot import DAY1, DAY2, pecos_settings
from tests.test_csv_snapshot import write as write_pecos


def until(condition: Callable[[], bool], what: str, *, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Stream:
    """`run_stream` in a thread of its own, as the deployed step runs it (the test holds `stop` for Ctrl-C)."""

    def __init__(self, spark, config: Config, tables: list[str] | None = None) -> None:
        self.stop, self.runs, self.raised = threading.Event(), None, None
        self.thread = threading.Thread(target=self._run, args=(spark, config, tables), daemon=True)
        self.thread.start()

    def _run(self, spark, config: Config, tables: list[str] | None) -> None:
        try:
            self.runs = {r.table: r for r in run_stream(spark, config, tables, self.stop)}
        except BaseException as exc:  # the test reports it
            self.raised = exc

    def join(self, seconds: float = 300) -> None:
        self.thread.join(timeout=seconds)
        assert not self.thread.is_alive(), "the stream did not stop"
        assert self.raised is None, self.raised


def test_a_snapshot_the_stream_refuses_is_counted_as_a_stream_task_failure(spark, tmp_path, aws, monkeypatch):
    """Before: the refusal wrote the snapshot log and a driver log line only, and set `run.error`, read at exit,
    so the always-on stream's step stayed RUNNING and no alarm said anything (the lag alarm leaves feeds out)."""
    from lakehouse.metrics import SNAPSHOT_REFUSED, STREAM_TASK_FAILURES, publish_to

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    settings = pecos_settings(tmp_path)
    settings |= {"stream": {"trigger_seconds": 1}, "metrics": {"cloudwatch_namespace": "lakehouse"}}
    settings["metrics"] |= {"environment_name": "test", "region": "us-east-1"}
    config = Config.model_validate(settings)
    folder = tmp_path / "landing" / "pecos"
    write_pecos(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", DAY2)
    stream = Stream(spark, config)
    try:
        until(lambda: stream.raised or "applied" in _logged(config, "clinicians"), "day 2 applied")
        write_pecos(folder, "DAC_NationalDownloadableFile_2026-10-31.csv", DAY1)  # older than day 2: refused
        until(lambda: stream.raised or "refused" in _logged(config, "clinicians"), "the refusal")
    finally:
        stream.stop.set()
        stream.join()
        publish_to(None)
    run = stream.runs["clinicians"]
    assert run.error is not None and run.error.startswith("snapshot refused")  # the exit code says it too, as before
    now = datetime.now(UTC)
    stats = aws.client("cloudwatch").get_metric_statistics(
        Namespace="lakehouse",
        MetricName=STREAM_TASK_FAILURES,
        Dimensions=[{"Name": "Environment", "Value": "test"}, {"Name": "Task", "Value": SNAPSHOT_REFUSED}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 1  # once for the one refused file


def _logged(config: Config, feed: str) -> set[str]:
    """The statuses of the feed's snapshot log so far (read without Spark, beside the running stream)."""
    from lakehouse.apply.snapshot import log_path
    from lakehouse.readers import snapshot_log_local

    return {status for _, _, status, _, _ in snapshot_log_local(log_path(config, feed)) or []}


def test_a_streams_runs_keep_the_recent_batch_records_and_count_every_batch(monkeypatch):
    """Before: a stream kept every batch's record and note for its whole life (~1.1 KB a batch, measured: 11 MB for
    10,000 batches of one table). A trigger-once run still keeps them all (its summary reads them)."""
    from lakehouse import runner
    from lakehouse.metrics import BatchMetrics

    many = 5 * runner.STREAM_KEEPS
    stream, once = runner.TableRun.streaming("t"), runner.TableRun("t")
    for batch_id in range(many):
        metrics = BatchMetrics(table="t", batch_id=batch_id, reloaded_files=["LOAD00000001.csv = batch 0, first"])
        runner.record_batch(stream, metrics)  # each batch's bookkeeping, as the stream's foreachBatch does it
        runner.record_batch(once, metrics)
    assert len(stream.batches) == len(stream.notes) == runner.STREAM_KEEPS
    assert [b.batch_id for b in stream.batches] == list(range(many - runner.STREAM_KEEPS, many))  # the newest
    assert stream.batch_count == once.batch_count == len(once.batches) == len(once.notes) == many


def test_the_streams_policy_rebuild_sees_new_batches_of_a_full_run(monkeypatch):
    """StreamPolicy read `len(run.batches)`: with the records bounded, the length stops growing and a withdrawal
    applied after the first STREAM_KEEPS batches would never have rebuilt the policy."""
    from types import SimpleNamespace

    from lakehouse import runner
    from lakehouse.metrics import BatchMetrics
    from lakehouse.policy.store import WriteStats

    builds: list[int] = []
    built = WriteStats(rows=1, requests=1, retries=0, retried_rows=0)
    monkeypatch.setattr(runner, "build_policy_table", lambda spark, config: builds.append(1) or built)
    monkeypatch.setattr(runner, "policy_is_current", lambda config: True)
    run = runner.TableRun.streaming("consents")
    for batch_id in range(runner.STREAM_KEEPS + 1):
        run.record(BatchMetrics(table="consents", batch_id=batch_id))
    config = SimpleNamespace(policy=SimpleNamespace(refresh_seconds=0))
    policy = runner.StreamPolicy(config, run, retry_seconds=0)  # type: ignore[arg-type]
    policy.rebuild_when_applied(None, runner.Governance())  # type: ignore[arg-type]  # current: nothing to build
    assert builds == []
    run.record(BatchMetrics(table="consents", batch_id=runner.STREAM_KEEPS + 1))  # a withdrawal applied
    policy.rebuild_when_applied(None, runner.Governance())  # type: ignore[arg-type]
    assert builds == [1] and policy.built == runner.STREAM_KEEPS + 2


def _lease_free(lock_file: Path) -> bool:
    """Nobody holds the unit: its lock file is empty and takes a flock (as the next job's lease does)."""
    import fcntl
    import os

    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fstat(fd).st_size == 0
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_stop_marker_stops_the_stream_after_its_batch_and_frees_its_leases(spark, tmp_path, monkeypatch):
    """Before: only SIGTERM / Ctrl-C stopped the stream, and in YARN cluster mode EMR's step cancel signals
    spark-submit on the primary node, not the driver: the stream went on, holding its leases, until
    `yarn application -kill` (no batch finished, leases left to expire). Now `<checkpoints>/_stop`, written after
    the stream started, stops it between batches: the batch running goes to its end, the leases are given back,
    and the runs are ok (the step's script exits 0)."""
    import copy

    from lakehouse import runner

    monkeypatch.setattr(runner, "STOP_CHECK_SECONDS", 0.5, raising=False)
    config = make_config(tmp_path, {"people": copy.deepcopy(PEOPLE)})
    config = config.model_copy(update={"stream": config.stream.model_copy(update={"trigger_seconds": 1})})
    row = ["I", "2026-03-01 09:00:00", "1", "Ann", "1", seq(1), ""]
    write_dms_csv(tmp_path / "landing" / "people", "20260301-090000000.csv", [row])
    checkpoints = Path(config.paths.checkpoints)
    marker, lock_file = checkpoints / "_stop", checkpoints / "_locks" / "people.lock"
    stream = Stream(spark, config)
    try:
        until(lambda: stream.raised or (checkpoints / "people" / "offsets" / "0").exists(), "batch 0 to start")
        assert not _lease_free(lock_file)
        marker.touch()
        assert not (checkpoints / "people" / "commits" / "0").exists(), "batch 0 ended before the marker was written"
        stream.thread.join(timeout=180)
        assert not stream.thread.is_alive(), "the marker did not stop the stream"
    finally:
        stream.stop.set()
        stream.join()
    run = stream.runs["people"]
    assert run.ok, run.error
    assert run.batch_count == 1 and run.batches[0].applied == 1  # batch 0 went to its end...
    assert (checkpoints / "people" / "commits" / "0").exists()  # ...and was committed: not replayed at the restart
    assert _lease_free(lock_file)
    assert runner.stop_marker(config) == str(marker)

    # The marker stays (every stream sharing the checkpoints reads it); a stream started after it ignores it.
    again = Stream(spark, config)
    try:
        until(lambda: again.raised or not _lease_free(lock_file), "the second stream to take its lease")
        time.sleep(3)  # several marker checks
        assert again.thread.is_alive() and marker.exists()
    finally:
        again.stop.set()
        again.join()
    assert _lease_free(lock_file)
