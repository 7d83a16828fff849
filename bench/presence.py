"""The roster/presence scenario of the generator: N users whose rosters hold R contacts each
(mutual 'both' subscriptions, provisioned by bench/rosters.py) log in, fetch their rosters and
send initial presence; then every user changes presence once per round, and each change is
fanned out by the server to the user's R contacts. Then one user with a big roster (contacts
among the N, online) logs in a few times: the time to its roster and to its contacts'
presences. Presences are recognised by their <status>, which names the round and the sender."""

from __future__ import annotations

import asyncio
import re
import statistics
import time

from bench.client import Conn, XMPPError, client_tls_context, login

ROSTER_NS = "jabber:iq:roster"
ROSTER_END = re.compile(rb"</query>\s*</iq>|<query[^>]*/>\s*</iq>|<iq[^>]*type=['\"]error")
ROUND_STATUS = re.compile(rb"<status>r(\d+) b(\d+)</status>")
ATTR_TYPE = re.compile(rb"\btype=['\"]([a-z]+)['\"]")
ATTR_FROM = re.compile(rb"\bfrom=['\"]([^'\"@/]+)@")
PRESENCE_END = b"</presence>"


class Receiver:
    """What one logged-in user receives: presences from others are counted (`available`:
    every one without a type), and those of the current round, recognised by their status,
    with their fan-out latency from the sender's send time. Only whole presences are read:
    an unfinished one waits for the next chunk."""

    def __init__(self, index: int, name: str, stats: dict) -> None:
        self.index = index
        self.name = name.encode()
        self.stats = stats
        self.pending = b""
        self.available = 0

    def __call__(self, data: bytes) -> None:
        text = self.pending + data if self.pending else data
        pos = 0
        now = time.perf_counter()
        while True:
            start = text.find(b"<presence", pos)
            if start < 0:
                lt = text.rfind(b"<", pos)
                pos = lt if lt >= 0 and text.find(b">", lt) < 0 else len(text)
                break
            gt = text.find(b">", start)
            if gt < 0:
                pos = start
                break
            if text[gt - 1] == 0x2F:  # '/': <presence .../>, no status
                self._presence(text[start:gt], None, now)
                pos = gt + 1
                continue
            close = text.find(PRESENCE_END, gt)
            if close < 0:
                pos = start
                break
            self._presence(text[start:gt], ROUND_STATUS.search(text, gt, close), now)
            pos = close + len(PRESENCE_END)
        self.pending = text[pos:]

    def _presence(self, head: bytes, status: re.Match | None, now: float) -> None:
        sender = ATTR_FROM.search(head)
        if sender is None or sender.group(1) == self.name:
            return  # our own presence, echoed back to us
        if ATTR_TYPE.search(head) is None:
            self.available += 1
        if status is None:
            return
        stats = self.stats
        round_no, who = int(status.group(1)), int(status.group(2))
        if round_no != stats["round"]:
            return  # a straggler of an earlier round
        stats["received"] += 1
        if stats["measuring"]:
            stats["latencies"].append(now - stats["sent_at"][who])


async def roster_get(conn: Conn) -> None:
    conn.arm(120)
    conn.send(f"<iq type='get' id='roster1'><query xmlns='{ROSTER_NS}'/></iq>".encode())
    await conn.expect(ROSTER_END)
    conn.disarm()


