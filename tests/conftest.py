"""Fixtures every test folder may use: private Redis and PostgreSQL servers, started once per run
when a test asks for them, and `run` for a coroutine with a time limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.services import PostgresServer, RedisClusterServer, RedisServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster_server() -> Iterator[RedisClusterServer]:
    """Three masters of a Redis Cluster, for the tests that run on it too."""
    server = RedisClusterServer()
    yield server
    server.close()


@pytest.fixture
def run():
    """Run a coroutine to completion on a new event loop, with a time limit."""

    def runner(coro, timeout: float = 60):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return runner


STORAGE_KINDS = ["sqlite", "memory", "postgresql"]


@pytest.fixture
def storage_url(storage_kind, request, tmp_path) -> str:
    """A fresh, empty store of the kind the test module parametrises `storage_kind` with."""
    kind = storage_kind
    if kind == "postgresql":
        return request.getfixturevalue("postgres_server").wiped_url()
    if kind == "sqlite":
        return f"sqlite://{tmp_path}/data/xmppd.sqlite3"
    return "memory:"
