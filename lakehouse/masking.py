"""Masking of PHI columns for the non-PHI zone: one rule per column, in pure Python and as Spark columns.

The Python functions are the reference (tested on edge cases); the Spark builders compute the
same results on DataFrames. Methods:

- ``pseudonym``: HMAC-SHA256 of the value's UTF-8 text under the masking key, 64 lowercase hex
  characters. Deterministic, so a ``patient_id`` pseudonymized in two tables with the same key
  still joins. Integers are hashed as their decimal text (``123`` and ``"123"`` agree). The key is
  held by a pandas UDF's closure, never by a Spark expression, so it cannot show up in plans, logs
  or table metadata.
- ``redact``: NULL, of the column's own type (missing is NULL; no marker string).
- ``year``: a date, timestamp or ISO string (``YYYY-MM-DD``, optionally followed by ``T`` or a
  space and a time, which is not checked) → the year as int. Not a real calendar date → NULL.
- ``zip3``: first 3 digits of a 5-digit ZIP or ZIP+4 (``12345-6789`` or ``123456789``), the 17
  HIPAA Safe Harbor restricted prefixes → ``000``, anything else → NULL.
- ``age_cap``: ages over 89 → 90 (Safe Harbor's "90 or older"), others unchanged.
- ``birth_year``: ``year`` of a birth date, but a year that makes the person 90 or older this year becomes the
  year 90 years ago: one category, "born then or before" (Safe Harbor allows no date element, the year included,
  that indicates an age over 89).
- ``last4``: the last 4 characters kept, every other character replaced by ``*`` (the length is
  kept); values shorter than 5 characters are fully ``*``.
- ``keep``: not PHI, passed as it is (an explicit rule, so the choice is visible in the YAML).
- ``shift``: a date or timestamp moved by a per-patient number of days, an HMAC of the patient's id
  under the key, within ±N days and never 0 (`shift_days`): intervals and the order of one patient's
  dates survive, the calendar dates do not. That is Expert Determination territory (HIPAA
  164.514(b)(1)), not Safe Harbor, which allows the year only.

Every method maps NULL to NULL. Strings are trimmed of spaces (only ``' '``, as Spark's ``trim``)
for ``year``, ``birth_year`` and ``zip3``; ``pseudonym`` and ``last4`` use the value as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal, get_args

from lakehouse.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

MaskMethod = Literal["pseudonym", "redact", "year", "birth_year", "zip3", "age_cap", "last4", "keep", "shift"]
OLDEST_AGE = 90  # Safe Harbor's top category: "90 or older"
MASK_METHODS: tuple[str, ...] = get_args(MaskMethod)

MIN_KEY_BYTES = 32

# HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(B): three-digit ZIP areas of 20,000 people or fewer
# (HHS de-identification guidance, 2000 Census) must be published as 000.
RESTRICTED_ZIP3: frozenset[str] = frozenset(
    [
        "036",
        "059",
        "063",
        "102",
        "203",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    ]
)

# Written for both Python `re` and Java regex: ASCII digits only, (?s) so `.` is the same in both,
# and an absolute end (`\z` in Java, fullmatch in Python) so a trailing newline never matches.
_DATE_RE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})([T ].*)?"
_ZIP_RE = r"([0-9]{5})(-?[0-9]{4})?"
_DATE_PY = re.compile("(?s)" + _DATE_RE)
_ZIP_PY = re.compile(_ZIP_RE)
_DATE_JAVA = "(?s)^" + _DATE_RE + r"\z"
_ZIP_JAVA = "^" + _ZIP_RE + r"\z"


class MaskingKey:
    """The secret key of `pseudonym`. Its repr and str never show it; use `reveal()` only to compute HMACs."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes):
            raise TypeError("MaskingKey takes bytes (encode text keys as UTF-8)")
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the masking key is {len(secret)} bytes; at least {MIN_KEY_BYTES} are required. "
                "Generate one with `openssl rand -hex 32`."
            )
        self._secret = secret

    def reveal(self) -> bytes:
        """The key bytes. Only for computing HMACs; never log, print or store the result."""
        return self._secret

    def __repr__(self) -> str:
        return "MaskingKey(<redacted>)"

    __str__ = __repr__


# --- the reference, in pure Python ---------------------------------------------------------------


def pseudonym(value: str | int | None, key: MaskingKey) -> str | None:
    """HMAC-SHA256 of the value's UTF-8 text under `key`, as hex; NULL stays NULL."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"pseudonym takes str or int, got {type(value).__name__}")
    return hmac.new(key.reveal(), str(value).encode("utf-8"), hashlib.sha256).hexdigest()


PSEUDONYM_PREFIX = 8  # characters of a pseudonym that logs, batch records and messages show


def pseudonym_prefix(value: str) -> str:
    """The start of a pseudonym, as logs show it: enough to find the patient's rows in the zone, not the whole key."""
    return value[:PSEUDONYM_PREFIX]


