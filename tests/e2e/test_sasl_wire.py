"""SASL on the wire: SCRAM-*-PLUS with channel binding (RFC 5802, RFC 5929, RFC 9266,
XEP-0440), downgrade protection, PLAIN only under TLS, and ANONYMOUS (RFC 4505) per host."""

from __future__ import annotations

import secrets

import pytest

from tests.e2e.conftest import USERS
from tests.support.scram_client import ScramClient
from tests.support.server import free_port
from tests.support.wire import SASL, StreamEnded, Wire, bound_jid, failure_condition
from tests.support.xmpp_client import Client, client_context, login
from xmpp.sasl import tls_server_end_point

SUCCESS = f"{{{SASL}}}success"
TRANSPORTS = [False, True]
TRANSPORT_IDS = ["starttls", "direct-tls"]


def nonce() -> str:
    return secrets.token_urlsafe(18)


def scram(hash_name: str, user: str = "alice", **options) -> ScramClient:
    password = options.pop("password", USERS.get(user, "x"))
    return ScramClient(hash_name, user, password, nonce=nonce(), **options)


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


# --- SCRAM-*-PLUS that work --------------------------------------------------------------------


@pytest.mark.parametrize("direct", TRANSPORTS, ids=TRANSPORT_IDS)
@pytest.mark.parametrize("hash_name", ["SHA-256", "SHA-512"])
def test_scram_plus_binds_to_the_server_certificate_over_tls13(server, wires, hash_name, direct):
    wire = wires(server, direct=direct, tls="1.3")
    wire.secure()
    assert wire.tls_version() == "TLSv1.3"
    mechanism = f"SCRAM-{hash_name}-PLUS"
    assert mechanism in wire.mechanisms()

    cb_data = tls_server_end_point(wire.server_certificate())
    client = scram(hash_name, cb_type="tls-server-end-point", cb_data=cb_data)
    answer, server_verified = wire.scram(mechanism, client)

    assert answer.tag == SUCCESS, failure_condition(answer)
    assert server_verified, "the server's v= does not match the client's own computation"
    wire.restart()
    assert bound_jid(wire.bind("wire")) == "alice@localhost/wire"
    rows = server.admin("sessions", user="alice@localhost")["result"]
    assert any(r["jid"] == "alice@localhost/wire" and r["sasl"] == mechanism for r in rows)


def test_scram_sha1_plus_binds_to_tls_unique_over_tls12(server, wires):
    wire = wires(server, tls="1.2")
    wire.secure()
    assert wire.tls_version() == "TLSv1.2"

    client = scram("SHA-1", "bob", cb_type="tls-unique", cb_data=wire.tls_unique())
    answer, server_verified = wire.scram("SCRAM-SHA-1-PLUS", client)

    assert answer.tag == SUCCESS, failure_condition(answer)
    assert server_verified
    wire.restart()
    assert bound_jid(wire.bind("tls12")) == "bob@localhost/tls12"


# --- what the features promise ----------------------------------------------------------------


@pytest.mark.parametrize("direct", TRANSPORTS, ids=TRANSPORT_IDS)
def test_features_under_tls13_offer_plus_and_tls_server_end_point_only(server, wires, direct):
    wire = wires(server, direct=direct, tls="1.3")
    wire.secure()
    offered = wire.mechanisms()
    for hash_name in ("SHA-1", "SHA-256", "SHA-512"):
        assert f"SCRAM-{hash_name}-PLUS" in offered
    assert wire.channel_binding_types() == ["tls-server-end-point"]  # XEP-0440


def test_features_under_tls12_add_tls_unique(server, wires):
    wire = wires(server, tls="1.2")
    wire.secure()
    assert "SCRAM-SHA-512-PLUS" in wire.mechanisms()
    assert sorted(wire.channel_binding_types()) == ["tls-server-end-point", "tls-unique"]


# --- channel binding that must fail ------------------------------------------------------------


@pytest.mark.parametrize("cb_type", ["tls-server-end-point", "tls-unique"])
def test_wrong_channel_binding_data_is_not_authorized(server, wires, cb_type):
    wire = wires(server, tls="1.2")
    wire.secure()
    client = scram("SHA-256", cb_type=cb_type, cb_data=secrets.token_bytes(32))
    answer, _ = wire.scram("SCRAM-SHA-256-PLUS", client)
    assert failure_condition(answer) == "not-authorized"


def test_channel_binding_of_another_certificate_is_not_authorized(server, wires):
    """The hash must be of the certificate this connection saw, so a man in the middle with
    his own certificate cannot relay the exchange."""
    wire = wires(server, tls="1.3")
    wire.secure()
    other = tls_server_end_point(wire.server_certificate())[::-1]
    client = scram("SHA-512", cb_type="tls-server-end-point", cb_data=other)
    answer, _ = wire.scram("SCRAM-SHA-512-PLUS", client)
    assert failure_condition(answer) == "not-authorized"


def test_client_saying_y_while_plus_is_offered_is_refused(server, wires):
    """RFC 5802 §6: 'y' means "I support binding but think the server does not"; the server
    did offer -PLUS, so someone stripped it: a downgrade."""
    wire = wires(server, tls="1.3")
    wire.secure()
    assert "SCRAM-SHA-256-PLUS" in wire.mechanisms()
    client = scram("SHA-256", cb_type=None, cb_data=b"", gs2_flag="y")
    answer, _ = wire.scram("SCRAM-SHA-256", client)
    assert failure_condition(answer) == "not-authorized"


