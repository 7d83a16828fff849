"""The session manager: which sessions are bound to which full JIDs, where each lives (node and
session address), and what it tells others (presence, roster interest, who sees its presence).

The interface is the only way to change a session. Changes are commands; `open` answers
through a callback, so an implementation that needs a round trip (Redis) answers later. Reads
(`get`, `resources`) are served from what the node knows, never from a round trip."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from xmpp.jid import JID


class TooManySessions(Exception):
    """The account is at its limit of simultaneous sessions (RFC 6120 §7.6.2.1)."""


@dataclass(slots=True)
class SessionEntry:
    jid: JID
    node: str  # the node holding the session
    address: str  # the session's address on that node (its connection id)
    available: bool = False
    priority: int = 0
    presence: Any = None  # the last presence it broadcast (answers probes)
    interested: bool = False  # asked for the roster: roster pushes go to it
    pres_from: frozenset[str] | None = None  # contacts subscribed to it; None: not known yet
    version: int = 0  # orders binds of one full JID across a cluster (newest wins)
    directed: frozenset[str] = frozenset()  # whom it sent directed presence


@dataclass(frozen=True, slots=True)
class Opened:
    """The answer to `open`: `replaced` is the entry it displaced (same full JID), if any;
    `error` is a stanza error condition when the session could not be opened."""

    jid: JID
    replaced: SessionEntry | None = None
    error: str | None = None


class SessionManager(Protocol):
    def open(self, jid: JID, node: str, address: str, max_sessions: int,
             answer: Callable[[Opened], None]) -> None:  # fmt: skip
        """Bind `jid` to the session at (node, address); the newest session wins."""

    def close(self, jid: JID, address: str) -> bool:
        """Compare-and-delete: unbind `jid` if it is still bound to `address` (a replaced
        session must not remove its successor). Returns whether anything was removed."""

    def set_presence(self, jid: JID, address: str, available: bool, priority: int) -> None: ...

    def set_info(self, jid: JID, address: str, presence: Any = None, interested: bool | None = None,
                 pres_from: frozenset[str] | None = None,
                 directed: frozenset[str] | None = None) -> None:  # fmt: skip
        """Record what others learn of the session (None leaves a field as it is)."""

    def get(self, jid: JID) -> SessionEntry | None: ...

    def resources(self, bare: JID) -> list[SessionEntry]: ...

    def count(self) -> int: ...


class SessionTable:
    """Session entries by bare JID and resource, and the reads of the interface."""

    def __init__(self) -> None:
        self._by_user: dict[JID, dict[str, SessionEntry]] = {}

    def get(self, jid: JID) -> SessionEntry | None:
        resources = self._by_user.get(jid.bare)
        return resources.get(jid.resource) if resources else None

    def resources(self, bare: JID) -> list[SessionEntry]:
        return list(self._by_user.get(bare, {}).values())


class LocalSessionManager(SessionTable):
    """Sessions of one node, in dicts; only the scheduler thread touches it."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def open(self, jid: JID, node: str, address: str, max_sessions: int,
             answer: Callable[[Opened], None]) -> None:  # fmt: skip
        answer(self._open(jid, node, address, max_sessions))

    def _open(self, jid: JID, node: str, address: str, max_sessions: int) -> Opened:
        resources = self._by_user.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        if old is None and len(resources) >= max_sessions:
            if not resources:
                del self._by_user[jid.bare]
            return Opened(jid, error="resource-constraint")
        resources[jid.resource] = SessionEntry(jid, node, address)
        if old is None:
            self._count += 1
        return Opened(jid, replaced=old)

    def close(self, jid: JID, address: str) -> bool:
        resources = self._by_user.get(jid.bare)
        entry = resources.get(jid.resource) if resources else None
        if entry is None or entry.address != address:
            return False
        del resources[jid.resource]
        if not resources:
            del self._by_user[jid.bare]
        self._count -= 1
        return True

    def set_presence(self, jid: JID, address: str, available: bool, priority: int) -> None:
        entry = self._own(jid, address)
        if entry is not None:
            entry.available = available
            entry.priority = priority

    def set_info(self, jid: JID, address: str, presence: Any = None, interested: bool | None = None,
                 pres_from: frozenset[str] | None = None,
                 directed: frozenset[str] | None = None) -> None:  # fmt: skip
        entry = self._own(jid, address)
        if entry is None:
            return
        if directed is not None:
            entry.directed = directed
        if presence is not None:
            entry.presence = presence
        if interested is not None:
            entry.interested = interested
        if pres_from is not None:
            entry.pres_from = pres_from

    def _own(self, jid: JID, address: str) -> SessionEntry | None:
        entry = self.get(jid)
        return entry if entry is not None and entry.address == address else None

    def count(self) -> int:
        return self._count