def sequence_token(table: str, sequence: str | None, key: MaskingKey) -> str | None:
    """An opaque stand-in for a version's `_sequence` (which embeds its commit time): 32 hex characters.

    Keyed, so nobody without the key can test guessed commit times against it; per table, so two tables'
    tokens do not link rows committed together. Equal sequences give equal tokens (the zone's MERGE key).
    """
    if sequence is None:
        return None
    return hmac.new(key.reveal(), f"sequence:{table}:{sequence}".encode(), hashlib.sha256).hexdigest()[:32]


def shift_days(patient: str | int | None, key: MaskingKey, max_days: int) -> int:
    """The patient's date shift: a keyed offset in [-max_days, -1] or [1, max_days], the same in every table."""
    if max_days < 1:
        raise ValueError(f"max_days must be at least 1, got {max_days}")
    text = "" if patient is None else str(patient)
    digest = hmac.new(key.reveal(), f"date-shift:{text}".encode(), hashlib.sha256).digest()
    offset = int.from_bytes(digest[:8], "big") % (2 * max_days)
    return offset - max_days if offset < max_days else offset - max_days + 1


def redact(value: object) -> None:
    """Always NULL: the value is dropped from the non-PHI zone."""
    return None


def year(value: date | str | None) -> int | None:
    """The year of a date, datetime or ISO date string; NULL when the string is not a real date."""
    if value is None:
        return None
    if isinstance(value, date):
        return value.year
    if not isinstance(value, str):
        raise TypeError(f"year takes a date, datetime or str, got {type(value).__name__}")
    match = _DATE_PY.fullmatch(value.strip(" "))
    if match is None:
        return None
    y, m, d = (int(g) for g in match.groups()[:3])
    try:
        return date(y, m, d).year
    except ValueError:
        return None


def birth_year(value: date | str | None, today: date | None = None) -> int | None:
    """The year of a birth date; one that makes the person 90 or older this year → the year 90 years ago."""
    born = year(value)
    if born is None:
        return None
    oldest = (today or datetime.now(UTC).date()).year - OLDEST_AGE  # a UTC year, as the Spark column's
    return max(born, oldest)


def zip3(value: str | None) -> str | None:
    """First 3 digits of a ZIP or ZIP+4, restricted areas as '000'; malformed → NULL."""
    if value is None:
        return None
    match = _ZIP_PY.fullmatch(value.strip(" "))
    if match is None:
        return None
    prefix = match.group(1)[:3]
    return "000" if prefix in RESTRICTED_ZIP3 else prefix


def age_cap(value: int | float | None) -> int | float | None:
    """Ages over 89 become 90; NULL stays NULL."""
    if value is None:
        return None
    return 90 if value > 89 else value


def last4(value: str | None) -> str | None:
    """'*' for every character but the last 4; values shorter than 5 characters are all '*'."""
    if value is None:
        return None
    if len(value) < 5:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


# --- the same rules as Spark columns --------------------------------------------------------------


@dataclass(frozen=True)
class DateShift:
    """How `shift` moves a row's dates: by the offset of the patient in `patient_column`, within ±`max_days`."""

    patient_column: str
    max_days: int


# The row's shift in days while its columns are masked (computed from the patient id before it is pseudonymized).
SHIFT_COL = "__lakehouse_shift_days"


def mask_columns(df: DataFrame, rules: dict[str, str], *, key: MaskingKey, shift: DateShift | None = None) -> DataFrame:
    """Replace each column named in `rules` by its masked value; other columns pass unchanged.

    `rules` maps a column name to a method, e.g. ``{"patient_id": "pseudonym", "birth_date": "year"}``.
    The key is required even when no rule pseudonymizes: the non-PHI zone never runs without one.
    `shift` is required by the ``shift`` method: whose dates move, and how far at most.
    """
    if not isinstance(key, MaskingKey):
        raise ConfigError(
            "no masking key: the non-PHI output refuses to run without one. "
            "Set it in the environment variable or the Secrets Manager secret the configuration names."
        )
    missing = sorted(set(rules) - set(df.columns))
    if missing:
        raise ConfigError(f"masking rules name columns {missing} that the table does not have (it has {df.columns})")
    if "shift" not in rules.values():
        return df.withColumns({name: masked_column(df, name, method, key=key) for name, method in rules.items()})
    if shift is None:
        raise ConfigError("mask 'shift' needs the table's date shift: set non_phi_dates: {shift_days: N} on the table")
    shifted = df.withColumn(SHIFT_COL, shift_offset(df, shift, key=key))
    masked = {name: masked_column(shifted, name, method, key=key) for name, method in rules.items()}
    return shifted.withColumns(masked).drop(SHIFT_COL)


