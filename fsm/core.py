"""The gen_fsm core: the events a machine consumes, the actions it returns, and `step`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from lxml import etree

from xmpp.stream import StreamBroken, StreamClose, StreamElement, StreamOpen

__all__ = [
    "StreamOpen",
    "StreamElement",
    "StreamClose",
    "StreamBroken",
    "TLSEstablished",
    "Timeout",
    "Deliver",
    "CredentialsLoaded",
    "PasswordChecked",
    "Kick",
    "ConnectionLost",
    "SessionReplaced",
    "SessionOpened",
    "Send",
    "SendHeader",
    "SendClose",
    "StartTLS",
    "RestartStream",
    "LoadCredentials",
    "CheckPassword",
    "OpenSession",
    "CloseSession",
    "SetPresence",
    "Route",
    "SetTimer",
    "CancelTimer",
    "Stop",
    "Transition",
    "step",
]

# --- events beyond what the parser yields ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSEstablished:
    """The TLS handshake finished. `channel_bindings` maps a RFC 5929/9266 type name
    ('tls-unique', 'tls-server-end-point') to its data; `version` is e.g. 'TLSv1.3'."""

    version: str
    channel_bindings: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Timeout:
    """A timer set with SetTimer fired."""

    name: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """A stanza routed to this session, to be written to the client."""

    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class CredentialsLoaded:
    """Answer to LoadCredentials: the stored SCRAM credentials for the hash asked, or None when
    there is no such account."""

    username: str
    credentials: Any  # xmpp.sasl.ScramCredentials | None


@dataclass(frozen=True, slots=True)
class PasswordChecked:
    """Answer to CheckPassword."""

    username: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Kick:
    """Close the stream with this stream error (admin kick, shutdown, crash clean-up)."""

    condition: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class SessionReplaced:
    """Another connection bound the same full JID: RFC 6120 §7.7.2.2, close with <conflict/>."""


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """Answer to OpenSession: `error` is None on success, else the stanza error condition
    (e.g. resource-constraint when the account has too many sessions)."""

    jid: Any
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The socket closed or failed under us."""

    reason: str = ""


# --- actions: plain data carried out by the hosting actor -----------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    element: etree._Element


@dataclass(frozen=True, slots=True)
class SendHeader:
    """Write our stream header (with the XML declaration) with these attributes."""

    attrs: dict[str, str]


@dataclass(frozen=True, slots=True)
class SendClose:
    """Write </stream:stream>."""


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Begin the server-side TLS handshake after <proceed/> has been written; TLSEstablished
    follows. The stream parser is reset, as RFC 6120 §5.4.3.3 requires."""


@dataclass(frozen=True, slots=True)
class RestartStream:
    """Discard the parser and start a new one: the next bytes begin a new stream (after SASL)."""


@dataclass(frozen=True, slots=True)
class LoadCredentials:
    """Fetch the SCRAM credentials of `username`@`domain` for `hash_name` off the scheduler;
    CredentialsLoaded comes back."""

    username: str
    domain: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class EnsureAccount:
    """Test mode only (any password logs in): create the account if it does not exist, as
    Prosody's insecure authentication lets any user in; before anything else the account does."""

    username: str
    domain: str


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Check a PLAIN password against the stored credentials on the thread pool; PasswordChecked
    comes back."""

    username: str
    domain: str
    password: str


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Register this connection in the session manager under `jid` (replacing any session bound
    to the same full JID, which gets SessionReplaced)."""

    jid: Any  # xmpp.jid.JID


@dataclass(frozen=True, slots=True)
class CloseSession:
    jid: Any


@dataclass(frozen=True, slots=True)
class SetPresence:
    """Record the session's availability and priority in the session manager."""

    jid: Any
    available: bool
    priority: int


@dataclass(frozen=True, slots=True)
class Route:
    """Hand a stanza (with `from` already stamped) to the router."""

    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """End the connection: write the stream error (if any) and </stream:stream>, release the
    session, close the socket once the output has been flushed."""

    condition: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """Run `call(storage, *args)` on the thread pool (storage calls block); QueryDone comes
    back with the result, and the machine hands it to `then(result, data)`, which returns
    (new data, actions). `then` is a module-level function or a functools.partial of one."""

    call: Callable
    args: tuple
    then: Callable


@dataclass(frozen=True, slots=True)
class QueryDone:
    """Answer to Query: `result` is the call's value, or the exception it raised."""

    then: Callable
    result: Any


@dataclass(frozen=True, slots=True)
class DeliverToUser:
    """Hand a copy of `stanza` to every session of the account `bare` (with 'to' set to each
    session's full JID, unless `keep_to`: a contact's stanza to the bare JID keeps its address,
    as Prosody delivers it): to those that asked for the roster when `interested_only`, to the
    available ones when `available_only`; never to `except_jid`."""

    bare: Any  # xmpp.jid.JID
    stanza: etree._Element
    interested_only: bool = False
    available_only: bool = False
    except_jid: Any = None
    keep_to: bool = False


@dataclass(frozen=True, slots=True)
class SetSessionInfo:
    """Record what the session manager tells others about this session: its last presence
    (for probes), whether it asked for the roster (roster pushes go to those only), and the
    contacts subscribed to its presence (probes of an online account are answered from it)."""

    jid: Any
    presence: etree._Element | None = None
    interested: bool | None = None
    pres_from: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class RoutePresencesOf:
    """Route the current presence of each available session of account `bare` to `to` (as
    unavailable when `unavailable`); when it has none, route `otherwise` if given."""

    bare: Any
    to: str
    unavailable: bool = False
    otherwise: etree._Element | None = None
    except_jid: Any = None


class Transition(NamedTuple):
    state: str
    data: Any
    actions: list


StateFunction = Callable[[Any, Any], Transition]


def step(states: dict[str, StateFunction], state: str, event: Any, data: Any) -> Transition:
    """Run one event through the state function named `state`."""
    return states[state](event, data)
