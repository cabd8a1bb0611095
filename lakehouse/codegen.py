"""Spark's generated code where it pays, its interpreted expressions where compiling costs more than running.

Spark compiles every plan's expressions to Java (whole-stage code generation, Janino) before it runs them. A
batch's plans carry its own literals (its key ranges, its batch id), so each batch compiles anew: on a one-row
batch into a small table the compiling is a large part of the batch, while the rows take no time either way.
Interpreted, the same expressions give the same results and cost more per row, which matters only when there
are many rows: a large batch, or a MERGE rewriting large files. So a micro-batch runs interpreted only when its
files are small and so are the tables it writes; anything else runs as Spark always does.

The settings are those of the streaming query's own session (Structured Streaming gives each query a copy of
the session), so queries side by side each keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lakehouse.delta_log import committed_bytes

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A batch whose files hold up to this many bytes as landed (a few thousand CSV records; gzip may hold 10x more)...
SMALL_BATCH_BYTES = 256 << 10
# ...into tables of up to this many bytes each (a MERGE rewrites whole files of the table).
SMALL_TABLE_BYTES = 16 << 20
INTERPRETED = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


def is_small(spark: SparkSession, batch_bytes: int, tables: list[str]) -> bool:
    """Whether a batch of `batch_bytes` into the Delta tables at `tables` is small enough to run interpreted.

    A table's size is that of the version this process last committed or read (no Spark job); where it is not
    known, the table counts as large."""
    if batch_bytes > SMALL_BATCH_BYTES:
        return False
    sizes = [committed_bytes(spark, path) for path in tables]
    return all(size is not None and size <= SMALL_TABLE_BYTES for size in sizes)


@contextmanager
def interpreted(spark: SparkSession, when: bool) -> Iterator[None]:
    """Within the block, `spark`'s expressions are interpreted (if `when`); the session's settings after it."""
    if not when:
        yield
        return
    before = {key: spark.conf.get(key, None) for key in INTERPRETED}
    for key, value in INTERPRETED.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
