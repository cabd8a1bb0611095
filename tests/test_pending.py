"""`lakehouse.pending` reads Spark's own checkpoint: "nothing new" must be exactly when the real query finds nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lakehouse.config import DmsSource
from lakehouse.pending import Pending, expand_braces, landed_files, local_path, pending, table_version
from lakehouse.runner import run_once
from lakehouse.sources.dms import read_dms_stream
from tests.dms_tables import land, people_config, run, seq

COMPACT_EVERY = 2  # the file source compacts its log every 2 batches here, so compaction is exercised


@pytest.fixture
def compacting(spark):
    key = "spark.sql.streaming.fileSource.log.compactInterval"
    before = spark.conf.get(key)
    spark.conf.set(key, str(COMPACT_EVERY))
    yield spark
    spark.conf.set(key, before)


def drain(spark, folder: Path, checkpoint: Path, max_files: int = 2) -> list[list[str]]:
    """Run the engine's DMS file source to the end (availableNow); the files of each batch."""
    source = DmsSource.model_validate(
        {"path": str(folder), "columns": {"id": "bigint"}, "max_files_per_trigger": max_files}
    )
    batches: list[list[str]] = []
    (
        read_dms_stream(spark, source)
        .writeStream.foreachBatch(lambda df, _id: batches.append([r.path for r in df.select("path").collect()]))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )
    return batches


def interrupt_last_batch(checkpoint: Path) -> None:
    """The state a kill between planning a batch and committing it leaves: its offsets, no commit."""
    commits = sorted((p for p in (checkpoint / "commits").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    commits[-1].unlink()
    (checkpoint / "commits" / f".{commits[-1].name}.crc").unlink(missing_ok=True)


class PendingAgreesWithTheQuery(RuleBasedStateMachine):
    """Files land (visible, hidden, in sub-folders), queries run and get interrupted, in any order; before every
    run, `pending` must predict exactly whether the query takes a batch and how many new files it takes."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(self.tmp_factory.mktemp("pending"))
        self.folder, self.checkpoint = self.root / "landing", self.root / "checkpoint"
        self.folder.mkdir()
        self.count = 0

    spark = None
    tmp_factory = None

    @initialize()
    def first_run(self) -> None:
        assert pending(str(self.folder), str(self.checkpoint)) is None  # no checkpoint yet: cannot tell
        drain(self.spark, self.folder, self.checkpoint)

    @rule(where=st.sampled_from(["", "2026/03/01/"]), hidden=st.sampled_from(["", "_", "."]))
    def land_file(self, where: str, hidden: str) -> None:
        self.count += 1
        path = self.folder / f"{where}{hidden}{20260301000000000 + self.count}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"I,{self.count}\n")

    @rule()
    def land_a_file_still_being_copied(self) -> None:
        self.count += 1
        (self.folder / f"{self.count}.csv._COPYING_").write_text("I,1\n")

    @rule()
    def run_query(self) -> None:
        state = pending(str(self.folder), str(self.checkpoint))
        assert state is not None
        batches = drain(self.spark, self.folder, self.checkpoint)
        assert state.nothing_new == (not batches), (state, batches)
        if not state.unfinished:
            assert state.new_files == sum(len(b) for b in batches)

    @rule()
    def interrupt(self) -> None:
        if any(p.name.isdigit() for p in (self.checkpoint / "commits").iterdir()):
            interrupt_last_batch(self.checkpoint)

    @invariant()
    def answers_for_a_local_checkpoint(self) -> None:
        assert isinstance(pending(str(self.folder), str(self.checkpoint)), Pending)


def test_pending_agrees_with_the_real_file_source(compacting, tmp_path_factory):
    PendingAgreesWithTheQuery.spark = compacting
    PendingAgreesWithTheQuery.tmp_factory = tmp_path_factory
    machine = PendingAgreesWithTheQuery.TestCase
    machine.settings = settings(
        max_examples=4,
        stateful_step_count=6,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    machine().runTest()


def test_an_interrupted_batch_is_pending_until_replayed(compacting, tmp_path):
    folder, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    for n in range(5):
        land_file = folder / f"2026030100000000{n}.csv"
        land_file.parent.mkdir(parents=True, exist_ok=True)
        land_file.write_text(f"I,{n}\n")
    assert len(drain(compacting, folder, checkpoint)) == 3
    assert any(p.name.endswith(".compact") for p in (checkpoint / "sources" / "0").iterdir())
    assert pending(str(folder), str(checkpoint)) == Pending(new_files=0, unfinished=False)

    interrupt_last_batch(checkpoint)
    assert pending(str(folder), str(checkpoint)) == Pending(new_files=0, unfinished=True)
    assert len(drain(compacting, folder, checkpoint)) == 1  # the replay
    assert pending(str(folder), str(checkpoint)).nothing_new


def test_a_run_with_nothing_new_starts_no_query_and_says_so(spark, tmp_path):
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "1", "", ""]])
    assert run(spark, config).batches

    def no_spark():
        raise AssertionError("a run with nothing new must not need Spark")

    (idle,) = run_once(no_spark, config)
    assert idle.ok and not idle.batches and idle.notes == ["nothing new"]

    land(config, "20260301-090000000.csv", [["U", "2026-03-01 09:00:00", "1", "Ann B", "2", seq(1), "1"]])
    (busy,) = run_once(lambda: spark, config)
    assert busy.ok and busy.batches[0].updated == 1


def test_only_local_paths_are_answered():
    assert local_path("s3://bucket/landing") is None
    assert local_path("file:///tmp/a%20b") == Path("/tmp/a b")
    assert pending("s3://bucket/landing", "s3://bucket/checkpoints/t") is None
    assert table_version("s3://bucket/lake/t/latest") is None


def test_the_glob_filter_and_hidden_names_follow_spark(tmp_path):
    assert expand_braces("*.{zip,ZIP,json}") == ["*.zip", "*.ZIP", "*.json"]
    for name in ("a.zip", "b.JSON", "c.csv", "_d.zip", ".e.zip", "f.zip._COPYING_", "k=1/g.zip", "_tmp/h.zip"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = landed_files(tmp_path, glob="*.{zip,ZIP,json,JSON}")
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == ["a.zip", "b.JSON", "k=1/g.zip"]


def test_a_removed_checkpoint_cannot_be_told(spark, tmp_path):
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "1", "", ""]])
    run(spark, config)
    checkpoint = Path(config.paths.checkpoints) / "people"
    assert pending(config.tables["people"].source.path, str(checkpoint)).nothing_new
    shutil.rmtree(checkpoint)
    assert pending(config.tables["people"].source.path, str(checkpoint)) is None
