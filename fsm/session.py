"""The c2s session data, its injected configuration, clock, randomness and SASL mechanisms, and
the feature port."""

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

    @property
    def tls_required(self) -> bool:
        return self.tls_mode == "starttls"


class Random(Protocol):
    """Every random value a c2s machine consumes, so a replay can prime them."""

    def stream_id(self) -> str: ...
    def nonce(self) -> str: ...
    def resource(self) -> str: ...
    def iq_id(self) -> str: ...


# Makes the SASL mechanism a client asked for: (name, session data, offered names) -> a
# mechanism of xmpp.sasl, or None when the name is not one on offer. A replay hands in one that
# plays a log's recorded outcomes; None means fsm.c2s's own.
MechanismFactory = Callable[[str, Any, list[str]], Any]


@dataclass(frozen=True, slots=True)
class Env:
    """What the machine consumes from outside, injected so that a replay can prime it."""

    clock: Callable[[], float]
    random: Random
    mechanisms: MechanismFactory | None = None


class Features(Protocol):
    """The port to features/ (features/registry.py's Registry): the handlers and hooks."""

    def stream_features(self, data: Any) -> list[etree._Element]:
        """Extra stream features after authentication (beside bind and session)."""

    def handle_iq(self, iq: etree._Element, data: Any) -> list | None:
        """Actions answering an IQ addressed to the server or to an account's bare JID;
        None when no feature handles the IQ's namespace."""

    def run(self, hook: str, stanza: etree._Element | None, data: Any) -> tuple[Any, list, bool]:
        """Run a session hook's subscribers in order: (data, actions, whether one stopped the
        chain). Hooks: client_presence, client_message, client_iq, deliver, session_opened,
        session_closed (stanza None for the last two), roster_changed."""

    def memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        """A value built once per key (stream features shared by every session)."""


class NoFeatures:
    """No features at all: every hook runs no subscriber."""

    def stream_features(self, data: Any) -> list[etree._Element]:
        return []

    def handle_iq(self, iq: etree._Element, data: Any) -> list | None:
        return None

    def run(self, hook: str, stanza: etree._Element | None, data: Any) -> tuple[Any, list, bool]:
        return data, [], False

    def memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        return build()


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
    features: Features = field(default_factory=NoFeatures)
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
