"""Specification of `parse_file`: one AWS DMS output file in, one row per record out, never a record dropped."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.config import DmsSource
from lakehouse.sources.dms_files import PARQUET_SLICE_ROWS, is_load_file, parse_file
from tests.dms_tables import PEOPLE

CDC = "s3://bucket/dms/people/20260301-120000000.csv"
LOAD = "s3://bucket/dms/people/LOAD00000001.csv"


def source(**settings: Any) -> DmsSource:
    """The PEOPLE source of the Spark tests (ts, id, name, score, seq, BI_id), with `settings` changed."""
    values = copy.deepcopy(PEOPLE["source"])
    values["path"] = "s3://bucket/dms/people"
    values.update(settings)
    return DmsSource.model_validate(values)


def parse(path: str, text: str | bytes, src: DmsSource | None = None) -> list[dict[str, Any]]:
    content = text.encode("utf-8") if isinstance(text, str) else text
    return list(parse_file(path, content, src or source()))


def business(row: dict[str, Any]) -> dict[str, Any]:
    """The Op and layout values of a row, without the lineage columns."""
    return {k: v for k, v in row.items() if not k.startswith("_") or k == "_op"}


def parquet(table: dict[str, list[Any]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table(table), out)
    return out.getvalue()


def people_parquet(rows: int = 1, **columns: list[Any]) -> dict[str, list[Any]]:
    """Every configured PEOPLE column (one value per row), with `columns` replacing or adding some."""
    full = {"ts": ["t1"], "id": [1], "name": ["Ann"], "score": [9.5], "seq": ["s1"], "BI_id": [None]}
    return {**{k: v * rows for k, v in full.items()}, **columns}


# --- file kinds -------------------------------------------------------------------------------------------------


def test_load_file_without_op_maps_fields_to_the_layout() -> None:
    (row,) = parse(LOAD, "t1,1,Ann,9.5,s1,\n")

    assert row == {
        "_file": LOAD,
        "_row": 0,
        "_is_load": True,
        "_file_time": None,
        "_content_hash": hashlib.sha256(b"t1,1,Ann,9.5,s1,\n").hexdigest(),
        "_op": "I",
        "ts": "t1",
        "id": "1",
        "name": "Ann",
        "score": "9.5",
        "seq": "s1",
        "BI_id": None,
    }


def test_load_file_with_op_takes_op_from_the_first_field() -> None:
    (row,) = parse(LOAD, "I,t1,1,Ann,9.5,s1,\n", source(op_in_full_load=True))

    assert business(row) == {
        "_op": "I",
        "ts": "t1",
        "id": "1",
        "name": "Ann",
        "score": "9.5",
        "seq": "s1",
        "BI_id": None,
    }


def test_cdc_file_takes_op_from_the_first_field() -> None:
    rows = parse(CDC, "U,t2,1,Ann,9.75,s2,1\nD,t3,2,Bob,1.0,s3,2\n")

    assert [(r["_op"], r["id"], r["score"], r["BI_id"]) for r in rows] == [
        ("U", "1", "9.75", "1"),
        ("D", "2", "1.0", "2"),
    ]
    assert [(r["_row"], r["_is_load"]) for r in rows] == [(0, False), (1, False)]
    assert "_reason" not in rows[0]


def test_load_files_are_recognised_by_name_regardless_of_case_and_folders() -> None:
    assert is_load_file("s3://b/x/LOAD00000001.csv")
    assert is_load_file("s3://b/x/load00000002.csv.gz")
    assert is_load_file("/data/landing/LOAD00000001.parquet")
    assert not is_load_file("s3://b/LOAD/20260301-120000000.csv")

    (row,) = parse("s3://b/x/load00000001.CSV", "t1,1,Ann,9.5,s1,\n")
    assert (row["_is_load"], row["_op"], row["id"]) == (True, "I", "1")


@pytest.mark.parametrize(
    "name",
    [
        "LOAD0000000A.csv",  # DMS counts load files in hexadecimal
        "LOAD0000001F.parquet",
        "SEGMENT1_LOAD00000001.csv",  # a `ranges` parallel load without segment-names
        "SEGMENT3_LOAD0000000A.csv.gz",
        "segment12_load00000010.csv",
        "LOAD_1_00000001.csv",
    ],
)
def test_parallel_and_hex_numbered_load_files_are_load_files(name: str) -> None:
    """Found by review: SEGMENTn_LOAD… files were read as CDC files: without Op every row was schema_drift, and with
    Op and a timestamp column the load's rows were changes dated at their transfer time."""
    path = f"s3://b/dms/public/people/{name}"
    assert is_load_file(path)
    if name.endswith(".csv"):
        (row,) = parse(path, "t1,1,Ann,9.5,s1,\n")
        assert (row["_is_load"], row["_op"], row["id"], row.get("_reason")) == (True, "I", "1", None)


