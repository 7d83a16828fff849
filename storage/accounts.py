"""The account store: user accounts with their SCRAM credentials, never a password."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from xmpp.sasl import ScramCredentials


class AccountExists(Exception):
    """create() of an account that is already there."""


class NoSuchAccount(Exception):
    """An operation on an account that does not exist."""


class AccountStore(Protocol):
    """Accounts are keyed by (username, domain), both already normalised (PRECIS) by callers.
    `credentials` maps a hash name ('SHA-1', 'SHA-256', 'SHA-512') to its ScramCredentials."""

    def create(self, username: str, domain: str, credentials: dict[str, ScramCredentials]) -> None:
        """Raises AccountExists."""

    def set_credentials(
        self, username: str, domain: str, credentials: dict[str, ScramCredentials]
    ) -> None:
        """Replace every stored credential of the account. Raises NoSuchAccount."""

    def delete(self, username: str, domain: str) -> None:
        """Raises NoSuchAccount."""

    def exists(self, username: str, domain: str) -> bool: ...

    def credentials(self, username: str, domain: str, hash_name: str) -> ScramCredentials | None:
        """The stored credentials for one hash, or None (no account, or none for that hash)."""

    def list(self, domain: str | None = None) -> list[tuple[str, str]]:
        """(username, domain) pairs sorted by domain then username."""

    def put_many(
        self, rows: Iterable[tuple[str, str, dict[str, ScramCredentials]]]
    ) -> tuple[int, int]:
        """Create or update many accounts in one transaction; returns (created, updated)."""
