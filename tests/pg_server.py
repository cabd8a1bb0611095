"""A real PostgreSQL server for the tests, started from Debian's binaries (fixtures).

`start_server()` runs `initdb` into a temporary folder and starts the server with `pg_ctl` on a free TCP
port of 127.0.0.1 (plus a unix socket in that folder). It creates a database and a role with a SCRAM
password, so the tests connect through real password authentication over TCP, as they would to RDS.
initdb refuses to run as root: under euid 0 the server runs as the `postgres` OS user (`runuser`).
The benchmark imports `start_server` too.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DATABASE = "lakehouse_test"
ROLE = "lakehouse_test"
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found: looked at `pg_config --bindir` and "
    "/usr/lib/postgresql/*/bin. Run `make test`, which installs Debian's postgresql, or `make postgres`."
)
# Speed over durability: the server lives for one test session. The benchmark asks for durable settings.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_wal_size": "1GB"}


@dataclass
class PgServer:
    """A running throwaway server: where it listens and the credentials of its test role."""

    bindir: Path
    root: Path
    port: int
    password: str = field(repr=False)
    as_postgres: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def settings(self, **overrides: Any):
        """PostgresSettings of the test role over TCP with password authentication."""
        from pydantic import SecretStr

        from lakehouse.sinks.postgres import PostgresSettings

        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "dbname": DATABASE,
            "user": ROLE,
            "password": SecretStr(self.password),
            "sslmode": "disable",
            "application_name": "lakehouse-tests",
        }
        return PostgresSettings(**(values | overrides))

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser over the unix socket (trust authentication)."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(sql)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                _run(self, [self.bindir / "pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w", "-t", "30"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(v) if (v := Path(p).parent.name).isdigit() else 0, reverse=True)
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def start_server(*, durable: bool = False) -> PgServer:
    """Initialise and start a server in a new temporary folder; the caller must call `stop()`.

    durable=True keeps PostgreSQL's default fsync/commit settings (for benchmarks of commit costs).
    """
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(MISSING)
    root = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    server = PgServer(bindir, root, 0, secrets.token_urlsafe(16), as_postgres=os.geteuid() == 0)
    try:
        server.socket_dir.mkdir()
        pwfile = root / "pw"
        pwfile.write_text(secrets.token_urlsafe(16) + "\n")
        if server.as_postgres:
            shutil.chown(root, "postgres")
            for path in (server.socket_dir, pwfile):
                shutil.chown(path, "postgres")
        initdb = [bindir / "initdb", "-D", server.data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8"]
        _run(server, [*initdb, "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"])
        _start(server, {} if durable else FAST)
        server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
        server.admin(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        return server
    except BaseException:
        server.stop()
        raise


def _start(server: PgServer, conf: dict[str, str]) -> None:
    """pg_ctl start on a free port; retried, since another process may take the port in between."""
    options = " ".join(f"-c {k}={v}" for k, v in ({"listen_addresses": "127.0.0.1"} | conf).items())
    for attempt in range(3):
        server.port = _free_port()
        start = [server.bindir / "pg_ctl", "start", "-D", server.data, "-w", "-t", "60", "-l", server.root / "log"]
        try:
            _run(server, [*start, "-o", f"-p {server.port} -k {server.socket_dir} {options}"])
            return
        except RuntimeError:
            if attempt == 2:
                raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(server: PgServer, args: list[Any]) -> None:
    command = [str(a) for a in args]
    if server.as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log = server.root / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"{' '.join(command)} failed with exit code {done.returncode}:\n{done.stdout}{done.stderr}{tail}"
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (started on first use, stopped and deleted at the end)."""
    if find_bindir() is None:
        pytest.fail(MISSING, pytrace=False)
    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(pg_server: PgServer):
    """PostgresSettings of a password-authenticated role owning the test database."""
    return pg_server.settings()


@pytest.fixture
def pg_schema() -> str:
    """A schema name no other test uses (the schema itself is created by the code under test)."""
    return f"t_{uuid.uuid4().hex[:12]}"
