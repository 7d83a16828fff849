"""Prosody's 50 scansion scripts replayed in-memory into xmppd (issue 7): the suite says how
many pass, and those covering what is built must. docs/replay-formats.md lists why the others
fail (features a later issue builds)."""

from __future__ import annotations

import pytest

from tests.support.shared import SHARED
from xmppd.replay.run import Options, load, replay

SCANSION = SHARED / "conformance" / "scansion"
needs_scansion = pytest.mark.skipif(not SCANSION.is_dir(), reason="../shared is not present")

# What the core and IM issues built: these must match.
REQUIRED = (
    "basic",
    "basic_message",
    "basic_roster",
    "presence_preapproval",
    "keep_full_sub_req",
    "issue1121",
    "disco_self",
    "vcard_temp",
    "version",
    "uptime",
    "lastactivity",
)


def run_all() -> dict[str, bool]:
    results = {}
    for path in sorted(SCANSION.glob("*.scs")):
        results[path.stem] = replay(load(path), Options()).ok
    return results


@pytest.fixture(scope="module")
def results() -> dict[str, bool]:
    return run_all()


@needs_scansion
def test_scansion_scripts_pass_count_is_reported(results, capsys):
    passed = sorted(name for name, ok in results.items() if ok)
    with capsys.disabled():
        print(
            f"\nscansion in-memory: {len(passed)}/{len(results)} pass "
            f"({', '.join(passed)}); failing: "
            f"{', '.join(sorted(n for n, ok in results.items() if not ok))}"
        )
    assert len(results) == 50


@needs_scansion
@pytest.mark.parametrize("name", REQUIRED)
def test_required_scansion_script_matches(name):
    report = replay(load(SCANSION / f"{name}.scs"), Options())
    assert report.ok, report.render("diff")


@needs_scansion
def test_version_matches_only_through_the_declared_software_tolerance():
    script = load(SCANSION / "version.scs")
    report = replay(script, Options())
    assert any("'Prosody' ~ 'xmppd'" in t for c in report.clients for t in c.tolerated())
    script = load(SCANSION / "version.scs")
    script.header["tolerate"] = []
    assert not replay(script, Options()).ok


RECONNECT = """# a capture carried into a later send, and a client that comes back
[Client] Romeo
\tjid: romeo@localhost/garden
\tpassword: password

[Client] Juliet
\tjid: juliet@localhost
\tpassword: password

-----

Romeo connects

Romeo sends:
\t<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>

Romeo receives:
\t<iq type='result' id='v1'><query xmlns='jabber:iq:version'>
\t\t<version>{scansion:capture:VER}</version></query></iq>

Juliet connects

Juliet sends:
\t<presence/>

Juliet receives:
\t<presence from="${Juliet's full JID}"/>

Romeo sends:
\t<message to="${Juliet's JID}" type="chat"><body>{scansion:capture:VER}</body></message>

Juliet receives:
\t<message from="${Romeo's full JID}"><body>{scansion:capture:VER}</body></message>

Juliet disconnects

Juliet connects

Juliet sends:
\t<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>

Juliet receives:
\t<iq type='result' id='p1'/>

Juliet disconnects

Romeo disconnects
"""


def test_captures_placeholders_and_a_client_that_reconnects():
    from xmppd.replay.importers import parse

    report = replay(parse(RECONNECT, source="reconnect.scs"), Options())
    assert report.ok, report.render("diff")
    juliet = next(c for c in report.clients if c.name == "Juliet")
    logins = [t for t in juliet.transitions if t[0] == "wait_for_session" != t[2]]
    assert len(logins) == 2  # two connections, two implied logins
    romeo = next(c for c in report.clients if c.name == "Romeo")
    version = romeo.pairs[0].actual.el.findtext(".//{jabber:iq:version}version")
    message = next(p.actual.el for p in juliet.pairs if "message" in p.actual.raw)
    assert message.findtext("{jabber:client}body") == version  # the capture, sent on


def test_a_capture_that_disagrees_is_a_mismatch():
    from xmppd.replay.importers import parse

    wrong = RECONNECT.replace("<body>{scansion:capture:VER}</body></message>\n\nJuliet",
                              "<body>other</body></message>\n\nJuliet", 1)  # fmt: skip
    assert not replay(parse(wrong, source="wrong.scs"), Options()).ok
