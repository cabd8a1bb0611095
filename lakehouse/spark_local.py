"""What a local Spark needs besides its settings: the Delta jars, resolved once and then used offline, and a quiet log.

The Delta jars come from Maven Central through Spark's Ivy (`spark.jars.packages`), which resolves them
again at every start (seconds, the network, ~25 lines of output). Here they are resolved once — in a
bare Spark JVM whose output is kept, not printed — and copied to a cache folder
(`$XDG_CACHE_HOME/lakehouse/jars/<packages>`, default `~/.cache/…`); every later start passes the cached
files as `spark.jars` and never runs Ivy. A fresh machine resolves on its first start, as before.

Spark's own log goes to stderr at ERROR level through a log4j2 configuration of the engine's own (no
start-up warnings, no "Setting default log level" banner); `verbose` keeps Spark's defaults and shows Ivy.

A local JVM spends its first seconds loading and verifying Spark's and Delta's classes. `make_class_archive`
runs a small Delta workload once in a JVM that dumps the classes it loaded to a class data sharing archive
(`…/lakehouse/cds/`, ~160 MB, Java 13 or newer); every later local start maps it instead (a session and its
first Delta write in ~27 s instead of ~31 s on 2 cores). A JVM that cannot use it (another Java, another
classpath) starts without it, silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from lakehouse.errors import LakehouseError

# A class archive no local start has used for this many days is deleted when a new one is made.
ARCHIVE_UNUSED_DAYS = 7

LOG4J2 = """\
# lakehouse: Spark's log at ERROR on stderr (run with -v for Spark's defaults)
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# PySpark's gateway starts logging as a shell does: without a level of its own Spark would lower the
# console to WARN (and print a banner saying so)
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


def cache_root() -> Path:
    """Where the engine keeps what it downloads or generates once per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lakehouse"


def delta_packages() -> str:
    """The Maven coordinates of the Delta jars matching the installed delta-spark and pyspark's Scala version."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    scala = next(
        (m.group(1) for p in jars.glob("scala-library-*.jar") if (m := re.search(r"-(\d+\.\d+)\.", p.name))), "2.12"
    )
    return f"io.delta:delta-spark_{scala}:{metadata.version('delta-spark')}"


def _folder(packages: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", packages)[:80]
    return cache_root() / "jars" / f"{slug}-{hashlib.sha256(packages.encode()).hexdigest()[:8]}"


def cached_jars(packages: str) -> list[str] | None:
    """The cached jar files of `packages`, or None if they were never resolved (or a file is gone)."""
    manifest = _folder(packages) / "jars.txt"
    if not manifest.is_file():
        return None
    jars = [str(manifest.parent / name) for name in manifest.read_text().split()]
    return jars if jars and all(os.path.isfile(j) for j in jars) else None


def _resolve(packages: str, verbose: bool) -> list[str]:
    """Let Spark's Ivy resolve `packages` in a bare JVM (no SparkContext); the local paths of the jars."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    with tempfile.TemporaryFile(mode="w+") as output:
        popen = {} if verbose else {"stdout": output, "stderr": subprocess.STDOUT}
        try:
            gateway = launch_gateway(SparkConf().set("spark.jars.packages", packages), popen_kwargs=popen)
        except Exception as exc:
            output.seek(0)
            raise LakehouseError(
                f"could not resolve the Delta jars {packages} from Maven Central ({exc}); Spark's output:\n"
                f"{output.read()[-3000:]}\nCheck the network (or a proxy), then rerun."
            ) from None
        try:
            jars = gateway.jvm.System.getProperty("spark.jars") or ""
        finally:
            _stop_jvm(gateway, timeout=60)
    return [unquote(urlparse(j).path) if j.startswith("file:") else j for j in jars.split(",") if j]


def delta_jars(*, verbose: bool = False) -> list[str]:
    """The Delta jars on local disk: from the cache, or resolved now (once per machine) and cached."""
    packages = delta_packages()
    jars = cached_jars(packages)
    if jars is not None:
        return jars
    resolved = _resolve(packages, verbose)
    folder = _folder(packages)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    for jar in resolved:
        shutil.copy2(jar, staging / Path(jar).name)
    (staging / "jars.txt").write_text("\n".join(Path(j).name for j in resolved) + "\n")
    try:
        staging.rename(folder)  # atomic: a concurrent start sees all of it or none
    except OSError:  # another process cached them first
        shutil.rmtree(staging, ignore_errors=True)
    return cached_jars(packages) or resolved


def log4j2_file() -> Path:
    """The engine's log4j2 configuration, written once into the cache folder."""
    path = cache_root() / f"log4j2-{hashlib.sha256(LOG4J2.encode()).hexdigest()[:8]}.properties"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(LOG4J2)
        staging.replace(path)
    return path


def local_conf(conf: dict[str, str], *, verbose: bool = False) -> dict[str, str]:
    """`conf` plus the Delta jars and, unless `verbose`, the quiet log configuration."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: the JVM runs already, with its own classpath
        return conf
    out = dict(conf)
    out["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars"), *delta_jars(verbose=verbose)]))
    options = [conf.get("spark.driver.extraJavaOptions")]
    if not verbose:
        options.append(f"-Dlog4j2.configurationFile={log4j2_file().as_uri()}")
    archive = class_archive()
    if archive.is_file() and "ArchiveClassesAtExit" not in (options[0] or ""):
        options.append(f"-XX:SharedArchiveFile={archive} -Xlog:cds=off -Xlog:cds+dynamic=off")
        with contextlib.suppress(OSError):  # used: `remove_unused_archives` keeps it
            os.utime(archive)
    if any(options):
        out["spark.driver.extraJavaOptions"] = " ".join(filter(None, options))
    return out


def _java() -> str:
    """The java binary Spark's launcher starts (JAVA_HOME's, else the one on PATH), symlinks resolved."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java") or "java"
    return os.path.realpath(java)


