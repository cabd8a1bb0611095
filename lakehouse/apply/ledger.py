"""The file ledger: which file content a table has already applied, so a file delivered again is a replay.

DMS (or a person restoring a backup) can deliver the same file twice under another name. With a
change-seq column the rows of the copy have the sequences of the first delivery and change nothing;
without one (the default DMS task writes none, and maybe no timestamp either) their sequences would
differ and every change would be applied again. So a file is recognized by its content: the SHA-256
of its bytes (decompressed, so a .gz copy of a plain file is the same file), recorded per table in a
small Delta table `<lake>/<table>/ledger` with the first (batch id, file) that applied it.

A file whose content the ledger holds under another (batch id, file) is a replay: every row of it is
counted as `replayed` and nothing of it is written (its first delivery already placed each row).
The batch that first applied a content finds its own entry when Structured Streaming replays it
after a crash, and so still completes its writes. Within one batch, the first of two identical files
(LOAD files first, then by name) is applied and the other is the replay.

The rule this implies: two files with byte-identical content are one delivery. With a timestamp or
change-seq column two genuine CDC files cannot be identical (their commit times or change-seqs
differ); without either, a CDC file that repeats an earlier one byte for byte (the same rows with
the same values, e.g. a status set back and forth the same way twice) is taken as a re-delivery.
Configure TimestampColumnName to tell such files apart.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.delta_log import empty_version
from lakehouse.sources.dms_files import is_load_file
from lakehouse.tables import LEDGER_DDL, rows_frame

if TYPE_CHECKING:
    from pyspark.sql import Column, Row, SparkSession


@dataclass(frozen=True)
class BatchFiles:
    """The files of one micro-batch: which to apply (and record), which are replays of which."""

    applied: dict[str, tuple[str, int]]  # file -> (content hash, rows)
    replayed: dict[str, str]  # file -> where its content was first applied ("batch 3, 2026...csv")
    recorded: frozenset[str] = frozenset()  # applied files the ledger already holds (a batch replayed after a crash)

    @property
    def to_record(self) -> dict[str, tuple[str, int]]:
        """The applied files the ledger does not hold yet."""
        return {file: entry for file, entry in self.applied.items() if file not in self.recorded}


class LedgerIndex:
    """The contents a table's ledger holds, as 60-bit prefixes of their hashes: read once by a streaming query,
    then kept up to date by the query's own appends, so that a batch of new files (almost every batch) is told
    apart from a replay without reading the ledger (a scan of every ledger file and a Spark job, each batch).

    Only the query holding the table's lease (`lakehouse.ownership`) writes its ledger, so nothing else adds to
    it while the query runs. A prefix that matches (a replay, or a collision) reads the ledger as before; the
    index only ever says "surely new". Memory: about 60 bytes per file ever applied (60 MB for a million).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.prefixes: set[int] | None = None

    @staticmethod
    def prefix(digest: str) -> int:
        return int(digest[:15], 16)

    def may_hold(self, spark: SparkSession, hashes: list[str]) -> bool:
        """Whether the ledger may hold one of `hashes` (read on first use)."""
        from pyspark.sql import functions as F

        if self.prefixes is None:
            prefixes = F.conv(F.substring("content_sha256", 1, 15), 16, 10).cast("long")
            self.prefixes = {p for (p,) in _entries(spark, self.path, F.lit(True), [prefixes])}
        return any(self.prefix(digest) in self.prefixes for digest in hashes)

    def add(self, hashes: list[str]) -> None:
        """Take in contents this query has just recorded in the ledger."""
        if self.prefixes is not None:
            self.prefixes.update(self.prefix(digest) for digest in hashes)


def classify_files(
    spark: SparkSession,
    path: str,
    files: dict[str, tuple[str, int]],
    batch_id: int,
    index: LedgerIndex | None = None,
) -> BatchFiles:
    """Split a batch's files (file -> (content hash, rows)) into those to apply and replays of earlier ones.

    With `index` (a streaming query's), the ledger is read only when the index says it may hold one of them."""
    from pyspark.sql import functions as F

    hashes = sorted({digest for digest, _ in files.values()})
    known = {}
    if hashes and (index is None or index.may_hold(spark, hashes)):
        rows = _entries(
            spark, path, F.col("content_sha256").isin(hashes), ["content_sha256", "batch_id", "source_file"]
        )
        known = {r["content_sha256"]: (int(r["batch_id"]), r["source_file"]) for r in rows}
    applied: dict[str, tuple[str, int]] = {}
    replayed: dict[str, str] = {}
    recorded: set[str] = set()
    first: dict[str, str] = {}
    for file in sorted(files, key=lambda f: (not is_load_file(f), posixpath.basename(f), f)):
        digest, count = files[file]
        earlier = known.get(digest)
        if earlier is not None and earlier != (batch_id, file):
            replayed[file] = f"batch {earlier[0]}, {posixpath.basename(earlier[1])}"
        elif digest in first:
            replayed[file] = f"batch {batch_id}, {posixpath.basename(first[digest])}"
        else:
            first[digest] = file
            applied[file] = (digest, count)
            if earlier is not None:
                recorded.add(file)
    return BatchFiles(applied=applied, replayed=replayed, recorded=frozenset(recorded))


