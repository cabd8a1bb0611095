"""The always-on stream and the consent policy: a withdrawal the stream applies reaches the zone by itself.

Found by review: the deployed stream (every DMS table, `consents` among them) applied a withdrawal to the consent
source but never rebuilt the policy (only `lakehouse run` and the flows' policy step did, and a flow fails on the
leases the stream holds), so the zone kept the patient for good. And a table's consent sync was stamped with the
shared snapshot's fingerprint read after another table had refreshed it: stamped with a policy it never applied,
it would never apply that one.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from lakehouse.masking import pseudonym
from lakehouse.policy.snapshot import PolicySnapshot, fingerprint, fingerprint_of
from lakehouse.policy.store import LocalPolicyStore, PolicyRow
from lakehouse.runner import run_stream
from tests.privacy_lake import START, PrivacyLake, fresh_lake

P = 4201


@pytest.fixture
def lake(spark, tmp_path, monkeypatch) -> PrivacyLake:
    return fresh_lake(spark, tmp_path, monkeypatch)


def zone_rows(lake: PrivacyLake, table: str, patient: int) -> int:
    mine = pseudonym(patient, lake.zone.key)
    return lake.non_phi(table).where(F.col("patient_id") == mine).count()


def test_a_withdrawal_the_stream_applies_rebuilds_the_policy_and_leaves_the_zone(lake, spark):
    lake.consent(P, True, signed=START - timedelta(days=30))
    lake.land("patients", [lake.patient(P)])
    lake.land("devices", [lake.device("DV-0061", P)])
    lake.run()
    assert zone_rows(lake, "devices", P) == 1
    policy = lake.config.policy.model_copy(update={"refresh_seconds": 1})  # type: ignore[union-attr]
    stream = lake.config.stream.model_copy(update={"trigger_seconds": 1})
    config = lake.config.model_copy(update={"policy": policy, "stream": stream})
    stop = threading.Event()
    result: list[list] = [[]]
    tables = ["consents", "patients", "devices"]  # the consent source among them, as the deployed stream runs
    thread = threading.Thread(target=lambda: result.__setitem__(0, run_stream(spark, config, tables, stop)))
    thread.start()
    try:
        lake.consent(P, False)  # only the stream applies it: no `lakehouse run`, no policy build by hand
        deadline = time.monotonic() + 180
        while (zone_rows(lake, "devices", P) or zone_rows(lake, "patients", P)) and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        stop.set()
        thread.join(timeout=180)
    runs = {r.table: r for r in result[0]}
    assert all(r.ok for r in runs.values()), {t: r.error for t, r in runs.items()}
    assert len(runs["consents"].batches) == 1
    assert any(n.startswith("policy rebuilt") for n in runs["consents"].notes)
    assert zone_rows(lake, "devices", P) == zone_rows(lake, "patients", P) == 0


def test_a_policy_frame_carries_the_fingerprint_of_its_own_rows_not_of_a_later_refresh(spark, tmp_path):
    store = LocalPolicyStore(tmp_path)
    first_rows = [PolicyRow(P, None, True, None)]
    store.write(first_rows)
    snapshot = PolicySnapshot(store, refresh_seconds=3600)
    first = snapshot.current(spark)  # table A takes the policy...
    store.write([PolicyRow(P, None, False, None)])
    snapshot.invalidate()
    second = snapshot.current(spark)  # ...and table B refreshes it before A's sync stamps what it applied
    assert fingerprint_of(first) == fingerprint(first_rows) != snapshot.fingerprint == fingerprint_of(second)


def test_a_failed_policy_build_is_counted_in_cloudwatch_and_tried_again_later(lake, spark, aws):
    """A build that fails (here: the consent source was never written) is logged and counted as the alarm's metric,
    then waits `retry_seconds` before the next try; the stream itself goes on."""
    from datetime import UTC, datetime

    from lakehouse.metrics import POLICY_BUILD, STREAM_TASK_FAILURES, BatchMetrics, CloudWatchMetrics, publish_to
    from lakehouse.runner import StreamPolicy, TableRun

    config = lake.config  # nothing run yet: the consent source is not there to build from
    run = TableRun(table="consents", batches=[BatchMetrics(table="consents", batch_id=0)])
    cloudwatch = aws.client("cloudwatch")
    publish_to(CloudWatchMetrics(cloudwatch, namespace="lakehouse", environment="test"))
    try:
        policy = StreamPolicy(config, run, retry_seconds=60)
        policy.rebuild_when_applied(spark, None)  # type: ignore[arg-type]  # not reached when the build fails
        policy.rebuild_when_applied(spark, None)  # type: ignore[arg-type]  # within retry_seconds: not tried
    finally:
        publish_to(None)
    assert policy.built == -1 and policy.next_build > time.monotonic() + 30
    now = datetime.now(UTC)
    stats = cloudwatch.get_metric_statistics(
        Namespace="lakehouse",
        MetricName=STREAM_TASK_FAILURES,
        Dimensions=[{"Name": "Environment", "Value": "test"}, {"Name": "Task", "Value": POLICY_BUILD}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 1
