"""Batch records reach CloudWatch (on a moto server over HTTP) with the names the deploy's alarms watch."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from lakehouse.metrics import BatchMetrics, CloudWatchMetrics, publish_to, report


def test_a_batch_record_becomes_custom_metrics_with_environment_and_table(aws):
    client = aws.client("cloudwatch")
    sink = CloudWatchMetrics(client, namespace="lakehouse", environment="prod")
    sink.publish(BatchMetrics(table="patients", batch_id=3, rows_read=10, applied=7, quarantined=3))

    names = {m["MetricName"] for m in client.list_metrics(Namespace="lakehouse")["Metrics"]}
    assert {"QuarantinedRows", "UnreconciledBatches", "RowsRead", "BatchSeconds"} <= names
    now = datetime.now(UTC)
    stats = client.get_metric_statistics(
        Namespace="lakehouse",
        MetricName="QuarantinedRows",
        Dimensions=[{"Name": "Environment", "Value": "prod"}, {"Name": "Table", "Value": "patients"}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 3


def test_an_unreconciled_batch_counts_one():
    sink = CloudWatchMetrics(None, namespace="lakehouse", environment="prod")
    data = {d["MetricName"]: d["Value"] for d in sink.data(BatchMetrics(table="t", batch_id=0, rows_read=5))}
    assert data["UnreconciledBatches"] == 1.0


def test_a_cloudwatch_failure_is_logged_not_raised(caplog):
    class Broken:
        def put_metric_data(self, **_):
            raise ConnectionError("endpoint unreachable")

    publish_to(CloudWatchMetrics(Broken(), namespace="lakehouse", environment="prod"))
    try:
        logger = logging.getLogger("lakehouse")
        propagate, logger.propagate = logger.propagate, True
        with caplog.at_level(logging.WARNING, logger="lakehouse.metrics"):
            report(BatchMetrics(table="t", batch_id=1))
    finally:
        publish_to(None)
        logger.propagate = propagate
    assert "metrics_not_published" in caplog.text and "endpoint unreachable" in caplog.text


def test_the_lag_is_published_in_seconds_and_left_out_when_a_batch_has_none():
    sink = CloudWatchMetrics(None, namespace="lakehouse", environment="prod")
    data = {d["MetricName"]: d for d in sink.data(BatchMetrics(table="t", batch_id=0, lag_seconds=42.0))}
    assert data["LagSeconds"]["Value"] == 42.0 and data["LagSeconds"]["Unit"] == "Seconds"
    assert "LagSeconds" not in {d["MetricName"] for d in sink.data(BatchMetrics(table="t", batch_id=0))}
