"""A real Trino server for the Athena lane: Athena engine version 3 is built on Trino, and Trino's Delta
Lake connector is the closest reader of Athena's dialect that runs on this machine.

`install_trino()` fetches `io.trino:trino-server` from Maven Central with Maven itself (`-C`: strict
checksums, so the tarball matches the repository's .sha1), once, and unpacks it into a cache outside the
repository (`${XDG_CACHE_HOME:-~/.cache}/lakehouse/trino-server-<version>`), keeping only the Delta Lake
plugin. `start_trino()` runs it on a free port of 127.0.0.1 with a bounded heap, a file metastore and
`register_table` enabled, under a Java it finds (Trino 476 needs Java 24+; Spark stays on Java 17).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VERSION = "476"
ARTIFACT = f"io.trino:trino-server:{VERSION}:tar.gz"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:get"
MIN_JAVA = 24
HEAP = "1G"  # the smallest heap that runs the lane's queries; leaves Spark its 4 GB on a 2-core machine
CATALOG = "delta"


def _log(message: str) -> None:
    print(f"[trino] {message}", flush=True)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lakehouse"


def _maven_file() -> Path:
    folder = Path.home() / ".m2" / "repository" / "io" / "trino" / "trino-server" / VERSION
    return folder / f"trino-server-{VERSION}.tar.gz"


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()  # Maven Central publishes SHA-1 checksums
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download() -> Path:
    """The server tarball in Maven's local repository, fetched by Maven if missing, checked against its .sha1."""
    tarball = _maven_file()
    if not tarball.is_file():
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (mvn) is needed to fetch the Trino server: apt-get install maven")
        _log(f"downloading {ARTIFACT} with Maven (about 800 MB, once)")
        started = time.monotonic()
        command = ["mvn", "-B", "-q", "-C", DEPENDENCY_PLUGIN, f"-Dartifact={ARTIFACT}", "-Dtransitive=false"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not tarball.is_file():
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        _log(f"downloaded in {time.monotonic() - started:.0f}s")
    expected = tarball.with_name(tarball.name + ".sha1")
    if not expected.is_file():
        raise RuntimeError(f"{expected} is missing: delete {tarball.parent} and rerun to fetch it again")
    actual, wanted = _sha1(tarball), expected.read_text().split()[0].strip()
    if actual != wanted:
        raise RuntimeError(f"{tarball} has SHA-1 {actual}, Maven Central says {wanted}: delete it and rerun")
    _log(f"{tarball.name}: SHA-1 {actual} matches Maven Central's")
    return tarball


def install_trino() -> Path:
    """The unpacked server (lib, bin, the Delta Lake plugin) in the cache; fetched and unpacked on first use."""
    home = cache_dir() / f"trino-server-{VERSION}"
    if (home / "lib").is_dir() and (home / "plugin" / "delta-lake").is_dir():
        _log(f"cached server: {home}")
        return home
    tarball = _download()
    started = time.monotonic()
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".trino-{VERSION}-", dir=home.parent))
    try:
        # The tarball hard-links jars shared between plugins: unpack it whole, then drop the other plugins.
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(staging)], check=True)
        unpacked = staging / f"trino-server-{VERSION}"
        for plugin in (unpacked / "plugin").iterdir():
            if plugin.name != "delta-lake":
                shutil.rmtree(plugin)
        shutil.rmtree(home, ignore_errors=True)
        unpacked.rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log(f"unpacked into {home} in {time.monotonic() - started:.0f}s")
    return home


def _java_version(java: Path) -> int:
    done = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    first = (done.stderr or done.stdout).split('"')
    try:
        return int(first[1].split(".")[0]) if len(first) > 1 else 0
    except ValueError:
        return 0