def test_client_saying_y_is_accepted_where_plus_is_not_offered(configured_server, wires):
    node = configured_server(host='sasl_mechanisms = ["SCRAM-SHA-256", "PLAIN"]')
    wire = wires(node, tls="1.3")
    wire.secure()
    assert wire.mechanisms() == ["SCRAM-SHA-256", "PLAIN"]
    assert wire.channel_binding_types() == ["tls-server-end-point"]
    client = scram("SHA-256", cb_type=None, cb_data=b"", gs2_flag="y")
    answer, server_verified = wire.scram("SCRAM-SHA-256", client)
    assert answer.tag == SUCCESS, failure_condition(answer)
    assert server_verified


def test_tls_unique_on_tls13_is_refused(server, wires):
    """RFC 9266: tls-unique is not defined for TLS 1.3 (tls-exporter replaces it)."""
    wire = wires(server, tls="1.3")
    wire.secure()
    client = scram("SHA-256", cb_type="tls-unique", cb_data=wire.tls_unique() or b"\0" * 12)
    answer, _ = wire.scram("SCRAM-SHA-256-PLUS", client)
    assert failure_condition(answer) is not None


def test_plus_mechanism_without_channel_binding_is_refused(server, wires):
    wire = wires(server, tls="1.3")
    wire.secure()
    client = scram("SHA-256", cb_type=None, cb_data=b"")
    answer, _ = wire.scram("SCRAM-SHA-256-PLUS", client)
    assert failure_condition(answer) is not None


# --- PLAIN only under TLS ------------------------------------------------------------------------


def test_plain_is_not_offered_before_tls_on_an_optional_starttls_listener(configured_server, wires):
    port = free_port()
    node = configured_server(
        extra_config=f'[[listeners]]\naddress = "127.0.0.1"\nport = {port}\n'
        'tls = "starttls-optional"\n'
    )
    wire = wires(node, port=port)
    features = wire.open()
    starttls = features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls")
    assert starttls is not None and len(starttls) == 0  # offered, not <required/>
    before = wire.mechanisms()
    assert "PLAIN" not in before
    assert not [m for m in before if m.endswith("-PLUS")]  # nothing to bind to yet
    assert "SCRAM-SHA-256" in before
    assert failure_condition(wire.plain("alice", USERS["alice"])) == "invalid-mechanism"

    wire.starttls()
    assert "PLAIN" in wire.mechanisms()
    assert wire.plain("alice", USERS["alice"]).tag == SUCCESS


# --- ANONYMOUS -----------------------------------------------------------------------------------


def test_anonymous_is_off_by_default(server, wires):
    wire = wires(server)
    wire.secure()
    assert "ANONYMOUS" not in wire.mechanisms()
    assert failure_condition(wire.auth("ANONYMOUS", None)) == "invalid-mechanism"


def test_anonymous_host_logs_in_with_a_server_made_jid(configured_server, wires):
    node = configured_server(host="anonymous = true")
    wire = wires(node)
    wire.secure()
    assert "ANONYMOUS" in wire.mechanisms()
    assert wire.auth("ANONYMOUS", b"trace").tag == SUCCESS
    wire.restart()
    jid = bound_jid(wire.bind())
    local, _, rest = jid.partition("@")
    assert local and rest.startswith("localhost/")
    assert local not in USERS

    other = wires(node)
    other.secure()
    other.auth("ANONYMOUS", None)
    other.restart()
    assert bound_jid(other.bind()).partition("/")[0] != jid.partition("/")[0]


def test_anonymous_user_chats_with_a_registered_one(configured_server, run):
    node = configured_server(host="anonymous = true")

    async def scenario():
        guest = Client(node.domain, "", mechanism="ANONYMOUS")
        guest.ssl_context = client_context(node)
        guest.enable_direct_tls = False
        guest.enable_plaintext = False
        guest.reconnect_max_attempts = 0
        guest.connect("127.0.0.1", node.starttls_port)
        assert await guest.started, "ANONYMOUS login failed"
        assert guest.boundjid.user and guest.boundjid.domain == "localhost"
        alice = await login(node, "alice")

        guest.send_message(mto=alice.boundjid, mbody="hello from nowhere", mtype="chat")
        got = await alice.next_message()
        assert got["body"] == "hello from nowhere"
        assert got["from"] == guest.boundjid

        alice.send_message(mto=got["from"], mbody="welcome", mtype="chat")
        reply = await guest.next_message()
        assert reply["body"] == "welcome"
        await guest.close()
        await alice.close()

    run(scenario())


def test_failed_scram_then_stream_still_usable(server, wires):
    """A failure ends the exchange, not the stream: the client may try again (RFC 6120 §6.4.5)."""
    wire = wires(server, tls="1.3")
    wire.secure()
    bad = scram("SHA-256", password="wrong", cb_type=None, cb_data=b"")
    answer, _ = wire.scram("SCRAM-SHA-256", bad)
    assert failure_condition(answer) == "not-authorized"
    cb_data = tls_server_end_point(wire.server_certificate())
    good = scram("SHA-256", cb_type="tls-server-end-point", cb_data=cb_data)
    answer, server_verified = wire.scram("SCRAM-SHA-256-PLUS", good)
    assert answer.tag == SUCCESS and server_verified
    try:
        wire.restart()
    except StreamEnded:
        pytest.fail("the stream ended after a successful second attempt")
