"""The incremental stream parser (RFC 6120 §4, restricted XML §11.1) and the serializer."""

import time

import pytest
from lxml import etree

from xmpp import ns
from xmpp.stream import (
    STREAM_CLOSE,
    StreamBroken,
    StreamClose,
    StreamElement,
    StreamOpen,
    StreamParser,
    serialize,
    stream_header,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'"
    b" xml:lang='en'>"
)
LOGIN = (
    HEADER
    + (
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        "AGp1bGlldAByMG0zMA==</auth>"
        "\n  <iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<resource>balcón</resource></bind></iq> "
        "<message to='romeo@example.net' id='m1' type='chat'><body>Wherefore art thou, Romeo? ❤ "
        "&lt;3 &amp; &#x263A;&#9731;</body><active xmlns='http://jabber.org/protocol/chatstates'/>"
        "</message>\t<presence/>\r\n</stream:stream>"
    ).encode()
)


def parse(*chunks: bytes, **kw) -> list:
    parser = StreamParser(**kw)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def summary(events: list) -> list:
    """Events in a comparable form: elements as their serialization."""
    return [serialize(e.element) if isinstance(e, StreamElement) else e for e in events]


def broken(events: list) -> StreamBroken:
    assert isinstance(events[-1], StreamBroken), events
    return events[-1]


# --- ordinary streams -----------------------------------------------------------------------


def test_header_attributes():
    [opened] = parse(HEADER)
    assert opened == StreamOpen(
        {
            "to": "example.com",
            "version": "1.0",
            "lang": "en",
            "xmlns": "jabber:client",
            "xmlns:stream": ns.STREAM,
            "stream_ns": ns.STREAM,
            "stream_name": "stream",
        }
    )


def test_header_without_declaration_and_with_dialback_prefix():
    [opened] = parse(
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback'"
        b" xmlns:stream='http://etherx.jabber.org/streams' from='a.example' id='x'>"
    )
    assert opened.attrs["xmlns"] == "jabber:server"
    assert opened.attrs["xmlns:db"] == "jabber:server:dialback"
    assert opened.attrs["from"] == "a.example" and opened.attrs["id"] == "x"


def test_login_stream():
    events = parse(LOGIN)
    assert isinstance(events[0], StreamOpen)
    assert isinstance(events[-1], StreamClose)
    stanzas = [e.element for e in events[1:-1]]
    assert [etree.QName(el).localname for el in stanzas] == ["auth", "iq", "message", "presence"]
    auth, iq, message, presence = stanzas
    assert auth.tag == ns.q(ns.SASL, "auth") and auth.text == "AGp1bGlldAByMG0zMA=="
    assert iq.find(f"{{{ns.BIND}}}bind/{{{ns.BIND}}}resource").text == "balcón"
    assert message.tag == ns.q(ns.CLIENT, "message")
    assert message[0].text == "Wherefore art thou, Romeo? ❤ <3 & ☺☃"
    assert presence.tag == ns.q(ns.CLIENT, "presence")


def test_elements_serialize_without_stream_prefix():
    events = parse(LOGIN)
    message = events[3].element
    data = serialize(message)
    assert data.startswith(b'<message xmlns="jabber:client" to="romeo@example.net"')
    assert b"xmlns:stream" not in data and b"ns0" not in data
    assert serialize(events[4].element) == b'<presence xmlns="jabber:client"/>'
    assert serialize(events[1].element).startswith(
        b'<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">'
    )
    assert message.getparent() is None and message.tail is None


def test_byte_at_a_time_gives_the_same_events():
    whole = summary(parse(LOGIN))
    assert summary(parse(*[LOGIN[i : i + 1] for i in range(len(LOGIN))])) == whole


def test_every_split_point_gives_the_same_events():
    whole = summary(parse(LOGIN))
    for i in range(1, len(LOGIN)):
        assert summary(parse(LOGIN[:i], LOGIN[i:])) == whole, i


def test_whitespace_keepalives_yield_nothing_and_are_not_kept():
    parser = StreamParser()
    parser.feed(HEADER)
    for _ in range(1000):
        assert parser.feed(b" ") == []
    assert parser.feed(b"\n\t\r\n") == []
    [event] = parser.feed(b"<presence/>")
    assert isinstance(event, StreamElement)
    root = parser._root
    assert len(root) == 0 and not root.text  # nothing kept between stanzas