def test_a_partition_folders_load_files_are_load_files() -> None:
    assert is_load_file("s3://b/dms/public/people/p2026_01/LOAD00000001.csv")
    assert is_load_file("s3://b/dms/public/people/custom_segment2/LOAD0000000B.csv")


@pytest.mark.parametrize("name", ["LOADER.csv", "load_20260301.csv", "SEGMENTA_LOAD00000001.csv", "my-load.csv"])
def test_a_name_like_a_load_file_that_dms_does_not_write_is_told_naming_the_file(name: str) -> None:
    """Neither a load nor a CDC file by its name: read as changes, a load's rows would be dated at transfer time."""
    path = f"s3://b/dms/people/{name}"

    (row,) = parse(path, "I,t1,1,Ann,9.5,s1,\n")

    assert not is_load_file(path)
    assert (row["_reason"], row["_row"], row["_file"]) == ("unsupported_file", -1, path)
    assert repr(name) in row["_detail"] and "SEGMENT1_LOAD00000001.csv" in row["_detail"]


def test_a_cdc_file_named_by_time_or_otherwise_without_load_in_it_is_still_read_as_changes() -> None:
    for name in ("20260301-120000000.csv", "20260301-120000000123456-000001.csv", "download.csv"):
        (row,) = parse(f"s3://b/dms/LOAD/people/{name}", "U,t1,1,Ann,9.5,s1,\n")
        assert (row["_is_load"], row["_op"], row.get("_reason")) == (False, "U", None)


# --- header row (AddColumnName=true) ----------------------------------------------------------------------------


def test_header_row_maps_fields_by_name_and_is_not_a_record() -> None:
    rows = parse(CDC, "Op,ts,id,name,score,seq,BI_id\nI,t1,1,Ann,9.5,s1,\n", source(header=True))

    (row,) = rows
    assert row["_row"] == 0
    assert business(row) == {
        "_op": "I",
        "ts": "t1",
        "id": "1",
        "name": "Ann",
        "score": "9.5",
        "seq": "s1",
        "BI_id": None,
    }


def test_header_row_maps_columns_written_in_a_different_order() -> None:
    (row,) = parse(CDC, "Op,ID,Score,Name,seq,ts,bi_id\nU,1,9.5,Ann,s1,t1,1\n", source(header=True))

    assert business(row) == {
        "_op": "U",
        "ts": "t1",
        "id": "1",
        "name": "Ann",
        "score": "9.5",
        "seq": "s1",
        "BI_id": "1",
    }


def test_header_naming_an_unknown_column_is_schema_drift_on_every_row() -> None:
    text = "Op,ts,id,name,score,seq,BI_id,email\nI,t1,1,Ann,9.5,s1,,a@x\nI,t1,2,Bob,1.0,s2,,b@x\n"

    rows = parse(CDC, text, source(header=True))

    assert [(r["_row"], r["_reason"]) for r in rows] == [(0, "schema_drift"), (1, "schema_drift")]
    assert all("email" in r["_detail"] for r in rows)
    assert rows[1]["_raw"] == "I,t1,2,Bob,1.0,s2,,b@x"


# --- CSV as DMS writes it (RFC 4180) ----------------------------------------------------------------------------


def test_quoted_field_keeps_an_embedded_delimiter() -> None:
    (row,) = parse(CDC, 'I,t1,1,"Smith, Ann",9.5,s1,\n')

    assert row["name"] == "Smith, Ann"


