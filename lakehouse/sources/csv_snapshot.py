"""A full CSV snapshot with a header (the CMS PECOS Doctors and Clinicians file shape) → one table.

Header names are normalised to snake_case, values typed with try_cast, NPIs zero-padded to 10 digits
and checked with the NPI Luhn rule. Rows that cannot be applied keep their raw text and a reason:
invalid_npi, null_key, type_mismatch, duplicate_key (a second, different valid row for a key already in the
snapshot; the first by content order is kept, so the pick does not depend on file order; a quarantined row of
the key takes no part), malformed_record (a record whose field count is not the header's, which Spark's reader
would pad with NULLs or cut to fit), invalid_encoding (bytes that are not text in the feed's `encoding`, which
the reader would replace; a U+FFFD written in the file is taken for one too) and unterminated_record (the last
record of a file that does not end with a line break: a download cut inside it still reads with every field).
A quarantined row still holds its key: the snapshot diff does not delete that key's live row (of a malformed
record's key only the first column is trusted, of an unterminated one no column its last field may be cut in,
so it holds every live row with the values it has).

A file is refused whole (nothing applied) when a column the feed reads is missing from its header or named twice
(`csv_header`), when it is UTF-8 text and the feed's encoding a single-byte one (`csv_encoding`), when it has no
rows, when it is cut inside the first key column of its last record, and when a quoted last value ends in a carriage
return in a file with CRLF line ends (`line_end_options`).

Lines may end in LF, CRLF or a mix of both (pieces concatenated, a hand edit in Excel): every record reads the same,
and a quoted value keeps the line breaks the file has in it.
"""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING

from lakehouse.config import CsvSnapshotFeed, TableConfig
from lakehouse.errors import InputError
from lakehouse.sources.csv_encoding import LineEnds, file_encoding
from lakehouse.sources.csv_header import check_header_names, header_columns, spark_header
from lakehouse.sources.db_types import decimal_rounds
from lakehouse.sources.snapshot import LoadedSnapshot, date_from_path, file_name

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession

NPI_PREFIX = "80840"  # the card issuer prefix the NPI check digit is computed with (ISO 7812)
MALFORMED = "_malformed"  # Spark's corrupt-record column: the record's text when its field count is wrong
REPLACEMENT = "\ufffd"  # what the reader makes of bytes that are not text in the feed's encoding
UNTERMINATED = "_unterminated"  # true on the last record of a file that does not end with a line break
UNTERMINATED_DETAIL = (
    "the file does not end with a line break, so it may have been cut short inside its last record: that record "
    "is held (quarantined as unterminated_record), not applied, and its key keeps its current row"
)


