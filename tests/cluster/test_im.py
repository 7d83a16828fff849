"""Instant messaging across the nodes of a cluster: presence and subscriptions, roster pushes,
offline storage, one account on two nodes, a full-JID conflict across nodes, IQs to full JIDs."""

from __future__ import annotations

import asyncio
import time

from tests.support.im import (
    befriend_both,
    close_all,
    error_condition,
    iq,
    message,
    online,
    presence,
    push,
    send_presence,
    set_item,
)
from tests.support.xmpp_client import login


def test_subscriptions_presence_and_roster_pushes_across_nodes(cluster, run):
    n1, _, n3 = cluster.nodes

    async def scenario():
        erin = await online(n1, "erin", "laptop")
        frank = await online(n3, "frank", "phone")
        frank_desk = await online(n1, "frank", "desk")  # a second resource, on erin's node
        await befriend_both(erin, frank)
        # A roster change on one node is pushed to the account's resources on every node.
        await set_item(frank, "erin@localhost", name="Erin")
        await frank_desk.inbox.expect(push("erin@localhost"), "push to the other node's resource")
        # Presence crosses nodes both ways, and unavailable too.
        send_presence(frank, status="on the phone")
        await erin.inbox.expect(presence("available", "frank@localhost/phone", "on the phone"))
        send_presence(erin, status="busy")
        await frank.inbox.expect(presence("available", "erin@localhost/laptop", "busy"))
        await frank.close()
        await erin.inbox.expect(presence("unavailable", "frank@localhost/phone"))
        await close_all(erin, frank_desk)

    run(scenario())


def test_a_message_to_a_user_offline_everywhere_waits_for_any_node(cluster, run):
    n1, n2, _ = cluster.nodes

    async def scenario():
        grace = await online(n1, "grace", "desk")
        grace.send_message(mto="heidi@localhost", mbody="while you were out", mtype="chat")
        await asyncio.sleep(0.5)
        heidi = await online(n2, "heidi", "phone")
        await heidi.inbox.expect(message("while you were out"), "the offline message, on n2")
        await close_all(grace, heidi)

    run(scenario())


def test_bare_jid_routing_by_priority_across_nodes(cluster, run):
    n1, n2, n3 = cluster.nodes

    async def scenario():
        ivan = await online(n1, "ivan", "sender")
        high = await online(n2, "judy", "high", priority=10)
        low = await online(n3, "judy", "low", priority=1)
        await asyncio.sleep(0.3)  # the priorities reach every node's view
        ivan.send_message(mto="judy@localhost", mbody="to the top", mtype="chat")
        await high.inbox.expect(message("to the top"))
        await low.inbox.expect_none(message("to the top"), "a lower priority on another node")
        send_presence(low, priority=10, status="tied")
        await high.inbox.expect(presence("available", "judy@localhost/low", "tied"))
        await asyncio.sleep(0.3)
        ivan.send_message(mto="judy@localhost", mbody="to both", mtype="chat")
        await high.inbox.expect(message("to both"))
        await low.inbox.expect(message("to both"))
        ivan.send_message(mto="judy@localhost", mbody="news", mtype="headline")
        await high.inbox.expect(message("news", "headline"))
        await low.inbox.expect(message("news", "headline"))
        await close_all(ivan, high, low)

    run(scenario())


def test_the_same_full_jid_on_another_node_replaces_the_session_with_conflict(cluster, run):
    n1, n2, n3 = cluster.nodes

    async def scenario():
        old = await login(n1, "mallory", resource="same")
        new = await login(n2, "mallory", resource="same")
        await asyncio.wait_for(old.gone, 10)
        assert "conflict" in old.stream_errors
        assert new.boundjid.full == "mallory@localhost/same"
        sender = await online(n3, "niaj", "x")
        await asyncio.sleep(0.3)
        sender.send_message(mto="mallory@localhost/same", mbody="to the new one", mtype="chat")
        got = await new.next_message()
        assert got["body"] == "to the new one"
        await close_all(new, sender)

    run(scenario())


def test_iqs_to_full_jids_across_nodes(cluster, run):
    n1, n2, _ = cluster.nodes

    async def scenario():
        olivia = await online(n1, "olivia", "a")
        peggy = await online(n2, "peggy", "b")
        await asyncio.sleep(0.3)
        reply = await olivia.plugin["xep_0199"].send_ping("peggy@localhost/b", timeout=5)
        assert reply["type"] == "result"
        version = "<query xmlns='jabber:iq:version'/>"
        answer = await iq(olivia, "get", version, "peggy@localhost/nope")
        assert answer.get("type") == "error"
        assert error_condition(answer) == "service-unavailable"
        await close_all(olivia, peggy)

    run(scenario())


def test_closed_sessions_leave_nothing_in_redis(cluster, run):
    n1, n2, n3 = cluster.nodes

    async def scenario():
        clients = [await online(node, "rupert", f"r{i}") for i, node in enumerate(cluster.nodes)]
        await close_all(*clients)

    run(scenario())
    deadline = time.monotonic() + 5
    while cluster.session_keys() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.session_keys() == []
    for name in ("n1", "n2", "n3"):
        assert cluster.indexed(name) == []


def test_a_message_to_a_bare_jid_right_after_initial_presence_on_another_node_is_delivered(
    cluster, run
):
    """The sender's node may not know yet that the session is available (its presence comes
    through the relay): the message goes to the session's node, which knows, not offline."""
    n1, n2, _ = cluster.nodes

    async def scenario():
        mallory = await online(n1, "mallory", "desk")
        for i in range(3):
            rupert = await online(n2, "rupert", f"fresh{i}")  # initial presence, then at once:
            mallory.send_message(mto="rupert@localhost", mbody=f"hello {i}", mtype="chat")
            await rupert.inbox.expect(message(f"hello {i}"), "delivered live, not stored")
            await rupert.close()
        await close_all(mallory)

    run(scenario())
