"""Masking rules: the Python reference on edge cases, and Spark computing the same values."""

from __future__ import annotations

import pickle
from datetime import date, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from lakehouse.errors import ConfigError
from lakehouse.masking import (
    RESTRICTED_ZIP3,
    DateShift,
    MaskingKey,
    age_cap,
    birth_year,
    last4,
    mask_columns,
    pseudonym,
    redact,
    sequence_token,
    sequence_tokens,
    shift_days,
    year,
    zip3,
)
from lakehouse.secrets import masking_key

KEY_TEXT = "k" * 32
KEY = MaskingKey(KEY_TEXT.encode())
OTHER_KEY = MaskingKey(b"o" * 32)


# --- the key -----------------------------------------------------------------------------------


def test_key_never_shows_in_repr_or_str():
    secret = b"s3cr3t-" * 6
    key = MaskingKey(secret)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "s3cr3t" not in text
        assert secret.hex() not in text


def test_key_shorter_than_32_bytes_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="31 bytes") as info:
        MaskingKey(b"x" * 31)
    assert "xxxx" not in str(info.value)


def test_key_survives_pickling_for_spark_workers():
    assert pseudonym("a", pickle.loads(pickle.dumps(KEY))) == pseudonym("a", KEY)


def test_no_key_configured_is_a_config_error_that_says_how_to_provide_one():
    with pytest.raises(ConfigError, match="refuses to start") as info:
        masking_key(env_var=None, secret_id=None)
    assert "openssl rand" in str(info.value)


# --- the Python reference ----------------------------------------------------------------------


def test_pseudonym_is_hmac_sha256_hex_of_utf8_text():
    # Expected values from `echo -n 123 | openssl dgst -sha256 -hmac kkkk...` (32 k).
    assert pseudonym("123", KEY) == "6f6606f7bfa64af004aa8093cb90492b7660bdfdc25ec736a5a6b7ccdef90217"
    assert pseudonym("Zoë", KEY) == "389323e05943fae5b266f6ca9f960eefa1d626ed2b3693721c3688344db49140"


def test_pseudonym_of_an_integer_equals_that_of_its_text_so_tables_join():
    assert pseudonym(123, KEY) == pseudonym("123", KEY)
    assert pseudonym(-7, KEY) == pseudonym("-7", KEY)


def test_pseudonym_depends_on_the_key_and_keeps_null():
    assert pseudonym("123", KEY) != pseudonym("123", OTHER_KEY)
    assert pseudonym(None, KEY) is None


def test_pseudonym_of_empty_string_is_a_value_not_null():
    assert pseudonym("", KEY) is not None
    assert pseudonym("", KEY) != pseudonym(" ", KEY)


def test_pseudonym_refuses_types_without_one_text_form():
    with pytest.raises(TypeError):
        pseudonym(1.5, KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pseudonym(True, KEY)


def test_redact_is_null():
    assert redact("anything") is None
    assert redact(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(1950, 3, 4), 1950),
        (datetime(1999, 12, 31, 23, 59), 1999),
        ("2024-02-29", 2024),
        ("2024-01-02T10:20:30Z", 2024),
        ("2024-01-02 10:20:30.123", 2024),
        ("  2024-01-02  ", 2024),
        ("2023-02-29", None),
        ("1900-02-29", None),
        ("2000-02-29", 2000),
        ("2024-04-31", None),
        ("2024-13-01", None),
        ("2024-00-10", None),
        ("0000-01-01", None),
        ("2024-1-2", None),
        ("2024-01-02\n", None),
        ("02/01/2024", None),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_year(value, expected):
    assert year(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345", "123"),
        ("12345-6789", "123"),
        ("123456789", "123"),
        (" 02134 ", "021"),
        ("03601", "000"),
        ("89301-1234", "000"),
        ("1234", None),
        ("123456", None),
        ("12345-678", None),
        ("12345 6789", None),
        ("ABCDE", None),
        ("", None),
        (None, None),
    ],
)
def test_zip3(value, expected):
    assert zip3(value) == expected


def test_zip3_blanks_all_17_safe_harbor_restricted_prefixes():
    assert len(RESTRICTED_ZIP3) == 17
    assert {zip3(prefix + "99") for prefix in RESTRICTED_ZIP3} == {"000"}
    assert zip3("03700") == "037"


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (89, 89), (90, 90), (91, 90), (120, 90), (None, None)])
def test_age_cap(value, expected):
    assert age_cap(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123-45-6789", "*******6789"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("1", "*"),
        ("", ""),
        ("Zoë Ångström", "********tröm"),
        (None, None),
    ],
)
def test_last4(value, expected):
    assert last4(value) == expected


