"""Engines for SQLite and PostgreSQL, set up so the same Core code behaves alike on both."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import URL, make_url

# How long a SQLite connection waits for another writer (another thread, or xmppctl next to
# the server) before giving up with "database is locked".
BUSY_TIMEOUT_MS = 10_000

# Execution option read by the SQLite "begin" hook: this transaction will write.
_WRITE = "xmppd_write"


def sqlite_engine(path: Path) -> Engine:
    """An engine on the SQLite file `path` (which must be absolute), usable from many threads.

    SQLAlchemy gives file databases a QueuePool and passes check_same_thread=False, so a
    connection may be used by whichever pool thread checks it out (one thread at a time)."""
    if not path.is_absolute():
        raise ValueError(f"SQLite database path must be absolute: {path}")
    engine = create_engine(
        URL.create("sqlite+pysqlite", database=str(path)),
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection, _record) -> None:
    # The sqlite3 module's own transaction handling (BEGIN only before DML) breaks
    # transactional DDL and repeatable reads; SQLAlchemy's "begin" hook emits BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, far faster
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front (IMMEDIATE): a deferred transaction that reads
    # and then writes can fail with SQLITE_BUSY at once instead of waiting busy_timeout.
    if conn.get_execution_options().get(_WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def postgresql_engine(url: str) -> Engine:
    """An engine on PostgreSQL through psycopg 3 (`postgresql://` means psycopg here, not
    SQLAlchemy's default psycopg2; an explicit `postgresql+driver://` is kept as given)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ImportError as exc:
        driver = parsed.get_driver_name()
        package = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary"}.get(
            driver, driver
        )
        raise ImportError(
            f"PostgreSQL storage needs the {driver} driver: pip install {package} ({exc})"
        ) from exc


class PointQuery:
    """One SELECT by key for the hot paths (every login reads credentials, every presence probe
    an account, a roster item and a last activity): compiled once for the engine's dialect and
    run straight through the driver, ~25 us where a Core transaction (BEGIN, execute, COMMIT,
    events) takes ~300 us of the GIL. One statement reads one consistent snapshot; returning
    the connection to the pool ends a transaction the driver opened. Values come back as the
    driver gives them (no SQLAlchemy type processing): for strings, numbers, bytes."""

    def __init__(self, engine: Engine, query: Select) -> None:
        compiled = query.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = compiled.string
        self._order = compiled.positiontup  # None for named paramstyles (psycopg)
        self._row = namedtuple("Row", [c.name for c in query.selected_columns])  # noqa: PYI024

    def first(self, **params: Any) -> Any:
        """The first row (fields by column name), or None."""
        rows = self._fetch(params, 1)
        return self._row._make(rows[0]) if rows else None

    def all(self, **params: Any) -> list:
        """Every row (fields by column name)."""
        return [self._row._make(row) for row in self._fetch(params, None)]

    def _fetch(self, params: dict, size: int | None) -> list:
        args = params if self._order is None else tuple(params[n] for n in self._order)
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(self._sql, args)
                return cursor.fetchall() if size is None else cursor.fetchmany(size)
            finally:
                cursor.close()
        finally:
            raw.close()


class PointWrite:
    """One writing statement for a hot path (every logout records the last activity), run
    as PointQuery runs a SELECT: compiled once, straight through the driver, committed on
    its own. The statement must be complete in itself (one statement is atomic)."""

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = compiled.string
        self._order = compiled.positiontup

    def run(self, **params: Any) -> int:
        """The number of rows the statement changed."""
        args = params if self._order is None else tuple(params[n] for n in self._order)
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(self._sql, args)
                changed = cursor.rowcount
            finally:
                cursor.close()
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return changed


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first
    statement, so check-then-write sequences inside it are atomic across threads and
    processes. On PostgreSQL it is an ordinary READ COMMITTED transaction."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (a consistent snapshot on SQLite under WAL)."""
    with engine.begin() as conn:
        yield conn
