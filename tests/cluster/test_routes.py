"""The route table in the shape of Openfire's serversCache: one owner per address, claimed with
set-if-absent, released only by its owner, known to every node, and freed when its node dies."""

from __future__ import annotations

import asyncio

import pytest

from cluster.liveness import Timing
from cluster.member import ClusterMember


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.02)


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request) -> str:
    """An empty Redis database, then the tests' Redis Cluster, wiped."""
    if request.param == "redis-cluster":
        server = request.getfixturevalue("redis_cluster_server")
        server.wipe()
        return server.url
    server = request.getfixturevalue("redis_server")
    server.cli("-n", "14", "FLUSHDB")
    return f"{server.url.rsplit('/', 1)[0]}/14"


def test_claims_releases_and_a_dead_owner(redis_url):
    url = redis_url
    timing = Timing(lease=1.0, renew=0.25, watch=0.2)

    async def scenario():
        n1 = ClusterMember(url, "n1", "test", timing)
        n2 = ClusterMember(url, "n2", "test", timing)
        for member in (n1, n2):
            await member.join()
        try:
            assert await n1.routes.claim("muc.example.org") == "n1"
            assert await n2.routes.claim("muc.example.org") == "n1", "the first claim holds"
            assert await n2.routes.claim_remote("remote.example") == "n2"
            assert await n1.routes.claim_remote("remote.example") == "n2"
            await until(lambda: n2.routes.node_of("muc.example.org") == "n1")
            assert n1.routes.remote_route("remote.example") == "n2"
            assert not await n2.routes.release("muc.example.org"), "only the owner releases"
            assert await n1.routes.release("muc.example.org")
            await until(lambda: n2.routes.node_of("muc.example.org") is None)
            # n2 dies without a word: its lease runs out, n1 reaps it and its routes go.
            n2.liveness.stop()
            n2.relay.stop()
            await until(lambda: n1.routes.remote_route("remote.example") is None, timeout=10)
            for _ in range(250):  # the reaper releases it in Redis a moment later
                if not await n1.client.hexists("xmppd:routes", "s2s:remote.example"):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the dead node's route stayed in Redis")
            assert await n1.routes.claim_remote("remote.example") == "n1"
        finally:
            await n1.leave()
            await n2.client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))
