"""The client-to-server gen_fsm: the states of ejabberd_c2s as pure functions (RFC 6120)."""

from __future__ import annotations

import re

from lxml import etree

from fsm import c2s_xml as x
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
    StreamElement,
    StreamOpen,
    Timeout,
    TLSEstablished,
    Transition,
    replace,
)
from fsm.session import C2S, TLSInfo
from xmpp import ns, sasl
from xmpp.errors import error_reply, stream_error
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q

STANZAS = frozenset(q(ns.CLIENT, name) for name in ("message", "presence", "iq"))
AUTH = q(ns.SASL, "auth")
RESPONSE = q(ns.SASL, "response")
ABORT = q(ns.SASL, "abort")
STARTTLS = q(ns.TLS, "starttls")
BIND = q(ns.BIND, "bind")
SESSION = q(ns.SESSION, "session")
IQ = q(ns.CLIENT, "iq")
PRESENCE = q(ns.CLIENT, "presence")
MESSAGE = q(ns.CLIENT, "message")
# The hook that sees each kind of stanza a bound client sends (features/ subscribe to them).
CLIENT_HOOKS = {MESSAGE: "client_message", PRESENCE: "client_presence", IQ: "client_iq"}
STAY = "(stay)"
# RFC 6120 §4.7.4: an xml:lang that is not a language tag (BCP 47 form) is not echoed back.
LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


# --- entry -----------------------------------------------------------------------------------


def init(data: C2S) -> Transition:
    """A connection was accepted: wait for its header, and for its login, within limits."""
    timers = [
        SetTimer("header", data.config.header_timeout),
        SetTimer("auth", data.config.auth_timeout),
    ]
    return Transition("wait_for_stream", data, timers)


# --- states ----------------------------------------------------------------------------------


def wait_for_stream(event, data: C2S) -> Transition:
    match event:
        case StreamOpen(attrs):
            return stream_header(attrs, data)
        case TLSEstablished(version, bindings):
            return stay(replace(data, tls=TLSInfo(version, dict(bindings))))
        case Timeout("header"):
            return stop(data, "connection-timeout", "no stream header")
        case StreamElement():
            return stop(data, "not-well-formed", "stanza before stream header")
    return common(event, data)


def wait_for_feature_request(event, data: C2S) -> Transition:
    match event:
        case StreamElement(el) if el.tag == STARTTLS:
            return starttls(data)
        case StreamElement(el) if el.tag == AUTH:
            return sasl_auth(el, data)
        case StreamElement(el) if el.tag in (RESPONSE, ABORT):
            return sasl_fail(data, "aborted" if el.tag == ABORT else "malformed-request")
        case StreamElement(el) if el.tag in STANZAS:
            return stop(data, "not-authorized", "authenticate first")
        case StreamElement():
            return stop(data, "unsupported-stanza-type")
    return common(event, data)


def wait_for_sasl_response(event, data: C2S) -> Transition:
    match event:
        case StreamElement(el) if el.tag == RESPONSE:
            try:
                payload = x.sasl_payload(el)
            except x.BadEncoding:
                return sasl_fail(data, "incorrect-encoding")
            return sasl_result(data.sasl.step(payload or b""), data)
        case StreamElement(el) if el.tag == ABORT:
            return sasl_fail(data, "aborted")
        case CredentialsLoaded(_, answer) | PasswordChecked(_, answer) if (
            answer == AUTH_UNAVAILABLE
        ):
            return sasl_fail(data, "temporary-auth-failure", "the account database cannot be "
                             "reached; try again later")  # fmt: skip
        case CredentialsLoaded(_, credentials):
            return sasl_result(data.sasl.credentials(credentials), data)
        case PasswordChecked(_, ok):
            return sasl_result(data.sasl.password_checked(ok), data)
        case StreamElement(el) if el.tag == AUTH:
            return sasl_fail(data, "malformed-request", "authentication already in progress")
        case StreamElement(el) if el.tag in STANZAS:
            return stop(data, "not-authorized", "authenticate first")
        case StreamElement():
            return stop(data, "unsupported-stanza-type")
    return common(event, data)


