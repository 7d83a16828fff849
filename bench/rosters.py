"""Rosters for the roster/presence scenario: who is whose contact (mutual 'both' subscriptions),
written into xmppd's database through its schema and into Prosody's roster files."""

from __future__ import annotations

from pathlib import Path

DOMAIN = "localhost"


def ring(n: int, r: int) -> dict[int, list[int]]:
    """Users 0..n-1, each with the r nearest others on a ring as contacts (r/2 each side):
    the relation is symmetric, so every subscription can be 'both'."""
    if r % 2 or r >= n:
        raise ValueError(f"want an even number of contacts below the user count ({n} x {r})")
    steps = range(1, r // 2 + 1)
    return {
        i: sorted({(i + k) % n for k in steps} | {(i - k) % n for k in steps}) for i in range(n)
    }


def with_big(rosters: dict[int, list[int]], big: int, size: int) -> dict[int, list[int]]:
    """User `big` gets users 0..size-1 as contacts, and each of them gets `big` back."""
    out = {i: list(c) for i, c in rosters.items()}
    out[big] = list(range(size))
    for i in range(size):
        out.setdefault(i, []).append(big)
    return out


def names(rosters: dict[int, list[int]], prefix: str = "b") -> dict[str, list[str]]:
    return {f"{prefix}{i}": [f"{prefix}{c}" for c in cs] for i, cs in rosters.items()}


def write_xmppd(database: Path, rosters: dict[str, list[str]]) -> None:
    """Replace every roster in xmppd's SQLite database with these (subscription 'both')."""
    from sqlalchemy import delete, insert

    from storage.sql.engine import sqlite_engine
    from storage.sql.schema import roster_items, roster_versions

    rows = [
        {
            "domain": DOMAIN, "username": user, "jid": f"{contact}@{DOMAIN}", "name": None,
            "subscription": "both", "ask": False, "pending_in": False,
            "pending_in_stanza": None, "approved": False, "groups": "[]",
        }
        for user, contacts in rosters.items()
        for contact in contacts
    ]  # fmt: skip
    engine = sqlite_engine(database.resolve())
    try:
        with engine.begin() as conn:
            conn.execute(delete(roster_items))
            conn.execute(delete(roster_versions))
            for start in range(0, len(rows), 10_000):
                conn.execute(insert(roster_items), rows[start : start + 10_000])
    finally:
        engine.dispose()


def write_prosody(data_dir: Path, rosters: dict[str, list[str]]) -> None:
    """Prosody's internal storage: data/localhost/roster/USER.dat, a Lua table per user whose
    [false] entry holds the version and pending requests (as core/rostermanager.lua keeps it)."""
    directory = data_dir / DOMAIN / "roster"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.dat"):
        old.unlink()
    for user, contacts in rosters.items():
        item = '\t["{}@%s"] = {{\n\t\t["subscription"] = "both";\n\t\t["groups"] = {{}};\n\t}};\n'
        items = "".join((item % DOMAIN).format(c) for c in contacts)
        text = (
            "return {\n"
            '\t[false] = {\n\t\t["version"] = 1;\n\t\t["pending"] = {};\n\t};\n'
            f"{items}}};\n"
        )
        (directory / f"{user}.dat").write_text(text)


def write_ejabberd(database: Path, rosters: dict[str, list[str]]) -> None:
    """ejabberd's SQLite database (lite.sql, the old schema without server_host): one
    `rosterusers` row per contact, subscription 'B' (both), nothing asked, no groups."""
    import sqlite3

    rows = [
        (user, f"{contact}@{DOMAIN}", "", "B", "N", "", "N", "", "item")
        for user, contacts in rosters.items()
        for contact in contacts
    ]
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute("DELETE FROM rosterusers")
            db.execute("DELETE FROM rostergroups")
            db.executemany(
                "INSERT INTO rosterusers (username, jid, nick, subscription, ask, askmessage,"
                " server, subscribe, type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        db.close()
