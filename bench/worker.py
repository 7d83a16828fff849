"""One generator process: `python -m bench.worker JOB.json` runs the job and prints JSON results
on stdout. Scenarios: `login` (a login storm), `flood` (one-to-one
messages over many pairs with a window in flight each), `idle` (hold logged-in connections;
grows to the sizes it is told on further stdin lines, answering each with a JSON line),
`roster` (presence fan-out over rosters, in bench/presence.py).

The generator's own CPU time (resource.getrusage over the measured window) is in every result,
so a figure the generator capped can be seen as such."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import resource
import sys
import time

from bench.client import (
    XMPPError,
    answer_pings,
    client_session,
    client_tls_context,
    login,
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def mark(event: str) -> None:
    """Tell the orchestrator (a JSON line on stdout) that the measured window starts or ends,
    so that it reads the server's CPU time over the same window."""
    print(json.dumps({"event": event}), flush=True)


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def source_addresses(job: dict) -> itertools.cycle:
    return itertools.cycle(job.get("sources") or [None])


# --- login storm -------------------------------------------------------------------------------


async def login_storm(job: dict) -> dict:
    """`concurrency` clients log in (connect, STARTTLS, SASL, bind) and close, again and again,
    over `accounts` accounts. Every account logs in once first (warm-up: the generator keeps
    SCRAM's SaltedPassword as clients do), then logins are counted for `duration` seconds.

    With `session` set (the `session` scenario), each login goes on as a client's does: roster
    get, initial presence and its echo, end of stream answered by the server's; the latency is
    from connect to the server's end of stream."""
    users = job["users"]
    mechanism = job["mechanism"]
    context = client_tls_context()
    sources = source_addresses(job)
    accounts = itertools.cycle(range(len(users)))
    errors: list[str] = []
    latencies: list[float] = []
    state = {"measuring": False, "stop": False, "count": 0}

    async def one(index: int) -> float:
        user, password = users[index]
        started = time.perf_counter()
        conn = await login(
            job["host"], job["port"], job["domain"], user, password, mechanism,
            resource=f"r{index}", context=context, local_addr=next(sources),
        )  # fmt: skip
        if job.get("session"):
            await client_session(conn)
            return time.perf_counter() - started
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed

    async def warm(indexes: list[int]) -> None:
        for index in indexes:
            try:
                await one(index)
            except (XMPPError, OSError, TimeoutError) as exc:
                errors.append(f"warm-up {users[index][0]}: {exc}")

    concurrency = job["concurrency"]
    slices = [list(range(len(users)))[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(warm(s) for s in slices))

    async def client() -> None:
        while not state["stop"]:
            index = next(accounts)
            try:
                elapsed = await one(index)
            except (XMPPError, OSError, TimeoutError) as exc:
                if state["measuring"]:
                    errors.append(f"{users[index][0]}: {exc}")
                continue
            if state["measuring"] and not state["stop"]:
                state["count"] += 1
                latencies.append(elapsed)

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    await asyncio.sleep(job.get("warmup", 2))
    state["measuring"] = True
    mark("measure")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(job["duration"])
    state["stop"] = True
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    mark("measured")
    count = state["count"]
    await asyncio.wait(tasks, timeout=30)
    return {
        "scenario": "session" if job.get("session") else "login",
        "mechanism": mechanism,
        "concurrency": concurrency,
        "logins": count,
        "seconds": round(wall, 3),
        "logins_per_s": round(count / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "errors": len(errors),
        "error_sample": errors[:5],
        "generator_cpu_pct": round(100 * cpu / wall, 1),
    }


# --- message flood -----------------------------------------------------------------------------

MESSAGE_ID = re.compile(rb"<message\b[^>]*?\sid=['\"]m(\d+)['\"]")
MESSAGE_END = b"</message>"


class Pair:
    """A sender and a receiver; the sender keeps `window` messages in flight. Sequence numbers
    are the message ids; the receiver checks them in order, so a lost, duplicated or reordered
    message is seen."""

    def __init__(self, sender, receiver, window: int, stats: dict) -> None:
        self.sender, self.receiver = sender, receiver
        self.window = window
        self.stats = stats
        self.sent = 0
        self.received = 0
        self.next_seq = 0
        self.gaps = 0
        self.late = 0
        self.dupes = 0
        self.sent_at: list[float] = []
        self.running = False
        self.head = (
            f"<message to='{receiver.jid}' type='chat' id='m".encode(),
            b"'><body>bench payload, a short chat line of text</body></message>",
        )
        self.pending = b""
        receiver.on_input = self.on_receive

    def refill(self) -> None:
        if not self.running:
            return
        room = self.window - (self.sent - self.received)
        if room <= 0:
            return
        start, t = self.sent, time.perf_counter()
        head, tail = self.head
        out = []
        for seq in range(start, start + room):
            out.append(head + str(seq).encode() + tail)
            self.sent_at.append(t)
        self.sent += room
        self.sender.send(b"".join(out))

    def on_receive(self, data: bytes) -> None:
        text = self.pending + data
        end = text.rfind(MESSAGE_END)
        if end < 0:
            self.pending = text
            return
        end += len(MESSAGE_END)
        self.pending = text[end:]
        t = time.perf_counter()
        measuring = self.stats["measuring"]
        latencies = self.stats["latencies"]
        got = 0
        for match in MESSAGE_ID.finditer(text, 0, end):
            seq = int(match.group(1))
            if seq == self.next_seq:
                self.next_seq += 1
            elif seq > self.next_seq:
                self.gaps += seq - self.next_seq
                self.next_seq = seq + 1
            else:
                self.late += 1
                self.gaps -= 1  # a late one fills a gap counted before
            got += 1
            if measuring:
                latencies.append(t - self.sent_at[seq])
        self.received += got
        if measuring:
            self.stats["delivered"] += got
        self.refill()


async def flood(job: dict) -> dict:
    users = job["users"]
    pairs_n = job["pairs"]
    context = client_tls_context()
    sources = source_addresses(job)
    stats = {"measuring": False, "latencies": [], "delivered": 0}
    sem = asyncio.Semaphore(50)

    async def connect(index: int, role: str):
        user, password = users[index]
        # Receivers (odd indices) may be on another node of a cluster than the senders.
        port = job.get("receiver_port", job["port"]) if index % 2 else job["port"]
        async with sem:
            return await login(
                job["host"], port, job["domain"], user, password, "SCRAM-SHA-1",
                resource=role, context=context, local_addr=next(sources), presence=True,
            )  # fmt: skip

    conns = await asyncio.gather(*(connect(i, "bench") for i in range(2 * pairs_n)))
    pairs = [Pair(conns[2 * i], conns[2 * i + 1], job["window"], stats) for i in range(pairs_n)]
    for pair in pairs:  # the senders ignore whatever the server sends them
        pair.sender.on_input = lambda data: None
    await asyncio.sleep(0.5)
    for pair in pairs:
        pair.running = True
        pair.refill()
    await asyncio.sleep(job.get("warmup", 2))
    stats["measuring"] = True
    mark("measure")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(job["duration"])
    stats["measuring"] = False
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    mark("measured")
    delivered = stats["delivered"]
    for pair in pairs:
        pair.running = False
    deadline = time.perf_counter() + job.get("drain", 15)
    while time.perf_counter() < deadline and any(p.received < p.sent for p in pairs):
        await asyncio.sleep(0.1)
    sent = sum(p.sent for p in pairs)
    received = sum(p.received for p in pairs)
    closed = sum(1 for c in conns if c.closed)
    for conn in conns:
        conn.close()
    latencies = stats["latencies"]
    return {
        "scenario": "flood",
        "pairs": pairs_n,
        "window": job["window"],
        "seconds": round(wall, 3),
        "delivered": delivered,
        "msgs_per_s": round(delivered / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "gaps": sum(p.gaps for p in pairs),
        "reordered": sum(p.late for p in pairs),
        "connections_closed": closed,
        "generator_cpu_pct": round(100 * cpu / wall, 1),
    }


# --- idle connections --------------------------------------------------------------------------


async def idle(job: dict) -> None:
    """Holds logged-in connections. Each further stdin line is a JSON {"target": N}: log in
    until N connections are held, answer with a JSON line; {"stop": true} ends."""
    users = job["users"]
    context = client_tls_context()
    sources = source_addresses(job)
    conns = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    index = 0

    async def one(i: int) -> None:
        user, password = users[i]
        try:
            conn = await login(
                job["host"], job["port"], job["domain"], user, password, "SCRAM-SHA-1",
                resource="idle", context=context, local_addr=next(sources), presence=True,
                timeout=120,
            )  # fmt: skip
        except (XMPPError, OSError, TimeoutError) as exc:
            errors.append(f"{user}: {exc!r}")
            return
        conn.on_input = answer_pings(conn)
        conns.append(conn)

    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command.get("stop"):
            break
        target = min(command["target"], len(users))
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        pending: set[asyncio.Task] = set()
        while index < target or pending:
            while index < target and len(pending) < job.get("concurrency", 50):
                pending.add(asyncio.create_task(one(index)))
                index += 1
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        alive = sum(1 for c in conns if not c.closed)
        print(
            json.dumps(
                {
                    "connected": alive,
                    "errors": len(errors),
                    "error_sample": errors[:3],
                    "login_seconds": round(wall, 2),
                    "generator_cpu_s": round(cpu, 2),
                    "generator_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                }
            ),
            flush=True,
        )
    for conn in conns:
        conn.abort()
    print(json.dumps({"closed": len(conns)}), flush=True)


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    pin(job.get("cpu"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    from bench.presence import presence_rounds

    runners = {
        "login": login_storm,
        "session": login_storm,
        "flood": flood,
        "idle": idle,
        "roster": presence_rounds,
    }
    runner = runners[job["scenario"]]
    result = asyncio.run(runner(job))
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