def _entries(spark: SparkSession, path: str, condition: Column, columns: list[str | Column]) -> list[Row]:
    """The `columns` of the ledger's entries at `path` that meet `condition`; none, without a Spark job, while the
    ledger holds no file (a table's first batch)."""
    ledger = spark.read.format("delta").load(path)  # brings the driver's snapshot up to the newest version
    if empty_version(spark, path, refresh=False) is not None:
        return []
    return ledger.where(condition).select(*columns).collect()


def record_files(spark: SparkSession, path: str, files: BatchFiles, batch_id: int) -> None:
    """Record the contents this batch applied and the ledger does not hold yet.

    An append, not a MERGE (a MERGE scans and joins the ledger, seconds per batch): `classify_files` has just
    read the entries of these contents, and only the job holding the table's lease (`lakehouse.ownership`)
    writes its ledger, so nothing can have recorded them since. A batch replayed after this append finds its
    own entries (`recorded`) and appends nothing again.
    """
    new = files.to_record
    if not new:
        return
    rows = [(digest, file, batch_id, count) for file, (digest, count) in sorted(new.items())]
    rows_frame(spark, rows, LEDGER_DDL).write.format("delta").mode("append").save(path)


# A folder that says when a file was delivered, not which file it is: a DMS date partition (DatePartitionEnabled:
# 2026/11/23, 20261123, 2026-11-23, 2026_11_23_10); the landing router's p_date=/p_hour= and version= folders.
_DATE_FOLDER = re.compile(r"^[0-9]+(?:[-_][0-9]+)*$")


def same_load_file(a: str, b: str) -> bool:
    """Whether two load files are deliveries of one file of the table: the same name, in folders one of which holds
    the other once the folders of a delivery (`_DATE_FOLDER`, `name=value`) are left out. A partitioned parallel load
    writes LOAD00000001.csv into a folder per partition: `p2/LOAD00000001.csv` is another file than
    `p1/LOAD00000001.csv`, but a load into the table's folder and one into a folder below it are two loads of it.

    >>> same_load_file("s3://b/p_hour=09/t/p2/LOAD00000001.csv", "s3://b/p_hour=10/t/p2/version=1-x/LOAD00000001.csv")
    True
    """
    (folder_a, name_a), (folder_b, name_b) = _where(a), _where(b)
    short = min(len(folder_a), len(folder_b))
    return name_a == name_b and folder_a[:short] == folder_b[:short]


def _where(file: str) -> tuple[tuple[str, ...], str]:
    parts = [p for p in file.split("/") if p and "=" not in p and not _DATE_FOLDER.match(p)]
    return tuple(parts[:-1]), parts[-1] if parts else ""


def reloaded_files(spark: SparkSession, path: str, files: BatchFiles, batch_id: int) -> dict[str, str]:
    """The batch's new LOAD files that an earlier batch, or an earlier delivery in this batch (the landing router puts
    a second version of a key under `version=<id>/`), applied with other content as the same file of the table
    (`same_load_file`): a table reload (DMS "Reload table data" writes the load again under the first load's names).
    file -> where the file was first applied.

    Told, not handled: a reload's rows sort before every CDC row (DESIGN rule 1), see the README's known limit.
    """
    from pyspark.sql import functions as F

    new = [f for f in sorted(files.to_record, key=lambda f: ("/version=" in f, f)) if is_load_file(f)]  # first first
    if not new:
        return {}
    names = sorted({posixpath.basename(file) for file in new})
    same_name = F.regexp_extract("source_file", r"([^/]*)$", 1).isin(names)
    earlier = _entries(spark, path, same_name & (F.col("batch_id") < batch_id), ["source_file", "batch_id"])
    applied = [
        (int(r["batch_id"]), r["source_file"]) for r in sorted(earlier, key=lambda r: (r["batch_id"], r["source_file"]))
    ]
    deliveries = _Deliveries()
    for b, f in applied:
        deliveries.add(f, f"batch {b}, {f}")
    found = {}
    for file in new:
        first = deliveries.first(file)
        if first:
            found[file] = first
        deliveries.add(file, f"batch {batch_id}, {file}")
    return found


class _Deliveries:
    """Load files by name and folder, in the order added: `first` finds the first one `same_load_file` as a file in
    as many lookups as the file has folders (a partitioned load has one LOAD00000001.csv per partition: thousands)."""

    def __init__(self) -> None:
        self._added = 0
        self._at: dict[tuple[str, tuple[str, ...]], tuple[int, str]] = {}  # (name, folder) -> first added there
        self._under: dict[tuple[str, tuple[str, ...]], tuple[int, str]] = {}  # (name, a folder holding it) -> first

    def add(self, file: str, label: str) -> None:
        folder, name = _where(file)
        entry, self._added = (self._added, label), self._added + 1
        self._at.setdefault((name, folder), entry)
        for depth in range(len(folder) + 1):
            self._under.setdefault((name, folder[:depth]), entry)

    def first(self, file: str) -> str | None:
        """The label of the first file added that is a delivery of `file`: in its folder, one holding it, or below."""
        folder, name = _where(file)
        found = [self._at[(name, folder[:d])] for d in range(len(folder) + 1) if (name, folder[:d]) in self._at]
        if (name, folder) in self._under:
            found.append(self._under[(name, folder)])
        return min(found)[1] if found else None
