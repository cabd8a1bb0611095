"""Which Spark jobs an action started: for tests that promise an answer comes without one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def jobs_run_by(spark, action: Callable[[], T]) -> tuple[T, list[int]]:
    """Run `action` in a job group of its own; its result and the ids of the Spark jobs it started."""
    context, group = spark.sparkContext, f"probe-{uuid.uuid4().hex}"
    context.setJobGroup(group, "a probe of the jobs an action starts")
    try:
        result = action()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    return result, list(context.statusTracker().getJobIdsForGroup(group))
