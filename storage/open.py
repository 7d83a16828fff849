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
from storage.memory import MemoryAccountStore
from storage.sql import SqlAccountStore, migrate, postgresql_engine, sqlite_engine


class Storage:
    """The stores of one database. Their calls block: run them on a thread pool."""

    def __init__(self, accounts: AccountStore, on_close: Callable[[], None] | None = None):
        self.accounts = accounts
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
        return Storage(MemoryAccountStore())
    if scheme == "sqlite":
        return _sql_storage(sqlite_engine(_sqlite_path(url)))
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return _sql_storage(postgresql_engine(url))
    raise ValueError(f"unknown storage URL scheme {scheme!r} in {url!r}")


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
    return Storage(SqlAccountStore(engine), on_close=engine.dispose)
