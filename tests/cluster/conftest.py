"""Fixtures: three xmppd node processes on one private Redis and one private PostgreSQL."""

from __future__ import annotations

import pytest

from tests.support.cluster import LEASE, Cluster

# Each test of a shared cluster uses accounts no other test of its module touches (rosters and
# offline messages live in the shared database).
USERS = {name: f"{name}-secret" for name in (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    # Localparts that would break a hash tag taken from the JID itself ("\\3a" is ":" escaped,
    # XEP-0106: a localpart cannot hold ":" itself).
    "{brace}", "x}y\\3az{",
)}  # fmt: skip


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request, tmp_path_factory, postgres_server):
    """One cluster for a module's tests that leave it as they found it: on one Redis, then on
    a Redis Cluster of three masters."""
    redis = request.getfixturevalue("redis_server" if request.param == "redis"
                                    else "redis_cluster_server")  # fmt: skip
    nodes = Cluster(tmp_path_factory.mktemp("cluster"), redis, postgres_server)
    nodes.add_users(**USERS)
    nodes.start()
    yield nodes
    nodes.stop()
    assert not nodes.tracebacks(), nodes.tracebacks()[0]


@pytest.fixture
def fresh_cluster(request, tmp_path, postgres_server):
    """A cluster of the test's own, for tests that kill, pause or cut off its nodes (on the
    tests' Redis Cluster with redis="redis-cluster")."""
    made = []

    def make(size: int = 3, lease: float = LEASE, redis: str = "redis") -> Cluster:
        server = request.getfixturevalue("redis_server" if redis == "redis"
                                         else "redis_cluster_server")  # fmt: skip
        nodes = Cluster(tmp_path / f"c{len(made)}", server, postgres_server, size=size,
                        lease=lease)  # fmt: skip
        nodes.add_users(**USERS)
        made.append(nodes)
        return nodes.start()

    yield make
    for nodes in made:
        nodes.stop()
    for nodes in made:
        assert not nodes.tracebacks(), nodes.tracebacks()[0]
