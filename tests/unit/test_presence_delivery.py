"""Presence details the scansion conformance scripts check, decided by RFC 6121 with Prosody's
behaviour as the tie-breaker: a contact's subscription request keeps its bare 'to' and is
acknowledged, an unavailable presence is echoed to its sender, an approval probes back."""

from __future__ import annotations

from lxml import etree

from features.presence import inbound_subscription
from fsm.core import DeliverToUser, Query, QueryDone, Route, RoutePresencesOf, Send, SetSessionInfo
from storage.im import RosterItem
from tests.unit.feature_helpers import HOST, Session, accounts
from tests.unit.fsm_helpers import element
from xmpp.jid import JID


def _presence(xml: str) -> etree._Element:
    return etree.fromstring(f"<presence xmlns='jabber:client' {xml}/>")


def test_a_new_subscription_request_keeps_its_bare_to_and_is_acknowledged():
    storage = accounts("alice", "bob")
    request = _presence("from='bob@localhost/pc' to='alice@localhost' type='subscribe'")
    actions = inbound_subscription(storage, JID("alice", HOST), JID.parse("bob@localhost/pc"),
                                   request)  # fmt: skip
    (deliver,) = [a for a in actions if isinstance(a, DeliverToUser)]
    assert deliver.keep_to and deliver.available_only
    assert deliver.stanza.get("to") == "alice@localhost"
    (ack,) = [a.stanza for a in actions if isinstance(a, Route)]
    assert (ack.get("type"), ack.get("from"), ack.get("to")) == (
        "unavailable",
        "alice@localhost",
        "bob@localhost",
    )


def test_a_request_from_a_subscribed_contact_is_answered_not_acknowledged():
    storage = accounts("alice", "bob")
    storage.rosters.put("alice", HOST, RosterItem(jid="bob@localhost", subscription="from"))
    request = _presence("from='bob@localhost' to='alice@localhost' type='subscribe'")
    actions = inbound_subscription(storage, JID("alice", HOST), JID.parse("bob@localhost"),
                                   request)  # fmt: skip
    (reply,) = [a.stanza for a in actions if isinstance(a, Route)]
    assert reply.get("type") == "subscribed"  # RFC 6121 §3.1.3 auto-reply, no ack besides


def test_unavailable_presence_is_echoed_to_the_resource_that_sent_it():
    session = Session()
    session.ask("<presence/>")
    sent = session.ask("<presence type='unavailable'><status>Goodbye</status></presence>")
    echo = [s for s in sent if s.get("type") == "unavailable"]
    assert [e.get("to") for e in echo] == ["alice@localhost/phone"]
    assert echo[0].findtext("{jabber:client}status") == "Goodbye"


def _actions(session: Session, xml: str) -> list:
    """The actions one stanza leads to, storage queries run at once."""
    out: list = []
    pending = session.step(element(xml))
    while pending:
        action, pending = pending[0], pending[1:]
        if isinstance(action, Query):
            pending = session.step(QueryDone(action.then, session._run(action))) + pending
        else:
            out.append(action)
    return out


def test_approving_a_contact_one_is_subscribed_to_probes_it():
    storage = accounts("alice", "bob")
    storage.rosters.put(
        "alice", HOST, RosterItem(jid="bob@localhost", subscription="to", pending_in=True)
    )
    session = Session(storage)
    actions = _actions(session, "<presence to='bob@localhost' type='subscribed'/>")
    routed = [a.stanza for a in actions if isinstance(a, Route)]
    assert [(r.get("type"), r.get("to")) for r in routed] == [
        ("subscribed", "bob@localhost"),
        ("probe", "bob@localhost"),
    ]


def test_approving_without_a_subscription_of_ones_own_sends_no_probe():
    storage = accounts("alice", "bob")
    storage.rosters.put("alice", HOST, RosterItem(jid="bob@localhost", pending_in=True))
    session = Session(storage)
    actions = _actions(session, "<presence to='bob@localhost' type='subscribed'/>")
    assert all(a.stanza.get("type") != "probe" for a in actions if isinstance(a, Route))
    assert not [a for a in actions if isinstance(a, Send) and a.element.get("type") == "probe"]


def test_an_approval_reaches_a_local_contact_before_the_approvers_presence():
    """RFC 6121 §3.1.5: the contact's side delivers 'subscribed' and pushes the roster, then
    routes the approver's presence; the approver's session does not race it with its own."""
    storage = accounts("alice", "bob")
    storage.rosters.put("alice", HOST, RosterItem(jid="bob@localhost", pending_in=True))
    session = Session(storage)
    actions = _actions(session, "<presence to='bob@localhost' type='subscribed'/>")
    assert not [a for a in actions if isinstance(a, RoutePresencesOf)]

    storage.rosters.put("bob", HOST, RosterItem(jid="alice@localhost", ask=True))
    approval = _presence("from='alice@localhost' to='bob@localhost' type='subscribed'")
    actions = inbound_subscription(storage, JID("bob", HOST), JID.parse("alice@localhost"),
                                   approval)  # fmt: skip
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["DeliverToUser", "DeliverToUser", "RoutePresencesOf"], kinds
    last = actions[-1]
    assert (str(last.bare), last.to) == ("alice@localhost", "bob@localhost")
    assert not last.unavailable


def test_initial_presence_tells_the_session_manager_who_is_subscribed():
    """The node answers probes of an online account from this (no storage read per probe)."""
    storage = accounts("alice", "bob", "carol")
    storage.rosters.put("alice", HOST, RosterItem(jid="bob@localhost", subscription="from"))
    storage.rosters.put("alice", HOST, RosterItem(jid="carol@localhost", subscription="to"))
    session = Session(storage)
    actions = _actions(session, "<presence/>")
    (told,) = [a for a in actions if isinstance(a, SetSessionInfo) and a.pres_from is not None]
    assert told.pres_from == frozenset({"bob@localhost"})
