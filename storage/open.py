"""open_storage(url): the stores behind one database URL, chosen once by xmppd/.

sqlite:///var/lib/xmppd/db.sqlite3   SQLite file /var/lib/xmppd/db.sqlite3 (parent
                                     directories made, schema migrated). The path after
                                     `sqlite://` must be absolute; SQLAlchemy's four-slash
                                     form sqlite:////var/... names the same file.
memory: (or memory://)              in-memory stores (replays, tests); nothing persists
postgresql://user:pw@host/db         PostgreSQL through psycopg 3 (`pip install
                                     'psycopg[binary]'`); schema migrated. Also
                                     postgresql+<driver>://.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from storage.accounts import AccountStore
from storage.im import LastActivityStore, OfflineStore, PrivateStore, RosterStore, VCardStore
from storage.memory import MemoryAccountStore
from storage.memory_im import (
    MemoryLastActivityStore,
    MemoryOfflineStore,
    MemoryPrivateStore,
    MemoryRosterStore,
    MemoryVCardStore,
)
from storage.sql import (
    SqlAccountStore,
    SqlLastActivityStore,
    SqlOfflineStore,
    SqlPrivateStore,
    SqlRosterStore,
    SqlVCardStore,
    migrate,
    postgresql_engine,
    sqlite_engine,
)


class Storage:
    """The stores of one database. Their calls block: run them on a thread pool."""

    def __init__(
        self,
        accounts: AccountStore,
        *,
        rosters: RosterStore,
        offline: OfflineStore,
        vcards: VCardStore,
        private: PrivateStore,
        last_activity: LastActivityStore,
        on_close: Callable[[], None] | None = None,
    ):
        self.accounts = accounts
        self.rosters = rosters
        self.offline = offline
        self.vcards = vcards
        self.private = private
        self.last_activity = last_activity
        self._on_close = on_close

    def close(self) -> None:
        """Release connections; idempotent."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_storage(url: str) -> Storage:
    """The stores behind `url` (see the module docstring). Raises ValueError for an unknown
    scheme or a relative SQLite path, ImportError naming the package of a missing driver,
    storage.sql.SchemaTooNew for a database newer than this code."""
    scheme = url.partition(":")[0].lower()
    if scheme == "memory":
        return memory_storage()
    if scheme == "sqlite":
        return _sql_storage(sqlite_engine(_sqlite_path(url)))
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return _sql_storage(postgresql_engine(url))
    raise ValueError(f"unknown storage URL scheme {scheme!r} in {url!r}")


def memory_storage() -> Storage:
    """Fresh in-memory stores sharing one lock (an account's deletion deletes its data)."""
    accounts = MemoryAccountStore()
    return Storage(
        accounts,
        rosters=MemoryRosterStore(accounts),
        offline=MemoryOfflineStore(accounts),
        vcards=MemoryVCardStore(accounts),
        private=MemoryPrivateStore(accounts),
        last_activity=MemoryLastActivityStore(accounts),
    )


def sql_storage(engine: Engine) -> Storage:
    """The SQL stores on an engine whose schema is up to date; closing disposes the engine."""
    return Storage(
        SqlAccountStore(engine),
        rosters=SqlRosterStore(engine),
        offline=SqlOfflineStore(engine),
        vcards=SqlVCardStore(engine),
        private=SqlPrivateStore(engine),
        last_activity=SqlLastActivityStore(engine),
        on_close=engine.dispose,
    )


def _sqlite_path(url: str) -> Path:
    rest = url[len("sqlite:") :]
    if not rest.startswith("///") or not rest.strip("/"):
        raise ValueError(f"SQLite URL must be sqlite:///absolute/path: {url!r}")
    path = Path("/" + rest.lstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _sql_storage(engine: Engine) -> Storage:
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return sql_storage(engine)
