"""XEP-0092 version, XEP-0202 time, XEP-0012 last activity, XEP-0030 disco of the server and of
accounts, XEP-0115 caps: one IQ at a time through the c2s machine, memory stores behind."""

from __future__ import annotations

from dataclasses import replace

import pytest

from features import disco
from storage.im import RosterItem
from tests.unit.feature_helpers import STARTED, Broken, Session, condition, payload
from xmpp import ns

LAST = "jabber:iq:last"
INFO = ns.DISCO_INFO
ITEMS = ns.DISCO_ITEMS


def get(child: str, to: str | None = None, iq_id: str = "q1") -> str:
    attr = f" to='{to}'" if to else ""
    return f"<iq type='get' id='{iq_id}'{attr}>{child}</iq>"


# --- version and time ---------------------------------------------------------------------------


def test_version_names_xmppd_and_its_version_and_no_os():
    reply = Session().answer(get("<query xmlns='jabber:iq:version'/>", to="localhost"))
    query = payload(reply)
    assert reply.get("from") == "localhost"
    assert query.findtext("{jabber:iq:version}name") == "xmppd"
    assert query.findtext("{jabber:iq:version}version") == "1.2.3"
    assert query.find("{jabber:iq:version}os") is None


def test_version_of_an_account_is_not_the_servers_business():
    reply = Session().answer(get("<query xmlns='jabber:iq:version'/>", to="bob@localhost"))
    assert condition(reply) == "service-unavailable"


def test_time_is_utc_from_the_sessions_clock():
    alice = Session()
    alice.clock.now = 1_166_551_115.25  # 2006-12-19T17:58:35.250Z
    time = payload(alice.answer(get("<time xmlns='urn:xmpp:time'/>", to="localhost")))
    assert time.findtext("{urn:xmpp:time}tzo") == "+00:00"
    assert time.findtext("{urn:xmpp:time}utc") == "2006-12-19T17:58:35.250Z"


# --- last activity ------------------------------------------------------------------------------


def last(to: str | None = None) -> str:
    return get(f"<query xmlns='{LAST}'/>", to=to)


def test_last_activity_of_the_server_is_its_uptime():
    alice = Session()
    alice.clock.now = STARTED + 4242.9
    query = payload(alice.answer(last(to="localhost")))
    assert query.get("seconds") == "4242" and not query.text


def test_last_activity_of_a_subscribed_contact_is_their_last_logout_with_status():
    alice = Session()
    alice.storage.rosters.put(
        "bob", "localhost", RosterItem("alice@localhost", subscription="both")
    )
    alice.storage.last_activity.set("bob", "localhost", alice.clock.now - 903.5, "Gone fishing")
    reply = alice.answer(last(to="bob@localhost"))
    assert reply.get("from") == "bob@localhost"
    query = payload(reply)
    assert query.get("seconds") == "903" and query.text == "Gone fishing"


@pytest.mark.parametrize("subscription", ["from", "both"])
def test_last_activity_needs_the_account_to_share_its_presence(subscription):
    alice = Session()
    alice.storage.rosters.put(
        "bob", "localhost", RosterItem("alice@localhost", subscription=subscription)
    )
    alice.storage.last_activity.set("bob", "localhost", alice.clock.now, "")
    assert payload(alice.answer(last(to="bob@localhost"))).get("seconds") == "0"


@pytest.mark.parametrize("subscription", [None, "none", "to"])
def test_last_activity_without_a_subscription_is_forbidden(subscription):
    alice = Session()
    if subscription:
        item = RosterItem("alice@localhost", subscription=subscription, pending_in=True)
        alice.storage.rosters.put("bob", "localhost", item)
    alice.storage.last_activity.set("bob", "localhost", 5.0, "secret")
    assert condition(alice.answer(last(to="bob@localhost"))) == "forbidden"


def test_last_activity_of_oneself_with_no_to_or_own_bare_jid():
    alice = Session()
    alice.storage.last_activity.set("alice", "localhost", alice.clock.now - 60, "Goodbye")
    for to in (None, "alice@localhost"):
        query = payload(alice.answer(last(to=to)))
        assert (query.get("seconds"), query.text) == ("60", "Goodbye")


def test_last_activity_never_recorded_is_item_not_found():
    alice = Session()
    alice.storage.rosters.put(
        "bob", "localhost", RosterItem("alice@localhost", subscription="from")
    )
    assert condition(alice.answer(last(to="bob@localhost"))) == "item-not-found"


def test_last_activity_of_a_jid_that_is_no_account_is_service_unavailable():
    assert condition(Session().answer(last(to="nobody@localhost"))) == "service-unavailable"


def test_last_activity_in_the_future_says_zero():
    alice = Session()
    alice.storage.last_activity.set("alice", "localhost", alice.clock.now + 30, "")
    assert payload(alice.answer(last())).get("seconds") == "0"


def test_last_activity_storage_failure_is_an_internal_server_error():
    assert condition(Session(Broken()).answer(last(to="bob@localhost"))) == "internal-server-error"


# --- disco ---------------------------------------------------------------------------------------


def identities(query) -> list[tuple[str, str, str | None]]:
    return [
        (i.get("category"), i.get("type"), i.get("name")) for i in query.iter(f"{{{INFO}}}identity")
    ]


def features(query) -> list[str]:
    return [f.get("var") for f in query.iter(f"{{{INFO}}}feature")]