def shift_offset(df: DataFrame, shift: DateShift, *, key: MaskingKey) -> Column:
    """The per-patient shift in days of each row of `df` (see `shift_days`), as an int column."""
    from pyspark.sql import functions as F

    def offsets(text: str) -> int:
        return shift_days(text, key, shift.max_days)

    patient = F.coalesce(F.col(_quoted(shift.patient_column)).cast("string"), F.lit(""))
    return _keyed_udf(offsets, "date_shift", "int")(patient)


def sequence_tokens(sequence: Column, *, table: str, key: MaskingKey) -> Column:
    """`sequence_token` of each value of `sequence` (NULL stays NULL)."""

    def token(text: str) -> str:
        return sequence_token(table, text, key)  # type: ignore[return-value]

    return _keyed_udf(token, "sequence_token", "string")(sequence)


def masked_column(df: DataFrame, name: str, method: str, *, key: MaskingKey) -> Column:
    """The Spark column computing `method` on `df[name]` (its type decides how).

    ``shift`` reads the row's offset from the column `SHIFT_COL`, which `mask_columns` adds.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if method not in MASK_METHODS:
        raise ConfigError(f"unknown mask {method!r} for column {name!r}; expected one of {list(MASK_METHODS)}")
    dtype = df.schema[name].dataType
    col = F.col(_quoted(name))  # a name, even one with dots
    if method == "keep":
        return col
    if method == "redact":
        return F.lit(None).cast(dtype)
    if method == "pseudonym":
        _expect(name, method, dtype, (T.StringType, T.IntegralType), "a string or integer column")
        return _keyed_udf(_hmac_hex(key), "pseudonym", "string")(col.cast("string"))
    if method in ("year", "birth_year"):
        _expect(name, method, dtype, (T.DateType, T.TimestampType, T.TimestampNTZType, T.StringType), "a date")
        born = _year_of_string(col) if isinstance(dtype, T.StringType) else F.year(col)
        if method == "year":
            return born
        return F.when(born.isNotNull(), F.greatest(born, F.year(F.current_date()) - OLDEST_AGE))  # NULL stays NULL
    if method == "shift":
        _expect(name, method, dtype, (T.DateType, T.TimestampType, T.TimestampNTZType), "a date or timestamp column")
        if isinstance(dtype, T.DateType):
            return F.date_add(col, F.col(SHIFT_COL))
        return col + F.expr(f"make_dt_interval({SHIFT_COL})")
    if method == "zip3":
        _expect(name, method, dtype, (T.StringType,), "a string column (integer ZIPs lose their leading zeros)")
        digits = F.trim(col)
        prefix = F.substring(digits, 1, 3)
        zip3_col = F.when(prefix.isin(*sorted(RESTRICTED_ZIP3)), F.lit("000")).otherwise(prefix)
        return F.when(digits.rlike(_ZIP_JAVA), zip3_col)
    if method == "age_cap":
        _expect(name, method, dtype, (T.NumericType,), "a numeric column")
        return F.when(col > 89, F.lit(90).cast(dtype)).otherwise(col)
    _expect(name, method, dtype, (T.StringType,), "a string column")
    every_char = F.regexp_replace(col, "(?s).", "*")
    all_but_last4 = F.regexp_replace(col, "(?s).(?=.{4})", "*")
    return F.when(F.length(col) < 5, every_char).otherwise(all_but_last4)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _expect(name: str, method: str, dtype: DataType, types: tuple[type, ...], what: str) -> None:
    if not isinstance(dtype, types):
        raise ConfigError(f"mask {method!r} needs {what}, but column {name!r} is {dtype.simpleString()}")


def _year_of_string(col: Column) -> Column:
    """Year of an ISO date string with calendar checks in plain arithmetic: no parser, so no exception."""
    from pyspark.sql import functions as F

    text = F.trim(col)
    y, m, d = (F.regexp_extract(text, _DATE_JAVA, i).cast("int") for i in (1, 2, 3))
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = F.when(m == 2, F.when(leap, 29).otherwise(28)).when(m.isin(4, 6, 9, 11), 30).otherwise(31)
    valid = text.rlike(_DATE_JAVA) & (y >= 1) & m.between(1, 12) & d.between(1, days)
    return F.when(valid, y)


def _hmac_hex(key: MaskingKey) -> Callable[[str], str]:
    def hmac_hex(text: str) -> str:
        return hmac.new(key.reveal(), text.encode("utf-8"), hashlib.sha256).hexdigest()

    return hmac_hex


def _keyed_udf(function: Callable[[str], object], name: str, return_type: str) -> Callable[[Column], Column]:
    """A pandas UDF mapping `function` over a string column; the key stays in its closure, so the plan shows `name`."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def keyed(values: pd.Series) -> pd.Series:
        return values.map(function, na_action="ignore")

    keyed.__name__ = keyed.__qualname__ = name
    # Spark infers the UDF kind from the type hints, which this module's deferred annotations
    # turned into strings naming a local import: give it the types themselves.
    keyed.__annotations__ = {"values": pd.Series, "return": pd.Series}
    return pandas_udf(keyed, return_type)  # type: ignore[call-overload]
