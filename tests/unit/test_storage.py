"""Storage: the AccountStore contract on SQLite and in memory, migrations, open_storage URLs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, func, insert, select, text

from storage.accounts import AccountExists, AccountStore, NoSuchAccount
from storage.memory import MemoryAccountStore
from storage.open import Storage, open_storage
from storage.sql import SchemaTooNew, SqlAccountStore, migrate, postgresql_engine, sqlite_engine
from storage.sql.migrations import MIGRATIONS, current_version
from storage.sql.schema import schema_version
from tests.conftest import STORAGE_KINDS
from xmpp.sasl import ScramCredentials


def creds(hash_name: str, seed: int = 1) -> ScramCredentials:
    size = {"SHA-1": 20, "SHA-256": 32, "SHA-512": 64}[hash_name]
    return ScramCredentials(
        hash_name, bytes([seed]) * 16, 4096, bytes([seed + 1]) * size, bytes([seed + 2]) * size
    )


def all_creds(seed: int = 1) -> dict[str, ScramCredentials]:
    return {h: creds(h, seed) for h in ("SHA-1", "SHA-256", "SHA-512")}


@pytest.fixture(params=STORAGE_KINDS)
def storage_kind(request) -> str:
    return request.param


@pytest.fixture
def storage(storage_url) -> Iterator[Storage]:
    url = storage_url
    opened = open_storage(url)
    yield opened
    opened.close()


@pytest.fixture
def store(storage) -> AccountStore:
    return storage.accounts


# --- the AccountStore contract, on every implementation ------------------------------------


def test_create_then_exists_and_credentials_per_hash(store):
    store.create("alice", "localhost", all_creds(1))
    assert store.exists("alice", "localhost")
    assert not store.exists("alice", "example.org")
    assert not store.exists("bob", "localhost")
    for hash_name in ("SHA-1", "SHA-256", "SHA-512"):
        assert store.credentials("alice", "localhost", hash_name) == creds(hash_name, 1)
    assert store.credentials("alice", "localhost", "SHA-3") is None
    assert store.credentials("bob", "localhost", "SHA-256") is None


def test_create_with_only_some_hashes(store):
    store.create("alice", "localhost", {"SHA-256": creds("SHA-256")})
    assert store.credentials("alice", "localhost", "SHA-256") == creds("SHA-256")
    assert store.credentials("alice", "localhost", "SHA-1") is None


def test_create_twice_raises_account_exists(store):
    store.create("alice", "localhost", all_creds(1))
    with pytest.raises(AccountExists):
        store.create("alice", "localhost", all_creds(2))
    assert store.credentials("alice", "localhost", "SHA-1") == creds("SHA-1", 1)


def test_credentials_filed_under_the_wrong_hash_are_refused(store):
    with pytest.raises(ValueError):
        store.create("alice", "localhost", {"SHA-1": creds("SHA-256")})
    assert not store.exists("alice", "localhost")


def test_set_credentials_replaces_every_hash(store):
    store.create("alice", "localhost", all_creds(1))
    store.set_credentials("alice", "localhost", {"SHA-256": creds("SHA-256", 7)})
    assert store.credentials("alice", "localhost", "SHA-256") == creds("SHA-256", 7)
    assert store.credentials("alice", "localhost", "SHA-1") is None
    assert store.credentials("alice", "localhost", "SHA-512") is None


def test_set_credentials_of_a_missing_account_raises(store):
    with pytest.raises(NoSuchAccount):
        store.set_credentials("ghost", "localhost", all_creds())
    assert not store.exists("ghost", "localhost")


def test_delete_removes_the_account_and_its_credentials(store):
    store.create("alice", "localhost", all_creds(1))
    store.create("bob", "localhost", all_creds(2))
    store.delete("alice", "localhost")
    assert not store.exists("alice", "localhost")
    assert store.credentials("alice", "localhost", "SHA-256") is None
    assert store.credentials("bob", "localhost", "SHA-256") == creds("SHA-256", 2)
    # Recreated without credentials: nothing of the old ones comes back.
    store.create("alice", "localhost", {})
    assert store.credentials("alice", "localhost", "SHA-256") is None


def test_delete_of_a_missing_account_raises(store):
    with pytest.raises(NoSuchAccount):
        store.delete("ghost", "localhost")


def test_list_is_sorted_by_domain_then_username_and_filtered(store):
    for username, domain in [
        ("zoe", "a.example"),
        ("bob", "localhost"),
        ("Émile", "a.example"),
        ("alice", "localhost"),
        ("adam", "a.example"),
    ]:
        store.create(username, domain, {})
    assert store.list() == [
        ("adam", "a.example"),
        ("zoe", "a.example"),
        ("Émile", "a.example"),  # code-point order, the same on every backend
        ("alice", "localhost"),
        ("bob", "localhost"),
    ]
    assert store.list("localhost") == [("alice", "localhost"), ("bob", "localhost")]
    assert store.list("nowhere.example") == []


def test_put_many_counts_created_and_updated(store):
    store.create("alice", "localhost", all_creds(1))
    created, updated = store.put_many(
        [
            ("alice", "localhost", {"SHA-256": creds("SHA-256", 5)}),
            ("bob", "localhost", all_creds(2)),
            ("carol", "example.org", all_creds(3)),
        ]
    )
    assert (created, updated) == (2, 1)
    assert store.list() == [("carol", "example.org"), ("alice", "localhost"), ("bob", "localhost")]
    assert store.credentials("alice", "localhost", "SHA-256") == creds("SHA-256", 5)
    assert store.credentials("alice", "localhost", "SHA-1") is None
    assert store.credentials("carol", "example.org", "SHA-512") == creds("SHA-512", 3)


def test_put_many_of_the_same_account_twice_the_last_row_wins(store):
    rows = [("dan", "localhost", all_creds(1)), ("dan", "localhost", {"SHA-1": creds("SHA-1", 9)})]
    assert store.put_many(iter(rows)) == (1, 1)
    assert store.credentials("dan", "localhost", "SHA-1") == creds("SHA-1", 9)
    assert store.credentials("dan", "localhost", "SHA-256") is None


def test_put_many_with_a_bad_row_changes_nothing(store):
    with pytest.raises(ValueError):
        store.put_many([("a", "localhost", {}), ("b", "localhost", {"SHA-1": creds("SHA-256")})])
    assert store.list() == []
    assert store.put_many([]) == (0, 0)


def test_two_threads_use_the_store_at_once(store):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    wins: list[str] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for i in range(40):
                store.create(f"{name}{i}", "localhost", all_creds(i % 200))
                assert store.credentials(f"{name}{i}", "localhost", "SHA-1") == creds("SHA-1", i)
                store.set_credentials(f"{name}{i}", "localhost", {"SHA-1": creds("SHA-1", 3)})
                store.list("localhost")
            try:  # both race for the same name: exactly one wins
                store.create("contested", "localhost", {})
                wins.append(name)
            except AccountExists:
                pass
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t", "u")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(wins) == 1
    assert len(store.list("localhost")) == 81


# --- SQLite and migrations -----------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "xmppd.sqlite3"


def test_sqlite_url_makes_parent_directories_and_persists(tmp_path):
    path = tmp_path / "deep" / "er" / "db.sqlite3"
    with open_storage(f"sqlite://{path}") as storage:
        storage.accounts.create("alice", "localhost", all_creds())
    with open_storage(f"sqlite:///{path}") as storage:  # SQLAlchemy's four-slash form
        assert storage.accounts.credentials("alice", "localhost", "SHA-1") == creds("SHA-1")


def test_sqlite_connections_have_foreign_keys_and_wal(db_path):
    engine = sqlite_engine(db_path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()


def test_migrate_twice_is_a_no_op(db_path):
    engine = sqlite_engine(db_path)
    assert migrate(engine) == len(MIGRATIONS)
    assert migrate(engine) == len(MIGRATIONS)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema_version)) == len(MIGRATIONS)
        assert current_version(conn) == len(MIGRATIONS)
    engine.dispose()


def test_a_database_from_a_newer_xmppd_is_refused(db_path):
    engine = sqlite_engine(db_path)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(schema_version).values(version=99, applied_at=func.now()))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match=r"version 99 is newer than this xmppd knows"):
        open_storage(f"sqlite://{db_path}")


def test_a_failing_migration_leaves_the_database_as_it_was(db_path):
    def broken(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("boom")

    engine = sqlite_engine(db_path)
    with pytest.raises(RuntimeError, match="boom"):
        migrate(engine, [*MIGRATIONS, broken])
    with engine.connect() as conn:
        assert current_version(conn) == 0  # step 1 rolled back along with the broken step
        assert not conn.dialect.has_table(conn, "half_done")
        assert not conn.dialect.has_table(conn, "accounts")
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_nodes_migrating_at_once_run_each_step_once(backend, db_path, request):
    # Two engines are two independent sets of connections, locked against each other exactly
    # as two nodes (or a node and xmppctl) starting together would be (SQLite's write lock,
    # PostgreSQL's advisory lock); a slow step makes them overlap.
    runs: list[int] = []
    started = threading.Event()

    def slow(conn: Connection) -> None:
        runs.append(1)
        started.set()
        time.sleep(0.3)
        conn.execute(text("CREATE TABLE slow_step (x INTEGER)"))

    steps = [*MIGRATIONS, slow]
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").wiped_url()
        engines = [postgresql_engine(url), postgresql_engine(url)]
    else:
        engines = [sqlite_engine(db_path), sqlite_engine(db_path)]
    versions: list[int] = []
    first = threading.Thread(target=lambda: versions.append(migrate(engines[0], steps)))
    first.start()
    assert started.wait(5)
    versions.append(migrate(engines[1], steps))  # waits on the lock, then finds it done
    first.join()
    assert versions == [len(steps), len(steps)]
    assert runs == [1]
    for engine in engines:
        engine.dispose()


def test_put_many_of_ten_thousand_accounts_is_fast(db_path):
    with open_storage(f"sqlite://{db_path}") as storage:
        rows = [(f"user{i}", "localhost", all_creds(i % 200)) for i in range(10_000)]
        start = time.perf_counter()
        assert storage.accounts.put_many(rows) == (10_000, 0)
        first = time.perf_counter() - start
        start = time.perf_counter()
        assert storage.accounts.put_many(rows) == (0, 10_000)
        second = time.perf_counter() - start
        assert len(storage.accounts.list()) == 10_000
    print(f"put_many 10,000 accounts x 3 hashes: create {first:.2f}s, update {second:.2f}s")
    assert first < 5 and second < 5


def test_sql_store_is_usable_directly_on_an_engine(db_path):
    engine = sqlite_engine(db_path)
    migrate(engine)
    store = SqlAccountStore(engine)
    store.create("alice", "localhost", all_creds())
    assert store.list() == [("alice", "localhost")]
    engine.dispose()


# --- open_storage URLs ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory:", "memory://"])
def test_memory_url_gives_memory_stores(url):
    with open_storage(url) as storage:
        assert isinstance(storage.accounts, MemoryAccountStore)


@pytest.mark.parametrize("url", ["mysql://x/y", "redis://localhost", "nonsense"])
def test_an_unknown_scheme_is_refused_by_name(url):
    with pytest.raises(ValueError, match=repr(url.partition(":")[0])):
        open_storage(url)


@pytest.mark.parametrize("url", ["sqlite://relative.sqlite3", "sqlite:///", "sqlite:"])
def test_a_sqlite_url_without_an_absolute_path_is_refused(url):
    with pytest.raises(ValueError, match="absolute"):
        open_storage(url)
