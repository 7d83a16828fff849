"""RFC 6120 §10.1: stanzas from one entity to another arrive in the order sent, also when one of
them needs storage work first (a subscription stanza is worked out with the roster, on the
account's lane, before it goes on)."""

from __future__ import annotations

from tests.support.im import close_all, message, online, presence, push, send

ALICE, BOB = "alice@localhost", "bob@localhost"


def test_an_approval_and_its_push_arrive_before_the_approvers_presence(configured_server, run):
    """bob approves and at once sends alice his presence, as slixmpp's auto-authorize does:
    alice gets 'subscribed', then the push with subscription='to', then bob's presence
    (RFC 6121 §3.1.6 orders them so)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b", status="bob here")
        send(alice, f"<presence type='subscribe' to='{BOB}'/>")
        await bob.inbox.expect(presence("subscribe", ALICE), "alice's request")
        alice.inbox.claim_all()
        send(bob, f"<presence type='subscribed' to='{ALICE}'/><presence to='{ALICE}'/>")
        approval = await alice.inbox.expect(presence("subscribed", BOB), "the approval")
        pushed = await alice.inbox.expect(push(BOB, "to"), "the push")
        seen = await alice.inbox.expect(presence("available", f"{BOB}/b"), "bob's presence")
        order = [alice.inbox.stanzas.index(el) for el in (approval, pushed, seen)]
        assert order == sorted(order), [el.tag for el in alice.inbox.stanzas]
        await close_all(alice, bob)

    run(scenario())


def test_a_message_sent_right_after_a_subscription_request_comes_second(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        for n in range(5):  # each request needs alice's roster first; the message does not
            chat = f"<message to='{BOB}' type='chat'><body>after {n}</body></message>"
            send(alice, f"<presence type='subscribe' to='{BOB}'/>{chat}")
            request = await bob.inbox.expect(presence("subscribe", ALICE), "the request")
            after = await bob.inbox.expect(message(f"after {n}"), "the message")
            assert bob.inbox.stanzas.index(request) < bob.inbox.stanzas.index(after)
            send(bob, f"<presence type='unsubscribed' to='{ALICE}'/>")  # back to none
            await alice.inbox.expect(presence("unsubscribed", BOB), "the refusal")
        await close_all(alice, bob)

    run(scenario())