# --- Spark computes what the reference does -------------------------------------------------

STRINGS = [
    "12345",
    "12345-6789",
    "123456789",
    " 03601 ",
    "1234",
    "",
    "2024-02-29",
    "2023-02-29",
    "2024-01-02T10:20:30Z",
    "2024-01-02\n",
    "\uff12\uff10\uff12\uff14-01-02",  # full-width digits: not ASCII digits in either engine
    "Zoë Ångström",
    "😀 emoji 😀",
    "123-45-6789",
    None,
]


def test_spark_string_masks_agree_with_python(spark):
    df = spark.createDataFrame(
        [(i, s, s, s, s, s) for i, s in enumerate(STRINGS)], "i int, p string, y string, z string, l string, r string"
    )
    rules = {"p": "pseudonym", "y": "year", "z": "zip3", "l": "last4", "r": "redact"}
    got = {row.i: row for row in mask_columns(df, rules, key=KEY).collect()}
    for i, s in enumerate(STRINGS):
        expected = (pseudonym(s, KEY), year(s), zip3(s), last4(s), None)
        assert (got[i].p, got[i].y, got[i].z, got[i].l, got[i].r) == expected, f"value {s!r}"


def test_spark_typed_masks_agree_with_python(spark):
    rows = [
        (1, 123, date(2024, 2, 29), datetime(1999, 12, 31, 23, 59), 89),
        (2, -7, date(1950, 1, 1), datetime(2000, 1, 1), 90),
        (3, None, None, None, 91),
        (4, 0, date(2001, 6, 30), datetime(2001, 6, 30, 12), None),
    ]
    df = spark.createDataFrame(rows, "i int, pid bigint, born date, seen timestamp, age int")
    masked = mask_columns(df, {"pid": "pseudonym", "born": "year", "seen": "year", "age": "age_cap"}, key=KEY)
    assert [(f.name, f.dataType.simpleString()) for f in masked.schema] == [
        ("i", "int"),
        ("pid", "string"),
        ("born", "int"),
        ("seen", "int"),
        ("age", "int"),
    ]
    expected = [(i, pseudonym(p, KEY), year(b), year(s), age_cap(a)) for i, p, b, s, a in rows]
    assert [tuple(r) for r in masked.orderBy("i").collect()] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(date(1937, 1, 1), 1937), (date(1936, 12, 31), 1936), (date(1935, 5, 5), 1936), ("1900-02-28", 1936),
     (date(2026, 1, 1), 2026), ("1935-02-30", None), (None, None)],
)  # fmt: skip
def test_birth_year_publishes_90_or_older_as_one_category(value, expected):
    """Found by review: `year` published 1930 as it is, an age over 89 (Safe Harbor lets no date element show it)."""
    assert birth_year(value, today=date(2026, 12, 5)) == expected


def test_spark_birth_year_agrees_with_python_today(spark):
    today = date.today()
    born = [date(today.year - 89, 1, 1), date(today.year - 90, 12, 31), date(1901, 1, 1), None]
    rows = [(i, b, b.isoformat() if b else None) for i, b in enumerate(born)]
    df = spark.createDataFrame(rows, "i int, d date, s string")
    masked = mask_columns(df, {"d": "birth_year", "s": "birth_year"}, key=KEY).orderBy("i").collect()
    assert [(r.d, r.s) for r in masked] == [(birth_year(b), birth_year(b)) for b in born]
    assert [r.d for r in masked] == [today.year - 89, today.year - 90, today.year - 90, None]


def test_a_birth_date_marked_year_is_refused_at_load_with_the_rule_to_use():
    from lakehouse.config import TableConfig

    table = TableConfig.model_validate(
        {"name": "people", "primary_key": ["id"], "phi_columns": {"id": "pseudonym", "date_of_birth": "year"},
         "source": {"kind": "dms", "path": "x", "columns": {"id": "bigint", "date_of_birth": "date"}}}
    )  # fmt: skip
    (problem,) = table.non_phi_problems()
    assert "columns date_of_birth look like birth dates marked year" in problem and "birth_year" in problem
    camel = table.model_copy(
        update={"phi_columns": {"id": "pseudonym", "date_of_birth": "birth_year", "patientDob": "year"}}
    )
    assert [p for p in camel.non_phi_problems() if "columns patientDob look like birth dates" in p]


