"""Where the engine's log lines go when it runs as a command or a job: standard output, one JSON line each."""

from __future__ import annotations

import logging
import sys


class _CurrentStdout(logging.StreamHandler):
    """A handler that writes to whatever `sys.stdout` is when a line is logged.

    A handler bound to the stream of the moment keeps writing to it after it is closed (a test's captured
    output, a redirected stdout): every later line from a streaming query's batch thread would then fail.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def log_to_stdout(level: str | int = logging.INFO) -> None:
    """Send the `lakehouse` loggers' lines (message only) to standard output, replacing earlier handlers."""
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("lakehouse")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
