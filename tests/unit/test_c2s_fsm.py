"""The c2s gen_fsm, one state function at a time: one event in, the next state and actions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fsm import c2s
from fsm.core import (
    AUTH_UNAVAILABLE,
    CancelTimer,
    CheckPassword,
    CloseSession,
    ConnectionLost,
    CredentialsLoaded,
    Deliver,
    Kick,
    LoadCredentials,
    OpenSession,
    PasswordChecked,
    Query,
    QueryDone,
    RestartStream,
    Route,
    Send,
    SendClose,
    SendHeader,
    SessionOpened,
    SessionReplaced,
    SetPresence,
    SetTimer,
    StartTLS,
    Stop,
    StreamBroken,
    StreamClose,
    StreamOpen,
    Timeout,
    TLSEstablished,
)
from tests.support.scram_client import ScramClient
from tests.unit.fsm_helpers import (
    CB_DATA,
    CLIENT_NONCE,
    HOST,
    PASSWORD,
    SERVER_NONCE,
    USER,
    Machine,
    auth,
    bind_iq,
    children,
    credentials,
    drive,
    element,
    feature_names,
    header,
    kinds,
    mechanisms,
    plain,
    qname,
    response,
    sasl_failure,
    sasl_text,
    sent,
    stanza_error,
    stream_error,
    tls_up,
    xml,
)
from xmpp import ns
from xmpp.jid import JID
from xmpp.stream import StreamParser

FULL = JID.parse(f"{USER}@{HOST}/phone")
BARE = FULL.bare
STARTTLS = f"<starttls xmlns='{ns.TLS}'/>"
SESSION_IQ = f"<iq type='set' id='sess-1'><session xmlns='{ns.SESSION}'/></iq>"
PING_SERVER = f"<iq type='get' id='p1' to='{HOST}'><ping xmlns='{ns.PING}'/></iq>"

# --- machines parked in each state ---------------------------------------------------------------


def at_features(**cfg) -> Machine:
    """wait_for_feature_request, no TLS yet."""
    m = Machine(**cfg)
    m(header())
    assert m.state == "wait_for_feature_request"
    return m


def with_tls(**cfg) -> Machine:
    """wait_for_feature_request on a TLS stream with tls-server-end-point binding."""
    m = at_features(**cfg)
    m.feed(element(STARTTLS), tls_up(), header())
    assert m.state == "wait_for_feature_request" and m.data.tls is not None
    return m


def authenticated(**cfg) -> Machine:
    """wait_for_stream right after <success/>: the client is about to restart its stream."""
    m = with_tls(**cfg)
    m.feed(auth("PLAIN", plain()), PasswordChecked(USER, True))
    assert m.state == "wait_for_stream" and m.data.user == USER
    return m


def at_bind(**cfg) -> Machine:
    m = authenticated(**cfg)
    m(header())
    assert m.state == "wait_for_bind"
    return m


def at_session(**cfg) -> Machine:
    m = at_bind(**cfg)
    m.feed(bind_iq("phone"), SessionOpened(FULL))
    assert m.state == "wait_for_session" and m.data.jid == FULL
    return m


def established(**cfg) -> Machine:
    m = at_session(**cfg)
    m(element(SESSION_IQ))
    assert m.state == "session_established"
    return m


def parked(state: str) -> Machine:
    return {
        "wait_for_stream": Machine,
        "wait_for_feature_request": at_features,
        "wait_for_sasl_response": lambda: _mid_scram(),
        "wait_for_bind": at_bind,
        "wait_for_session": at_session,
        "session_established": established,
    }[state]()


def _mid_scram() -> Machine:
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE)
    m(auth("SCRAM-SHA-256", client.first()))
    assert m.state == "wait_for_sasl_response"
    return m


def only(actions: list):
    (el,) = sent(actions)
    return el


def assert_stopped(m: Machine, actions: list, condition: str, header_first: bool = False) -> None:
    """The stream ends with this stream error: [header?] error [CloseSession?] close, Stop."""
    assert m.state == "closed"
    expected = ["SendHeader"] if header_first else []
    expected += ["Send"] + (["CloseSession"] if m.data.jid is not None else [])
    assert kinds(actions) == [*expected, "SendClose", "Stop"], actions
    error = actions[1 if header_first else 0].element
    assert stream_error(error) == condition, xml(Send(error))
    assert actions[-1].condition == condition


# --- init ---------------------------------------------------------------------------------------


def test_init_waits_for_a_header_within_the_header_and_auth_timeouts():
    transition = c2s.init(Machine().data)
    assert transition.state == "wait_for_stream"
    assert transition.actions == [SetTimer("header", 10.0), SetTimer("auth", 60.0)]


def test_drive_runs_from_init_through_the_events():
    state, data, actions = drive([header()])
    assert state == "wait_for_feature_request"
    assert data.stream_id == "sid-1" and data.header_sent
    assert kinds(actions) == ["SetTimer", "SetTimer", "CancelTimer", "SendHeader", "Send"]


# --- wait_for_stream ----------------------------------------------------------------------------


def test_good_header_answers_with_our_header_then_features():
    m = Machine()
    actions = m(header(**{"from": "alice@localhost", "xml:lang": "fr"}))
    assert m.state == "wait_for_feature_request"
    assert kinds(actions) == ["CancelTimer", "SendHeader", "Send"]
    assert actions[0] == CancelTimer("header")
    assert actions[1].attrs == {
        "from": HOST,
        "to": "alice@localhost",
        "id": "sid-1",
        "version": "1.0",
        "xml:lang": "fr",
    }
    assert m.data.domain == HOST


def test_a_lang_that_is_not_a_language_tag_gets_our_default():
    m = Machine()
    actions = m(header(**{"xml:lang": "*"}))
    assert actions[1].attrs["xml:lang"] == "en"


def test_tls_required_offers_only_starttls_with_required():
    features = only(at_features().log[-2:])
    assert feature_names(features) == [(ns.TLS, "starttls")]
    assert children(features[0]) == [(ns.TLS, "required")]


def test_tls_optional_offers_starttls_and_mechanisms_but_not_plain_in_the_clear():
    features = only(at_features(tls_mode="starttls-optional").log[-2:])
    assert feature_names(features) == [(ns.TLS, "starttls"), (ns.SASL, "mechanisms")]
    assert children(features[0]) == []
    assert mechanisms(features) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]


def test_tls_unavailable_offers_mechanisms_only():
    m = at_features(tls_mode="starttls-optional", tls_available=False)
    assert feature_names(only(m.log[-2:])) == [(ns.SASL, "mechanisms")]


def test_after_tls_with_channel_binding_offers_plus_and_xep_0440():
    m = with_tls()
    features = only(m.log[-2:])
    assert feature_names(features) == [
        (ns.SASL, "mechanisms"),
        (ns.SASL_CB, "sasl-channel-binding"),
    ]
    assert mechanisms(features) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    (cb,) = features[1]
    assert qname(cb) == (ns.SASL_CB, "channel-binding")
    assert cb.get("type") == "tls-server-end-point"


def test_after_tls_without_channel_binding_offers_no_plus():
    m = at_features()
    m.feed(element(STARTTLS), TLSEstablished("TLSv1.3", {}), header())
    features = only(m.log[-2:])
    assert feature_names(features) == [(ns.SASL, "mechanisms")]
    assert mechanisms(features) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_direct_tls_established_before_the_header_is_remembered():
    m = Machine(tls_mode="direct")
    assert m(tls_up()) == [] and m.state == "wait_for_stream"
    assert m.data.tls.version == "TLSv1.3"
    m(header())
    assert (ns.TLS, "starttls") not in feature_names(only(m.log[-2:]))


def test_header_after_authentication_offers_bind_and_optional_session():
    m = authenticated()
    actions = m(header())
    assert m.state == "wait_for_bind"
    features = only(actions)
    # then what the features add: here disco's entity capabilities (XEP-0115)
    assert feature_names(features) == [(ns.BIND, "bind"), (ns.SESSION, "session"), (ns.CAPS, "c")]
    assert children(features[1]) == [(ns.SESSION, "optional")]


def test_header_to_is_case_insensitive_and_picks_the_served_host():
    m = Machine()
    actions = m(header(to="Example.ORG"))
    assert m.state == "wait_for_feature_request"
    assert actions[1].attrs["from"] == "example.org"


@pytest.mark.parametrize("to", ["elsewhere.net", None, ""])
def test_unknown_host_sends_header_then_host_unknown(to):
    m = Machine()
    actions = m(header(to=to))
    assert_stopped(m, actions, "host-unknown", header_first=True)
    assert actions[0].attrs["from"] == HOST and actions[0].attrs["id"] == "sid-1"
    assert actions[-1] == Stop("host-unknown", actions[-1].text)


def test_wrong_stream_namespace_is_invalid_namespace():
    m = Machine()
    actions = m(header(stream_ns="urn:not:streams"))
    assert_stopped(m, actions, "invalid-namespace", header_first=True)


def test_wrong_root_name_is_invalid_namespace():
    raw = (
        f"<stream:flow xmlns='jabber:client' xmlns:stream='{ns.STREAM}' to='{HOST}' version='1.0'>"
    )
    (event,) = StreamParser().feed(raw.encode())
    m = Machine()
    assert_stopped(m, m(event), "invalid-namespace", header_first=True)


@pytest.mark.parametrize("content_ns", [ns.SERVER, "urn:other"])
def test_wrong_content_namespace_is_invalid_namespace(content_ns):
    m = Machine()
    assert_stopped(m, m(header(xmlns=content_ns)), "invalid-namespace", header_first=True)


@pytest.mark.parametrize("version", [None, "0.9", "one", "1"])
def test_missing_or_old_version_is_unsupported_version(version):
    m = Machine()
    assert_stopped(m, m(header(version=version)), "unsupported-version", header_first=True)


def test_newer_minor_version_is_accepted_and_answered_with_ours():
    m = Machine()
    actions = m(header(version="1.1"))
    assert m.state == "wait_for_feature_request"
    assert actions[1].attrs["version"] == "1.0"


def test_header_timeout_is_connection_timeout_with_our_header_first():
    m = Machine()
    assert_stopped(m, m(Timeout("header")), "connection-timeout", header_first=True)


def test_broken_xml_before_any_header_sends_our_header_then_the_error():
    m = Machine()
    actions = m(StreamBroken("restricted-xml", "DTDs are not allowed"))
    assert_stopped(m, actions, "restricted-xml", header_first=True)
    assert actions[0].attrs["from"] == HOST and actions[0].attrs["version"] == "1.0"
    assert actions[-1] == Stop("restricted-xml", "DTDs are not allowed")


def test_stanza_before_header_is_refused_with_header_first():
    m = Machine()
    actions = m(element("<message to='bob@localhost'><body>hi</body></message>"))
    assert_stopped(m, actions, "not-well-formed", header_first=True)


def test_auth_timeout_before_header():
    m = Machine()
    assert_stopped(m, m(Timeout("auth")), "connection-timeout", header_first=True)


def test_kick_before_header_sends_header_then_error():
    m = Machine()
    assert_stopped(m, m(Kick("system-shutdown")), "system-shutdown", header_first=True)


def test_unknown_timer_is_ignored_and_deliveries_go_back_before_header():
    m = Machine()
    assert m(Timeout("idle")) == []
    stanza = element("<message/>").element
    assert m(Deliver(stanza)) == [Route(stanza)]  # not ours: the router finds its way
    assert m.state == "wait_for_stream"


def test_connection_lost_before_header_writes_nothing():
    m = Machine()
    assert m(ConnectionLost("reset")) == [Stop()]
    assert m.state == "closed"


class Unexpected:
    """An event no state knows."""


def test_unexpected_internal_event_is_internal_server_error():
    m = Machine()
    actions = m(Unexpected())
    assert_stopped(m, actions, "internal-server-error", header_first=True)


def test_stray_authentication_answer_is_ignored():
    m = Machine()
    assert m(PasswordChecked(USER, True)) == []
    assert m.state == "wait_for_stream"


# --- wait_for_feature_request -------------------------------------------------------------------


def test_starttls_proceeds_and_restarts_the_stream():
    m = at_features()
    actions = m(element(STARTTLS))
    assert m.state == "wait_for_stream"
    assert kinds(actions) == ["Send", "StartTLS"]
    assert qname(actions[0].element) == (ns.TLS, "proceed")
    assert m(tls_up()) == []
    assert m.data.tls.channel_bindings == {"tls-server-end-point": CB_DATA}
    actions = m(header())
    assert m.state == "wait_for_feature_request"
    assert actions[1].attrs["id"] == "sid-2"


def test_starttls_when_tls_is_already_up_fails_and_closes():
    m = with_tls()
    actions = m(element(STARTTLS))
    assert m.state == "closed"
    assert kinds(actions) == ["Send", "SendClose", "Stop"]
    assert qname(actions[0].element) == (ns.TLS, "failure")
    assert StartTLS() not in actions


def test_starttls_when_tls_is_not_available_fails():
    m = at_features(tls_mode="starttls-optional", tls_available=False)
    actions = m(element(STARTTLS))
    assert m.state == "closed"
    assert qname(actions[0].element) == (ns.TLS, "failure")


def test_auth_before_required_tls_is_encryption_required():
    m = at_features()
    actions = m(auth("SCRAM-SHA-256", b"n,,n=alice,r=abc"))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "encryption-required"
    assert m.data.sasl_failures == 1


@pytest.mark.parametrize(
    "mechanism",
    ["DIGEST-MD5", "", "SCRAM-SHA-512", "ANONYMOUS", "scram-sha-256"],
)
def test_unknown_or_not_offered_mechanism_is_invalid_mechanism(mechanism):
    m = with_tls()
    actions = m(auth(mechanism, b"x"))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "invalid-mechanism"


def test_plain_in_the_clear_is_not_offered_so_invalid_mechanism():
    m = at_features(tls_mode="starttls-optional")
    assert sasl_failure(only(m(auth("PLAIN", plain())))) == "invalid-mechanism"


def test_plus_without_channel_binding_is_not_offered():
    m = at_features()
    m.feed(element(STARTTLS), TLSEstablished("TLSv1.3", {}), header())
    assert sasl_failure(only(m(auth("SCRAM-SHA-256-PLUS", b"x")))) == "invalid-mechanism"


def test_bad_base64_in_auth_is_incorrect_encoding():
    m = with_tls()
    actions = m(element(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>not base64!</auth>"))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "incorrect-encoding"


@pytest.mark.parametrize(
    "stanza",
    [
        "<message to='bob@localhost'><body>hi</body></message>",
        PING_SERVER,
        "<presence/>",
    ],
)
def test_stanza_before_auth_is_not_authorized(stanza):
    m = at_features()
    assert_stopped(m, m(element(stanza)), "not-authorized")


def test_unknown_element_is_unsupported_stanza_type():
    m = with_tls()
    assert_stopped(
        m,
        m(element("<compress xmlns='http://jabber.org/protocol/compress'/>")),
        "unsupported-stanza-type",
    )


def test_too_many_failed_auths_is_policy_violation():
    m = with_tls(max_auth_failures=3)
    for _ in range(2):
        actions = m(auth("DIGEST-MD5"))
        assert m.state == "wait_for_feature_request"
        assert sasl_failure(only(actions)) == "invalid-mechanism"
    actions = m(auth("PLAIN", plain()))
    actions += m(PasswordChecked(USER, False))
    assert m.state == "closed"
    assert kinds(actions) == ["CheckPassword", "Send", "Send", "SendClose", "Stop"]
    assert sasl_failure(actions[1].element) == "not-authorized"
    assert stream_error(actions[2].element) == "policy-violation"
    assert actions[-1].condition == "policy-violation"


def test_abort_without_exchange_fails_aborted_and_never_closes():
    m = with_tls(max_auth_failures=1)
    actions = m(element(f"<abort xmlns='{ns.SASL}'/>"))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "aborted"


def test_response_without_exchange_is_malformed_request():
    m = with_tls()
    assert sasl_failure(only(m(response(b"x")))) == "malformed-request"
    assert m.state == "wait_for_feature_request"


def test_second_header_on_the_same_stream_is_not_well_formed():
    m = at_features()
    assert_stopped(m, m(header()), "not-well-formed")


def test_auth_timeout_while_negotiating():
    m = at_features()
    assert_stopped(m, m(Timeout("auth")), "connection-timeout")


def test_client_closes_during_negotiation():
    m = at_features()
    assert m(StreamClose()) == [SendClose(), Stop()]
    assert m.state == "closed"


# --- wait_for_sasl_response ---------------------------------------------------------------------


def scram_login(m: Machine, client: ScramClient, mechanism: str, creds) -> list:
    """Run a SCRAM exchange to its end; returns the final actions."""
    actions = m(auth(mechanism, client.first()))
    assert actions == [LoadCredentials(USER, HOST, "SHA-256")], actions
    assert m.state == "wait_for_sasl_response"
    actions = m(CredentialsLoaded(USER, creds))
    assert m.state == "wait_for_sasl_response"
    challenge = only(actions)
    assert qname(challenge) == (ns.SASL, "challenge")
    server_first = sasl_text(challenge)
    assert server_first.startswith(f"r={CLIENT_NONCE}{SERVER_NONCE},".encode())
    return m(response(client.final(server_first)))


def test_scram_sha_256_exchange_succeeds_and_restarts():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE)
    actions = scram_login(m, client, "SCRAM-SHA-256", credentials())
    assert m.state == "wait_for_stream"
    assert kinds(actions) == ["Send", "RestartStream"]
    assert actions[1] == RestartStream()
    success = actions[0].element
    assert qname(success) == (ns.SASL, "success")
    assert client.verify(sasl_text(success))
    assert m.data.user == USER and m.data.sasl is None
    assert m.data.sasl_mechanism == "SCRAM-SHA-256" and not m.data.anonymous


def test_scram_without_initial_response_gets_an_empty_challenge_first():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE)
    challenge = only(m(auth("SCRAM-SHA-256")))
    assert qname(challenge) == (ns.SASL, "challenge") and challenge.text == "="
    assert m(response(client.first())) == [LoadCredentials(USER, HOST, "SHA-256")]


def test_scram_wrong_password_is_not_authorized():
    m = with_tls()
    client = ScramClient("SHA-256", USER, "wrong", None, b"", CLIENT_NONCE)
    actions = scram_login(m, client, "SCRAM-SHA-256", credentials())
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "not-authorized"
    assert m.data.user is None and m.data.sasl is None and m.data.sasl_failures == 1


def test_scram_unknown_user_fails_only_at_the_end():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE)
    actions = scram_login(m, client, "SCRAM-SHA-256", None)
    assert sasl_failure(only(actions)) == "not-authorized"
    assert m.state == "wait_for_feature_request"


def test_scram_sha_256_plus_with_tls_server_end_point():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, "tls-server-end-point", CB_DATA, CLIENT_NONCE)
    actions = scram_login(m, client, "SCRAM-SHA-256-PLUS", credentials())
    assert kinds(actions) == ["Send", "RestartStream"]
    assert client.verify(sasl_text(actions[0].element))
    assert m.state == "wait_for_stream"


def test_scram_plus_with_other_channel_data_is_not_authorized():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, "tls-server-end-point", b"mitm", CLIENT_NONCE)
    actions = scram_login(m, client, "SCRAM-SHA-256-PLUS", credentials())
    assert sasl_failure(only(actions)) == "not-authorized"


def test_scram_y_flag_when_plus_was_offered_is_a_downgrade():
    m = with_tls()
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE, gs2_flag="y")
    actions = m(auth("SCRAM-SHA-256", client.first()))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "not-authorized"


def test_scram_y_flag_without_plus_offered_is_fine():
    m = at_features(tls_mode="starttls-optional")
    client = ScramClient("SHA-256", USER, PASSWORD, None, b"", CLIENT_NONCE, gs2_flag="y")
    actions = scram_login(m, client, "SCRAM-SHA-256", credentials())
    assert kinds(actions) == ["Send", "RestartStream"]


def test_plain_asks_for_a_password_check():
    m = with_tls()
    actions = m(auth("PLAIN", plain()))
    assert actions == [CheckPassword(USER, HOST, PASSWORD)]
    assert m.state == "wait_for_sasl_response"
    actions = m(PasswordChecked(USER, True))
    assert m.state == "wait_for_stream"
    assert kinds(actions) == ["Send", "RestartStream"]
    success = actions[0].element
    assert qname(success) == (ns.SASL, "success") and not success.text
    assert m.data.user == USER


def test_plain_wrong_password_is_not_authorized():
    m = with_tls()
    m(auth("PLAIN", plain(password="nope")))
    actions = m(PasswordChecked(USER, False))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "not-authorized"
    assert m.data.user is None


def test_a_database_that_cannot_answer_is_a_temporary_failure_not_a_wrong_password():
    m = with_tls()
    m(auth("PLAIN", plain()))
    actions = m(PasswordChecked(USER, AUTH_UNAVAILABLE))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "temporary-auth-failure"
    m = with_tls()
    actions = m(auth("SCRAM-SHA-256", ScramClient("SHA-256", USER, PASSWORD, None, b"",
                                                  CLIENT_NONCE).first()))  # fmt: skip
    assert actions == [LoadCredentials(USER, HOST, "SHA-256")]
    actions = m(CredentialsLoaded(USER, AUTH_UNAVAILABLE))
    assert sasl_failure(only(actions)) == "temporary-auth-failure"
    assert m.data.user is None


def test_plain_with_empty_initial_response_then_response():
    m = with_tls()
    assert only(m(auth("PLAIN"))).text == "="
    assert m(response(plain())) == [CheckPassword(USER, HOST, PASSWORD)]


def test_an_injected_mechanism_factory_makes_the_mechanism():
    """A replay hands in its own SASL mechanisms (Env.mechanisms), as it does clock and
    randomness: the machine has no switch for it."""
    made = []

    def factory(name, data, offered):
        made.append((name, tuple(offered)))
        return c2s.mechanism_for("PLAIN", data, ["PLAIN"])

    m = with_tls()
    m.data = replace(m.data, env=replace(m.data.env, mechanisms=factory))
    actions = m(auth("NOT-OFFERED", plain()))
    assert made and made[0][0] == "NOT-OFFERED"
    assert actions == [CheckPassword(USER, HOST, PASSWORD)]


def test_no_mechanism_from_the_factory_is_invalid_mechanism():
    m = with_tls()
    m.data = replace(m.data, env=replace(m.data.env, mechanisms=lambda *_: None))
    assert sasl_failure(only(m(auth("PLAIN", plain())))) == "invalid-mechanism"


def test_abort_during_exchange_is_aborted():
    m = _mid_scram()
    actions = m(element(f"<abort xmlns='{ns.SASL}'/>"))
    assert m.state == "wait_for_feature_request"
    assert sasl_failure(only(actions)) == "aborted"
    assert m.data.sasl is None


def test_late_credentials_after_abort_are_ignored():
    m = _mid_scram()
    m(element(f"<abort xmlns='{ns.SASL}'/>"))
    assert m(CredentialsLoaded(USER, credentials())) == []
    assert m.state == "wait_for_feature_request"


def test_late_password_check_after_abort_is_ignored():
    m = with_tls()
    m.feed(auth("PLAIN", plain()), element(f"<abort xmlns='{ns.SASL}'/>"))
    assert m(PasswordChecked(USER, True)) == []
    assert m.state == "wait_for_feature_request" and m.data.user is None


def test_bad_base64_in_response_is_incorrect_encoding():
    m = with_tls()
    m(auth("SCRAM-SHA-256"))
    actions = m(element(f"<response xmlns='{ns.SASL}'>!!!</response>"))
    assert sasl_failure(only(actions)) == "incorrect-encoding"
    assert m.state == "wait_for_feature_request"


def test_response_while_credentials_load_is_malformed():
    m = _mid_scram()
    assert sasl_failure(only(m(response(b"c=biws")))) == "malformed-request"


def test_second_auth_during_exchange_is_malformed_request():
    m = _mid_scram()
    assert sasl_failure(only(m(auth("PLAIN", plain())))) == "malformed-request"
    assert m.state == "wait_for_feature_request"


def test_stanza_during_sasl_is_not_authorized():
    m = _mid_scram()
    assert_stopped(m, m(element("<message to='bob@localhost'/>")), "not-authorized")


def test_unknown_element_during_sasl_is_unsupported_stanza_type():
    m = _mid_scram()
    assert_stopped(m, m(element(STARTTLS)), "unsupported-stanza-type")


def test_auth_timeout_during_sasl():
    m = _mid_scram()
    assert_stopped(m, m(Timeout("auth")), "connection-timeout")


# --- after SASL: the restarted stream -----------------------------------------------------------


def test_restart_after_sasl_uses_a_new_stream_id():
    m = authenticated()
    actions = m(header())
    assert m.state == "wait_for_bind"
    assert actions[1].attrs["id"] == "sid-3"  # sid-1 first stream, sid-2 after TLS
    assert m.data.stream_id == "sid-3"


def test_restart_to_another_host_is_host_unknown():
    m = authenticated()
    assert_stopped(m, m(header(to="example.org")), "host-unknown", header_first=True)


def test_error_before_the_restarted_header_sends_a_new_header():
    m = authenticated()
    actions = m(StreamBroken("not-well-formed"))
    assert kinds(actions)[:2] == ["SendHeader", "Send"]


def test_error_before_the_header_after_starttls_sends_a_new_header():
    m = at_features()
    m.feed(element(STARTTLS), tls_up())
    actions = m(Timeout("auth"))
    assert kinds(actions)[:2] == ["SendHeader", "Send"]


# --- wait_for_bind ------------------------------------------------------------------------------


def test_bind_with_resource_opens_a_session_and_waits():
    m = at_bind()
    actions = m(bind_iq("phone"))
    assert actions == [OpenSession(FULL)]
    assert m.state == "wait_for_bind"
    assert m.data.pending_bind == ("bind-1", FULL)
    assert m.data.jid is None


def test_session_opened_answers_bind_with_the_full_jid():
    m = at_bind()
    m(bind_iq("phone"))
    actions = m(SessionOpened(FULL))
    assert m.state == "wait_for_session"
    assert kinds(actions) == ["CancelTimer", "Send"]
    assert actions[0] == CancelTimer("auth")
    result = actions[1].element
    assert qname(result) == (ns.CLIENT, "iq")
    assert result.get("type") == "result" and result.get("id") == "bind-1"
    assert result.findtext(f"{{{ns.BIND}}}bind/{{{ns.BIND}}}jid") == "alice@localhost/phone"
    assert m.data.jid == FULL and m.data.pending_bind is None


def test_session_refused_answers_bind_with_the_error():
    m = at_bind()
    m(bind_iq("phone"))
    actions = m(SessionOpened(FULL, "resource-constraint"))
    assert m.state == "wait_for_bind"
    reply = only(actions)
    assert reply.get("id") == "bind-1"
    assert stanza_error(reply) == ("wait", "resource-constraint")
    assert m.data.pending_bind is None and m.data.jid is None
    assert m(bind_iq("laptop", iq_id="bind-2")) == [OpenSession(FULL.bare.with_resource("laptop"))]


@pytest.mark.parametrize("resource", [None, "", "   "])
def test_bind_without_resource_gets_a_generated_one(resource):
    m = at_bind()
    actions = m(bind_iq(resource))
    assert actions == [OpenSession(JID(USER, HOST, "res-1"))]


def test_bind_of_type_get_is_bad_request():
    m = at_bind()
    reply = only(m(bind_iq("phone", kind="get")))
    assert stanza_error(reply) == ("modify", "bad-request")
    assert m.state == "wait_for_bind" and m.data.pending_bind is None


def test_second_bind_while_one_is_pending_is_bad_request():
    m = at_bind()
    m(bind_iq("phone"))
    reply = only(m(bind_iq("laptop", iq_id="bind-2")))
    assert reply.get("id") == "bind-2"
    assert stanza_error(reply) == ("modify", "bad-request")
    assert m.data.pending_bind == ("bind-1", FULL)


def test_bind_with_an_unusable_resource_is_bad_request():
    m = at_bind()
    reply = only(m(bind_iq("a\u0085b")))  # NEL: a control character PRECIS refuses
    assert stanza_error(reply) == ("modify", "bad-request")


@pytest.mark.parametrize(
    "stanza",
    [
        "<message to='bob@localhost'><body>hi</body></message>",
        "<presence to='bob@localhost'/>",
        "<iq type='get' id='v1' to='bob@localhost/pc'><query xmlns='jabber:iq:version'/></iq>",
        "<message to='@@bad'/>",
    ],
)
def test_stanza_to_someone_else_before_bind_is_not_authorized(stanza):
    m = at_bind()
    assert_stopped(m, m(element(stanza)), "not-authorized")
    assert not any(isinstance(a, Route) for a in m.log)


@pytest.mark.parametrize("to", [None, HOST, f"{USER}@{HOST}"])
def test_ping_to_server_or_own_account_before_bind_is_answered(to):
    m = at_bind()
    attr = f" to='{to}'" if to else ""
    reply = only(m(element(f"<iq type='get' id='p1'{attr}><ping xmlns='{ns.PING}'/></iq>")))
    assert reply.get("type") == "result" and reply.get("id") == "p1"
    assert m.state == "wait_for_bind"


def test_unknown_iq_to_server_before_bind_is_service_unavailable():
    m = at_bind()
    reply = only(m(element("<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")))
    assert stanza_error(reply) == ("cancel", "service-unavailable")
    assert reply.get("id") == "v1"


def test_error_before_bind_is_not_addressed_to_none():
    m = at_bind()
    reply = only(m(element("<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")))
    assert reply.get("to") != "None"


def test_presence_to_self_before_bind_is_dropped():
    m = at_bind()
    assert m(element("<presence/>")) == []
    assert m.state == "wait_for_bind"


def test_iq_result_to_server_before_bind_is_not_answered():
    m = at_bind()
    assert m(element("<iq type='result' id='x'/>")) == []


def test_non_stanza_before_bind_is_unsupported_stanza_type():
    m = at_bind()
    assert_stopped(m, m(auth("PLAIN", plain())), "unsupported-stanza-type")


def test_auth_timeout_before_bind():
    m = at_bind()
    assert_stopped(m, m(Timeout("auth")), "connection-timeout")


def test_delivery_before_bind_goes_back_to_the_router():
    m = at_bind()
    stanza = element("<message/>").element
    assert m(Deliver(stanza)) == [Route(stanza)]
    assert m.state == "wait_for_bind"


def test_connection_lost_while_binding_closes_the_opened_session():
    m = at_bind()
    m(bind_iq("phone"))
    assert m(ConnectionLost()) == [CloseSession(FULL), Stop()]


# --- wait_for_session ---------------------------------------------------------------------------


def test_session_iq_is_answered_and_establishes():
    m = at_session()
    actions = m(element(SESSION_IQ))
    assert m.state == "session_established"
    reply = only(actions)
    assert reply.get("type") == "result" and reply.get("id") == "sess-1"
    assert len(reply) == 0


def test_session_iq_of_type_get_is_bad_request():
    m = at_session()
    reply = only(m(element(f"<iq type='get' id='s'><session xmlns='{ns.SESSION}'/></iq>")))
    assert stanza_error(reply) == ("modify", "bad-request")
    assert m.state == "wait_for_session"


def test_first_message_without_session_iq_is_routed_and_establishes():
    m = at_session()
    actions = m(element("<message to='bob@localhost' id='m1'><body>hi</body></message>"))
    assert m.state == "session_established"
    (route,) = actions
    assert isinstance(route, Route)
    assert route.stanza.get("from") == "alice@localhost/phone"
    assert route.stanza.get("to") == "bob@localhost"


def test_first_presence_without_session_iq_establishes():
    m = at_session()
    assert m(element("<presence/>")) == [SetPresence(FULL, True, 0)]
    assert m.state == "session_established"


def test_spoofed_first_stanza_closes_instead_of_establishing():
    m = at_session()
    actions = m(element("<message from='mallory@localhost/x' to='bob@localhost'/>"))
    assert_stopped(m, actions, "invalid-from")


def test_delivery_while_waiting_for_session_is_written():
    m = at_session()
    stanza = element("<message from='bob@localhost/pc'><body>yo</body></message>").element
    assert m(Deliver(stanza)) == [Send(stanza)]
    assert m.state == "wait_for_session"


def test_auth_timer_firing_late_after_bind_is_ignored():
    m = at_session()
    assert m(Timeout("auth")) == []
    assert m.state == "wait_for_session"


def test_client_close_while_waiting_for_session_releases_it():
    m = at_session()
    assert m(StreamClose()) == [CloseSession(FULL), SendClose(), Stop()]


# --- session_established ------------------------------------------------------------------------


def test_message_is_stamped_with_the_full_jid_and_routed():
    m = established()
    actions = m(element("<message to='bob@example.org' type='chat'><body>hi</body></message>"))
    (route,) = actions
    assert isinstance(route, Route)
    assert route.stanza.get("from") == "alice@localhost/phone"
    assert route.stanza.get("to") == "bob@example.org"
    assert route.stanza.findtext(f"{{{ns.CLIENT}}}body") == "hi"
    assert m.state == "session_established"


@pytest.mark.parametrize("sender", ["alice@localhost/phone", "alice@localhost"])
def test_own_from_is_accepted_and_replaced_by_the_full_jid(sender):
    m = established()
    (route,) = m(element(f"<message from='{sender}' to='bob@localhost'/>"))
    assert route.stanza.get("from") == "alice@localhost/phone"


@pytest.mark.parametrize(
    "sender", ["mallory@localhost/phone", "alice@localhost/laptop", "localhost", "alice@evil.com"]
)
def test_spoofed_from_is_invalid_from(sender):
    m = established()
    actions = m(element(f"<message from='{sender}' to='bob@localhost'/>"))
    assert_stopped(m, actions, "invalid-from")
    assert actions[1] == CloseSession(FULL)


def test_message_without_to_goes_to_own_bare_jid():
    m = established()
    (route,) = m(element("<message><body>note to self</body></message>"))
    assert route.stanza.get("to") == "alice@localhost"
    assert route.stanza.get("from") == "alice@localhost/phone"


@pytest.mark.parametrize("to", ["@bad", "bob@", "bob@exa mple.org", "bob@localhost/"])
def test_malformed_to_is_jid_malformed_to_the_client(to):
    m = established()
    reply = only(m(element(f"<message to='{to}' id='m1'><body>hi</body></message>")))
    assert stanza_error(reply) == ("modify", "jid-malformed")
    assert reply.get("to") == "alice@localhost/phone" and reply.get("id") == "m1"
    assert m.state == "session_established"


def test_malformed_to_on_an_error_stanza_is_dropped():
    m = established()
    assert m(element("<message to='@bad' type='error'/>")) == []


@pytest.mark.parametrize(
    "iq",
    [
        f"<iq type='get' id='i1' to='{HOST}'><ping xmlns='{ns.PING}'/><x xmlns='urn:x'/></iq>",
        f"<iq type='get' id='i1' to='{HOST}'/>",
        f"<iq id='i1' to='{HOST}'><ping xmlns='{ns.PING}'/></iq>",
        f"<iq type='fetch' id='i1' to='{HOST}'><ping xmlns='{ns.PING}'/></iq>",
    ],
)
def test_iq_without_exactly_one_payload_or_with_a_bad_type_is_bad_request(iq):
    m = established()
    reply = only(m(element(iq)))
    assert stanza_error(reply) == ("modify", "bad-request")
    assert reply.get("id") == "i1" and reply.get("to") == "alice@localhost/phone"


@pytest.mark.parametrize("to", [None, HOST, "bob@localhost"])
def test_iq_with_unknown_namespace_to_the_server_is_service_unavailable(to):
    m = established()
    attr = f" to='{to}'" if to else ""
    reply = only(
        m(element(f"<iq type='get' id='v1'{attr}><query xmlns='jabber:iq:version'/></iq>"))
    )
    assert stanza_error(reply) == ("cancel", "service-unavailable")
    assert reply.get("to") == "alice@localhost/phone" and reply.get("id") == "v1"


@pytest.mark.parametrize("to", [None, HOST])
def test_ping_to_the_server_is_answered(to):
    m = established()
    attr = f" to='{to}'" if to else ""
    reply = only(m(element(f"<iq type='get' id='p1'{attr}><ping xmlns='{ns.PING}'/></iq>")))
    assert reply.get("type") == "result" and reply.get("id") == "p1"
    assert reply.get("to") == "alice@localhost/phone"
    assert reply.get("from") == (HOST if to else None)
    assert len(reply) == 0


def test_disco_info_lists_the_registry_features():
    m = established()
    reply = only(
        m(element(f"<iq type='get' id='d1' to='{HOST}'><query xmlns='{ns.DISCO_INFO}'/></iq>"))
    )
    assert reply.get("type") == "result"
    query = reply.find(f"{{{ns.DISCO_INFO}}}query")
    identity = query.find(f"{{{ns.DISCO_INFO}}}identity")
    assert (identity.get("category"), identity.get("type")) == ("server", "im")
    feats = {f.get("var") for f in query.iter(f"{{{ns.DISCO_INFO}}}feature")}
    assert {ns.PING, ns.DISCO_INFO, ns.DISCO_ITEMS} <= feats


@pytest.mark.parametrize("kind", ["result", "error"])
@pytest.mark.parametrize("to", [None, HOST])
def test_iq_result_or_error_to_the_server_is_never_answered(kind, to):
    m = established()
    attr = f" to='{to}'" if to else ""
    assert m(element(f"<iq type='{kind}' id='x1'{attr}/>")) == []


@pytest.mark.parametrize(
    "to", ["bob@localhost/pc", "bob@example.net", "example.net", "alice@localhost/laptop"]
)
def test_iq_to_others_is_routed(to):
    m = established()
    (route,) = m(
        element(f"<iq type='get' id='v1' to='{to}'><query xmlns='jabber:iq:version'/></iq>")
    )
    assert isinstance(route, Route)
    assert route.stanza.get("from") == "alice@localhost/phone"


def test_iq_result_to_another_entity_is_routed():
    m = established()
    (route,) = m(element("<iq type='result' id='v1' to='bob@localhost/pc'/>"))
    assert isinstance(route, Route)


def test_ping_to_a_bare_jid_is_answered_by_the_server_on_its_behalf():
    m = established()
    (query,) = m(
        element(f"<iq type='get' id='p2' to='bob@localhost'><ping xmlns='{ns.PING}'/></iq>")
    )
    assert isinstance(query, Query) and query.args == ("bob", "localhost")  # is bob an account?
    reply = only(m(QueryDone(query.then, True)))
    assert reply.get("type") == "result" and reply.get("from") == "bob@localhost"


def test_late_session_iq_is_harmless():
    m = established()
    reply = only(m(element(SESSION_IQ)))
    assert reply.get("type") == "result" and reply.get("to") == "alice@localhost/phone"


@pytest.mark.parametrize(
    ("presence", "available", "priority"),
    [
        ("<presence/>", True, 0),
        ("<presence><priority>5</priority></presence>", True, 5),
        ("<presence><priority>-1</priority></presence>", True, -1),
        ("<presence><priority>300</priority></presence>", True, 127),
        ("<presence><priority>-300</priority></presence>", True, -128),
        ("<presence type='unavailable'/>", False, 0),
    ],
)
def test_presence_without_to_sets_own_presence(presence, available, priority):
    m = established()
    assert m(element(presence)) == [SetPresence(FULL, available, priority)]
    assert (m.data.available, m.data.priority) == (available, priority)


def test_presence_with_bad_priority_is_bad_request():
    m = established()
    reply = only(m(element("<presence id='pr'><priority>high</priority></presence>")))
    assert stanza_error(reply) == ("modify", "bad-request")
    assert not m.data.available


def test_available_then_unavailable():
    m = established()
    m(element("<presence/>"))
    assert m(element("<presence type='unavailable'/>")) == [SetPresence(FULL, False, 0)]
    assert not m.data.available


def test_directed_and_subscription_presence_is_routed():
    m = established()
    (route,) = m(element("<presence to='bob@localhost' type='subscribe'/>"))
    assert isinstance(route, Route) and route.stanza.get("from") == "alice@localhost/phone"


def test_presence_probe_without_to_is_dropped():
    m = established()
    assert m(element("<presence type='probe'/>")) == []


def test_delivered_stanza_is_written():
    m = established()
    stanza = element("<message from='bob@localhost/pc' to='alice@localhost/phone'/>").element
    assert m(Deliver(stanza)) == [Send(stanza)]


def test_idle_timeout_pings_the_client():
    m = established()
    actions = m(Timeout("idle"))
    assert kinds(actions) == ["Send", "SetTimer"]
    ping = actions[0].element
    assert ping.get("type") == "get" and ping.get("id") == "ping-1"
    assert ping.get("to") == "alice@localhost/phone" and ping.get("from") == HOST
    assert children(ping) == [(ns.PING, "ping")]
    assert actions[1] == SetTimer("ping", 30.0)
    assert m.data.pending_ping == "ping-1"


def test_idle_again_while_a_ping_is_pending_does_nothing():
    m = established()
    m(Timeout("idle"))
    assert m(Timeout("idle")) == []
    assert m.data.pending_ping == "ping-1"


@pytest.mark.parametrize("to", [None, HOST])
def test_answer_to_the_server_ping_clears_it(to):
    m = established()
    m(Timeout("idle"))
    attr = f" to='{to}'" if to else ""
    assert m(element(f"<iq type='result' id='ping-1'{attr}/>")) == [CancelTimer("ping")]
    assert m.data.pending_ping is None
    assert m(Timeout("ping")) == []
    assert m.state == "session_established"


def test_an_answer_with_another_id_does_not_clear_the_ping():
    m = established()
    m(Timeout("idle"))
    assert m(element("<iq type='result' id='other'/>")) == []
    assert m.data.pending_ping == "ping-1"


def test_any_routed_stanza_counts_as_activity():
    m = established()
    m(Timeout("idle"))
    actions = m(element("<message to='bob@localhost'/>"))
    assert kinds(actions) == ["CancelTimer", "Route"]
    assert m.data.pending_ping is None


def test_unanswered_ping_is_connection_timeout():
    m = established()
    m(Timeout("idle"))
    actions = m(Timeout("ping"))
    assert_stopped(m, actions, "connection-timeout")
    assert CloseSession(FULL) in actions


def test_client_close_releases_the_session():
    m = established()
    assert m(StreamClose()) == [CloseSession(FULL), SendClose(), Stop()]
    assert m.state == "closed"


def test_connection_lost_releases_without_writing():
    m = established()
    actions = m(ConnectionLost("EOF"))
    assert actions == [CloseSession(FULL), Stop()]
    assert m.state == "closed"


def test_kick_for_shutdown_is_system_shutdown():
    m = established()
    actions = m(Kick("system-shutdown", "bye"))
    assert_stopped(m, actions, "system-shutdown")
    assert actions[-1] == Stop("system-shutdown", "bye")


def test_replaced_session_is_conflict_and_does_not_close_the_new_one():
    m = established()
    actions = m(SessionReplaced())
    assert m.state == "closed"
    assert kinds(actions) == ["Send", "SendClose", "Stop"]
    assert stream_error(actions[0].element) == "conflict"
    assert not any(isinstance(a, CloseSession) for a in actions)


def test_broken_stream_in_session_is_that_stream_error():
    m = established()
    assert_stopped(m, m(StreamBroken("policy-violation", "stanza too big")), "policy-violation")


def test_nonza_in_session_is_unsupported_stanza_type():
    m = established()
    assert_stopped(m, m(auth("PLAIN", plain())), "unsupported-stanza-type")


def test_new_header_in_session_is_not_well_formed():
    m = established()
    assert_stopped(m, m(header()), "not-well-formed")


def test_unexpected_event_in_session_is_internal_server_error():
    m = established()
    assert_stopped(m, m(Unexpected()), "internal-server-error")


# --- closed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        StreamOpen({}),
        element("<message to='bob@localhost'/>"),
        StreamClose(),
        StreamBroken("not-well-formed"),
        ConnectionLost(),
        Timeout("ping"),
        Kick("system-shutdown"),
        SessionReplaced(),
        SessionOpened(FULL),
        CredentialsLoaded(USER, None),
        PasswordChecked(USER, True),
        tls_up(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_closed_ignores_everything(event):
    m = established()
    m(StreamClose())
    data = m.data
    assert c2s.step("closed", event, data) == ("closed", data, [])


def test_closed_hands_late_deliveries_back_to_the_router():
    m = established()
    m(StreamClose())
    stanza = element("<message from='bob@localhost/pc' to='alice@localhost/phone'/>").element
    assert c2s.step("closed", Deliver(stanza), m.data) == ("closed", m.data, [Route(stanza)])


# --- every live state ends the same way on the common events ------------------------------------

LIVE = [
    "wait_for_stream",
    "wait_for_feature_request",
    "wait_for_sasl_response",
    "wait_for_bind",
    "wait_for_session",
    "session_established",
]


@pytest.mark.parametrize("state", LIVE)
def test_state_names_match_the_functions(state):
    m = parked(state)
    assert m.state == state and c2s.STATES[state].__name__ == state


@pytest.mark.parametrize("state", LIVE)
def test_stream_broken_closes_with_its_condition(state):
    m = parked(state)
    actions = m(StreamBroken("not-well-formed", "bad XML"))
    assert_stopped(m, actions, "not-well-formed", header_first=state == "wait_for_stream")


@pytest.mark.parametrize("state", LIVE)
def test_kick_closes_with_its_condition(state):
    m = parked(state)
    actions = m(Kick("policy-violation", "admin"))
    assert_stopped(m, actions, "policy-violation", header_first=state == "wait_for_stream")


@pytest.mark.parametrize("state", LIVE)
def test_connection_lost_writes_nothing(state):
    m = parked(state)
    actions = m(ConnectionLost())
    assert m.state == "closed"
    assert actions[-1] == Stop()
    assert not any(isinstance(a, Send | SendHeader | SendClose) for a in actions)


@pytest.mark.parametrize("state", LIVE)
def test_unknown_timer_is_ignored(state):
    m = parked(state)
    assert m(Timeout("no-such-timer")) == []
    assert m.state == state


@pytest.mark.parametrize("state", LIVE[:4])
def test_stanzas_are_never_routed_before_bind(state):
    m = parked(state)
    m(element("<message to='bob@localhost'><body>hi</body></message>"))
    assert m.state == "closed"
    assert not any(isinstance(a, Route) for a in m.log)


def test_own_from_in_another_spelling_is_accepted():
    m = established()
    (route,) = m(element("<message from='Alice@LOCALHOST/phone' to='bob@localhost'/>"))
    assert route.stanza.get("from") == "alice@localhost/phone"


def test_the_machines_replace_copies_changes_and_refuses_unknown_fields():
    import dataclasses

    from features.im import IM
    from fsm.core import replace as fast_replace
    from tests.unit.fsm_helpers import session_data

    data = dataclasses.replace(session_data(), user="alice", im=IM(interested=True))
    changed = fast_replace(data, available=True, priority=5)
    assert changed == dataclasses.replace(data, available=True, priority=5)
    assert (data.available, data.priority, changed.user, changed.im) == (False, 0, "alice", data.im)
    with pytest.raises(TypeError, match="no field 'availble'"):
        fast_replace(data, availble=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.available = False  # type: ignore[misc]


def test_the_machines_replace_copies_inherited_fields_and_other_objects_too():
    import dataclasses

    from fsm.core import replace as fast_replace

    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        a: int
        b: str = "b"

    @dataclasses.dataclass(frozen=True, slots=True)
    class Child(Base):
        c: tuple = ()

    @dataclasses.dataclass(frozen=True)
    class Plain:  # no slots: dataclasses.replace does it
        a: int

    assert fast_replace(Child(1, "x", (2,)), c=(3,)) == Child(1, "x", (3,))
    assert fast_replace(Child(1), a=7) == Child(7, "b", ())
    assert fast_replace(Plain(1), a=2) == Plain(2)
