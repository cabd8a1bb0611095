"""One record per table per micro-batch: what was read, applied, quarantined, and how long it took.

Locally the record is a JSON log line (logger `lakehouse.metrics`); on AWS the same figures also go
to CloudWatch. The counts reconcile: every row read is applied, replayed, unchanged, a duplicate, or
quarantined.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("lakehouse.metrics")

# The tasks a stream runs beside its batches, whose failures are counted as STREAM_TASK_FAILURES (deploy alarms).
POLICY_BUILD, CONSENT_SYNC = "policy_build", "consent_sync"
# A snapshot the stream's feed query refused (README, snapshot refusals): counted once per refused file.
SNAPSHOT_REFUSED = "snapshot_refused"
STREAM_TASK_FAILURES = "StreamTaskFailures"


@dataclass
class BatchMetrics:
    """The figures of one micro-batch of one table."""

    table: str
    batch_id: int
    files: int = 0
    rows_read: int = 0
    applied: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    late: int = 0
    unchanged: int = 0
    replayed: int = 0
    replay_conflicts: int = 0  # of the replayed: other values than the applied change of their sequence (kept)
    duplicates: int = 0
    quarantined: int = 0
    null_sequence: int = 0
    key_changes: int = 0
    policy_missing: int = 0  # changes of patients the consent policy does not know: treated as not consented
    unknown_keys: int = 0  # U / D of a key with no live version before it (applied; see README)
    unknown_key_examples: list[str] = field(default_factory=list)  # pseudonym prefixes for tables with PHI
    repeats_removed: int = 0  # stored versions a late change right before them made repeats (README: History)
    repeats_restored: int = 0  # stored repeats a late change right before them made versions (README: History)
    optional_absent: int = 0  # rows of files without an optional column: NULL written for it
    replayed_files: list[str] = field(default_factory=list)  # "file = batch N, first file": content applied before
    reloaded_files: list[str] = field(default_factory=list)  # "LOAD file = batch N, file": a table reload (README)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    duplicate_sequence_keys: int = 0  # how many keys had duplicate sequences (a count: keys may be PHI)
    seconds: float = 0.0
    lag_seconds: float | None = None  # age of the batch's oldest file at its start (lakehouse/lag.py)
    maintenance_seconds: float = 0.0  # compaction / VACUUM run after the batch's writes (lakehouse/maintenance.py)
    versions: dict[str, int] = field(default_factory=dict)
    # Seconds of each step (changes, counts, plan, then the writes, which run side by side and so overlap).
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """rows read (+ old-key deletes of key-changing updates) = every place a row can end."""
        placed = self.applied + self.replayed + self.unchanged + self.duplicates + self.quarantined
        return self.rows_read + self.key_changes == placed

    def to_json(self) -> str:
        return json.dumps({"event": "batch", **asdict(self), "reconciles": self.reconciles}, sort_keys=False)


class CloudWatchMetrics:
    """Publishes each batch's figures as CloudWatch custom metrics (dimensions Environment and Table).

    The deploy's alarms watch QuarantinedRows, UnreconciledBatches and LagSeconds in this namespace.
    """

    def __init__(self, client: Any, *, namespace: str, environment: str) -> None:
        self.client, self.namespace, self.environment = client, namespace, environment

    def data(self, metrics: BatchMetrics) -> list[dict[str, Any]]:
        """The metric data of one batch record."""
        dimensions = [{"Name": "Environment", "Value": self.environment}, {"Name": "Table", "Value": metrics.table}]
        values = {
            "RowsRead": (metrics.rows_read, "Count"),
            "RowsApplied": (metrics.applied, "Count"),
            "LateRows": (metrics.late, "Count"),
            "QuarantinedRows": (metrics.quarantined, "Count"),
            "PolicyMissingRows": (metrics.policy_missing, "Count"),
            "UnknownKeyRows": (metrics.unknown_keys, "Count"),
            "ReplayedFiles": (len(metrics.replayed_files), "Count"),
            "UnreconciledBatches": (0 if metrics.reconciles else 1, "Count"),
            "BatchSeconds": (metrics.seconds, "Seconds"),
            "LagSeconds": (metrics.lag_seconds, "Seconds"),
        }
        return [
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}
            for name, (value, unit) in values.items()
            if value is not None  # a snapshot batch has no file lag
        ]

    def publish(self, metrics: BatchMetrics) -> None:
        self.client.put_metric_data(Namespace=self.namespace, MetricData=self.data(metrics))

    def publish_failure(self, task: str) -> None:
        """Count one failure of a stream's own task (dimensions Environment and Task)."""
        dimensions = [{"Name": "Environment", "Value": self.environment}, {"Name": "Task", "Value": task}]
        data = [{"MetricName": STREAM_TASK_FAILURES, "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"}]
        self.client.put_metric_data(Namespace=self.namespace, MetricData=data)


_sinks: list[CloudWatchMetrics] = []


def publish_to(sink: CloudWatchMetrics | None) -> None:
    """Also send every batch record to `sink` (None: only the log line)."""
    _sinks[:] = [sink] if sink else []


def report(metrics: BatchMetrics) -> None:
    """Emit the batch record as a JSON log line, and to CloudWatch when configured.

    A CloudWatch failure is logged, never raised: the batch is committed by then and must not be replayed.
    """
    log.info(metrics.to_json())
    for sink in _sinks:
        try:
            sink.publish(metrics)
        except Exception as exc:  # metrics are best effort once the data is safe
            log.warning(json.dumps({"event": "metrics_not_published", "table": metrics.table, "error": str(exc)}))


def report_failure(task: str) -> None:
    """Count a failure of a task the stream runs beside its batches and tries again (POLICY_BUILD, CONSENT_SYNC),
    or a snapshot its feed query refused (SNAPSHOT_REFUSED), as StreamTaskFailures in CloudWatch, when configured:
    a log line alone is not seen on EMR, a policy that stays unbuilt keeps a withdrawn patient in the zone, and a
    refused snapshot holds its feed back until someone applies it. The deploy alarms on each."""
    for sink in _sinks:
        try:
            sink.publish_failure(task)
        except Exception as exc:  # best effort, as `report`
            log.warning(json.dumps({"event": "metrics_not_published", "task": task, "error": str(exc)}))
