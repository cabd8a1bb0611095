"""Fewer driver round trips per batch: PySpark's `functions` methods looked up once, not at every call.

Every `F.col`, `F.lit`, `F.when`... of PySpark asks the JVM twice by reflection (the `functions` class, then its
method) before it calls the method: two of its three py4j round trips. A one-row micro-batch builds ~570 such
expressions (~4,600 round trips in all), and on a busy two-core machine a round trip costs up to a millisecond.
A method of the `functions` class is the same object for as long as its JVM lives, so it is kept per gateway.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

# Where PySpark keeps the lookup: the functions module in 3.5, its `builtin` module in 4.x.
_MODULES = ("pyspark.sql.functions", "pyspark.sql.functions.builtin")


def cache_function_lookups() -> None:
    """Make PySpark's `_get_jvm_function` remember what it found (once per process; later calls change nothing)."""
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        lookup = getattr(module, "_get_jvm_function", None)
        if lookup is not None and not getattr(lookup, "cached", False):
            module._get_jvm_function = _cached(lookup)  # type: ignore[attr-defined]


def _cached(lookup: Callable[[str, Any], Callable]) -> Callable[[str, Any], Callable]:
    # Keyed by the gateway itself (held, so its id is never reused): a new JVM means new lookups.
    found: dict[tuple[object, str], Callable] = {}

    @functools.wraps(lookup)  # PySpark's own stays at hand as `__wrapped__`
    def cached_lookup(name: str, sc: Any) -> Callable:
        key = (sc._gateway, name)
        method = found.get(key)
        if method is None:
            method = found[key] = lookup(name, sc)
        return method

    cached_lookup.cached = True  # type: ignore[attr-defined]
    return cached_lookup
