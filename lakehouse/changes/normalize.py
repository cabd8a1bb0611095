"""Parsed DMS rows → the change stream: typed columns, op, sequence, lineage, and a quarantine reason.

The sequence totally orders the changes of one key (DESIGN rule 1). It is one fixed-width string,
so it compares the same in Spark, Athena and PostgreSQL:

    class - commit time - change-seq - file - row

* class 0 for full-load rows, 1 for CDC rows: a LOAD row sorts before every CDC row of its key,
  whatever the file names or arrival order;
* commit time leads the change-seq because DMS restarts the $AR_H_CHANGE_SEQ counter when a task
  restarts; within one commit time the 35-digit change-seq decides (compared as a zero-padded string,
  never as a number that could lose digits);
* file name and row position decide only where there is no change-seq (full load, or no such
  column): with a change-seq they are blank, so the same change delivered twice has the same sequence.
  A later delivery of a file name (a table reload: DMS writes LOAD00000001.csv again, and the landing
  router copies the new version to `version=<UTC yyyymmddHHMMSSffffff>-<id>/` beside the first) sorts
  after the first delivery and after any file name, later deliveries in the order of their times: its
  file part is `~<time>/<name>` (`~` sorts after the letters and digits DMS names files with; the 22
  characters before the name leave 26 of the 48 for it, which every DMS name fits). A file outside such
  a folder keeps its name as file part, as it always had, so tables already applied keep their order (a
  folder of the router's earlier form, `version=<id>`, has no time to order by: read as a plain file).

The commit time (`_valid_from`) is the TimestampColumnName value; without one (or where it is empty),
the time in the DMS file name (when DMS wrote the CDC file, at or just after the commit); full-load rows
without one are valid from 1970-01-01 (the load copies rows whose start is unknown). A file's
modification time is never used: it changes when files are copied or restored. A CDC row with no time
at all (no timestamp column, and a file not named as DMS names CDC files) is quarantined as
`no_commit_time`: it could not be ordered.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import TableConfig
from lakehouse.sources.db_types import decimal_rounds, timestamp_problem, timestamp_text

FILE_WIDTH = 48
# The landing router's folder of a later delivery of a file name: `version=<UTC yyyymmddHHMMSSffffff>-<id>/<name>`.
VERSION_FOLDER = r"/version=([0-9]{20})-[^/]*/[^/]*$"
CHANGE_SEQ_WIDTH = 35
# Full-load rows without a timestamp column: valid since a start that is unknown.
LOAD_VALID_FROM = "1970-01-01 00:00:00"

# Columns every change carries besides the business columns.
CHANGE_COLUMNS = ["_op", "_sequence", "_change_seq", "_valid_from", "_source_file", "_source_row", "_batch_id"]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# The dialects whose DMS text never ends in a time zone region name (offsets at most): their timestamps skip the
# region's lookup, which costs a plain cast's time twice over per value. Oracle (TZR) and an unnamed dialect do not.
NO_REGION_DIALECTS = ("postgres", "mysql", "sqlserver")


def _try_cast(name: str, type_: str, *, regions: bool = False) -> Column:
    if type_ == "string":
        return F.col(_q(name))
    if type_ == "timestamp" and regions:  # the cast of the text with its region name spelt as Spark reads it
        return F.try_to_timestamp(timestamp_text(F.col(_q(name))))
    return F.expr(f"try_cast({_q(name)} AS {type_})")


def _cast_failure(name: str, type_: str, *, regions: bool = False) -> Column:
    """Why the value of column `name` does not cast to `type_`, or NULL."""
    value = F.col(_q(name))
    if type_ == "timestamp" and regions:  # not a timestamp, or a region name the tz database does not know
        return F.when(
            value.isNotNull(), F.concat(F.lit(f"column {name}: '"), value, F.lit("' "), timestamp_problem(value))
        )
    failure = F.when(
        value.isNotNull() & _try_cast(name, type_).isNull(),
        F.concat(F.lit(f"column {name}: '"), value, F.lit(f"' is not a valid {type_}")),
    )
    rounds = decimal_rounds(value, type_)
    if rounds is not None:
        # An Oracle NUMBER without precision is read as decimal(38,10), DMS's default; the source endpoint's
        # NumberDatatypeScale makes DMS write more digits (or floating text, with -1).
        return F.coalesce(
            failure,
            F.when(
                rounds,
                F.concat(
                    F.lit(f"column {name}: '"),
                    value,
                    F.lit(
                        f"' has more digits after the point than its type {type_} holds, which would round it; "
                        "widen the column's scale in `columns:` (for an Oracle NUMBER without precision, to the "
                        "source endpoint's NumberDatatypeScale; with -1 DMS writes floating text: type it double)"
                    ),
                ),
            ),
        )
    if type_ != "date":
        return failure
    # Spark casts '2024-01-02 10:30:00' to the date 2024-01-02: the time would be lost without a word. DMS writes
    # a time only for a source type that has one (an Oracle DATE is DMS's DATETIME). It also keeps the day of
    # '0044-03-15 BC' (PostgreSQL's era) or of any text after a space or `T`, which no timestamp cast reads.
    moment = F.expr(f"try_cast({_q(name)} AS timestamp)")
    day = _try_cast(name, "date")
    return F.coalesce(
        failure,
        F.when(
            day.isNotNull() & moment.isNull(),
            F.concat(
                F.lit(f"column {name}: '"),
                value,
                F.lit(
                    "' is not a plain date: the column's type date would keep its day and drop the text after it "
                    "(an era such as BC, a time zone); fix the value at the source, or type the column string"
                ),
            ),
        ),
        F.when(
            moment != day.cast("timestamp"),
            F.concat(
                F.lit(f"column {name}: '"),
                value,
                F.lit(
                    "' has a time of day, which the column's type date would drop; type it timestamp (an Oracle "
                    "DATE holds a time: set the source's dialect: oracle, and DATE is read as a timestamp)"
                ),
            ),
        ),
    )


def _first_cast_failure(columns: dict[str, str], *, regions: bool) -> Column:
    checks = [_cast_failure(c, t, regions=regions) for c, t in columns.items() if t != "string"]
    return F.coalesce(*checks) if checks else F.lit(None).cast("string")


def sequence_column(is_load: Column, commit_ts: Column, change_seq: Column, file: Column, row: Column) -> Column:
    """The fixed-width ordering string described in the module docstring."""
    has_seq = change_seq.isNotNull()
    return F.concat_ws(
        "-",
        F.when(is_load, F.lit("0")).otherwise(F.lit("1")),
        F.coalesce(F.date_format(commit_ts, "yyyyMMddHHmmssSSSSSS"), F.lit("0" * 20)),
        F.coalesce(F.lpad(change_seq, CHANGE_SEQ_WIDTH, "0"), F.lit("0" * CHANGE_SEQ_WIDTH)),
        F.when(has_seq, F.lit(" " * FILE_WIDTH)).otherwise(F.rpad(file, FILE_WIDTH, " ")),
        F.when(has_seq, F.lit("0" * 12)).otherwise(F.lpad(row.cast("string"), 12, "0")),
    )


def file_order(path: Column, is_load: Column) -> Column:
    """The file part of the sequence: the file's name, or `~<time>/<name>` for a LOAD file in a router's version
    folder (a reload, sorting after the first delivery). A CDC file delivered again holds the same changes: it
    keeps its name, so its rows are replays of those already applied, not new versions."""
    name = F.regexp_extract(path, r"([^/]*)$", 1)
    delivered = F.regexp_extract(path, VERSION_FOLDER, 1)
    reload = is_load & (delivered != "")
    return F.when(reload, F.concat(F.lit("~"), delivered, F.lit("/"), name)).otherwise(name)


def _no_commit_time(timestamp_column: str | None) -> Column:
    """Why a row has no commit time, naming its file: the file name is the only time left to read."""
    why = (
        f"its {timestamp_column} (DMS TimestampColumnName) is empty"
        if timestamp_column
        else "the table has no timestamp_column (DMS TimestampColumnName)"
    )
    return F.concat(
        F.lit("no commit time: "),
        F.lit(why),
        F.lit(" and the file name '"),
        F.regexp_extract(F.col("_file"), r"([^/]*)$", 1),
        F.lit(
            "' is neither a DMS full-load name (LOAD00000001.csv, SEGMENT1_LOAD00000001.csv) nor a CDC file's time "
            "(yyyymmdd-hhmmssfff.csv); land it under its DMS name, or configure the timestamp column"
        ),
    )


def to_changes(parsed: DataFrame, table: TableConfig, batch_id: int) -> DataFrame:
    """Type, validate and sequence parsed rows. Rows with a non-null `_reason` go to quarantine."""
    source = table.source
    typed = {c: t for c, t in source.columns.items() if c not in (source.timestamp_column, source.change_seq_column)}
    regions = source.dialect not in NO_REGION_DIALECTS
    ts = F.col(_q(source.timestamp_column)) if source.timestamp_column else F.lit(None).cast("string")
    seq = F.lit(None).cast("string")
    if source.change_seq_column:  # empty on a full load's rows where the file keeps "" apart from NULL (Parquet)
        raw_seq = F.col(_q(source.change_seq_column))
        seq = F.when(F.trim(raw_seq) != "", raw_seq)
    key_null = F.lit(False)
    for k in table.primary_key:
        key_null = key_null | F.col(_q(k)).isNull()

    commit_ts = (
        F.expr(f"try_cast({_q(source.timestamp_column)} AS timestamp)")
        if source.timestamp_column
        else F.lit(None).cast("timestamp")
    )
    valid_from = F.coalesce(
        commit_ts,
        F.expr("try_cast(_file_time AS timestamp)"),
        F.when(F.col("_is_load"), F.lit(LOAD_VALID_FROM).cast("timestamp")),
    )
    reason = (
        F.when(F.col("_reason").isNotNull(), F.col("_reason"))
        .when(~F.coalesce(F.col("_op").isin("I", "U", "D"), F.lit(False)), F.lit("unknown_op"))
        .when(key_null, F.lit("null_key"))
        .when(seq.isNotNull() & ~seq.rlike(r"^[0-9]{1,35}$"), F.lit("bad_change_seq"))
        .when(ts.isNotNull() & commit_ts.isNull(), F.lit("type_mismatch"))
        .when(_first_cast_failure(typed, regions=regions).isNotNull(), F.lit("type_mismatch"))
        .when(valid_from.isNull(), F.lit("no_commit_time"))
    )
    detail = (
        F.when(F.col("_reason").isNotNull(), F.col("_detail"))
        .when(
            reason == "unknown_op",
            F.concat(F.lit("Op is '"), F.coalesce(F.col("_op"), F.lit("NULL")), F.lit("'; expected I, U or D")),
        )
        .when(reason == "null_key", F.lit(f"primary key {table.primary_key} has an empty value"))
        .when(reason == "bad_change_seq", F.concat(F.lit("change-seq '"), seq, F.lit("' is not up to 35 digits")))
        .when(
            (reason == "type_mismatch") & ts.isNotNull() & commit_ts.isNull(),
            F.concat(F.lit(f"{source.timestamp_column}: '"), ts, F.lit("' is not a timestamp")),
        )
        .when(reason == "type_mismatch", _first_cast_failure(typed, regions=regions))
        .when(reason == "no_commit_time", _no_commit_time(source.timestamp_column))
    )
    raw_struct = F.struct(F.col("_op").alias("Op"), *[F.col(_q(c)) for c in source.columns])
    file = file_order(F.col("_file"), F.col("_is_load"))
    return parsed.select(
        *[_try_cast(c, t, regions=regions).alias(c) for c, t in typed.items()],
        F.col("_op"),
        sequence_column(F.col("_is_load"), valid_from, seq, file, F.col("_row")).alias("_sequence"),
        seq.alias("_change_seq"),
        valid_from.alias("_valid_from"),
        F.col("_file").alias("_source_file"),
        F.col("_row").alias("_source_row"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
        reason.alias("_reason"),
        detail.alias("_detail"),
        # The raw row is only kept for rows that go to quarantine: no JSON work for the rows that apply.
        F.when(reason.isNotNull(), F.coalesce(F.col("_raw"), F.to_json(raw_struct))).alias("_raw"),
        F.lit(False).alias("_synthetic"),
        F.lit(False).alias("_key_moved"),
        F.col("_content_hash"),
        F.col("_absent"),
        *([F.col("_unsupplied")] if source.no_sup_value is not None else []),
    )


def split_key_changes(changes: DataFrame, table: TableConfig) -> DataFrame:
    """A U whose before-image key differs from its key also deletes the old key (same sequence).

    Needs before-image columns for every primary-key column (DMS add-before-image-columns). The moving U
    is marked `_key_moved` (its key is new on purpose), the old key's delete `_synthetic`.
    """
    prefix = table.source.before_image_prefix
    bi = {k: f"{prefix}{k}" for k in table.primary_key} if prefix else {}
    if not bi or any(c not in changes.columns for c in bi.values()):
        return changes
    moved = (F.col("_op") == "U") & F.col("_reason").isNull() & F.col(_q(bi[table.primary_key[0]])).isNotNull()
    differs = F.lit(False)
    for k, b in bi.items():
        differs = differs | ~F.col(_q(k)).eqNullSafe(F.col(_q(b)))
    business = table.source.business_columns
    old_key = []
    for c in changes.columns:
        if c in bi:
            old_key.append(F.col(_q(bi[c])).alias(c))
        elif c == "_op":
            old_key.append(F.lit("D").alias(c))
        elif c == "_synthetic":
            old_key.append(F.lit(True).alias(c))
        elif c in business:
            old_key.append(F.lit(None).cast(changes.schema[c].dataType).alias(c))
        else:
            old_key.append(F.col(_q(c)))
    # One pass over the rows (a union would parse the batch's files twice): each row becomes itself, and a
    # moving U also its synthetic delete of the old key.
    row = F.struct(*[F.col(_q(c)) for c in changes.columns])
    moving = F.struct(*[(F.lit(True) if c == "_key_moved" else F.col(_q(c))).alias(c) for c in changes.columns])
    rows = F.when(moved & differs, F.array(moving, F.struct(*old_key))).otherwise(F.array(row))
    return changes.select(F.explode(rows).alias("__split")).select(
        *[F.col("__split")[c].alias(c) for c in changes.columns]
    )
