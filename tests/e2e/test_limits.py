"""The [limits] table, each limit set low on a node of the test's own: sessions per account,
connections per address, the per-connection byte rate, authentication failures, stanza size."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import USERS
from tests.support.wire import CLIENT, SASL, Wire, bound_jid, failure_condition, stanza_error
from tests.support.xmpp_client import login


@pytest.fixture
def wires():
    """Raw connections opened by the test, closed after it."""
    opened: list[Wire] = []

    def open_wire(server, **options) -> Wire:
        wire = Wire(server, **options)
        opened.append(wire)
        return wire

    yield open_wire
    for wire in opened:
        wire.close()


def logged_in(wires, node, user: str, resource: str | None = None, **options) -> Wire:
    wire = wires(node, **options)
    wire.login(user, USERS[user], resource)
    return wire


def chat(sender: Wire, to: str, body: str) -> None:
    sender.send(f"<message to='{to}' type='chat' id='m'><body>{body}</body></message>")


def body_of(wire: Wire) -> str | None:
    message = wire.next()
    assert message.tag == f"{{{CLIENT}}}message", message.tag
    return message.findtext(f"{{{CLIENT}}}body")


# --- max_sessions_per_account ------------------------------------------------------------------


def test_third_resource_is_refused_with_resource_constraint(configured_server, wires):
    node = configured_server(limits="max_sessions_per_account = 2")
    one = logged_in(wires, node, "alice", "one")
    two = logged_in(wires, node, "alice", "two")

    three = wires(node)
    three.secure()
    assert three.plain("alice", USERS["alice"]).tag == f"{{{SASL}}}success"
    three.restart()
    refused = three.bind("three")
    assert refused.get("type") == "error"
    assert stanza_error(refused) == ("wait", "resource-constraint")  # RFC 6120 §7.6.2.1

    chat(one, "alice@localhost/two", "still here?")
    assert body_of(two) == "still here?"
    chat(two, "alice@localhost/one", "yes")
    assert body_of(one) == "yes"


def test_rebinding_a_bound_resource_at_the_limit_replaces_it(configured_server, wires):
    node = configured_server(limits="max_sessions_per_account = 2")
    one = logged_in(wires, node, "alice", "one")
    two = logged_in(wires, node, "alice", "two")

    again = wires(node)
    again.secure()
    again.plain("alice", USERS["alice"])
    again.restart()
    assert again.bind("three").get("type") == "error"  # at the limit
    replaced = again.bind("one")  # the same stream may try another resource
    assert bound_jid(replaced) == "alice@localhost/one"
    assert one.stream_error() == "conflict"

    chat(again, "alice@localhost/two", "the new one")
    assert body_of(two) == "the new one"


def test_a_closed_session_frees_its_place(configured_server, wires):
    node = configured_server(limits="max_sessions_per_account = 1")
    first = logged_in(wires, node, "bob", "first")
    first.close()
    second = logged_in(wires, node, "bob", "second")
    assert second.features is not None


# --- max_connections_per_ip --------------------------------------------------------------------


def test_fourth_connection_from_one_address_is_refused(configured_server, wires):
    node = configured_server(limits="max_connections_per_ip = 3")
    alice = logged_in(wires, node, "alice", "a")
    bob = logged_in(wires, node, "bob", "b")
    carol = logged_in(wires, node, "carol", "c")

    fourth = wires(node)
    assert fourth.stream_error() == "policy-violation"

    chat(alice, "bob@localhost/b", "you are still on")
    assert body_of(bob) == "you are still on"
    chat(carol, "alice@localhost/a", "me too")
    assert body_of(alice) == "me too"

    carol.close()
    again = logged_in(wires, node, "carol", "again")
    chat(again, "bob@localhost/b", "back")
    assert body_of(bob) == "back"


def test_connection_limit_on_the_direct_tls_port(configured_server, wires):
    node = configured_server(limits="max_connections_per_ip = 1")
    logged_in(wires, node, "alice", "a", direct=True)
    second = wires(node, direct=True)  # refused before TLS is up: the error waits for it
    assert second.stream_error() == "policy-violation"


def test_loopback_may_be_exempt_from_the_connection_limit(configured_server, wires):
    node = configured_server(limits="max_connections_per_ip = 1\nexempt_loopback = true")
    alice = logged_in(wires, node, "alice", "a")
    bob = logged_in(wires, node, "bob", "b")
    chat(alice, "bob@localhost/b", "both of us from 127.0.0.1")
    assert body_of(bob) == "both of us from 127.0.0.1"


# --- max_bytes_per_second ----------------------------------------------------------------------


def test_a_fast_sender_is_slowed_not_dropped(configured_server, run):
    node = configured_server(limits="max_bytes_per_second = 2000")
    bodies = [f"{i:02d}:" + "x" * 2000 for i in range(10)]

    async def scenario():
        sender = await login(node, "alice", resource="flood")
        receiver = await login(node, "bob", resource="sink")
        calm = await login(node, "carol", resource="calm")

        for body in bodies:  # ~20 KB at once: ten seconds' worth at this rate
            sender.send_message(mto=receiver.boundjid, mbody=body, mtype="chat")
        calm.send_message(mto=receiver.boundjid, mbody="just one line", mtype="chat")

        flooded, calm_lines = [], []
        while len(flooded) < len(bodies) or not calm_lines:
            message = await receiver.next_message(timeout=60)
            from_calm = message["from"] == calm.boundjid
            (calm_lines if from_calm else flooded).append(message["body"])
        assert flooded == bodies  # all of it, in order
        assert calm_lines == ["just one line"]
        assert not sender.gone.done() and sender.stream_errors == []
        for client in (sender, receiver, calm):
            await client.close()

    run(scenario(), timeout=120)


def test_rate_limit_does_not_hold_back_other_connections(configured_server, run):
    node = configured_server(limits="max_bytes_per_second = 2000")

    async def scenario():
        flood = await login(node, "alice", resource="flood")
        sink = await login(node, "alice", resource="sink")
        bob = await login(node, "bob", resource="calm")
        carol = await login(node, "carol", resource="calm")
        for i in range(10):
            flood.send_message(mto=sink.boundjid, mbody=f"{i}" + "y" * 2000, mtype="chat")

        bob.send_message(mto=carol.boundjid, mbody="ping", mtype="chat")
        assert (await carol.next_message(timeout=30))["body"] == "ping"
        carol.send_message(mto=bob.boundjid, mbody="pong", mtype="chat")
        assert (await bob.next_message(timeout=30))["body"] == "pong"

        got = [(await sink.next_message(timeout=60))["body"][0] for _ in range(10)]
        assert got == [str(i) for i in range(10)]
        for client in (flood, sink, bob, carol):
            await client.close()

    run(scenario(), timeout=120)


# --- max_auth_failures -------------------------------------------------------------------------


def test_second_auth_failure_closes_the_stream_when_the_limit_is_two(configured_server, wires):
    node = configured_server(limits="max_auth_failures = 2")
    wire = wires(node)
    wire.secure()
    assert failure_condition(wire.plain("alice", "wrong")) == "not-authorized"
    assert failure_condition(wire.plain("alice", "wrong again")) == "not-authorized"
    assert wire.stream_error() == "policy-violation"


def test_failures_below_the_limit_leave_the_stream_open(configured_server, wires):
    node = configured_server(limits="max_auth_failures = 2")
    wire = wires(node)
    wire.secure()
    assert failure_condition(wire.plain("alice", "wrong")) == "not-authorized"
    assert wire.plain("alice", USERS["alice"]).tag == f"{{{SASL}}}success"


# --- max_stanza_bytes --------------------------------------------------------------------------

LIMIT = 10_000  # the smallest a server may set (RFC 6120 §13.12)


def message_of_size(size: int, to: str) -> bytes:
    head = f"<message to='{to}' type='chat'><body>".encode()
    tail = b"</body></message>"
    return head + b"z" * (size - len(head) - len(tail)) + tail


def test_a_stanza_of_exactly_the_limit_is_accepted(configured_server, wires):
    node = configured_server(limits=f"max_stanza_bytes = {LIMIT}")
    sender = logged_in(wires, node, "alice", "big")
    receiver = logged_in(wires, node, "bob", "big")
    for size in (LIMIT - 1, LIMIT):
        stanza = message_of_size(size, "bob@localhost/big")
        assert len(stanza) == size
        sender.send(stanza)
        assert body_of(receiver) == "z" * stanza.count(b"z")


def test_one_byte_over_the_limit_is_a_policy_violation(configured_server, wires):
    node = configured_server(limits=f"max_stanza_bytes = {LIMIT}")
    sender = logged_in(wires, node, "alice", "big")
    sender.send(message_of_size(LIMIT + 1, "bob@localhost/big"))
    assert sender.stream_error() == "policy-violation"
