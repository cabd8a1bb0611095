"""Backpressure: files that land while a batch runs are taken together by the next one (up to the cap), and every
batch reports its lag, the age of its oldest file when it starts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lakehouse.runner import TableRun, start_query
from tests.conftest import make_config, write_dms_csv

COLUMNS = {"ts": "string", "id": "int", "v": "string"}


def _land(folder: Path, staging: Path, names: list[str], age_seconds: float) -> None:
    """Write the files beside the landing folder, age them, then rename them in: they appear at once."""
    for name in names:
        n = int(name.split(".")[0])
        rows = [["I", "2026-03-01 10:00:00", str(2 * n), "a"], ["I", "2026-03-01 10:00:01", str(2 * n + 1), "b"]]
        path = write_dms_csv(staging, name, rows)
        then = time.time() - age_seconds
        os.utime(path, (then, then))
    for name in names:
        os.replace(staging / name, folder / name)


def test_files_landing_during_a_batch_are_taken_by_the_next_up_to_max_files_per_trigger(spark, workdir):
    source = {"kind": "dms", "columns": COLUMNS, "timestamp_column": "ts", "max_files_per_trigger": 4}
    config = make_config(workdir, {"t": {"primary_key": ["id"], "source": source}})
    table = config.tables["t"]
    landing, staging = Path(table.source.path), workdir / "staging"
    landing.mkdir(parents=True)
    first = time.time()
    _land(landing, staging, ["0.csv"], age_seconds=300)
    run = TableRun("t")
    query = start_query(spark, config, table, run, trigger={"processingTime": "1 second"})
    try:
        offsets = Path(config.paths.checkpoints) / "t" / "offsets" / "0"
        while not offsets.exists():  # batch 0 has listed its file and is running
            assert query.isActive, query.exception()
            time.sleep(0.05)
        landed = time.time()
        _land(landing, staging, [f"{n}.csv" for n in range(1, 7)], age_seconds=600)
        assert not run.batches, "batch 0 ended before the files landed: the test could not pile them up"
        query.processAllAvailable()
    finally:
        query.stop()
    assert [b.files for b in run.batches] == [1, 4, 2]
    assert all(b.reconciles for b in run.batches)
    # The lag is the age of the batch's oldest file when the batch starts: at least the age it landed with.
    lags, now = [b.lag_seconds for b in run.batches], time.time()
    assert 300 <= lags[0] <= 300 + (now - first)
    assert 600 <= lags[1] <= lags[2] <= 600 + (now - landed)
