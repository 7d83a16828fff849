"""In-memory stores (dicts under a lock) for replays and unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from storage.accounts import AccountExists, NoSuchAccount
from xmpp.sasl import ScramCredentials


def _checked(credentials: dict[str, ScramCredentials]) -> dict[str, ScramCredentials]:
    for hash_name, c in credentials.items():
        if hash_name != c.hash_name:
            raise ValueError(f"credentials for {c.hash_name!r} filed under {hash_name!r}")
    return dict(credentials)  # our own copy; ScramCredentials itself is frozen


class MemoryAccountStore:
    """AccountStore in a dict keyed by (domain, username); safe to share between threads.

    The memory stores of storage.memory_im share its lock and are told of deletions (their
    ON DELETE CASCADE), so an account and its data change together, as in one database."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by every store of this "database"
        self._accounts: dict[tuple[str, str], dict[str, ScramCredentials]] = {}
        self._on_delete: list[Callable[[tuple[str, str]], None]] = []

    def has(self, key: tuple[str, str]) -> bool:
        """Whether (domain, username) is an account; for callers holding `lock`."""
        return key in self._accounts

    def on_delete(self, forget: Callable[[tuple[str, str]], None]) -> None:
        """Call forget((domain, username)) whenever an account is deleted, under `lock`."""
        with self.lock:
            self._on_delete.append(forget)

    def create(self, username: str, domain: str, credentials: dict[str, ScramCredentials]) -> None:
        credentials = _checked(credentials)
        with self.lock:
            if (domain, username) in self._accounts:
                raise AccountExists(f"{username}@{domain}")
            self._accounts[(domain, username)] = credentials

    def set_credentials(
        self, username: str, domain: str, credentials: dict[str, ScramCredentials]
    ) -> None:
        credentials = _checked(credentials)
        with self.lock:
            if (domain, username) not in self._accounts:
                raise NoSuchAccount(f"{username}@{domain}")
            self._accounts[(domain, username)] = credentials

    def delete(self, username: str, domain: str) -> None:
        with self.lock:
            if self._accounts.pop((domain, username), None) is None:
                raise NoSuchAccount(f"{username}@{domain}")
            for forget in self._on_delete:
                forget((domain, username))

    def exists(self, username: str, domain: str) -> bool:
        with self.lock:
            return (domain, username) in self._accounts

    def credentials(self, username: str, domain: str, hash_name: str) -> ScramCredentials | None:
        with self.lock:
            return self._accounts.get((domain, username), {}).get(hash_name)

    def list(self, domain: str | None = None) -> list[tuple[str, str]]:
        with self.lock:
            keys = sorted(k for k in self._accounts if domain is None or k[0] == domain)
        return [(username, d) for d, username in keys]

    def put_many(
        self, rows: Iterable[tuple[str, str, dict[str, ScramCredentials]]]
    ) -> tuple[int, int]:
        """A row whose account exists, or came earlier in `rows`, counts as updated and
        replaces that account's credentials; the last row for an account wins."""
        # Checked before taking the lock so a bad row changes nothing (one transaction).
        checked = [(d, u, _checked(c)) for u, d, c in rows]
        created = 0
        with self.lock:
            for domain, username, credentials in checked:
                if (domain, username) not in self._accounts:
                    created += 1
                self._accounts[(domain, username)] = credentials
        return created, len(checked) - created