def test_doubled_quotes_inside_a_quoted_field_are_one_quote() -> None:
    (row,) = parse(CDC, 'I,t1,1,"Ann ""the boss""",9.5,s1,\n')

    assert row["name"] == 'Ann "the boss"'


def test_quoted_field_keeps_an_embedded_newline_and_row_positions_count_records_not_lines() -> None:
    rows = parse(CDC, 'I,t1,1,"Ann\nSmith",9.5,s1,\nI,t2,2,Bob,1.0,s2,\n')

    assert [(r["_row"], r["name"]) for r in rows] == [(0, "Ann\nSmith"), (1, "Bob")]


def test_a_carriage_return_inside_a_value_is_data_not_the_end_of_a_record() -> None:
    """Found by review: records were split at any \r, so `a\rb` applied name 'a' and quarantined `b`. DMS ends
    records with \n (CsvRowDelimiter; \r\n is read too)."""
    rows = parse(CDC, 'I,t1,1,a\rb,9.5,s1,\nI,t2,2,"x\ry",1.0,s2,\r\nI,t3,3,"c\r\nd",2.0,s3,\r\nI,t4,4,e\r\r\n')

    assert [(r["_row"], r.get("id"), r.get("name"), r.get("_reason")) for r in rows] == [
        (0, "1", "a\rb", None),
        (1, "2", "x\ry", None),
        (2, "3", "c\r\nd", None),
        (3, None, None, "schema_drift"),  # 4 fields; the \r before the line end was a value's, read as data
    ]
    assert rows[3]["_raw"] == "I,t4,4,e\r"


def test_a_broken_record_after_a_carriage_return_is_kept_as_the_file_holds_it() -> None:
    rows = parse(CDC, 'I,t1,1,a\rb,9.5,s1,\nI,t2,2,"B\rob"x,1.0,s2,\nI,t3,3,Cy,2.0,s3,\n')

    assert [(r["_row"], r.get("_reason")) for r in rows] == [(0, None), (1, "unparseable")]
    assert rows[1]["_raw"] == 'I,t2,2,"B\rob"x,1.0,s2,\nI,t3,3,Cy,2.0,s3,\n' and "line 2" in rows[1]["_detail"]


def test_empty_field_is_none() -> None:
    (row,) = parse(CDC, "I,t1,1,,,s1,\n")

    assert (row["name"], row["score"], row["BI_id"]) == (None, None, None)


def test_blank_lines_are_skipped_without_taking_a_row_position() -> None:
    rows = parse(CDC, "\nI,t1,1,Ann,9.5,s1,\n\n\nI,t2,2,Bob,1.0,s2,\n\n")

    assert [(r["_row"], r["id"]) for r in rows] == [(0, "1"), (1, "2")]


def test_a_non_default_delimiter_splits_fields() -> None:
    (row,) = parse(CDC, "I|t1|1|Smith, Ann|9.5|s1|\n", source(delimiter="|"))

    assert (row["name"], row["score"], row["BI_id"]) == ("Smith, Ann", "9.5", None)


# --- layouts ----------------------------------------------------------------------------------------------------


def test_field_count_of_a_previous_layout_maps_to_that_layout() -> None:
    src = source(previous_layouts=[["ts", "id", "name", "seq"]])

    rows = parse(CDC, "I,t1,1,Ann,s1\nI,t2,2,Bob,1.0,s2,\n", src)

    assert business(rows[0]) == {"_op": "I", "ts": "t1", "id": "1", "name": "Ann", "seq": "s1"}
    assert (rows[1]["score"], rows[1]["seq"]) == ("1.0", "s2")


def test_unknown_field_count_is_schema_drift_keeping_the_raw_line() -> None:
    rows = parse(CDC, 'I,t1,1,"Smith, Ann",9.5,s1,,extra\nI,t2,2,Bob,1.0,s2,\n')

    assert rows[0]["_reason"] == "schema_drift"
    assert rows[0]["_raw"] == 'I,t1,1,"Smith, Ann",9.5,s1,,extra'
    assert "8 fields" in rows[0]["_detail"]
    assert "id" not in rows[0]
    assert (rows[1]["_row"], rows[1]["id"], rows[1].get("_reason")) == (1, "2", None)