def test_stream_holds_no_finished_stanzas():
    parser = StreamParser()
    parser.feed(HEADER)
    for i in range(500):
        [event] = parser.feed(b"<message id='%d'><body>x</body></message> " % i)
        assert event.element.get("id") == str(i)
    assert len(parser._root) == 0 and not parser._root.text


def test_data_after_close_is_ignored():
    parser = StreamParser()
    events = parser.feed(HEADER + b"<presence/></stream:stream><garbage")
    assert isinstance(events[-1], StreamClose)
    assert parser.feed(b"<more/>") == []


def test_non_stream_root_is_reported_for_the_fsm():
    [opened] = parse(b"<foo xmlns='urn:bar' to='x'>")
    assert opened.attrs["stream_name"] == "foo"
    assert opened.attrs["stream_ns"] == "urn:bar"
    [opened] = parse(b"<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client'>")
    assert opened.attrs["stream_name"] == "stream" and opened.attrs["stream_ns"] == "urn:wrong"


def test_undeclared_stream_prefix_is_not_well_formed():
    assert broken(parse(b"<stream:stream xmlns='jabber:client'>")).condition == ("not-well-formed")


# --- restricted XML ---------------------------------------------------------------------------

RESTRICTED = {
    "doctype": b"<!DOCTYPE stream:stream>" + HEADER[21:],
    "internal subset": b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x 'y'>]>" + HEADER[21:],
    "comment in prolog": b"<!-- hi -->" + HEADER[21:],
    "pi in prolog": b"<?xml version='1.0'?><?foo bar?>" + HEADER[21:],
    "stylesheet": b"<?xml-stylesheet href='a.xsl'?>" + HEADER[21:],
    "comment between stanzas": HEADER + b"<presence/><!-- hi -->",
    "comment in stanza": HEADER + b"<message><!-- hi --><body/></message>",
    "pi between stanzas": HEADER + b"<?foo bar?>",
    "pi in stanza": HEADER + b"<message><?foo bar?></message>",
    "entity in text": HEADER + b"<message><body>&foo;</body></message>",
    "entity in attribute": HEADER + b"<message to='&foo;'/>",
    "entity at depth 1": HEADER + b"&nbsp;",
}


@pytest.mark.parametrize("data", RESTRICTED.values(), ids=RESTRICTED.keys())
def test_restricted_xml(data):
    events = parse(data)
    assert broken(events).condition == "restricted-xml"
    assert summary(parse(*[data[i : i + 1] for i in range(len(data))]))[-1].condition == (
        "restricted-xml"
    )


def test_predefined_and_numeric_references_are_fine():
    events = parse(HEADER + b"<m a='&quot;&apos;'>&lt;&gt;&amp;&#65;&#x42;</m>")
    assert events[1].element.text == "<>&AB" and events[1].element.get("a") == "\"'"


BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    + b"<message><body>&lol9;</body></message>"
)


def test_billion_laughs_is_refused_fast():
    start = time.perf_counter()
    events = parse(BILLION_LAUGHS)
    assert time.perf_counter() - start < 0.1
    assert [type(e) for e in events] == [StreamBroken]
    assert events[0].condition == "restricted-xml"


@pytest.mark.parametrize("url", [b"file:///etc/passwd", b"http://127.0.0.1:9/evil.dtd"])
def test_external_entities_are_refused_unread(url, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    target = url if url.startswith(b"http") else b"file://" + str(secret).encode()
    data = (
        b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM '" + target + b"'>]>"
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<message><body>&xxe;</body></message>"
    )
    start = time.perf_counter()
    events = parse(data)
    assert time.perf_counter() - start < 0.1
    assert [type(e) for e in events] == [StreamBroken]
    assert events[0].condition == "restricted-xml"
    external_dtd = b"<!DOCTYPE s SYSTEM '" + target + b"'>" + HEADER[21:]
    assert broken(parse(external_dtd)).condition == "restricted-xml"


def test_undeclared_entity_after_header_does_not_hang():
    parser = StreamParser()
    parser.feed(HEADER)
    assert broken(parser.feed(b"<message>&xxe;</message>")).condition == "restricted-xml"
    assert parser.feed(b"<presence/>") == []


