"""Dedup within a micro-batch: one change per (key, sequence).

Two rows of one key with the same sequence are either the same change delivered twice (same op and
values: one is kept, the others are counted as duplicates) or an error of the input (different op or
values: all of them are quarantined as `duplicate_sequence`, never resolved at random).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def mark_duplicates(changes: DataFrame, key: list[str], values: list[str]) -> DataFrame:
    """Add `_duplicate` (bool) and quarantine sequence ties through `_reason` / `_detail`."""
    valid = F.col("_reason").isNull()
    # Compared as a struct (field by field, NULL equal to NULL): exact, and no per-row JSON or hashing.
    content = F.struct(F.col("_op"), *[F.col(f"`{c}`") for c in values])
    group = Window.partitionBy(*[F.col(f"`{k}`") for k in key], F.col("_sequence"), valid)
    # The row kept is the first by file name, then path: the file the file ledger applies when two files of a
    # batch have the same content (the other is a replay), whatever folders (DMS date partitions) they are in.
    name = F.regexp_extract(F.col("_source_file"), r"([^/]*)$", 1)
    ordered = group.orderBy(name, F.col("_source_file"), F.col("_source_row"))
    marked = changes.withColumns(
        {
            "_conflict": F.min(content).over(group) != F.max(content).over(group),
            "_rank": F.row_number().over(ordered),
        }
    )
    tie = valid & F.col("_conflict")
    return marked.select(
        *[c for c in changes.columns if c not in ("_reason", "_detail")],
        F.when(tie, F.lit("duplicate_sequence")).otherwise(F.col("_reason")).alias("_reason"),
        F.when(
            tie,
            F.concat(F.lit("another row of this key has the same sequence and different values: "), F.col("_sequence")),
        )
        .otherwise(F.col("_detail"))
        .alias("_detail"),
        (valid & ~tie & (F.col("_rank") > 1)).alias("_duplicate"),
    )