# --- compression and broken files -------------------------------------------------------------------------------


def test_gzip_csv_is_decompressed() -> None:
    (row,) = parse(CDC + ".gz", gzip.compress(b"I,t1,1,Ann,9.5,s1,\n"))

    assert (row["_file"], row["_op"], row["name"]) == (CDC + ".gz", "I", "Ann")


def test_corrupt_gzip_is_one_unparseable_row_for_the_whole_file() -> None:
    (row,) = parse(CDC + ".gz", b"not gzip at all")

    assert (row["_reason"], row["_row"]) == ("unparseable", -1)
    assert "gzip" in row["_detail"]


def test_a_cut_gzip_file_is_one_truncated_row_and_none_of_its_records_is_read() -> None:
    whole = gzip.compress(b"I,t1,1,Ann,9.5,s1,\n" * 500)
    for cut in (30, len(whole) // 2, len(whole) - 5):
        (row,) = parse(CDC + ".gz", whole[:cut])

        assert (row["_reason"], row["_row"]) == ("truncated", -1)
        assert "gzip" in row["_detail"]


def test_gzip_with_a_corrupt_compressed_block_is_unparseable() -> None:
    good = gzip.compress(b"I,t1,1,Ann,9.5,s1,\n" * 50)
    corrupt = good[:10] + b"\x07" + good[11:]  # block type 3 does not exist: zlib.error, not OSError

    (row,) = parse(CDC + ".gz", corrupt)

    assert (row["_reason"], row["_row"]) == ("unparseable", -1)


def test_bytes_that_are_not_utf8_are_unparseable() -> None:
    (row,) = parse(CDC, "I,t1,1,Zoë,9.5,s1,\n".encode("latin-1"))

    assert (row["_reason"], row["_row"]) == ("unparseable", -1)
    assert "UTF-8" in row["_detail"]


def test_broken_quoting_is_unparseable_and_keeps_the_rest_of_the_file() -> None:
    text = 'I,t1,1,Ann,9.5,s1,\nI,t2,2,"Bob"x,1.0,s2,\nI,t3,3,Cy,2.0,s3,\n'

    rows = parse(CDC, text)

    assert rows[0]["id"] == "1"
    assert (rows[1]["_row"], rows[1]["_reason"]) == (1, "unparseable")
    assert rows[1]["_raw"] == 'I,t2,2,"Bob"x,1.0,s2,\nI,t3,3,Cy,2.0,s3,\n'
    assert "line 2" in rows[1]["_detail"]
    assert len(rows) == 2


def test_unclosed_quote_keeps_the_rest_of_the_file_from_the_record_that_opened_it() -> None:
    text = 'I,t1,1,Ann,9.5,s1,\nI,t2,2,"Bob,1.0,s2,\nI,t3,3,Cy,2.0,s3,\nI,t4,4,Di,3.0,s4,\n'

    rows = parse(CDC, text)

    assert [r.get("_reason") for r in rows] == [None, "unparseable"]
    assert rows[1]["_row"] == 1
    assert rows[1]["_raw"] == 'I,t2,2,"Bob,1.0,s2,\nI,t3,3,Cy,2.0,s3,\nI,t4,4,Di,3.0,s4,\n'


def test_extension_other_than_the_configured_format_is_an_unsupported_file() -> None:
    for path, src in (
        ("s3://b/x/20260301.parquet", source()),
        ("s3://b/x/20260301.json", source()),
        (CDC, source(format="parquet")),
    ):
        (row,) = parse(path, b"whatever", src)

        assert (row["_reason"], row["_row"], row["_file"]) == ("unsupported_file", -1, path)


# --- Parquet ----------------------------------------------------------------------------------------------------


def test_parquet_with_an_op_column_takes_op_from_it() -> None:
    content = parquet(
        {
            "Op": ["I", "D"],
            "ts": ["t1", "t2"],
            "id": [1, 2],
            "name": ["Ann", None],
            "score": [9.5, 1.0],
            "seq": ["s1", "s2"],
            "BI_id": [None, 2],
        }
    )

    rows = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))

    assert [business(r) for r in rows] == [
        {"_op": "I", "ts": "t1", "id": "1", "name": "Ann", "score": "9.5", "seq": "s1", "BI_id": None},
        {"_op": "D", "ts": "t2", "id": "2", "name": None, "score": "1", "seq": "s2", "BI_id": "2"},
    ]
    assert [(r["_row"], r["_is_load"]) for r in rows] == [(0, False), (1, False)]


