"""Flatten a large 340B export in several processes: each reads the whole file, and flattens its share of it.

Reading the JSON is the cheap part of a parse; flattening the entities into rows is most of it, in Python, on
one core. So `n` processes each read the file and flatten every n-th entity (`Flattener` parts), and the
caller merges them. The workers are fresh interpreters (`python -m lakehouse.sources.opais_parts`), which
import nothing of the caller's program; their flatteners come back pickled on stdout. A worker that cannot
start or dies is not an error of the file: its part is flattened here instead, and a warning says so.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import lakehouse
from lakehouse.errors import SnapshotError
from lakehouse.sources.opais import flatten
from lakehouse.sources.opais_flatten import Flattener

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


def _start(path: Path, file: str, chunk_rows: int, part: int, parts: int) -> subprocess.Popen[bytes]:
    root = str(Path(lakehouse.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "lakehouse.sources.opais_parts", str(path), file, str(chunk_rows)]
    return subprocess.Popen([*command, str(part), str(parts)], stdout=subprocess.PIPE, env=env)


def _collect(worker: subprocess.Popen[bytes], path: Path, file: str, chunk_rows: int, part: int, parts: int):
    """The worker's flattener or problem; its part flattened here if the worker failed."""
    output, _ = worker.communicate()
    if worker.returncode == 0:
        try:
            return pickle.loads(output)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            problem = f"unreadable result ({exc})"
    else:
        problem = f"exit code {worker.returncode}"
    LOG.warning("opais: worker for part %d of %d failed (%s); flattening that part here", part, parts, problem)
    return _flatten_part(path, file, chunk_rows, part, parts)


def _flatten_part(path: Path, file: str, chunk_rows: int, part: int, parts: int) -> Flattener | SnapshotError:
    try:
        return flatten(path, file, chunk_rows, part, parts, None)
    except SnapshotError as exc:
        return exc


def flatten_in_parts(path: Path, file: str, chunk_rows: int, parts: int, ticker: _Ticker) -> Flattener:
    """Flatten the export in `parts` processes (this one and parts - 1 workers) and merge them. A problem in
    the file raises SnapshotError: the one of the first entity, as one process would have found first."""
    try:
        workers = {k: _start(path, file, chunk_rows, k, parts) for k in range(1, parts)}
    except OSError as exc:
        LOG.warning("opais: cannot start worker processes (%s); flattening in this one", exc)
        return flatten(path, file, chunk_rows, 0, 1, ticker)
    try:
        mine: Flattener | SnapshotError = flatten(path, file, chunk_rows, 0, parts, ticker)
    except SnapshotError as exc:
        mine = exc
    results = [_collect(worker, path, file, chunk_rows, k, parts) for k, worker in workers.items()]
    problems = [r for r in [mine, *results] if isinstance(r, SnapshotError)]
    if problems:
        raise min(problems, key=lambda p: p.entity_index if p.entity_index is not None else -1)
    for other in results:
        mine.merge(other)  # type: ignore[union-attr, arg-type]
    return mine  # type: ignore[return-value]


def main(argv: list[str]) -> None:
    """Worker: flatten one part and write the flattener (or the SnapshotError) to stdout, pickled."""
    path, file, chunk_rows, part, parts = argv
    result = _flatten_part(Path(path), file, int(chunk_rows), int(part), int(parts))
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main(sys.argv[1:])
