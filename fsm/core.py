"""The gen_fsm core: the events a machine consumes and the actions it returns (the routing
actions are routing/actions.py's, re-exported here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from lxml import etree

from routing.actions import DeliverToUser, Route, RoutePresencesOf, Work
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
    "DeliverToUser",
    "RoutePresencesOf",
    "Work",
    "Query",
    "QueryDone",
    "SetSessionInfo",
    "SetTimer",
    "CancelTimer",
    "Stop",
    "Transition",
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
class SetSessionInfo:
    """Record what the session manager tells others about this session: its last presence
    (for probes), whether it asked for the roster (roster pushes go to those only), and the
    contacts subscribed to its presence (probes of an online account are answered from it)."""

    jid: Any
    presence: etree._Element | None = None
    interested: bool | None = None
    pres_from: frozenset[str] | None = None


_set = object.__setattr__


def replace(obj: Any, /, **changes: Any) -> Any:
    """dataclasses.replace for the frozen, slotted data machines carry, in half its time (it
    runs on most events): the slots are copied and the changes set, without __init__ (none of
    these classes has a __post_init__). Other objects go to dataclasses.replace."""
    cls = type(obj)
    names = getattr(cls, "__slots__", None)
    if names is None or hasattr(cls, "__post_init__"):
        return dataclasses.replace(obj, **changes)
    new = object.__new__(cls)
    for name in names:
        _set(new, name, getattr(obj, name))
    fields = cls.__dataclass_fields__
    for name, value in changes.items():
        if name not in fields:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        _set(new, name, value)
    return new


class Transition(NamedTuple):
    state: str
    data: Any
    actions: list


StateFunction = Callable[[Any, Any], Transition]
