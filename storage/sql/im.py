"""The instant-messaging stores of storage.im on SQL (SQLite or PostgreSQL), SQLAlchemy Core.

Every write first locks the owner's accounts row (PostgreSQL: FOR NO KEY UPDATE, so writes of
one user are serialised and race neither each other nor the account's deletion; SQLite: the
write transaction already holds the database's write lock). A user without an account has no
row to lock: writes then raise NoSuchAccount (offline push returns False), as storage.im says.
The last activity, written at every logout, is the exception: one upsert that checks the account
in the same statement (and the foreign key stops a row for an account deleted meanwhile).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from storage.accounts import NoSuchAccount
from storage.im import RosterItem, checked_roster_item
from storage.sql.engine import PointQuery, PointWrite, read_transaction, write_transaction
from storage.sql.schema import (
    accounts,
    last_activity,
    offline_messages,
    private_storage,
    roster_items,
    roster_versions,
    vcards,
)


def _owner(table: Table, username: str, domain: str):
    return (table.c.domain == domain, table.c.username == username)


def _lock_account(conn: Connection, username: str, domain: str) -> bool:
    """Lock the user's account row until commit; False when there is no such account."""
    query = (
        select(accounts.c.username)
        .where(*_owner(accounts, username, domain))
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE; a no-op on SQLite
    )
    return conn.execute(query).first() is not None


def _require_account(conn: Connection, username: str, domain: str) -> None:
    if not _lock_account(conn, username, domain):
        raise NoSuchAccount(f"{username}@{domain}")


def _upsert(conn: Connection, table: Table, key: dict, values: dict) -> None:
    """Update the row with this key, or insert it. Callers hold the owner's lock, so no other
    transaction can insert the same key in between."""
    where = [table.c[name] == value for name, value in key.items()]
    if conn.execute(update(table).where(*where).values(**values)).rowcount == 0:
        conn.execute(insert(table).values(**key, **values))


# --- rosters -------------------------------------------------------------------------------

_items = roster_items.c
_versions = roster_versions.c


_item_query = select(roster_items).where(
    _items.domain == bindparam("i_domain"),
    _items.username == bindparam("i_username"),
    _items.jid == bindparam("i_jid"),
)
_requests_query = select(_items.jid, _items.pending_in_stanza).where(
    _items.domain == bindparam("r_domain"),
    _items.username == bindparam("r_username"),
    _items.pending_in_stanza.is_not(None),
)


# The whole roster and its version in one statement, so one snapshot on any database and at
# least one row (the version's) when there are no items.
_owner_row = select(
    bindparam("r_domain", type_=String).label("domain"),
    bindparam("r_username", type_=String).label("username"),
).subquery("o")
_roster_query = select(_versions.version.label("roster_version"), *roster_items.c).select_from(
    _owner_row.outerjoin(
        roster_versions,
        (_versions.domain == _owner_row.c.domain) & (_versions.username == _owner_row.c.username),
    ).outerjoin(
        roster_items,
        (_items.domain == _owner_row.c.domain) & (_items.username == _owner_row.c.username),
    )
)


def _item_from_row(row) -> RosterItem:
    return RosterItem(
        jid=row.jid,
        name=row.name,
        subscription=row.subscription,
        ask=bool(row.ask),
        pending_in=bool(row.pending_in),
        pending_in_stanza=row.pending_in_stanza,
        approved=bool(row.approved),
        groups=tuple(json.loads(row.groups)),
    )


def _item_values(item: RosterItem) -> dict:
    return {
        "name": item.name,
        "subscription": item.subscription,
        "ask": item.ask,
        "pending_in": item.pending_in,
        "pending_in_stanza": item.pending_in_stanza,
        "approved": item.approved,
        "groups": json.dumps(list(item.groups), ensure_ascii=False),
    }


def _read_version(conn: Connection, username: str, domain: str) -> int:
    query = select(_versions.version).where(*_owner(roster_versions, username, domain))
    return conn.scalar(query) or 0


