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


def test_a_path_without_a_date_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"no date in its name.*a folder named by its date"):
        date_from_path("s3://landing/pecos/DAC_NationalDownloadableFile.csv", SnapshotDate())


def test_a_name_without_a_date_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"no date in its name.*date\.pattern"):
        date_from_name("OPA_CE_DAILY_PUBLIC.zip", SnapshotDate())


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
