"""Importers of foreign logs (ejabberd debug lines, C:/S: transcripts, scansion scripts) into
the replay Script model: the seeds and Prosody's 50 scansion scripts, and untidy input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.shared import SHARED
from xmppd.replay.importers import detect, load, parse
from xmppd.replay.script import UnusableLog

SEEDS = SHARED / "seeds"
SCANSION = SHARED / "conformance" / "scansion"

needs_shared = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared is not present")


def dirs(script):
    return [s.direction for s in script.steps]


def write(tmp_path: Path, text: str, name: str = "log.txt") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --- the seeds --------------------------------------------------------------------------------


@needs_shared
def test_ejabberd_seed_digest_md5_login_through_session():
    s = load(SEEDS / "ejabberd-c2s-fsm-login.txt")
    assert s.format == "ejabberd"
    assert len(s.steps) == 18
    assert dirs(s) == (
        ["send", "recv", "recv", "send", "send", "recv", "recv"]  # RECV/SENT part
        + ["send", "recv", "send", "recv"]  # SASL, told in prose
        + ["send", "recv", "recv", "send", "recv", "send", "recv"]  # restart, bind, session
    )
    assert s.steps[0].xml.startswith('<stream:stream to="localhost"')
    assert s.steps[0].line == 6
    assert s.steps[-1].xml.startswith('<iq type="result" id="T2U7N-1"')
    assert s.steps[-1].line == 133
    # the SENT spanning numbered lines 8-21 is one features element
    features = s.steps[2]
    assert features.xml.startswith("<stream:features>") and "</stream:features>" in features.xml
    assert features.xml.count("<mechanism>") == 5 and "16." not in features.xml
    assert s.header["mechanism"] == "DIGEST-MD5"
    assert s.header["domains"] == ["kinglong", "localhost"]
    assert s.clients["client"].jid == "12345678910@kinglong/Spark 2.6.3"
    assert s.clients["client"].password is None
    assert not s.implied_login
    notes = " ".join(s.notes)
    assert "DIGEST-MD5, which xmppd does not offer" in notes
    assert "recorded outcome" in notes
    assert "no <proceed/>" in notes


@needs_shared
def test_ejabberd_plain_tcp_transcript_stops_before_bosh():
    s = load(SEEDS / "ejabberd-login-tcp-and-bosh.txt")
    assert s.format == "transcript"
    assert len(s.steps) == 17
    assert dirs(s) == [
        "send", "recv", "recv", "send", "recv",  # stream, features, starttls, proceed
        "send", "recv", "recv", "send", "recv",  # restart, features, PLAIN, success
        "send", "recv", "recv", "send", "recv", "send", "recv",  # restart, bind, session
    ]  # fmt: skip
    assert s.steps[0].xml.startswith('<stream:stream to="nba.com"') and s.steps[0].line == 9
    assert s.steps[-1].xml.startswith("<iq type='result' id='1'>") and s.steps[-1].line == 140
    assert all("httpbind" not in st.xml for st in s.steps)
    assert any("BOSH part of the log is not replayed" in n for n in s.notes)
    assert s.header["mechanism"] == "PLAIN"
    assert s.header["auth"]["client"]["authcid"] == "mbed"
    assert s.header["domains"] == ["nba.com"]
    assert s.clients["client"].jid == "rondo@nba.com/boston"


@needs_shared
def test_openfire_c_s_transcript_skips_illustrations():
    s = load(SEEDS / "openfire-xmpp-overview-login.txt")
    assert s.format == "transcript"
    assert len(s.steps) == 26
    assert s.steps[0].direction == "send" and s.steps[0].line == 106
    assert s.steps[0].xml.startswith("<stream:stream xmlns='jabber:client' to='zy-fordestiny'")
    assert s.steps[-1].direction == "send" and s.steps[-1].xml.startswith(
        "<presence id='h1q24-10'>"
    )
    assert dirs(s)[:5] == ["send", "recv", "recv", "send", "recv"]
    assert s.header["mechanism"] == "SCRAM-SHA-1"
    assert s.clients["client"].jid == "10023@zy-fordestiny/ZY-fordestiny"
    assert any("illustration (lines 63, 79, 87)" in n for n in s.notes)


# --- scansion ---------------------------------------------------------------------------------


@needs_shared
def test_all_scansion_scripts_import():
    paths = sorted(SCANSION.glob("*.scs"))
    assert len(paths) == 50
    for p in paths:
        s = load(p)
        assert s.format == "scansion", p.name
        assert s.steps and s.clients, p.name
        assert s.header["domains"] == ["localhost"], p.name
        assert {st.direction for st in s.steps} <= {"connect", "send", "recv", "disconnect"}
        assert s.implied_login == {st.client for st in s.steps if st.direction == "connect"}


@needs_shared
def test_scansion_basic():
    s = load(SCANSION / "basic.scs")
    assert [(st.client, st.direction, st.xml) for st in s.steps] == [
        ("Romeo", "connect", ""),
        ("Romeo", "send", "<presence/>"),
        ("Romeo", "recv", "<presence/>"),
        ("Romeo", "disconnect", "</stream:stream>"),
    ]
    assert [st.line for st in s.steps] == [9, 12, 15, 17]
    romeo = s.clients["Romeo"]
    assert (romeo.jid, romeo.password) == ("user@localhost", "password")
    assert s.header["title"] == "Basic login and initial presence"
    assert s.header["policy"]["any"] == "{scansion:any}"
    assert s.header["policy"]["strict_attribute"] == "scansion:strict"
    assert s.header["assumptions"]["any_password"] is True


@needs_shared
def test_scansion_presence_preapproval():
    s = load(SCANSION / "presence_preapproval.scs")
    assert set(s.clients) == {"Alice", "Bob"}
    assert s.clients["Alice"].jid == "preappove-a@localhost"  # sic, as the script spells it
    assert len(s.steps) == 16
    assert [st.client for st in s.steps if st.direction == "connect"] == ["Alice", "Bob"]
    # Alice pre-approves Bob before Bob has connected
    assert s.steps[3].client == "Alice" and 'type="subscribed"' in s.steps[3].xml
    assert s.steps[4].direction == "connect" and s.steps[4].client == "Bob"
    ph = s.header["placeholders"]
    assert ph["${Bob's JID}"] == {"client": "Bob", "kind": "bare", "jid": "preapprove-b@localhost"}
    assert ph["${Bob's full JID}"] == {"client": "Bob", "kind": "full", "jid": None}
    assert "${Alice's JID}" in ph
    # the script says "Bob disconnects" twice: the second is left out with a note
    assert [st.client for st in s.steps if st.direction == "disconnect"] == ["Bob", "Alice"]
    assert any("line 74: Bob disconnects but is not connected" in n for n in s.notes)
    assert s.steps[-2].xml.startswith('<iq type="result" id="roster1">')


@needs_shared
def test_scansion_vcard_temp():
    s = load(SCANSION / "vcard_temp.scs")
    assert [(st.client, st.direction) for st in s.steps] == [
        ("Romeo", "connect"),
        ("Romeo", "send"),
        ("Romeo", "recv"),
        ("Romeo", "send"),
        ("Romeo", "recv"),
        ("Juliet", "connect"),
        ("Juliet", "send"),
        ("Juliet", "recv"),
        ("Juliet", "disconnect"),
        ("Romeo", "disconnect"),
    ]
    first = s.steps[1].xml
    assert first.startswith('<iq id="lx3" type="set">') and first.endswith("</iq>")
    assert "\n\t<vCard" in first  # dedented by the script's own indentation
    assert s.steps[7].xml.startswith('<iq type="result" from="romeo@localhost" id="lx3"')
    assert set(s.header["placeholders"]) == {"${Romeo's full JID}", "${Juliet's full JID}"}


@needs_shared
def test_scansion_components_and_resources():
    s = load(SCANSION / "basic_message.scs")
    assert s.clients["Juliet's phone"].jid == "juliet@localhost/mobile"
    assert s.header["placeholders"]["${Juliet's phone's full JID}"]["jid"] == (
        "juliet@localhost/mobile"
    )
    assert load(SCANSION / "pubsub_basic.scs").header["components"] == ["pubsub.localhost"]


def test_scansion_errors_name_the_line(tmp_path):
    head = "# t\n\n[Client] Romeo\n\tjid: romeo@localhost\n\tpassword: p\n\n-----\n\n"
    with pytest.raises(UnusableLog) as e:
        load(write(tmp_path, head + "Romeo connects\n\nMercutio sends:\n\t<presence/>\n", "a.scs"))
    assert e.value.line == 11 and "Mercutio" in str(e.value)
    with pytest.raises(UnusableLog) as e:
        load(write(tmp_path, head + "Romeo sends:\n\t<presence/>\n", "b.scs"))
    assert e.value.line == 9 and "before connecting" in str(e.value)
    with pytest.raises(UnusableLog) as e:
        load(write(tmp_path, head + "Romeo connects\nRomeo sends:\n\t<presence>\n", "c.scs"))
    assert e.value.line == 11 and "unterminated" in str(e.value)
    with pytest.raises(UnusableLog) as e:
        text = head + 'Romeo connects\nRomeo sends:\n\t<message to="${Tybalt\'s JID}"/>\n'
        load(write(tmp_path, text, "d.scs"))
    assert e.value.line == 11 and "Tybalt" in str(e.value)
    with pytest.raises(UnusableLog) as e:
        load(write(tmp_path, head + "Romeo connects\nRomeo dances\n", "e.scs"))
    assert e.value.line == 10


# --- ejabberd lines ---------------------------------------------------------------------------

UNNUMBERED = """\
=INFO REPORT==== 2011-05-24 ===
RECV <stream:stream to="example.com" xmlns="jabber:client"
  xmlns:stream="http://etherx.jabber.org/streams" version="1.0">