def _bump_version(conn: Connection, username: str, domain: str) -> str:
    """Increment the roster's version (the caller holds the owner's lock); the new one."""
    version = _read_version(conn, username, domain) + 1
    _upsert(conn, roster_versions, {"domain": domain, "username": username}, {"version": version})
    return str(version)


class SqlRosterStore:
    """RosterStore on a migrated engine. Items are sorted by jid in code-point order."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._item = PointQuery(engine, _item_query)  # every presence probe reads one
        self._requests = PointQuery(engine, _requests_query)  # every initial presence
        self._roster = PointQuery(engine, _roster_query)  # every login's roster get

    def items(self, username: str, domain: str) -> tuple[str, list[RosterItem]]:
        rows = self._roster.all(r_domain=domain, r_username=username)
        version = rows[0].roster_version if rows else None
        items = [_item_from_row(row) for row in rows if row.jid is not None]
        # Sorted here rather than by ORDER BY: PostgreSQL's collation is locale-dependent.
        items.sort(key=lambda item: item.jid)
        return str(version or 0), items

    def get(self, username: str, domain: str, contact: str) -> RosterItem | None:
        row = self._item.first(i_domain=domain, i_username=username, i_jid=contact)
        return None if row is None else _item_from_row(row)

    def pending_requests(self, username: str, domain: str) -> list[str]:
        rows = self._requests.all(r_domain=domain, r_username=username)
        return [row.pending_in_stanza for row in sorted(rows)]

    def put(self, username: str, domain: str, item: RosterItem) -> str:
        item = checked_roster_item(item)
        with write_transaction(self._engine) as conn:
            _require_account(conn, username, domain)
            _upsert(
                conn,
                roster_items,
                {"domain": domain, "username": username, "jid": item.jid},
                _item_values(item),
            )
            return _bump_version(conn, username, domain)

    def delete(self, username: str, domain: str, contact: str) -> str | None:
        with write_transaction(self._engine) as conn:
            if not _lock_account(conn, username, domain):
                return None
            result = conn.execute(
                delete(roster_items).where(
                    *_owner(roster_items, username, domain), _items.jid == contact
                )
            )
            if result.rowcount == 0:
                return None
            return _bump_version(conn, username, domain)

    def version(self, username: str, domain: str) -> str:
        with read_transaction(self._engine) as conn:
            return str(_read_version(conn, username, domain))

    def count(self, username: str, domain: str) -> int:
        query = (
            select(func.count())
            .select_from(roster_items)
            .where(*_owner(roster_items, username, domain))
        )
        with read_transaction(self._engine) as conn:
            return conn.scalar(query)


# --- offline messages ----------------------------------------------------------------------

_offline = offline_messages.c


def _count_offline(conn: Connection, username: str, domain: str) -> int:
    query = (
        select(func.count())
        .select_from(offline_messages)
        .where(*_owner(offline_messages, username, domain))
    )
    return conn.scalar(query)


# The oldest message's id (NULL for none): one step down the owner index.
_oldest_offline_query = select(func.min(_offline.id).label("oldest")).where(
    _offline.domain == bindparam("o_domain"), _offline.username == bindparam("o_username")
)


class SqlOfflineStore:
    """OfflineStore on a migrated engine. The limit check and the insert share one write
    transaction under the owner's lock, so concurrent pushes never exceed the limit."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._oldest = PointQuery(engine, _oldest_offline_query)  # every initial presence

    def push(self, username: str, domain: str, stanza: str, limit: int) -> bool:
        """False too when the user has no account."""
        with write_transaction(self._engine) as conn:
            if not _lock_account(conn, username, domain):
                return False
            if _count_offline(conn, username, domain) >= limit:
                return False
            conn.execute(
                insert(offline_messages).values(
                    domain=domain, username=username, stanza=stanza, stored_at=datetime.now(UTC)
                )
            )
            return True

    def count(self, username: str, domain: str) -> int:
        with read_transaction(self._engine) as conn:
            return _count_offline(conn, username, domain)

    def pop_all(self, username: str, domain: str) -> list[str]:
        # Most logins find nothing: one indexed read then, not the write lock. A message
        # stored after this read waits for the next initial presence, as one stored after
        # the transaction below would.
        if self._oldest.first(o_domain=domain, o_username=username).oldest is None:
            return []
        with write_transaction(self._engine) as conn:
            if not _lock_account(conn, username, domain):
                return []
            rows = conn.execute(
                select(_offline.id, _offline.stanza)
                .where(*_owner(offline_messages, username, domain))
                .order_by(_offline.id)
            ).all()
            if rows:
                # Up to the last one read, so nothing arriving meanwhile could be lost.
                conn.execute(
                    delete(offline_messages).where(
                        *_owner(offline_messages, username, domain), _offline.id <= rows[-1].id
                    )
                )
        return [row.stanza for row in rows]


