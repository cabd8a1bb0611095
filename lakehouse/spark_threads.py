"""Spark work in threads of the engine's own, with the job group and properties of the thread that starts it."""

from __future__ import annotations

from collections.abc import Callable
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
