"""Snapshot file names and locations: the date in a name, and an s3:// snapshot read through a local copy."""

from __future__ import annotations

from datetime import date

import pytest

from lakehouse.config import SnapshotDate
from lakehouse.errors import InputError
from lakehouse.sources.snapshot import date_from_name, date_from_path, file_name, local_copy


@pytest.mark.parametrize(
    ("name", "day"),
    [
        ("OPA_CE_DAILY_PUBLIC_2026-11-23.zip", date(2026, 11, 23)),
        ("OPA_CE_DAILY_PUBLIC_20261123.JSON", date(2026, 11, 23)),
        ("DAC_NationalDownloadableFile_2026-03-01.csv", date(2026, 3, 1)),
        ("PPEF_Enrollment_Extract_2025.10.01.csv", date(2025, 10, 1)),  # as data.cms.gov names PECOS files
        ("PPEF_Reassignment_Extract_2025_10_01.csv", date(2025, 10, 1)),
    ],
)
def test_the_date_comes_from_the_file_name(name, day):
    assert date_from_name(name, SnapshotDate()) == day


@pytest.mark.parametrize(
    ("path", "day"),
    [
        ("/landing/pecos/2026-10-31/DAC_NationalDownloadableFile_2026-11-01.csv", date(2026, 11, 1)),  # the name's
        ("/landing/pecos/2026-11-01/DAC_NationalDownloadableFile.csv", date(2026, 11, 1)),
        ("file:/landing/pecos/20261101/DAC_NationalDownloadableFile.csv", date(2026, 11, 1)),
        ("s3://landing/pecos/2026-11-01/DAC_NationalDownloadableFile.csv", date(2026, 11, 1)),
    ],
)
def test_a_name_without_a_date_is_dated_by_its_folder(path, day):
    assert date_from_path(path, SnapshotDate()) == day


@pytest.mark.parametrize(
    ("path", "day"),
    [
        # Found by review: with `.` and `_` between the parts, digits before a date read as one and hid the folder's.
        ("pecos/2026-11-01/NPPES_Data_Dissemination_110926_111526_Weekly.csv", date(2026, 11, 1)),
        ("pecos/2026-11-01/DAC_123456_01.csv", date(2026, 11, 1)),
        ("pecos/2026-11-01/data_1000_10_10rows.csv", date(2026, 11, 1)),  # not year 1000
        ("x/extract_000001_2026-11-02.csv", date(2026, 11, 2)),  # a sequence number before the name's date
        ("x/v2.1_2026_11_03.csv", date(2026, 11, 3)),
        # Found by the next review: a match inside a run of digits made dates of NPPES weeks (1924-02-25, 2224-01-28).
        ("pecos/2026-11-04/NPPES_Data_Dissemination_021924_022524_Weekly.csv", date(2026, 11, 4)),
        ("pecos/2026-11-04/NPPES_Data_Dissemination_012224_012824_Weekly.csv", date(2026, 11, 4)),
        ("pecos/2026-11-04/Enrollment_11012026_0930.csv", date(2026, 11, 4)),
        ("x/x_20261123120000.csv", date(2026, 11, 23)),
    ],
)
def test_digits_that_are_no_date_neither_date_a_file_nor_hide_its_folders_date(path, day):
    assert date_from_path(path, SnapshotDate()) == day


@pytest.mark.parametrize(
    ("path", "day"),
    [
        # Found by review: NPPES names its monthly file by the day its data begin and the release's day; the first
        # date made every month's file one of 2005-05-23 (the first applied with that date, every later one refused).
        ("pecos/npidata_pfile_20050523-20251012.csv", date(2025, 10, 12)),
        ("pecos/2025-10-12/endpoint_pfile_20050523-20251012.csv", date(2025, 10, 12)),  # the name's, as always
        ("x/claims_2026-11-01_to_2026-11-30.csv", date(2026, 11, 30)),
        ("x/claims_2026-11-01..2026-11-30.csv", date(2026, 11, 30)),
        # Two dates that are no period: the first dates the file.
        ("x/export_2026-11-23_2026-11-01.csv", date(2026, 11, 23)),  # the second before it
        ("x/report_2026-11-01_generated_2026-11-02.csv", date(2026, 11, 1)),  # words between them
        ("x/report_2026-11-01-2026-02-30.csv", date(2026, 11, 1)),  # no valid second date
        # Found by the next review: a day and a time (DMS's own names), a release and a download date.
        ("x/extract_20261101-203510123.csv", date(2026, 11, 1)),
        ("x/extract_20261101_203510123.csv", date(2026, 11, 1)),
        ("pecos/DAC_2026-11-01_20261105.csv", date(2026, 11, 1)),
    ],
)
def test_a_period_in_a_name_dates_the_file_by_its_end(path, day):
    assert date_from_path(path, SnapshotDate()) == day


def test_a_pattern_that_matches_nothing_everywhere_ends_and_says_so():
    """Found by review: a pattern whose groups may be empty matched empty text at the end of the name for ever."""
    with pytest.raises(InputError, match="no date in its name"):
        date_from_path("pecos/DAC_NationalDownloadableFile.csv", SnapshotDate(pattern=r"(\d*)(\d*)(\d*)"))
    setting = SnapshotDate(pattern=r"(\d{0,4})-?(\d{0,2})-?(\d{0,2})")
    assert date_from_path("pecos/2026-11-01/DAC_NationalDownloadableFile.csv", setting) == date(2026, 11, 1)


def test_a_path_without_a_date_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"no date in its name.*a folder named by its date"):
        date_from_path("s3://landing/pecos/DAC_NationalDownloadableFile.csv", SnapshotDate())


