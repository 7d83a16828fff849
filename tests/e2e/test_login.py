"""Logging in with slixmpp over real sockets: every SASL mechanism, STARTTLS and direct TLS."""

from __future__ import annotations

import pytest

from tests.support.xmpp_client import connect, login

MECHANISMS = ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_login_with_each_mechanism(server, run, mechanism, direct):
    async def scenario():
        client = await login(server, "alice", mechanism=mechanism, direct=direct)
        assert client.boundjid.bare == "alice@localhost"
        rows = server.admin("sessions", user="alice@localhost")["result"]
        assert any(
            r["sasl"] == mechanism and r["state"] in ("wait_for_session", "session_established")
            for r in rows
        )
        await client.close()

    run(scenario())


@pytest.mark.parametrize(
    "mechanism", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"]
)
def test_login_with_channel_binding_over_tls12(server, run, mechanism):
    """slixmpp binds with tls-unique, which exists on TLS 1.2 only."""

    async def scenario():
        client = await login(server, "bob", mechanism=mechanism, tls12=True)
        rows = server.admin("sessions", user="bob@localhost")["result"]
        assert any(r["sasl"] == mechanism and r["tls"] == "TLSv1.2" for r in rows)
        await client.close()

    run(scenario())


def test_wrong_password_is_refused(server, run):
    async def scenario():
        client = await connect(server, "alice", password="not-her-password")
        assert client.started.result() is False
        await client.close()

    run(scenario())


def test_unknown_user_is_refused(server, run):
    async def scenario():
        client = await connect(server, "mallory", password="whatever")
        assert client.started.result() is False
        await client.close()

    run(scenario())


def test_server_generates_a_resource_when_none_is_asked(server, run):
    async def scenario():
        client = await login(server, "carol")
        assert client.boundjid.resource.startswith("xmppd-")
        await client.close()

    run(scenario())


def test_client_chosen_resource_is_bound(server, run):
    async def scenario():
        client = await login(server, "carol", resource="laptop")
        assert client.boundjid.full == "carol@localhost/laptop"
        await client.close()

    run(scenario())


def test_same_full_jid_replaces_old_session_with_conflict(server, run):
    async def scenario():
        old = await login(server, "alice", resource="phone")
        new = await login(server, "alice", resource="phone")
        await old.gone
        assert "conflict" in old.stream_errors
        assert new.boundjid.full == "alice@localhost/phone"
        reply = await new.plugin["xep_0199"].ping("localhost", timeout=5)
        assert reply is not None
        await new.close()

    run(scenario())