def classpath_stamp(jars: Path) -> str:
    """The name, size and modification time of every jar in `jars`: what the JVM checks before it maps an archive.

    A reinstall of the same Spark at the same path gives the jars new times; the JVM then refuses the old archive
    without a word, so the archive is keyed by them and made again."""
    if not jars.is_dir():
        return ""
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(jars) if e.is_file())
    return hashlib.sha256(repr(entries).encode()).hexdigest()


def class_archive() -> Path:
    """Where the class archive of this Java, this Spark and these Delta jars is kept (made or not)."""
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    key = "\n".join(
        [_java(), str(spark_home), pyspark.__version__, delta_packages(), classpath_stamp(spark_home / "jars")]
    )
    return cache_root() / "cds" / f"spark-{pyspark.__version__}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsa"


def _java_major() -> int:
    """The major version of `_java()` (0 if it cannot be told)."""
    try:
        done = subprocess.run([_java(), "-version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return 0
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0_…" is Java 8


def make_class_archive() -> Path | None:
    """The class archive, made now if it is not there yet (about a minute, once); None where Java cannot make one."""
    target = class_archive()
    if target.is_file():
        return target
    if _java_major() < 13:  # -XX:ArchiveClassesAtExit came with Java 13
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryFile(mode="w+") as output:
        done = subprocess.run(
            [sys.executable, "-m", "lakehouse.spark_local", str(staging), work],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    if done.returncode == 0 and staging.is_file():
        staging.replace(target)  # atomic: a concurrent start maps all of it or nothing
        remove_unused_archives(target.parent, keep=target)
        return target
    staging.unlink(missing_ok=True)
    return None


def remove_unused_archives(folder: Path, *, keep: Path, days: float = ARCHIVE_UNUSED_DAYS) -> list[Path]:
    """Delete the class archives of `folder` (~170 MB each) no start has used for `days`, except `keep`.

    Every local start marks the archive it is given as used (`local_conf`), so an archive of another install
    still in use stays; one of a removed or reinstalled venv goes. A start that maps one at that very moment
    keeps its mapping (the file's space is freed when the JVM exits)."""
    cutoff = time.time() - days * 86400
    removed = []
    for path in folder.glob("*.jsa"):
        try:
            if path != keep and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours: left alone
            continue
    return removed


def _load_classes(archive: Path, work: Path) -> None:
    """In a process of its own: a Spark JVM that writes, MERGEs, reads and streams a small Delta table, then
    dumps the classes it loaded to `archive` as it exits."""
    from delta.tables import DeltaTable
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from lakehouse.session import ENGINE_CONF

    conf = local_conf({**ENGINE_CONF, "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={archive}"})
    builder = SparkSession.builder.master("local[2]").appName("lakehouse-class-archive")
    for key, value in {**conf, "spark.ui.enabled": "false", "spark.local.dir": str(work / "spark")}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    table, landing = str(work / "table"), work / "landing"
    landing.mkdir()
    (landing / "1.csv").write_text("I,1,a\nU,2,b\n")
    rows = spark.range(100).selectExpr("id", "cast(id as string) AS name", "current_timestamp() AS at")
    rows.write.format("delta").save(table)

    def merge(batch, _batch_id: int) -> None:
        changes = batch.selectExpr("cast(split(value, ',')[1] AS long) AS id", "split(value, ',')[2] AS name")
        changes = changes.withColumn("at", F.current_timestamp())
        target = DeltaTable.forPath(spark, table).alias("t")
        target.merge(changes.alias("s"), "t.id = s.id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()

    stream = spark.readStream.text(str(landing)).writeStream.foreachBatch(merge)
    stream.option("checkpointLocation", str(work / "checkpoint")).trigger(availableNow=True).start().awaitTermination()
    spark.read.format("delta").load(table).where("id > 10").groupBy("name").count().collect()
    gateway = spark.sparkContext._gateway
    spark.stop()
    _stop_jvm(gateway, timeout=600)  # the JVM writes the archive as it exits


def _stop_jvm(gateway, *, timeout: float) -> None:
    """Close PySpark's gateway and wait for its JVM to exit (it does when its stdin closes)."""
    gateway.shutdown()
    gateway.proc.stdin.close()
    gateway.proc.wait(timeout=timeout)


if __name__ == "__main__":
    _load_classes(Path(sys.argv[1]), Path(sys.argv[2]))
