"""Roster, subscriptions, presence and offline messages through slixmpp, end to end."""

from __future__ import annotations

import asyncio

from tests.support.xmpp_client import login


async def wait_until(predicate, timeout: float = 10) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def test_subscription_handshake_both_ways_and_presence(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await login(server, "alice", resource="a")
        bob = await login(server, "bob", resource="b")
        await alice.get_roster(timeout=5)
        await bob.get_roster(timeout=5)
        alice.send_presence()
        bob.send_presence()
        requests = []
        bob.add_event_handler("presence_subscribe", requests.append)
        bob.auto_authorize = None
        bob.auto_subscribe = False
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        await wait_until(lambda: requests)
        bob.send_presence(pto="alice@localhost", ptype="subscribed")
        await wait_until(lambda: alice.client_roster["bob@localhost"]["subscription"] == "to")
        # alice now sees bob's presence
        await wait_until(lambda: bool(alice.client_roster["bob@localhost"].resources))
        assert bob.client_roster["alice@localhost"]["subscription"] == "from"
        # and the other way
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        await wait_until(lambda: alice.client_roster["bob@localhost"]["subscription"] == "both")
        await wait_until(lambda: bob.client_roster["alice@localhost"]["subscription"] == "both")
        await wait_until(lambda: bool(bob.client_roster["alice@localhost"].resources))
        await alice.close()
        await wait_until(lambda: not bob.client_roster["alice@localhost"].resources)
        await bob.close()

    run(scenario())


def test_offline_messages_are_kept_and_delivered_in_order_with_delay(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await login(server, "alice", resource="a")
        for i in range(5):
            alice.send_message(mto="bob@localhost", mbody=f"offline {i}", mtype="chat")
        await asyncio.sleep(0.5)
        assert alice.messages.empty(), "stored, not bounced"
        bob = await login(server, "bob", resource="b")
        bob.send_presence()
        bodies = []
        for _ in range(5):
            message = await bob.next_message()
            assert message["delay"]["stamp"] is not None
            bodies.append(message["body"])
        assert bodies == [f"offline {i}" for i in range(5)]
        await alice.close()
        await bob.close()

    run(scenario())
