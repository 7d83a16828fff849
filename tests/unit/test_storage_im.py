"""Storage: the instant-messaging store contracts (storage.im) on SQLite and in memory, and the
migration that added their tables."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from storage.accounts import NoSuchAccount
from storage.im import RosterItem
from storage.open import Storage, open_storage
from storage.sql import SqlAccountStore, migrate, sqlite_engine
from storage.sql.migrations import MIGRATIONS, current_version
from storage.sql.schema import accounts
from tests.conftest import STORAGE_KINDS
from xmpp.sasl import ScramCredentials

D = "localhost"


def creds(seed: int = 1) -> dict[str, ScramCredentials]:
    return {"SHA-256": ScramCredentials("SHA-256", bytes([seed]) * 16, 4096, b"k" * 32, b"s" * 32)}


@pytest.fixture(params=STORAGE_KINDS)
def storage_kind(request) -> str:
    return request.param


@pytest.fixture
def storage(storage_url) -> Iterator[Storage]:
    url = storage_url
    opened = open_storage(url)
    opened.accounts.create("alice", D, creds())
    opened.accounts.create("bob", D, {})
    yield opened
    opened.close()


# --- rosters -------------------------------------------------------------------------------


def test_a_new_roster_is_empty_at_version_zero(storage):
    assert storage.rosters.items("alice", D) == ("0", [])
    assert storage.rosters.version("alice", D) == "0"
    assert storage.rosters.count("alice", D) == 0
    assert storage.rosters.get("alice", D, "bob@localhost") is None
    assert storage.rosters.items("nobody", D) == ("0", [])


def test_put_and_delete_increase_the_version(storage):
    r = storage.rosters
    v1 = r.put("alice", D, RosterItem("carol@example.org"))
    v2 = r.put("alice", D, RosterItem("bob@localhost", name="Bob"))
    v3 = r.delete("alice", D, "carol@example.org")
    versions = [int(v) for v in ("0", v1, v2, v3)]
    assert versions == sorted(set(versions))
    assert r.version("alice", D) == v3
    assert r.items("alice", D) == (v3, [RosterItem("bob@localhost", name="Bob")])
    assert r.version("bob", D) == "0"  # other rosters keep their own version


def test_items_are_sorted_by_jid(storage):
    for jid in ("zed@localhost", "amy@example.org", "émile@localhost", "bob@localhost"):
        storage.rosters.put("alice", D, RosterItem(jid))
    version, items = storage.rosters.items("alice", D)
    assert [i.jid for i in items] == [
        "amy@example.org",
        "bob@localhost",
        "zed@localhost",
        "émile@localhost",  # code-point order
    ]
    assert version == storage.rosters.version("alice", D)
    assert storage.rosters.count("alice", D) == 4


def test_put_replaces_the_item_for_the_same_jid(storage):
    r = storage.rosters
    r.put("alice", D, RosterItem("bob@localhost", name="Bob", groups=("Friends", "Work")))
    replaced = RosterItem("bob@localhost", subscription="both", approved=True)
    r.put("alice", D, replaced)
    assert r.get("alice", D, "bob@localhost") == replaced
    assert r.count("alice", D) == 1


def test_every_field_round_trips(storage):
    item = RosterItem(
        jid="bob@localhost",
        name="Bob ✓",
        subscription="from",
        ask=True,
        pending_in=True,
        pending_in_stanza="<presence xmlns='jabber:client' from='bob@localhost' type='subscribe'>"
        "<status>let me in</status></presence>",
        approved=True,
        groups=("Zeta", "Alpha", "Ünïcode", 'with "quotes" and , commas'),
    )
    storage.rosters.put("alice", D, item)
    got = storage.rosters.get("alice", D, "bob@localhost")
    assert got == item
    assert got.groups == ("Zeta", "Alpha", "Ünïcode", 'with "quotes" and , commas')
    assert storage.rosters.items("alice", D)[1] == [item]


def test_pending_requests_are_the_unanswered_subscribe_stanzas_by_contact(storage):
    def request(who: str) -> str:
        return f"<presence xmlns='jabber:client' from='{who}' type='subscribe'/>"

    assert storage.rosters.pending_requests("alice", D) == []
    storage.rosters.put(
        "alice",
        D,
        RosterItem("zed@localhost", pending_in=True, pending_in_stanza=request("zed@localhost")),
    )
    storage.rosters.put("alice", D, RosterItem("carol@localhost", subscription="both"))
    storage.rosters.put(
        "alice",
        D,
        RosterItem("bob@localhost", pending_in=True, pending_in_stanza=request("bob@localhost")),
    )
    storage.rosters.put(
        "bob",
        D,
        RosterItem("dan@localhost", pending_in=True, pending_in_stanza=request("dan@localhost")),
    )
    assert storage.rosters.pending_requests("alice", D) == [
        request("bob@localhost"),
        request("zed@localhost"),
    ]
    storage.rosters.put("alice", D, RosterItem("bob@localhost", subscription="from"))
    assert storage.rosters.pending_requests("alice", D) == [request("zed@localhost")]
    assert storage.rosters.pending_requests("nobody", D) == []


def test_groups_given_as_a_list_come_back_as_a_tuple(storage):
    storage.rosters.put("alice", D, RosterItem("bob@localhost", groups=["B", "A"]))  # type: ignore[arg-type]
    assert storage.rosters.get("alice", D, "bob@localhost").groups == ("B", "A")


@pytest.mark.parametrize("subscription", ["", "None", "pending", "both "])
def test_put_of_an_unknown_subscription_raises_and_changes_nothing(storage, subscription):
    with pytest.raises(ValueError, match="subscription"):
        storage.rosters.put("alice", D, RosterItem("bob@localhost", subscription=subscription))
    assert storage.rosters.items("alice", D) == ("0", [])


def test_delete_of_a_missing_item_returns_none_and_keeps_the_version(storage):
    v = storage.rosters.put("alice", D, RosterItem("bob@localhost"))
    assert storage.rosters.delete("alice", D, "carol@localhost") is None
    assert storage.rosters.delete("nobody", D, "bob@localhost") is None
    assert storage.rosters.version("alice", D) == v


def test_put_for_a_user_without_an_account_raises(storage):
    with pytest.raises(NoSuchAccount):
        storage.rosters.put("nobody", D, RosterItem("bob@localhost"))
    assert storage.rosters.items("nobody", D) == ("0", [])


def test_deleting_an_account_deletes_its_roster_not_others_items_naming_it(storage):
    storage.rosters.put("alice", D, RosterItem("bob@localhost", groups=("G",)))
    bobs = RosterItem("alice@localhost", subscription="both")
    storage.rosters.put("bob", D, bobs)
    storage.accounts.delete("alice", D)
    assert storage.rosters.items("alice", D) == ("0", [])
    assert storage.rosters.get("bob", D, "alice@localhost") == bobs
    # A new account of the same name starts afresh.
    storage.accounts.create("alice", D, {})
    assert storage.rosters.items("alice", D) == ("0", [])


def test_roster_versions_persist_across_reopening(tmp_path):
    url = f"sqlite://{tmp_path}/db.sqlite3"
    with open_storage(url) as storage:
        storage.accounts.create("alice", D, {})
        storage.rosters.put("alice", D, RosterItem("bob@localhost", groups=("B", "A")))
        version = storage.rosters.put("alice", D, RosterItem("carol@localhost"))
    with open_storage(url) as storage:
        assert storage.rosters.version("alice", D) == version
        assert [i.jid for i in storage.rosters.items("alice", D)[1]] == [
            "bob@localhost",
            "carol@localhost",
        ]
        assert storage.rosters.get("alice", D, "bob@localhost").groups == ("B", "A")
        assert int(storage.rosters.delete("alice", D, "bob@localhost")) > int(version)


def test_concurrent_puts_each_get_their_own_version(storage):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    versions: list[int] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for i in range(25):
                versions.append(int(storage.rosters.put("alice", D, RosterItem(f"{name}{i}@x"))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t", "u")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(versions) == list(range(1, 51))
    assert storage.rosters.items("alice", D)[0] == "50"


# --- offline messages ----------------------------------------------------------------------


def msg(i: int) -> str:
    return f"<message xmlns='jabber:client' to='alice@localhost'><body>{i}</body></message>"


def test_offline_push_count_and_pop_all_oldest_first(storage):
    o = storage.offline
    assert o.pop_all("alice", D) == []
    for i in range(5):
        assert o.push("alice", D, msg(i), limit=100)
    assert o.push("bob", D, msg(99), limit=100)
    assert o.count("alice", D) == 5
    assert o.pop_all("alice", D) == [msg(i) for i in range(5)]
    assert o.count("alice", D) == 0
    assert o.pop_all("alice", D) == []
    assert o.pop_all("bob", D) == [msg(99)]


def test_offline_limit_is_exact(storage):
    o = storage.offline
    assert [o.push("alice", D, msg(i), limit=3) for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert o.count("alice", D) == 3
    assert o.push("alice", D, msg(9), limit=0) is False
    assert o.pop_all("alice", D) == [msg(0), msg(1), msg(2)]
    assert o.push("alice", D, msg(3), limit=3)  # room again after the pop


def test_offline_limit_holds_under_two_threads_pushing(storage):
    limit = 30
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    stored: list[str] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for i in range(25):
                stanza = f"<message><body>{name}{i}</body></message>"
                if storage.offline.push("alice", D, stanza, limit):
                    stored.append(stanza)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t", "u")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stored) == limit
    assert storage.offline.count("alice", D) == limit
    popped = storage.offline.pop_all("alice", D)
    assert sorted(popped) == sorted(stored)
    for name in ("t", "u"):  # each thread's messages come back in the order it pushed them
        mine = [s for s in popped if f"<body>{name}" in s]
        assert mine == [s for s in stored if f"<body>{name}" in s]


def test_offline_push_for_a_user_without_an_account_is_refused(storage):
    assert storage.offline.push("nobody", D, msg(1), limit=10) is False
    assert storage.offline.count("nobody", D) == 0


def test_deleting_an_account_deletes_its_offline_messages(storage):
    storage.offline.push("alice", D, msg(1), limit=10)
    storage.accounts.delete("alice", D)
    storage.accounts.create("alice", D, {})
    assert storage.offline.count("alice", D) == 0
    assert storage.offline.pop_all("alice", D) == []


# --- vCards, private XML, last activity ----------------------------------------------------

VCARD = "<vCard xmlns='vcard-temp'><FN>Alice ✓</FN></vCard>"


def test_vcard_set_get_replace_delete(storage):
    v = storage.vcards
    assert v.get("alice", D) is None
    v.set("alice", D, VCARD)
    assert v.get("alice", D) == VCARD
    v.set("alice", D, "<vCard xmlns='vcard-temp'/>")
    assert v.get("alice", D) == "<vCard xmlns='vcard-temp'/>"
    assert v.get("bob", D) is None
    v.set("alice", D, None)
    assert v.get("alice", D) is None
    v.set("alice", D, None)  # deleting nothing is fine
    v.set("nobody", D, None)
    with pytest.raises(NoSuchAccount):
        v.set("nobody", D, VCARD)


def test_private_set_get_replace_per_key(storage):
    p = storage.private
    k1, k2 = "storage storage:bookmarks", "prefs urn:example:prefs"
    assert p.get("alice", D, k1) is None
    p.set("alice", D, k1, "<storage xmlns='storage:bookmarks'/>")
    p.set("alice", D, k2, "<prefs xmlns='urn:example:prefs'>1</prefs>")
    p.set("bob", D, k1, "<storage xmlns='storage:bookmarks'><url/></storage>")
    p.set("alice", D, k1, "<storage xmlns='storage:bookmarks'><conference/></storage>")
    assert p.get("alice", D, k1) == "<storage xmlns='storage:bookmarks'><conference/></storage>"
    assert p.get("alice", D, k2) == "<prefs xmlns='urn:example:prefs'>1</prefs>"
    assert p.get("bob", D, k1) == "<storage xmlns='storage:bookmarks'><url/></storage>"
    assert p.get("bob", D, k2) is None
    with pytest.raises(NoSuchAccount):
        p.set("nobody", D, k1, "<storage xmlns='storage:bookmarks'/>")


def test_last_activity_set_get(storage):
    la = storage.last_activity
    assert la.get("alice", D) is None
    la.set("alice", D, 1_700_000_000.25, "Gone fishing")
    assert la.get("alice", D) == (1_700_000_000.25, "Gone fishing")
    la.set("alice", D, 1_700_000_100.5, "")
    assert la.get("alice", D) == (1_700_000_100.5, "")
    assert la.get("bob", D) is None
    with pytest.raises(NoSuchAccount):
        la.set("nobody", D, 1.0, "")


def test_deleting_an_account_deletes_vcard_private_and_last_activity(storage):
    storage.vcards.set("alice", D, VCARD)
    storage.private.set("alice", D, "k ns", "<k xmlns='ns'/>")
    storage.last_activity.set("alice", D, 5.0, "bye")
    storage.vcards.set("bob", D, VCARD)
    storage.accounts.delete("alice", D)
    assert storage.vcards.get("alice", D) is None
    assert storage.private.get("alice", D, "k ns") is None
    assert storage.last_activity.get("alice", D) is None
    assert storage.vcards.get("bob", D) == VCARD


# --- migration 2 ---------------------------------------------------------------------------


def test_migrating_a_version_1_database_keeps_its_accounts(tmp_path):
    path = tmp_path / "old.sqlite3"
    engine = sqlite_engine(path)
    assert migrate(engine, MIGRATIONS[:1]) == 1
    SqlAccountStore(engine).create("alice", D, creds(3))
    SqlAccountStore(engine).create("bob", "example.org", {})
    with engine.connect() as conn:
        assert not conn.dialect.has_table(conn, "roster_items")
    engine.dispose()

    with open_storage(f"sqlite://{path}") as storage:
        assert len(MIGRATIONS) == 2
        assert storage.accounts.list() == [("bob", "example.org"), ("alice", D)]
        assert storage.accounts.credentials("alice", D, "SHA-256") == creds(3)["SHA-256"]
        storage.rosters.put("alice", D, RosterItem("bob@example.org"))
        assert storage.offline.push("bob", "example.org", msg(1), limit=5)
        storage.accounts.delete("alice", D)  # the new tables' cascades work on old accounts
        assert storage.rosters.items("alice", D) == ("0", [])

    engine = sqlite_engine(path)
    with engine.connect() as conn:
        assert current_version(conn) == 2
        assert conn.scalars(select(accounts.c.username)).all() == ["bob"]
    engine.dispose()
