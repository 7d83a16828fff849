"""The tables, as SQLAlchemy Core objects shared by SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from storage.im import SUBSCRIPTIONS

metadata = MetaData()

# RFC 7622 §3.3.1 and §3.2.1: localpart and domainpart are at most 1023 octets each.
_PART = 1023
# A bare JID: localpart@domainpart.
_BARE_JID = 2 * _PART + 1

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("username", String(_PART), nullable=False),
    Column("domain", String(_PART), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("domain", "username", name="accounts_pkey"),
)

scram_credentials = Table(
    "scram_credentials",
    metadata,
    Column("username", String(_PART), nullable=False),
    Column("domain", String(_PART), nullable=False),
    Column("hash_name", String(16), nullable=False),
    Column("salt", LargeBinary, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", LargeBinary, nullable=False),
    Column("server_key", LargeBinary, nullable=False),
    PrimaryKeyConstraint("domain", "username", "hash_name", name="scram_credentials_pkey"),
    ForeignKeyConstraint(
        ["domain", "username"],
        ["accounts.domain", "accounts.username"],
        name="scram_credentials_account_fkey",
        ondelete="CASCADE",
    ),
)


def _owner_fkey(table_name: str) -> ForeignKeyConstraint:
    """(domain, username) names an account; the account's deletion deletes the row."""
    return ForeignKeyConstraint(
        ["domain", "username"],
        ["accounts.domain", "accounts.username"],
        name=f"{table_name}_account_fkey",
        ondelete="CASCADE",
    )


# --- instant messaging (migration 2) -------------------------------------------------------

roster_items = Table(
    "roster_items",
    metadata,
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("jid", String(_BARE_JID), nullable=False),  # the contact; no foreign key
    Column("name", Text, nullable=True),
    Column("subscription", String(4), nullable=False),
    Column("ask", Boolean, nullable=False),
    Column("pending_in", Boolean, nullable=False),
    Column("pending_in_stanza", Text, nullable=True),
    Column("approved", Boolean, nullable=False),
    Column("groups", Text, nullable=False),  # a JSON list of strings, in the item's order
    PrimaryKeyConstraint("domain", "username", "jid", name="roster_items_pkey"),
    CheckConstraint(
        "subscription IN (" + ", ".join(f"'{s}'" for s in SUBSCRIPTIONS) + ")",
        name="roster_items_subscription_check",
    ),
    _owner_fkey("roster_items"),
)

# One row per roster ever changed; no row means version 0.
roster_versions = Table(
    "roster_versions",
    metadata,
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("domain", "username", name="roster_versions_pkey"),
    _owner_fkey("roster_versions"),
)

offline_messages = Table(
    "offline_messages",
    metadata,
    # BIGSERIAL on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the (64-bit) rowid.
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("stanza", Text, nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    Index("offline_messages_owner_idx", "domain", "username", "id"),
    _owner_fkey("offline_messages"),
)

vcards = Table(
    "vcards",
    metadata,
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("xml", Text, nullable=False),
    PrimaryKeyConstraint("domain", "username", name="vcards_pkey"),
    _owner_fkey("vcards"),
)

private_storage = Table(
    "private_storage",
    metadata,
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("key", Text, nullable=False),  # 'localname namespace'
    Column("xml", Text, nullable=False),
    PrimaryKeyConstraint("domain", "username", "key", name="private_storage_pkey"),
    _owner_fkey("private_storage"),
)

last_activity = Table(
    "last_activity",
    metadata,
    Column("domain", String(_PART), nullable=False),
    Column("username", String(_PART), nullable=False),
    Column("stamp", Double, nullable=False),  # seconds since the epoch
    Column("status", Text, nullable=False),
    PrimaryKeyConstraint("domain", "username", name="last_activity_pkey"),
    _owner_fkey("last_activity"),
)
