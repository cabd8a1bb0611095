"""Fault injection for the crash tests: kill the process at a named point of a micro-batch.

Set LAKEHOUSE_CRASH_AT="<table>:<batch id>:<point>" (points: after_quarantine, after_history,
after_latest, after_non_phi: each right after that table's commit; the writes of a batch run side by
side, so the others may or may not have committed). The consent sync of the non-PHI zone uses
"<table>:sync:<point>" (after_rebuild_history, after_delete_latest, ...), forget "privacy:forget:<point>"
(after_intent, after_<table>.<history|latest>). Nothing happens when the variable is unset,
which is always the case in production.
"""

from __future__ import annotations

import os
import signal
import sys


def crash_point(table: str, batch_id: int | str, point: str) -> None:
    """SIGKILL this process and its Spark JVM if LAKEHOUSE_CRASH_AT names this point (no cleanup, like a lost node).

    The JVM first: left alone it would see its parent gone and exit cleanly, deleting its local folders.
    """
    if os.environ.get("LAKEHOUSE_CRASH_AT") == f"{table}:{batch_id}:{point}":
        sys.stdout.flush()
        sys.stderr.flush()
        jvm = _spark_jvm()
        if jvm is not None:
            os.kill(jvm, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def _spark_jvm() -> int | None:
    """The process id of the Spark JVM this process started (None if it started none)."""
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    return proc.pid if proc is not None else None
