"""Snapshot files as a Structured Streaming source, one snapshot per micro-batch, and their loading.

A snapshot folder is a file stream like a DMS folder, but only file names travel through the
stream (the content column of `binaryFile` is never selected, so Spark never reads it): a 200 MB
340B export is parsed on the driver with a streaming JSON parser, a CSV snapshot is read by Spark.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, NoReturn

from lakehouse.config import CsvSnapshotFeed, OpaisFeed, SnapshotDate
from lakehouse.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FILE_GLOBS = {"opais": "*.{zip,ZIP,json,JSON}", "csv": "*.{csv,CSV,csv.gz,CSV.gz}"}
STREAM_SCHEMA = "path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY"
DIGEST_CHUNK = 1 << 20  # bytes read at a time for a file's SHA-256


@dataclass
class LoadedSnapshot:
    """One snapshot read into DataFrames, one per table it fills, with what the reader reported."""

    file: str
    date: date
    tables: dict[str, DataFrame]
    stats: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader saw and did not take, for the run's notes


def read_snapshot_stream(spark: SparkSession, feed: OpaisFeed | CsvSnapshotFeed) -> DataFrame:
    """A streaming DataFrame of the snapshot files landing in `feed.path`: every file landed, per micro-batch.

    Only names travel (the content is never read here); the runner applies them by `snapshot_order`.
    """
    if "://" not in feed.path:
        Path(feed.path).mkdir(parents=True, exist_ok=True)
    return (
        spark.readStream.format("binaryFile")
        .schema(STREAM_SCHEMA)
        .option("pathGlobFilter", FILE_GLOBS[feed.kind])
        .option("recursiveFileLookup", "true")  # a file may land in a folder named by its date (date_from_path)
        .load(feed.path)
    )


def snapshot_order(path: str, setting: SnapshotDate, content_date: date | None = None) -> tuple[date, str, str]:
    """The order snapshot files are applied in: the date in the name, then the name (never a modification time).

    A name without a date sorts last: the dated files are applied, then it fails the run with its message.
    With `date.source: content` the date is only known after parsing: by `content_date` when given
    (`content_dates`), else such files go in name order. The whole path breaks a tie (HRSA's fixed name).
    """
    name = file_name(path)
    if setting.source == "name":
        try:
            return date_from_path(path, setting), name, path
        except InputError:
            return date.max, name, path
    return content_date or date.min, name, path


def content_dates(paths: list[str]) -> dict[str, date]:
    """The content date (newest editDate) of each 340B export, by a parse of each: for a batch of several
    content-dated files, whose names cannot order them (HRSA names every day's export alike) and which, applied
    newest first, would refuse the older ones and lose their days from history. A file that cannot be read sorts
    last (date.max), where its apply reports the problem."""
    from lakehouse.sources.opais import parse_export

    dates = {}
    for path in paths:
        try:
            with local_copy(path) as local:
                newest = parse_export(local).stats.max_edit_date
        except Exception:  # a bad file or a failed download: its apply names the problem
            newest = None
        dates[path] = newest.date() if newest else date.max
    return dates


def file_name(path: str) -> str:
    """The base name of a local path or a Hadoop path (`file:/a/b.zip`, `s3://bucket/k/b.zip`).

    Paths are as Spark's file listing gives them: not percent-encoded (a key with a space, `%2B` or `#` is written
    as it is), so nothing is decoded here or in `local_copy`."""
    return path.rstrip("/").rsplit("/", 1)[-1]


# What to do about a name without a date, by feed kind: only a 340B feed may be dated by its content.
UNDATED_HINTS = {
    "opais": (
        "rename it (e.g. OPA_CE_DAILY_PUBLIC_2026-11-23.zip), land it in a folder named by its date "
        "(opais/2026-11-23/OPA_CE_DAILY_PUBLIC.zip) or set the feed's date.pattern / date.source: content"
    ),
    "csv": (
        "rename it (e.g. DAC_NationalDownloadableFile_2026-11-01.csv), land it in a folder named by its date "
        "(pecos/2026-11-01/DAC_NationalDownloadableFile.csv) or set the feed's date.pattern (a CSV feed is dated "
        "by its name or folder only)"
    ),
    None: (
        "rename it (e.g. OPA_CE_DAILY_PUBLIC_2026-11-23.zip), land it in a folder named by its date "
        "(pecos/2026-11-01/DAC_NationalDownloadableFile.csv) or set the feed's date.pattern"
    ),
}


EARLIEST_YEAR = 1900  # digits that read as an earlier year are no snapshot's date (a sequence number, a count)


# Between the two dates of a period (NPPES's monthly `npidata_pfile_20050523-20251012.csv`): the file is of its end.
# Not `_`: a release date and a download date (`DAC_2026-11-01_20261105.csv`) are no period.
PERIOD_SEPARATOR = re.compile(r"-|\.\.|[-_ ]?to[-_ ]?", re.IGNORECASE)


def _date_in(name: str, pattern: str) -> tuple[date | None, str | None]:
    """The first valid date (from EARLIEST_YEAR on) the pattern finds in `name`, trying every start position that
    does not cut a run of digits (digits before the date, `extract_000001_2026-11-01.csv`, do not hide it; NPPES's
    `021924_022524` is no 1924 or 2224 date); else why the first match is none.

    A period's two dates (written alike, the second right after the first with `-`, `..` or `to` between them, not
    before it, and not the start of a longer run of digits: `20261101-203510123` is a day and a time) date the file
    by the period's end: NPPES names its monthly file by the day its data begin (2005-05-23) and the release's day.
    """
    regex, start, problem = re.compile(pattern), 0, None
    first: tuple[re.Match[str], date] | None = None
    while start <= len(name) and (match := regex.search(name, start)) is not None:
        start = match.start() + 1
        inside = first is not None and match.start() < first[0].end()
        if not match.group(0) or inside or (match.start() > 0 and name[match.start() - 1].isdigit()):
            continue
        found, why = _as_date(match)
        if first is not None:  # the next date after the first: the end of its period, or not
            between = name[first[0].end() : match.start()]
            whole = len(match.group(0)) == len(first[0].group(0)) and not name[match.end() : match.end() + 1].isdigit()
            ends_period = whole and found is not None and found >= first[1] and PERIOD_SEPARATOR.fullmatch(between)
            return (found if ends_period else first[1]), None
        if found is None:
            problem = problem or why
        else:
            first = (match, found)
    return (first[1], None) if first is not None else (None, problem)


def _as_date(match: re.Match[str]) -> tuple[date | None, str | None]:
    """The date a match of the pattern names (year, month, day groups), or why it names none."""
    try:
        found = date(*(int(g) for g in match.groups()))
    except (TypeError, ValueError) as exc:  # TypeError: a group of the pattern that matched nothing
        return None, f"{match.group(0)!r} is not a valid date ({exc})"
    if found.year < EARLIEST_YEAR:
        return None, f"{match.group(0)!r} is not a snapshot's date (a year before {EARLIEST_YEAR})"
    return found, None


def date_from_name(name: str, setting: SnapshotDate, *, kind: Literal["opais", "csv"] | None = None) -> date:
    """The snapshot's date from a file or folder name, per the feed's pattern (year, month, day groups).

    `kind` (the feed's) words the hint of a name without a date: only a 340B feed is offered `date.source: content`.
    """
    found, problem = _date_in(name, setting.pattern)
    if found is not None:
        return found
    return _undated(name, setting, problem, kind)


def _undated(name: str, setting: SnapshotDate, problem: str | None, kind: Literal["opais", "csv"] | None) -> NoReturn:
    """Refuse a name without a (valid) date, saying why and what to do for the feed's kind."""
    why = problem or f"no date in its name matching {setting.pattern!r}"
    raise InputError(f"snapshot file {name!r}: {why}; {UNDATED_HINTS[kind]}")


def date_from_path(path: str, setting: SnapshotDate, *, kind: Literal["opais", "csv"] | None = None) -> date:
    """The snapshot's date from its file name or, when the name has no valid one, from the name of the folder
    holding it: CMS names every release of its national file DAC_NationalDownloadableFile.csv, so one lands it as
    pecos/2026-11-01/DAC_NationalDownloadableFile.csv. `kind` as for `date_from_name`."""
    name = file_name(path)
    found, problem = _date_in(name, setting.pattern)
    folder = path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""
    if found is None and folder:
        found = _date_in(file_name(folder), setting.pattern)[0]
    if found is not None:
        return found
    return _undated(name, setting, problem, kind)


@contextmanager
def local_copy(path: str) -> Iterator[Path]:
    """A local file for `path` (a path as `file_name` takes it): the file itself, or an S3 object downloaded to a
    temporary folder."""
    scheme, sep, rest = path.partition(":")
    if not sep or "/" in scheme or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        yield Path(path)
        return
    if scheme == "file":
        yield Path("/" + rest.lstrip("/"))
        return
    if scheme not in ("s3", "s3a", "s3n"):
        raise InputError(f"snapshot {path}: cannot read {scheme}:// paths; use a local path or s3://")
    from lakehouse.aws import client

    bucket, _, key = rest.removeprefix("//").partition("/")
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-snapshot-"))
    try:
        target = folder / file_name(path)
        client("s3").download_file(bucket, key, str(target))
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def open_bytes(path: str) -> Iterator[BinaryIO]:
    """The bytes of the file at `path` (a path as `file_name` takes it) as stored, to be read in chunks: an S3 object
    streamed as it downloads (never held whole, on disk or in memory), a local file opened."""
    scheme, sep, rest = path.partition(":")
    if sep and scheme in ("s3", "s3a", "s3n"):
        from lakehouse.aws import client

        bucket, _, key = rest.removeprefix("//").partition("/")
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield body
        finally:
            body.close()
        return
    with local_copy(path) as local, local.open("rb") as f:
        yield f


def file_digest(path: str) -> str:
    """The SHA-256 (hex) of a snapshot file's bytes, read in chunks (a 200 MB export is never held in memory); an
    S3 object is streamed, not downloaded. What the feed's log keeps to tell a file delivered again from a
    different one under the same name."""
    digest = hashlib.sha256()
    with open_bytes(path) as f:
        while chunk := f.read(DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_snapshot_files(spark: SparkSession, feed: OpaisFeed | CsvSnapshotFeed) -> list[str]:
    """Every file of the feed's folder that its stream would read, as Spark's listing names them (the content is
    never read); [] when the folder does not exist."""
    from pyspark.errors import AnalysisException

    try:
        files = (
            spark.read.format("binaryFile")
            .option("pathGlobFilter", FILE_GLOBS[feed.kind])
            .option("recursiveFileLookup", "true")
            .load(feed.path)
            .select("path")
        )
        return [path for (path,) in files.collect()]
    except AnalysisException:  # no such folder (yet)
        return []


def load_snapshot(spark: SparkSession, feed: OpaisFeed | CsvSnapshotFeed, path: str, tables: dict) -> LoadedSnapshot:
    """Read one snapshot file completely into DataFrames (nothing is written here)."""
    if feed.kind == "opais":
        from lakehouse.sources.opais_load import load_opais

        return load_opais(spark, feed, path, tables)
    from lakehouse.sources.csv_snapshot import load_csv_snapshot

    return load_csv_snapshot(spark, feed, path, tables[next(iter(tables))])
