"""Flatten a large 340B export in several processes, each reading a byte range of it.

Flattening the entities into rows is most of a parse, in Python, on one core. So the JSON is cut into `n`
equal byte ranges and `n` processes (this one and n - 1 workers) each decode and flatten the entities of
one range: the first from the document's start, each other from the first entity it recognizes after its
range's first byte, and each stops before the first entity that starts at or after the next range's first
byte. Where an entity starts is guessed, not known, so the split is proven before it is used: the first range
starts at the true start; if each range's next entity is exactly where the following range began, that start
was true too, and the ranges hold every entity once, in file order. The flatteners are then appended in order
(a key seen in an earlier range is the error one process would have raised).

When the ranges do not meet (an entity not recognized: a key missing, a file that is not what it seems), a
range has a problem, or a worker fails, the file is flattened the older way, which needs no guess: each
process reads the whole file and flattens every n-th entity. A bad file is thus always reported as one process
would report it: its first problem. A ZIP member cannot be seeked: a worker inflates and drops the bytes
before its range, in C, which costs far less than decoding them.

The workers are fresh interpreters (`python -m lakehouse.sources.opais_parts`), which import nothing of the
caller's program; their flatteners come back pickled on stdout.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lakehouse
from lakehouse.errors import SnapshotError
from lakehouse.sources.json_items import Span, gap
from lakehouse.sources.opais import _snapshot_error, flatten, flatten_range, range_starts
from lakehouse.sources.opais_flatten import BadValue, Flattener

if TYPE_CHECKING:
    from lakehouse.sources.opais import _Ticker

LOG = logging.getLogger("lakehouse.opais")
# Exports of at least this many JSON bytes are flattened by one process per core, at most MAX_PARTS: starting
# a worker costs about a second, flattening about 30 ms a megabyte.
PARALLEL_BYTES = 32 << 20
MAX_PARTS = 4


def parts_for(total_bytes: int) -> int:
    """How many processes flatten an export of `total_bytes` JSON bytes."""
    return 1 if total_bytes < PARALLEL_BYTES else max(1, min(MAX_PARTS, os.cpu_count() or 1))


def _start(path: Path, file: str, chunk_rows: int, part: int, parts: int, how: str) -> subprocess.Popen[bytes]:
    root = str(Path(lakehouse.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "lakehouse.sources.opais_parts", how, str(path), file, str(chunk_rows)]
    return subprocess.Popen([*command, str(part), str(parts)], stdout=subprocess.PIPE, env=env)


def _result(worker: subprocess.Popen[bytes], part: int, parts: int) -> Any:
    """What the worker sent back, or None (and a warning) if it failed."""
    try:
        result, problem = pickle.load(worker.stdout), None  # type: ignore[arg-type]  # read as it comes
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        result, problem = None, f"unreadable result ({exc})"
    worker.communicate()
    if worker.returncode != 0:
        result, problem = None, f"exit code {worker.returncode}"
    if problem is not None:
        LOG.warning("opais: the worker for part %d of %d failed (%s)", part, parts, problem)
    return result


def _caught(read: Callable[..., Any], *args: Any) -> Any:
    """read(*args), or the SnapshotError it raised (a part's problem is weighed against the others')."""
    try:
        return read(*args)
    except SnapshotError as exc:
        return exc


def _start_workers(path: Path, file: str, chunk_rows: int, parts: int, how: str) -> dict | None:
    """Workers 1..parts-1, or None (and a warning) if they cannot be started."""
    try:
        return {k: _start(path, file, chunk_rows, k, parts, how) for k in range(1, parts)}
    except OSError as exc:
        LOG.warning("opais: cannot start worker processes (%s); flattening in this one", exc)
        return None


def flatten_in_parts(path: Path, file: str, chunk_rows: int, parts: int, ticker: _Ticker) -> Flattener:
    """Flatten the export in `parts` processes and merge them: by byte ranges when they prove to meet, else
    every n-th entity each. A problem in the file raises SnapshotError: the first one in the file."""
    workers = _start_workers(path, file, chunk_rows, parts, "range")
    if workers is None:
        return flatten(path, file, chunk_rows, 0, 1, ticker)
    first_range = range_starts(ticker.total, parts)[1]
    ticker.scale = ticker.total / first_range if first_range else 1.0
    try:
        results = [_caught(flatten_range, path, file, chunk_rows, 0, parts, ticker)]
    finally:
        ticker.scale = 1.0
    results += [_result(worker, k, parts) for k, worker in workers.items()]
    reason = _unproven(results)
    if reason is None:
        return _append(results, file)
    LOG.info("opais: %s; every process reads the whole file instead", reason)
    return _flatten_every_nth(path, file, chunk_rows, parts, ticker)


def _unproven(results: list[Any]) -> str | None:
    """Why the byte ranges' results cannot be used as the whole file's, or None when they can."""
    for k, result in enumerate(results):
        if result is None:
            return f"the worker of byte range {k} failed"
        if isinstance(result, SnapshotError):
            return f"byte range {k} has a problem"
    return gap([span for _flattener, span in results])


def _append(results: list[tuple[Flattener, Span]], file: str) -> Flattener:
    whole = results[0][0]
    for flattener, _span in results[1:]:
        try:
            whole.append(flattener)
        except BadValue as exc:
            raise _snapshot_error(exc, file, whole, whole.positions[-1]) from None
    return whole


def _flatten_every_nth(path: Path, file: str, chunk_rows: int, parts: int, ticker: _Ticker) -> Flattener:
    workers = _start_workers(path, file, chunk_rows, parts, "every")
    if workers is None:
        return flatten(path, file, chunk_rows, 0, 1, ticker)
    mine: Flattener | SnapshotError = _caught(flatten, path, file, chunk_rows, 0, parts, ticker)
    results = []
    for k, worker in workers.items():
        result = _result(worker, k, parts)
        if result is None:
            LOG.warning("opais: flattening part %d of %d here", k, parts)
            result = _caught(flatten, path, file, chunk_rows, k, parts, None)
        results.append(result)
    problems = [r for r in [mine, *results] if isinstance(r, SnapshotError)]
    if problems:
        raise min(problems, key=lambda p: p.entity_index if p.entity_index is not None else -1)
    for other in results:
        mine.merge(other)  # type: ignore[union-attr, arg-type]
    return mine  # type: ignore[return-value]


def main(argv: list[str]) -> None:
    """Worker: flatten one part ("range": a byte range, "every": every n-th entity) and write the result (the
    flattener and its span, or the SnapshotError) to stdout, pickled."""
    how, path, file, chunk_rows, part, parts = argv
    read = flatten_range if how == "range" else flatten
    result = _caught(read, Path(path), file, int(chunk_rows), int(part), int(parts), None)
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main(sys.argv[1:])
