"""A progress line for work a user waits on: said only when it takes longer than a few seconds."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

AFTER_SECONDS = 2.0


@contextmanager
def progress(message: str, *, after: float = AFTER_SECONDS, stream: TextIO | None = None) -> Iterator[None]:
    """Print `message…` on stderr once the work has taken `after` seconds, then how long it took in all.

    Quick work prints nothing, so a command that answers at once stays a one-screen answer.
    """
    out = stream or sys.stderr
    started = time.monotonic()
    said = threading.Event()

    def say() -> None:
        said.set()
        print(f"{message}…", file=out, flush=True)

    timer = threading.Timer(after, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if said.is_set():
            print(f"{message}: {time.monotonic() - started:.1f} s", file=out, flush=True)
