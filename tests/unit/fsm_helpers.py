"""Helpers for c2s state-machine tests: a deterministic Env, stanzas, a driver, XML readers."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

import features.disco
import features.ping
from features.registry import Registry
from fsm import c2s
from fsm.core import Send, StreamElement, StreamOpen, TLSEstablished
from fsm.session import C2S, C2SConfig, Env
from xmpp import ns
from xmpp.sasl import ScramCredentials, derive_credentials
from xmpp.stream import StreamParser, serialize

HOST = "localhost"
USER = "alice"
PASSWORD = "pencil"
SERVER_NONCE = "srvNonce+42"
CLIENT_NONCE = "cliNonce+17"
CB_DATA = b"\x5a" * 32  # tls-server-end-point data of the fake certificate
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "PLAIN")
_HEADER_OPEN = (
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


# --- a deterministic environment ---------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRandom:
    """Numbered values, so a test can name each one: sid-1, sid-2, res-1, ping-1..."""

    nonce_value: str = SERVER_NONCE
    _counters: dict[str, Any] = field(default_factory=dict)

    def _next(self, prefix: str) -> str:
        counter = self._counters.setdefault(prefix, itertools.count(1))
        return f"{prefix}-{next(counter)}"

    def stream_id(self) -> str:
        return self._next("sid")

    def nonce(self) -> str:
        return self.nonce_value

    def resource(self) -> str:
        return self._next("res")

    def iq_id(self) -> str:
        return self._next("ping")


def config(**overrides: Any) -> C2SConfig:
    values: dict[str, Any] = {
        "hosts": (HOST, "example.org"),
        "mechanisms": {HOST: MECHANISMS, "example.org": MECHANISMS},
        "tls_mode": "starttls",
        "max_auth_failures": 3,
        "header_timeout": 10.0,
        "auth_timeout": 60.0,
        "ping_timeout": 30.0,
        "fake_salt_secret": b"fake salt secret",
    }
    values.update(overrides)
    return C2SConfig(**values)


def session_data(**overrides: Any) -> C2S:
    return C2S(
        conn_id="c2s-test",
        config=config(**overrides),
        env=Env(FakeClock(), FakeRandom()),
        features=Registry.from_modules([features.ping, features.disco]),
        peer="127.0.0.1:5555",
    )


_CREDS: dict[tuple[str, str], ScramCredentials] = {}


def credentials(hash_name: str = "SHA-256", password: str = PASSWORD) -> ScramCredentials:
    """What storage keeps for alice (cached: PBKDF2 is slow on purpose)."""
    key = (hash_name, password)
    if key not in _CREDS:
        _CREDS[key] = derive_credentials(password, hash_name, b"\x07" * 16, 4096)
    return _CREDS[key]


# --- events as the parser yields them ----------------------------------------------------------


def header(
    to: str | None = HOST,
    version: str | None = "1.0",
    xmlns: str = ns.CLIENT,
    stream_ns: str = ns.STREAM,
    **extra: str,
) -> StreamOpen:
    """The StreamOpen event of a client header, parsed from real bytes."""
    attrs = {"to": to, "version": version, **extra}
    text = "".join(f" {k}='{v}'" for k, v in attrs.items() if v is not None)
    raw = f"<?xml version='1.0'?><stream:stream xmlns='{xmlns}' xmlns:stream='{stream_ns}'{text}>"
    (event,) = StreamParser().feed(raw.encode())
    assert isinstance(event, StreamOpen), event
    return event


def element(text: str) -> StreamElement:
    """One top-level element as the parser yields it inside a jabber:client stream."""
    events = StreamParser().feed((_HEADER_OPEN + text).encode())
    assert len(events) == 2 and isinstance(events[1], StreamElement), events
    return events[1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def auth(mechanism: str, payload: bytes | None = None) -> StreamElement:
    body = "" if payload is None else b64(payload)
    return element(f"<auth xmlns='{ns.SASL}' mechanism='{mechanism}'>{body}</auth>")


def response(payload: bytes) -> StreamElement:
    return element(f"<response xmlns='{ns.SASL}'>{b64(payload)}</response>")


def plain(user: str = USER, password: str = PASSWORD) -> bytes:
    return f"\0{user}\0{password}".encode()


def bind_iq(resource: str | None = None, iq_id: str = "bind-1", kind: str = "set") -> StreamElement:
    inner = "" if resource is None else f"<resource>{resource}</resource>"
    return element(f"<iq type='{kind}' id='{iq_id}'><bind xmlns='{ns.BIND}'>{inner}</bind></iq>")


def tls_up(**bindings: bytes) -> TLSEstablished:
    cb = {"tls-server-end-point": CB_DATA} if not bindings else dict(bindings)
    return TLSEstablished("TLSv1.3", cb)


# --- running the machine -----------------------------------------------------------------------


class Machine:
    """A c2s machine fed one event at a time; `log` keeps every action since init."""

    def __init__(self, data: C2S | None = None, **overrides: Any) -> None:
        transition = c2s.init(data or session_data(**overrides))
        self.state, self.data, self.log = (
            "wait_for_stream",
            transition.data,
            list(transition.actions),
        )
        assert transition.state == self.state

    def __call__(self, event: Any) -> list:
        self.state, self.data, actions = c2s.step(self.state, event, self.data)
        self.log += actions
        return actions

    def feed(self, *events: Any) -> list:
        actions: list = []
        for event in events:
            actions += self(event)
        return actions


def drive(events: list, data: C2S | None = None, **overrides: Any) -> tuple[str, C2S, list]:
    """From init through `events`: the final state and data and every action, init's included."""
    machine = Machine(data, **overrides)
    machine.feed(*events)
    return machine.state, machine.data, machine.log


