"""The policy between the store and Spark: rows ↔ DataFrame, and a snapshot refreshed on an interval."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from lakehouse.policy.build import POLICY_COLUMNS, POLICY_SCHEMA
from lakehouse.policy.store import PolicyRow, PolicyStore

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def policy_frame(spark: SparkSession, rows: Iterable[PolicyRow]) -> DataFrame:
    """The rows as a policy DataFrame (the schema `build_policy` gives)."""
    data = [(r.patient_id, r.device_id, r.allow_enhanced_analytics, r.policy_date) for r in rows]
    return spark.createDataFrame(data, POLICY_SCHEMA)


def policy_rows(policy: DataFrame) -> Iterator[PolicyRow]:
    """The rows of a policy DataFrame, streamed to the driver (to write them to a store)."""
    for row in policy.select(*POLICY_COLUMNS).toLocalIterator():
        yield PolicyRow(row.patient_id, row.device_id, bool(row.allow_enhanced_analytics), row.policy_date)


def fingerprint(rows: list[PolicyRow]) -> str:
    """Names the content of a policy (its rows in the store's order): equal policies, equal fingerprints."""
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def fingerprint_of(frame: DataFrame) -> str | None:
    """The fingerprint of the rows a `PolicySnapshot.current` frame was made of.

    Not the snapshot's `fingerprint` read later: tables share one snapshot, and another table's refresh between
    a table's `current` and its sync would stamp the sync with a policy it did not apply (that table then never
    syncs the newer one).
    """
    return getattr(frame, "_lakehouse_policy_fingerprint", None)


class PolicySnapshot:
    """The policy DataFrame, read again from the store once it is older than `refresh_seconds`.

    Call `current(spark)` at the start of each micro-batch: between refreshes it returns the same
    cached DataFrame, so the store is read once per interval, not once per batch. A failed read
    raises (the batch fails and is retried): a stale policy is never served in silence.
    `clock` (seconds, monotonic) is injectable for tests.
    """

    def __init__(
        self, store: PolicyStore, *, refresh_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be positive, got {refresh_seconds}")
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._frame: DataFrame | None = None
        self._loaded_at = 0.0
        self.rows = 0
        self.loads = 0
        self.fingerprint: str | None = None  # of the rows last loaded: tells a changed policy from the same one

    def current(self, spark: SparkSession) -> DataFrame:
        """The policy DataFrame, refreshed first when older than the interval."""
        with self._lock:  # tables run side by side share one snapshot: one of them refreshes it
            now = self._clock()
            if self._frame is None or now - self._loaded_at >= self._refresh_seconds:
                rows = self._store.snapshot()
                frame = policy_frame(spark, rows).cache()
                if self._frame is not None:
                    self._frame.unpersist()
                self._frame, self._loaded_at = frame, now
                self.rows, self.loads = len(rows), self.loads + 1
                self.fingerprint = fingerprint(rows)
                frame._lakehouse_policy_fingerprint = self.fingerprint  # travels with the frame: see fingerprint_of
            return self._frame

    def stored_fingerprint(self) -> str:
        """The fingerprint of the rows in the store now (one read of the store, no Spark)."""
        return fingerprint(self._store.snapshot())

    def invalidate(self) -> None:
        """Read the store again at the next `current` call (e.g. right after a policy build)."""
        with self._lock:  # not lost to a refresh in flight, which read the store before the build
            self._loaded_at = float("-inf")
