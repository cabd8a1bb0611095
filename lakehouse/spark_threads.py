"""Spark work in threads of the engine's own, with the job group and properties of the thread that starts it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def in_callers_context(task: Callable[..., T]) -> Callable[..., T]:
    """`task`, to be run in another thread with the calling thread's Spark job group and local properties.

    So a streaming query's cancel reaches the jobs of its batch's threads. PySpark's `inheritable_thread_target`
    does this; PySpark 4 also copies a session's tags and warns when it is not given one, so it is given the
    active session there. Without a SparkContext (a run that may start none) there is nothing to inherit.
    """
    import pyspark
    from pyspark import SparkContext
    from pyspark.util import inheritable_thread_target

    if SparkContext._active_spark_context is None:
        return task
    if int(pyspark.__version__.split(".")[0]) >= 4:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession() or SparkSession._instantiatedSession  # this thread's may be none
        if session is not None:
            return inheritable_thread_target(session)(task)  # type: ignore[arg-type]
    return inheritable_thread_target(task)


def run_side_by_side(tasks: list[Callable[[], T]], *, at_once: int | None = None) -> list[T]:
    """Run independent tasks in threads (Spark schedules their jobs together), `at_once` at a time.

    Every task runs to its end; then the first error is raised, or the results are returned in order. Interrupted
    (Ctrl-C), the tasks not started yet never start and the running ones finish before the interrupt goes on: a
    write committed after its caller had gone would miss what the caller does on its way out (a forget's commit tag,
    `apply.forget._tagged`, is unset then). A second interrupt leaves them running.
    """
    lock, stopped, running = threading.Lock(), threading.Event(), []

    def guarded(task: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            done = threading.Event()
            with lock:  # a task starts before the interrupt is taken, or not at all
                if stopped.is_set():
                    raise CancelledError("interrupted before it started")
                running.append(done)
            try:
                return task()
            finally:
                done.set()

        return run

    pool = ThreadPoolExecutor(max_workers=at_once or max(1, len(tasks)), thread_name_prefix="lakehouse")
    try:
        futures = [pool.submit(in_callers_context(guarded(task))) for task in tasks]
        # Waits of a second at most: a signal that comes just before a blocking wait is taken only when it ends.
        while wait(futures, timeout=1).not_done:
            pass
    except BaseException:
        with lock:
            stopped.set()
        for done in running:
            while not done.wait(1):
                pass
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    errors = [error for error in (f.exception() for f in futures) if error is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]
