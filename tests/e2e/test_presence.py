"""RFC 6121 §3 (subscriptions, by the Appendix A tables) and §4 (presence), end to end with two
and three slixmpp clients, and raw clients where a connection must die or go silent."""

from __future__ import annotations

import asyncio
import socket
import struct

from tests.support.im import (
    DELAY,
    befriend,
    befriend_both,
    close_all,
    kill,
    online,
    presence,
    push,
    q,
    roster,
    send_presence,
)
from tests.support.raw import RawClient

ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"


# --- the handshake ---------------------------------------------------------------------------


def test_full_handshake_both_ways(configured_server, run):
    """§3.1 from both sides: request, hidden pending-in, approval, pushes, presence flowing."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a", status="alice here")
        bob = await online(server, "bob", "b", status="bob here")

        send_presence(alice, "subscribe", to=BOB)
        request = await bob.inbox.expect(presence("subscribe", ALICE), "alice's request")
        assert request.get("to") in (BOB, "bob@localhost/b")
        pushed = await alice.inbox.expect(push(BOB, "none"), "alice's pending-out push")
        item = pushed.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
        assert item.get("ask") == ("subscribe")
        _, items = await roster(alice)
        assert items[BOB].subscription == "none" and items[BOB].ask == "subscribe"
        _, items = await roster(bob)
        assert ALICE not in items, "a request alone does not put alice in bob's roster"

        send_presence(bob, "subscribed", to=ALICE)
        await alice.inbox.expect(presence("subscribed", BOB), "bob's approval")
        await alice.inbox.expect(push(BOB, "to"), "alice's 'to' push")
        await bob.inbox.expect(push(ALICE, "from"), "bob's 'from' push")
        # §3.1.5: bob's server sends bob's current presence to alice at once
        await alice.inbox.expect(presence("available", "bob@localhost/b", "bob here"))
        _, items = await roster(bob)
        assert items[ALICE].subscription == "from" and items[ALICE].ask is None

        send_presence(bob, "subscribe", to=ALICE)
        await alice.inbox.expect(presence("subscribe", BOB), "bob's request")
        await bob.inbox.expect(push(ALICE, "from"), "bob's 'from + pending out' push")
        send_presence(alice, "subscribed", to=BOB)
        await bob.inbox.expect(presence("subscribed", ALICE))
        await bob.inbox.expect(push(ALICE, "both"))
        await alice.inbox.expect(push(BOB, "both"))
        await bob.inbox.expect(presence("available", "alice@localhost/a", "alice here"))

        # presence now flows both ways
        send_presence(alice, status="alice away", show="away")
        await bob.inbox.expect(presence("available", "alice@localhost/a", "alice away"))
        send_presence(bob, status="bob busy", show="dnd")
        await alice.inbox.expect(presence("available", "bob@localhost/b", "bob busy"))
        for who, other in ((alice, BOB), (bob, ALICE)):
            _, items = await roster(who)
            assert items[other].subscription == "both" and items[other].ask is None
        await close_all(alice, bob)

    run(scenario())


def test_crossing_requests_pending_out_and_in(configured_server, run):
    """A.2/A.3 through "None + Pending Out/In": both ask before either answers."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        send_presence(alice, "subscribe", to=BOB)
        await bob.inbox.expect(presence("subscribe", ALICE))
        send_presence(bob, "subscribe", to=ALICE)
        await alice.inbox.expect(presence("subscribe", BOB))
        _, items = await roster(alice)
        assert items[BOB].subscription == "none" and items[BOB].ask == "subscribe"
        _, items = await roster(bob)
        assert items[ALICE].subscription == "none" and items[ALICE].ask == "subscribe"

        send_presence(alice, "subscribed", to=BOB)  # Pending Out/In -> From + Pending Out
        await bob.inbox.expect(presence("subscribed", ALICE))
        await bob.inbox.expect(push(ALICE, "to"))  # bob: Pending Out/In -> To + Pending In
        _, items = await roster(alice)
        assert items[BOB].subscription == "from" and items[BOB].ask == "subscribe"
        send_presence(bob, "subscribed", to=ALICE)
        await alice.inbox.expect(push(BOB, "both"))
        await bob.inbox.expect(push(ALICE, "both"))
        _, items = await roster(bob)
        assert items[ALICE].subscription == "both" and items[ALICE].ask is None
        await close_all(alice, bob)

    run(scenario())


