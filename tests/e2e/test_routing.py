"""RFC 6121 §8.5 with three users online: which resources get a message to a bare JID (chat and
normal to the highest priority, ties to all; headline to every non-negative; groupchat refused),
and what an IQ or groupchat message to a resource that is not there gets back."""

from __future__ import annotations

from tests.support.im import (
    close_all,
    error_condition,
    iq,
    message,
    online,
    presence,
    send,
    send_presence,
)

ALICE, BOB = "alice@localhost", "bob@localhost"


async def barrier(sender, *receivers) -> None:
    """Directed presence from `sender` reaches each receiver after whatever sender sent before."""
    for client in receivers:
        to = client.boundjid.full
        send_presence(sender, to=to, status=f"barrier {to}")
        await client.inbox.expect(presence("available", sender.boundjid.full, f"barrier {to}"))


def test_bare_jid_messages_by_type_and_priority(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        top1 = await online(server, "bob", "top1", priority=5)
        top2 = await online(server, "bob", "top2", priority=5)
        low = await online(server, "bob", "low", priority=1)
        negative = await online(server, "bob", "negative", priority=-1)
        bobs = (top1, top2, low, negative)

        alice.send_message(mto=BOB, mbody="chat to all top", mtype="chat")
        alice.send_message(mto=BOB, mbody="normal to all top", mtype="normal")
        alice.send_message(mto=BOB, mbody="news", mtype="headline")
        await barrier(alice, *bobs)
        for client in (top1, top2):
            await client.inbox.expect(message("chat to all top", "chat"))
            await client.inbox.expect(message("normal to all top", "normal"))
        for client in (top1, top2, low):
            await client.inbox.expect(message("news", "headline"), "headline to non-negative")
        await low.inbox.expect_none(message(kind="chat"), "chat to a lower priority")
        await low.inbox.expect_none(message(kind="normal"), "normal to a lower priority")
        await negative.inbox.expect_none(message(), "anything to a negative priority")

        # A tie broken by a raised priority: only the new top gets the next one.
        send_presence(low, priority=9, status="raised")
        await top1.inbox.expect(presence("available", "bob@localhost/low", "raised"))
        alice.send_message(mto=BOB, mbody="only low now", mtype="chat")
        await barrier(alice, *bobs)
        await low.inbox.expect(message("only low now"))
        for client in (top1, top2, negative):
            await client.inbox.expect_none(message("only low now"))
        await close_all(alice, *bobs)

    run(scenario())


def test_groupchat_and_iq_to_where_nobody_is(configured_server, run):
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "here")

        send(alice, f"<message to='{BOB}' type='groupchat' id='g1'><body>x</body></message>")
        bounced = await alice.inbox.expect(message(kind="error"), "groupchat to a bare JID")
        assert bounced.get("id") == "g1" and error_condition(bounced) == "service-unavailable"

        send(alice, "<message to='bob@localhost/gone' type='groupchat' id='g2'><body>x</body>"
                    "</message>")  # fmt: skip
        bounced = await alice.inbox.expect(message(kind="error"), "groupchat to no resource")
        assert bounced.get("id") == "g2" and error_condition(bounced) == "service-unavailable"

        answer = await iq(alice, "get", "<query xmlns='jabber:iq:version'/>", to=f"{BOB}/gone")
        assert answer.get("type") == "error"
        assert error_condition(answer) == "service-unavailable", "IQ to a missing resource"

        answer = await iq(alice, "get", "<query xmlns='urn:example:nothing'/>", to=BOB)
        assert answer.get("type") == "error"
        assert error_condition(answer) == "service-unavailable", "unknown IQ to a bare JID"

        await barrier(alice, bob)
        await bob.inbox.expect_none(message(), "none of it reached bob")
        await close_all(alice, bob)

    run(scenario())
