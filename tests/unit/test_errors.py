"""Stream and stanza errors as XML (RFC 6120 §4.9, §8.3) and the reply builders."""

import pytest
from lxml import etree

from xmpp import ns
from xmpp.errors import (
    STANZA_CONDITIONS,
    STREAM_CONDITIONS,
    StanzaError,
    error_reply,
    iq_result,
    stream_error,
)
from xmpp.stream import serialize


def xml(text: str) -> etree._Element:
    return etree.fromstring(text)


def test_stream_conditions_are_rfc_6120():
    assert len(STREAM_CONDITIONS) == 25
    assert {"host-unknown", "restricted-xml", "not-well-formed", "see-other-host"} <= (
        STREAM_CONDITIONS
    )


def test_stream_error_xml():
    el = stream_error("host-unknown", "no such domain")
    assert el.tag == ns.q(ns.STREAM, "error")
    assert el.prefix == "stream"
    condition, text = list(el)
    assert condition.tag == ns.q(ns.STREAMS, "host-unknown")
    assert text.tag == ns.q(ns.STREAMS, "text")
    assert text.get(ns.q(ns.XML, "lang")) == "en"
    assert text.text == "no such domain"
    data = serialize(el)
    assert data.startswith(b'<stream:error xmlns:stream="http://etherx.jabber.org/streams">')
    assert b'<host-unknown xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>' in data


def test_stream_error_without_text():
    assert len(stream_error("restricted-xml")) == 1


def test_unknown_stream_condition():
    with pytest.raises(ValueError):
        stream_error("item-not-found")


@pytest.mark.parametrize(
    ("condition", "type"),
    [
        ("service-unavailable", "cancel"),
        ("not-authorized", "auth"),
        ("policy-violation", "modify"),
        ("resource-constraint", "wait"),
        ("jid-malformed", "modify"),
        ("item-not-found", "cancel"),
        ("bad-request", "modify"),
        ("feature-not-implemented", "cancel"),
        ("forbidden", "auth"),
        ("not-allowed", "cancel"),
        ("remote-server-not-found", "cancel"),
        ("conflict", "cancel"),
        ("internal-server-error", "cancel"),
        ("recipient-unavailable", "wait"),
        ("undefined-condition", "cancel"),
    ],
)
def test_default_types(condition, type):
    assert STANZA_CONDITIONS[condition] == type
    assert StanzaError(condition).type == type


def test_stanza_conditions_are_rfc_6120():
    assert len(STANZA_CONDITIONS) == 22


def test_stanza_error_element():
    err = StanzaError("item-not-found", "no such node", type="modify")
    assert (err.condition, err.type, err.text) == ("item-not-found", "modify", "no such node")
    el = err.element()
    assert el.tag == ns.q(ns.CLIENT, "error") and el.get("type") == "modify"
    assert [c.tag for c in el] == [ns.q(ns.STANZAS, "item-not-found"), ns.q(ns.STANZAS, "text")]
    assert el[1].text == "no such node"
    assert StanzaError("conflict").element(ns.SERVER).tag == ns.q(ns.SERVER, "error")


def test_stanza_error_is_an_exception():
    with pytest.raises(StanzaError) as info:
        raise StanzaError("forbidden")
    assert info.value.condition == "forbidden"
    with pytest.raises(ValueError):
        StanzaError("no-such-condition")
    with pytest.raises(ValueError):
        StanzaError("forbidden", type="bogus")


def test_error_reply_to_iq_drops_payload():
    iq = xml(
        "<iq xmlns='jabber:client' type='get' id='v1' from='romeo@example.net/orchard'"
        " to='example.net'><query xmlns='jabber:iq:version'/></iq>"
    )
    reply = error_reply(iq, "service-unavailable")
    assert reply.tag == ns.q(ns.CLIENT, "iq")
    assert dict(reply.attrib) == {
        "to": "romeo@example.net/orchard",
        "from": "example.net",
        "type": "error",
        "id": "v1",
    }
    assert [c.tag for c in reply] == [ns.q(ns.CLIENT, "error")]
    error = reply[0]
    assert error.get("type") == "cancel"
    assert error[0].tag == ns.q(ns.STANZAS, "service-unavailable")
    assert serialize(reply).startswith(b'<iq xmlns="jabber:client" to="romeo')


def test_error_reply_to_message_keeps_children():
    msg = xml(
        "<message xmlns='jabber:server' to='juliet@example.com' from='romeo@example.net/o'"
        " id='m1' type='chat'><body>hi</body></message>"
    )
    reply = error_reply(msg, "recipient-unavailable", "gone to bed")
    assert reply.get("type") == "error" and reply.get("id") == "m1"
    assert reply.get("to") == "romeo@example.net/o" and reply.get("from") == "juliet@example.com"
    assert [c.tag for c in reply] == [ns.q(ns.SERVER, "body"), ns.q(ns.SERVER, "error")]
    assert reply[0].text == "hi" and msg[0].text == "hi"  # copied, not moved
    assert reply[1].get("type") == "wait"
    assert reply[1][1].text == "gone to bed"


def test_error_reply_without_from():
    presence = xml("<presence xmlns='jabber:client' to='a@b'/>")
    reply = error_reply(presence, "not-allowed", type="modify")
    assert reply.get("from") == "a@b" and reply.get("to") is None
    assert reply[0].get("type") == "modify"


def test_never_reply_to_an_error():
    err = xml("<message xmlns='jabber:client' type='error' to='a@b'/>")
    with pytest.raises(ValueError):
        error_reply(err, "bad-request")


def test_iq_result():
    iq = xml("<iq xmlns='jabber:client' type='get' id='p1' from='a@b/c' to='b'><ping/></iq>")
    query = etree.Element("{jabber:iq:version}query")
    reply = iq_result(iq, query)
    assert dict(reply.attrib) == {"to": "a@b/c", "from": "b", "type": "result", "id": "p1"}
    assert list(reply) == [query]
    assert len(iq_result(iq)) == 0
