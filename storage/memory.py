"""In-memory stores (dicts under a lock) for replays and unit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from storage.accounts import AccountExists, NoSuchAccount
from xmpp.sasl import ScramCredentials


def _checked(credentials: dict[str, ScramCredentials]) -> dict[str, ScramCredentials]:
    for hash_name, c in credentials.items():
        if hash_name != c.hash_name:
            raise ValueError(f"credentials for {c.hash_name!r} filed under {hash_name!r}")
    return dict(credentials)  # our own copy; ScramCredentials itself is frozen


class MemoryAccountStore:
    """AccountStore in a dict keyed by (domain, username); safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], dict[str, ScramCredentials]] = {}

    def create(self, username: str, domain: str, credentials: dict[str, ScramCredentials]) -> None:
        credentials = _checked(credentials)
        with self._lock:
            if (domain, username) in self._accounts:
                raise AccountExists(f"{username}@{domain}")
            self._accounts[(domain, username)] = credentials

    def set_credentials(
        self, username: str, domain: str, credentials: dict[str, ScramCredentials]
    ) -> None:
        credentials = _checked(credentials)
        with self._lock:
            if (domain, username) not in self._accounts:
                raise NoSuchAccount(f"{username}@{domain}")
            self._accounts[(domain, username)] = credentials

    def delete(self, username: str, domain: str) -> None:
        with self._lock:
            if self._accounts.pop((domain, username), None) is None:
                raise NoSuchAccount(f"{username}@{domain}")

    def exists(self, username: str, domain: str) -> bool:
        with self._lock:
            return (domain, username) in self._accounts

    def credentials(self, username: str, domain: str, hash_name: str) -> ScramCredentials | None:
        with self._lock:
            return self._accounts.get((domain, username), {}).get(hash_name)

    def list(self, domain: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
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
        with self._lock:
            for domain, username, credentials in checked:
                if (domain, username) not in self._accounts:
                    created += 1
                self._accounts[(domain, username)] = credentials
        return created, len(checked) - created
