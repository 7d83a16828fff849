"""Bad roster and presence input gets the error RFC 6121 names, and nobody else notices:
after each, bob and carol still chat and alice's own session still works."""

from __future__ import annotations

import pytest

from tests.support.im import (
    ROSTER,
    close_all,
    error_condition,
    iq,
    item_xml,
    message,
    online,
    presence,
    push,
    roster,
    send,
    set_item,
)

ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"
LONG = "x" * 1024  # over the 1023 bytes a roster name or group may have


async def three(server):
    alice = await online(server, "alice", "a")
    bob = await online(server, "bob", "b")
    carol = await online(server, "carol", "c")
    return alice, bob, carol


async def untouched(alice, bob, carol, *, roster_before=None) -> None:
    """Other sessions carry on; alice's own session too, with her roster as it was."""
    bob.send_message(mto=carol.boundjid.full, mbody="still chatting", mtype="chat")
    assert (await carol.next_message())["body"] == "still chatting"
    carol.send_message(mto=bob.boundjid.full, mbody="me too", mtype="chat")
    assert (await bob.next_message())["body"] == "me too"
    _, items = await roster(alice)
    if roster_before is not None:
        assert items == roster_before
    for client in (alice, bob, carol):
        assert client.stream_errors == [] and not client.gone.done()


async def roster_set(client, items_xml: str):
    return await iq(client, "set", f"<query xmlns='{ROSTER}'>{items_xml}</query>")


BAD_SETS = {
    "two items": (item_xml(BOB) + item_xml(CAROL), "bad-request"),
    "no item": ("", "bad-request"),
    "an item and something else": (item_xml(BOB) + "<extra xmlns='urn:x'/>", "bad-request"),
    "invalid jid": (item_xml("bad@@jid"), "jid-malformed"),
    "jid with a space": (item_xml("a b@localhost"), "jid-malformed"),
    "empty jid": (item_xml(""), "jid-malformed"),
    "over-long name": (item_xml(BOB, name=LONG), "not-acceptable"),
    "over-long group": (item_xml(BOB, groups=(LONG,)), "not-acceptable"),
    "empty group": (item_xml(BOB, groups=("",)), "not-acceptable"),
    "duplicate group": (item_xml(BOB, groups=("Friends", "Friends")), "bad-request"),
}


@pytest.mark.parametrize("case", list(BAD_SETS))
def test_bad_roster_set(configured_server, run, case):
    """§2.3.3 / §2.4.3: the set is refused with its error, nothing stored, nothing pushed."""
    server = configured_server()
    items_xml, condition = BAD_SETS[case]

    async def scenario():
        alice, bob, carol = await three(server)
        answer = await roster_set(alice, items_xml)
        assert answer.get("type") == "error", case
        assert error_condition(answer) == condition, case
        await alice.inbox.expect_none(push(), "a push after a refused set")
        await untouched(alice, bob, carol, roster_before={})
        await close_all(alice, bob, carol)

    run(scenario())


def test_subscription_attribute_other_than_remove_is_ignored(configured_server, run):
    """§2.1.2.5: a client's 'subscription' (other than remove) and 'ask' are ignored: the item
    is stored with its name and groups, its subscription unchanged."""
    server = configured_server()

    async def scenario():
        alice, bob, carol = await three(server)
        answer = await set_item(
            alice, BOB, "Bob", ("Friends",), subscription="both", ask="subscribe"
        )
        assert answer.get("type") == "result"
        await alice.inbox.expect(push(BOB, "none"))
        _, items = await roster(alice)
        assert (items[BOB].subscription, items[BOB].ask, items[BOB].name) == ("none", None, "Bob")
        # and no subscription came of it: bob's presence does not reach alice
        send(bob, "<presence><status>bob</status></presence>")
        await alice.inbox.expect_none(presence(frm=bob.boundjid.full), "bob's presence")
        answer = await set_item(alice, BOB, "Bob", ("Friends",), subscription="from")
        assert answer.get("type") == "result"
        _, items = await roster(alice)
        assert items[BOB].subscription == "none"
        await untouched(alice, bob, carol)
        await close_all(alice, bob, carol)

    run(scenario())


