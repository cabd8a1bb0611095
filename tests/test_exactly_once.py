"""Exactly once: a replayed micro-batch changes nothing twice, across real process kills.

The crash test runs `lakehouse run` in its own process (its own JVM) and kills it with SIGKILL at
several points of a multi-batch run — after the quarantine write, between the history and latest
commits, after latest but before the checkpoint records the batch, and from outside at an arbitrary
moment — restarting it each time. Every table must then equal the tables of a clean run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.apply.batch import apply_batch
from lakehouse.tables import ensure_tables, table_paths
from tests.dms_tables import PEOPLE, apply_landed, comparable, land, people_config, read, run, seq, storage_unavailable

T = "2026-03-01 "
FILES = {
    "LOAD00000001.csv": [[T + "08:00:00", str(i), f"P{i}", str(i), "", ""] for i in range(1, 30)],
    "20260301-090000000.csv": [["U", T + "09:00:00", str(i), f"P{i}b", str(i), seq(i), str(i)] for i in range(1, 10)]
    + [["X", T + "09:00:00", "99", "bad op", "1", seq(99), ""], ["D", T + "09:00:01", "3", "", "", seq(50), "3"]],
    "20260301-100000000.csv": [
        ["U", T + "08:30:00", "1", "late", "1", seq(0), "1"],
        ["U", T + "10:00:00", "40", "moved", "4", seq(60), "4"],
    ]
    + [["I", T + "10:00:01", str(i), f"N{i}", "", seq(100 + i), ""] for i in range(100, 120)],
    "20260301-110000000.csv": [["D", T + "11:00:00", str(i), "", "", seq(200 + i), str(i)] for i in range(100, 105)]
    + [["U", T + "11:00:01", "3", "after delete", "3", seq(1), "3"]],
}


def land_all(config) -> None:
    for i, (name, records) in enumerate(FILES.items()):
        path = land(config, name, records)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))


def tables(spark, config) -> dict:
    return {kind: read(spark, config, kind) for kind in ("history", "latest", "quarantine")}


def assert_same_tables(spark, actual_config, expected_config) -> None:
    actual, expected = tables(spark, actual_config), tables(spark, expected_config)
    for kind in actual:
        assert_df_equality(comparable(actual[kind]), comparable(expected[kind]), ignore_row_order=True)


def test_replaying_a_batch_changes_nothing(spark, tmp_path):
    config = people_config(tmp_path)
    land_all(config)
    table = config.tables["people"]
    paths = table_paths(config, table)
    ensure_tables(spark, table, paths)
    files = spark.read.format("binaryFile").load(table.source.path)
    first = apply_batch(files, 0, table=table, paths=paths)
    before = {k: v.localCheckpoint() for k, v in tables(spark, config).items()}
    again = apply_batch(files, 0, table=table, paths=paths)

    assert first.applied > 0 and again.applied == 0 and again.replayed == first.applied
    for kind, table_now in tables(spark, config).items():
        assert_df_equality(table_now, before[kind], ignore_row_order=True)


def test_the_keys_taken_with_a_small_batchs_first_counts_are_the_keys_the_separate_query_finds(
    spark, tmp_path, monkeypatch
):
    """A batch of few rows gets its distinct keys (the key ranges Delta prunes files by) from the job of its first
    counts instead of a job of their own: file by file, with a quarantined row, duplicates, a late change, a
    delete, a key change and a replayed batch, the separate query (`_batch_keys`, on the same rows) finds the same
    keys, and those keys reach the key ranges whichever way the batch took them (every other batch takes the
    query's). Equal keys make equal tables: one lake, not a second one."""
    from lakehouse.apply import batch

    seen: list[tuple[list, list]] = []  # per batch: (the keys of the first counts, the keys the query finds)
    ranged: list[list] = []
    real_counts, real_ranges = batch._first_counts, batch.key_ranges

    def both_ways(marked, table, replay, *, keys=False):
        assert keys, "a batch of a few rows takes its keys with its first counts"
        first = real_counts(marked, table, replay, keys=True)
        changes = marked.where(F.col("_reason").isNull() & ~replay & ~F.col("_duplicate"))  # the rows it applies
        seen.append((sorted(first["keys"]), batch._batch_keys(changes, table.primary_key[0], 0)))
        # Every other batch goes the other way: no keys with its counts, the engine's own separate query.
        return first if len(seen) % 2 == 1 else real_counts(marked, table, replay, keys=False)

    monkeypatch.setattr(batch, "_first_counts", both_ways)
    monkeypatch.setattr(batch, "key_ranges", lambda keys: ranged.append(keys) or real_ranges(keys))
    config = people_config(tmp_path / "counts")
    land_all(config)
    table = config.tables["people"]
    paths = table_paths(config, table)
    ensure_tables(spark, table, paths)
    for batch_id, name in enumerate([*FILES, next(iter(FILES))]):  # the last one a replay of batch 0
        files = spark.read.format("binaryFile").load(f"{table.source.path}/{name}")
        assert apply_batch(files, batch_id, table=table, paths=paths).reconciles

    assert len(seen) == len(FILES) + 1 and all(counted == queried for counted, queried in seen), seen
    assert seen[-1] == ([], [])  # the replay: nothing to apply
    assert ranged == [counted for counted, _ in seen[:-1]]
    assert 40 in seen[2][0] and 4 in seen[2][0]  # the key change: its old and new key
    assert 99 not in seen[1][0]  # the quarantined row's key


@pytest.mark.parametrize("failing", ["merge_history", "merge_latest"])
def test_one_write_failing_while_the_others_commit_converges_on_replay(spark, tmp_path, monkeypatch, failing):
    """A batch's writes run side by side, so either of history and latest may commit without the other."""
    from lakehouse.apply import batch

    clean, crashed = people_config(tmp_path / "clean"), people_config(tmp_path / "crashed")
    for config in (clean, crashed):
        land_all(config)
    apply_landed(spark, clean)

    with monkeypatch.context() as patched:
        patched.setattr(batch, failing, storage_unavailable)
        with pytest.raises(OSError, match="storage unavailable"):
            apply_landed(spark, crashed)
    committed = "latest" if failing == "merge_history" else "history"
    assert read(spark, crashed, committed).count() > 0
    assert read(spark, crashed, "history" if committed == "latest" else "latest").count() == 0

    replay = apply_landed(spark, crashed)
    assert replay.reconciles
    assert_same_tables(spark, crashed, clean)


def _lakehouse(config_file: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LAKEHOUSE_CRASH_AT", None)
    if crash_at:
        env["LAKEHOUSE_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "--config", str(config_file), "run", "--no-demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # its JVM, if the kill left one behind
    return proc.returncode, out


@pytest.mark.slow
def test_sigkill_at_any_point_then_restart_equals_a_clean_run(spark, tmp_path):
    clean = people_config(tmp_path / "clean", max_files_per_trigger=1)
    land_all(clean)
    run(spark, clean)

    crashed = people_config(tmp_path / "crashed", max_files_per_trigger=1)
    land_all(crashed)
    config_file = tmp_path / "crashed.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "environment": "local",
                "paths": crashed.paths.model_dump(),
                "tables": {
                    "people": {
                        **PEOPLE,
                        "source": {
                            **PEOPLE["source"],
                            "path": crashed.tables["people"].source.path,
                            "max_files_per_trigger": 1,
                        },
                    }
                },
            },
            sort_keys=False,
        )
    )
    for point in ("people:0:after_quarantine", "people:1:after_history", "people:2:after_latest"):
        code, out = _finish(_lakehouse(config_file, point))
        assert code == -signal.SIGKILL, out

    proc = _lakehouse(config_file)  # killed from outside as soon as it reports a batch
    for line in proc.stdout:  # type: ignore[union-attr]
        if '"event": "batch"' in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    _finish(proc)

    code, out = _finish(_lakehouse(config_file))
    assert code == 0, out
    assert_same_tables(spark, crashed, clean)
    shutil.rmtree(tmp_path, ignore_errors=True)