def test_pending_in_is_hidden_until_answered_and_a_denial_leaves_nothing(configured_server, run):
    """§3.1.3/§3.2: the request is not a roster item; bob's 'unsubscribed' denies it (A.2.4),
    alice is told (A.3.4) and her item loses its ask."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        send_presence(alice, "subscribe", to=BOB)
        await bob.inbox.expect(presence("subscribe", ALICE))
        _, items = await roster(bob)
        assert items == {}
        await bob.inbox.expect_none(push(ALICE), "push of a hidden pending-in item")

        send_presence(bob, "unsubscribed", to=ALICE)
        await alice.inbox.expect(presence("unsubscribed", BOB))
        await alice.inbox.expect(push(BOB, "none"))
        _, items = await roster(alice)
        assert items[BOB].subscription == "none" and items[BOB].ask is None
        _, items = await roster(bob)
        assert items == {}
        # the request is gone: bob's next login does not bring it back
        await bob.close()
        bob = await online(server, "bob", "b2")
        await bob.inbox.expect_none(presence("subscribe"), "a denied request again", settle=1)
        await close_all(alice, bob)

    run(scenario())


def test_request_withdrawn_by_unsubscribe(configured_server, run):
    """A.2.2 None + Pending Out -> None; A.3.2 None + Pending In -> None (delivered)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        send_presence(alice, "subscribe", to=BOB)
        await bob.inbox.expect(presence("subscribe", ALICE))
        send_presence(alice, "unsubscribe", to=BOB)
        await bob.inbox.expect(presence("unsubscribe", ALICE))
        await alice.inbox.expect(push(BOB, "none"))
        _, items = await roster(alice)
        assert items[BOB].ask is None
        # bob's late answer finds no request: it is a pre-approval (§3.4), alice gets nothing
        send_presence(bob, "subscribed", to=ALICE)
        await bob.inbox.expect(push(ALICE, "none"))
        _, items = await roster(bob)
        assert items[ALICE].approved and items[ALICE].subscription == "none"
        await alice.inbox.expect_none(presence("subscribed"), "a withdrawn request's answer")
        _, items = await roster(alice)
        assert items[BOB].subscription == "none"
        await close_all(alice, bob)

    run(scenario())


