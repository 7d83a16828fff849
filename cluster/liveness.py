"""Node liveness: a lease key per node renewed every few seconds, a registry of nodes, and the
watch that notices a node whose lease expired, so that one survivor (SET NX on the node's reaper
key) cleans up after it."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.exceptions import RedisError

from cluster import keys
from cluster.connect import run_id, script

log = logging.getLogger("xmppd.cluster.liveness")

# Renew only a lease this boot holds: a lease that expired was perhaps already reaped.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


UNFENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

REAPING = b"reaping"  # a dead node's lease while a survivor reaps it


class RoundTrips:
    """Round trips to Redis (the lease's renewals and run-id looks), counted in buckets of
    seconds, as a Prometheus histogram reports them."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)  # the last: above every bucket
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self.sum += seconds


class NameTaken(Exception):
    """Another live node has this node's name."""


@dataclass(frozen=True)
class Timing:
    lease: float = 8.0  # seconds a lease lasts unless renewed
    renew: float = 2.0  # seconds between renewals
    watch: float = 1.0  # seconds between looks at the other nodes' leases
    reap_lease: float = 60.0  # seconds a reaper holds its claim

    @property
    def bound(self) -> float:
        """Seconds from a node's death until its reaper starts, at most."""
        return self.lease + self.watch


class Liveness:
    def __init__(self, client: Any, node: str, boot: str, version: str, timing: Timing) -> None:
        self.client = client
        self.node = node
        self.boot = boot
        self.version = version
        self.timing = timing
        self.alive: set[str] = set()  # other nodes holding a lease
        self.holding = False
        self.last_renewed = 0.0
        self.run_id: str | None = None
        self.grace_until = 0.0  # no node is taken for dead before this (after a Redis restart)
        self.round_trips = RoundTrips()
        self._renew = script(client, RENEW)
        self._unfence = script(client, UNFENCE)
        self._task: asyncio.Task | None = None
        self._reaping: set[str] = set()
        self._registered: set[str] = set()  # other nodes in the registry at the last look
        self._tasks: set[asyncio.Task] = set()
        # Set by the member: what to do on each change.
        self.on_joined: Callable[[str], None] = lambda _node: None
        self.on_dead: Callable[[str], None] = lambda _node: None
        self.on_reaped: Callable[[str], Any] = lambda _node: None
        self.reap: Callable[[str], Awaitable[None]] = _nothing
        self.on_lost: Callable[[], None] = lambda: None
        self.on_regained: Callable[[], Awaitable[None]] = _nothing
        self.on_redis_emptied: Callable[[str], Awaitable[None]] = _nothing

    # --- joining ----------------------------------------------------------------------------

    async def join(self) -> None:
        """Take this node's lease (waiting out a previous run's, which a live node with the same
        name would keep renewing) and register; a previous run of this node is reaped first."""
        lease_key = keys.lease(self.node)
        deadline = time.monotonic() + self.timing.lease + 2 * self.timing.renew
        last_ttl = None
        while not await self.client.set(lease_key, self.boot, nx=True,
                                         px=int(self.timing.lease * 1000)):  # fmt: skip
            ttl = await self.client.pttl(lease_key)
            if await self.client.get(lease_key) == REAPING:
                deadline = time.monotonic() + self.timing.lease + 2 * self.timing.renew
                await asyncio.sleep(0.25)  # a survivor is reaping this node's previous run
                continue
            if last_ttl is not None and ttl > last_ttl + 200 or time.monotonic() > deadline:
                raise NameTaken(f"another live node is named {self.node!r} (its lease in Redis "
                                "keeps being renewed); give this node another [cluster] node name")
            last_ttl = ttl
            await asyncio.sleep(0.25)
        self.holding = True
        self.last_renewed = time.monotonic()
        self.run_id = await run_id(self.client)
        if await self.client.hexists(keys.NODES, self.node):
            await self._reap_if_mine(self.node, wait=True)  # our own previous run
        await self.register()

    async def register(self) -> None:
        entry = {"boot": self.boot, "started": time.time(), "version": self.version}
        await self.client.hset(keys.NODES, self.node, msgpack.packb(entry))
        self.alive = await self.live_nodes()

    async def live_nodes(self) -> set[str]:
        names = [n.decode() for n in await self.client.hkeys(keys.NODES)]
        others = [n for n in names if n != self.node]
        pipe = self.client.pipeline(transaction=False)
        for name in others:
            pipe.exists(keys.lease(name))
        held = await pipe.execute() if others else []
        return {name for name, has in zip(others, held, strict=True) if has}

    async def nodes(self) -> dict[str, dict]:
        """Every registered node with its lease's time left (ms; negative: none)."""
        raw = await self.client.hgetall(keys.NODES)
        out: dict[str, dict] = {}
        for name, value in raw.items():
            name = name.decode()
            entry = msgpack.unpackb(value)
            entry["lease_ms"] = await self.client.pttl(keys.lease(name))
            out[name] = entry
        return out

    # --- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def leave(self) -> None:
        """A clean stop: nothing is left for a reaper."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(keys.NODES, self.node)
        pipe.delete(keys.lease(self.node), keys.index(self.node), keys.relay(self.node))
        await pipe.execute()

    async def _forever(self) -> None:
        next_renew = 0.0
        while True:
            now = time.monotonic()
            # A Redis that does not answer must not hold the node past its lease.
            limit = max(0.2, self.timing.renew)
            try:
                if self.holding and await asyncio.wait_for(self._redis_restarted(), limit):
                    next_renew = now + self.timing.renew
                elif now >= next_renew:
                    await asyncio.wait_for(self._keep_lease(), limit)
                    next_renew = now + self.timing.renew
                if self.holding and now >= self.grace_until:
                    await asyncio.wait_for(self._watch(), limit)
            except TimeoutError:
                log.warning("cluster: Redis did not answer within %.1f s", limit)
            except (RedisError, OSError) as exc:
                if asyncio.current_task().cancelling():
                    raise  # stopping: redis-py turned the cancellation into an error
                log.warning("cluster: Redis unreachable (%s)", exc)
            if self.holding and time.monotonic() - self.last_renewed > self.timing.lease:
                self._lose("could not renew the lease in time")
            await asyncio.sleep(self.timing.watch)

    async def _redis_restarted(self) -> bool:
        """Redis came back without our keys (a new run id): write this node back, and give the
        other nodes a lease's time to do the same before taking any of them for dead."""
        asked = time.monotonic()
        current = await run_id(self.client)
        self.round_trips.observe(time.monotonic() - asked)
        if current == self.run_id:
            return False
        log.warning("cluster: Redis restarted or failed over (new run id); writing this node back")
        asked = time.monotonic()
        await self.client.set(keys.lease(self.node), self.boot, px=int(self.timing.lease * 1000))
        self.last_renewed = asked
        self.grace_until = asked + self.timing.lease
        before = self.alive
        await self.register()
        self.alive |= before  # who does not write itself back within the grace is dead
        await self.on_redis_emptied(current)
        self.run_id = current  # only now: a failure above is retried on the next pass
        return True

    async def _keep_lease(self) -> None:
        if not self.holding:
            asked = time.monotonic()
            if await self.client.set(keys.lease(self.node), self.boot, nx=True,
                                     px=int(self.timing.lease * 1000)):  # fmt: skip
                log.warning("cluster: holding the lease again; serving")
                self.holding = True
                self.last_renewed = asked
                await self.register()
                await self.on_regained()
            return
        if time.monotonic() - self.last_renewed > self.timing.lease:
            # Paused or cut off past the lease: the others may have reaped this node already.
            self._lose("the lease expired (the node was paused or cut off from Redis)")
            return
        asked = time.monotonic()  # the lease runs from when Redis was asked, not answered
        if not await self._renew(keys=[keys.lease(self.node)],
                                 args=[self.boot, int(self.timing.lease * 1000)]):  # fmt: skip
            self._lose("the lease is gone from Redis")
            return
        self.round_trips.observe(time.monotonic() - asked)
        self.last_renewed = asked

    def fresh(self) -> bool:
        """Whether this node holds a lease the others cannot yet have given up on."""
        return self.holding and time.monotonic() - self.last_renewed < 0.9 * self.timing.lease

    def lose(self, why: str) -> None:
        self._lose(why)

    def _lose(self, why: str) -> None:
        if not self.holding:
            return
        log.error("cluster: %s; closing every client stream and taking no logins", why)
        self.holding = False
        self.on_lost()

    async def _watch(self) -> None:
        alive = await self.live_nodes()
        # Alive before Redis restarted, and not back: no registry entry tells of them now.
        gone_before = self.alive - alive if self.grace_until else set()
        self.grace_until = 0.0
        for name in alive - self.alive:
            self.on_joined(name)
        for name in self.alive - alive:  # left cleanly, or its lease expired
            log.warning("cluster: node %s is gone", name)
            self.on_dead(name)
        self.alive = alive
        registered = {n.decode() for n in await self.client.hkeys(keys.NODES)} - {self.node}
        for name in self._registered - registered - gone_before:
            self.on_reaped(name)
        self._registered = registered
        for name in (registered | gone_before) - alive - self._reaping:
            self.on_dead(name)
            self._reaping.add(name)
            task = asyncio.get_running_loop().create_task(self._reap_if_mine(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reap_if_mine(self, name: str, wait: bool = False) -> None:
        """Reap `name` if this node wins its reaper lock (or, with `wait`, once it can): a
        lock with a lease, so a reaper that dies frees it for the next. The dead node's lease
        key holds a placeholder meanwhile, so that it cannot come back half-reaped."""
        self._reaping.add(name)
        lock = self.client.lock(keys.reaping(name), timeout=self.timing.reap_lease,
                                blocking=wait, thread_local=False)  # fmt: skip
        try:
            if not await lock.acquire():
                return
            try:
                fenced = name == self.node or await self.client.set(
                    keys.lease(name), REAPING, nx=True, px=int(self.timing.reap_lease * 1000))
                if not fenced:
                    return  # it came back
                started = time.monotonic()
                await self.reap(name)
                if name != self.node:
                    await self.client.hdel(keys.NODES, name)
                    await self._unfence(keys=[keys.lease(name)], args=[REAPING])
                log.warning("cluster: reaped node %s in %.2f s", name, time.monotonic() - started)
            finally:
                await lock.release()
        except (RedisError, OSError) as exc:
            log.warning("cluster: reaping %s failed (%s); another pass will retry", name, exc)
        finally:
            self._reaping.discard(name)


async def _nothing(*_args: Any) -> None:
    return None