def test_server_disco_info_lists_exactly_the_features_handlers_answer_for_the_server():
    alice = Session()
    query = payload(alice.answer(get(f"<query xmlns='{INFO}'/>", to="localhost")))
    assert identities(query) == [("server", "im", "xmppd")]
    expected = {
        INFO,
        ITEMS,
        ns.PING,
        "jabber:iq:roster",
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:last",
        "vcard-temp",
        "jabber:iq:private",
        "msgoffline",
    }
    # exactly the registry's list, each once; other modules may add theirs
    assert sorted(features(query)) == sorted(alice.data.features.disco_features)
    assert expected <= set(features(query))


def test_account_disco_info_is_a_registered_account_with_what_the_server_answers_for_it():
    alice = Session()
    for to in ("bob@localhost", "alice@localhost", None):
        reply = alice.answer(get(f"<query xmlns='{INFO}'/>", to=to))
        query = payload(reply)
        assert identities(query) == [("account", "registered", None)], to
        assert set(features(query)) == alice.data.features.account_features
        assert {INFO, ITEMS, "vcard-temp", "jabber:iq:last"} <= set(features(query))
        assert "jabber:iq:version" not in features(query)
    assert reply.get("from") is None  # no 'to', no 'from'


def test_account_disco_items_are_empty():
    reply = Session().answer(get(f"<query xmlns='{ITEMS}'/>", to="bob@localhost"))
    assert reply.get("from") == "bob@localhost" and len(payload(reply)) == 0


@pytest.mark.parametrize("namespace", [INFO, ITEMS])
def test_disco_of_a_jid_that_is_no_account_is_service_unavailable(namespace):
    reply = Session().answer(get(f"<query xmlns='{namespace}'/>", to="nobody@localhost"))
    assert condition(reply) == "service-unavailable"


def test_disco_info_of_an_unknown_node_is_item_not_found():
    alice = Session()
    for to in ("localhost", "bob@localhost"):
        reply = alice.answer(get(f"<query xmlns='{INFO}' node='urn:nowhere'/>", to=to))
        assert condition(reply) == "item-not-found", to


def test_disco_storage_failure_is_an_internal_server_error():
    reply = Session(Broken()).answer(get(f"<query xmlns='{INFO}'/>", to="bob@localhost"))
    assert condition(reply) == "internal-server-error"


# --- entity capabilities ------------------------------------------------------------------------


def test_caps_ver_known_answer_of_xep_0115_section_5_2():
    features_ = [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
    ]
    identity = ("client", "pc", "", "Exodus 0.9.1")
    assert disco.caps_ver([identity], reversed(features_)) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_caps_ver_sorts_identities_by_category_then_type():
    a = ("client", "pc", "", "A")
    b = ("auth", "pc", "", "B")
    assert disco.caps_ver([a, b], []) == disco.caps_ver([b, a], [])


def test_caps_are_offered_after_authentication_and_node_ver_is_answered_like_the_server():
    alice = Session()
    offered = alice.data.features.stream_features(alice.data)
    (caps,) = [el for el in offered if el.tag == f"{{{ns.CAPS}}}c"]
    assert caps.get("hash") == "sha-1" and caps.get("node") == disco.CAPS_NODE
    node = f"{disco.CAPS_NODE}#{caps.get('ver')}"
    plain = payload(alice.answer(get(f"<query xmlns='{INFO}'/>", to="localhost")))
    at_node = payload(alice.answer(get(f"<query xmlns='{INFO}' node='{node}'/>", to="localhost")))
    assert at_node.get("node") == node
    assert (identities(at_node), features(at_node)) == (identities(plain), features(plain))
    # the ver is the XEP-0115 hash of exactly that answer
    ids = [(c, t, "", n or "") for c, t, n in identities(plain)]
    assert disco.caps_ver(ids, features(plain)) == caps.get("ver")


# --- ping to an account ---------------------------------------------------------------------------


def ping(to: str) -> str:
    return get(f"<ping xmlns='{ns.PING}'/>", to=to)


def test_ping_to_an_account_is_answered_for_it_and_to_no_account_is_service_unavailable():
    alice = Session()
    for to in ("alice@localhost", "bob@localhost"):
        reply = alice.answer(ping(to))
        assert reply.get("type") == "result" and reply.get("from") == to
    assert condition(alice.answer(ping("nobody@localhost"))) == "service-unavailable"
    assert condition(Session(Broken()).answer(ping("bob@localhost"))) == "internal-server-error"


def test_before_bind_the_own_account_is_known_from_authentication():
    alice = Session()
    alice.state, alice.data = "wait_for_bind", replace(alice.data, jid=None, available=False)
    alice.storage.last_activity.set("alice", "localhost", alice.clock.now - 5, "")
    for child, to in [
        (f"<query xmlns='{INFO}'/>", None),
        (f"<ping xmlns='{ns.PING}'/>", "alice@localhost"),
        ("<vCard xmlns='vcard-temp'/>", None),
        (f"<query xmlns='{LAST}'/>", None),
        ("<query xmlns='jabber:iq:private'><a xmlns='urn:a'/></query>", "alice@localhost"),
    ]:
        reply = alice.answer(get(child, to=to))
        assert reply.get("type") == "result" and reply.get("to") is None, child
        assert alice.state == "wait_for_bind"
