"""The session-manager contract (routing.sessions.SessionManager), run against the in-process
implementation and the cluster's Redis one (a private Redis), and what only a cluster has:
binds from two nodes, hash tags for any localpart."""

from __future__ import annotations

import asyncio

import pytest

from cluster import keys
from cluster.connect import connect
from cluster.relay import Relay
from cluster.sessions import ClusterSessions
from routing.sessions import LocalSessionManager, Opened
from xmpp.jid import JID

ODD_RESOURCES = ["desk", "a:b", "with space", "☃ snow", "}{", "x" * 200]


def jid(text: str) -> JID:
    return JID.parse(text)


class Harness:
    """A manager and how to wait for its answers."""

    def __init__(self, manager, node: str = "n1") -> None:
        self.manager = manager
        self.node = node

    async def open(self, who: str, address: str, max_sessions: int = 10) -> Opened:
        answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.manager.open(jid(who), self.node, address, max_sessions, answer.set_result)
        return await asyncio.wait_for(answer, 5)


@pytest.fixture(params=["local", "redis", "redis-cluster"])
def make(request):
    """make(node) -> a Harness; every Redis-backed one of a test shares one Redis database (or
    the tests' Redis Cluster)."""
    clients = []

    def build(node: str = "n1") -> Harness:
        if request.param == "local":
            return Harness(LocalSessionManager(), node)
        if request.param == "redis-cluster":
            server = request.getfixturevalue("redis_cluster_server")
            if not clients:
                server.wipe()
            client = connect(server.url)
        else:
            server = request.getfixturevalue("redis_server")
            if not clients:
                server.cli("-n", "15", "FLUSHDB")
            client = connect(f"redis://127.0.0.1:{server.port}/15")
        clients.append(client)
        return Harness(ClusterSessions(client, Relay(client, node, "boot"), node), node)

    async def close() -> None:
        for client in clients:
            await client.aclose()

    build.kind = request.param
    build.close = close
    return build


def run(coro, make=None):
    async def scenario():
        try:
            await asyncio.wait_for(coro, 30)
        finally:
            if make is not None:
                await make.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

    asyncio.run(scenario())


def test_open_get_resources_and_count(make):
    async def scenario():
        h = make()
        opened = await h.open("alice@example.org/desk", "c1")
        assert opened == Opened(jid("alice@example.org/desk"))
        await h.open("alice@example.org/phone", "c2")
        entry = h.manager.get(jid("alice@example.org/desk"))
        assert (entry.node, entry.address) == ("n1", "c1")
        resources = {e.jid.resource for e in h.manager.resources(jid("alice@example.org"))}
        assert resources == {"desk", "phone"}
        assert h.manager.count() == 2
        assert h.manager.get(jid("alice@example.org/none")) is None

    run(scenario(), make)


def test_the_newest_bind_wins_and_names_the_one_it_replaced(make):
    async def scenario():
        h = make()
        await h.open("bob@example.org/r", "old")
        opened = await h.open("bob@example.org/r", "new")
        assert opened.replaced is not None and opened.replaced.address == "old"
        assert h.manager.get(jid("bob@example.org/r")).address == "new"
        # Compare-and-delete: the replaced session closing does not remove its successor.
        assert h.manager.close(jid("bob@example.org/r"), "old") is False
        assert h.manager.get(jid("bob@example.org/r")).address == "new"
        assert h.manager.close(jid("bob@example.org/r"), "new") is True
        assert h.manager.get(jid("bob@example.org/r")) is None

    run(scenario(), make)


def test_the_session_limit_per_account(make):
    async def scenario():
        h = make()
        await h.open("carol@example.org/1", "c1", max_sessions=2)
        await h.open("carol@example.org/2", "c2", max_sessions=2)
        refused = await h.open("carol@example.org/3", "c3", max_sessions=2)
        assert refused.error == "resource-constraint"
        again = await h.open("carol@example.org/2", "c4", max_sessions=2)  # a rebind is fine
        assert again.error is None and again.replaced.address == "c2"

    run(scenario(), make)


def test_presence_and_info_are_kept(make):
    async def scenario():
        h = make()
        who = jid("dave@example.org/x")
        await h.open(str(who), "c1")
        h.manager.set_presence(who, "c1", True, 5)
        h.manager.set_info(who, "c1", interested=True, pres_from=frozenset({"erin@example.org"}))
        h.manager.set_presence(who, "someone-else", False, 0)  # not its session: ignored
        entry = h.manager.get(who)
        assert (entry.available, entry.priority, entry.interested) == (True, 5, True)
        assert entry.pres_from == frozenset({"erin@example.org"})

    run(scenario(), make)


@pytest.mark.parametrize("resource", ODD_RESOURCES)
def test_odd_resources_bind_and_close(make, resource):
    async def scenario():
        h = make()
        who = JID.parse("erin@example.org").with_resource(resource)
        await h.open(str(who), "c1")
        assert h.manager.get(who).address == "c1"
        assert h.manager.close(who, "c1")
        assert h.manager.get(who) is None

    run(scenario(), make)


@pytest.mark.parametrize("localpart", ["}x", "{x}", "a{b}c", "{}"])
def test_a_localpart_with_braces_gets_a_proper_hash_tag(localpart):
    key = keys.sessions(f"{localpart}@example.org")
    tag = key[key.index("{") + 1 : key.index("}")]
    assert len(tag) == 20 and all(c in "0123456789abcdef" for c in tag)


@pytest.mark.parametrize("make", ["redis"], indirect=True)
def test_binds_from_two_nodes_conflict_in_redis(make):
    async def scenario():
        n1, n2 = make("n1"), make("n2")
        await n1.open("frank@example.org/same", "a1")
        opened = await n2.open("frank@example.org/same", "b1")
        assert (opened.replaced.node, opened.replaced.address) == ("n1", "a1")
        # The replaced node cannot remove n2's entry from Redis either.
        n1.manager.close(jid("frank@example.org/same"), "a1")
        await n1.manager.flush(5)
        raw = await n1.manager.client.hgetall(keys.sessions("frank@example.org"))
        assert [v.split()[1:] for v in raw.values()] == [[b"n2", b"b1"]]
        # The limit counts sessions of every node.
        refused = await n1.open("frank@example.org/other", "a2", max_sessions=1)
        assert refused.error == "resource-constraint"

    run(scenario(), make)