SENT <?xml version='1.0'?><stream:stream xmlns="jabber:client"
  xmlns:stream="http://etherx.jabber.org/streams" id="1" from="example.com" version="1.0">
SENT <stream:features>
  <mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl">
    <mechanism>PLAIN</mechanism>
  </mechanisms>
</stream:features>
RECV <auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldABzZWNyZXQ=</auth>
SENT <success xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/>
"""


def test_ejabberd_unnumbered_lines_with_continuations():
    s = parse(UNNUMBERED, "x")
    assert s.format == "ejabberd"
    assert dirs(s) == ["send", "recv", "recv", "send", "recv"]
    assert [st.line for st in s.steps] == [2, 4, 6, 11, 12]
    assert s.steps[2].xml.endswith("</stream:features>")
    assert s.clients["client"].jid == "juliet@example.com"
    assert s.clients["client"].password == "secret"  # PLAIN carries it
    assert s.header["mechanism"] == "PLAIN"
    assert s.header["domains"] == ["example.com"]


def test_ejabberd_numbered_multiline_sent():
    text = (
        "  1. RECV <stream:stream to='a.example' xmlns='jabber:client'"
        " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n"
        "  2. SENT <stream:stream xmlns='jabber:client'"
        " xmlns:stream='http://etherx.jabber.org/streams' id='x' from='a.example'>\n"
        "  3. SENT <stream:features>\n"
        "  4.        <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\n"
        "  5.          <mechanism>PLAIN</mechanism>\n"
        "  6.        </mechanisms>\n"
        "  7. </stream:features>\n"
        "  8. RECV </stream:stream>\n"
    )
    s = parse(text, "x")
    assert dirs(s) == ["send", "recv", "recv", "send"]
    features = s.steps[2]
    assert features.line == 3
    assert features.xml.splitlines()[0] == "<stream:features>"
    assert features.xml.splitlines()[-1] == "</stream:features>"
    assert "4." not in features.xml and "<mechanism>PLAIN</mechanism>" in features.xml
    assert s.steps[3].xml == "</stream:stream>"


def test_ejabberd_client_side_log_is_read_the_other_way():
    text = (
        "SENT <stream:stream to='a.example' xmlns='jabber:client'"
        " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n"
        "RECV <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        "</stream:features>\n"
        "SENT <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'/>\n"
    )
    s = parse(text, "x")
    assert dirs(s) == ["send", "recv", "send"]
    assert any("client's side" in n for n in s.notes)


def test_ejabberd_erlang_debug_lines_name_connections():
    text = (
        '[debug] (tcp|<0.1.0>) Received XML on stream = <<"<stream:stream to=\\"a.example\\" '
        'xmlns=\\"jabber:client\\" xmlns:stream=\\"http://etherx.jabber.org/streams\\">">>\n'
        '[debug] (tcp|<0.2.0>) Received XML on stream = <<"<presence/>">>\n'
        '[debug] (tcp|<0.1.0>) Send XML on stream = <<"<presence from=\\"b@a.example/r\\"/>">>\n'
    )
    s = parse(text, "x")
    assert [(st.client, st.direction) for st in s.steps] == [
        ("<0.1.0>", "send"),
        ("<0.2.0>", "send"),
        ("<0.1.0>", "recv"),
    ]
    assert s.steps[0].xml.startswith('<stream:stream to="a.example"')
    assert "<0.2.0>" in s.implied_login


def test_ejabberd_log_ending_mid_element_keeps_what_came_before():
    s = parse(
        UNNUMBERED
        + "RECV <iq type='set' id='b'>\n  <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\n",
        "x",
    )
    assert len(s.steps) == 5
    assert any("ends inside an element" in n for n in s.notes)


# --- transcripts ------------------------------------------------------------------------------

RFC_STYLE = """\
Example 1. The client asks for its roster

   Some prose that explains the exchange, with a stray < in it.

   C: <iq from='juliet@example.com/balcony'
          id='bv1bs71f'
          type='get'>
        <query xmlns='jabber:iq:roster'/>
      </iq>

   The server answers:

   S: <iq id='bv1bs71f'
          to='juliet@example.com/balcony'
          type='result'>
        <query xmlns='jabber:iq:roster'>
          <item jid='romeo@example.net' subscription='both'/>
        </query>
      </iq>

   Client: <presence/>