# --- reading actions ---------------------------------------------------------------------------


def xml(action: Send) -> str:
    """A Send's element as text, for failure messages and eyeballing."""
    return serialize(action.element).decode()


def sent(actions: list) -> list[etree._Element]:
    return [a.element for a in actions if isinstance(a, Send)]


def kinds(actions: list) -> list[str]:
    return [type(a).__name__ for a in actions]


def qname(el: etree._Element) -> tuple[str | None, str]:
    name = etree.QName(el)
    return name.namespace, name.localname


def children(el: etree._Element) -> list[tuple[str | None, str]]:
    return [qname(child) for child in el]


def stream_error(el: etree._Element) -> str:
    """The RFC 6120 §4.9.3 condition of a <stream:error/>."""
    assert qname(el) == (ns.STREAM, "error"), etree.tostring(el)
    (condition,) = [c for c in el if etree.QName(c).localname != "text"]
    assert etree.QName(condition).namespace == ns.STREAMS
    return etree.QName(condition).localname


def sasl_failure(el: etree._Element) -> str:
    """The RFC 6120 §6.5 condition of a SASL <failure/>."""
    assert qname(el) == (ns.SASL, "failure"), etree.tostring(el)
    (condition,) = [c for c in el if etree.QName(c).localname != "text"]
    assert etree.QName(condition).namespace == ns.SASL
    return etree.QName(condition).localname


def stanza_error(el: etree._Element) -> tuple[str, str]:
    """(type, condition) of an error stanza (RFC 6120 §8.3)."""
    assert el.get("type") == "error", etree.tostring(el)
    error = el.find(ns.q(ns.CLIENT, "error"))
    assert error is not None, etree.tostring(el)
    (condition,) = [c for c in error if etree.QName(c).localname != "text"]
    assert etree.QName(condition).namespace == ns.STANZAS
    return error.get("type"), etree.QName(condition).localname


def sasl_text(el: etree._Element) -> bytes:
    """The decoded payload of <challenge/> or <success/>."""
    text = (el.text or "").strip()
    return b"" if text in ("", "=") else base64.b64decode(text)


def feature_names(features_el: etree._Element) -> list[tuple[str | None, str]]:
    assert qname(features_el) == (ns.STREAM, "features"), etree.tostring(features_el)
    return children(features_el)


def mechanisms(features_el: etree._Element) -> list[str]:
    mechs = features_el.find(ns.q(ns.SASL, "mechanisms"))
    if mechs is None:
        return []
    return [m.text for m in mechs.iter(ns.q(ns.SASL, "mechanism"))]