def npi_is_valid(npi: str | None) -> bool:
    """True for a 10-digit NPI whose last digit is the Luhn check digit of 80840 + its first nine digits."""
    if npi is None or not re.fullmatch(r"[0-9]{10}", npi):
        return False
    digits = [int(d) for d in NPI_PREFIX + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the rightmost digit is doubled: the check digit follows it
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
    return (10 - total % 10) % 10 == int(npi[9])


def padded_npi(column: str) -> Column:
    """Trimmed and left-padded with zeros to 10 digits when it is all digits (leading zeros lost upstream)."""
    from pyspark.sql import functions as F

    value = F.trim(F.col(f"`{column}`"))
    return F.when(value.rlike(r"^[0-9]{1,10}$"), F.lpad(value, 10, "0")).otherwise(value)


def npi_valid(column: str) -> Column:
    """The Luhn rule of `npi_is_valid` as a Spark expression (no Python UDF)."""
    from pyspark.sql import functions as F

    d = f"cast(substr(concat('{NPI_PREFIX}', substr(`{column}`, 1, 9)), i, 1) AS INT)"
    term = f"CASE WHEN i % 2 = 0 THEN (CASE WHEN {d} * 2 > 9 THEN {d} * 2 - 9 ELSE {d} * 2 END) ELSE {d} END"
    total = f"aggregate(sequence(1, 14), 0, (acc, i) -> acc + {term})"  # position 14 is doubled, as in npi_is_valid
    check = F.expr(f"(10 - {total} % 10) % 10 = cast(substr(`{column}`, 10, 1) AS INT)")
    return F.col(f"`{column}`").rlike(r"^[0-9]{10}$") & F.coalesce(check, F.lit(False))


def _cast_failure(column: str, type_: str, cast: Column) -> Column:
    """Why column `column`'s value does not cast to `type_` (`cast` is its try_cast), or NULL.

    Spark's cast to a decimal rounds a value with more digits after the point than the scale: a type mismatch too.
    """
    from pyspark.sql import functions as F

    value = F.col(f"`{column}`")
    failure = F.when(value.isNotNull() & cast.isNull(), F.lit(f"column {column} is not a valid {type_}"))
    if type_ == "date":  # Spark's date cast keeps the day of '2024-01-02 10:30:00', '0044-03-15 BC', ...
        moment = F.try_to_timestamp(value)
        dropped = cast.isNotNull() & (moment.isNull() | (moment != cast.cast("timestamp")))
        after = "' has text after its day (a time of day, an era such as BC, a zone) that the type date would drop"
        return F.coalesce(failure, F.when(dropped, F.concat(F.lit(f"column {column}: '"), value, F.lit(after))))
    rounds = decimal_rounds(value, type_)
    if rounds is None:
        return failure
    rounded = F.concat(
        F.lit(f"column {column}: '"),
        value,
        F.lit(
            f"' has more digits after the point than its type {type_} holds, which would round it; widen the "
            "column's scale in the feed's `columns:`"
        ),
    )
    return F.coalesce(failure, F.when(rounds, rounded))


def typed_rows(
    raw: DataFrame, feed: CsvSnapshotFeed, table: TableConfig, *, cut_columns: list[str] | tuple[str, ...] = ()
) -> DataFrame:
    """Raw string columns → typed business columns plus `_reason`, `_detail`, `_raw` (pure).

    `cut_columns`: the columns the record marked `_unterminated` may be cut in; it keeps none of them.
    """
    from pyspark.sql import functions as F

    columns = feed.columns
    absent = {c: F.lit(None).cast("string") for c in feed.optional_columns if c not in raw.columns}  # NULL, said
    cleaned = raw.withColumns(absent).withColumns({c: padded_npi(c) for c in feed.npi_columns})
    cast = {c: (F.col(f"`{c}`") if t == "string" else F.expr(f"try_cast(`{c}` AS {t})")) for c, t in columns.items()}
    failures = [_cast_failure(c, t, cast[c]) for c, t in columns.items() if t != "string"]
    bad_npi = [
        F.when(
            F.col(f"`{c}`").isNotNull() & ~npi_valid(c),
            F.concat(F.lit(f"{c} '"), F.col(f"`{c}`"), F.lit("' fails the NPI check")),
        )
        for c in feed.npi_columns
    ]
    null_key = [
        F.when(F.col(f"`{k}`").isNull(), F.lit(f"primary key column {k} is empty"))
        for k in table.primary_key
        if k not in table.nullable_key
    ]
    malformed = F.col(MALFORMED).isNotNull() if MALFORMED in raw.columns else F.lit(False)
    unterminated = F.col(UNTERMINATED) if UNTERMINATED in raw.columns else F.lit(False)
    fields = [c for c in raw.columns if c not in (MALFORMED, UNTERMINATED)]
    header = len(fields)
    malformed_detail = F.when(
        malformed,
        F.lit(
            f"the record's field count is not the header's {header}: its values cannot be matched to their "
            "columns (an unquoted delimiter or quote in a value?); the key's current row is kept"
        ),
    )
    # The reader turns bytes that are not text in the feed's encoding into U+FFFD: a changed value, never data.
    replaced = [
        F.when(
            F.col(f"`{c}`").contains(REPLACEMENT),
            F.lit(
                f"column {c} has bytes that are not {feed.encoding} text (shown as {REPLACEMENT}); if the file is in "
                "another encoding, set the feed's `encoding` (e.g. windows-1252)"
            ),
        )
        for c in columns
    ]
    reason = F.coalesce(
        F.when(unterminated, F.lit("unterminated_record")),  # before malformed_record: a cut record is short
        F.when(malformed, F.lit("malformed_record")),
        *[F.when(x.isNotNull(), F.lit("invalid_encoding")) for x in replaced],
        *[F.when(x.isNotNull(), F.lit("null_key")) for x in null_key],
        *[F.when(x.isNotNull(), F.lit("invalid_npi")) for x in bad_npi],
        *[F.when(x.isNotNull(), F.lit("type_mismatch")) for x in failures],
    )
    cut = F.when(unterminated, F.lit(UNTERMINATED_DETAIL))
    detail = F.coalesce(cut, malformed_detail, *replaced, *null_key, *bad_npi, *failures)
    values = F.to_json(F.struct(*[F.col(f"`{c}`") for c in fields]))
    # A malformed record's fields may sit in the wrong columns: of its key only the first column is kept, a
    # file's leading field (a NULL key part of a quarantined row holds every value, see `snapshot_changes`).
    unsure = set(table.primary_key[1:])

    def kept(c: str) -> Column:
        value = F.when(~malformed, cast[c]) if c in unsure else cast[c]
        return F.when(~unterminated, value) if c in cut_columns else value

    return cleaned.select(
        *[kept(c).alias(c) for c in columns],
        reason.alias("_reason"),
        detail.alias("_detail"),
        F.when(malformed, F.col(MALFORMED)).when(reason.isNotNull(), values).alias("_raw"),
    )


def one_row_per_key(rows: DataFrame, key: list[str], columns: list[str]) -> DataFrame:
    """Mark repeats among the valid rows: the same row again → `_duplicate`; a different row for a key already
    seen → duplicate_key.

    The row kept for a key is the first by content, so the pick does not depend on the file's order. Rows already
    quarantined keep their reason and take no part: a valid row of their key applies (they would otherwise rank
    first and leave nothing kept, or, their bad value read as NULL, make a good row look like a repeat of theirs).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    content = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    valid = F.col("_reason").isNull()
    by_key = Window.partitionBy(*[F.col(f"`{k}`") for k in key], valid).orderBy("_content")
    ranked = rows.withColumn("_content", content).withColumns(
        {
            "_rank": F.when(valid, F.row_number().over(by_key)),
            "_first": F.when(valid, F.first("_content").over(by_key)),
        }
    )
    conflict = valid & (F.col("_rank") > 1) & (F.col("_content") != F.col("_first"))
    return ranked.select(
        *[F.col(f"`{c}`") for c in columns],
        F.when(conflict, F.lit("duplicate_key")).otherwise(F.col("_reason")).alias("_reason"),
        F.when(conflict, F.lit(f"another row of the snapshot has the same {key}; the first by content was kept"))
        .otherwise(F.col("_detail"))
        .alias("_detail"),
        F.when(conflict, F.col("_content")).otherwise(F.col("_raw")).alias("_raw"),
        (valid & (F.col("_rank") > 1) & ~conflict).alias("_duplicate"),
    )


def line_breaks(encoding: str) -> tuple[bytes, ...]:
    """The bytes a line feed or a carriage return is in `encoding` (both byte orders of UTF-16 and UTF-32, whose
    byte order only the file's BOM tells); an encoding Python does not know is taken as ASCII-compatible."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = "ascii"
    names = [f"{name}-le", f"{name}-be"] if name in ("utf-16", "utf-32") else [name]
    return tuple(c.encode(n) for n in names for c in "\n\r")


def ends_with_line_break(spark: SparkSession, path: str, encoding: str) -> bool:
    """True when the text of the file at `path` ends with a line feed or a carriage return (CRLF, LF or CR).

    Read through Hadoop's FileSystem as Spark reads the file (local, s3://): a plain file's last bytes only; a
    compressed one (.gz) is decompressed on the driver, twice: for its length, then for its last bytes.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(conf)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(hadoop_path)
    io_utils = jvm.org.apache.commons.io.IOUtils
    breaks = line_breaks(encoding)
    width = max(len(b) for b in breaks)
    if codec is None:
        stream = fs.open(hadoop_path)
        try:
            stream.seek(max(fs.getFileStatus(hadoop_path).getLen() - width, 0))
            tail = bytes(iter(stream.read, -1))
        finally:
            stream.close()
        return tail.endswith(breaks)
    stream = codec.createInputStream(fs.open(hadoop_path))
    try:
        size = io_utils.skip(stream, 2**63 - 1)
    finally:
        stream.close()
    stream = codec.createInputStream(fs.open(hadoop_path))
    try:
        io_utils.skipFully(stream, max(size - width, 0))
        tail = bytes(iter(stream.read, -1))
    finally:
        stream.close()
    return tail.endswith(breaks)


def hold_last_record(raw: DataFrame, table: TableConfig, name: str) -> tuple[DataFrame, list[str]]:
    """`raw` with `_unterminated` true on its last record, and the key columns that record's last field may be cut in.

    The cut may lie anywhere in the record's last field: the header's last column, or a short record's last value.
    The record holds its key by the key columns before it (of a malformed record, only the first: its fields may
    sit in the wrong columns); with none of them left, no key could be held and the file is refused.
    """
    from pyspark.sql import functions as F

    # A multi-line CSV file is read whole by one task, in order: the greatest id is the file's last record.
    positioned = raw.withColumn("_position", F.monotonically_increasing_id())
    last = positioned.orderBy(F.col("_position").desc()).first()
    fields = [c for c in raw.columns if c != MALFORMED]
    present = [i for i, c in enumerate(fields) if last[c] is not None]
    end = len(fields) - 1 if last[MALFORMED] is None else max(present, default=0)
    key = table.primary_key
    whole = [k for k in key if fields.index(k) < end and (last[MALFORMED] is None or k == key[0])]
    if all(last[k] is None for k in whole):
        raise InputError(
            f"snapshot {name} does not end with a line break, so it may have been cut short, and its last record "
            f"has no whole key column {key} to hold that key's row by (it would be deleted): the file is refused "
            "(nothing was written). Land the whole file; if the feed's files never end with a line break, set its "
            "require_final_newline: false.",
            table=table.name,
        )
    marked = positioned.withColumn(UNTERMINATED, F.col("_position") == last["_position"]).drop("_position")
    return marked, [k for k in key if k not in whole]


def line_end_options(ends: LineEnds, name: str, *, table: str) -> dict[str, str]:
    """The CSV reader's options for a file's line ends: lineSep LF for a file with line feeds, else none (the
    reader's own pick: one line, or old Mac CR line ends).

    Spark's reader (univocity) otherwise takes the line separator from the file's first line end, and a file that
    mixes LF and CRLF read wrong with nothing said: after a header ending in LF, each CRLF record kept a CR at the end
    of its last value; after a header ending in CRLF, the records ending in LF ran together into one; and taking
    CRLF, it turned a quoted value's CRLF into LF. With LF, a quoted value keeps its line breaks as written, and the
    CR of a CRLF is taken off the record's last field (`without_line_end_cr`). A quoted last value that ends in a CR
    reads just like such a field (the reader skips blanks after a closing quote): a file with CRLF and one is refused.
    """
    if ends.first_end == "\r":  # the reader's pick, as before: old Mac CR line ends
        return {}
    if ends.crlf and ends.cr_quote_line is not None:
        raise InputError(
            f"snapshot {name}, line {ends.cr_quote_line}: a quoted value at the end of its record ends with a "
            "carriage return, in a file with CRLF line ends; the CSV reader cannot tell that carriage return from a "
            "line end's, so the file is refused (nothing was written). Convert the file's line ends to LF (e.g. "
            "dos2unix: the value keeps its carriage return) or take the carriage return out of the value, then land "
            "the file again.",
            table=table,
        )
    return {"lineSep": "\n"} if ends.lf else {}


def without_line_end_cr(raw: DataFrame) -> DataFrame:
    """`raw` (read with lineSep LF) without the CR a CRLF line end leaves at the end of each record's last field: the
    last column's value, or a short record's last value (the columns after it NULL). A field that held only that CR
    is NULL, as an empty field is (pure)."""
    from pyspark.sql import functions as F

    fields = [c for c in raw.columns if c != MALFORMED]
    present = [F.when(F.col(f"`{c}`").isNotNull(), F.lit(i)) for i, c in enumerate(fields)]
    end = F.when(F.col(MALFORMED).isNull(), F.lit(len(fields) - 1)).otherwise(F.greatest(*present, F.lit(-1)))

    def stripped(i: int, c: str) -> Column:
        value = F.col(f"`{c}`")
        cut = F.when(F.length(value) > 1, value.substr(F.lit(1), F.length(value) - 1))  # "\r" alone: NULL
        return F.when((F.col("_last_field") == i) & value.endswith("\r"), cut).otherwise(value).alias(c)

    ended = raw.withColumn("_last_field", end)
    return ended.select(*[stripped(fields.index(c), c) if c in fields else F.col(f"`{c}`") for c in raw.columns])


def csv_reader(spark: SparkSession, feed: CsvSnapshotFeed, line_ends: dict[str, str]) -> DataFrameReader:
    """A reader of the feed's CSV files, with a header, in the feed's encoding (the one read in, never `auto`), with
    the file's `line_end_options`."""
    return (
        spark.read.option("header", True)
        .option("sep", feed.delimiter)
        .option("encoding", feed.encoding)
        .option("multiLine", True)  # quoted values may hold line breaks
        # RFC 4180: a quote inside a quoted value is doubled. Spark's default escape is a backslash, which kept
        # `"ACME ""BEST"" CLINIC"` with its quotes and let a value ending in `\` swallow the records after it.
        .option("escape", '"')
        .option("mode", "PERMISSIVE")
        .options(**line_ends)
    )


def header_names(spark: SparkSession, feed: CsvSnapshotFeed, path: str, line_ends: dict[str, str]) -> list[str]:
    """The names in the file's header as written, an empty one as Spark names it (`_c3`). Spark's own header
    numbers names that repeat ignoring case (`NPI0`, `NPI12`), which would hide the repeat from
    `check_header_names`. A header ending in CRLF read with lineSep LF: its last name without the CR."""
    first = csv_reader(spark, feed, line_ends).option("header", False).csv(path).first()
    names = list(first or ())
    if names and line_ends and names[-1] is not None and names[-1].endswith("\r"):
        names[-1] = names[-1][:-1] or None
    return [f"_c{i}" if value is None else value for i, value in enumerate(names)]


def load_csv_snapshot(spark: SparkSession, feed: CsvSnapshotFeed, path: str, table: TableConfig) -> LoadedSnapshot:
    """Read the CSV snapshot at `path` (every value a string first, then typed and checked)."""
    from pyspark.sql.types import StringType, StructField, StructType

    name = file_name(path)
    day = date_from_path(path, feed.date, kind=feed.kind)
    ends = LineEnds(feed.encoding)  # counted in the encoding check's pass over the file, or in a pass of its own
    encoding, notes = file_encoding(path, feed, table=table.name, also=ends.feed)
    line_ends = line_end_options(ends.finish(path), name, table=table.name)
    feed = feed.model_copy(update={"encoding": encoding})  # this file's: `auto` decided, said in the notes
    header = header_names(spark, feed, path, line_ends)
    check_header_names(header, feed, name, table=table.name)
    # Every value a string, plus the text of a record whose field count is not the header's.
    fields = [StructField(c, StringType()) for c in spark_header(header)]
    schema = StructType([*fields, StructField(MALFORMED, StringType())])
    raw = csv_reader(spark, feed, line_ends).schema(schema).option("columnNameOfCorruptRecord", MALFORMED).csv(path)
    renamed = raw.toDF(*header_columns(header, feed), MALFORMED)
    if line_ends and ends.crlf:  # read with lineSep LF (`line_end_options`)
        renamed = without_line_end_cr(renamed)
    found = [c for c in renamed.columns if c != MALFORMED]
    missing = [c for c in feed.columns if c not in found and c not in feed.optional_columns]
    if missing:
        raise InputError(
            f"snapshot {name}: the header has no column(s) {missing} (after normalising to snake_case and "
            f"applying the feed's header_aliases); found {found}. Fix the feed's columns or header_aliases "
            "in the configuration, or the file; a column older releases lack goes in the feed's optional_columns.",
            table=table.name,
        )
    absent = [c for c in feed.optional_columns if c not in found]  # NULL in its rows (`typed_rows`)
    notes += [f"columns this release lacks, NULL in its rows: {', '.join(absent)}"] if absent else []
    if raw.limit(1).count() == 0:
        raise InputError(
            f"snapshot {name} has no rows; applying it would delete every row of {table.name}, so it is "
            "refused (nothing was written). Check the download.",
            table=table.name,
        )
    ignored = [c for c in found if c not in feed.columns]
    notes += [f"header columns no column reads, ignored: {', '.join(ignored)}"] if ignored else []
    cut_columns: list[str] = []
    if feed.require_final_newline and not ends_with_line_break(spark, path, feed.encoding):
        renamed, cut_columns = hold_last_record(renamed, table, name)
        notes.append(UNTERMINATED_DETAIL)
    # Read once: the diff takes the applicable rows, the quarantined ones and the keys those hold from it.
    typed = typed_rows(renamed, feed, table, cut_columns=cut_columns)
    rows = one_row_per_key(typed, table.primary_key, list(feed.columns)).localCheckpoint(eager=False)
    return LoadedSnapshot(file=name, date=day, tables={table.name: rows}, notes=notes)
