"""DMS change files as a Structured Streaming source: one file-stream query per table.

The stream reads whole files (`binaryFile`), so a micro-batch is a set of complete files and a
replay after a crash sees exactly the same files (the checkpoint's offset log names them).
Parsing happens on the executors with `dms_files.parse_file`. A file's modification time is never
used: it changes when files are copied or restored (the time of a change comes from the data or the
DMS file name, see `changes.normalize`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.config import DmsSource
from lakehouse.sources.dms_files import output_columns, parse_file

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

CHUNK_ROWS = 20_000
BINARY_FILE_SCHEMA = "path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY"


def read_dms_stream(
    spark: SparkSession, source: DmsSource, *, path: str | None = None, options: dict[str, str] | None = None
) -> DataFrame:
    """A streaming DataFrame of the files landing in `source.path` (path, modificationTime, content).

    `path` replaces `source.path` for this query (a run-once job's glob of the closed folders, see handoff).
    `options`: more file source options (`StreamSettings.source_options`: maxFileAge, latestFirst).
    """
    path = path or source.path
    if "://" not in path and not any(c in path for c in "*?[{"):
        Path(path).mkdir(parents=True, exist_ok=True)  # a local landing area may not exist yet
    return (
        spark.readStream.format("binaryFile")
        .schema(BINARY_FILE_SCHEMA)
        .option("recursiveFileLookup", "true")  # DMS DatePartitionEnabled writes into dated sub-folders
        .option("maxFilesPerTrigger", source.max_files_per_trigger)
        .options(**(options or {}))
        .load(path)
    )


def parsed_schema(source: DmsSource) -> StructType:
    """Schema of `parse_files`' output: lineage, Op and every layout column as a string."""
    from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

    fields = [
        StructField("_file", StringType()),
        StructField("_row", LongType()),
        StructField("_is_load", BooleanType()),
    ]
    fields += [StructField(c, StringType()) for c in output_columns(source)[3:]]
    return StructType(fields)


def parse_files(files: DataFrame, source: DmsSource) -> DataFrame:
    """Parse a DataFrame of DMS files (binaryFile rows) into one row per record.

    Arrow batches in and out (no pandas in between): 1M rows of a 100 MB file went from 7.1-7.5 s to 5.4-5.5 s.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = parsed_schema(source)
    arrow_schema = to_arrow_schema(schema)

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        rows: list[dict] = []
        for batch in batches:
            paths, contents = batch.column("path"), batch.column("content")
            for i in range(batch.num_rows):  # one file's bytes as a Python object at a time
                for row in parse_file(paths[i].as_py(), contents[i].as_py(), source):
                    rows.append(row)
                    if len(rows) >= CHUNK_ROWS:
                        yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)
                        rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return files.select("path", "content").mapInArrow(parse, schema)