# --- not well-formed, encodings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        HEADER + b"<message></iq>",
        HEADER + b"<message><body>\xff\xfe</body></message>",
        HEADER + b"<message><body>\xc3\x28</body></message>",
        HEADER + b"<message a='1' a='2'/>",
        HEADER + b"<a><!DOCTYPE x></a>",
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"  <?xml version='1.0'?><stream/>",
        HEADER + b"</wrong>",
    ],
)
def test_not_well_formed(data):
    assert broken(parse(data)).condition == "not-well-formed"


@pytest.mark.parametrize(
    "data",
    [
        b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER[21:],
        b"\xff\xfe<\x00s\x00",
        b"\xfe\xff\x00<\x00s",
    ],
)
def test_unsupported_encoding(data):
    assert broken(parse(data)).condition == "unsupported-encoding"


def test_utf8_declaration_and_bom_are_fine():
    data = b"\xef\xbb\xbf<?xml version='1.0' encoding='UTF-8'?>" + HEADER[21:]
    assert [type(e) for e in parse(data)] == [StreamOpen]


def test_multibyte_utf8_split_across_feeds():
    body = "héllo ☃ 𝄞".encode()
    data = HEADER + b"<message><body>" + body + b"</body></message>"
    for i in range(len(data) - 40, len(data)):
        events = parse(data[:i], data[i:])
        assert events[-1].element[0].text == "héllo ☃ 𝄞"


def test_nothing_after_broken():
    parser = StreamParser()
    assert broken(parser.feed(HEADER + b"<!-- x -->"))
    assert parser.feed(b"<presence/>") == []


# --- size limits ------------------------------------------------------------------------------


def stanza_of(size: int) -> bytes:
    head, tail = b"<message><body>", b"</body></message>"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_stanza_at_the_limit_passes():
    events = parse(HEADER, stanza_of(1000), max_stanza_bytes=1000)
    assert isinstance(events[-1], StreamElement)


def test_stanza_over_the_limit_is_policy_violation():
    err = broken(parse(HEADER, stanza_of(1001), max_stanza_bytes=1000))
    assert err.condition == "policy-violation" and "1000" in err.text


def test_limit_counts_across_feeds_and_stanzas():
    big = stanza_of(1001)
    chunks = [HEADER] + [big[i : i + 7] for i in range(0, len(big), 7)]
    assert broken(parse(*chunks, max_stanza_bytes=1000)).condition == "policy-violation"
    # many stanzas at the limit in one chunk, with whitespace between them, pass
    many = b"  ".join([stanza_of(1000)] * 50)
    events = parse(HEADER + many + b" " * 5000, max_stanza_bytes=1000)
    assert len(events) == 51 and all(isinstance(e, StreamElement) for e in events[1:])


def test_limit_with_quoted_gt_in_attribute():
    # '>' may appear inside attribute values: the count must not reset there
    data = HEADER + b"<message a='" + b"/>" * 600 + b"'/>"
    assert broken(parse(data, max_stanza_bytes=1000)).condition == "policy-violation"


def test_header_size_is_capped():
    data = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='" + b"x" * 20000
    err = broken(parse(data))
    assert err.condition == "policy-violation"
    assert broken(parse(b" " * 2000)).condition == "policy-violation"  # endless prolog


# --- the serializer ---------------------------------------------------------------------------


def test_stream_header():
    data = stream_header({"from": "example.com", "id": "a'b<&", "version": "1.0", "xml:lang": "en"})
    assert data == (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
        b" xmlns:stream='http://etherx.jabber.org/streams' from='example.com'"
        b" id='a&apos;b&lt;&amp;' version='1.0' xml:lang='en'>"
    )
    [opened] = parse(data)
    assert opened.attrs["id"] == "a'b<&" and opened.attrs["lang"] == "en"
    server = stream_header({"xmlns": "jabber:server", "xmlns:db": "jabber:server:dialback"})
    assert b"xmlns='jabber:server'" in server and b"xmlns:db='jabber:server:dialback'" in server
    with pytest.raises(ValueError):
        stream_header({"bad name": "x"})


def test_serialize_roundtrip():
    el = etree.fromstring("<message xmlns='jabber:client' to='a@b'><body>é &amp;</body></message>")
    assert (
        serialize(el)
        == '<message xmlns="jabber:client" to="a@b"><body>é &amp;</body></message>'.encode()
    )
    assert STREAM_CLOSE == b"</stream:stream>"