"""


def test_transcript_with_prose_between_starts_after_login():
    s = parse(RFC_STYLE, "x")
    assert s.format == "transcript"
    assert dirs(s) == ["send", "recv", "send"]
    assert [st.line for st in s.steps] == [5, 13, 21]
    assert s.steps[1].xml.endswith("</iq>") and "romeo@example.net" in s.steps[1].xml
    assert s.implied_login == {"client"}
    assert s.header["starts_at"] == {"client": "established"}
    assert any("implied login" in n for n in s.notes)
    assert any("no password" in n for n in s.notes)
    assert s.clients["client"].jid is None


def test_transcript_label_on_every_line_and_numbered_steps():
    text = (
        "C: <stream:stream to='example.com' xmlns='jabber:client'\n"
        "C:     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n"
        "(2) 服务器应答\n"
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        " id='1' from='example.com'>\n"
        "(3) 通知客户端进行资源绑定\n"
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>\n"
        "(4) 客户端请求资源绑定\n"
        "<iq type='set' id='0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>\n"
    )
    s = parse(text, "x")
    assert dirs(s) == ["send", "recv", "recv", "send"]
    assert "\n    xmlns:stream" in s.steps[0].xml  # the second `C:` is not part of the XML
    assert s.implied_login == set()
    assert s.header["starts_at"] == {"client": "stream"}


def test_transcript_unterminated_xml_before_next_step():
    text = (
        "C: <iq type='get' id='1'>\n  <query xmlns='jabber:iq:roster'/>\nS: <iq type='result'/>\n"
    )
    with pytest.raises(UnusableLog) as e:
        parse(text, "x")
    assert e.value.line == 1 and "unterminated" in str(e.value)


# --- garbage ----------------------------------------------------------------------------------


def test_garbage_is_unusable_with_a_line(tmp_path):
    with pytest.raises(UnusableLog) as e:
        load(write(tmp_path, "hello\nthis is not a log\n<<<>>> nor XML\n"))
    assert e.value.line == 3


def test_malformed_xml_is_reported_at_its_line():
    text = "RECV <presence/>\nSENT <presence from='a@b'>\n  <status>x</stat>\n</presence>\n"
    with pytest.raises(UnusableLog) as e:
        parse(text, "x")
    assert e.value.line == 2 and "well-formed" in str(e.value)


def test_text_outside_xml_in_a_sent_block():
    with pytest.raises(UnusableLog) as e:
        parse("RECV <presence/>\nSENT <presence/> trailing words\n", "x")
    assert e.value.line == 2


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"RECV <presence/>\n\x00\x01binary", 2),
        (b"RECV <presence/>\nSENT <message>\xff</message>\n", 2),
        (b"", None),
        (b"\n\n   \n", None),
    ],
)
def test_unreadable_files(tmp_path, data, line):
    p = tmp_path / "log.bin"
    p.write_bytes(data)
    with pytest.raises(UnusableLog) as e:
        load(p)
    assert e.value.line == line


def test_missing_file():
    with pytest.raises(UnusableLog):
        load("/nonexistent/log.txt")


def test_only_bosh_is_unusable():
    text = (
        "C: <body rid='1' xmlns='http://jabber.org/protocol/httpbind' to='a.example'/>\n"
        "S: <body xmlns='http://jabber.org/protocol/httpbind' sid='s'/>\n"
    )
    with pytest.raises(UnusableLog) as e:
        parse(text, "x")
    assert e.value.line == 1 and "BOSH" in str(e.value)


def test_detect_names_the_format():
    assert detect(UNNUMBERED) == "ejabberd"
    assert detect(RFC_STYLE) == "transcript"
    assert detect("[Client] A\n\tjid: a@b\n---\nA connects\n") == "scansion"


@needs_shared
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("openfire-s2s-dialback.txt", "server-to-server"),
        ("openfire-connection-manager-protocol.txt", "connection-manager"),
    ],
)
def test_seeds_that_are_not_c2s_are_refused_with_the_reason(name, why):
    with pytest.raises(UnusableLog) as e:
        load(SEEDS / name)
    assert why in str(e.value) and e.value.line


def test_ejabberd_element_split_across_socket_reads():
    text = (
        "RECV <iq type='get' id='r1'><query xmlns='jabber:iq:roster'\n"
        "RECV /></iq>\n"
        "SENT <iq type='result' id='r1'/>\n"
    )
    s = parse(text, "x")
    assert dirs(s) == ["send", "recv"]
    assert s.steps[0].xml == "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'\n/></iq>"
    with pytest.raises(UnusableLog) as e:
        parse("RECV <presence/>\nRECV <iq type='get' id='r1'>\nSENT <iq type='result'/>\n", "x")
    assert e.value.line == 2 and "unterminated" in str(e.value)
