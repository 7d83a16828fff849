"""The tables, as SQLAlchemy Core objects shared by SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

metadata = MetaData()

# RFC 7622 §3.3.1 and §3.2.1: localpart and domainpart are at most 1023 octets each.
_PART = 1023

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
