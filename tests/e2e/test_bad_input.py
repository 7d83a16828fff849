"""Bad input over a raw socket: the right stream error (RFC 6120 §4.9.3, §11.1), always after a
stream header, then the connection closes, while alice and bob keep chatting on the same node."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.bystanders import while_chatting
from tests.support.raw import RawClient, header, iq_type, stanza_error
from tests.support.server import Server

_names = itertools.count(1)


@pytest.fixture
def calmly(run):
    """`calmly(node, bad)`: run `bad` (blocking raw-socket work) while alice and bob chat."""
    return lambda node, bad: run(while_chatting(node, bad))


def expect_stream_error(raw: RawClient, condition: str) -> None:
    """The server answers with its header (sent first, whenever the error happened), the stream
    error, and its stream close, then closes the connection."""
    raw.read_until_closed()
    assert raw.header_first(), raw.received
    assert re.search(rb"<stream:stream[^>]*\sid=", raw.received), raw.received  # §4.7.3
    assert raw.stream_error() == condition, raw.received
    assert raw.received.rstrip().endswith(b"</stream:stream>"), raw.received


# --- where a bad input is sent from ----------------------------------------------------------


def _before_tls(node: Server) -> RawClient:
    raw = RawClient(node)
    raw.open_stream()
    return raw


def _after_tls(node: Server) -> RawClient:
    raw = _before_tls(node)
    raw.starttls()
    return raw


def _in_session(node: Server) -> RawClient:
    raw = RawClient(node)
    raw.login("carol", resource=f"raw{next(_names)}")
    return raw


STAGES = {"before-tls": _before_tls, "after-tls": _after_tls, "in-session": _in_session}


@pytest.fixture(params=["before-tls", "in-session"])
def stage(request) -> Callable[[Server], RawClient]:
    return STAGES[request.param]


# --- XML that is not XMPP's (RFC 6120 §11.1) -------------------------------------------------

LOLS = "".join(f"<!ENTITY lol{i} '{f'&lol{i - 1};' * 10}'>" for i in range(1, 10))
BILLION_LAUGHS = f"<!DOCTYPE stream:stream [<!ENTITY lol0 'lol'>{LOLS}]>"
XXE = "<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
STANZA_WITH = "<message to='bob@localhost'><body>{}</body></message>"


@pytest.mark.parametrize(
    ("sent", "condition"),
    [
        pytest.param("<message><body></message>", "not-well-formed", id="mismatched-tags"),
        pytest.param("<!-- a comment -->", "restricted-xml", id="comment"),
        pytest.param("<?evil processing='instruction'?>", "restricted-xml", id="pi"),
        pytest.param(STANZA_WITH.format("&foo;"), "restricted-xml", id="undeclared-entity"),
        pytest.param(STANZA_WITH.format("&xxe;"), "restricted-xml", id="external-entity-ref"),
        pytest.param("<message to='&foo;'/>", "restricted-xml", id="entity-in-attribute"),
        pytest.param(STANZA_WITH.format("&#0;"), "not-well-formed", id="bad-char-ref"),
        pytest.param(STANZA_WITH.format("\udcff"), "not-well-formed", id="bad-utf8"),
        # A DOCTYPE after the root's start tag is not even well-formed XML.
        pytest.param(
            BILLION_LAUGHS + STANZA_WITH.format("&lol9;"), "not-well-formed", id="doctype-inside"
        ),
    ],
)
def test_bad_xml_inside_the_stream(server, calmly, stage, sent, condition):
    def bad():
        with stage(server) as raw:
            raw.send(sent.encode(errors="surrogateescape"))
            expect_stream_error(raw, condition)

    calmly(server, bad)


def _rss_kib(node: Server) -> int:
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


@pytest.mark.parametrize("dribbled", [False, True], ids=["at-once", "byte-by-byte"])
def test_doctype_before_the_header_is_restricted_xml(server, calmly, dribbled):
    def bad():
        with RawClient(server) as raw:
            data = b"<?xml version='1.0'?><!DOCTYPE stream:stream>" + header()
            raw.dribble(data) if dribbled else raw.send(data)
            expect_stream_error(raw, "restricted-xml")

    calmly(server, bad)


def test_billion_laughs_is_refused_without_expanding(server, calmly):
    def bad():
        before = _rss_kib(server)
        with RawClient(server) as raw:
            prolog = "<?xml version='1.0'?>" + BILLION_LAUGHS
            raw.send(header(prolog=prolog) + STANZA_WITH.format("&lol9;").encode())
            expect_stream_error(raw, "restricted-xml")
        # a billion "lol"s would be gigabytes; what is left is noise
        assert _rss_kib(server) - before < 64 * 1024

    calmly(server, bad)


def test_external_entity_is_never_read(server, calmly):
    def bad():
        with RawClient(server) as raw:
            prolog = "<?xml version='1.0'?>" + XXE
            raw.send(header(prolog=prolog) + STANZA_WITH.format("&xxe;").encode())
            expect_stream_error(raw, "restricted-xml")
            assert b"root:" not in raw.transcript

    calmly(server, bad)


def test_garbage_before_the_header_is_not_well_formed(server, calmly):
    # Bytes that cannot begin an XML document: the prolog check answers not-well-formed (the
    # input is not XML at all) rather than restricted-xml (XML that XMPP forbids).
    def bad():
        with RawClient(server) as raw:
            raw.send(b"GET / HTTP/1.1\r\n\x00\xff" + header())
            expect_stream_error(raw, "not-well-formed")

    calmly(server, bad)


@pytest.mark.parametrize("restart", ["after-starttls", "after-sasl"])
def test_error_before_the_restarted_header_still_gets_a_header(server, calmly, restart):
    # Each restart begins a new stream (RFC 6120 §5.4.3.3, §6.4.6): the server's header of the
    # old one does not count, so a new one precedes the error (§4.9.1.1).
    def bad():
        with RawClient(server) as raw:
            raw.open_stream()
            raw.starttls(reopen=restart != "after-starttls")
            if restart == "after-sasl":
                assert b"<success" in raw.auth_plain("carol", server.passwords["carol"])
                raw.new_stream()
            raw.send(b"<!DOCTYPE stream:stream>" + header())
            expect_stream_error(raw, "restricted-xml")

    calmly(server, bad)


# --- headers the server does not accept ------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "condition"),
    [
        pytest.param(header("elsewhere.example"), "host-unknown", id="unknown-host"),
        pytest.param(header(stream_ns="urn:example:s"), "invalid-namespace", id="stream-ns"),
        pytest.param(header(xmlns="jabber:server"), "invalid-namespace", id="content-ns"),
        pytest.param(header(version="0.9"), "unsupported-version", id="version-0.9"),
        pytest.param(
            header(prolog="<?xml version='1.0' encoding='ISO-8859-1'?>"),
            "unsupported-encoding",
            id="latin-1",
        ),
        pytest.param(
            "\ufeff".encode("utf-16-le") + header().decode().encode("utf-16-le"),
            "unsupported-encoding",
            id="utf-16",
        ),
        pytest.param(header("x" * 20_000), "policy-violation", id="huge-header"),
    ],
)
def test_bad_stream_header(server, calmly, sent, condition):
    def bad():
        with RawClient(server) as raw:
            raw.send(sent)
            expect_stream_error(raw, condition)

    calmly(server, bad)


@pytest.mark.parametrize(
    ("direct", "sent"),
    [(False, b""), (False, b"<?xml version='1.0'?><stream:stream to='localhost'"), (True, b"")],
    ids=["silent", "half-a-header", "silent-after-direct-tls"],
)
def test_no_stream_header_in_time_is_connection_timeout(configured_server, calmly, direct, sent):
    node = configured_server(limits="stream_header_timeout = 1")

    def bad():
        with RawClient(node, direct=direct) as raw:
            raw.send(sent)
            expect_stream_error(raw, "connection-timeout")

    calmly(node, bad)


# --- the order of things: TLS, SASL, bind ----------------------------------------------------


def test_sasl_before_starttls_is_refused_and_starttls_still_works(server, calmly):
    def bad():
        with RawClient(server) as raw:
            raw.open_stream()
            answer = raw.auth_plain("carol", server.passwords["carol"])
            assert b"<failure" in answer and b"<encryption-required" in answer, answer
            raw.starttls()
            raw.authenticate("carol")
            raw.bind(f"raw{next(_names)}")
            assert iq_type(raw.ping()) == "result"

    calmly(server, bad)


def test_too_many_failed_logins_is_policy_violation(server, calmly):
    def bad():
        with _after_tls(server) as raw:
            for _ in range(2):
                assert b"<not-authorized" in raw.auth_plain("carol", "wrong")
            raw.auth_plain("carol", "still wrong")
            expect_stream_error(raw, "policy-violation")
            assert raw.received.count(b"<not-authorized") == 3  # each attempt got its failure

    calmly(server, bad)


@pytest.mark.parametrize(
    "stanza",
    [
        "<message to='bob@localhost'><body>hi</body></message>",
        "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<presence/>",
    ],
    ids=["message", "iq", "presence"],
)
@pytest.mark.parametrize("where", ["before-tls", "after-tls"])
def test_stanza_before_authentication_is_not_authorized(server, calmly, where, stanza):
    def bad():
        with STAGES[where](server) as raw:
            raw.send(stanza)
            expect_stream_error(raw, "not-authorized")

    calmly(server, bad)


def test_before_bind_the_server_answers_but_nobody_else_is_reachable(server, calmly):
    def bad():
        with RawClient(server) as raw:
            raw.authenticate("carol")
            assert iq_type(raw.ping()) == "result"  # RFC 6120 §7.1: the server may answer
            raw.send(STANZA_WITH.format("may I?"))
            expect_stream_error(raw, "not-authorized")

    calmly(server, bad)


# --- a bound session that misbehaves ---------------------------------------------------------


@pytest.mark.parametrize("sender", ["alice@localhost", "carol@localhost/not-me", "localhost"])
def test_spoofed_from_is_invalid_from(server, calmly, sender):
    def bad():
        with _in_session(server) as raw:
            raw.send(f"<message from='{sender}' to='bob@localhost'><body>it's me</body></message>")
            expect_stream_error(raw, "invalid-from")

    calmly(server, bad)


@pytest.mark.parametrize("to", ["@localhost", "bob@", "bob@localhost/", "a@b@c"])
def test_malformed_to_is_a_stanza_error_and_the_stream_goes_on(server, calmly, to):
    def bad():
        with _in_session(server) as raw:
            raw.send(f"<message id='m1' to='{to}'><body>where to?</body></message>")
            reply = raw.read_until(b"</message>")
            assert stanza_error(reply) == "jid-malformed", reply
            assert iq_type(raw.ping()) == "result"
            assert raw.stream_error() is None

    calmly(server, bad)


@pytest.mark.parametrize(
    "element", ["<foo xmlns='urn:example:unknown'/>", "<foo/>"], ids=["other-namespace", "client"]
)
def test_unknown_top_level_element_is_unsupported_stanza_type(server, calmly, element):
    def bad():
        with _in_session(server) as raw:
            raw.send(element)
            expect_stream_error(raw, "unsupported-stanza-type")

    calmly(server, bad)


@pytest.mark.parametrize(
    ("where", "piece"),
    [("in-session", 40_000), ("in-session", 1_000), ("before-tls", 40_000)],
    ids=["at-once", "in-1k-pieces", "before-tls"],
)
def test_oversized_stanza_is_policy_violation(configured_server, calmly, where, piece):
    node = configured_server(limits="max_stanza_bytes = 20000")

    def bad():
        with STAGES[where](node) as raw:
            big = STANZA_WITH.format("x" * 40_000).encode()
            for i in range(0, len(big), piece):
                raw.send(big[i : i + piece])
            expect_stream_error(raw, "policy-violation")

    calmly(node, bad)


# --- what the server itself writes -----------------------------------------------------------


def test_server_stanzas_never_prefix_the_content_namespace(server):
    # RFC 3920 §11.2.2: no namespace prefix on elements in jabber:client (prefixed stanzas such
    # as <ns0:iq xmlns:ns0='jabber:client'> are valid XML, but clients match on "<iq").
    with _in_session(server) as raw:
        assert iq_type(raw.ping()) == "result"
        assert iq_type(raw.ping(to="carol@localhost")) == "result"
        raw.send("<message id='m1' to='@localhost'><body>where to?</body></message>")
        raw.read_until(b"</message>")
        assert not re.search(rb"<\w+:(?:iq|message|presence)\b", raw.transcript), raw.transcript