def test_request_delivered_at_login_until_answered(configured_server, run):
    """§3.1.3: bob is offline when alice asks; the request comes with his initial presence
    (each time, until he answers), never before it and never in his roster."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a", status="alice here")
        send_presence(alice, "subscribe", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))

        bob = await online(server, "bob", "b", available=False)
        _, items = await roster(bob)
        assert ALICE not in items
        await bob.inbox.expect_none(presence("subscribe"), "a request before initial presence")
        send_presence(bob)
        await bob.inbox.expect(presence("subscribe", ALICE), "the stored request")
        await bob.close()

        bob = await online(server, "bob", "b")
        await bob.inbox.expect(presence("subscribe", ALICE), "the request at the next login")
        send_presence(bob, "subscribed", to=ALICE)
        await alice.inbox.expect(presence("subscribed", BOB))
        await alice.inbox.expect(push(BOB, "to"))
        await alice.inbox.expect(presence("available", "bob@localhost/b"))
        _, items = await roster(bob)
        assert items[ALICE].subscription == "from"
        await bob.close()

        bob = await online(server, "bob", "b3")
        await bob.inbox.expect_none(presence("subscribe"), "an answered request", settle=1)
        await close_all(alice, bob)

    run(scenario())


def test_request_made_after_roster_fetch_comes_with_initial_presence(configured_server, run):
    """§3.1.3: bob is connected and has fetched his roster but is not available when alice
    asks; the request must come with his initial presence all the same."""
    server = configured_server()

    async def scenario():
        bob = await online(server, "bob", "b", available=False)
        other = await online(server, "bob", "other")
        alice = await online(server, "alice", "a")
        send_presence(alice, "subscribe", to=BOB)
        await other.inbox.expect(presence("subscribe", ALICE))  # the request is stored now
        send_presence(bob)
        await bob.inbox.expect(presence("subscribe", ALICE), "the request made meanwhile")
        await close_all(alice, bob, other)

    run(scenario())


def test_answered_request_is_not_repeated_at_the_next_initial_presence(configured_server, run):
    """An answered request is not delivered again when bob goes unavailable and available
    again in the same session (his next presence is initial presence again)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        send_presence(alice, "subscribe", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        bob = await online(server, "bob", "b")
        await bob.inbox.expect(presence("subscribe", ALICE))
        send_presence(bob, "subscribed", to=ALICE)
        await bob.inbox.expect(push(ALICE, "from"))
        send_presence(bob, "unavailable")
        await alice.inbox.expect(presence("unavailable", "bob@localhost/b"))
        send_presence(bob, status="back")
        await alice.inbox.expect(presence("available", "bob@localhost/b", "back"))
        await bob.inbox.expect_none(presence("subscribe"), "the answered request again")
        await close_all(alice, bob)

    run(scenario())


def test_explicit_unavailable_then_available_again(configured_server, run):
    """§4.5: unavailable reaches contacts and the user's other resources; the next available
    presence is initial again (§4.2): contacts are probed anew."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        phone = await online(server, "alice", "phone")
        bob = await online(server, "bob", "b", status="bob here")
        await befriend_both(alice, bob)
        phone.inbox.claim_all()
        send_presence(alice, "unavailable", status="bye")
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await phone.inbox.expect(presence("unavailable", "alice@localhost/a"))
        send_presence(alice, status="hello again")
        await bob.inbox.expect(presence("available", "alice@localhost/a", "hello again"))
        await alice.inbox.expect(presence("available", "bob@localhost/b", "bob here"))
        await close_all(alice, phone, bob)

    run(scenario())


def test_approval_while_the_requester_is_offline(configured_server, run):
    """A.3.3 None + Pending Out -> To happens with alice offline; at her login the roster
    says 'to' and her probe brings bob's presence."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        send_presence(alice, "subscribe", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        await alice.close()
        bob = await online(server, "bob", "b", status="bob here")
        await bob.inbox.expect(presence("subscribe", ALICE))
        send_presence(bob, "subscribed", to=ALICE)
        await bob.inbox.expect(push(ALICE, "from"))

        alice = await online(server, "alice", "a2")
        _, items = await roster(alice)
        assert items[BOB].subscription == "to" and items[BOB].ask is None
        await alice.inbox.expect(presence("available", "bob@localhost/b", "bob here"))
        await close_all(alice, bob)

    run(scenario())


def test_preapproval(configured_server, run):
    """§3.4: alice approves before bob asks (her item: approved, nothing sent to bob); bob's
    request is then answered by the server; a pre-approval is advertised as a stream feature."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a", status="alice here")
        assert "preapproval" in alice.features, "§3.4.1: the server advertises pre-approval"
        bob = await online(server, "bob", "b")
        send_presence(alice, "subscribed", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        _, items = await roster(alice)
        assert items[BOB].approved and items[BOB].subscription == "none"
        _, items = await roster(bob)
        assert items == {}

        send_presence(bob, "subscribe", to=ALICE)
        await bob.inbox.expect(presence("subscribed", ALICE), "the server's answer")
        await bob.inbox.expect(push(ALICE, "to"))
        await bob.inbox.expect(presence("available", "alice@localhost/a", "alice here"))
        await alice.inbox.expect(push(BOB, "from"))
        _, items = await roster(alice)
        assert items[BOB].subscription == "from" and not items[BOB].approved
        await bob.inbox.expect_none(presence("subscribed"), "a second 'subscribed'")
        assert not alice.inbox.unclaimed(presence("subscribe")), "alice was not asked"
        await close_all(alice, bob)

    run(scenario())


def test_preapproval_cancelled_by_unsubscribed(configured_server, run):
    """§3.4: 'unsubscribed' cancels a pre-approval; bob's request then reaches alice."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        send_presence(alice, "subscribed", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        send_presence(alice, "unsubscribed", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        _, items = await roster(alice)
        assert not items[BOB].approved
        send_presence(bob, "subscribe", to=ALICE)
        await alice.inbox.expect(presence("subscribe", BOB), "the request, not auto-approved")
        _, items = await roster(bob)
        assert items[ALICE].subscription == "none" and items[ALICE].ask == "subscribe"
        await close_all(alice, bob)

    run(scenario())


def test_subscribe_when_already_subscribed_is_not_delivered(configured_server, run):
    """A.3.1 "no *" rows: a request from a contact who has 'from' is not delivered (bob's
    server answers 'subscribed' for him, which A.3.3 'To' then drops at alice's side); A.2.1
    To: no state change, no push."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend(alice, bob)
        alice.inbox.claim_all()
        send_presence(alice, "subscribe", to=BOB)
        await bob.inbox.expect_none(presence("subscribe"), "a request already granted")
        await alice.inbox.expect_none(push(BOB), "a push for no change")
        _, items = await roster(alice)
        assert items[BOB].subscription == "to" and items[BOB].ask is None
        _, items = await roster(bob)
        assert items[ALICE].subscription == "from"
        await close_all(alice, bob)

    run(scenario())


def test_unsubscribe_from_both(configured_server, run):
    """A.2.2 Both -> From for alice, A.3.2 Both -> To for bob; §3.3.3: bob's server sends
    alice his unavailable presence; after it bob's presence no longer reaches her, hers
    still reaches him."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)
        send_presence(alice, "unsubscribe", to=BOB)
        await bob.inbox.expect(presence("unsubscribe", ALICE))
        await alice.inbox.expect(push(BOB, "from"))
        await bob.inbox.expect(push(ALICE, "to"))
        await alice.inbox.expect(presence("unavailable", "bob@localhost/b"))

        send_presence(alice, status="still telling bob")
        await bob.inbox.expect(presence("available", "alice@localhost/a", "still telling bob"))
        send_presence(bob, status="not for alice")
        await alice.inbox.expect_none(presence(frm="bob@localhost/b"), "bob's presence")
        await close_all(alice, bob)

    run(scenario())


def test_cancel_subscription_with_unsubscribed(configured_server, run):
    """A.2.4 Both -> To for bob, A.3.4 Both -> From for alice; §3.2.2: alice hears bob's
    unavailable presence and no more of his presence."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)
        send_presence(bob, "unsubscribed", to=ALICE)
        await alice.inbox.expect(presence("unsubscribed", BOB))
        await alice.inbox.expect(push(BOB, "from"))
        await bob.inbox.expect(push(ALICE, "to"))
        await alice.inbox.expect(presence("unavailable", "bob@localhost/b"))
        send_presence(bob, status="not for alice")
        send_presence(alice, status="for bob")
        await bob.inbox.expect(presence("available", "alice@localhost/a", "for bob"))
        await alice.inbox.expect_none(presence(frm="bob@localhost/b"), "bob's presence")
        await close_all(alice, bob)

    run(scenario())


def test_unsubscribe_and_unsubscribed_while_the_contact_is_offline(configured_server, run):
    """The contact's roster changes even with no session to tell (A.3.2, A.3.4); the stanza
    itself is not stored (delivered to available resources only)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)
        await bob.close()
        await alice.inbox.expect(presence("unavailable", "bob@localhost/b"))

        send_presence(alice, "unsubscribe", to=BOB)  # alice: Both -> From; bob: Both -> To
        await alice.inbox.expect(push(BOB, "from"))
        bob = await online(server, "bob", "b2", status="bob back")
        _, items = await roster(bob)
        assert items[ALICE].subscription == "to"
        # bob still gets alice's presence (the answer to his probe), alice no longer his
        await bob.inbox.expect(presence("available", "alice@localhost/a"))
        await alice.inbox.expect_none(presence(frm="bob@localhost/b2"), "bob's presence")
        assert not bob.inbox.unclaimed(presence("unsubscribe")), "not stored for later"
        await bob.close()

        send_presence(alice, "unsubscribed", to=BOB)  # alice: From -> None; bob: To -> None
        await alice.inbox.expect(push(BOB, "none"))
        bob = await online(server, "bob", "b3")
        _, items = await roster(bob)
        assert items[ALICE].subscription == "none"
        await bob.inbox.expect_none(presence(frm="alice@localhost/a"), "alice's presence")
        await close_all(alice, bob)

    run(scenario())


