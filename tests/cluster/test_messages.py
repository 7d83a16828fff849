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


def test_localparts_and_resources_with_braces_and_colons(cluster, run):
    """Hash tags come from a digest of the bare JID: on Redis Cluster a tag taken from the JID
    text would put a user's keys in the wrong slot or fail the script."""
    n1, _, n3 = cluster.nodes
    brace, odd = "{brace}", "x}y\\3az{"

    async def scenario():
        one = await online(n1, brace, "a:b{c}")
        two = await online(n3, odd, "}{:")
        one.send_message(mto=f"{odd}@localhost/}}{{:", mbody="to the odd one", mtype="chat")
        got = await two.inbox.expect(message("to the odd one"))
        assert got.get("from") == f"{brace}@localhost/a:b{{c}}"
        two.send_message(mto=f"{brace}@localhost", mbody="back to braces", mtype="chat")
        await one.inbox.expect(message("back to braces"))
        await close_all(one, two)

    run(scenario())
