"""Connection settings (environment or an RDS-shaped Secrets Manager secret) and `connect`; no password in any text."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import psycopg
from pydantic import SecretStr

from lakehouse.aws import explained
from lakehouse.errors import ConfigError, RetryableError
from lakehouse.sinks.postgres.base import _check_schema

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

_ENV = {  # field -> the libpq variable read when the prefixed one is absent
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "schema": None,
}


@dataclass(frozen=True)
class PostgresSettings:
    """Where and how to connect. The password is a SecretStr: repr, str and errors never show it.

    TLS settings go to libpq unchanged; for RDS use sslmode="verify-full" with sslrootcert pointing at the
    RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
    """

    host: str
    dbname: str
    user: str
    password: SecretStr | None = None
    port: int = 5432
    sslmode: SslMode = "prefer"
    sslrootcert: str | None = None
    schema: str = "lakehouse"
    connect_timeout: int = 10
    application_name: str = "lakehouse"

    def __post_init__(self) -> None:
        if isinstance(self.password, str):  # accept a plain string, keep it wrapped
            object.__setattr__(self, "password", SecretStr(self.password))
        for name in ("host", "dbname", "user"):
            if not getattr(self, name):
                raise ConfigError(f"PostgreSQL {name} is empty; expected a non-empty string", key=name)
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"PostgreSQL port {self.port} is out of range; expected 1..65535", key="port")
        if self.sslmode not in get_args(SslMode):
            raise ConfigError(
                f"sslmode {self.sslmode!r} is unknown; expected one of {get_args(SslMode)}", key="sslmode"
            )
        _check_schema(self.schema)

    @property
    def dsn(self) -> str:
        """The connection string without the password (for logs and messages)."""
        params = {k: v for k, v in self._libpq().items() if k != "password"}
        return psycopg.conninfo.make_conninfo(**params)

    def _libpq(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
        }
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        if self.password is not None:
            params["password"] = self.password.get_secret_value()
        return params

    @classmethod
    def from_env(cls, prefix: str = "LAKEHOUSE_PG_", *, environ: Mapping[str, str] | None = None) -> PostgresSettings:
        """Read `<prefix>HOST`, `<prefix>PORT`, ... falling back to libpq's PGHOST, PGPORT, PGDATABASE, PGUSER,
        PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT, PGAPPNAME. `<prefix>SCHEMA` has no fallback."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, fallback in _ENV.items():
            for var in filter(None, (prefix + name.upper(), fallback)):
                if env.get(var):
                    values[name] = _typed(name, env[var], var)
                    break
        for name in ("host", "dbname", "user"):
            if name not in values:
                looked = " or ".join(filter(None, (prefix + name.upper(), _ENV[name])))
                raise ConfigError(f"PostgreSQL {name} is not set: set {looked}", key=looked)
        return cls(**values)

    @classmethod
    def from_secret(cls, secret_id: str, *, client: Any, **overrides: Any) -> PostgresSettings:
        """Read an RDS-shaped Secrets Manager secret with `client` (a boto3 secretsmanager client).

        overrides set what the secret does not hold: schema, sslmode, sslrootcert, dbname, ...
        """
        # No credentials, a misspelt name, a denied role: one message naming the secret and what to do.
        with explained(
            f"the PostgreSQL credentials from secret {secret_id}",
            permission="secretsmanager:GetSecretValue on it",
            aws_client=client,
            key="postgres.secret_id",
        ):
            response = client.get_secret_value(SecretId=secret_id)
        if response.get("SecretString") is None:
            raise ConfigError(
                f"secret {secret_id} holds no SecretString; expected the RDS secret shape (JSON with username, "
                "password, host, port)",
                key="postgres.secret_id",
            )
        return cls.from_secret_value(response["SecretString"], secret_id=secret_id, **overrides)

    @classmethod
    def from_secret_value(
        cls, value: str | Mapping[str, Any], *, secret_id: str = "the secret", **overrides: Any
    ) -> PostgresSettings:
        """Parse the RDS secret JSON: username, password, host, port, dbname (default postgres), engine.

        sslmode defaults to verify-full here (RDS speaks TLS): pass sslrootcert, the RDS CA bundle.
        """
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"{secret_id} is not JSON; expected the RDS secret shape", key="SecretString"
                ) from None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{secret_id} is not a JSON object; expected the RDS secret shape", key="SecretString")
        missing = [k for k in ("username", "password", "host") if not value.get(k)]
        if missing:
            raise ConfigError(
                f"{secret_id} lacks {missing}; expected keys username, password, host, port", key=missing[0]
            )
        engine = str(value.get("engine", "postgres"))
        if "postgres" not in engine:
            raise ConfigError(f"{secret_id} is for engine {engine!r}; expected postgres", key="engine")
        values: dict[str, Any] = {
            "host": value["host"],
            "port": _typed("port", value.get("port", 5432), f"{secret_id} port"),
            "dbname": value.get("dbname") or "postgres",
            "user": value["username"],
            "password": SecretStr(str(value["password"])),
            "sslmode": "verify-full",
        }
        return cls(**(values | overrides))


def _typed(name: str, raw: Any, where: str) -> Any:
    if name in ("port", "connect_timeout"):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} is {raw!r}; expected an integer", key=where) from None
    return SecretStr(raw) if name == "password" else raw


class PostgresConnectError(RetryableError):
    """The server could not be reached or refused the login. Nothing was exported."""


def connect(settings: PostgresSettings) -> psycopg.Connection:
    """Open an autocommit connection (each sink function runs its own transactions)."""
    try:
        return psycopg.connect(**settings._libpq(), autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
        if settings.password is not None:
            reason = reason.replace(settings.password.get_secret_value(), "**********")
        raise PostgresConnectError(
            f"could not connect to PostgreSQL at {settings.host}:{settings.port}, database {settings.dbname}, "
            f"user {settings.user}, sslmode {settings.sslmode}: {reason}. Check {_hint(reason)}."
        ) from None


def _hint(reason: str) -> str:
    lowered = reason.lower()
    if "password" in lowered or "authentication" in lowered:
        return "the user and its password (LAKEHOUSE_PG_PASSWORD / PGPASSWORD, or the secret)"
    if "ssl" in lowered or "certificate" in lowered:
        return "sslmode and sslrootcert (for RDS: verify-full with the RDS CA bundle)"
    if "does not exist" in lowered:
        return "the database and user names"
    return "host and port, that the server runs, and that the network (security group, VPC) lets this host in"