# --- presence ----------------------------------------------------------------------------------


async def bob_subscribed_to_alice(server):
    """bob online with a 'to' subscription to alice, who is offline again."""
    alice = await online(server, "alice", "setup")
    bob = await online(server, "bob", "b")
    await befriend(bob, alice)
    await alice.close()
    await bob.inbox.expect(presence("unavailable", "alice@localhost/setup"))
    return bob


async def raw_alice_available(server, resource: str) -> RawClient:
    """alice on a raw connection, bound and available."""

    def connect() -> RawClient:
        raw = RawClient(server)
        raw.login("alice", resource=resource)
        raw.send("<presence/>")
        return raw

    return await asyncio.to_thread(connect)


def test_priority_is_carried_and_chooses_the_bare_jid_resource(configured_server, run):
    """§4.7.2.3: the priority reaches contacts; a negative priority resource gets presence
    but no messages to the bare JID."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "main", priority=5)
        await befriend_both(alice, bob)
        lurker = await online(server, "bob", "lurker", priority=-1)
        seen = await alice.inbox.expect(presence("available", "bob@localhost/lurker"))
        assert seen.findtext("{jabber:client}priority") == "-1"
        send_presence(bob, priority=7, status="seven")
        seen = await alice.inbox.expect(presence("available", "bob@localhost/main", "seven"))
        assert seen.findtext("{jabber:client}priority") == "7"

        alice.send_message(mto=BOB, mbody="to the bare jid", mtype="chat")
        got = await bob.next_message()
        assert got["body"] == "to the bare jid"
        send_presence(alice, status="barrier")  # reaches lurker after the message would have
        await lurker.inbox.expect(presence("available", "alice@localhost/a", "barrier"))
        assert lurker.messages.empty()
        await close_all(alice, bob, lurker)

    run(scenario())


def test_directed_presence_to_a_non_contact_and_its_unavailable(configured_server, run):
    """§4.6: carol (no subscription) gets alice's directed presence, not her broadcasts, and
    hears she left when alice's session ends."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        carol = await online(server, "carol", "c")
        await befriend(bob, alice)
        send_presence(alice, to="carol@localhost/c", status="just for carol")
        await carol.inbox.expect(presence("available", "alice@localhost/a", "just for carol"))
        send_presence(alice, status="for my contacts")
        await bob.inbox.expect(presence("available", "alice@localhost/a", "for my contacts"))
        await carol.inbox.expect_none(presence(status="for my contacts"), "a broadcast")

        await alice.close()
        await carol.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await close_all(bob, carol)

    run(scenario())