def test_spark_redact_keeps_the_column_type(spark):
    df = spark.createDataFrame([(1, date(2020, 1, 1))], "n bigint, d date")
    masked = mask_columns(df, {"n": "redact", "d": "redact"}, key=KEY)
    assert masked.schema == df.schema
    assert masked.collect()[0] == (None, None)


def test_key_never_appears_in_the_spark_plan(spark, capsys):
    df = spark.createDataFrame([("123",)], "patient string")
    masked = mask_columns(df, {"patient": "pseudonym"}, key=KEY)
    masked.explain(True)
    plan = capsys.readouterr().out + masked._jdf.queryExecution().toString() + masked.schema.json()
    assert "pseudonym" in plan
    for secret in (KEY_TEXT, KEY.reveal().hex(), KEY_TEXT[:16]):
        assert secret not in plan


def test_mask_columns_without_a_key_refuses_to_run(spark):
    df = spark.createDataFrame([("a",)], "v string")
    with pytest.raises(ConfigError, match="refuses to run"):
        mask_columns(df, {"v": "redact"}, key=None)  # type: ignore[arg-type]


def test_mask_columns_names_unknown_columns_methods_and_types(spark):
    df = spark.createDataFrame([("a", 1)], "v string, n int")
    with pytest.raises(ConfigError, match="missing_col"):
        mask_columns(df, {"missing_col": "redact"}, key=KEY)
    with pytest.raises(ConfigError, match="unknown mask 'hash'"):
        mask_columns(df, {"v": "hash"}, key=KEY)
    with pytest.raises(ConfigError, match="column 'n' is int"):
        mask_columns(df, {"n": "zip3"}, key=KEY)


def test_mask_columns_handles_names_with_dots(spark):
    df = spark.createDataFrame([("12345-6789",)], "`home.zip` string")
    assert mask_columns(df, {"home.zip": "zip3"}, key=KEY).collect()[0][0] == "123"


# --- keep, the date shift and the sequence token ----------------------------------------------------------------


def test_shift_days_is_keyed_per_patient_within_the_bound_and_never_zero():
    offsets = [shift_days(p, KEY, 30) for p in range(2000)]
    assert all(-30 <= d <= 30 and d != 0 for d in offsets)
    assert len(set(offsets)) == 60  # every offset but 0 occurs
    assert shift_days(123, KEY, 30) == shift_days("123", KEY, 30)  # the same patient in every table
    assert [shift_days(p, OTHER_KEY, 30) for p in range(50)] != offsets[:50]


def test_sequence_token_is_keyed_per_table_and_hides_the_commit_time():
    sequence = "1-20260301091500123456-" + "42".zfill(35) + "-" + " " * 48 + "-" + "0" * 12
    token = sequence_token("patients", sequence, KEY)
    assert token == sequence_token("patients", sequence, KEY) and len(token) == 32
    assert token != sequence_token("devices", sequence, KEY) != sequence_token("patients", sequence, OTHER_KEY)
    assert "2026" not in token and sequence_token("patients", None, KEY) is None


def test_spark_keep_shift_and_tokens_agree_with_python(spark):
    rows = [(1, 123, date(2024, 2, 29), datetime(2024, 3, 1, 23, 59, 1), "s1"), (2, None, None, None, None)]
    df = spark.createDataFrame(rows, "i int, pid bigint, born date, seen timestamp, seq string")
    masked = mask_columns(
        df.withColumn("seq", sequence_tokens(F.col("seq"), table="t", key=KEY)),
        {"i": "keep", "born": "shift", "seen": "shift"},
        key=KEY,
        shift=DateShift("pid", 30),
    )
    assert masked.columns == df.columns and masked.schema["seen"].dataType.simpleString() == "timestamp"
    got = {r.i: r for r in masked.collect()}
    days = timedelta(days=shift_days(123, KEY, 30))
    assert (got[1].born, got[1].seen, got[1].seq) == (
        date(2024, 2, 29) + days,
        rows[0][3] + days,
        sequence_token("t", "s1", KEY),
    )
    assert (got[2].born, got[2].seen, got[2].seq) == (None, None, None)


def test_shift_without_the_tables_date_shift_is_refused(spark):
    df = spark.createDataFrame([(1, date(2020, 1, 1))], "p bigint, d date")
    with pytest.raises(ConfigError, match="non_phi_dates"):
        mask_columns(df, {"d": "shift"}, key=KEY)
