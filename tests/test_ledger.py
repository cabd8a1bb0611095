"""The file ledger after random sequences of deliveries, re-deliveries and batches replayed after a crash.

The promise: each content is recorded once, with the first (batch, file) that applied it; a content seen
before is a replay (under any name, in any later batch, or twice in one batch); a batch replayed by the
stream after a crash finds its own entries and applies its files again, without a second entry.
The real `classify_files` and `record_files` run on a real Delta ledger, and a streaming query's
`LedgerIndex` (kept across its batches, new after a crash restarts it) classifies every batch as the
ledger itself does.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lakehouse.apply.ledger import BatchFiles, LedgerIndex, classify_files, record_files
from lakehouse.tables import LEDGER_DDL, schema_of

CONTENTS = ["a", "b", "c", "d"]


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def new_ledger(spark, path: str) -> None:
    from delta.tables import DeltaTable

    DeltaTable.createIfNotExists(spark).location(path).addColumns(schema_of(spark, LEDGER_DDL)).execute()


def ledger_rows(spark, path: str) -> list[tuple[str, str, int, int]]:
    rows = spark.read.format("delta").load(path).collect()
    return sorted((r.content_sha256, r.source_file, r.batch_id, r.rows) for r in rows)


class LedgerMachine(RuleBasedStateMachine):
    """A model of what the ledger must hold next to the real one."""

    spark = None
    root = None
    lakes = itertools.count()

    @initialize()
    def start(self) -> None:
        self.path = f"{self.root}/ledger-{next(self.lakes)}"
        new_ledger(self.spark, self.path)
        self.batch_id = 0
        self.names = itertools.count()
        self.first: dict[str, tuple[str, int]] = {}  # digest -> (file, batch) of its first delivery
        self.last: tuple[dict[str, tuple[str, int]], int] | None = None
        self.pending: tuple[dict[str, tuple[str, int]], int] | None = None  # classified, not recorded (a crash)
        self.index = LedgerIndex(self.path)  # the running query's

    def _apply(self, files: dict[str, tuple[str, int]], batch_id: int, *, crash_before_record: bool) -> BatchFiles:
        result = classify_files(self.spark, self.path, files, batch_id, self.index)
        assert result == classify_files(self.spark, self.path, files, batch_id)  # the index changes no answer
        expected_applied = set()
        seen_in_batch: set[str] = set()
        for file in sorted(files, key=lambda f: f.rsplit("/", 1)[-1]):
            content = files[file][0]
            first = self.first.get(content)
            if (first is None or first == (file, batch_id)) and content not in seen_in_batch:
                expected_applied.add(file)
                seen_in_batch.add(content)
        assert set(result.applied) == expected_applied, (files, batch_id, self.first)
        assert set(result.replayed) == set(files) - expected_applied
        if crash_before_record:
            self.pending = (files, batch_id)
            return result
        record_files(self.spark, self.path, result, batch_id)
        self.index.add([d for d, _rows in result.applied.values()])  # as apply_batch does once its writes commit
        for file in result.applied:
            self.first.setdefault(files[file][0], (file, batch_id))
        self.pending = None
        self.last = (files, batch_id)
        return result

    @precondition(lambda self: self.pending is None)  # after a crash the stream replays the batch first
    @rule(contents=st.lists(st.sampled_from(CONTENTS), min_size=1, max_size=3), crash=st.booleans())
    def deliver(self, contents: list[str], crash: bool) -> None:
        """A new batch of files (fresh names; a content may repeat one applied before, or one in the batch)."""
        files = {f"s3://landing/t/{next(self.names):05d}.csv": (digest(c), 1) for c in contents}
        self.batch_id += 1
        self._apply(files, self.batch_id, crash_before_record=crash)

    @rule()
    def replay_after_a_crash(self) -> None:
        """The stream runs the last batch again with the same files, whether or not it had recorded them."""
        again = self.pending or self.last
        if again is None:
            return
        files, batch_id = again
        self.index = LedgerIndex(self.path)  # the crash ended the query; the restarted one reads the ledger again
        self._apply(files, batch_id, crash_before_record=False)

    @invariant()
    def each_content_once_with_its_first_delivery(self) -> None:
        if not hasattr(self, "path"):
            return
        expected = sorted((d, file, batch, 1) for d, (file, batch) in self.first.items())
        assert ledger_rows(self.spark, self.path) == expected


@pytest.mark.slow
def test_the_ledger_holds_each_content_once_after_any_sequence(spark, tmp_path):
    LedgerMachine.spark, LedgerMachine.root = spark, str(tmp_path)
    machine = LedgerMachine.TestCase
    machine.settings = settings(
        max_examples=4, stateful_step_count=4, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine().runTest()


def test_a_batch_replayed_after_its_ledger_append_does_not_record_its_files_twice(spark, tmp_path):
    """Found as a hazard of appending instead of merging: the crash falls after the ledger's commit."""
    path = str(tmp_path / "ledger")
    new_ledger(spark, path)
    files = {"s3://landing/t/1.csv": (digest("a"), 4), "s3://landing/t/2.csv": (digest("a"), 4)}
    first = classify_files(spark, path, files, 7)
    record_files(spark, path, first, 7)
    again = classify_files(spark, path, files, 7)
    assert (set(again.applied), set(again.replayed), again.recorded) == (
        {"s3://landing/t/1.csv"},
        {"s3://landing/t/2.csv"},
        frozenset({"s3://landing/t/1.csv"}),
    )
    record_files(spark, path, again, 7)
    assert ledger_rows(spark, path) == [(digest("a"), "s3://landing/t/1.csv", 7, 4)]
    later = classify_files(spark, path, {"s3://landing/t/3.csv": (digest("a"), 4)}, 8)
    assert later.replayed == {"s3://landing/t/3.csv": "batch 7, 1.csv"} and not later.applied