# --- vCards, private XML, last activity ----------------------------------------------------


class SqlVCardStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, username: str, domain: str) -> str | None:
        query = select(vcards.c.xml).where(*_owner(vcards, username, domain))
        with read_transaction(self._engine) as conn:
            return conn.scalar(query)

    def set(self, username: str, domain: str, vcard: str | None) -> None:
        """Raises NoSuchAccount when storing (not when deleting) for a user with no account."""
        with write_transaction(self._engine) as conn:
            if vcard is None:
                conn.execute(delete(vcards).where(*_owner(vcards, username, domain)))
                return
            _require_account(conn, username, domain)
            _upsert(conn, vcards, {"domain": domain, "username": username}, {"xml": vcard})


class SqlPrivateStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, username: str, domain: str, key: str) -> str | None:
        query = select(private_storage.c.xml).where(
            *_owner(private_storage, username, domain), private_storage.c.key == key
        )
        with read_transaction(self._engine) as conn:
            return conn.scalar(query)

    def set(self, username: str, domain: str, key: str, xml: str) -> None:
        """Raises NoSuchAccount."""
        with write_transaction(self._engine) as conn:
            _require_account(conn, username, domain)
            _upsert(
                conn,
                private_storage,
                {"domain": domain, "username": username, "key": key},
                {"xml": xml},
            )


_last_query = select(last_activity.c.stamp, last_activity.c.status).where(
    last_activity.c.domain == bindparam("l_domain"),
    last_activity.c.username == bindparam("l_username"),
)


def _last_upsert(engine: Engine) -> Any:
    """INSERT ... SELECT ... WHERE the account exists ON CONFLICT DO UPDATE: one statement,
    the same on SQLite (3.24 and later) and PostgreSQL; it changes no row for no account."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    owner = bindparam("l_domain"), bindparam("l_username")
    values = select(*owner, bindparam("l_stamp"), bindparam("l_status")).where(
        select(accounts.c.username)
        .where(accounts.c.domain == owner[0], accounts.c.username == owner[1])
        .exists()
    )
    table = last_activity.c
    statement = upsert(last_activity).from_select(
        [table.domain, table.username, table.stamp, table.status], values
    )
    return statement.on_conflict_do_update(
        index_elements=[table.domain, table.username],
        set_={"stamp": statement.excluded.stamp, "status": statement.excluded.status},
    )


class SqlLastActivityStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._last = PointQuery(engine, _last_query)  # every probe of an offline user
        self._set = PointWrite(engine, _last_upsert(engine))  # every logout

    def get(self, username: str, domain: str) -> tuple[float, str] | None:
        row = self._last.first(l_domain=domain, l_username=username)
        return None if row is None else (float(row.stamp), row.status)

    def set(self, username: str, domain: str, stamp: float, status: str) -> None:
        """Raises NoSuchAccount."""
        try:
            changed = self._set.run(l_domain=domain, l_username=username, l_stamp=stamp,
                                    l_status=status)  # fmt: skip
        except self._engine.dialect.dbapi.IntegrityError:
            changed = 0  # the account was deleted between the statement's check and its insert
        if not changed:
            raise NoSuchAccount(f"{username}@{domain}")