def test_roster_over_its_size_limit(configured_server, run):
    """max_roster_items = 3: a 4th contact is policy-violation (§2.4.3); the three stay,
    and changing one of them is still allowed."""
    server = configured_server(limits="max_roster_items = 3")

    async def scenario():
        alice, bob, carol = await three(server)
        for contact in ("one@localhost", "two@localhost", "three@localhost"):
            assert (await set_item(alice, contact)).get("type") == "result"
        before = (await roster(alice))[1]
        answer = await set_item(alice, "four@localhost", "Four")
        assert answer.get("type") == "error"
        assert error_condition(answer) == "policy-violation"
        assert (await roster(alice))[1] == before
        assert (await set_item(alice, "two@localhost", "Two")).get("type") == "result"
        _, items = await roster(alice)
        assert set(items) == set(before) and items["two@localhost"].name == "Two"
        await untouched(alice, bob, carol)
        await close_all(alice, bob, carol)

    run(scenario())


def test_subscription_requests_do_not_overflow_the_roster(configured_server, run):
    """A full roster still answers subscription stanzas without crashing anything."""
    server = configured_server(limits="max_roster_items = 1")

    async def scenario():
        alice, bob, carol = await three(server)
        assert (await set_item(alice, "one@localhost")).get("type") == "result"
        send(bob, f"<presence to='{ALICE}' type='subscribe'/>")
        await alice.inbox.expect(presence("subscribe", BOB))
        await untouched(alice, bob, carol)
        await close_all(alice, bob, carol)

    run(scenario())


@pytest.mark.parametrize("kind", [None, "subscribe", "subscribed", "unsubscribe", "unsubscribed"])
@pytest.mark.parametrize("to", ["bad@@localhost", "localhost/"])
def test_presence_to_a_malformed_jid(configured_server, run, kind, to):
    """RFC 6120 §8.3.3.8 / RFC 6121 §3.1.2: jid-malformed back to the sender, nothing stored."""
    server = configured_server()

    async def scenario():
        alice, bob, carol = await three(server)
        typed = f" type='{kind}'" if kind else ""
        send(alice, f"<presence to='{to}'{typed}/>")
        error = await alice.inbox.expect(presence("error"), "the error")
        assert error_condition(error) == "jid-malformed"
        assert error.get("from") is None, "the error comes from the server"
        await untouched(alice, bob, carol, roster_before={})
        await close_all(alice, bob, carol)

    run(scenario())


def test_message_to_a_malformed_jid(configured_server, run):
    server = configured_server()

    async def scenario():
        alice, bob, carol = await three(server)
        send(alice, "<message to='bad@@localhost' type='chat'><body>x</body></message>")
        error = await alice.inbox.expect(message(kind="error"))
        assert error_condition(error) == "jid-malformed"
        await untouched(alice, bob, carol)
        await close_all(alice, bob, carol)

    run(scenario())


@pytest.mark.parametrize("kind", ["get", "set"])
def test_roster_of_another_user_is_forbidden(configured_server, run, kind):
    """§2.1.5 / §2.3.3: a roster request to another account's JID is forbidden."""
    server = configured_server()

    async def scenario():
        alice, bob, carol = await three(server)
        payload = (
            f"<query xmlns='{ROSTER}'/>"
            if kind == "get"
            else (f"<query xmlns='{ROSTER}'>{item_xml(CAROL, 'Carol')}</query>")
        )
        answer = await iq(alice, kind, payload, to=BOB)
        assert answer.get("type") == "error" and error_condition(answer) == "forbidden"
        _, items = await roster(bob)
        assert items == {}
        await bob.inbox.expect_none(push(), "a push caused by alice")
        # alice's own bare JID is her roster
        answer = await iq(alice, "get", f"<query xmlns='{ROSTER}'/>", to=ALICE)
        assert answer.get("type") == "result"
        await untouched(alice, bob, carol)
        await close_all(alice, bob, carol)

    run(scenario())
