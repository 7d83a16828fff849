"""The instant-messaging stores of storage.im in memory, for replays and unit tests.

Each store belongs to a MemoryAccountStore: it holds that store's lock for every call (one
lock for the whole "database", so a write and the account's deletion never interleave) and
forgets a user's data when the account is deleted, as SQL's ON DELETE CASCADE does."""

from __future__ import annotations

from storage.accounts import NoSuchAccount
from storage.im import RosterItem, checked_roster_item
from storage.memory import MemoryAccountStore

Key = tuple[str, str]  # (domain, username)


class _UserData:
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._accounts = accounts
        self._lock = accounts.lock
        accounts.on_delete(self._forget)

    def _forget(self, key: Key) -> None:
        raise NotImplementedError

    def _require_account(self, key: Key) -> None:
        if not self._accounts.has(key):
            raise NoSuchAccount(f"{key[1]}@{key[0]}")


class MemoryRosterStore(_UserData):
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._items: dict[Key, dict[str, RosterItem]] = {}
        self._versions: dict[Key, int] = {}
        super().__init__(accounts)

    def _forget(self, key: Key) -> None:
        self._items.pop(key, None)
        self._versions.pop(key, None)

    def items(self, username: str, domain: str) -> tuple[str, list[RosterItem]]:
        key = (domain, username)
        with self._lock:
            items = sorted(self._items.get(key, {}).values(), key=lambda item: item.jid)
            return str(self._versions.get(key, 0)), items

    def get(self, username: str, domain: str, contact: str) -> RosterItem | None:
        with self._lock:
            return self._items.get((domain, username), {}).get(contact)

    def pending_requests(self, username: str, domain: str) -> list[str]:
        _version, items = self.items(username, domain)
        return [item.pending_in_stanza for item in items if item.pending_in_stanza]

    def put(self, username: str, domain: str, item: RosterItem) -> str:
        item = checked_roster_item(item)
        key = (domain, username)
        with self._lock:
            self._require_account(key)
            self._items.setdefault(key, {})[item.jid] = item
            return self._bump(key)

    def delete(self, username: str, domain: str, contact: str) -> str | None:
        key = (domain, username)
        with self._lock:
            if self._items.get(key, {}).pop(contact, None) is None:
                return None
            return self._bump(key)

    def version(self, username: str, domain: str) -> str:
        with self._lock:
            return str(self._versions.get((domain, username), 0))

    def count(self, username: str, domain: str) -> int:
        with self._lock:
            return len(self._items.get((domain, username), {}))

    def _bump(self, key: Key) -> str:
        self._versions[key] = version = self._versions.get(key, 0) + 1
        return str(version)


class MemoryOfflineStore(_UserData):
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._messages: dict[Key, list[str]] = {}
        super().__init__(accounts)

    def _forget(self, key: Key) -> None:
        self._messages.pop(key, None)

    def push(self, username: str, domain: str, stanza: str, limit: int) -> bool:
        """False too when the user has no account."""
        key = (domain, username)
        with self._lock:
            if not self._accounts.has(key):
                return False
            messages = self._messages.setdefault(key, [])
            if len(messages) >= limit:
                return False
            messages.append(stanza)
            return True

    def count(self, username: str, domain: str) -> int:
        with self._lock:
            return len(self._messages.get((domain, username), ()))

    def pop_all(self, username: str, domain: str) -> list[str]:
        with self._lock:
            return self._messages.pop((domain, username), [])


class MemoryVCardStore(_UserData):
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._vcards: dict[Key, str] = {}
        super().__init__(accounts)

    def _forget(self, key: Key) -> None:
        self._vcards.pop(key, None)

    def get(self, username: str, domain: str) -> str | None:
        with self._lock:
            return self._vcards.get((domain, username))

    def set(self, username: str, domain: str, vcard: str | None) -> None:
        """Raises NoSuchAccount when storing (not when deleting) for a user with no account."""
        key = (domain, username)
        with self._lock:
            if vcard is None:
                self._vcards.pop(key, None)
                return
            self._require_account(key)
            self._vcards[key] = vcard


class MemoryPrivateStore(_UserData):
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._xml: dict[Key, dict[str, str]] = {}
        super().__init__(accounts)

    def _forget(self, key: Key) -> None:
        self._xml.pop(key, None)

    def get(self, username: str, domain: str, key: str) -> str | None:
        with self._lock:
            return self._xml.get((domain, username), {}).get(key)

    def set(self, username: str, domain: str, key: str, xml: str) -> None:
        """Raises NoSuchAccount."""
        user = (domain, username)
        with self._lock:
            self._require_account(user)
            self._xml.setdefault(user, {})[key] = xml


class MemoryLastActivityStore(_UserData):
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._last: dict[Key, tuple[float, str]] = {}
        super().__init__(accounts)

    def _forget(self, key: Key) -> None:
        self._last.pop(key, None)

    def get(self, username: str, domain: str) -> tuple[float, str] | None:
        with self._lock:
            return self._last.get((domain, username))

    def set(self, username: str, domain: str, stamp: float, status: str) -> None:
        """Raises NoSuchAccount."""
        key = (domain, username)
        with self._lock:
            self._require_account(key)
            self._last[key] = (float(stamp), status)