def test_a_query_index_tells_new_files_without_reading_the_ledger_and_replays_by_reading_it(spark, tmp_path):
    path = str(tmp_path / "ledger")
    new_ledger(spark, path)
    index = LedgerIndex(path)
    first = classify_files(spark, path, {"s3://landing/t/1.csv": (digest("a"), 2)}, 1, index)
    record_files(spark, path, first, 1)
    index.add([digest("a")])
    copy = f"{tmp_path}/ledger-copy"
    shutil.copytree(path, copy)
    shutil.rmtree(path)  # a read of the ledger now fails: the next batch of new files must not read it
    fresh = classify_files(spark, path, {"s3://landing/t/2.csv": (digest("b"), 3)}, 2, index)
    assert set(fresh.applied) == {"s3://landing/t/2.csv"} and not fresh.replayed
    shutil.move(copy, path)
    again = classify_files(spark, path, {"s3://landing/t/3.csv": (digest("a"), 2)}, 2, index)
    assert again.replayed == {"s3://landing/t/3.csv": "batch 1, 1.csv"} and not again.applied


def test_a_few_rows_are_written_as_literals_with_create_dataframe_s_values(spark):
    """The ledger's append (and the logs' entries) go through `rows_frame`: the same rows and types as
    `createDataFrame`, without a Python worker (no RDD of pickled rows in the plan) up to MAX_LITERAL_ROWS."""
    from datetime import datetime

    from chispa import assert_df_equality

    from lakehouse.tables import MAX_LITERAL_ROWS, rows_frame

    ddl = f"{LEDGER_DDL}, at TIMESTAMP, note STRING"
    rows = [
        ("ab" * 32, "s3://landing/a.csv", 7, 3, datetime(2026, 3, 1, 12, 30, 1, 5), None),
        ("cd" * 32, "b", 8, 0, None, "x"),
    ]
    literal = rows_frame(spark, rows, ddl)
    assert_df_equality(literal, spark.createDataFrame(rows, ddl), ignore_nullable=True)
    plan = literal._jdf.queryExecution().optimizedPlan().toString()
    assert "LogicalRDD" not in plan and "ExistingRDD" not in plan, plan
    many = [(str(i), "f", i, 1) for i in range(MAX_LITERAL_ROWS + 1)]
    assert rows_frame(spark, many, LEDGER_DDL).count() == len(many)
    assert rows_frame(spark, [], LEDGER_DDL).schema == schema_of(spark, LEDGER_DDL)
