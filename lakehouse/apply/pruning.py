"""Key ranges of a batch, as literal predicates that let Delta skip files by their min/max statistics.

MERGE and the read of open history versions only touch the batch's keys. Delta prunes files only on
literal predicates, so the batch's keys become a few `BETWEEN` ranges: one per cluster of keys, split
at the widest gaps (numeric keys), or one min/max range (other types).
"""

from __future__ import annotations

from itertools import pairwise
from numbers import Number
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F


def key_ranges(sorted_keys: list[Any], *, max_ranges: int = 16) -> list[tuple[Any, Any]]:
    """Split sorted distinct keys into at most `max_ranges` (low, high) ranges at the widest gaps."""
    if not sorted_keys:
        return []
    numeric = all(isinstance(k, Number) and not isinstance(k, bool) for k in sorted_keys)
    if not numeric or max_ranges <= 1 or len(sorted_keys) == 1:
        return [(sorted_keys[0], sorted_keys[-1])]
    gaps = sorted(range(1, len(sorted_keys)), key=lambda i: sorted_keys[i] - sorted_keys[i - 1], reverse=True)
    cuts = sorted(i for i in gaps[: max_ranges - 1] if sorted_keys[i] - sorted_keys[i - 1] > 1)
    bounds = [0, *cuts, len(sorted_keys)]
    return [(sorted_keys[a], sorted_keys[b - 1]) for a, b in pairwise(bounds)]


def within_ranges(column: str, ranges: list[tuple[Any, Any]]) -> Column:
    """`column BETWEEN low AND high OR ...` for the given ranges (false when there are none)."""
    condition = F.lit(False)
    for low, high in ranges:
        condition = condition | F.col(column).between(F.lit(low), F.lit(high))
    return condition
