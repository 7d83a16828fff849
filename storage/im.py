"""Store interfaces of instant messaging: rosters, offline messages, vCards, private XML, last
activity. Users are (username, domain) pairs, like accounts; deleting an account deletes all.

Data belongs to an account: a write that would store something for a user without an account
raises storage.accounts.NoSuchAccount (OfflineStore.push returns False instead), while reads
for such a user find nothing and removals remove nothing. Implementations: storage.sql.im
(SQL) and storage.memory_im (memory), reached as attributes of storage.open.Storage."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in a roster, with the RFC 6121 subscription state split into its parts:
    `subscription` (none/to/from/both), `ask` (our subscribe awaits their answer: pending out),
    `pending_in` (their subscribe awaits our answer; `pending_in_stanza` keeps the request, XML,
    to deliver again at login), `approved` (pre-approval, RFC 6121 §3.4)."""

    jid: str  # the contact's bare JID, normalised
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    pending_in: bool = False
    pending_in_stanza: str | None = None
    approved: bool = False
    groups: tuple[str, ...] = field(default_factory=tuple)


def checked_roster_item(item: RosterItem) -> RosterItem:
    """The item as stores keep it (groups as a tuple), or ValueError for an unknown
    subscription or a group that is not a string."""
    if item.subscription not in SUBSCRIPTIONS:
        raise ValueError(f"unknown subscription {item.subscription!r} for {item.jid!r}")
    groups = tuple(item.groups)
    if not all(isinstance(g, str) for g in groups):
        raise ValueError(f"roster groups must be strings: {groups!r}")
    return item if groups is item.groups else replace(item, groups=groups)


class RosterStore(Protocol):
    """A user's contacts. Every put and delete increments the roster's version (XEP-0237) in
    the same transaction as the change; versions are decimal strings that only grow."""

    def items(self, username: str, domain: str) -> tuple[str, list[RosterItem]]:
        """(version, items sorted by jid). The version of an empty, never-changed roster is "0"."""

    def get(self, username: str, domain: str, contact: str) -> RosterItem | None: ...

    def pending_requests(self, username: str, domain: str) -> list[str]:
        """The subscription requests awaiting the user's answer (their stanzas, XML), by
        the contact's jid: what an initial presence delivers again (RFC 6121 §3.1.3)."""

    def put(self, username: str, domain: str, item: RosterItem) -> str:
        """Create or replace the item for item.jid; returns the roster's new version.
        Raises ValueError for an unknown subscription, NoSuchAccount for no such user."""

    def delete(self, username: str, domain: str, contact: str) -> str | None:
        """Remove the item; the new version, or None when there was no such item."""

    def version(self, username: str, domain: str) -> str: ...

    def count(self, username: str, domain: str) -> int: ...


class OfflineStore(Protocol):
    """Messages kept for a user with no available resource (XEP-0160), in arrival order."""

    def push(self, username: str, domain: str, stanza: str, limit: int) -> bool:
        """Append the serialised stanza unless the user already has `limit` messages; returns
        whether it was stored."""

    def count(self, username: str, domain: str) -> int: ...

    def pop_all(self, username: str, domain: str) -> list[str]:
        """Remove and return every stored message, oldest first, in one transaction."""


class VCardStore(Protocol):
    def get(self, username: str, domain: str) -> str | None:
        """The stored <vCard xmlns='vcard-temp'/> XML, or None."""

    def set(self, username: str, domain: str, vcard: str | None) -> None:
        """Store (or, with None, delete) the vCard XML."""


class PrivateStore(Protocol):
    """XEP-0049: one XML element per (user, namespace key), where the key is
    'localname namespace' of the stored element."""

    def get(self, username: str, domain: str, key: str) -> str | None: ...

    def set(self, username: str, domain: str, key: str, xml: str) -> None: ...


class LastActivityStore(Protocol):
    """XEP-0012: when a user's last session ended and the status text of its last unavailable
    presence."""

    def get(self, username: str, domain: str) -> tuple[float, str] | None: ...

    def set(self, username: str, domain: str, stamp: float, status: str) -> None: ...
