"""Files whose lines end in a mix of LF and CRLF (pieces concatenated, a hand edit in Excel): every record reads with
the values the file holds, in a CSV snapshot (Spark's reader) and in a DMS CSV file (Python's).

Spark's multi-line CSV reader takes its line separator from the file's first line: after a header ending in LF,
each CRLF record kept a carriage return at the end of its last value (an empty one became '\\r'); after a header
ending in CRLF, the records ending in LF ran together into one malformed record; and taking CRLF, it read a quoted
value's CRLF as LF.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from chispa import assert_df_equality

from lakehouse.apply.snapshot import apply_snapshot
from lakehouse.errors import InputError
from lakehouse.sources.csv_snapshot import load_csv_snapshot
from tests.test_csv_snapshot import A_BOSTON, B_SOLO, C_DALLAS, HEADER, pecos_config
from tests.test_dms_files import LOAD, parse, source

NAME = "DAC_NationalDownloadableFile_2026-11-01.csv"
B_NO_ADDRESS = [*B_SOLO[:-1], ""]  # no adrs_id, a key part: null_key, never a key of its own


def line(row: list[str]) -> str:
    """One record's text without its line end (a value holding CR or LF quoted, as the writer quotes them)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(row)
    return out.getvalue().removesuffix("\r\n")


def write_lines(path: Path, lines: list[tuple[list[str], str]]) -> Path:
    """Each record with its own line end: (fields, "\\n" or "\\r\\n"); .gz compressed by the name."""
    data = "".join(line(row) + end for row, end in lines).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def loaded(spark, root: Path, path: Path, **feed: object):
    """The file's rows as the snapshot load reads them: every business column, and why a row is not applied."""
    config = pecos_config(root, **feed)
    snapshot = load_csv_snapshot(spark, config.snapshots["clinicians"], str(path), config.tables["clinicians"])
    rows = snapshot.tables["clinicians"]
    return rows.select(*config.snapshots["clinicians"].columns, "_reason")


def expected(spark, rows: list[tuple[list[str], str | None]]):
    """Rows as the snapshot load gives them: an empty value NULL, and the reason a row is quarantined."""
    schema = ", ".join(f"{c} string" for c in [*pecos_config(Path(".")).snapshots["clinicians"].columns, "_reason"])
    return spark.createDataFrame([(*[v or None for v in row], reason) for row, reason in rows], schema)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_rows_ending_in_crlf_after_a_header_ending_in_lf_keep_no_carriage_return(spark, tmp_path, suffix):
    path = write_lines(
        tmp_path / (NAME + suffix),
        [(HEADER, "\n"), (A_BOSTON, "\r\n"), (B_NO_ADDRESS, "\r\n"), (C_DALLAS, "\n")],
    )

    rows = loaded(spark, tmp_path, path)

    want = expected(spark, [(A_BOSTON, None), (B_NO_ADDRESS, "null_key"), (C_DALLAS, None)])
    assert_df_equality(rows, want, ignore_row_order=True)


def test_rows_ending_in_lf_after_a_header_ending_in_crlf_are_read_one_by_one(spark, tmp_path):
    path = write_lines(tmp_path / NAME, [(HEADER, "\r\n"), (A_BOSTON, "\n"), (B_SOLO, "\n"), (C_DALLAS, "\r\n")])

    rows = loaded(spark, tmp_path, path)

    assert_df_equality(
        rows, expected(spark, [(A_BOSTON, None), (B_SOLO, None), (C_DALLAS, None)]), ignore_row_order=True
    )


@pytest.mark.parametrize("ends", [("\r\n", "\r\n", "\r\n"), ("\n", "\r\n", "\n")], ids=["crlf", "mixed"])
def test_a_quoted_line_break_keeps_the_line_break_the_file_has(spark, tmp_path, ends):
    """A value's CRLF was read as LF in a CRLF file (and LF as LF): the value changed with nothing said."""
    two_lines = [*A_BOSTON[:6], "CITY CARDIOLOGY\r\nSUITE 200", *A_BOSTON[7:]]
    one_lf = [*B_SOLO[:3], "Diaz\nJr", *B_SOLO[4:]]
    header_end, a_end, b_end = ends
    path = write_lines(tmp_path / NAME, [(HEADER, header_end), (two_lines, a_end), (one_lf, b_end)])

    rows = loaded(spark, tmp_path, path)

    assert_df_equality(rows, expected(spark, [(two_lines, None), (one_lf, None)]), ignore_row_order=True)


