"""A moto server on 127.0.0.1 so boto3 talks real HTTP in the tests (fixtures)."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Start moto on a free port of 127.0.0.1 for the session; yields its endpoint URL.

    Fake credentials and region are set for the session (no real account can be reached) and the
    previous environment is restored at the end.
    """
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Aws:
    """The moto endpoint of one test, and clients pointed at it."""

    endpoint_url: str
    region: str = "us-east-1"

    def client(self, service: str) -> Any:
        from lakehouse.aws import client

        return client(service, region=self.region, endpoint_url=self.endpoint_url)


@pytest.fixture
def aws(moto_server: str) -> Iterator[Aws]:
    """A clean moto (state reset before the test) and a helper to create clients against it."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    yield Aws(moto_server)