def wait_for_bind(event, data: C2S) -> Transition:
    match event:
        case StreamElement(el) if el.tag == IQ and el.find(BIND) is not None:
            return bind(el, data)
        case SessionOpened(jid, None) if data.pending_bind:
            iq_id, _ = data.pending_bind
            reply = x.bind_result(_with_id(iq_id), str(jid))
            data = replace(data, jid=jid, pending_bind=None)
            data, opened, _ = data.features.run("session_opened", None, data)
            actions = [CancelTimer("auth"), Send(reply), *opened]
            return Transition("wait_for_session", data, actions)
        case QueryDone(then, result):
            return then_stay(then(result, data))
        case SessionOpened(jid, error) if data.pending_bind:
            iq_id, _ = data.pending_bind
            reply = error_reply(_bind_iq(iq_id), error)
            return stay(replace(data, pending_bind=None), Send(reply))
        case StreamElement(el) if el.tag in STANZAS and not to_self(el, data):
            return stop(data, "not-authorized", "bind a resource first")  # RFC 6120 §7.1
        case StreamElement(el) if el.tag == IQ:
            return stay(data, *local_iq(el, data))
        case StreamElement(el) if el.tag in STANZAS:
            return stay(data)  # to the server or own account, not an IQ: nothing to do yet
        case StreamElement():
            return stop(data, "unsupported-stanza-type")
    return common(event, data)


def wait_for_session(event, data: C2S) -> Transition:
    match event:
        case StreamElement(el) if el.tag == IQ and el.find(SESSION) is not None:
            if el.get("type") != "set":
                return stay(data, Send(error_reply(el, "bad-request")))
            return Transition("session_established", data, [Send(x.empty_result(el))])
        case StreamElement(el) if el.tag in STANZAS:
            # Modern clients skip the legacy session IQ: their first stanza opens the session.
            transition = session_established(event, data)
            if transition.state == STAY:
                return transition._replace(state="session_established")
            return transition
    return session_established(event, data)


def session_established(event, data: C2S) -> Transition:
    match event:
        case StreamElement(el) if el.tag in STANZAS:
            return client_stanza(el, data)
        case Deliver(stanza):
            data, actions, stopped = data.features.run("deliver", stanza, data)
            return stay(data, *actions) if stopped else stay(data, *actions, Send(stanza))
        case QueryDone(then, result):
            return then_stay(then(result, data))
        case Timeout("idle") if data.pending_ping is None:
            iq_id = data.env.random.iq_id()
            ping = x.ping(iq_id, str(data.jid), data.domain)
            actions = [Send(ping), SetTimer("ping", data.config.ping_timeout)]
            return stay(replace(data, pending_ping=iq_id), *actions)
        case Timeout("idle"):
            return stay(data)
        case Timeout("ping") if data.pending_ping is not None:
            return stop(data, "connection-timeout", "no answer to ping")
        case StreamElement():
            return stop(data, "unsupported-stanza-type")
    return common(event, data)


def closed(event, data: C2S) -> Transition:
    """Terminal: the stream is over. A stanza routed here before the session was released goes
    back to the router, which delivers it elsewhere or bounces it: nothing is lost."""
    if isinstance(event, Deliver):
        return Transition("closed", data, [Route(event.stanza)])
    return Transition("closed", data, [])


STATES = {
    f.__name__: f
    for f in (
        wait_for_stream,
        wait_for_feature_request,
        wait_for_sasl_response,
        wait_for_bind,
        wait_for_session,
        session_established,
        closed,
    )
}


def step(state: str, event, data: C2S) -> Transition:
    """Run one event through the machine; a state function that stays returns STAY."""
    transition = STATES[state](event, data)
    if transition[0] == STAY:  # (not _replace: this runs for every stanza)
        return Transition(state, transition[1], transition[2])
    return transition