def test_a_name_without_a_date_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"no date in its name.*date\.pattern"):
        date_from_name("OPA_CE_DAILY_PUBLIC.zip", SnapshotDate())


@pytest.mark.parametrize(("kind", "offers_content"), [("csv", False), ("opais", True), (None, False)])
def test_a_name_without_a_date_is_answered_only_with_what_its_feed_kind_accepts(kind, offers_content):
    """Found by review: the hint offered `date.source: content` to CSV feeds too, which the configuration refuses
    for them; only a 340B feed is offered it."""
    with pytest.raises(InputError, match=r"no date in its name.*date\.pattern") as caught:
        date_from_path("s3://landing/pecos/DAC_NationalDownloadableFile.csv", SnapshotDate(), kind=kind)
    assert ("date.source: content" in str(caught.value)) is offers_content


def test_an_impossible_date_is_refused():
    with pytest.raises(InputError, match="not a valid date"):
        date_from_name("export_2026-02-30.zip", SnapshotDate())


def test_file_names_are_taken_as_spark_lists_them_never_decoded():
    """Spark's file listing gives paths as written (a space, not %20): a key's own `%2B` must stay."""
    assert file_name("s3://landing/opais/OPA CE_2026-01-01 v%2B1.zip") == "OPA CE_2026-01-01 v%2B1.zip"
    assert file_name("file:/data/landing/a.json") == "a.json"


def test_an_s3_snapshot_is_read_from_a_local_copy_that_is_removed_after(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)  # what the engine's own client follows
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="landing")
    s3.put_object(Bucket="landing", Key="opais/OPA_CE_DAILY_PUBLIC_2026-11-23.zip", Body=b"PK\x03\x04 bytes")
    with local_copy("s3://landing/opais/OPA_CE_DAILY_PUBLIC_2026-11-23.zip") as path:
        assert path.name == "OPA_CE_DAILY_PUBLIC_2026-11-23.zip"
        assert path.read_bytes() == b"PK\x03\x04 bytes"
    assert not path.exists()


def test_an_s3_snapshot_is_digested_and_its_text_checked_as_it_streams(aws, monkeypatch):
    """The SHA-256 of the log and the encoding check of a CSV feed read an S3 object in chunks, a .gz decompressed."""
    import gzip
    import hashlib

    from lakehouse.sources.csv_encoding import text_kind
    from lakehouse.sources.snapshot import file_digest

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="landing")
    texts = {"utf8.csv.gz": "npi,name\n1,MUÑOZ\n".encode(), "cp1252.csv.gz": "npi,name\n1,MUÑOZ\n".encode("cp1252")}
    for name, text in texts.items():
        s3.put_object(Bucket="landing", Key=f"pecos/{name}", Body=gzip.compress(text))
    stored = s3.get_object(Bucket="landing", Key="pecos/utf8.csv.gz")["Body"].read()
    assert file_digest("s3://landing/pecos/utf8.csv.gz") == hashlib.sha256(stored).hexdigest()
    assert text_kind("s3://landing/pecos/utf8.csv.gz") == "utf-8"
    assert text_kind("s3://landing/pecos/cp1252.csv.gz") == "other"


def test_a_file_is_utf8_text_only_with_characters_beyond_ascii_that_decode(tmp_path):
    """ASCII reads alike in every encoding; a UTF-8 character cut by the end of the file is the cut check's."""
    from lakehouse.sources.csv_encoding import text_kind

    cases = {
        "ascii": b"npi,name\n1,MUNOZ\n",
        "utf-8": "1,MUÑOZ\n1,Zoë\n".encode(),
        "other": "1,MUÑOZ\n".encode("cp1252"),
    }
    for kind, data in cases.items():
        (tmp_path / kind).write_bytes(data)
        assert text_kind(str(tmp_path / kind)) == kind
    (tmp_path / "cut").write_bytes("1,MUÑOZ\n1,☃".encode()[:-1])
    assert text_kind(str(tmp_path / "cut")) == "utf-8"
    # Found by review: a BOM before ASCII (Excel's "CSV UTF-8") made a windows-1252 feed refuse a file it had read.
    (tmp_path / "bom").write_bytes(b"\xef\xbb\xbfnpi,name\n1,MUNOZ\n")
    assert text_kind(str(tmp_path / "bom")) == "ascii"
    (tmp_path / "bom-utf8").write_bytes("\ufeffnpi,name\n1,MUÑOZ\n".encode())
    assert text_kind(str(tmp_path / "bom-utf8")) == "utf-8"


def test_an_unknown_scheme_is_refused():
    with pytest.raises(InputError, match="cannot read gs://"), local_copy("gs://bucket/a.zip"):
        pass


def test_snapshot_files_are_ordered_by_the_date_in_their_names_never_their_listing_or_file_times():
    from lakehouse.sources.snapshot import snapshot_order

    paths = [
        "s3://landing/opais/OPA_CE_DAILY_PUBLIC_2026-11-23.zip",
        "s3://landing/opais/OPA_CE_DAILY_PUBLIC_20261122.zip",
        "s3://landing/opais/undated.zip",
        "s3://landing/opais/OPA_CE_DAILY_PUBLIC_2026-11-21.zip",
    ]

    ordered = sorted(paths, key=lambda p: snapshot_order(p, SnapshotDate()))

    assert [p.rsplit("/", 1)[1] for p in ordered] == [
        "OPA_CE_DAILY_PUBLIC_2026-11-21.zip",
        "OPA_CE_DAILY_PUBLIC_20261122.zip",
        "OPA_CE_DAILY_PUBLIC_2026-11-23.zip",
        "undated.zip",  # after the dated ones: it fails the run with its message
    ]
