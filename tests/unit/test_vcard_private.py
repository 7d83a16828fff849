"""XEP-0054 vcard-temp and XEP-0049 private XML storage, one IQ at a time through the c2s
machine, with storage queries run against memory stores."""

from __future__ import annotations

import pytest
from lxml import etree

from features import private, vcard
from tests.unit.feature_helpers import Broken, Session, condition, payload

VC = "vcard-temp"
PRIV = "jabber:iq:private"
ROMEO = f"<vCard xmlns='{VC}'><FN>Alice Liddell</FN><N><GIVEN>Alice</GIVEN></N></vCard>"


def vcard_set(body: str = ROMEO, to: str | None = None, iq_id: str = "v1") -> str:
    attr = f" to='{to}'" if to else ""
    return f"<iq type='set' id='{iq_id}'{attr}>{body}</iq>"


def vcard_get(to: str | None = None, iq_id: str = "v2") -> str:
    attr = f" to='{to}'" if to else ""
    return f"<iq type='get' id='{iq_id}'{attr}><vCard xmlns='{VC}'/></iq>"


def fn(reply: etree._Element) -> str | None:
    return payload(reply).findtext(f"{{{VC}}}FN")


# --- vCard ---------------------------------------------------------------------------------------


def test_a_vcard_set_is_stored_as_xml_and_read_back_by_its_owner():
    alice = Session()
    reply = alice.answer(vcard_set())
    assert reply.get("type") == "result" and reply.get("id") == "v1" and len(reply) == 0
    assert reply.get("to") == "alice@localhost/phone"
    stored = alice.storage.vcards.get("alice", "localhost")
    assert stored.startswith('<vCard xmlns="vcard-temp">') and "Alice Liddell" in stored
    assert fn(alice.answer(vcard_get())) == "Alice Liddell"
    own = alice.answer(vcard_get(to="alice@localhost"))
    assert fn(own) == "Alice Liddell" and own.get("from") == "alice@localhost"


def test_another_account_reads_the_vcard_answered_by_the_server_for_it():
    alice = Session()
    alice.answer(vcard_set())
    bob = Session(alice.storage, user="bob")
    reply = bob.answer(vcard_get(to="alice@localhost"))
    assert reply.get("from") == "alice@localhost" and reply.get("to") == "bob@localhost/phone"
    assert fn(reply) == "Alice Liddell"


def test_an_account_without_a_vcard_has_an_empty_one():
    reply = Session().answer(vcard_get(to="carol@localhost"))
    vc = payload(reply)
    assert vc.tag == f"{{{VC}}}vCard" and len(vc) == 0


def test_the_vcard_of_a_jid_that_is_no_account_is_service_unavailable():
    reply = Session().answer(vcard_get(to="nobody@localhost"))
    assert condition(reply) == "service-unavailable"
    assert reply.get("from") == "nobody@localhost"


def test_setting_someone_elses_vcard_is_forbidden_and_changes_nothing():
    alice = Session()
    assert condition(alice.answer(vcard_set(to="bob@localhost"))) == "forbidden"
    assert condition(alice.answer(vcard_set(to="localhost"))) == "forbidden"
    assert alice.storage.vcards.get("bob", "localhost") is None
    assert alice.queries == []


def test_a_vcard_over_the_limit_is_not_acceptable():
    alice = Session(max_vcard_bytes=1024)
    photo = "A" * 1100
    reply = alice.answer(
        vcard_set(f"<vCard xmlns='{VC}'><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard>")
    )
    assert condition(reply) == "not-acceptable"
    assert alice.storage.vcards.get("alice", "localhost") is None


def test_a_vcard_just_under_the_limit_is_taken():
    alice = Session(max_vcard_bytes=1024)
    body = f"<vCard xmlns='{VC}'><NOTE>{'x' * 900}</NOTE></vCard>"
    assert alice.answer(vcard_set(body)).get("type") == "result"


def test_setting_an_empty_vcard_deletes_the_stored_one():
    alice = Session()
    alice.answer(vcard_set())
    assert alice.answer(vcard_set(f"<vCard xmlns='{VC}'/>")).get("type") == "result"
    assert alice.storage.vcards.get("alice", "localhost") is None
    assert len(payload(alice.answer(vcard_get()))) == 0


def test_a_vcard_set_whose_payload_is_not_vcard_is_a_bad_request():
    reply = Session().answer(vcard_set(f"<photo xmlns='{VC}'/>"))
    assert condition(reply) == "bad-request"


def test_the_stored_vcard_keeps_only_the_namespaces_it_uses():
    alice = Session()
    body = f"<vCard xmlns='{VC}'><x:EXTRA xmlns:x='urn:example'>1</x:EXTRA><FN>A</FN></vCard>"
    alice.answer(f"<iq type='set' id='n' xmlns:unused='urn:unused'>{body}</iq>")
    stored = alice.storage.vcards.get("alice", "localhost")
    assert "urn:unused" not in stored and "urn:example" in stored
    extra = payload(alice.answer(vcard_get())).find("{urn:example}EXTRA")
    assert extra is not None and extra.text == "1"


def test_a_vcard_get_to_the_server_domain_is_an_empty_vcard():
    reply = Session().answer(vcard_get(to="localhost"))
    assert reply.get("from") == "localhost" and len(payload(reply)) == 0


def test_storage_failures_are_internal_server_errors():
    alice = Session(Broken())
    assert condition(alice.answer(vcard_get(to="bob@localhost"))) == "internal-server-error"
    assert condition(alice.answer(vcard_set())) == "internal-server-error"