# --- events every state answers the same way -------------------------------------------------


def common(event, data: C2S) -> Transition:
    match event:
        case StreamClose():
            return Transition("closed", data, [*release(data), SendClose(), Stop()])
        case StreamBroken(condition, text):
            return stop(data, condition, text)
        case Kick(condition, text):
            return stop(data, condition, text)
        case SessionReplaced():
            return stop(replace(data, jid=None), "conflict", "replaced by a new session")
        case ConnectionLost():
            return Transition("closed", data, [*release(data), Stop()])
        case CredentialsLoaded() | PasswordChecked() if data.sasl is None:
            return stay(data)  # the answer to an exchange the client aborted
        case Timeout("auth") if data.jid is None:
            return stop(data, "connection-timeout", "no login in time")
        case Timeout():
            return stay(data)
        case Deliver(stanza):
            return stay(data, Route(stanza))  # not ours (any more): the router finds its way
        case StreamOpen():
            return stop(data, "not-well-formed", "unexpected stream header")
    return stop(data, "internal-server-error", f"unexpected {type(event).__name__}")


def stay(data: C2S, *actions) -> Transition:
    """Keep the current state; step() puts the state's name in place of STAY."""
    return Transition(STAY, data, list(actions))


def then_stay(outcome: tuple[C2S, list]) -> Transition:
    """Stay, with the (data, actions) a feature returned."""
    data, actions = outcome
    return Transition(STAY, data, list(actions))


def stop(data: C2S, condition: str | None, text: str | None = None) -> Transition:
    """Close the stream with a stream error; the header comes first if it was never sent."""
    actions: list = []
    if not data.header_sent:
        data = replace(data, stream_id=data.stream_id or data.env.random.stream_id())
        actions.append(SendHeader(_header_attrs(data, {})))
    if condition:
        actions.append(Send(stream_error(condition, text)))
    actions += [*release(data), SendClose(), Stop(condition, text)]
    return Transition("closed", data, actions)


def release(data: C2S) -> list:
    """Free the session, including one opened for a bind whose answer has not come back;
    whoever saw us available hears that we are gone."""
    if data.jid is not None:
        _, actions, _ = data.features.run("session_closed", None, data)
        return [*actions, CloseSession(data.jid)]
    if data.pending_bind is not None:
        return [CloseSession(data.pending_bind[1])]
    return []


# --- the stream header and features ----------------------------------------------------------


def _language(lang: str | None) -> str | None:
    return lang if lang and LANGUAGE_TAG.fullmatch(lang) else None


def stream_header(attrs: dict[str, str], data: C2S) -> Transition:
    to = (attrs.get("to") or "").lower()
    data = replace(
        data,
        stream_id=data.env.random.stream_id(),
        lang=_language(attrs.get("lang")) or data.lang,
        domain=data.domain or (to if to in data.config.hosts else None),
        header_sent=True,
    )
    reply = SendHeader(_header_attrs(data, attrs))
    if attrs.get("stream_ns") != ns.STREAM or attrs.get("stream_name") != "stream":
        return _refuse(reply, data, "invalid-namespace", "the stream namespace is wrong")
    if attrs.get("xmlns") != ns.CLIENT:
        return _refuse(reply, data, "invalid-namespace", "this port serves jabber:client")
    if to not in data.config.hosts or (data.domain and to != data.domain):
        return _refuse(reply, data, "host-unknown", f"this server does not serve {to!r}")
    if not _version_ok(attrs.get("version")):
        return _refuse(reply, data, "unsupported-version", "XMPP 1.0 streams only")
    next_state = "wait_for_bind" if data.authenticated else "wait_for_feature_request"
    offered = Send(features_element(data))
    return Transition(next_state, data, [CancelTimer("header"), reply, offered])


def _refuse(reply: SendHeader, data: C2S, condition: str, text: str) -> Transition:
    transition = stop(data, condition, text)
    return transition._replace(actions=[reply, *transition.actions])