def test_directed_presence_withdrawn_is_not_repeated(configured_server, run):
    """§4.6.3: after directed unavailable, carol does not get a second one at logout."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        carol = await online(server, "carol", "c")
        send_presence(alice, to=CAROL, status="hello carol")
        await carol.inbox.expect(presence("available", "alice@localhost/a", "hello carol"))
        send_presence(alice, "unavailable", to=CAROL)
        await carol.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await alice.close()
        await carol.inbox.expect_none(presence("unavailable"), "a second unavailable", settle=1)
        await carol.close()

    run(scenario())


def test_unavailable_after_a_raw_socket_dies(configured_server, run):
    """§4.5.2 (the server generates unavailable): alice's raw TCP connection is reset."""
    server = configured_server()

    async def scenario():
        bob = await bob_subscribed_to_alice(server)
        raw = await raw_alice_available(server, "raw")
        await bob.inbox.expect(presence("available", "alice@localhost/raw"))
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        await bob.inbox.expect(presence("unavailable", "alice@localhost/raw"))
        await bob.close()

    run(scenario())


def test_unavailable_after_slixmpp_aborts(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)
        kill(alice)
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await bob.close()

    run(scenario())


def test_unavailable_after_the_sessions_actor_crashes(configured_server, run):
    """An exception inside alice's connection actor (the node's test hook) ends her session
    with internal-server-error; her contacts still hear she left."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)
        rows = server.admin("sessions")["result"]
        conn_id = next(r["id"] for r in rows if r["jid"] == "alice@localhost/a")
        assert server.admin("crash", id=conn_id)["ok"]
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await close_all(alice, bob)

    run(scenario())


def test_unavailable_after_a_client_goes_silent(configured_server, run):
    """The node pings an idle client and ends its session when no answer comes; contacts
    hear it left. alice is a raw client that stops reading and answering."""
    server = configured_server(limits="idle_timeout = 2\nping_timeout = 2")

    async def scenario():
        bob = await bob_subscribed_to_alice(server)
        raw = await raw_alice_available(server, "silent")
        await bob.inbox.expect(presence("available", "alice@localhost/silent"))
        # from now on alice says nothing and reads nothing
        await bob.inbox.expect(presence("unavailable", "alice@localhost/silent"), timeout=30)
        assert await asyncio.to_thread(raw.closed, 10), "the server closed the silent stream"
        assert b"connection-timeout" in raw.received
        raw.close()
        await bob.close()

    run(scenario(), timeout=90)


def test_probes_answered_at_login(configured_server, run):
    """§4.3: at alice's initial presence her server probes her contacts; an available contact
    answers with each resource's presence, an offline one with unavailable stamped with his
    last logout (XEP-0203 delay)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b", status="bob desk")
        bob2 = await online(server, "bob", "b2", status="bob phone", priority=-2)
        carol = await online(server, "carol", "c")
        await befriend(alice, bob)
        await befriend(alice, carol)
        await carol.close()
        await alice.close()

        alice = await online(server, "alice", "a2")
        await alice.inbox.expect(presence("available", "bob@localhost/b", "bob desk"))
        await alice.inbox.expect(presence("available", "bob@localhost/b2", "bob phone"))
        gone = await alice.inbox.expect(presence("unavailable", CAROL), "carol's last logout")
        assert gone.find(q(DELAY, "delay")) is not None
        # bob has no subscription to alice: he gets no presence of hers
        await bob.inbox.expect_none(presence(frm="alice@localhost/a2"), "alice's presence")
        await close_all(alice, bob, bob2)

    run(scenario())


def test_presence_of_own_other_resources(configured_server, run):
    """§4.2.2/§4.4.2: a user's resources see each other's presence, both ways, and the
    unavailable when one leaves."""
    server = configured_server()

    async def scenario():
        desk = await online(server, "alice", "desk", status="at the desk")
        phone = await online(server, "alice", "phone", status="on the phone")
        await phone.inbox.expect(presence("available", "alice@localhost/desk", "at the desk"))
        await desk.inbox.expect(presence("available", "alice@localhost/phone", "on the phone"))
        send_presence(desk, status="moved", show="away")
        await phone.inbox.expect(presence("available", "alice@localhost/desk", "moved"))
        # the resource that sent a broadcast gets it too (§4.2.2, §4.4.2)
        await desk.inbox.expect(presence("available", "alice@localhost/desk", "moved"))
        await desk.close()
        await phone.inbox.expect(presence("unavailable", "alice@localhost/desk"))
        await phone.close()

    run(scenario())
