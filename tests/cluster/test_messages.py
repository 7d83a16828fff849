"""Users on different nodes of a cluster reach each other as on one server."""

from __future__ import annotations

from tests.support.im import close_all, message, online


def test_messages_both_ways_between_nodes(cluster, run):
    n1, n2, _ = cluster.nodes

    async def scenario():
        alice = await online(n1, "alice", "desk")
        bob = await online(n2, "bob", "phone")
        alice.send_message(mto="bob@localhost/phone", mbody="hello from n1", mtype="chat")
        got = await bob.inbox.expect(message("hello from n1"))
        assert got.get("from") == "alice@localhost/desk"
        bob.send_message(mto="alice@localhost", mbody="hello from n2", mtype="chat")
        await alice.inbox.expect(message("hello from n2"))
        await close_all(alice, bob)

    run(scenario())
