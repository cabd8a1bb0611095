"""One record per table per micro-batch: what was read, applied, quarantined, and how long it took.

Locally the record is a JSON log line (logger `lakehouse.metrics`); on AWS the same figures also go
to CloudWatch. The counts reconcile: every row read is applied, replayed, unchanged, a duplicate, or
quarantined.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

log = logging.getLogger("lakehouse.metrics")


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
    duplicates: int = 0
    quarantined: int = 0
    null_sequence: int = 0
    key_changes: int = 0
    policy_missing: int = 0  # changes of patients the consent policy does not know: treated as not consented
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    duplicate_sequence_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """rows read (+ old-key deletes of key-changing updates) = every place a row can end."""
        placed = self.applied + self.replayed + self.unchanged + self.duplicates + self.quarantined
        return self.rows_read + self.key_changes == placed

    def to_json(self) -> str:
        return json.dumps({"event": "batch", **asdict(self), "reconciles": self.reconciles}, sort_keys=False)


def report(metrics: BatchMetrics) -> None:
    """Emit the batch record (the CLI decides where log records go)."""
    log.info(metrics.to_json())