def test_a_table_column_named_op_is_told_from_dms_op_in_csv_headers_and_parquet() -> None:
    """Found by review: a source column `op` (Oracle's OP) switched DMS's Op off in a CSV header (every delete read
    as an insert) and was dropped from Parquet files (every row missing a column)."""
    columns = {**PEOPLE["source"]["columns"], "OP": "string"}
    src = source(columns=columns, header=True)
    rows = parse(CDC, "Op,ts,id,name,score,seq,BI_id,OP\nI,t1,1,Ann,1.5,s1,,open\nD,t2,1,Ann,1.5,s2,1,shut\n", src)
    assert [(r["_op"], r["OP"], r["id"]) for r in rows] == [("I", "open", "1"), ("D", "shut", "1")]
    (load,) = parse(LOAD, "ts,id,name,score,seq,BI_id,OP\nt0,1,Ann,1.5,,,open\n", src)  # no Op in a full load
    assert (load["_op"], load["OP"], load.get("_reason")) == ("I", "open", None)

    # The table's own OP absent from a file (an optional column): a CDC file's first `Op` is still DMS's.
    optional = source(columns=columns, header=True, optional_columns=["OP"])
    rows = parse(CDC, "Op,ts,id,name,score,seq,BI_id\nD,t2,1,Ann,1.5,s2,1\n", optional)
    assert [(r["_op"], r.get("OP"), r.get("_reason")) for r in rows] == [("D", None, None)]

    parquet_src = source(columns=columns, format="parquet")
    content = parquet({"Op": ["U"], **people_parquet(), "OP": ["open"]})
    (row,) = parse("s3://b/x/20260301-120000000.parquet", content, parquet_src)
    assert (row["_op"], row["OP"], row.get("_reason")) == ("U", "open", None)
    (load_row,) = parse("s3://b/x/LOAD00000001.parquet", parquet({**people_parquet(), "OP": ["open"]}), parquet_src)
    assert (load_row["_op"], load_row["OP"], load_row.get("_reason")) == ("I", "open", None)


def test_parquet_load_file_without_op_is_an_insert() -> None:
    content = parquet({"ts": ["t1"], "ID": [1], "Name": ["Ann"], "score": [1.5], "seq": [None], "bi_id": [None]})

    (row,) = parse("s3://b/x/LOAD00000001.parquet", content, source(format="parquet"))

    assert business(row) == {
        "_op": "I",
        "ts": "t1",
        "id": "1",
        "name": "Ann",
        "score": "1.5",
        "seq": None,
        "BI_id": None,
    }
    assert row["_is_load"] is True


def test_parquet_cdc_file_without_op_has_no_operation() -> None:
    content = parquet(people_parquet())

    (row,) = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))

    assert row["_op"] is None
    assert row["id"] == "1"


def test_parquet_column_not_in_the_configuration_is_schema_drift_on_every_row() -> None:
    content = parquet({"Op": ["I", "U"], "id": [1, 2], "email": ["a@x", "b@x"]})

    rows = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))

    assert [(r["_row"], r["_reason"]) for r in rows] == [(0, "schema_drift"), (1, "schema_drift")]
    assert all("email" in r["_detail"] for r in rows)


def test_column_names_with_spaces_around_them_are_the_configured_columns_in_parquet_and_csv() -> None:
    """Found by review: a Parquet column `"name "` (a source column named so) passed the name check, which strips
    names, then failed the file's mapping with a bare KeyError in the executor."""
    table = people_parquet(Op=["U"])
    content = parquet({(" name " if k == "name" else k): v for k, v in table.items()})
    (row,) = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))
    assert (row["_op"], row["name"], row.get("_reason")) == ("U", "Ann", None)

    (row,) = parse(CDC, "Op,ts,id, name ,score,seq,BI_id\nU,t1,1,Ann,1.5,s1,\n", source(header=True))
    assert (row["_op"], row["name"], row.get("_reason")) == ("U", "Ann", None)