def find_java() -> Path:
    """A Java >= 24 for Trino: $TRINO_JAVA_HOME, else the newest JDK under /usr/lib/jvm."""
    candidates = [os.environ["TRINO_JAVA_HOME"]] if os.environ.get("TRINO_JAVA_HOME") else []
    candidates += sorted((str(p) for p in Path("/usr/lib/jvm").glob("*") if p.is_dir()), reverse=True)
    for home in candidates:
        java = Path(home) / "bin" / "java"
        if java.is_file() and _java_version(java) >= MIN_JAVA:
            return Path(home)
    raise RuntimeError(
        f"Trino {VERSION} needs Java {MIN_JAVA}+ and none was found (looked at $TRINO_JAVA_HOME and /usr/lib/jvm/*). "
        "Install one (e.g. Temurin 25) and point TRINO_JAVA_HOME at it; Spark keeps its Java 17."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


JVM_OPTIONS = [
    f"-Xmx{HEAP}",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:ReservedCodeCacheSize=256M",
    "-XX:+EnableDynamicAgentLoading",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dfile.encoding=UTF-8",
    "-Duser.timezone=UTC",  # Athena's sessions are UTC: TIMESTAMP literals compare as UTC instants
    "--enable-native-access=ALL-UNNAMED",
]


@dataclass
class TrinoServer:
    """A running server: where it listens, what it reads, its log."""

    port: int
    root: Path  # local files Trino sees as local:///<path relative to root>
    work: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def log(self) -> Path:
        return self.work / "server.log"

    def location(self, path: str | Path) -> str:
        """The Trino location of a local path under `root`."""
        return "local:///" + Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def connect(self, schema: str | None = None):
        import trino

        return trino.dbapi.connect(
            host="127.0.0.1",
            port=self.port,
            user="lakehouse-tests",
            catalog=CATALOG,
            schema=schema,
            timezone="UTC",
            http_scheme="http",
        )

    def query(self, sql: str, schema: str | None = None) -> tuple[list[str], list[tuple]]:
        """Run one statement; (column names, rows)."""
        with self.connect(schema) as conn:
            cur = conn.cursor()
            cur.execute(sql)
            rows = [tuple(r) for r in cur.fetchall()]
            return [d[0] for d in cur.description or []], rows

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _write_config(work: Path, home: Path, root: Path, metastore: Path, port: int) -> Path:
    etc = work / "etc"
    (etc / "catalog").mkdir(parents=True)
    (etc / "config.properties").write_text(
        "\n".join(
            [
                "coordinator=true",
                "node-scheduler.include-coordinator=true",
                f"http-server.http.port={port}",
                f"discovery.uri=http://127.0.0.1:{port}",
                f"plugin.dir={home / 'plugin'}",
                f"catalog.config-dir={etc / 'catalog'}",
                "query.max-memory=512MB",
                "query.max-memory-per-node=512MB",
                "task.concurrency=2",
                "http-server.log.enabled=false",
                "",
            ]
        )
    )
    (etc / "log.properties").write_text("io.trino=INFO\n")
    (etc / "catalog" / f"{CATALOG}.properties").write_text(
        "\n".join(
            [
                "connector.name=delta_lake",
                "hive.metastore=file",
                f"hive.metastore.catalog.dir=local:///{metastore.relative_to(root).as_posix()}",
                "delta.register-table-procedure.enabled=true",
                "fs.native-local.enabled=true",
                f"local.location={root}",
                "",
            ]
        )
    )
    return etc


def start_trino(root: Path, *, timeout: float = 180) -> TrinoServer:
    """Start Trino reading the files under `root`; wait until it answers a query. The caller calls `stop()`."""
    home = install_trino()
    java_home = find_java()
    work = Path(tempfile.mkdtemp(prefix="trino-", dir=root))
    metastore = work / "metastore"
    metastore.mkdir()
    for attempt in range(3):  # another process may take the free port before Trino binds it
        port = free_port()
        run = work / f"run{attempt}"
        etc = _write_config(run, home, root, metastore, port)
        node = {
            "node.environment": "lakehouse_tests",
            "node.id": f"lakehouse-tests-{port}",
            "node.data-dir": str(run / "data"),
            "node.bind-ip": "127.0.0.1",
            "node.internal-address": "127.0.0.1",
        }
        log = (run / "server.log").open("wb")
        command = [
            str(java_home / "bin" / "java"),
            *JVM_OPTIONS,
            "-cp",
            str(home / "lib" / "*"),
            f"-Dconfig={etc / 'config.properties'}",
            *(f"-D{k}={v}" for k, v in node.items()),
            f"-Dlog.levels-file={etc / 'log.properties'}",
            "io.trino.server.TrinoServer",
        ]
        env = {**os.environ, "JAVA_HOME": str(java_home)}
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=run, env=env, preexec_fn=_die_with_parent
        )
        server = TrinoServer(port, root, run, process)
        if _wait_ready(server, started + timeout):
            took = time.monotonic() - started
            _log(f"Trino {VERSION} up on 127.0.0.1:{port} in {took:.0f}s (Java {java_home.name}, -Xmx{HEAP})")
            return server
        server.stop()
        tail = server.log.read_text(errors="replace")[-4000:]
        if "Address already in use" not in tail or attempt == 2:
            raise RuntimeError(f"Trino did not start within {timeout:.0f}s; its log ends:\n{tail}")
    raise AssertionError("unreachable")


def _die_with_parent() -> None:
    """In the child before exec: Linux ends Trino when the test process dies, even by SIGKILL (no orphan JVM)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_ready(server: TrinoServer, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/v1/info", timeout=2) as response:
                if b'"starting":false' in response.read().replace(b" ", b""):
                    server.query("SELECT 1")
                    return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        except Exception:  # the coordinator answers before its worker is active: retry
            pass
        time.sleep(1)
    return False


@pytest.fixture(scope="session")
def trino(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrinoServer]:
    """The session's Trino server, reading files under a temporary root (tests put their tables there)."""
    root = tmp_path_factory.mktemp("trino-root")
    server = start_trino(root)
    yield server
    server.stop()
