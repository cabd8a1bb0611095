"""Is there anything new for a file-stream query? Answered from the landing folder and the checkpoint, without Spark.

A file-stream query records every file it takes in its checkpoint's source log, `sources/0/`: one file
per micro-batch (`<n>`) and, every few batches, a compaction of all earlier ones (`<n>.compact`), each
a `v1` line and then one JSON line per file (`{"path": "file:///…", "timestamp": …, "batchId": n}`). A
query has nothing new when the last batch it planned was committed and every file its source would list
is in that log: then starting it would only find no file. `lakehouse run` asks this first, so a table
with nothing new costs a directory listing, not a streaming query.

Anything this module cannot read with certainty (a path that is not local, a log version it does not
know, a checkpoint that does not exist yet) is answered `None`: start the query, which always knows.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

LOG_VERSION = "v1"
_BATCH_FILE = re.compile(r"^(\d+)(\.compact)?$")


@dataclass(frozen=True)
class Pending:
    """What a query would find if it started now."""

    new_files: int  # files in the folder that the checkpoint has not taken
    unfinished: bool  # a batch was planned but not committed: the next start replays it

    @property
    def nothing_new(self) -> bool:
        return self.new_files == 0 and not self.unfinished

    def describe(self) -> str:
        if self.unfinished:
            return "an unfinished batch to replay"
        return "nothing new" if self.nothing_new else f"{self.new_files} new file(s)"


def local_path(path: str) -> Path | None:
    """The local file-system path of `path` (a plain path or a file: URI), or None for other schemes."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if "://" in path or (parsed.scheme and len(parsed.scheme) > 1):  # s3://, hdfs://; not a Windows drive letter
        return None
    return Path(os.path.abspath(path))


def expand_braces(pattern: str) -> list[str]:
    """`*.{zip,json}` → [`*.zip`, `*.json`] (the Hadoop glob syntax of Spark's `pathGlobFilter`)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for option in match.group(1).split(",") for p in expand_braces(head + option + tail)]


def _hidden(name: str) -> bool:
    """Names Spark's file index skips: `_x` (not `k=v` partition folders), `.x`, and files still being copied."""
    return (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")


def landed_files(folder: Path, *, glob: str | None = None) -> set[str]:
    """Every file under `folder` a file source would take, as absolute paths (all levels: a superset is safe)."""
    patterns = expand_braces(glob) if glob else None
    found = set()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        for name in files:
            if _hidden(name) or (patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns)):
                continue
            found.add(os.path.join(root, name))
    return found


def unread_files(folder: str, glob: str) -> list[str]:
    """Names of the files in a local landing `folder` that a query reading `glob` never takes (a `.zip` where CSVs
    are read): said in the run's notes, never passed over in silence. Empty for a folder that is not local."""
    landing = local_path(folder)
    if landing is None or not landing.is_dir() or any(c in folder for c in "*?[{"):
        return []
    patterns = expand_braces(glob)
    names = (os.path.basename(f) for f in landed_files(landing))
    return sorted(n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns))


def _numbered(folder: Path) -> dict[int, Path]:
    """`<n>` and `<n>.compact` files of a checkpoint log folder, by batch number."""
    if not folder.is_dir():
        return {}
    out = {}
    for entry in folder.iterdir():
        match = _BATCH_FILE.match(entry.name)
        if match:
            out[int(match.group(1))] = entry
    return out


def _lines(path: Path) -> list[str] | None:
    """The entries of one log file, or None if its version is not one this module knows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != LOG_VERSION:
        return None
    return [line for line in lines[1:] if line.strip()]


def taken_files(source_log: Path) -> tuple[set[str], int] | None:
    """The files a file source's log holds (absolute paths) and its last batch number (-1: none)."""
    batches = _numbered(source_log)
    if not batches:
        return set(), -1
    compacted = [n for n, p in batches.items() if p.name.endswith(".compact")]
    start = max(compacted, default=-1)
    files = set()
    for number in sorted(n for n in batches if n >= start):
        entries = _lines(batches[number])
        if entries is None:
            return None
        for entry in entries:
            path = local_path(json.loads(entry)["path"])
            if path is None:
                return None
            files.add(str(path))
    return files, max(batches)


def _committed_source_offset(checkpoint: Path) -> tuple[int, bool] | None:
    """The file source offset of the last committed batch (-1: none), and whether a later batch is planned."""
    offsets, commits = _numbered(checkpoint / "offsets"), _numbered(checkpoint / "commits")
    last_planned, last_committed = max(offsets, default=-1), max(commits, default=-1)
    if last_committed < 0:
        return -1, last_planned >= 0
    entries = _lines(offsets[last_committed]) if last_committed in offsets else None
    if entries is None or len(entries) < 2:  # the metadata line, then one offset per source
        return None
    try:
        offset = json.loads(entries[1])
    except ValueError:  # "-": the source had no offset in that batch
        return None
    if not isinstance(offset, dict) or "logOffset" not in offset:
        return None
    return int(offset["logOffset"]), last_planned > last_committed


def pending(folder: str, checkpoint: str, *, glob: str | None = None) -> Pending | None:
    """What a file-stream query over `folder` with `checkpoint` would find; None when it cannot be told."""
    landing, root = local_path(folder), local_path(checkpoint)
    if landing is None or root is None or not (root / "offsets").is_dir() or any(c in folder for c in "*?[{"):
        return None  # not local, never started, or a glob (a run's closed folders): the query knows
    committed = _committed_source_offset(root)
    taken = taken_files(root / "sources" / "0")
    if committed is None or taken is None:
        return None
    offset, planned = committed
    files, last_logged = taken
    new = landed_files(landing, glob=glob) - files if landing.is_dir() else set()
    return Pending(new_files=len(new), unfinished=planned or last_logged > offset)


def table_version(path: str) -> int | None:
    """The newest version of the local Delta table at `path` (from its log's file names), or None."""
    local = local_path(path)
    if local is None:
        return None
    versions = [int(p.stem) for p in (local / "_delta_log").glob("*.json") if p.stem.isdigit()]
    return max(versions, default=None)
