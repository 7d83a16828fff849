"""SQL storage (SQLAlchemy Core): one code path for SQLite and PostgreSQL."""

from storage.sql.accounts import SqlAccountStore
from storage.sql.engine import postgresql_engine, sqlite_engine
from storage.sql.im import (
    SqlLastActivityStore,
    SqlOfflineStore,
    SqlPrivateStore,
    SqlRosterStore,
    SqlVCardStore,
)
from storage.sql.migrations import MIGRATIONS, SchemaTooNew, migrate

__all__ = [
    "MIGRATIONS",
    "SchemaTooNew",
    "SqlAccountStore",
    "SqlLastActivityStore",
    "SqlOfflineStore",
    "SqlPrivateStore",
    "SqlRosterStore",
    "SqlVCardStore",
    "migrate",
    "postgresql_engine",
    "sqlite_engine",
]
