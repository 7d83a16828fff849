"""Chatting through the router: full JIDs, bare JIDs by priority, bounces, pings."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from tests.support.xmpp_client import login


def test_message_between_two_users(server, run):
    async def scenario():
        alice = await login(server, "alice", resource="desk")
        bob = await login(server, "bob", resource="desk")
        alice.send_message(mto="bob@localhost/desk", mbody="hello bob", mtype="chat")
        got = await bob.next_message()
        assert got["body"] == "hello bob"
        assert got["from"].full == "alice@localhost/desk"
        bob.send_message(mto=got["from"], mbody="hi alice", mtype="chat")
        back = await alice.next_message()
        assert back["body"] == "hi alice"
        await alice.close()
        await bob.close()

    run(scenario())


def test_bare_jid_message_goes_to_highest_priority(server, run):
    async def scenario():
        high = await login(server, "bob", resource="high")
        low = await login(server, "bob", resource="low")
        high.send_presence(ppriority=10)
        low.send_presence(ppriority=1)
        alice = await login(server, "alice", resource="sender")
        await asyncio.sleep(0.3)  # presence is processed before the message is routed
        alice.send_message(mto="bob@localhost", mbody="to the bare jid", mtype="chat")
        got = await high.next_message()
        assert got["body"] == "to the bare jid"
        await asyncio.sleep(0.3)
        assert low.messages.empty()
        for c in (high, low, alice):
            await c.close()

    run(scenario())


def test_message_to_an_account_that_does_not_exist_bounces(server, run):
    async def scenario():
        alice = await login(server, "alice", resource="bounce")
        alice.send_message(mto="nobody@localhost", mbody="anyone?", mtype="chat")
        error = await alice.next_message()
        assert error["type"] == "error"
        assert error["error"]["condition"] == "service-unavailable"
        await alice.close()

    run(scenario())


def test_server_answers_ping_and_unknown_iq(server, run):
    async def scenario():
        alice = await login(server, "alice", resource="pinger")
        assert await alice.plugin["xep_0199"].ping("localhost", timeout=5) is not None
        iq = alice.make_iq_get(ito="localhost")
        iq.append(ET.Element("{jabber:iq:nonexistent}query"))
        try:
            await iq.send(timeout=5)
            raise AssertionError("an unknown namespace must get an error")
        except IqError as exc:
            assert exc.iq["error"]["condition"] == "service-unavailable"
        await alice.close()

    run(scenario())


def test_disco_info_of_the_server_lists_what_works(server, run):
    async def scenario():
        alice = await login(server, "alice", resource="disco")
        info = await alice.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features
        assert "http://jabber.org/protocol/disco#info" in features
        await alice.close()

    run(scenario())