def _version_ok(version: str | None) -> bool:
    try:
        major, _minor = (int(part) for part in (version or "").split("."))
    except ValueError:
        return False
    return major >= 1


def _header_attrs(data: C2S, client: dict[str, str]) -> dict[str, str]:
    attrs = {"from": data.domain or data.config.hosts[0], "xml:lang": data.lang}
    if not client or _version_ok(client.get("version")):
        attrs["version"] = "1.0"  # RFC 6120 §4.7.5: none in answer to a pre-1.0 header
    if data.stream_id:
        attrs["id"] = data.stream_id
    if client.get("from"):
        attrs["to"] = client["from"]
    return attrs


def features_element(data: C2S) -> etree._Element:
    """The stream features of this stage, shared between sessions: never modify it. What is
    offered depends on the listener's configuration, the host, the TLS state and the feature
    registry, never on one session (features/ offer the same to every session of a host)."""
    bindings = tuple(sorted(data.tls.channel_bindings)) if data.tls is not None else None
    # Every login sends the features three times: the registry keeps each stage's element.
    key = ("stream-features", id(data.config), data.domain, data.authenticated, bindings)
    config, element = data.features.memo(key, lambda: (data.config, _features(data)))
    return element if config is data.config else _features(data)


def _features(data: C2S) -> etree._Element:
    return x.features(stream_features(data))


def stream_features(data: C2S) -> list[etree._Element]:
    if data.authenticated:
        return [x.bind_feature(), x.session_feature(), *data.features.stream_features(data)]
    offered: list[etree._Element] = []
    if data.tls is None and data.config.tls_available:
        offered.append(x.starttls_features(required=data.config.tls_required))
        if data.config.tls_required:
            return offered  # RFC 6120 §5.3.1: nothing else until TLS is up
    offered.append(x.mechanisms_feature(offered_mechanisms(data)))
    if data.tls and data.tls.channel_bindings:
        offered.append(x.channel_binding_feature(sorted(data.tls.channel_bindings)))
    return offered


def offered_mechanisms(data: C2S) -> list[str]:
    allowed = list(data.config.mechanisms.get(data.domain, ()))
    if data.domain in data.config.anonymous_hosts:
        allowed.append("ANONYMOUS")
    bindings = sorted(data.tls.channel_bindings) if data.tls else []
    return sasl.mechanism_names(allowed, tls=data.tls is not None, channel_binding_types=bindings)


# --- STARTTLS and SASL -----------------------------------------------------------------------


def starttls(data: C2S) -> Transition:
    if data.tls is not None or not data.config.tls_available:
        return stop(data, "policy-violation", "TLS is not available here")._replace(
            actions=[Send(x.tls_failure()), SendClose(), Stop("tls-failure")]
        )
    data = replace(data, header_sent=False, stream_id=None)  # a new stream follows
    return Transition("wait_for_stream", data, [Send(x.proceed()), StartTLS()])


def sasl_auth(el: etree._Element, data: C2S) -> Transition:
    if data.tls is None and data.config.tls_required:
        return sasl_fail(data, "encryption-required", "use STARTTLS first")
    name = el.get("mechanism") or ""
    offered = offered_mechanisms(data)
    try:
        payload = x.sasl_payload(el)
    except x.BadEncoding:
        return sasl_fail(data, "incorrect-encoding" if name in offered else "invalid-mechanism")
    make = data.env.mechanisms or mechanism_for
    mechanism = make(name, data, offered)
    if mechanism is None:
        return sasl_fail(data, "invalid-mechanism")
    data = replace(data, sasl=mechanism, sasl_mechanism=name)
    return sasl_result(mechanism.step(payload), data)