def test_a_short_record_ending_in_crlf_is_quarantined_with_its_text_and_no_carriage_return(spark, tmp_path):
    short = B_SOLO[:5]  # up to provider_first_name
    path = write_lines(tmp_path / NAME, [(HEADER, "\n"), (A_BOSTON, "\n"), (short, "\r\n")])
    config = pecos_config(tmp_path)

    rows = load_csv_snapshot(spark, config.snapshots["clinicians"], str(path), config.tables["clinicians"])

    quarantined = rows.tables["clinicians"].where("_reason IS NOT NULL")
    columns = quarantined.select("npi", "provider_first_name", "zip_code", "_reason", "_raw")
    assert [tuple(r) for r in columns.collect()] == [(B_SOLO[0], "Bo", None, "malformed_record", line(short))]


def test_the_same_rows_with_mixed_line_ends_change_nothing_the_day_after_an_lf_file(spark, tmp_path):
    """Before, day 2 updated A and C to a key ending in CR (an insert and a delete each) or, its header ending in
    CRLF, read as one malformed record and refused for its deletes."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    rows = [A_BOSTON, B_SOLO, C_DALLAS]
    day1 = write_lines(folder / NAME, [(HEADER, "\n"), *[(r, "\n") for r in rows]])
    first = apply_snapshot(spark, config, "clinicians", str(day1))
    assert (first.metrics[0].inserted, first.metrics[0].quarantined) == (3, 0)
    for day, header_end in (("02", "\n"), ("03", "\r\n")):
        ends = [(A_BOSTON, "\r\n"), (B_SOLO, "\n"), (C_DALLAS, "\r\n")]
        path = write_lines(folder / NAME.replace("-01", f"-{day}"), [(HEADER, header_end), *ends])
        (m,) = apply_snapshot(spark, config, "clinicians", str(path)).metrics
        assert (m.inserted, m.updated, m.deleted, m.quarantined) == (0, 0, 0, 0), day


@pytest.mark.parametrize(("feed_encoding", "file_encoding"), [("auto", "cp1252"), ("UTF-16", "utf-16")])
def test_line_ends_are_found_in_the_encoding_checks_pass_or_in_the_files_own_encoding(
    spark, tmp_path, feed_encoding, file_encoding
):
    """`encoding: auto` reads the file once on the driver for its encoding: the line ends are found in that pass. A
    UTF feed's file is not checked, so it is read for its line ends alone; in UTF-16 a CRLF is four bytes."""
    munoz = [*B_SOLO[:3], "MUÑOZ", *B_SOLO[4:]]
    text = "".join(line(r) + e for r, e in [(HEADER, "\r\n"), (A_BOSTON, "\n"), (munoz, "\r\n")])
    path = tmp_path / NAME
    path.write_bytes(text.encode(file_encoding))

    rows = loaded(spark, tmp_path, path, encoding=feed_encoding)

    assert_df_equality(rows, expected(spark, [(A_BOSTON, None), (munoz, None)]), ignore_row_order=True)


def test_a_quoted_last_value_ending_in_a_carriage_return_refuses_a_file_with_crlf(spark, tmp_path):
    """`"...\\r"` at the end of a record reads like an unquoted value and a CRLF line end: its \\r cannot be told
    from one, so a file with CRLF line ends is refused, naming the line; with LF ends only it reads as written."""
    cr_last = [*B_SOLO[:-1], "TX7330B1\r"]
    path = write_lines(tmp_path / NAME, [(HEADER, "\r\n"), (A_BOSTON, "\r\n"), (cr_last, "\n")])
    assert b'"TX7330B1\r"\n' in path.read_bytes()

    with pytest.raises(InputError) as refused:
        loaded(spark, tmp_path, path)

    message = str(refused.value)
    assert NAME in message and "line 3" in message and "nothing was written" in message and "LF" in message

    write_lines(path, [(HEADER, "\n"), (A_BOSTON, "\n"), (cr_last, "\n")])
    rows = loaded(spark, tmp_path, path)
    assert_df_equality(rows, expected(spark, [(A_BOSTON, None), (cr_last, None)]), ignore_row_order=True)


