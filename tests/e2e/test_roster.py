"""RFC 6121 §2: roster get, set, remove, pushes to every interested resource, versioning."""

from __future__ import annotations

from tests.support.im import (
    ROSTER,
    befriend,
    befriend_both,
    close_all,
    error_condition,
    online,
    presence,
    push,
    q,
    remove_item,
    roster,
    send_presence,
    set_item,
)

ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"


def pushed_ver(stanza) -> str | None:
    return stanza.find(q(ROSTER, "query")).get("ver")


def test_get_set_update_and_versioning(configured_server, run):
    """§2.2 get, §2.4 set (name and groups) and update, §2.6 versioning: a get with the
    current version gets an empty result, a get with an old one the whole roster."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a", available=False)
        first, items = await roster(alice)
        assert first is not None and items == {}

        answer = await set_item(alice, BOB, "Bob", ("Friends", "Work"))
        assert answer.get("type") == "result"
        pushed = await alice.inbox.expect(push(BOB, "none"), "the push of the new item")
        ver, items = await roster(alice)
        assert pushed_ver(pushed) == ver and ver != first
        bob = items[BOB]
        assert (bob.name, set(bob.groups), bob.subscription, bob.ask) == (
            "Bob",
            {"Friends", "Work"},
            "none",
            None,
        )

        assert await roster(alice, ver=ver) == (None, {}), "§2.6.3: the client's copy is current"
        old_ver, old_items = await roster(alice, ver=first)
        assert (old_ver, old_items) == (ver, items), "an old version gets the whole roster"

        answer = await set_item(alice, BOB, "Bobby", ("Work",))
        assert answer.get("type") == "result"
        pushed = await alice.inbox.expect(push(BOB, "none"), "the push of the update")
        newer, items = await roster(alice)
        assert pushed_ver(pushed) == newer and newer not in (ver, first)
        assert (items[BOB].name, items[BOB].groups) == ("Bobby", ("Work",))
        assert await roster(alice, ver=newer) == (None, {})
        assert (await roster(alice, ver=ver))[0] == newer

        # an item with neither name nor groups is kept (and shown) all the same
        assert (await set_item(alice, CAROL)).get("type") == "result"
        _, items = await roster(alice)
        assert set(items) == {BOB, CAROL} and items[CAROL].name is None

        # removal: result, push with subscription='remove', gone from the next get
        assert (await remove_item(alice, CAROL)).get("type") == "result"
        await alice.inbox.expect(push(CAROL, "remove"))
        latest, items = await roster(alice)
        assert set(items) == {BOB} and latest != newer
        await alice.close()

    run(scenario())


def test_pushes_reach_every_interested_resource(configured_server, run):
    """§2.1.6: a change made from one resource is pushed to every resource that asked for
    the roster (the changing one included), not to one that never did."""
    server = configured_server()

    async def scenario():
        desk = await online(server, "alice", "desk")
        phone = await online(server, "alice", "phone")
        quiet = await online(server, "alice", "quiet", get_roster=False)
        await set_item(desk, CAROL, "Carol", ("Friends",))
        for resource in (desk, phone):
            pushed = await resource.inbox.expect(push(CAROL, "none"))
            item = pushed.find(f"{q(ROSTER, 'query')}/{q(ROSTER, 'item')}")
            assert item.get("name") == "Carol"
            assert item.findtext(q(ROSTER, "group")) == "Friends"
            assert pushed.get("to") == resource.boundjid.full

        await remove_item(phone, CAROL)
        for resource in (desk, phone):
            await resource.inbox.expect(push(CAROL, "remove"))
        await quiet.inbox.expect_none(push(), "a push to a resource that never asked")
        _, items = await roster(quiet)
        assert items == {}
        await close_all(desk, phone, quiet)

    run(scenario())


def test_remove_cancels_subscriptions_both_ways(configured_server, run):
    """§2.5.2: removing a 'both' contact sends him unsubscribe and unsubscribed (and alice's
    unavailable); his item falls to 'none' and no presence flows either way."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend_both(alice, bob)

        answer = await remove_item(alice, BOB)
        assert answer.get("type") == "result"
        await alice.inbox.expect(push(BOB, "remove"))
        await bob.inbox.expect(presence("unsubscribe", ALICE))
        await bob.inbox.expect(presence("unsubscribed", ALICE))
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        # alice, having lost 'to', also hears bob is unavailable to her now (§3.3.3)
        await alice.inbox.expect(presence("unavailable", "bob@localhost/b"))

        _, items = await roster(alice)
        assert BOB not in items
        _, items = await roster(bob)
        assert items[ALICE].subscription == "none" and items[ALICE].ask is None
        await bob.inbox.expect(push(ALICE, "none"))

        send_presence(alice, status="not for bob")
        send_presence(bob, status="not for alice")
        await bob.inbox.expect_none(presence(frm="alice@localhost/a"), "alice's presence")
        await alice.inbox.expect_none(presence(frm="bob@localhost/b"), "bob's presence")
        await close_all(alice, bob)

    run(scenario())


def test_remove_withdraws_a_pending_request(configured_server, run):
    """§2.5.2 with 'None + Pending Out': bob gets alice's unsubscribe; the hidden request is
    gone, so his next login brings nothing."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        send_presence(alice, "subscribe", to=BOB)
        await alice.inbox.expect(push(BOB, "none"))
        assert (await remove_item(alice, BOB)).get("type") == "result"
        await alice.inbox.expect(push(BOB, "remove"))
        bob = await online(server, "bob", "b")
        await bob.inbox.expect_none(presence("subscribe"), "a withdrawn request", settle=1)
        _, items = await roster(bob)
        assert items == {}
        await close_all(alice, bob)

    run(scenario())


def test_remove_a_contact_with_from_only_sends_unsubscribed(configured_server, run):
    """§2.5.2 with 'From': bob (subscribed to alice) gets 'unsubscribed' and her unavailable,
    not 'unsubscribe' (alice had no subscription to him)."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        bob = await online(server, "bob", "b")
        await befriend(bob, alice)
        bob.inbox.claim_all()
        await remove_item(alice, BOB)
        await bob.inbox.expect(presence("unsubscribed", ALICE))
        await bob.inbox.expect(presence("unavailable", "alice@localhost/a"))
        await bob.inbox.expect(push(ALICE, "none"))
        assert not bob.inbox.unclaimed(presence("unsubscribe")), "alice had no 'to'"
        await close_all(alice, bob)

    run(scenario())


def test_remove_an_unknown_item(configured_server, run):
    """§2.5.3: removing an item that is not there is item-not-found."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        answer = await remove_item(alice, "nobody@localhost")
        assert answer.get("type") == "error" and error_condition(answer) == "item-not-found"
        await alice.close()

    run(scenario())


def test_roster_survives_logins_and_is_per_user(configured_server, run):
    """The roster is stored: a new session reads it back; another user's roster is his own."""
    server = configured_server()

    async def scenario():
        alice = await online(server, "alice", "a")
        await set_item(alice, CAROL, "Carol", ("Team",))
        await alice.inbox.expect(push(CAROL))
        await alice.close()
        alice = await online(server, "alice", "again")
        _, items = await roster(alice)
        assert (items[CAROL].name, items[CAROL].groups) == ("Carol", ("Team",))
        bob = await online(server, "bob", "b")
        _, items = await roster(bob)
        assert items == {}
        await close_all(alice, bob)

    run(scenario())
