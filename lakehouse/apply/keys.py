"""Matching rows by primary key, where some key columns may be empty (NULL).

A source's primary key is never NULL (a DMS table's key column), but a snapshot's row identity can
have an empty part: in the CMS Doctors and Clinicians file a clinician without a group practice has
no `org_pac_id`. Such columns (`nullable_key_columns`) are compared NULL-safe (`<=>`: NULL equals
NULL), the others with `=`, which lets Spark and Delta use them as plain join keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def key_condition(key: Sequence[str], nullable: Sequence[str] = (), *, left: str = "t", right: str = "s") -> str:
    """`t.k1 = s.k1 AND t.k2 <=> s.k2 ...` as SQL, NULL-safe for the `nullable` columns."""
    return " AND ".join(f"{left}.`{k}` {'<=>' if k in nullable else '='} {right}.`{k}`" for k in key)


def semi_join_keys(rows: DataFrame, keys: DataFrame, key: Sequence[str], nullable: Sequence[str] = ()) -> DataFrame:
    """The `rows` whose key is among `keys` (a left semi join, NULL-safe for the `nullable` columns)."""
    if not nullable:
        return rows.join(keys, list(key), "left_semi")
    on: Column = F.lit(True)
    for k in key:
        on = on & (rows[f"`{k}`"].eqNullSafe(keys[f"`{k}`"]) if k in nullable else rows[f"`{k}`"] == keys[f"`{k}`"])
    return rows.join(keys, on, "left_semi")