async def presence_rounds(job: dict) -> dict:
    """Log N users in (roster, initial presence), run presence rounds, then the big-roster
    logins; one result with rates, latencies and CPU."""
    from bench.worker import cpu_seconds, mark, ms, percentile, source_addresses

    users = job["users"]
    n = job["n"]
    contacts = job["contacts"]
    context = client_tls_context()
    sources = source_addresses(job)
    stats = {"round": -1, "received": 0, "measuring": False, "latencies": [], "sent_at": [0.0] * n}
    receivers = [Receiver(i, users[i][0], stats) for i in range(n)]
    sem = asyncio.Semaphore(job.get("concurrency", 50))
    errors: list[str] = []

    async def connect(i: int) -> Conn | None:
        user, password = users[i]
        async with sem:
            try:
                conn = await login(
                    job["host"], job["port"], job["domain"], user, password, "SCRAM-SHA-1",
                    resource="r", context=context, local_addr=next(sources), timeout=120,
                )  # fmt: skip
                await roster_get(conn)
            except (XMPPError, OSError, TimeoutError) as exc:
                errors.append(f"{user}: {exc!r}")
                return None
            conn.on_input = receivers[i]
            conn.buf, conn.pos = b"", 0
            conn.send(b"<presence/>")
            return conn

    t0 = time.perf_counter()
    conns = await asyncio.gather(*(connect(i) for i in range(n)))
    online = [c for c in conns if c is not None]
    expected_initial = n * contacts
    deadline = time.perf_counter() + job.get("settle", 120)
    while time.perf_counter() < deadline:
        if sum(r.available for r in receivers) >= expected_initial:
            break
        await asyncio.sleep(0.1)
    login_phase = time.perf_counter() - t0
    initial = sum(r.available for r in receivers)

    async def one_round(number: int) -> tuple[float, int]:
        stats["round"], stats["received"] = number, 0
        expected = n * contacts
        started = time.perf_counter()
        sent_at = stats["sent_at"]
        for i, conn in enumerate(conns):
            if conn is None:
                continue
            sent_at[i] = time.perf_counter()
            conn.send(
                f"<presence><show>{'away' if number % 2 else 'dnd'}</show>"
                f"<status>r{number} b{i}</status></presence>".encode()
            )
        limit = started + job.get("round_timeout", 60)
        while stats["received"] < expected and time.perf_counter() < limit:
            await asyncio.sleep(0.005)
        return time.perf_counter() - started, stats["received"]

    await one_round(0)  # warm-up
    stats["measuring"] = True
    mark("measure")
    cpu0, w0 = cpu_seconds(), time.perf_counter()
    delivered = lost = rounds = 0
    while rounds < job.get("rounds", 5) or time.perf_counter() - w0 < job.get("duration", 0):
        rounds += 1
        _took, got = await one_round(rounds)
        delivered += got
        lost += max(0, n * contacts - got)
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - cpu0
    mark("measured")
    stats["measuring"] = False
    latencies = stats["latencies"]
    result = {
        "scenario": "roster",
        "users": n,
        "contacts": contacts,
        "online": len(online),
        "login_phase_s": round(login_phase, 2),
        "initial_presences": initial,
        "initial_expected": expected_initial,
        "rounds": rounds,
        "seconds": round(wall, 3),
        "delivered": delivered,
        "presences_per_s": round(delivered / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "lost": lost,
        "errors": len(errors),
        "error_sample": errors[:3],
        "generator_cpu_pct": round(100 * cpu / wall, 1),
    }
    if job.get("big") is not None:
        result.update(await big_roster(job, context, sources, errors))
    for conn in online:
        conn.abort()
    return result


async def big_roster(job: dict, context, sources, errors: list[str]) -> dict:
    """The user with the big roster logs in `big_logins` times while its contacts are online:
    time to bound, to the whole roster, and to every online contact's presence."""
    from bench.worker import ms

    user, password = job["big"]
    online_contacts = job["big_online"]
    bound, roster, presences = [], [], []
    for _ in range(job.get("big_logins", 5)):
        started = time.perf_counter()
        try:
            conn = await login(
                job["host"], job["port"], job["domain"], user, password, "SCRAM-SHA-1",
                resource="big", context=context, local_addr=next(sources), timeout=120,
            )  # fmt: skip
            bound.append(time.perf_counter() - started)
            await roster_get(conn)
            roster.append(time.perf_counter() - started)
            counter = Receiver(-1, user, {"round": -1, "received": 0, "measuring": False})
            conn.on_input = counter
            conn.buf, conn.pos = b"", 0
            conn.send(b"<presence/>")
            limit = time.perf_counter() + 60
            while counter.available < online_contacts and time.perf_counter() < limit:
                await asyncio.sleep(0.002)
            if counter.available >= online_contacts:
                presences.append(time.perf_counter() - started)
            else:
                errors.append(f"big: {counter.available} of {online_contacts} presences")
            conn.close()
        except (XMPPError, OSError, TimeoutError) as exc:
            errors.append(f"big: {exc!r}")
        await asyncio.sleep(1.0)  # its unavailable presence reaches the contacts

    def median_ms(values: list[float]) -> float | None:
        return ms(statistics.median(values)) if values else None

    return {
        "big_roster": job["big_size"],
        "big_online_contacts": online_contacts,
        "big_logins": len(roster),
        "big_bound_ms": median_ms(bound),
        "big_roster_ms": median_ms(roster),
        "big_presences_ms": median_ms(presences),
        "big_presences_max_ms": ms(max(presences)) if presences else None,
    }
