"""Hooks with many subscribers, run in a declared order, any of which may stop the chain (as
ejabberd's hooks with sequence numbers and Prosody's events with priorities).

Session hooks run inside a session's machine, with its data, and are pure: a subscriber gets
(stanza, data) and returns None (nothing to do), Continue or Stop, with actions and, when it
changed them, new session data. Server hooks run on the router's thread for stanzas no session
has taken yet; a subscriber gets (stanza, ServerContext) and returns Continue or Stop with
actions (storage work is the Work action, run on the account's lane)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SESSION_HOOKS = frozenset(
    (
        "client_presence",  # a presence the bound client sent (from stamped)
        "client_message",  # a message the bound client sent
        "client_iq",  # an IQ the bound client sent, before the server answers or routes it
        "deliver",  # a stanza about to be written to the session's client
        "session_opened",  # the resource is bound (stanza: None)
        "session_closed",  # the session ends, whatever the reason (stanza: None)
        "roster_changed",  # a roster push reached the session (stanza: the push)
    )
)
SERVER_HOOKS = frozenset(
    (
        "inbound_presence",  # a subscription stanza or probe to a local account
        "undeliverable_message",  # a message to a local account that no session can take
    )
)
DEFAULT_ORDER = 50


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on with the next subscriber (and, at the end, with what the machine does anyway)."""

    actions: Sequence = ()
    data: Any = None  # the session's new data; None leaves it as it was


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the chain: later subscribers and the machine's own handling are skipped."""

    actions: Sequence = ()
    data: Any = None


HookResult = Continue | Stop | None


@dataclass(frozen=True, slots=True)
class ServerContext:
    """What a server hook may read: the session manager's view and the features' settings."""

    sessions: Any  # routing.sessions.SessionManager
    settings: Any  # features.im.Settings


def hook(name: str, order: int = DEFAULT_ORDER) -> Callable[[Callable], Callable]:
    """Subscribe a function to the hook `name`; lower `order` runs first."""
    if name not in SESSION_HOOKS | SERVER_HOOKS:
        raise ValueError(f"no hook named {name!r}")

    def mark(fn: Callable) -> Callable:
        fn.__dict__.setdefault("xmppd_hooks", []).append((name, order))
        return fn

    return mark
