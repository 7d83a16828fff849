"""The session manager of a clustered node: Redis holds who is bound where (binding is one atomic
script, closing is compare-and-delete, only the owning node writes an entry), and every node
keeps a replica of every session, fed by the relay, so that routing reads no Redis."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import msgpack
from lxml import etree
from redis.exceptions import RedisError

from cluster import keys
from cluster.connect import load_scripts, missing_script, script
from cluster.relay import Relay
from routing.sessions import Opened, SessionEntry, SessionTable
from xmpp.jid import JID

log = logging.getLogger("xmppd.cluster.sessions")

# The newest bind wins. Versions are Redis's clock in microseconds, so that they keep growing
# when a user's key is deleted and made again, and across a Redis restart.
BIND = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, 0, false}
end
local now = redis.call('TIME')
local version = tonumber(now[1]) * 1000000 + tonumber(now[2])
if old then
  local previous = tonumber(string.match(old, '^(%d+) '))
  if previous and previous >= version then version = previous + 1 end
end
local text = string.format('%.0f', version)
redis.call('HSET', KEYS[1], ARGV[1], text .. ' ' .. ARGV[2])
return {1, text, old}
"""

# Compare-and-delete: only the entry of this node and address (a replaced session never
# removes its successor).
UNBIND = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.match(cur, '^%d+ (.*)$') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# Write an entry back (Redis came back empty), unless a newer bind took the resource meanwhile.
RESTORE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(string.match(cur, '^(%d+) ')) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
"""

TOMBSTONES = 100_000  # removed (full JID, version) pairs remembered against late news

_parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse_value(raw: bytes | str) -> tuple[int, str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    version, node, address = text.split(" ", 2)
    return int(version), node, address


def _info(entry: SessionEntry) -> list:
    presence = None if entry.presence is None else etree.tostring(entry.presence)
    return [str(entry.jid), entry.address, entry.available, entry.priority, presence,
            entry.interested, sorted(entry.directed)]  # fmt: skip


def index_member(jid: JID, address: str) -> bytes:
    return msgpack.packb([str(jid.bare), jid.resource, address])


class ClusterSessions(SessionTable):
    """routing.sessions.SessionManager on Redis. Reads come from the replica; changes of this
    node's sessions go to Redis and, through the relay, to every other node's replica."""

    def __init__(self, client: Any, relay: Relay, node: str) -> None:
        self.client = client
        self.relay = relay
        self.node = node
        super().__init__()  # the replica: every node's sessions
        self._own: dict[str, SessionEntry] = {}  # address -> this node's bound sessions
        self._binding: dict[str, bool] = {}  # address -> closed while its bind was in flight
        self._lost: dict[str, list[SessionEntry]] = {}  # dead node -> its sessions
        # (bare, resource) -> the newest version removed: late news of an older bind is stale
        self._removed: OrderedDict[tuple[JID, str], int] = OrderedDict()
        self.displaced: Callable[[str], None] = lambda _address: None
        self._bind = script(client, BIND)
        self._unbind = script(client, UNBIND)
        self._restore = script(client, RESTORE)
        self._ops: deque = deque()  # (add to pipeline, commands, done, retry on failure)
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._writer: asyncio.Task | None = None
        relay.handlers.update(bound=self._on_bound, unbound=self._on_unbound, info=self._on_info)

    # --- SessionManager ---------------------------------------------------------------------

    def open(self, jid: JID, node: str, address: str, max_sessions: int,
             answer: Callable[[Opened], None]) -> None:  # fmt: skip
        self._binding[address] = False
        bare = str(jid.bare)
        value = f"{self.node} {address}"

        async def add(pipe: Any) -> None:
            await self._bind(keys=[keys.sessions(bare)], args=[jid.resource, value, max_sessions],
                             client=pipe)  # fmt: skip
            pipe.sadd(keys.index(self.node), index_member(jid, address))

        def done(results: Any) -> None:
            self._opened(jid, address, results, answer)

        self._queue(add, 2, done, retry=False)

    def _opened(self, jid: JID, address: str, results: Any,
                answer: Callable[[Opened], None]) -> None:  # fmt: skip
        closed = self._binding.pop(address, False)
        if isinstance(results, BaseException):
            log.error("binding %s: Redis failed: %s", jid, results)
            # The bind may have run before the reply was lost: take it back.
            self._write(self._unbind, keys=[keys.sessions(str(jid.bare))],
                        args=[jid.resource, f"{self.node} {address}"])  # fmt: skip
            self._write(self.client.srem, keys.index(self.node), index_member(jid, address))
            answer(Opened(jid, error="internal-server-error"))
            return
        (bound, version, old), _ = results
        if not bound:
            self._write(self.client.srem, keys.index(self.node), index_member(jid, address))
            answer(Opened(jid, error="resource-constraint"))
            return
        entry = SessionEntry(jid, self.node, address, version=int(version))
        replaced = None
        if old is not None:
            old_version, old_node, old_address = parse_value(old)
            if (old_node, old_address) != (self.node, address):  # not a retried bind of ours
                replaced = SessionEntry(jid, old_node, old_address, version=old_version)
        self._own[address] = entry
        self._put(entry)
        if replaced is not None and replaced.node == self.node:
            self._disown(replaced)
        self.relay.broadcast("bound", [str(jid), self.node, address, entry.version])
        if closed:  # the session ended while Redis answered: undo
            self.close(jid, address)
        answer(Opened(jid, replaced=replaced))

    def close(self, jid: JID, address: str) -> bool:
        if address in self._binding:
            self._binding[address] = True
        own = self._own.pop(address, None)
        removed = self._remove(jid, address)
        if own is not None:
            bare = str(jid.bare)
            self._write(self._unbind, keys=[keys.sessions(bare)],
                        args=[jid.resource, f"{self.node} {address}"])  # fmt: skip
            self._write(self.client.srem, keys.index(self.node), index_member(jid, address))
            self.relay.broadcast("unbound", [str(jid), address, own.version])
        return removed

    def set_presence(self, jid: JID, address: str, available: bool, priority: int) -> None:
        entry = self._own.get(address)
        if entry is not None and entry.jid == jid:
            entry.available = available
            entry.priority = priority
            self._tell_info(entry)

    def set_info(self, jid: JID, address: str, presence: Any = None, interested: bool | None = None,
                 pres_from: frozenset[str] | None = None,
                 directed: frozenset[str] | None = None) -> None:  # fmt: skip
        entry = self._own.get(address)
        if entry is None or entry.jid != jid:
            return
        if pres_from is not None:
            entry.pres_from = pres_from  # answers probes here; other nodes ask storage
        if presence is not None or interested is not None or directed is not None:
            if presence is not None:
                entry.presence = presence
            if interested is not None:
                entry.interested = interested
            if directed is not None:
                entry.directed = directed  # the reaper tells them if this node dies
            self._tell_info(entry)

    def count(self) -> int:
        """This node's bound sessions."""
        return len(self._own)

    def count_of(self, node: str) -> int:
        """Bound sessions of `node`, as this node's replica knows them."""
        return sum(1 for r in self._by_user.values() for e in r.values() if e.node == node)

    # --- the replica ------------------------------------------------------------------------

    def _put(self, entry: SessionEntry) -> bool:
        if self._removed.get((entry.jid.bare, entry.jid.resource), -1) >= entry.version:
            return False  # its unbind came first
        resources = self._by_user.setdefault(entry.jid.bare, {})
        current = resources.get(entry.jid.resource)
        if current is not None and current.version > entry.version:
            return False
        resources[entry.jid.resource] = entry
        return True

    def _remove(self, jid: JID, address: str, version: int | None = None,
                tombstone: bool = True) -> bool:  # fmt: skip
        resources = self._by_user.get(jid.bare)
        entry = resources.get(jid.resource) if resources else None
        if entry is None or entry.address != address:
            return False
        if version is not None and entry.version != version:
            return False
        del resources[jid.resource]
        if not resources:
            del self._by_user[jid.bare]
        if not tombstone:
            return True
        self._removed[(jid.bare, jid.resource)] = entry.version
        self._removed.move_to_end((jid.bare, jid.resource))
        if len(self._removed) > TOMBSTONES:
            self._removed.popitem(last=False)
        return True

    def _tell_info(self, entry: SessionEntry) -> None:
        self.relay.broadcast("info", _info(entry))

    def _on_bound(self, _source: str, _hops: int, body: list) -> None:
        jid, node, address, version = body
        entry = SessionEntry(JID.parse(jid), node, address, version=version)
        current = self.get(entry.jid)
        if self._put(entry) and current is not None and current.node == self.node:
            if self._own.get(current.address) is not None:
                self.displaced(current.address)  # (its node told it too, if it knew)
            self._disown(current)

    def _disown(self, replaced: SessionEntry) -> None:
        """A newer bind took the resource of one of this node's sessions: that session closes
        without unbinding (it must not remove its successor), so its index entry goes here."""
        if self._own.pop(replaced.address, None) is not None:
            self._write(self.client.srem, keys.index(self.node),
                        index_member(replaced.jid, replaced.address))  # fmt: skip

    def _on_unbound(self, _source: str, _hops: int, body: list) -> None:
        jid, address, version = body
        who = JID.parse(jid)
        if not self._remove(who, address, version):
            # Its bind news may still be on the way (from another node): keep the tombstone.
            key = (who.bare, who.resource)
            self._removed[key] = max(version, self._removed.get(key, -1))
            if len(self._removed) > TOMBSTONES:
                self._removed.popitem(last=False)

    def _on_info(self, _source: str, _hops: int, body: list) -> None:
        jid, address, available, priority, presence, interested, directed = body
        entry = self.get(JID.parse(jid))
        if entry is None or entry.address != address:
            return
        entry.available = available
        entry.priority = priority
        entry.interested = interested
        entry.directed = frozenset(directed)
        entry.presence = None if presence is None else etree.fromstring(presence, _parser)

    def snapshot_to(self, peer: str) -> None:
        """A node joined: tell it every session of this node."""
        for entry in self._own.values():
            self.relay.send(peer, "bound", [str(entry.jid), self.node, entry.address,
                                            entry.version], hops=1)  # fmt: skip
            self.relay.send(peer, "info", _info(entry), hops=1)

    def forget_node(self, node: str) -> None:
        """A node died: its sessions leave the replica, and are kept aside for its reaper
        (whom they sent directed presence is known only here)."""
        gone = [e for r in self._by_user.values() for e in r.values() if e.node == node]
        for entry in gone:
            self._remove(entry.jid, entry.address, tombstone=False)  # (its snapshot may come)
        if gone:
            self._lost.setdefault(node, []).extend(gone)

    def forget_others(self) -> None:
        """This node was cut off and rejoins: what it knew of the other nodes' sessions may be
        stale (their news did not reach it meanwhile); their snapshots answer its hello."""
        for node in {e.node for r in self._by_user.values() for e in r.values()} - {self.node}:
            self.forget_node(node)
            self._lost.pop(node, None)

    def lost(self, node: str) -> list[SessionEntry]:
        """What forget_node kept aside of `node` (once)."""
        return self._lost.pop(node, [])

    def own_entries(self) -> list[SessionEntry]:
        return list(self._own.values())

    async def restore(self) -> None:
        """A new Redis run (a restart, a failover): write back the sessions it lacks."""
        pipe = self.client.pipeline(transaction=False)
        for entry in self._own.values():
            await self._restore(keys=[keys.sessions(str(entry.jid.bare))],
                          args=[entry.jid.resource, entry.version, f"{self.node} {entry.address}"],
                          client=pipe)  # fmt: skip
            pipe.sadd(keys.index(self.node), index_member(entry.jid, entry.address))
        written = await pipe.execute()
        missing = sum(written[::2])
        log.warning("a new Redis run (restarted or failed over): %d of this node's %d sessions "
                    "were missing and are written back", missing, len(self._own))  # fmt: skip

    # --- Redis, in order, many operations to a pipeline -------------------------------------------

    def _write(self, call: Callable, *args: Any, **kwargs: Any) -> None:
        """A write that needs no answer; retried until Redis takes it."""

        async def add(pipe: Any) -> None:
            if call is self._unbind:
                await call(*args, client=pipe, **kwargs)
            else:
                getattr(pipe, call.__name__)(*args, **kwargs)

        self._queue(add, 1, lambda _results: None, retry=True)

    def _queue(self, add: Callable, commands: int, done: Callable[[Any], None],
               retry: bool) -> None:  # fmt: skip
        self._ops.append((add, commands, done, retry))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        self._wake.set()

    async def _write_forever(self) -> None:
        await _quietly(load_scripts(self.client))
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ops:
                batch = [self._ops.popleft() for _ in range(min(len(self._ops), 500))]
                self._in_flight = len(batch)
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for add, _commands, _done, _retry in batch:
                        await add(pipe)
                    results = await pipe.execute()
                except (RedisError, OSError) as exc:
                    if asyncio.current_task().cancelling():
                        raise  # stopping: redis-py turned the cancellation into an error
                    log.warning("session store: Redis failed (%s); retrying writes", exc)
                    if missing_script(exc):  # a master restarted or failed over
                        await _quietly(load_scripts(self.client))
                    for _add, _commands, done, retry in batch:
                        if not retry:
                            try:
                                done(exc)  # a bind answers at once: the client is waiting
                            except Exception:  # noqa: BLE001 - the writer must live on
                                log.exception("session store: answering a failed bind failed")
                    self._ops.extendleft(reversed([op for op in batch if op[3]]))
                    await asyncio.sleep(0.5)
                    continue
                finally:
                    self._in_flight = 0
                at = 0
                for _add, commands, done, _retry in batch:
                    try:
                        done(results[at : at + commands])
                    except Exception:  # noqa: BLE001 - the writer must live on
                        log.exception("session store: handling a Redis answer failed")
                    at += commands

    async def flush(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._ops or self._in_flight:
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()


async def _quietly(work: Any) -> None:
    try:
        await work
    except (RedisError, OSError) as exc:
        log.warning("session store: loading the scripts failed (%s)", exc)
