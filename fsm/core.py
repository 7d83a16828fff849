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


# What CredentialsLoaded and PasswordChecked carry when the account database could not answer
# (the login fails with temporary-auth-failure: the password may well be right).
AUTH_UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class CredentialsLoaded:
    """Answer to LoadCredentials: the stored SCRAM credentials for the hash asked, None when
    there is no such account, or AUTH_UNAVAILABLE."""

    username: str
    credentials: Any  # xmpp.sasl.ScramCredentials | None | AUTH_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class PasswordChecked:
    """Answer to CheckPassword (a bool, or AUTH_UNAVAILABLE)."""

    username: str
    ok: bool | str


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
    (for probes), whether it asked for the roster (roster pushes go to those only), the
    contacts subscribed to its presence (probes of an online account are answered from it), and
    whom it sent directed presence (told it left if its node dies)."""

    jid: Any
    presence: etree._Element | None = None
    interested: bool | None = None
    pres_from: frozenset[str] | None = None
    directed: frozenset[str] | None = None


def replace(obj: Any, /, **changes: Any) -> Any:
    """dataclasses.replace for the frozen, slotted data machines carry, in a fifth of its
    time (it runs on most events): each class gets a copier, compiled once, that copies the
    slots through their descriptors and sets the changes, without __init__ (none of these
    classes has a __post_init__). Other objects go to dataclasses.replace."""
    copier = _copiers.get(type(obj))
    if copier is None:
        copier = _copiers[type(obj)] = _copier(type(obj))
    return copier(obj, changes)


_copiers: dict[type, Callable[[Any, dict], Any]] = {}


def _copier(cls: type) -> Callable[[Any, dict], Any]:
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    slots = {name: _slot(cls, name) for name in names}
    if not names or None in slots.values() or hasattr(cls, "__post_init__"):
        return lambda obj, changes: dataclasses.replace(obj, **changes)
    setters = {name: slot.__set__ for name, slot in slots.items()}
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "setters": setters}
    lines = ["def copier(obj, changes):", "    copy = new(cls)"]
    for i, name in enumerate(names):
        scope[f"set{i}"] = setters[name]
        lines.append(f"    set{i}(copy, obj.{name})")
    lines += [
        "    for name, value in changes.items():",
        "        setter = setters.get(name)",
        "        if setter is None:",
        f"            raise TypeError(f'{cls.__name__} has no field {{name!r}}')",
        "        setter(copy, value)",
        "    return copy",
    ]
    exec("\n".join(lines), scope)  # noqa: S102 - built here from the class's own field names
    return scope["copier"]


def _slot(cls: type, name: str) -> Any:
    """The member descriptor of a slot `name`, from the class or a base; None if not a slot."""
    for klass in cls.__mro__:
        slot = klass.__dict__.get(name)
        if slot is not None:
            return slot if type(slot).__name__ == "member_descriptor" else None
    return None


class Transition(NamedTuple):
    state: str
    data: Any
    actions: list


StateFunction = Callable[[Any, Any], Transition]
