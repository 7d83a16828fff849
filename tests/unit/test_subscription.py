"""RFC 6121 subscription states: every Appendix A row, §3.4 pre-approval, pending requests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from features.subscription import (
    BOTH,
    FROM,
    FROM_PENDING_OUT,
    INBOUND,
    NONE,
    NONE_PENDING_IN,
    NONE_PENDING_OUT,
    NONE_PENDING_OUT_IN,
    OUTBOUND,
    STATES,
    TO,
    TO_PENDING_IN,
    inbound,
    item_for,
    outbound,
    state_of,
    visible,
)
from storage.im import RosterItem

ROMEO = "romeo@example.net"
REQUEST = "<presence from='romeo@example.net' to='juliet@example.com' type='subscribe'/>"

SAME = None  # "no state change"

# Appendix A.2, copied from the RFC: (existing state, stanza, route?, new state, push?).
# Push is ours: whether subscription, ask or approved changed (the parts a roster item shows).
A2 = [
    # A.2.1 subscribe
    (NONE, "subscribe", True, NONE_PENDING_OUT, True),
    (NONE_PENDING_OUT, "subscribe", True, SAME, False),
    (NONE_PENDING_IN, "subscribe", True, NONE_PENDING_OUT_IN, True),
    (NONE_PENDING_OUT_IN, "subscribe", True, SAME, False),
    (TO, "subscribe", True, SAME, False),
    (TO_PENDING_IN, "subscribe", True, SAME, False),
    (FROM, "subscribe", True, FROM_PENDING_OUT, True),
    (FROM_PENDING_OUT, "subscribe", True, SAME, False),
    (BOTH, "subscribe", True, SAME, False),
    # A.2.2 unsubscribe
    (NONE, "unsubscribe", True, SAME, False),
    (NONE_PENDING_OUT, "unsubscribe", True, NONE, True),
    (NONE_PENDING_IN, "unsubscribe", True, SAME, False),
    (NONE_PENDING_OUT_IN, "unsubscribe", True, NONE_PENDING_IN, True),
    (TO, "unsubscribe", True, NONE, True),
    (TO_PENDING_IN, "unsubscribe", True, NONE_PENDING_IN, True),
    (FROM, "unsubscribe", True, SAME, False),
    (FROM_PENDING_OUT, "unsubscribe", True, FROM, True),
    (BOTH, "unsubscribe", True, FROM, True),
    # A.2.3 subscribed (the None, None + Pending Out and To rows are §3.4 pre-approvals:
    # no state change, not routed, but approved is set and pushed)
    (NONE, "subscribed", False, SAME, True),
    (NONE_PENDING_OUT, "subscribed", False, SAME, True),
    (NONE_PENDING_IN, "subscribed", True, FROM, True),
    (NONE_PENDING_OUT_IN, "subscribed", True, FROM_PENDING_OUT, True),
    (TO, "subscribed", False, SAME, True),
    (TO_PENDING_IN, "subscribed", True, BOTH, True),
    (FROM, "subscribed", False, SAME, False),
    (FROM_PENDING_OUT, "subscribed", False, SAME, False),
    (BOTH, "subscribed", False, SAME, False),
    # A.2.4 unsubscribed
    (NONE, "unsubscribed", False, SAME, False),
    (NONE_PENDING_OUT, "unsubscribed", False, SAME, False),
    (NONE_PENDING_IN, "unsubscribed", True, NONE, False),
    (NONE_PENDING_OUT_IN, "unsubscribed", True, NONE_PENDING_OUT, False),
    (TO, "unsubscribed", False, SAME, False),
    (TO_PENDING_IN, "unsubscribed", True, TO, False),
    (FROM, "unsubscribed", True, NONE, True),
    (FROM_PENDING_OUT, "unsubscribed", True, NONE_PENDING_OUT, True),
    (BOTH, "unsubscribed", True, TO, True),
]

# Appendix A.3: (existing state, stanza, deliver?, new state, push?, auto-reply).
A3 = [
    # A.3.1 subscribe ("no *": the server auto-replies subscribed)
    (NONE, "subscribe", True, NONE_PENDING_IN, False, None),
    (NONE_PENDING_OUT, "subscribe", True, NONE_PENDING_OUT_IN, False, None),
    (NONE_PENDING_IN, "subscribe", False, SAME, False, None),
    (NONE_PENDING_OUT_IN, "subscribe", False, SAME, False, None),
    (TO, "subscribe", True, TO_PENDING_IN, False, None),
    (TO_PENDING_IN, "subscribe", False, SAME, False, None),
    (FROM, "subscribe", False, SAME, False, "subscribed"),
    (FROM_PENDING_OUT, "subscribe", False, SAME, False, "subscribed"),
    (BOTH, "subscribe", False, SAME, False, "subscribed"),
    # A.3.2 unsubscribe
    (NONE, "unsubscribe", False, SAME, False, None),
    (NONE_PENDING_OUT, "unsubscribe", False, SAME, False, None),
    (NONE_PENDING_IN, "unsubscribe", True, NONE, False, None),
    (NONE_PENDING_OUT_IN, "unsubscribe", True, NONE_PENDING_OUT, False, None),
    (TO, "unsubscribe", False, SAME, False, None),
    (TO_PENDING_IN, "unsubscribe", True, TO, False, None),
    (FROM, "unsubscribe", True, NONE, True, None),
    (FROM_PENDING_OUT, "unsubscribe", True, NONE_PENDING_OUT, True, None),
    (BOTH, "unsubscribe", True, TO, True, None),
    # A.3.3 subscribed
    (NONE, "subscribed", False, SAME, False, None),
    (NONE_PENDING_OUT, "subscribed", True, TO, True, None),
    (NONE_PENDING_IN, "subscribed", False, SAME, False, None),
    (NONE_PENDING_OUT_IN, "subscribed", True, TO_PENDING_IN, True, None),
    (TO, "subscribed", False, SAME, False, None),
    (TO_PENDING_IN, "subscribed", False, SAME, False, None),
    (FROM, "subscribed", False, SAME, False, None),
    (FROM_PENDING_OUT, "subscribed", True, BOTH, True, None),
    (BOTH, "subscribed", False, SAME, False, None),
    # A.3.4 unsubscribed
    (NONE, "unsubscribed", False, SAME, False, None),
    (NONE_PENDING_OUT, "unsubscribed", True, NONE, True, None),
    (NONE_PENDING_IN, "unsubscribed", False, SAME, False, None),
    (NONE_PENDING_OUT_IN, "unsubscribed", True, NONE_PENDING_IN, True, None),
    (TO, "unsubscribed", True, NONE, True, None),
    (TO_PENDING_IN, "unsubscribed", True, NONE_PENDING_IN, True, None),
    (FROM, "unsubscribed", False, SAME, False, None),
    (FROM_PENDING_OUT, "unsubscribed", True, FROM, True, None),
    (BOTH, "unsubscribed", True, FROM, True, None),
]


def contact(state: str, **fields) -> RosterItem:
    """A roster item the user added (it has a name, so it is never a hidden request)."""
    base = RosterItem(jid=ROMEO, name="Romeo", groups=("Friends",), pending_in_stanza=REQUEST)
    return replace(item_for(state, ROMEO, base), **fields)


def row_id(row: tuple) -> str:
    return f"{row[0]}|{row[1]}"


def test_tables_cover_every_state_and_stanza():
    keys = {
        (s, k) for s in STATES for k in ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
    }
    assert set(OUTBOUND) == keys == set(INBOUND)
    assert {row_id(r) for r in A2} == {f"{s}|{k}" for s, k in keys} == {row_id(r) for r in A3}


@pytest.mark.parametrize("state", STATES)
def test_state_of_and_item_for_are_inverse(state):
    assert state_of(item_for(state, ROMEO)) == state
    assert item_for(state, ROMEO).jid == ROMEO


def test_state_of_no_item_is_none():
    assert state_of(None) == NONE


def test_item_for_accepts_rfc_6121_spelling():
    assert state_of(item_for("None + Pending Out+In", ROMEO)) == NONE_PENDING_OUT_IN


@pytest.mark.parametrize(("state", "kind", "route", "new_state", "push"), A2, ids=map(row_id, A2))
def test_outbound_appendix_a2(state, kind, route, new_state, push):
    old = contact(state)
    out = outbound(old, kind, ROMEO)
    assert out.route is route
    assert out.push is push
    assert not out.remove
    after = out.item if out.item is not None else old
    assert state_of(after) == (new_state or state)
    if new_state is None and not push:
        assert out.item is None  # no roster change at all
    if out.item is not None:  # name and groups survive every transition
        assert (out.item.name, out.item.groups, out.item.jid) == ("Romeo", ("Friends",), ROMEO)


@pytest.mark.parametrize(
    ("state", "kind", "deliver", "new_state", "push", "auto_reply"), A3, ids=map(row_id, A3)
)
def test_inbound_appendix_a3(state, kind, deliver, new_state, push, auto_reply):
    old = contact(state)
    out = inbound(old, kind, ROMEO, REQUEST if kind == "subscribe" else None)
    assert out.deliver is deliver
    assert out.push is push
    assert out.auto_reply == auto_reply
    assert not out.remove and not out.hidden
    if new_state is None:
        assert out.item is None
    else:
        assert state_of(out.item) == new_state
        assert (out.item.name, out.item.groups) == ("Romeo", ("Friends",))


# Creating items for contacts not in the roster


def test_outbound_subscribe_to_unknown_contact_creates_pending_out():
    out = outbound(None, "subscribe", ROMEO)
    assert out.route and out.push
    assert out.item == RosterItem(jid=ROMEO, ask=True)
    assert state_of(out.item) == NONE_PENDING_OUT and visible(out.item)


@pytest.mark.parametrize("kind", ["unsubscribe", "unsubscribed"])
def test_outbound_to_unknown_contact_creates_nothing(kind):
    out = outbound(None, kind, ROMEO)
    assert out.item is None and not out.push and not out.remove
    assert out.route is (kind == "unsubscribe")  # A.2.2 None: route; A.2.4 None: do not


def test_inbound_subscribe_from_stranger_is_stored_hidden():
    out = inbound(None, "subscribe", ROMEO, REQUEST)
    assert out.deliver and out.hidden and not out.push
    assert out.item == RosterItem(jid=ROMEO, pending_in=True, pending_in_stanza=REQUEST)
    assert state_of(out.item) == NONE_PENDING_IN and not visible(out.item)


@pytest.mark.parametrize("kind", ["subscribed", "unsubscribe", "unsubscribed"])
def test_inbound_from_stranger_is_ignored(kind):
    out = inbound(None, kind, ROMEO, None)
    assert (out.item, out.deliver, out.push, out.auto_reply) == (None, False, False, None)


def test_subscribed_without_pending_out_is_ignored():
    for state in (NONE, NONE_PENDING_IN, TO, FROM, BOTH):
        out = inbound(contact(state), "subscribed", ROMEO, None)
        assert (out.item, out.deliver, out.push) == (None, False, False)


# Pending requests: kept, re-delivered, withdrawn, denied


def test_inbound_subscribe_stores_the_request_for_redelivery():
    out = inbound(contact(TO), "subscribe", ROMEO, REQUEST)
    assert out.item.pending_in and out.item.pending_in_stanza == REQUEST


def test_second_inbound_subscribe_keeps_the_first_request():
    first = inbound(None, "subscribe", ROMEO, REQUEST).item
    again = inbound(first, "subscribe", ROMEO, "<presence type='subscribe'><status/></presence>")
    assert again.item is None and not again.deliver


def test_approving_clears_the_stored_request_and_shows_the_contact():
    pending = inbound(None, "subscribe", ROMEO, REQUEST).item
    out = outbound(pending, "subscribed", ROMEO)
    assert out.route and out.push and out.send_presence == "available"
    assert state_of(out.item) == FROM and out.item.pending_in_stanza is None
    assert visible(out.item)


def test_denying_a_strangers_request_removes_the_hidden_record():
    pending = inbound(None, "subscribe", ROMEO, REQUEST).item
    out = outbound(pending, "unsubscribed", ROMEO)
    assert out.route and out.remove and not out.push and out.item is None


def test_stranger_withdrawing_request_removes_the_hidden_record():
    pending = inbound(None, "subscribe", ROMEO, REQUEST).item
    out = inbound(pending, "unsubscribe", ROMEO, None)
    assert out.deliver and out.remove and not out.push and out.item is None


def test_contact_withdrawing_request_keeps_the_roster_item():
    out = inbound(contact(NONE_PENDING_IN), "unsubscribe", ROMEO, None)
    assert out.deliver and not out.remove and not out.push
    assert out.item == RosterItem(jid=ROMEO, name="Romeo", groups=("Friends",))


def test_user_cancelling_own_pending_request():
    out = outbound(contact(NONE_PENDING_OUT), "unsubscribe", ROMEO)
    assert out.route and out.push and state_of(out.item) == NONE
    out = outbound(contact(NONE_PENDING_OUT_IN), "unsubscribe", ROMEO)
    assert out.route and out.push and state_of(out.item) == NONE_PENDING_IN
    assert out.item.pending_in_stanza == REQUEST  # their request to us still stands


def test_contact_denying_our_pending_request():
    out = inbound(contact(NONE_PENDING_OUT_IN), "unsubscribed", ROMEO, None)
    assert out.deliver and out.push and state_of(out.item) == NONE_PENDING_IN


def test_user_subscribing_back_to_a_stranger_makes_the_record_visible():
    pending = inbound(None, "subscribe", ROMEO, REQUEST).item
    out = outbound(pending, "subscribe", ROMEO)
    assert out.route and out.push and state_of(out.item) == NONE_PENDING_OUT_IN
    assert visible(out.item)


# §3.4 pre-approval


@pytest.mark.parametrize("state", [NONE, NONE_PENDING_OUT, TO])
def test_outbound_subscribed_preapproves(state):
    out = outbound(contact(state), "subscribed", ROMEO)
    assert not out.route and out.push
    assert out.item.approved and state_of(out.item) == state


def test_preapproving_unknown_contact_creates_none_item():
    out = outbound(None, "subscribed", ROMEO)
    assert not out.route and out.push
    assert out.item == RosterItem(jid=ROMEO, approved=True)
    assert visible(out.item)


def test_preapproving_twice_changes_nothing():
    out = outbound(contact(NONE, approved=True), "subscribed", ROMEO)
    assert (out.item, out.route, out.push) == (None, False, False)


@pytest.mark.parametrize(
    ("state", "new_state"), [(NONE, FROM), (NONE_PENDING_OUT, FROM_PENDING_OUT), (TO, BOTH)]
)
def test_inbound_subscribe_when_preapproved_is_answered_by_the_server(state, new_state):
    out = inbound(contact(state, approved=True), "subscribe", ROMEO, REQUEST)
    assert not out.deliver and out.push and out.auto_reply == "subscribed"
    assert state_of(out.item) == new_state and not out.item.approved
    assert out.item.pending_in_stanza is None
    assert out.send_presence == "available"


def test_outbound_unsubscribed_cancels_preapproval_without_routing():
    out = outbound(contact(TO, approved=True), "unsubscribed", ROMEO)
    assert not out.route and out.push
    assert state_of(out.item) == TO and not out.item.approved


# Presence the host must send when 'from' starts or ends


def test_send_presence_follows_the_from_subscription():
    assert outbound(contact(TO_PENDING_IN), "subscribed", ROMEO).send_presence == "available"
    assert outbound(contact(BOTH), "unsubscribed", ROMEO).send_presence == "unavailable"
    assert inbound(contact(FROM), "unsubscribe", ROMEO, None).send_presence == "unavailable"
    assert outbound(contact(BOTH), "unsubscribe", ROMEO).send_presence is None
    assert inbound(contact(NONE_PENDING_OUT), "subscribed", ROMEO, None).send_presence is None


def test_unknown_stanza_type_is_rejected():
    with pytest.raises(ValueError):
        outbound(None, "probe", ROMEO)
    with pytest.raises(ValueError):
        inbound(None, "available", ROMEO, None)