def mechanism_for(name: str, data: C2S, offered: list[str]):
    """The xmpp.sasl mechanism `name` for this session, or None when it is not on offer."""
    if name not in offered:
        return None
    return sasl.make_mechanism(
        name,
        domain=data.domain,
        nonce=data.env.random.nonce() if name.startswith("SCRAM") else "",
        channel_bindings=dict(data.tls.channel_bindings) if data.tls else {},
        plus_offered=any(m.endswith("-PLUS") for m in offered),
        anonymous_username=data.env.random.resource() if name == "ANONYMOUS" else "",
        fake_salt_secret=data.config.fake_salt_secret,
    )


def sasl_result(result, data: C2S) -> Transition:
    match result:
        case sasl.Challenge(payload):
            return Transition("wait_for_sasl_response", data, [Send(x.challenge(payload))])
        case sasl.NeedCredentials(username, hash_name):
            load = LoadCredentials(username, data.domain, hash_name)
            return Transition("wait_for_sasl_response", data, [load])
        case sasl.NeedPasswordCheck(username, password):
            check = CheckPassword(username, data.domain, password)
            return Transition("wait_for_sasl_response", data, [check])
        case sasl.Success(username, payload):
            data = replace(
                data,
                user=username,
                sasl=None,
                anonymous=data.sasl_mechanism == "ANONYMOUS",
                header_sent=False,  # the stream restarts
                stream_id=None,
            )
            return Transition("wait_for_stream", data, [Send(x.success(payload)), RestartStream()])
        case sasl.Failure(condition, text):
            return sasl_fail(data, condition, text)
    return sasl_fail(data, "temporary-auth-failure", "unexpected mechanism result")


def sasl_fail(data: C2S, condition: str, text: str | None = None) -> Transition:
    failures = data.sasl_failures + 1
    data = replace(data, sasl=None, sasl_mechanism=None, sasl_failures=failures)
    failure = Send(x.sasl_failure(condition, text))
    if failures >= data.config.max_auth_failures and condition != "aborted":
        transition = stop(data, "policy-violation", "too many failed authentication attempts")
        return transition._replace(actions=[failure, *transition.actions])
    return Transition("wait_for_feature_request", data, [failure])


# --- binding ---------------------------------------------------------------------------------


def bind(iq: etree._Element, data: C2S) -> Transition:
    if iq.get("type") != "set" or data.pending_bind:
        return stay(data, Send(error_reply(iq, "bad-request")))
    requested = (iq.findtext(f"{BIND}/{q(ns.BIND, 'resource')}") or "").strip()
    resource = requested or data.env.random.resource()
    try:
        jid = JID.parse(f"{data.user}@{data.domain}/{resource}")
    except JIDMalformed:
        return stay(data, Send(error_reply(iq, "bad-request", "resource not allowed")))
    data = replace(data, pending_bind=(iq.get("id") or "", jid))
    return stay(data, OpenSession(jid))


def _with_id(iq_id: str) -> etree._Element:
    return etree.Element(IQ, id=iq_id) if iq_id else etree.Element(IQ)


def _bind_iq(iq_id: str) -> etree._Element:
    iq = _with_id(iq_id)
    iq.set("type", "set")
    return iq


# --- stanzas from a bound client -------------------------------------------------------------


def to_self(stanza: etree._Element, data: C2S) -> bool:
    """Addressed to the server, or to the user's own account (RFC 6120 §7.1 allows those)."""
    to = stanza.get("to")
    if to is None:
        return True
    try:
        jid = JID.parse(to)
    except JIDMalformed:
        return False
    own = JID(data.user, data.domain, None)
    return jid == JID(None, data.domain, None) or jid.bare == own


