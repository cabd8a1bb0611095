"""A small DMS source table used across the Spark tests, and helpers to run and read it."""

from __future__ import annotations

import copy
from pathlib import Path

from pyspark.sql import functions as F

from lakehouse.apply.batch import apply_batch
from lakehouse.config import Config
from lakehouse.metrics import BatchMetrics
from lakehouse.runner import TableRun, run_once
from lakehouse.tables import ensure_tables, table_paths
from tests.conftest import make_config, write_dms_csv

# DMS layout after Op: TimestampColumnName, the table's columns, $AR_H_CHANGE_SEQ, before-image key.
PEOPLE = {
    "primary_key": ["id"],
    "source": {
        "kind": "dms",
        "format": "csv",
        "timestamp_column": "ts",
        "change_seq_column": "seq",
        "before_image_prefix": "BI_",
        "columns": {
            "ts": "string",
            "id": "bigint",
            "name": "string",
            "score": "double",
            "seq": "string",
            "BI_id": "bigint",
        },
    },
}


def people_config(root: Path, **source: object) -> Config:
    table = copy.deepcopy(PEOPLE)
    table["source"].update(source)
    return make_config(root, {"people": table})


def seq(n: int, restart: int = 0) -> str:
    """A 35-digit DMS change-seq (restart shifts the counter like a DMS task restart does)."""
    return f"{20260301000000000000000000000000000 + n - restart:035d}"


def land(config: Config, name: str, records: list[list[str]], table: str = "people", gz: bool = False) -> Path:
    return write_dms_csv(Path(config.tables[table].source.path), name, records, gz=gz)


def run(spark, config: Config) -> TableRun:
    (result,) = run_once(spark, config)
    assert result.ok, result.error
    return result


def read(spark, config: Config, kind: str, table: str = "people"):
    paths = table_paths(config, config.tables[table])
    return spark.read.format("delta").load(getattr(paths, kind))


def comparable(df, ignore: tuple[str, ...] = ()):
    """All columns but `ignore`, sorted, with file paths cut to their names (two lakes land in different folders); in
    history's `_repeats` too, without their `_batch_id` when it is ignored."""
    columns = [c for c in sorted(df.columns) if c not in ignore]

    def repeat(r):
        r = r.withField("_source_file", F.regexp_extract(r["_source_file"], r"([^/]*)$", 1))
        return r.dropFields("_batch_id") if "_batch_id" in ignore else r

    return df.select(
        *[
            F.regexp_extract(c, r"([^/]*)$", 1).alias(c)
            if c.endswith("source_file")
            else F.transform(c, repeat).alias(c)
            if c == "_repeats"
            else F.col(c)
            for c in columns
        ]
    )


def assert_same_tables(spark, actual: Config, expected: Config, table: str = "people") -> None:
    """History and latest of two lakes equal but for the batch ids they wrote (in history's `_repeats` too)."""
    from chispa import assert_df_equality

    for kind in ("history", "latest"):
        assert_df_equality(
            comparable(read(spark, actual, kind, table), ignore=("_batch_id",)),
            comparable(read(spark, expected, kind, table), ignore=("_batch_id",)),
            ignore_row_order=True,
        )


def apply_landed(spark, config: Config, batch_id: int = 0, table: str = "people") -> BatchMetrics:
    """Apply every file landed for `table` as one batch, without a stream (a test's batch id; the ledger tells
    the files already applied by an earlier batch)."""
    table_config = config.tables[table]
    paths = table_paths(config, table_config)
    ensure_tables(spark, table_config, paths)
    files = spark.read.format("binaryFile").load(table_config.source.path)
    return apply_batch(files, batch_id, table=table_config, paths=paths)


def storage_unavailable(*args, **kwargs):
    """Stands in for a write that fails (monkeypatched over it)."""
    raise OSError("storage unavailable")