def test_columns_that_differ_only_in_case_are_refused_with_the_configuration() -> None:
    """Found by review: `id` and `ID` (PostgreSQL's `id` and `"ID"`) folded into one name when a file's columns were
    matched, so every row was quarantined as missing a column the file has."""
    columns = {**PEOPLE["source"]["columns"], "ID": "int"}
    with pytest.raises(ValueError, match=r"columns \['id', 'ID'\] differ only in case or spaces"):
        source(columns=columns)


def test_gzip_parquet_is_decompressed() -> None:
    content = gzip.compress(parquet(people_parquet(Op=["U"], id=[7])))

    (row,) = parse("s3://b/x/20260301-120000000.parquet.gz", content, source(format="parquet"))

    assert (row["_op"], row["id"]) == ("U", "7")


def test_bytes_that_are_not_parquet_are_unparseable() -> None:
    (row,) = parse("s3://b/x/20260301-120000000.parquet", b"PAR1 but not really", source(format="parquet"))

    assert (row["_reason"], row["_row"]) == ("unparseable", -1)


# --- malformed input of issue 15: each caught, never applied as if it were whole ---------------------------------


def test_a_utf8_byte_order_mark_is_not_part_of_the_op_or_the_header() -> None:
    (row,) = parse(CDC, "\ufeffU,t1,1,Ann,9.5,s1,1\n")
    assert (row["_op"], row["id"], row.get("_reason")) == ("U", "1", None)

    (row,) = parse(CDC, "\ufeffOp,ts,id,name,score,seq,BI_id\nI,t1,1,Ann,9.5,s1,\n", source(header=True))
    assert (row["_op"], row["id"], row.get("_reason")) == ("I", "1", None)


def test_a_csv_file_cut_inside_its_last_field_quarantines_that_record_as_truncated() -> None:
    # The real case: BI_patient_id 1000024 cut to 10000 would have been read as a key change.
    rows = parse(CDC, "U,t1,1,Ann,9.5,s1,1\nU,t2,1000024,Bob,1.0,s2,10000")

    assert [(r["_row"], r.get("_reason")) for r in rows] == [(0, None), (1, "truncated")]
    assert rows[1]["_raw"] == "U,t2,1000024,Bob,1.0,s2,10000"
    assert "line 2" in rows[1]["_detail"] and "cut short" in rows[1]["_detail"]
    assert "id" not in rows[1]


def test_a_csv_file_cut_inside_a_quoted_field_quarantines_the_record_from_its_first_line() -> None:
    text = 'I,t1,1,Ann,9.5,s1,\nI,t2,2,"Bob\nSmith'

    rows = parse(CDC, text)

    assert [(r["_row"], r.get("_reason")) for r in rows] == [(0, None), (1, "truncated")]
    assert rows[1]["_raw"] == 'I,t2,2,"Bob\nSmith'


def test_a_file_cut_inside_its_header_has_one_truncated_row() -> None:
    (row,) = parse(CDC, "Op,ts,id,na", source(header=True))

    assert (row["_row"], row["_reason"]) == (0, "truncated")


def test_a_file_that_ends_with_its_newline_is_whole() -> None:
    rows = parse(CDC, "U,t1,1,Ann,9.5,s1,1\nU,t2,2,Bob,1.0,s2,2\n")

    assert [r.get("_reason") for r in rows] == [None, None]


def test_a_parquet_file_without_configured_columns_is_missing_columns_on_every_row_naming_them() -> None:
    content = parquet({"Op": ["U", "U"], "ts": ["t1", "t2"], "id": [1, 2], "seq": ["s1", "s2"], "BI_id": [1, 2]})

    rows = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))

    assert [(r["_row"], r["_reason"]) for r in rows] == [(0, "missing_columns"), (1, "missing_columns")]
    assert "['name', 'score']" in rows[0]["_detail"]
    assert "name" not in rows[0]


def test_a_header_without_configured_columns_is_missing_columns_on_every_row() -> None:
    rows = parse(CDC, "Op,ts,id,seq,BI_id\nU,t1,1,s1,1\n", source(header=True))

    assert [r["_reason"] for r in rows] == ["missing_columns"]
    assert "['name', 'score']" in rows[0]["_detail"]


