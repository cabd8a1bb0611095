"""Shared fixtures: one SparkSession for the whole run, and DMS landing folders laid out like DMS does."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.config import Config

TESTS = Path(__file__).parent

# Servers the integration tests start: a real PostgreSQL, moto for the AWS APIs, Trino for the Athena lane.
pytest_plugins = ["tests.pg_server", "tests.moto_server", "tests.trino_server"]


# The JVMs of the `lakehouse` processes tests start run Spark's expressions interpreted and only the JVM's first
# JIT tier: a short-lived JVM on small tables spends more time compiling (Janino for each plan's generated code,
# C2 for hot methods) than running the code (a cold `lakehouse run` of four one-file batches 63-69 s instead of
# 90-96 s; the SIGKILL test 619 -> 322 s in CI). The shared sessions keep Spark's and Java's defaults: the one
# full run with the settings in them too was slower (privacy promises 1.3-2x; noise not ruled out). Measured again on
# 2026-12-07 (ten test files, two test processes, both cores busy throughout): defaults 690 s, first tier (256 MB) and
# interpreted 713 s, interpreted with the full JIT 699 s. One test alone spends two thirds of its JVM's CPU in the JIT
# (C2) and a third less CPU with these settings, but a test process lives the whole run, where C2's code pays back.
# With the first tier only the JVM reserves 48 MB for compiled code, full after ~45 s of a run (the JIT then stops and
# the rest runs interpreted): the started processes reserve 256 MB, as a full JIT does by default.
# LAKEHOUSE_TEST_CODEGEN=1 keeps the defaults in the started processes too (the Spark 4 lane in CI does).
TEST_JVM = [
    *("--conf", "spark.sql.codegen.factoryMode=NO_CODEGEN", "--conf", "spark.sql.codegen.wholeStage=false"),
    *("--conf", "spark.driver.defaultJavaOptions=-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"),
]


def started_jvm_conf() -> list[str]:
    """The spark-submit settings of the Spark processes tests start (none under LAKEHOUSE_TEST_CODEGEN=1)."""
    return [] if os.environ.get("LAKEHOUSE_TEST_CODEGEN") == "1" else TEST_JVM


def pytest_configure(config: pytest.Config) -> None:
    """Before test processes start (pytest-xdist): the Delta jars and the class archive made once, not by each
    process at once."""
    if not hasattr(config, "workerinput"):
        from lakehouse.spark_local import class_archive, delta_jars, make_class_archive

        delta_jars()
        if not class_archive().is_file():
            print(f"\nmaking the JVM class archive {class_archive()} (once per machine, about a minute)", flush=True)
            make_class_archive()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test files longest first (`tests/durations.json`, seconds per file of a full run), so that the two test
    processes end together: pytest-xdist hands out whole files (`--dist loadfile`) in this order
    (`--no-loadscope-reorder`), and a long file handed out last would run alone at the end. A file not listed yet
    counts as a minute."""
    durations = TESTS / "durations.json"  # written by tests/record_durations.py
    seconds = json.loads(durations.read_text()) if durations.is_file() else {}
    cost = {name: seconds.get(name, 60.0) for name in {item.nodeid.split("::")[0] for item in items}}
    items.sort(key=lambda item: -cost[item.nodeid.split("::")[0]])  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lakehouse.session import build_spark

    session = build_spark(
        None,
        app_name="lakehouse-tests",
        local_dir=str(tmp_path_factory.mktemp("spark-local")),
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            # The tests' tables are small: a 3 GB heap leaves room for the CLI runs that tests start beside it.
            "spark.driver.memory": "3g",
            "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2",
            # One JVM runs ~20,000 stages in a full run: keep only a few of them in the status store
            # (it keeps them even with the UI off; with the defaults the heap filled and the run crawled).
            "spark.ui.retainedJobs": "50",
            "spark.ui.retainedStages": "50",
            "spark.ui.retainedTasks": "1000",
            "spark.sql.ui.retainedExecutions": "20",
            "spark.sql.streaming.ui.retainedQueries": "20",
            "spark.sql.streaming.numRecentProgressUpdates": "10",
        },
    )
    if started_jvm_conf():  # for the processes tests start from now on
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", shlex.join([*started_jvm_conf(), "pyspark-shell"]))
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lake_templates(spark, tmp_path_factory):
    """The privacy tests' lakes that several tests of a module start from (tests/privacy_lake.py: LakeTemplates)."""
    from tests.privacy_lake import LakeTemplates

    return LakeTemplates(spark, tmp_path_factory.mktemp("lake-templates"))


@pytest.fixture(autouse=True, scope="module")
def _drop_cached_tables() -> Iterator[None]:
    """After each module, drop what Spark and Delta keep of its tables (every module makes new ones).

    Delta caches every table's log and snapshot state it has read for an hour: over a full run that is
    hundreds of tables nobody reads again, enough to fill the shared session's heap.
    """
    yield
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    context = SparkContext._active_spark_context
    if context is None:
        return
    context._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    session = SparkSession.getActiveSession()
    if session is not None:
        session.catalog.clearCache()


def write_dms_csv(folder: Path, name: str, records: list[list[str]], *, gz: bool = False) -> Path:
    """Write records as DMS does: RFC 4180, minimal quoting, '\\n' line ends, UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    data = out.getvalue().encode("utf-8")
    path = folder / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_config(root: Path, tables: dict[str, dict]) -> Config:
    """A local Config whose tables land under root/landing/<table> and write under root/lake."""
    for name, table in tables.items():
        table.setdefault("source", {}).setdefault("path", str(root / "landing" / name))
    return Config.model_validate(
        {
            "environment": "local",
            "paths": {
                "landing": str(root / "landing"),
                "lake": str(root / "lake"),
                "checkpoints": str(root / "checkpoints"),
            },
            "tables": tables,
        }
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
