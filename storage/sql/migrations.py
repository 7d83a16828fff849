"""Schema migrations: an ordered list of steps, step N bringing the database to version N.

`migrate(engine)` runs in one transaction holding the database's write lock (SQLite: BEGIN
IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), so when the server and xmppctl
open the same database at once the second waits, then finds the work done. A database whose
version is newer than MIGRATIONS knows is refused with SchemaTooNew, never touched.

Adding a migration (the rosters issue, offline messages, ...) is a two-line change:
  1. define the new Table(s) in schema.py;
  2. append a step to MIGRATIONS, e.g. `create_tables(schema.rosters, schema.roster_items),`
     (or `sql("ALTER TABLE ... ADD COLUMN ...")`, or any `def step(conn: Connection)`).
Never reorder, edit or remove a released step: its position is its version number, stored
in databases out there. create_tables() builds tables from schema.py as it is today, so once
a table created by a released step has to change, give that step a frozen copy of the old
definition before editing schema.py, and make the change itself a new `sql(...)` step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Table, func, insert, select, text

import storage.sql.schema as schema
from storage.sql.engine import write_transaction

Step = Callable[[Connection], None]

# An arbitrary constant naming xmppd's schema lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x786D7070_64534348  # "xmppdSCH"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer xmppd than this one."""


def create_tables(*tables: Table) -> Step:
    """A step creating these tables (with their indexes and constraints)."""

    def step(conn: Connection) -> None:
        schema.metadata.create_all(conn, tables=list(tables), checkfirst=False)

    step.__name__ = "create_" + "_".join(t.name for t in tables)
    return step


def sql(*statements: str) -> Step:
    """A step running these DDL/DML statements as written (mind SQLite/PostgreSQL dialects)."""

    def step(conn: Connection) -> None:
        for statement in statements:
            conn.execute(text(statement))

    return step


MIGRATIONS: list[Step] = [
    create_tables(schema.accounts, schema.scram_credentials),  # 1
    create_tables(  # 2
        schema.roster_items,
        schema.roster_versions,
        schema.offline_messages,
        schema.vcards,
        schema.private_storage,
        schema.last_activity,
    ),
]


def current_version(conn: Connection) -> int:
    """The version recorded in the database; 0 for an empty database."""
    if not conn.dialect.has_table(conn, schema.schema_version.name):
        return 0
    return conn.scalar(select(func.coalesce(func.max(schema.schema_version.c.version), 0)))


def migrate(engine: Engine, steps: Sequence[Step] = MIGRATIONS) -> int:
    """Apply the steps the database lacks, all in one transaction; returns the version now.
    Idempotent. Raises SchemaTooNew for a database newer than `steps`."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        schema.metadata.create_all(conn, tables=[schema.schema_version], checkfirst=True)
        version = current_version(conn)
        if version > len(steps):
            raise SchemaTooNew(
                f"database schema version {version} is newer than this xmppd knows "
                f"(up to {len(steps)}): run a newer xmppd, or point it at another database"
            )
        for number, step in enumerate(steps[version:], start=version + 1):
            step(conn)
            conn.execute(
                insert(schema.schema_version).values(version=number, applied_at=datetime.now(UTC))
            )
        return len(steps)
