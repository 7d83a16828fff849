"""A cluster on Redis Sentinel survives a failover of the master under traffic: the nodes follow
the sentinels to the new master, write back what it lacks, and no relayed stanza is lost or
taken twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster import Cluster
from tests.support.im import close_all, message, online
from tests.support.services import RedisSentinelSet

from .conftest import USERS


@pytest.fixture
def sentinels():
    redis = RedisSentinelSet()
    yield redis
    redis.close()


def bodies(client, prefix: str) -> list[str]:
    return [m.findtext("{jabber:client}body") for m in client.inbox.unclaimed(message())
            if (m.findtext("{jabber:client}body") or "").startswith(prefix)]  # fmt: skip


def test_the_master_killed_under_traffic(tmp_path, sentinels, postgres_server, run):
    # A lease longer than a failover (about 2-3 s here): the nodes ride it out serving.
    cluster = Cluster(tmp_path, sentinels, postgres_server, lease=8.0)
    cluster.add_users(**USERS)
    cluster.start()
    n1, n2, n3 = cluster.nodes

    async def traffic(sender, to: str, prefix: str, count: int) -> None:
        for i in range(count):
            sender.send_message(mto=to, mbody=f"{prefix}{i}", mtype="chat")
            await asyncio.sleep(0.05)

    async def scenario():
        alice = await online(n1, "alice", "desk")
        bob = await online(n2, "bob", "phone")
        carol = await online(n3, "carol", "tablet")
        await asyncio.sleep(0.3)  # every node knows every session
        sending = asyncio.gather(traffic(alice, "bob@localhost/phone", "a", 120),
                                 traffic(carol, "alice@localhost", "c", 120))  # fmt: skip
        await asyncio.sleep(1.5)
        old = sentinels.kill_master()
        new = await asyncio.to_thread(sentinels.wait_failover, old)
        assert new == sentinels.replica_port
        await sending
        # Every stanza of the traffic arrives, once: relayed ones the old master took are sent
        # again where the new one lacks them, and the receivers drop what they had taken.
        for client, prefix in ((bob, "a"), (alice, "c")):
            deadline = asyncio.get_running_loop().time() + 30
            while len(bodies(client, prefix)) < 120:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{prefix}: only {len(bodies(client, prefix))} of 120 arrived")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # (a duplicate would come now)
            got = bodies(client, prefix)
            assert sorted(got) == sorted(f"{prefix}{i}" for i in range(120)), "each once"
        # The streams stayed up: the nodes never gave up their leases.
        for client in (alice, bob, carol):
            assert client.is_connected()
        # Logins and messages work on the new master, across nodes.
        dave = await online(n3, "dave", "laptop")
        dave.send_message(mto="alice@localhost/desk", mbody="after the failover", mtype="chat")
        await alice.inbox.expect(message("after the failover"))
        # The new master holds every session, each once, and every node lists them all.
        redis = sentinels.client()
        held = {b"".join(redis.hkeys(k)) for k in redis.keys("xmppd:s:*")}
        assert held == {b"desk", b"phone", b"tablet", b"laptop"}
        for node in cluster.nodes:
            jids = sorted(r["jid"] for r in node.admin("sessions")["result"] if r["jid"])
            assert jids == ["alice@localhost/desk", "bob@localhost/phone",
                            "carol@localhost/tablet", "dave@localhost/laptop"]  # fmt: skip
        assert {r["node"] for r in n1.admin("nodes")["result"] if r["alive"]} == {"n1", "n2", "n3"}
        await close_all(alice, bob, carol, dave)

    try:
        run(scenario())
    finally:
        cluster.stop()
    assert not cluster.tracebacks(), cluster.tracebacks()[0]