# --- DMS CSV files (Python's csv module, line by line): mixed ends were already read right; these keep it so ------


def dms_rows(text: str, **settings) -> list[tuple]:
    rows = parse(LOAD, text, source(**settings))
    return [(r.get("_reason"), r.get("id"), r.get("name"), r.get("BI_id")) for r in rows]


DMS_HEADER = "ts,id,name,score,seq,BI_id"


@pytest.mark.parametrize(("header_end", "row_end"), [("\n", "\r\n"), ("\r\n", "\n")])
def test_a_dms_file_with_a_header_and_rows_ending_differently_reads_every_value(header_end, row_end):
    text = f"{DMS_HEADER}{header_end}t1,1,Ann,9.5,s1,7{row_end}t2,2,Bo,1.0,s2,{row_end}t3,3,Cy,2.0,s3,9\n"

    assert dms_rows(text, header=True) == [(None, "1", "Ann", "7"), (None, "2", "Bo", None), (None, "3", "Cy", "9")]


def test_a_dms_value_keeps_its_quoted_line_break_and_its_quoted_carriage_return_at_the_end():
    text = 't1,1,"A\r\nB",9.5,s1,"x\r"\r\nt2,2,"C\nD",1.0,s2,"y\r"\n'

    assert dms_rows(text) == [(None, "1", "A\r\nB", "x\r"), (None, "2", "C\nD", "y\r")]


def test_a_dms_record_ending_in_a_lone_carriage_return_is_quarantined_with_the_next_not_merged_silently():
    """DMS ends records with LF or CRLF: a lone CR is data, so two records it would separate are one that has too
    many fields, quarantined with their text."""
    assert dms_rows("t1,1,Ann,9.5,s1,7\rt2,2,Bo,1.0,s2,8\n") == [("schema_drift", None, None, None)]


def test_a_file_with_carriage_return_line_ends_and_a_line_feed_inside_quotes_reads_as_before(spark, tmp_path):
    """Old Mac line ends (CR): the reader's own pick, as before (forcing LF for the quoted line feed read it whole)."""
    moved = [*A_BOSTON[:3], "LEE\nSMITH", *A_BOSTON[4:]]
    path = write_lines(tmp_path / NAME, [(HEADER, "\r"), (moved, "\r"), (C_DALLAS, "\r")])

    rows = loaded(spark, tmp_path, path)

    assert_df_equality(rows, expected(spark, [(moved, None), (C_DALLAS, None)]), ignore_row_order=True)


@pytest.mark.parametrize(
    ("encoding", "codec", "options", "crlf"),
    [
        ("windows-31j", "cp932", {"lineSep": "\n"}, True),  # Java's name only: CR, LF, quote are ASCII bytes in it
        ("UnicodeLittleUnmarked", "utf-16-le", {"lineSep": "\n"}, True),  # Java's UTF-16LE: decoded as such
        ("x-UTF-16LE", "utf-16-le", {"lineSep": "\n"}, True),
        ("x-UTF-32BE", "utf-32-be", {"lineSep": "\n"}, True),
    ],
)
def test_line_ends_are_found_in_encodings_only_java_names(encoding, codec, options, crlf):
    """A header ending in LF, a record in CRLF: a wide encoding's bytes cannot be scanned as latin-1 (its CRLF is
    CR NUL LF NUL: LF forced, the CR left on the last value), so Java's names of UTF-16 and UTF-32 are decoded."""
    from lakehouse.sources.csv_encoding import LineEnds
    from lakehouse.sources.csv_snapshot import line_end_options

    ends = LineEnds(encoding)
    ends.feed("npi,name\n1,山田\r\n".encode(codec))

    assert line_end_options(ends.finish("unused.csv"), NAME, table="clinicians") == options
    assert ends.crlf is crlf


@pytest.mark.parametrize(
    ("encoding", "utf"),
    [("UnicodeLittle", True), ("x-UTF-32BE", True), ("UTF-16", True), ("windows-31j", False), ("latin1", False)],
)
def test_javas_names_of_utf_16_and_32_are_not_checked_as_single_byte_encodings(encoding, utf):
    """A feed in UTF-16 under Java's name is not put to the single-byte feeds' UTF-8 check (its bytes are no UTF-8)."""
    from lakehouse.sources.csv_encoding import is_utf

    assert is_utf(encoding) is utf