def client_stanza(stanza: etree._Element, data: C2S) -> Transition:
    if stanza.get("from") is not None and not _own_jid(stanza.get("from"), data):
        return stop(data, "invalid-from", "from must be your own JID")  # RFC 6120 §8.1.2.1
    stanza.set("from", str(data.jid))
    try:
        to = JID.parse(stanza.get("to")) if stanza.get("to") is not None else None
    except JIDMalformed:
        if stanza.get("type") == "error":
            return stay(data)
        reply = error_reply(stanza, "jid-malformed")
        reply.attrib.pop("from", None)  # from the server, not from the malformed address
        return stay(data, Send(_to_client(reply, data)))
    hook = CLIENT_HOOKS[stanza.tag]
    data, actions, stopped = data.features.run(hook, stanza, data)
    if stopped:
        return stay(data, *actions)
    if actions:
        transition = client_stanza_default(stanza, to, data)
        return transition._replace(actions=[*actions, *transition.actions])
    return client_stanza_default(stanza, to, data)


def client_stanza_default(stanza: etree._Element, to: JID | None, data: C2S) -> Transition:
    """What the machine does with a client's stanza that no hook stopped."""
    if stanza.tag == IQ:
        return client_iq(stanza, to, data)
    if stanza.tag == PRESENCE and to is None:
        return own_presence(stanza, data)
    if to is None:
        stanza.set("to", str(data.bare))  # RFC 6120 §10.3.1
    if data.pending_ping is None:
        return stay(data, Route(stanza))  # the common case: no copy of the session data
    activity = [CancelTimer("ping")] if data.pending_ping else []
    return stay(replace(data, pending_ping=None), *activity, Route(stanza))


def _own_jid(sender: str, data: C2S) -> bool:
    try:
        jid = JID.parse(sender)
    except JIDMalformed:
        return False
    return jid in (data.jid, data.bare)


def client_iq(iq: etree._Element, to: JID | None, data: C2S) -> Transition:
    kind = iq.get("type")
    if kind in ("result", "error"):
        if to is None or to == JID(None, data.domain, None):
            if data.pending_ping is not None and iq.get("id") == data.pending_ping:
                return stay(replace(data, pending_ping=None), CancelTimer("ping"))
            return stay(data)  # answers to the server are never answered (RFC 6120 §8.2.3)
        return stay(data, Route(iq))
    if kind not in ("get", "set") or len(iq) != 1:
        return stay(data, Send(_to_client(error_reply(iq, "bad-request"), data)))
    if to is None or to.resource is None and to.domain in data.config.hosts:
        return stay(data, *local_iq(iq, data))  # the server answers for bare JIDs
    return stay(data, Route(iq))


def local_iq(iq: etree._Element, data: C2S) -> list:
    """An IQ to the server or a bare JID of ours: a feature answers, else service-unavailable."""
    if iq.get("type") in ("result", "error"):
        return []
    if iq.find(SESSION) is not None and iq.get("type") == "set" and data.jid is not None:
        return [Send(x.empty_result(iq, str(data.jid)))]  # a late session IQ is harmless
    actions = data.features.handle_iq(iq, data)
    if actions is None:
        return [Send(_to_client(error_reply(iq, "service-unavailable"), data))]
    return actions


def own_presence(presence: etree._Element, data: C2S) -> Transition:
    """Presence with no 'to': the client announces availability (RFC 6121 §4.2, §4.5)."""
    kind = presence.get("type")
    if kind not in (None, "unavailable"):
        return stay(data)
    try:
        priority = int(presence.findtext(q(ns.CLIENT, "priority")) or 0)
    except ValueError:
        return stay(data, Send(_to_client(error_reply(presence, "bad-request"), data)))
    priority = max(-128, min(127, priority))
    available = kind is None
    data = replace(data, available=available, priority=priority)
    return stay(data, SetPresence(data.jid, available, priority))


def _to_client(reply: etree._Element, data: C2S) -> etree._Element:
    """A reply generated on the server's behalf goes to the client's full JID, once bound."""
    if data.jid is not None:
        reply.set("to", str(data.jid))
    else:
        reply.attrib.pop("to", None)
    return reply


def crashed(data: C2S) -> list:
    """What a session owes when its host crashed: the stream error, contacts told it left,
    the resource freed."""
    return stop(data, "internal-server-error", "the session failed").actions
