"""AccountStore on SQL (SQLite or PostgreSQL) with SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from storage.accounts import AccountExists, NoSuchAccount
from storage.sql.engine import PointQuery, read_transaction, write_transaction
from storage.sql.schema import accounts, scram_credentials
from xmpp.sasl import ScramCredentials

# Keys per IN (...) lookup in put_many: far below SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500

_creds = scram_credentials.c
_acct = accounts.c

_delete_credentials = delete(scram_credentials).where(
    _creds.domain == bindparam("b_domain"), _creds.username == bindparam("b_username")
)

_account_query = select(_acct.username).where(
    _acct.domain == bindparam("a_domain"), _acct.username == bindparam("a_username")
)
_credentials_query = select(
    _creds.salt, _creds.iterations, _creds.stored_key, _creds.server_key
).where(
    _creds.domain == bindparam("c_domain"),
    _creds.username == bindparam("c_username"),
    _creds.hash_name == bindparam("c_hash"),
)


def _credential_rows(
    username: str, domain: str, credentials: dict[str, ScramCredentials]
) -> list[dict]:
    rows = []
    for hash_name, c in credentials.items():
        if hash_name != c.hash_name:
            raise ValueError(f"credentials for {c.hash_name!r} filed under {hash_name!r}")
        rows.append(
            {
                "username": username,
                "domain": domain,
                "hash_name": c.hash_name,
                "salt": c.salt,
                "iterations": c.iterations,
                "stored_key": c.stored_key,
                "server_key": c.server_key,
            }
        )
    return rows


def _account_is_there(conn: Connection, username: str, domain: str, lock: bool) -> bool:
    query = select(_acct.username).where(_acct.domain == domain, _acct.username == username)
    if lock:  # PostgreSQL: hold the row until commit; SQLite: a no-op (the write lock is held)
        query = query.with_for_update()
    return conn.execute(query).first() is not None


class SqlAccountStore:
    """AccountStore on a SQLAlchemy engine whose schema `migrate()` has brought up to date.
    Every method is one blocking transaction; call them from a thread pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # read on every login (credentials) and every presence probe (exists)
        self._credentials = PointQuery(engine, _credentials_query)
        self._account = PointQuery(engine, _account_query)

    def create(self, username: str, domain: str, credentials: dict[str, ScramCredentials]) -> None:
        rows = _credential_rows(username, domain, credentials)
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(
                    insert(accounts).values(
                        username=username, domain=domain, created_at=datetime.now(UTC)
                    )
                )
                if rows:
                    conn.execute(insert(scram_credentials), rows)
        except IntegrityError as exc:
            # The only constraint an insert of a new account and its own credentials can
            # break is the accounts primary key (the credentials are keyed by hash_name).
            raise AccountExists(f"{username}@{domain}") from exc

    def set_credentials(
        self, username: str, domain: str, credentials: dict[str, ScramCredentials]
    ) -> None:
        rows = _credential_rows(username, domain, credentials)
        with write_transaction(self._engine) as conn:
            if not _account_is_there(conn, username, domain, lock=True):
                raise NoSuchAccount(f"{username}@{domain}")
            conn.execute(_delete_credentials, {"b_domain": domain, "b_username": username})
            if rows:
                conn.execute(insert(scram_credentials), rows)

    def delete(self, username: str, domain: str) -> None:
        with write_transaction(self._engine) as conn:
            # Credentials go by ON DELETE CASCADE.
            result = conn.execute(
                delete(accounts).where(_acct.domain == domain, _acct.username == username)
            )
            if result.rowcount == 0:
                raise NoSuchAccount(f"{username}@{domain}")

    def exists(self, username: str, domain: str) -> bool:
        return self._account.first(a_domain=domain, a_username=username) is not None

    def credentials(self, username: str, domain: str, hash_name: str) -> ScramCredentials | None:
        row = self._credentials.first(c_domain=domain, c_username=username, c_hash=hash_name)
        if row is None:
            return None
        return ScramCredentials(
            hash_name, bytes(row.salt), row.iterations, bytes(row.stored_key), bytes(row.server_key)
        )

    def list(self, domain: str | None = None) -> list[tuple[str, str]]:
        query = select(_acct.username, _acct.domain)
        if domain is not None:
            query = query.where(_acct.domain == domain)
        with read_transaction(self._engine) as conn:
            pairs = [(row.username, row.domain) for row in conn.execute(query)]
        # Sorted here rather than by ORDER BY: PostgreSQL's collation is locale-dependent,
        # code-point order is the same everywhere.
        pairs.sort(key=lambda pair: (pair[1], pair[0]))
        return pairs

    def put_many(
        self, rows: Iterable[tuple[str, str, dict[str, ScramCredentials]]]
    ) -> tuple[int, int]:
        """A row whose account exists, or came earlier in `rows`, counts as updated and
        replaces that account's credentials; the last row for an account wins."""
        latest: dict[tuple[str, str], list[dict]] = {}
        total = 0
        for username, domain, credentials in rows:
            latest[(domain, username)] = _credential_rows(username, domain, credentials)
            total += 1
        if not latest:
            return 0, 0
        now = datetime.now(UTC)
        with write_transaction(self._engine) as conn:
            existing = _existing_keys(conn, latest.keys())
            new = [
                {"username": u, "domain": d, "created_at": now}
                for d, u in latest
                if (d, u) not in existing
            ]
            if new:
                conn.execute(insert(accounts), new)
            if existing:
                conn.execute(
                    _delete_credentials,
                    [{"b_domain": d, "b_username": u} for d, u in existing],
                )
            credential_rows = [row for rs in latest.values() for row in rs]
            if credential_rows:
                conn.execute(insert(scram_credentials), credential_rows)
        return len(new), total - len(new)


def _existing_keys(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (domain, username) keys are accounts already, looked up in chunks per domain."""
    by_domain: dict[str, list[str]] = {}
    for domain, username in keys:
        by_domain.setdefault(domain, []).append(username)
    found: set[tuple[str, str]] = set()
    for domain, usernames in by_domain.items():
        for start in range(0, len(usernames), _CHUNK):
            chunk = usernames[start : start + _CHUNK]
            query = select(_acct.username).where(_acct.domain == domain, _acct.username.in_(chunk))
            found.update((domain, u) for u in conn.scalars(query))
    return found