def test_an_optional_column_absent_from_the_file_is_null_and_marked() -> None:
    src = source(format="parquet", optional_columns=["score"])
    content = parquet({"Op": ["U"], "ts": ["t1"], "id": [1], "name": ["Ann"], "seq": ["s1"], "BI_id": [1]})

    (row,) = parse("s3://b/x/20260301-120000000.parquet", content, src)

    assert (row.get("_reason"), row["name"], row.get("score"), row["_absent"]) == (None, "Ann", None, "score")


def test_a_named_file_of_an_earlier_layout_is_not_missing_columns() -> None:
    src = source(header=True, previous_layouts=[{"without": ["score", "BI_id"]}])

    (row,) = parse(CDC, "Op,ts,id,name,seq\nU,t1,1,Ann,s1\n", src)

    assert (row.get("_reason"), row["name"], row.get("_absent")) == (None, "Ann", None)


def test_with_a_header_the_op_column_comes_from_the_header_whatever_op_in_full_load_says() -> None:
    with_op = "Op,ts,id,name,score,seq,BI_id\nI,t1,1,Ann,9.5,s1,\n"
    without_op = "ts,id,name,score,seq,BI_id\nt1,1,Ann,9.5,s1,\n"

    (a,) = parse(LOAD, with_op, source(header=True, op_in_full_load=False))
    (b,) = parse(LOAD, without_op, source(header=True, op_in_full_load=True))

    assert business(a) == business(b) == {
        "_op": "I", "ts": "t1", "id": "1", "name": "Ann", "score": "9.5", "seq": "s1", "BI_id": None,
    }  # fmt: skip


def test_every_row_carries_the_dms_file_time_and_the_content_hash_of_its_file() -> None:
    text = "U,t1,1,Ann,9.5,s1,1\n"
    rows = parse("s3://b/x/2019/01/18/20190118-184518184.csv.gz", gzip.compress(text.encode()))

    assert rows[0]["_file_time"] == "2019-01-18 18:45:18.184000"
    assert rows[0]["_content_hash"] == hashlib.sha256(text.encode()).hexdigest()  # of the content, not the gzip
    assert parse(LOAD, "t1,1,Ann,9.5,s1,\n")[0]["_file_time"] is None


def test_a_file_cut_inside_a_multibyte_character_is_truncated_not_unreadable() -> None:
    data = "U,t1,1,Ann,9.5,s1,1\nU,t2,2,Zoë,1.0,s2,2\n".encode()
    cut = data.index("ë".encode()) + 1  # between the two bytes of ë

    rows = parse(CDC, data[:cut])

    assert [(r["_row"], r.get("_reason")) for r in rows] == [(0, None), (1, "truncated")]
    assert rows[1]["_raw"] == "U,t2,2,Zo"


def test_a_file_with_a_byte_order_mark_cut_inside_a_character_keeps_its_complete_records() -> None:
    data = "\ufeffU,t1,1,Ann,9.5,s1,1\nU,t2,2,Zoë,1.0,s2,2\n".encode()

    rows = parse(CDC, data[: data.index("ë".encode()) + 1])

    assert [(r["_row"], r.get("_reason"), r.get("id")) for r in rows] == [(0, None, "1"), (1, "truncated", None)]
    assert rows[1]["_raw"] == "U,t2,2,Zo"


def test_parquet_binary_values_are_hex_and_a_column_without_a_text_form_quarantines_the_file() -> None:
    """DMS writes BLOB / bytea columns of a Parquet file as bytes: Arrow's cast to text failed on any byte that is
    not UTF-8 (the whole batch failed with a stack trace). A column with no text form quarantines every row."""
    photo = pa.array([b"\xff\x00A", None], pa.binary())
    content = parquet(people_parquet(2, Op=["I", "U"], name=photo))

    rows = parse("s3://b/x/20260301-120000000.parquet", content, source(format="parquet"))

    assert [r["name"] for r in rows] == ["ff0041", None]
    nested = parquet(people_parquet(1, Op=["I"], name=pa.array([[1, 2]], pa.list_(pa.int64()))))
    (row,) = parse("s3://b/x/20260301-120000000.parquet", nested, source(format="parquet"))
    assert row["_reason"] == "unparseable" and "Parquet column name of type list<" in row["_detail"]


