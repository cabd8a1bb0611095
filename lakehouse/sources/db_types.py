"""Source database column types → the Spark SQL types the engine casts DMS values to.

One mapping for the YAML (`columns: {amount: numeric(10,2)}` is accepted as written in the source
database) and for `lakehouse onboard dms`, which reads the source's column list. It covers the names
PostgreSQL, MySQL, Oracle and SQL Server print in their catalogs, and DMS's own data types (add-column
rules). A DMS source's `dialect:` says whose names its columns use (an Oracle DATE has a time of day, a SQL
Server FLOAT is a double); without one a Spark SQL type name is Spark's, and the two that would then lose data
without a word are refused (`ambiguous`). The choices follow what DMS writes into the files:

* whole numbers by range: `int4` → int, `int8` → bigint; unsigned MySQL types take the next wider type;
  a `tinyint` is smallint whatever its display width: DMS writes MySQL's TINYINT, `tinyint(1)` too, as INT1
  (a tinyint(1) holds 2 or -1 as well as 0 and 1), and smallint holds a signed one and an unsigned one (0..255,
  SQL Server's too); SQL Server `bit` is a boolean (a PostgreSQL `bit(n)`, DMS's STRING(n), is string);
  Oracle `NUMBER(p)` is int / bigint / decimal(p,0), `INTEGER` (NUMBER(*,0)) decimal(38,0);
* `numeric(p,s)` → decimal(p,s) up to 38 digits (Spark's limit), wider → string; a `numeric` or Oracle
  `NUMBER` without precision or scale → decimal(38,10), an Oracle one by the source endpoint's NumberDatatypeScale
  where onboarding reads it (`number_scale`: 0..38 → decimal(38,s), -1 → double, -2 → string, as DMS writes
  it); a value with more digits after the point than a decimal's scale is a type mismatch, never rounded
  (`decimal_rounds`); Oracle `NUMBER(p,s)` with a negative scale or one above the
  precision → double (DMS writes REAL8); PostgreSQL's `numeric(5,-2)` → decimal(7,0), `numeric(2,5)` →
  decimal(5,5); PostgreSQL `money` → decimal(38,4) (DMS's NUMERIC(38,4)). No mapping gives a decimal Spark
  refuses (precision 1..38, scale 0..precision);
* floating point by size, never narrower than the source: `float(p)` by its bits (≤ 24 float, else double),
  MySQL `float(M,D)` float, `double`, `double(M,D)`, `real(M,D)` and MySQL's / Oracle's `real` double;
* time: PostgreSQL `timestamptz`, SQL Server `datetime2`/`datetimeoffset`, MySQL `datetime` → timestamp;
  Oracle `DATE` carries a time of day → timestamp; `time` and `interval` (Oracle's `INTERVAL DAY(2) TO
  SECOND(6)` too) → string. A type without a zone
  (MySQL `datetime`, PostgreSQL `timestamp`, Oracle `DATE`/`TIMESTAMP`) holds the source's wall-clock value,
  which DMS copies as it is: stored as a timestamp, it reads as that value in UTC (README, known limit). A type
  with a zone is stored as its UTC instant: DMS writes PostgreSQL's `timestamptz` as a DATETIME, SQL Server's
  `datetimeoffset` and Oracle's `TIMESTAMP WITH [LOCAL] TIME ZONE` as text with an offset or a region name
  (`timestamp_text` reads the region name Oracle prints upper case; `timestamp_problem` says why a text is not
  an instant);
* text, JSON, UUID, enums and sets (whatever their values), arrays, PostgreSQL user-defined, range (`int4range`,
  `tstzrange`…), geometric (`point`, `polygon`…) and text-search types, XML → string, as DMS writes them as text
  (STRING, CLOB, NCLOB); binary columns (`bytea`,
  `BLOB`, `varbinary`) → string too, since DMS writes them as text in CSV (a Parquet file's bytes are read
  as lowercase hex); SQL Server `timestamp` is a row version → string.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

Dialect = str  # "postgres" | "mysql" | "oracle" | "sqlserver" | "dms" | "" (any)
DIALECTS = ("postgres", "mysql", "oracle", "sqlserver")  # a DMS source's `dialect:` in the YAML

SPARK_TYPE = re.compile(
    r"^(string|boolean|tinyint|smallint|int|integer|bigint|long|float|double|date|timestamp|timestamp_ntz|binary"
    r"|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)
MAX_DECIMAL = 38
UNBOUNDED_DECIMAL = "decimal(38,10)"
# The NumberDatatypeScale values DMS takes: a scale, -1 for a floating number (REAL8), -2 for text (VARCHAR).
NUMBER_SCALES = range(-2, MAX_DECIMAL + 1)

_SIMPLE = {
    # whole numbers
    "smallint": "smallint", "int2": "smallint", "smallserial": "smallint", "int1": "tinyint",
    "int": "int", "integer": "int", "int4": "int", "serial": "int", "serial4": "int", "mediumint": "int",
    "bigint": "bigint", "int8": "bigint", "bigserial": "bigint", "serial8": "bigint", "pls_integer": "int",
    "uint1": "smallint", "uint2": "int", "uint4": "bigint", "uint8": "decimal(20,0)", "year": "int",
    # fractional
    "real": "float", "float4": "float", "binary_float": "float", "real4": "float",
    "double": "double", "double precision": "double", "float8": "double", "binary_double": "double",
    "real8": "double", "money": "decimal(19,4)", "smallmoney": "decimal(10,4)",
    # logical
    "boolean": "boolean", "bool": "boolean",
    # time
    "date": "date", "datetime": "timestamp", "datetime2": "timestamp", "smalldatetime": "timestamp",
    "datetimeoffset": "timestamp", "timestamp": "timestamp", "timestamptz": "timestamp",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamp",
    "timestamp with local time zone": "timestamp", "timestamp_ntz": "timestamp_ntz",
}  # fmt: skip
_TEXT = {
    "string", "wstring", "char", "character", "nchar", "varchar", "character varying", "nvarchar", "varchar2",
    "nvarchar2", "national character varying", "text", "tinytext", "mediumtext", "longtext", "ntext", "clob",
    "nclob", "long", "citext", "bpchar", "name", "uuid", "uniqueidentifier", "json", "jsonb", "xml", "xmltype",
    "enum", "set", "inet", "cidr", "macaddr", "interval", "time", "timetz", "time with time zone",
    "time without time zone", "rowid", "urowid", "sql_variant", "hierarchyid", "geometry", "geography", "point",
    "tsvector", "varbit", "bit varying", "bytea", "blob", "tinyblob", "mediumblob", "longblob", "binary",
    "varbinary", "image", "raw", "long raw", "bfile", "bytes", "rowversion", "interval year to month",
    "interval day to second", "oid", "ltree", "hstore", "money4",
    # PostgreSQL ranges and geometric / text-search types: DMS writes their text (STRING(255), CLOB)
    "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange", "line", "lseg", "box", "path",
    "polygon", "circle", "tsquery",
    # MySQL's spatial types (DMS: BLOB)
    "linestring", "multipoint", "multilinestring", "multipolygon", "geometrycollection",
}  # fmt: skip
_DECIMALS = {"numeric", "decimal", "dec", "fixed", "number"}
_WORDS = re.compile(r"\b(unsigned|signed|zerofill|not null|null)\b")
_DECLARED = re.compile(r"^(?P<base>[a-z_][a-z0-9_ ]*)(\((?P<args>[^)]*)\)(?P<rest>[a-z ]*))?$")
# Types written as text whatever their brackets hold: Oracle's INTERVAL DAY(2) TO SECOND(6) has two, a MySQL
# enum('a','b)') or set(...) lists values that may hold brackets, commas and words such as `null`.
_TEXT_FORMS = re.compile(r"^(interval\b|(enum|set)\s*\()")


def spark_type(declared: str, dialect: Dialect = "", *, number_scale: int | None = None) -> str | None:
    """The Spark SQL type for a column declared as `declared` in the source database, or None if unknown.

    Without a `dialect`, Spark SQL type names keep their Spark meaning (the YAML's `tinyint` is Spark's).
    `number_scale` is an Oracle source endpoint's NumberDatatypeScale, the scale DMS writes a NUMBER without
    precision with (None: DMS's default, 10; see `number_type`).

    >>> spark_type("numeric(10,2)"), spark_type("NUMBER(10)", "oracle"), spark_type("tinyint(1)", "mysql")
    ('decimal(10,2)', 'bigint', 'smallint')
    """
    text = " ".join(str(declared).strip().lower().split())
    if not dialect and SPARK_TYPE.match(text):  # the YAML's own Spark types (a source's tinyint, date… differ)
        return text.replace(" ", "")
    if text.endswith("[]") or text.startswith("_") or text.startswith("user-defined"):
        # PostgreSQL arrays (udt_name _int4, int[]) and USER-DEFINED types (enums, composites, extension types
        # such as hstore): DMS maps ARRAY, COMPOSITE, HSTORE to NCLOB and ENUM to STRING, i.e. their text form
        return "string"
    if _TEXT_FORMS.match(text):
        return "string"
    unsigned = "unsigned" in text
    match = _DECLARED.match(_WORDS.sub("", text).strip())
    if match is None:
        return None
    base = " ".join((match["base"] + " " + (match["rest"] or "")).split())  # "timestamp(6) with time zone"
    args = [a.strip() for a in (match["args"] or "").split(",") if a.strip()]
    if base in _DECIMALS:
        return _decimal(base, args, dialect, number_scale)
    if base == "bit" and dialect == "postgres":
        return "string"  # DMS maps PostgreSQL BIT(n), BIT(1) too, to STRING(n): the 0/1 digits as text
    if base == "tinyint":
        # DMS writes MySQL's TINYINT as INT1 (UINT1 unsigned), tinyint(1) too: the (1) is a display width, and
        # such a column holds 2 or -1 as well as 0 and 1. smallint holds -128..127 and SQL Server's 0..255 alike.
        return "smallint"
    if base == "bit":  # SQL Server bit and bit(1) are booleans; bit(n > 1) is a bit string
        return "boolean" if args in ([], ["1"]) else "string"
    if base == "float" and len(args) == 1:  # float(p): p bits of mantissa, single precision up to 24
        return "float" if _int(args[0], 53) <= 24 else "double"
    if base == "float":
        # MySQL float(M,D) is its 4-byte float; a bare float is double in SQL Server and Oracle (MySQL's
        # single-precision one is read exactly as a double)
        return "float" if args else "double"
    if base in ("double", "double precision") or (base == "real" and (args or dialect in ("mysql", "oracle"))):
        return "double"  # MySQL double(M,D), real(M,D), MySQL's and Oracle's real: 8 bytes (M,D only round)
    if base == "date" and dialect == "oracle":
        return "timestamp"  # an Oracle DATE has a time of day
    if base == "timestamp" and dialect == "sqlserver":
        return "string"  # a SQL Server timestamp is a row version, not a time
    if base == "money" and dialect == "postgres":
        return "decimal(38,4)"  # DMS writes PostgreSQL's money (to ~9.2e16) as NUMERIC(38,4); SQL Server's fits 19,4
    if base in _SIMPLE:
        return _widen(_SIMPLE[base]) if unsigned else _SIMPLE[base]
    if base in _TEXT:
        return "string"
    return None


# Type names only Oracle has: a YAML whose columns use one is an Oracle table's, where DATE holds a time of day.
_ORACLE_ONLY = {"number", "varchar2", "nvarchar2", "binary_float", "binary_double", "raw", "long raw", "xmltype",
                "urowid", "bfile"}  # fmt: skip


def _base(declared: str) -> str:
    return " ".join(re.sub(r"\(.*", "", str(declared)).strip().lower().split())


def ambiguous(declared: str, others: list[str]) -> str | None:
    """Why a column type written without the source's `dialect` cannot be read safely, or None.

    Without a dialect a Spark SQL type name is Spark's (`real` is Spark's 4-byte REAL, `date` Spark's date). Two of
    them would lose data silently where the columns beside them (`others`) say the YAML uses a source database's
    names: a bare `float` among source names (varchar(40), int4, NUMBER…) is a double in PostgreSQL, Oracle and SQL
    Server (refused; among Spark names only it is Spark's 4-byte float), and `date` among Oracle's names (NUMBER,
    VARCHAR2…) is an Oracle DATE, which has a time of day (refused; elsewhere a value with a time is quarantined as
    type_mismatch, never cut).

    >>> ambiguous("DATE", ["int4"]) is None, ambiguous("float", ["string"]) is None, ambiguous("FLOAT", ["int4"])[:7]
    (True, True, 'a bare ')
    """
    base, text = _base(declared), " ".join(str(declared).strip().lower().split())
    source_named = sorted({str(o) for o in others if not SPARK_TYPE.match(" ".join(str(o).strip().lower().split()))})
    if text == "float" and source_named:
        return (
            f"a bare float is a double in PostgreSQL, Oracle and SQL Server, whose names the table's other columns use "
            f"({', '.join(source_named[:2])}), but a 4-byte float in MySQL and Spark; write double (or float(24) for a "
            f"4-byte one), or name the source database with `dialect:` ({', '.join(DIALECTS)})"
        )
    oracle = sorted({str(o) for o in others if _base(o) in _ORACLE_ONLY})
    if base == "date" and oracle:
        return (
            f"the table's other columns are Oracle's ({', '.join(oracle[:2])}), and an Oracle DATE holds a time of "
            "day, which a date drops; write timestamp, or set `dialect: oracle` (DATE is then read as a timestamp)"
        )
    return None


def written_type(spark: str, dialect: Dialect, *declared: str) -> str:
    """How to write a column of Spark type `spark` in the YAML of a source of `dialect`, so that it reads back as
    `spark`: the Spark type itself where the source means the same by that name, else the source's declared type,
    else a spelling every source reads alike (`lakehouse onboard dms`).

    >>> written_type("timestamp", "sqlserver", "datetime2(7)"), written_type("float", "postgres", "real")
    ('datetime2(7)', 'real')
    """
    for text in (spark, *declared, *_SPELLINGS.get(spark, ())):
        if spark_type(text, dialect) == spark and (dialect or ambiguous(text, []) is None):
            return text
    return spark  # no spelling reads back alike (an Oracle source's plain DMS date): the wider type is read


_SPELLINGS = {"float": ("float(24)",), "timestamp": ("datetime2",), "tinyint": ("int1",)}


def _int(text: str, default: int) -> int:
    return int(text) if text.isdigit() else default


def number_type(number_scale: int) -> str:
    """The Spark type of an Oracle NUMBER without precision that DMS writes under NumberDatatypeScale `number_scale`.

    >>> number_type(12), number_type(0), number_type(-1), number_type(-2)
    ('decimal(38,12)', 'decimal(38,0)', 'double', 'string')
    """
    if number_scale not in NUMBER_SCALES:
        raise ValueError(f"NumberDatatypeScale {number_scale!r} is not 0..{MAX_DECIMAL}, -1 or -2")
    return {-1: "double", -2: "string"}.get(number_scale, f"decimal({MAX_DECIMAL},{number_scale})")


def _decimal(base: str, args: list[str], dialect: Dialect, number_scale: int | None = None) -> str:
    """A decimal Spark can hold (precision 1..38, 0 <= scale <= precision), or what DMS writes instead."""
    oracle = base == "number" or dialect == "oracle"
    if not args or (args[0] in ("*", "") and len(args) < 2):
        return number_type(number_scale) if oracle and number_scale is not None else UNBOUNDED_DECIMAL
    precision = MAX_DECIMAL if args[0] in ("*", "") else _int(args[0], MAX_DECIMAL)
    scale = int(args[1]) if len(args) > 1 and args[1].lstrip("-").isdigit() else 0
    if precision < 1:
        return UNBOUNDED_DECIMAL
    if oracle and not 0 <= scale <= precision:
        return "double"  # DMS writes NUMBER(p,s) with a negative scale or one above the precision as REAL8
    if scale < 0:  # PostgreSQL numeric(p,-s) rounds to tens, hundreds…: whole numbers of up to p-s digits
        precision, scale = precision - scale, 0
    elif scale > precision:  # numeric(2,5) holds 0.00012: all its digits are after the point
        precision = scale
    if precision > MAX_DECIMAL:
        return "string"  # wider than Spark's decimals: kept as DMS wrote it
    if scale == 0 and oracle:
        return "int" if precision <= 9 else "bigint" if precision <= 18 else f"decimal({precision},0)"
    return f"decimal({precision},{scale})"


def decimal_problem(spark: str) -> str | None:
    """Why Spark cannot hold `decimal(p,s)` (it refuses it only when a batch casts), or None.

    >>> decimal_problem("decimal(2,5)")
    'scale 5 is above precision 2'
    """
    match = re.fullmatch(r"decimal\((\d+),(\d+)\)", spark.replace(" ", ""))
    if match is None:
        return None
    precision, scale = int(match[1]), int(match[2])
    if not 1 <= precision <= MAX_DECIMAL:
        return f"precision {precision} is outside 1..{MAX_DECIMAL}"
    return f"scale {scale} is above precision {precision}" if scale > precision else None


# decimal(p,s) as the configuration writes it; the number text Spark's decimal cast reads (Java's BigDecimal, trimmed).
_DECIMAL_TYPE = re.compile(r"decimal\((\d+),(\d+)\)")
_NUMBER_TEXT = r"^\s*[+-]?([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?\s*$"


def decimal_rounds(value: Column, type_: str) -> Column | None:
    """True where the text `value` casts to `type_`, a decimal(p,s), only by rounding it; None for other types.

    Spark's cast rounds half up to the scale without a word (try_cast is NULL only when the whole part is too
    long), so a cast that succeeds is not yet exact. The digits rounding drops are those past the scale: the text
    loses a digit other than 0 when its digits, trailing zeros cut, outnumber those before its point (moved by
    its exponent) plus the scale. Trailing zeros and an exact exponent form pass:

        decimal(38,10): '1.50000000000000', '1.5E-3' exact; '0.123456789012', '1.2345678901234567E-5' round
        decimal(10,0):  '7.77E2' exact; '7.77E1', '-.5' round

    Text that is no number of this form (NULL, or not cast at all) is not flagged here: test the cast for NULL.
    """
    from pyspark.sql import functions as F

    match = _DECIMAL_TYPE.fullmatch(type_.replace(" ", ""))
    if match is None:
        return None
    scale = int(match[2])
    whole, fraction, exponent = (F.regexp_extract(value, _NUMBER_TEXT, i) for i in (1, 2, 3))
    digits = F.length(F.regexp_replace(F.concat(whole, fraction), "0+$", ""))
    # An exponent of more than 18 digits is past any decimal: that text does not cast at all.
    shift = F.when(exponent == "", F.lit(0)).when(F.length(exponent) <= 18, exponent.cast("bigint"))
    return (digits > 0) & (digits > F.length(whole) + shift + F.lit(scale))  # a zero (0E-12 too) is exact


# A time followed by a time zone region name: DMS writes an Oracle TIMESTAMP WITH TIME ZONE stored with a region
# (TZR) as Oracle prints it, upper case ('2021-03-14 01:00:00.000000 AMERICA/LOS_ANGELES'), and Spark's cast reads a
# region only as the tz database spells it (java.time's ZoneId is case-sensitive). Offsets need nothing: the cast
# reads Z, +hh, +hhmm and +hh:mm, with or without a space before them, and 9 digits of fraction (keeping 6).
_ZONED = (
    r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*)\s*$"
)


def _zone_names() -> str:
    """The region names Spark's cast reads (the JVM's tz database; Python's where no JVM is at hand: Spark Connect)
    as one JSON object, each under its upper-case spelling (none collide)."""
    try:
        return _jvm_zone_names()
    except Exception:  # not cached: a later call with a JVM takes its names
        import zoneinfo

        return json.dumps({name.upper(): name for name in sorted(zoneinfo.available_timezones())})


@functools.cache
def _jvm_zone_names() -> str:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context  # the JVM's, whatever thread asks (a session is per thread)
    names = sorted(str(n) for n in context._jvm.java.time.ZoneId.getAvailableZoneIds())  # type: ignore[union-attr]
    return json.dumps({name.upper(): name for name in names})


def _zoned(value: Column) -> tuple[Column, Column, Column]:
    """The wall time of a text that ends in a region name, the name as written ('' without one), and the name as the
    tz database spells it (NULL where it knows no such name)."""
    from pyspark.sql import functions as F

    written = F.regexp_extract(value, _ZONED, 2)
    names = F.from_json(F.lit(_zone_names()), "map<string,string>")  # one literal, folded once per query
    # Looked up only for a text with a name: a map literal's lookup walks its keys, for every value of the column.
    return F.regexp_extract(value, _ZONED, 1), written, F.when(written != "", F.try_element_at(names, F.upper(written)))


def timestamp_text(value: Column) -> Column:
    """The text `value` of a timestamp column as Spark's cast reads it: a region name in any case spelt as the tz
    database spells it, any other text as it is.

        '2021-03-14 01:00:00.000000 AMERICA/LOS_ANGELES' → '2021-03-14 01:00:00.000000 America/Los_Angeles'
        '2021-03-14 01:00:00.000000000 -07:00', '2021-03-14 08:00:00.000000+00', '… US/Pacific' → unchanged
    """
    from pyspark.sql import functions as F

    wall, _, name = _zoned(value)
    return F.when(name.isNotNull(), F.concat(wall, F.lit(" "), name)).otherwise(value)


def timestamp_problem(value: Column) -> Column:
    """Why the text `value` of a timestamp column is not an instant (a phrase after the value), or NULL.

    Not a timestamp at all, or a region name the tz database does not know. A region's wall time in the hour its
    clocks go back ('2021-11-07 01:30:00 US/PACIFIC': 08:30 or 09:30 UTC) is the first of the two, as java.time,
    Athena and Trino read it: the text does not say which, and holding the change back would keep its row stale.
    """
    from pyspark.sql import functions as F

    _, written, name = _zoned(value)
    return F.when(
        (written != "") & name.isNull() & F.try_to_timestamp(value).isNull(),
        F.concat(F.lit("has the time zone region '"), written, F.lit("', which the tz database does not know")),
    ).when(
        F.try_to_timestamp(timestamp_text(value)).isNull(),
        F.lit(
            "is not a valid timestamp (yyyy-mm-dd hh:mm:ss[.fraction], then optionally a UTC offset such as "
            "+hh:mm or a time zone region name)"
        ),
    )


def _widen(spark: str) -> str:
    """The type of an unsigned MySQL integer: the next wider one."""
    return {"tinyint": "smallint", "smallint": "int", "int": "bigint", "bigint": "decimal(20,0)"}.get(spark, spark)


EXAMPLES = (
    "varchar(40), numeric(10,2), int4, timestamptz, NUMBER(10), VARCHAR2(30), nvarchar(max), datetime2, tinyint(1)"
)
