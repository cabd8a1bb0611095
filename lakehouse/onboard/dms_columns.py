"""Source columns DMS handles apart from their type mapping: LOBs, and PostgreSQL numerics without precision.

Which columns are LOBs depends on the source engine (DMS's "Source data types" page of each): a LOB (DMS's BLOB,
CLOB, NCLOB) has no before-image under `column-filter: non-lob`, and LobMaxSize / SupportLobs apply to it.

* MySQL: MEDIUMTEXT, LONGTEXT (NCLOB), MEDIUMBLOB, LONGBLOB (BLOB), JSON (CLOB) and the spatial types (BLOB).
  TEXT and TINYTEXT are WSTRING, BLOB and TINYBLOB are BYTES: "not affected" by the LOB settings.
* PostgreSQL: TEXT, JSON, JSONB, arrays, HSTORE (NCLOB), BYTEA (BLOB), XML, TSVECTOR, TSQUERY, PATH, POLYGON
  (CLOB). An enum is STRING(64); the other geometric types and the ranges are STRING(255).
* Oracle: CLOB, NCLOB, BLOB, LONG, LONG RAW, XMLTYPE.
* SQL Server: TEXT, NTEXT, IMAGE, XML and the `(max)` types.

A source of an engine onboarding does not know takes every name that is a LOB to some engine, as before.
"""

from __future__ import annotations

import re

_NAMES = {
    "mysql": {"mediumtext", "longtext", "mediumblob", "longblob", "json", "geometry", "point", "linestring",
              "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"},
    "postgres": {"text", "json", "jsonb", "array", "hstore", "bytea", "xml", "tsvector", "tsquery", "path",
                 "polygon"},
    "oracle": {"clob", "nclob", "blob", "long", "long raw", "xmltype"},
    "sqlserver": {"text", "ntext", "image", "xml"},
}  # fmt: skip
# An engine onboarding does not know: every name that is a LOB somewhere, as before LOBs were told apart by engine.
_ANY = {"text", "ntext", "tinytext", "mediumtext", "longtext", "clob", "nclob", "blob", "tinyblob", "mediumblob",
        "longblob", "bytea", "json", "jsonb", "xml", "xmltype", "image", "long", "long raw", "array", "hstore",
        "tsvector", "tsquery"}  # fmt: skip
_POSTGRES_ARRAY = re.compile(r"^_|\[\]$")  # udt_name _int4, or int[]
_MAX = re.compile(r"\(\s*max\s*\)$")  # SQL Server varchar(max), nvarchar(max), varbinary(max)


def _words(declared: str) -> str:
    """The type's name in lower case without brackets: `LONGTEXT` → longtext, `LONG RAW` → long raw."""
    return " ".join(re.sub(r"\(.*?\)", " ", str(declared).lower()).split())


def is_lob(declared: str, dialect: str) -> bool:
    """True if DMS handles a column of type `declared` (as the source's catalog prints it) from a `dialect` source as
    a LOB.

    >>> is_lob("text", "mysql"), is_lob("mediumtext", "mysql"), is_lob("text", "postgres"), is_lob("_int4", "postgres")
    (False, True, True, True)
    """
    text = str(declared).strip()
    names = _NAMES.get(dialect, _ANY)
    if dialect in ("postgres", "") and _POSTGRES_ARRAY.search(text):
        return True
    if dialect in ("sqlserver", "") and _MAX.search(text.lower()):
        return True
    return _words(text) in names


def unbounded_numeric(declared: str, dialect: str) -> bool:
    """True for a PostgreSQL `numeric` / `decimal` without precision, which DMS writes as NUMERIC(28,6).

    >>> unbounded_numeric("numeric", "postgres"), unbounded_numeric("numeric(10,2)", "postgres")
    (True, False)
    """
    return dialect == "postgres" and " ".join(str(declared).lower().split()) in ("numeric", "decimal")


def column_warnings(numerics: list[str]) -> list[str]:
    """The YAML header's warnings about what DMS does to these columns' values before the lake sees them.

    `numerics` are the replicated PostgreSQL numeric columns without precision, as `table.column`.
    """
    if not numerics:
        return []
    shown = ", ".join(numerics[:6]) + (f" and {len(numerics) - 6} more" if len(numerics) > 6 else "")
    return [
        f"PostgreSQL numeric without precision ({shown}): DMS writes it as NUMERIC(28,6), so digits past the sixth "
        "after the point are cut at DMS (0.611111104488373 arrives as 0.611111) and nothing reports it. Where those "
        "digits matter, declare the column numeric(p,s) at the source (p up to 38) and reload the table"
    ]
