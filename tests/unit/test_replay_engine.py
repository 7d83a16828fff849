"""The trace format's codec, the XML-meaning comparison, and the in-memory replay world."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from fsm import tracefmt as tf
from storage.im import RosterItem
from tests.support.shared import SHARED
from xmpp.jid import JID
from xmppd.config import ConfigError, load_config
from xmppd.replay import compare as cmp
from xmppd.replay.classes import resolve
from xmppd.replay.run import Options, replay
from xmppd.replay.script import Client, Script, Step


def test_bytes_survive_one_line():
    data = b"<message>\n\tline\\two\r\n\xff\xfe</message>"
    line = tf.escape(data)
    assert "\n" not in line and line.startswith("<message>")
    assert tf.unescape(line) == data


def test_values_round_trip_through_the_codec():
    value = (
        "1",
        [RosterItem(jid="bob@localhost", name="Bob", groups=("A",))],
        JID("alice", "localhost", "home"),
        frozenset({"a", "b"}),
        b"\x00salt",
        {"k": None, 3: 1.5},
        ValueError("boom"),
    )
    back = tf.loads(tf.dumps(value), resolve)
    assert back[:6] == value[:6]
    assert isinstance(back[6], ValueError) and back[6].args == ("boom",)
    el = tf.loads(tf.dumps(etree.fromstring("<a xmlns='x'><b c='d'/></a>")))
    assert etree.tostring(el) == b'<a xmlns="x"><b c="d"/></a>'


def test_the_codec_names_only_project_classes():
    with pytest.raises(ValueError):
        tf.decode({"$dc": "os:system", "f": {}}, resolve)
    with pytest.raises(ValueError, match="no resolver"):
        tf.decode({"$dc": "storage.im:RosterItem", "f": {}})  # fsm/ itself imports nothing


def one(text: str) -> cmp.Item:
    (item,) = cmp.items(text)
    return item


def test_meaning_ignores_attribute_order_prefixes_and_whitespace():
    a = one("<iq type='result' id='1'><q:query xmlns:q='jabber:iq:roster'>\n  </q:query></iq>")
    b = one("<iq xmlns='jabber:client' id='1' type='result'><query xmlns='jabber:iq:roster'/></iq>")
    assert cmp.match(a, b, cmp.Policy()).ok


def test_placeholders_bind_once_and_must_agree():
    policy = cmp.Policy()
    exp = one("<message to='${Romeo}' from='{scansion:any}'/>")
    assert cmp.match(exp, one("<message to='romeo@localhost/a' from='x'/>"), policy).ok
    assert not cmp.match(exp, one("<message to='romeo@localhost/b' from='x'/>"), policy).ok


def test_tolerances_are_reported_never_silent():
    policy = cmp.Policy(tolerate=frozenset({"stream-id"}))
    exp = one("<stream:stream from='localhost' id='abc'>")
    got = one("<stream:stream from='localhost' id='xyz'>")
    outcome = cmp.match(exp, got, policy)
    assert outcome.ok and "stream id is random" in outcome.tolerated[0]
    assert not cmp.match(exp, got, cmp.Policy()).ok


def test_any_password_is_refused_off_loopback(tmp_path):
    config = tmp_path / "x.toml"
    config.write_text(
        f"[server]\ndata_dir = '{tmp_path}'\n[testing]\nany_password = true\n"
        "[[listeners]]\naddress = '0.0.0.0'\nport = 5222\n"
    )
    with pytest.raises(ConfigError, match="testing.any_password: refused"):
        load_config(config)
    config.write_text(config.read_text().replace("0.0.0.0", "127.0.0.1"))
    assert load_config(config).testing.any_password


def transcript(*steps: tuple[str, str, str], implied: bool = False) -> Script:
    script = Script(source="test", format="transcript")
    script.clients["C"] = Client("C", jid="juliet@localhost/balcony")
    script.steps = [Step(i + 1, who, d, x) for i, (who, d, x) in enumerate(steps)]
    if implied:
        script.implied_login.add("C")
    return script


def test_a_log_without_password_logs_in_on_the_recorded_outcome():
    header = "<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='localhost' version='1.0'>"
    script = transcript(
        ("C", "send", header % cmp.STREAM_NS),
        ("C", "recv", "<stream:stream from='localhost' id='x1' version='1.0'>"),
        (
            "C",
            "recv",
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            "<mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>",
        ),
        ("C", "send", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>"),
        ("C", "recv", "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
    )
    report = replay(script, Options())
    assert report.ok, report.render("diff")
    assert any("recorded outcome" in n and "DIGEST-MD5" in n for n in report.notes)
    assert report.clients[0].states[-1] == "wait_for_stream"
    assert report.clients[0].tolerated()  # stream id and features, shown as tolerated


def test_a_log_that_starts_after_login_and_a_wrong_answer_fails():
    script = transcript(
        ("C", "send", "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"),
        ("C", "recv", "<iq type='result' id='p1' to='juliet@localhost/balcony'/>"),
        ("C", "send", "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>"),
        ("C", "recv", "<iq type='error' id='p2'/>"),
        implied=True,
    )
    report = replay(script, Options())
    assert not report.ok
    text = report.render("diff")
    assert "iq/@type: the log has 'error', xmppd sent 'result'" in text
    assert report.clients[0].pairs[0].outcome.ok


# --- the ejabberd seeds replayed into xmppd (issue 7's acceptance) ----------------------------

SEEDS = SHARED / "seeds"
needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds is not present")

LOGIN_AFTER_TLS = [
    "wait_for_stream",
    "wait_for_feature_request",
    "wait_for_stream",  # STARTTLS: the stream restarts
    "wait_for_feature_request",
]
BOUND = ["wait_for_stream", "wait_for_bind", "wait_for_session", "session_established"]


def _tolerated_kinds(report) -> set[str]:
    return {t.split(":")[0].split("/")[0] for c in report.clients for t in c.tolerated()}


@needs_seeds
def test_ejabberd_digest_md5_seed_replays_through_session_on_the_recorded_outcome():
    from xmppd.replay.run import load

    report = replay(load(SEEDS / "ejabberd-c2s-fsm-login.txt"), Options())
    assert report.ok, report.render("diff")
    (client,) = report.clients
    assert client.states == [*LOGIN_AFTER_TLS, "wait_for_sasl_response", *BOUND]
    notes = "\n".join(report.notes)
    assert "authentication (DIGEST-MD5) ran on the recorded outcome" in notes
    assert "answered as 'kinglong'" in notes  # the world serves the log's domain
    assert "STARTTLS offered, not required" in notes
    tolerated = "\n".join(client.tolerated())
    for documented in ("stream id is random", "mechanisms", "compression", "iq-auth",
                       "'to' of a stanza", "echoing the request's empty payload"):  # fmt: skip
        assert documented in tolerated
    assert "bind/jid" not in tolerated  # what both sides say is compared, not tolerated


@needs_seeds
def test_ejabberd_plain_tcp_seed_replays_through_session():
    from xmppd.replay.run import load

    report = replay(load(SEEDS / "ejabberd-login-tcp-and-bosh.txt"), Options())
    assert report.ok, report.render("diff")
    (client,) = report.clients
    assert client.states == [*LOGIN_AFTER_TLS, *BOUND]
    assert any("authentication (PLAIN) ran on the recorded outcome" in n for n in report.notes)
    assert "features/c/@node" in "\n".join(client.tolerated())


@needs_seeds
def test_seed_without_tolerances_is_a_mismatch():
    """The tolerances are what makes the seeds match: declared, never silent."""
    from xmppd.replay.run import load

    script = load(SEEDS / "ejabberd-c2s-fsm-login.txt")
    script.header["tolerate"] = ["stream-id", "features", "header-attrs", "caps"]
    report = replay(script, Options())
    assert not report.ok
    problems = "\n".join(p for c in report.clients for pr in c.pairs for p in pr.outcome.problems)
    assert "iq/@to" in problems and "missing <session" in problems


def test_starttls_as_the_log_has_it():
    header = "<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='localhost' version='1.0'>"
    plain = transcript(
        ("C", "send", header % cmp.STREAM_NS),
        ("C", "recv", "<stream:stream from='localhost' id='x1' version='1.0'>"),
    )
    report = replay(plain, Options())
    assert any("never negotiates TLS" in n for n in report.notes)
    offered = report.clients[0].pairs[-1].actual  # past the log's end: the features
    assert offered is not None and b"starttls" not in offered.raw.encode()
    required = transcript(
        ("C", "send", header % cmp.STREAM_NS),
        ("C", "recv", "<stream:stream from='localhost' id='x1' version='1.0'>"),
        (
            "C",
            "recv",
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            "<required/></starttls></stream:features>",
        ),  # fmt: skip
    )
    assert replay(required, Options()).ok


@needs_seeds
def test_xmppctl_replay_exit_status_is_0_1_or_2_never_a_traceback(tmp_path):
    import argparse

    from xmppd.replay.command import MATCH, MISMATCH, UNUSABLE, run

    def status(path: Path) -> tuple[str, int]:
        args = argparse.Namespace(file=str(path), until=None, domain_map=None, account=None,
                                  live=None, insecure=False, show=None)  # fmt: skip
        return run(args)

    assert status(SEEDS / "ejabberd-c2s-fsm-login.txt")[1] == MATCH
    scansion = SEEDS.parent / "conformance" / "scansion"
    assert status(scansion / "muc_password.scs")[1] == MISMATCH
    broken = tmp_path / "broken.scs"
    broken.write_text("[Client] A\n\tjid: a@localhost\n-----\nA connects\nA sends:\n\t<iq><x\n")
    text, code = status(broken)
    assert code == UNUSABLE and "line 6" in text and "Traceback" not in text
