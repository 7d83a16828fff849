"""Prometheus metrics: off unless [metrics] port is set; /metrics shows the sessions by state,
the logins, and what became of the stanzas that the test made."""

from __future__ import annotations

import pytest

from tests.support.im import close_all, error_condition, message, online
from tests.support.metrics import scrape, value
from tests.support.server import free_port, make_server
from tests.support.xmpp_client import connect

from .conftest import USERS


@pytest.fixture
def metered(tmp_path):
    port = free_port()
    node = make_server(tmp_path, extra_config=f"[metrics]\nport = {port}\n")
    node.add_users(**USERS)
    node.start()
    node.metrics_port = port
    yield node
    node.stop()
    assert not node.unexpected_tracebacks(), node.unexpected_tracebacks()[0]


def test_metrics_show_what_the_sessions_did(metered, run):
    port = metered.metrics_port
    before = scrape(port)
    assert value(before, "xmppd_info", node=before and next(
        dict(ls)["node"] for (n, ls) in before if n == "xmppd_info")) == 1

    async def scenario():
        alice = await online(metered, "alice", "desk")
        bob = await online(metered, "bob", "phone")
        wrong = await connect(metered, "carol", password="not-hers")
        assert not wrong.started.result()
        await wrong.close()
        alice.send_message(mto="bob@localhost/phone", mbody="hi bob", mtype="chat")
        await bob.inbox.expect(message("hi bob"))
        alice.send_message(mto="carol@localhost", mbody="for later", mtype="chat")  # offline
        alice.send_message(mto="nobody@elsewhere.example", mbody="x", mtype="chat")  # bounced
        bounce = await alice.inbox.expect(message(kind="error"))
        assert error_condition(bounce) == "remote-server-not-found"
        now = scrape(port)
        assert value(now, "xmppd_sessions", state="session_established") == 2
        logins = value(now, "xmppd_logins_total") - value(before, "xmppd_logins_total")
        assert logins == 2
        mechanism = next(dict(ls)["mechanism"] for (n, ls), v in now.items()
                         if n == "xmppd_logins_total" and v)  # fmt: skip
        assert mechanism.startswith("SCRAM-SHA-")
        failed = value(now, "xmppd_login_failures_total") - value(
            before, "xmppd_login_failures_total")
        assert failed >= 1  # (slixmpp tries the next mechanism after each failure)
        for outcome, at_least in (("routed", 3), ("offline", 1), ("bounced", 1)):
            grew = (value(now, "xmppd_stanzas_total", outcome=outcome)
                    - value(before, "xmppd_stanzas_total", outcome=outcome))  # fmt: skip
            assert grew >= at_least, outcome
        assert value(now, "xmppd_stanzas_total", outcome="relayed") == 0, "one node relays none"
        assert ("xmppd_queue_depth", frozenset({("node", dict(next(
            ls for (n, ls) in now if n == "xmppd_info"))["node"]), ("pool", "storage")})) in now
        await close_all(alice, bob)

    run(scenario())

