"""The c2s session data, its injected configuration, clock and randomness, and the feature port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lxml import etree

from xmpp.jid import JID


@dataclass(frozen=True, slots=True)
class C2SConfig:
    """What one listener's c2s machines need to know of the node's configuration."""

    hosts: tuple[str, ...] = ("localhost",)
    mechanisms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # host -> allowed
    anonymous_hosts: frozenset[str] = frozenset()
    tls_mode: str = "starttls"  # "starttls" (required) | "starttls-optional" | "direct"
    tls_available: bool = True
    max_auth_failures: int = 3
    header_timeout: float = 10.0
    auth_timeout: float = 60.0
    ping_timeout: float = 60.0
    fake_salt_secret: bytes = b""
    # Test-only: any password logs in. Refused by xmppd/ on non-loopback listeners.
    insecure_any_password: bool = False
    # Test-only, set by xmppd/replay alone (no configuration file reaches it): builds the SASL
    # mechanism that plays a log's recorded outcome, for logs without passwords or secrets.
    # Called as replay_sasl(mechanism_name, data); None means "not scripted".
    replay_sasl: Callable[[str, Any], Any] | None = None

    @property
    def tls_required(self) -> bool:
        return self.tls_mode == "starttls"


class Random(Protocol):
    """Every random value a c2s machine consumes, so a replay can prime them."""

    def stream_id(self) -> str: ...
    def nonce(self) -> str: ...
    def resource(self) -> str: ...
    def iq_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Env:
    clock: Callable[[], float]
    random: Random


class Features(Protocol):
    """The feature registry handed to the machine: server-side handlers live in features/."""

    def stream_features(self, data: Any) -> list[etree._Element]:
        """Extra stream features after authentication (beside bind and session)."""

    def handle_iq(self, iq: etree._Element, data: Any) -> list | None:
        """Actions answering an IQ addressed to the server or to an account's bare JID;
        None when no feature handles the IQ's namespace."""

    def client_presence(self, presence: etree._Element, data: Any) -> tuple[Any, list] | None:
        """(data, actions) for a presence the client sent (from already stamped); None when
        no feature handles presence."""

    def deliver(self, stanza: etree._Element, data: Any) -> tuple[Any, list]:
        """(data, actions) for a stanza routed to this session: normally Send(stanza)."""

    def session_end(self, data: Any) -> list:
        """Actions owed when the session ends (unavailable presence to whoever saw us)."""


class NoFeatures:
    """A registry with nothing in it."""

    def stream_features(self, data: Any) -> list[etree._Element]:
        return []

    def handle_iq(self, iq: etree._Element, data: Any) -> list | None:
        return None

    def client_presence(self, presence: etree._Element, data: Any) -> tuple[Any, list] | None:
        return None

    def deliver(self, stanza: etree._Element, data: Any) -> tuple[Any, list]:
        from fsm.core import Send

        return data, [Send(stanza)]

    def session_end(self, data: Any) -> list:
        return []


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    channel_bindings: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class C2S:
    """Everything a c2s machine knows about its connection; replaced, never mutated."""

    conn_id: str
    config: C2SConfig
    env: Env
    features: Any = field(default_factory=NoFeatures)
    peer: str = ""
    tls: TLSInfo | None = None
    header_sent: bool = False
    stream_id: str | None = None
    domain: str | None = None
    lang: str = "en"
    sasl: Any = None  # the running xmpp.sasl mechanism
    sasl_mechanism: str | None = None
    sasl_failures: int = 0
    user: str | None = None  # authenticated localpart
    anonymous: bool = False
    pending_bind: tuple[str, JID] | None = None  # (iq id, jid being opened)
    jid: JID | None = None
    available: bool = False
    priority: int = 0
    pending_ping: str | None = None
    im: Any = None  # instant-messaging state of the session, owned by features/presence.py

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    @property
    def bare(self) -> JID | None:
        return self.jid.bare if self.jid else None