def test_vcard_queries_are_plain_data_a_replay_can_feed():
    alice = Session()
    alice.answer(vcard_get(to="bob@localhost"))
    (query,) = alice.queries
    assert query.call is vcard.load_vcard and query.args == ("bob", "localhost")


# --- private XML storage -------------------------------------------------------------------------


def priv(kind: str, body: str, to: str | None = None, iq_id: str = "p1") -> str:
    attr = f" to='{to}'" if to else ""
    return f"<iq type='{kind}' id='{iq_id}'{attr}><query xmlns='{PRIV}'>{body}</query></iq>"


PREFS = "<prefs xmlns='urn:example:prefs'><nick>Al</nick></prefs>"


def stored_children(reply: etree._Element) -> list[etree._Element]:
    query = payload(reply)
    assert query.tag == f"{{{PRIV}}}query"
    return list(query)


def test_private_round_trip_keyed_by_name_and_namespace():
    alice = Session()
    assert alice.answer(priv("set", PREFS)).get("type") == "result"
    assert alice.storage.private.get("alice", "localhost", "prefs urn:example:prefs")
    (got,) = stored_children(alice.answer(priv("get", "<prefs xmlns='urn:example:prefs'/>")))
    assert got.tag == "{urn:example:prefs}prefs" and got.findtext("{urn:example:prefs}nick") == "Al"
    # the same namespace under another name is another element
    (other,) = stored_children(alice.answer(priv("get", "<other xmlns='urn:example:prefs'/>")))
    assert other.tag == "{urn:example:prefs}other" and len(other) == 0


def test_private_get_of_nothing_stored_returns_the_empty_element_asked_for():
    (got,) = stored_children(Session().answer(priv("get", "<bm xmlns='storage:bookmarks'/>")))
    assert got.tag == "{storage:bookmarks}bm" and len(got) == 0


def test_private_set_may_carry_several_elements():
    alice = Session()
    body = PREFS + "<storage xmlns='storage:bookmarks'><conference jid='a@b'/></storage>"
    assert alice.answer(priv("set", body)).get("type") == "result"
    (bm,) = stored_children(alice.answer(priv("get", "<storage xmlns='storage:bookmarks'/>")))
    assert len(bm) == 1


def test_private_to_own_bare_jid_is_fine_to_another_is_forbidden():
    alice = Session()
    assert alice.answer(priv("set", PREFS, to="alice@localhost")).get("type") == "result"
    for kind in ("get", "set"):
        for to in ("bob@localhost", "nobody@localhost", "localhost"):
            assert condition(alice.answer(priv(kind, PREFS, to=to))) == "forbidden", (kind, to)
    assert alice.storage.private.get("bob", "localhost", "prefs urn:example:prefs") is None


@pytest.mark.parametrize(
    "element",
    [
        "<query xmlns='jabber:iq:roster'/>",
        "<vCard xmlns='vcard-temp'/>",
        "<x xmlns='http://jabber.org/protocol/muc'/>",
        "<inherits/>",  # in jabber:iq:private itself
        "<none xmlns=''/>",
    ],
)
@pytest.mark.parametrize("kind", ["get", "set"])
def test_private_elements_in_reserved_or_no_namespace_are_not_acceptable(kind, element):
    alice = Session()
    assert condition(alice.answer(priv(kind, element))) == "not-acceptable"
    assert alice.queries == []


@pytest.mark.parametrize("kind", ["get", "set"])
def test_private_with_no_element_is_not_acceptable(kind):
    assert condition(Session().answer(priv(kind, ""))) == "not-acceptable"


def test_private_get_of_two_elements_is_a_bad_request():
    body = "<a xmlns='urn:a'/><b xmlns='urn:b'/>"
    assert condition(Session().answer(priv("get", body))) == "bad-request"


def test_private_set_of_the_same_element_twice_is_a_bad_request():
    body = "<a xmlns='urn:a'>1</a><a xmlns='urn:a'>2</a>"
    assert condition(Session().answer(priv("set", body))) == "bad-request"


def test_private_element_over_the_limit_is_not_acceptable_and_nothing_is_stored():
    alice = Session(max_private_bytes=1024)
    body = "<small xmlns='urn:a'/>" + f"<big xmlns='urn:a'>{'x' * 1100}</big>"
    assert condition(alice.answer(priv("set", body))) == "not-acceptable"
    assert alice.storage.private.get("alice", "localhost", "small urn:a") is None


def test_private_storage_failure_is_an_internal_server_error():
    alice = Session(Broken())
    assert condition(alice.answer(priv("set", PREFS))) == "internal-server-error"
    assert condition(alice.answer(priv("get", PREFS))) == "internal-server-error"


def test_private_key_is_localname_then_namespace():
    assert private.key("{urn:x}storage") == "storage urn:x"
    assert private.key("{urn:x}storage") != private.key("{urn:y}storage")


def test_private_element_with_a_huge_name_is_not_acceptable():
    body = f"<a xmlns='urn:{'n' * 1100}'/>"
    for kind in ("get", "set"):
        assert condition(Session().answer(priv(kind, body))) == "not-acceptable"


def test_a_session_without_an_account_cannot_store_but_sees_itself_in_disco():
    anonymous = Session(user="a1b2c3")  # SASL ANONYMOUS: authenticated, no account stored
    assert condition(anonymous.answer(vcard_set())) == "not-allowed"
    assert condition(anonymous.answer(priv("set", PREFS))) == "not-allowed"
    info = payload(
        anonymous.answer(
            "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
    )
    assert info.find("{http://jabber.org/protocol/disco#info}identity").get("category") == "account"