def test_a_large_csv_file_is_parsed_without_holding_its_text() -> None:
    """A DMS full-load file may be 1 GB. Decoded whole and copied by the reader it took ~5x its size in the
    executor's Python worker (474 MB over a 100 MB file), enough for YARN to kill the container; the records are
    now read as a stream, so the parse holds a few MB whatever the file's size."""
    import tracemalloc

    content = "".join(f"I,t{i},{i},Name {i},{i}.5,s{i},\n" for i in range(200_000)).encode()
    tracemalloc.start()
    try:
        rows = sum(1 for _ in parse_file(CDC, content, source()))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 200_000
    assert peak < len(content) / 2, f"the parse held {peak / 1e6:.1f} MB for a {len(content) / 1e6:.1f} MB file"


def test_a_large_parquet_file_is_made_python_values_a_slice_at_a_time() -> None:
    """All of a Parquet file's values became Python strings at once (a 1 GB DMS file: many GB in the worker); now
    a slice of rows at a time, and the rows keep their positions in the file across slices."""
    import tracemalloc

    rows = 5 * PARQUET_SLICE_ROWS + 7
    ids = list(range(rows))
    content = parquet(people_parquet(rows, Op=["U"] * rows, id=ids, name=[f"Name {i}" for i in ids]))
    del ids
    tracemalloc.start()
    try:
        wrong = 0
        for i, r in enumerate(parse_file(CDC.replace(".csv", ".parquet"), content, source(format="parquet"))):
            wrong += (r["_row"], r["id"], r["name"]) != (i, str(i), f"Name {i}")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (i + 1, wrong) == (rows, 0)
    assert peak < 25e6, f"the parse held {peak / 1e6:.1f} MB"


def test_with_csv_null_value_that_text_is_null_and_an_empty_field_is_an_empty_string() -> None:
    """DMS's default writes NULL and '' alike as an empty field (both read as NULL); with CsvNullValue set the two
    differ, and an empty name must stay an empty string."""
    text = "I,t1,1,,9.5,s1,NULL\n"

    (default,) = parse(CDC, text)
    (marked,) = parse(CDC, text, source(null_value="NULL"))

    assert (default["name"], default["BI_id"]) == (None, "NULL")
    assert (marked["name"], marked["BI_id"]) == ("", None)


def test_csv_no_sup_value_is_null_and_names_its_columns_in_csv_and_parquet() -> None:
    """DMS's CsvNoSupValue (a column not in the source's supplemental log) is no value: NULL, named in `_unsupplied`
    so an update keeps the column's value before it; a real NULL stays a NULL."""
    marker = source(no_sup_value="_NOSUP_")
    (row,) = parse(CDC, "U,t1,1,_NOSUP_,_NOSUP_,s1,\n", marker)
    assert (row["name"], row["score"], row["_unsupplied"], row.get("_reason")) == (None, None, "name,score", None)
    (full,) = parse(CDC, "U,t1,1,,9.5,s1,\n", marker)
    assert (full["name"], full["score"], full.get("_unsupplied")) == (None, "9.5", None)
    (unset,) = parse(CDC, "U,t1,1,_NOSUP_,9.5,s1,\n")
    assert (unset["name"], unset.get("_unsupplied")) == ("_NOSUP_", None)

    content = parquet(
        {"Op": ["U"], "ts": ["t1"], "ID": ["1"], "name": ["_NOSUP_"], "score": [9.5], "seq": ["s1"], "BI_id": [None]}
    )
    (pq_row,) = parse_file(CDC.replace(".csv", ".parquet"), content, source(format="parquet", no_sup_value="_NOSUP_"))
    assert (pq_row["id"], pq_row["name"], pq_row["_unsupplied"]) == ("1", None, "name")


def test_a_no_sup_value_that_is_also_the_null_text_is_refused() -> None:
    with pytest.raises(ValueError, match="also the text of NULL"):
        source(no_sup_value="NULL", null_value="NULL")
