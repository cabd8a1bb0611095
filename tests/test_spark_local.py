"""The local JVM's class archive: made once, passed to every local start, mapped by the JVM, never in the way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lakehouse import spark_local
from lakehouse.spark_local import class_archive, local_conf


def test_the_shared_session_maps_the_class_archive_the_test_run_made(spark):
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("reads the JVM's memory maps from /proc (Linux)")
    pid = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()
    assert class_archive().is_file()
    assert str(class_archive()) in Path(f"/proc/{pid}/maps").read_text()


def test_the_archive_is_keyed_by_the_jars_as_the_jvm_checks_them(tmp_path):
    """A reinstall of the same Spark at the same path changes its jars' times: the JVM would refuse the old archive."""
    jar = tmp_path / "spark-core.jar"
    jar.write_bytes(b"jar")
    before = spark_local.classpath_stamp(tmp_path)
    assert spark_local.classpath_stamp(tmp_path) == before
    os.utime(jar, ns=(1_000_000_000, 1_000_000_000))
    assert spark_local.classpath_stamp(tmp_path) != before
    assert spark_local.classpath_stamp(tmp_path / "absent") == ""


def test_a_local_start_is_given_the_archive_only_when_there_is_one(tmp_path, monkeypatch):
    archive = tmp_path / "spark.jsa"
    monkeypatch.setattr(spark_local, "class_archive", lambda: archive)

    def options(conf: dict[str, str]) -> str:
        return local_conf(conf).get("spark.driver.extraJavaOptions", "")

    assert "SharedArchiveFile" not in options({})
    archive.write_bytes(b"archive")
    assert f"-XX:SharedArchiveFile={archive}" in options({})
    assert "-Dlog4j2.configurationFile" in options({})  # beside the quiet log, not instead of it
    assert "SharedArchiveFile" not in options({"spark.driver.extraJavaOptions": "-XX:ArchiveClassesAtExit=/x.jsa"})


def test_an_archive_the_jvm_cannot_use_starts_spark_without_it_and_without_a_word(tmp_path):
    """Another classpath than the archive's (here a jar put before Spark's) makes the JVM refuse the archive."""
    jar = tmp_path / "first.jar"
    with zipfile.ZipFile(jar, "w") as made:
        made.writestr("README", "a jar put first on the driver's classpath")
    script = (
        "from lakehouse.session import build_spark;"
        f"spark = build_spark(None, local_dir={str(tmp_path / 'local')!r},"
        f" extra_conf={{'spark.driver.extraClassPath': {str(jar)!r}}});"
        "print('rows', spark.range(3).count())"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rows 3" in done.stdout
    assert "archive" not in (done.stdout + done.stderr).lower()


def test_a_new_archive_removes_those_no_start_has_used_for_a_week(tmp_path, monkeypatch):
    """Each reinstall of Spark makes a new archive (~170 MB); the ones of removed installs must not pile up."""
    week = spark_local.ARCHIVE_UNUSED_DAYS * 86400
    old, recent, current = (tmp_path / f"{name}.jsa" for name in ("old", "recent", "current"))
    for path in (old, recent, current):
        path.write_bytes(b"archive")
    for path in (old, current):
        os.utime(path, (time.time() - week - 60, time.time() - week - 60))
    assert spark_local.remove_unused_archives(tmp_path, keep=current) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.jsa", "recent.jsa"]

    monkeypatch.setattr(spark_local, "class_archive", lambda: current)
    monkeypatch.setattr(spark_local, "delta_jars", lambda verbose=False: [])
    spark_local.local_conf({})  # a start given the archive marks it as used
    assert current.stat().st_mtime > time.time() - 60
