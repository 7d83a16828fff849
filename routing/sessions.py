"""The session manager: which connections are bound to which full JIDs, with their presence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from xmpp.jid import JID


class TooManySessions(Exception):
    """The account is at its limit of simultaneous sessions (RFC 6120 §7.6.2.1)."""


@dataclass(slots=True)
class SessionEntry:
    jid: JID
    handle: Any  # something with .tell(event): the session's actor ref
    conn_id: str
    available: bool = False
    priority: int = 0
    presence: Any = None  # the last presence it broadcast (answers probes)
    interested: bool = False  # asked for the roster: roster pushes go to it
    pres_from: frozenset[str] | None = None  # contacts subscribed to it; None: not known yet


class SessionManager(Protocol):
    """The interface both the in-process and the Redis (cluster) implementations provide."""

    def open(self, jid: JID, handle: Any, conn_id: str, max_sessions: int) -> Any | None:
        """Bind `jid` to `handle`; returns the handle it replaced (same full JID), if any.
        Raises TooManySessions when the account has `max_sessions` other resources."""

    def close(self, jid: JID, handle: Any) -> bool:
        """Unbind `jid` if it is still bound to `handle` (a replaced session must not remove
        its successor). Returns whether anything was removed."""

    def set_presence(self, jid: JID, available: bool, priority: int) -> None: ...

    def get(self, jid: JID) -> SessionEntry | None: ...

    def resources(self, bare: JID) -> list[SessionEntry]: ...

    def count(self) -> int: ...


class LocalSessionManager:
    """Sessions of one node, in dicts; only the scheduler thread touches it."""

    def __init__(self) -> None:
        self._by_user: dict[JID, dict[str, SessionEntry]] = {}
        self._count = 0

    def open(self, jid: JID, handle: Any, conn_id: str, max_sessions: int) -> Any | None:
        resources = self._by_user.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        if old is None and len(resources) >= max_sessions:
            if not resources:
                del self._by_user[jid.bare]
            raise TooManySessions(str(jid.bare))
        resources[jid.resource] = SessionEntry(jid, handle, conn_id)
        if old is None:
            self._count += 1
            return None
        return old.handle

    def close(self, jid: JID, handle: Any) -> bool:
        resources = self._by_user.get(jid.bare)
        entry = resources.get(jid.resource) if resources else None
        if entry is None or entry.handle is not handle:
            return False
        del resources[jid.resource]
        if not resources:
            del self._by_user[jid.bare]
        self._count -= 1
        return True

    def set_presence(self, jid: JID, available: bool, priority: int) -> None:
        entry = self.get(jid)
        if entry is not None:
            entry.available = available
            entry.priority = priority

    def get(self, jid: JID) -> SessionEntry | None:
        resources = self._by_user.get(jid.bare)
        return resources.get(jid.resource) if resources else None

    def resources(self, bare: JID) -> list[SessionEntry]:
        return list(self._by_user.get(bare, {}).values())

    def count(self) -> int:
        return self._count