REPEATS = {
    # A late delete sorted before a delete already applied makes that one a repeat.
    "delete": (
        [["D", T + "10:00:00", "1", "", "", seq(2), "1"], ["I", T + "11:00:00", "1", "Ann", "11", seq(3), ""]],
        [["D", T + "09:00:00", "1", "", "", seq(1), "1"]],
        ["I", "D", "I"],
    ),
    # A late update equal to the current version after it: the late one becomes current, in latest too.
    "current update": (
        [["U", T + "10:00:00", "1", "Bob", "10", seq(2), "1"]],
        [["U", T + "09:00:00", "1", "Bob", "10", seq(1), "1"]],
        ["I", "U"],
    ),
}


# The delete case is `long` (~55 s): the privacy machine's late delete before a written delete keeps its repeat out
# (test_privacy_machine.py), and the update case keeps history failing last.
@pytest.mark.parametrize("case", [pytest.param("delete", marks=pytest.mark.long), "current update"])
def test_a_repeat_a_late_change_makes_is_removed_and_history_failing_last_converges_on_replay(
    spark, tmp_path, monkeypatch, case
):
    """A late change sorted right before an equal one already applied makes that one a repeat: it leaves history, as
    one batch would have made it no version (a current one's place in latest goes to the late one). History is
    written last in such a batch, so a failure there leaves the repeat for the replay to find (the zone's rows
    follow the plan)."""
    from lakehouse.apply import batch

    load = [[T + "08:00:00", "1", "Ann", "10", "", ""]]
    written, late, ops = REPEATS[case]
    clean, crashed = people_config(tmp_path / "clean"), people_config(tmp_path / "crashed")
    for config in (clean, crashed):
        land(config, "LOAD00000001.csv", load)
        land(config, "20260301-100000000.csv", written)
        apply_landed(spark, config, 0)
        land(config, "20260301-120000000.csv", late)
    first = apply_landed(spark, clean, 1)
    assert (first.repeats_removed, first.late) == (1, 1)
    assert [r._op for r in read(spark, clean, "history").orderBy("_sequence").collect()] == ops

    with monkeypatch.context() as patched:
        patched.setattr(batch, "merge_history", storage_unavailable)
        with pytest.raises(OSError, match="storage unavailable"):
            apply_landed(spark, crashed, 1)
    replay = apply_landed(spark, crashed, 1)
    assert (replay.reconciles, replay.repeats_removed) == (True, 1)
    assert_same_tables(spark, crashed, clean)

    once = people_config(tmp_path / "once")  # the same files in one batch
    for name, records in (("LOAD00000001.csv", load), ("20260301-100000000.csv", written)):
        land(once, name, records)
    land(once, "20260301-120000000.csv", late)
    apply_landed(spark, once, 0)
    for kind in ("history", "latest"):
        assert_df_equality(
            comparable(read(spark, clean, kind), ignore=("_batch_id",)),
            comparable(read(spark, once, kind), ignore=("_batch_id",)),
            ignore_row_order=True,
        )
