"""PySpark's `functions` methods are looked up once per JVM, and the expressions built are the same."""

from __future__ import annotations

import importlib
from contextlib import contextmanager

from chispa import assert_df_equality
from py4j import clientserver
from pyspark.sql import functions as F

from lakehouse import jvm_calls
from lakehouse.jvm_calls import cache_function_lookups


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextmanager
def _commands(monkeypatch):
    """The py4j commands the driver sends meanwhile: their first three lines (`r`, a reflection, with what it asks)."""
    sent: list[str] = []
    send = clientserver.ClientServerConnection.send_command

    def counting(self, command):
        sent.append(" ".join(command.split("\n")[:3]))
        return send(self, command)

    with monkeypatch.context() as patched:
        patched.setattr(clientserver.ClientServerConnection, "send_command", counting)
        yield sent


def _expressions():
    return [
        F.when(F.col("a") > F.lit(1), F.concat(F.lit("x"), F.col("b"))).otherwise(F.coalesce(F.col("b"), F.lit("-"))),
        F.regexp_extract(F.col("b"), r"([^/]*)$", 1),
        F.lpad(F.col("a").cast("string"), 5, "0"),
    ]


def test_function_lookups_are_made_once_and_build_the_same_columns(spark, monkeypatch):
    df = spark.createDataFrame([(1, "p/q"), (2, None)], "a int, b string")
    cache_function_lookups()  # the session built it already: a second call changes nothing
    cache_function_lookups()
    _expressions()  # the first build looks up what it uses
    with _commands(monkeypatch) as sent:
        built = df.select(*_expressions())
    assert sent, "the expressions were built through py4j"
    lookups = [c for c in sent if c.startswith("r ") and c.endswith("functions")]
    assert not lookups, f"reflection lookups of functions already looked up: {lookups}"

    (functions,) = [m for m in map(_module, jvm_calls._MODULES) if hasattr(m, "_get_jvm_function")]
    with monkeypatch.context() as patched:
        patched.setattr(functions, "_get_jvm_function", functions._get_jvm_function.__wrapped__)
        with _commands(monkeypatch) as sent:
            expected = df.select(*_expressions())
        assert [c for c in sent if c.startswith("r ") and c.endswith("functions")]  # PySpark's own asks every time
    assert_df_equality(built, expected)
