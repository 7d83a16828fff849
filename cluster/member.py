"""One node's membership of the cluster: it joins (lease, registry, relay group), serves as the
node's route table (routing.routes.RouteTable) and session manager, hands relayed packets to the
router, and reaps nodes that die."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import msgpack
from lxml import etree
from redis.exceptions import RedisError, ResponseError

from cluster import keys
from cluster.connect import connect, load_scripts, script
from cluster.liveness import Liveness, Timing
from cluster.relay import BATCH, Relay, packets_of
from cluster.routes import ClusterRoutes
from cluster.sessions import ClusterSessions
from routing.sessions import SessionEntry
from xmpp.jid import JID

log = logging.getLogger("xmppd.cluster")

_parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

# Delete a dead node's stream once everything in it has been read and acknowledged (a sender
# that wrote meanwhile makes the reaper read again).
DROP_IF_DONE = """
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 1 end
local stream = redis.call('XINFO', 'STREAM', KEYS[1])
local last
for i = 1, #stream, 2 do
  if stream[i] == 'last-generated-id' then last = stream[i + 1] end
end
for _, group in ipairs(groups) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] and
     (fields['pending'] ~= 0 or fields['last-delivered-id'] ~= last) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 1
"""


class ClusterUnavailable(Exception):
    """Redis cannot be reached, or another live node has this node's name."""


class ClusterMember:
    def __init__(self, url: str, node: str, version: str, timing: Timing | None = None) -> None:
        self.url = url
        self.node = node
        self.boot = secrets.token_hex(8)
        self.client = connect(url)
        self.timing = timing or Timing()
        self.relay = Relay(self.client, node, self.boot)
        self.sessions = ClusterSessions(self.client, self.relay, node)
        self.liveness = Liveness(self.client, node, self.boot, version, self.timing)
        self.router: Any = None
        self.local: Any = None
        # Set by attach(): what the node does when it must stop serving, may serve again, and
        # when sessions of a dead node are gone (their contacts are told).
        self.suspend: Callable[[str], None] = lambda _why: None
        self.resume: Callable[[], None] = lambda: None
        self.lost_sessions: Callable[[list[SessionEntry]], None] = lambda _entries: None
        self._drop_if_done = script(self.client, DROP_IF_DONE)
        self._confirmer: asyncio.Task | None = None
        self.relay.handlers.update(session=self._on_session, route=self._on_route,
                                   tell=self._on_tell, hello=self._on_hello, ask=self._on_ask,
                                   answer=self._on_answer, synced=self._on_synced)  # fmt: skip
        self._waiting_for: set[str] = set()  # peers whose snapshot has not come yet
        self._synced = asyncio.Event()
        # The admin server answers other nodes' questions (xmppctl from any node): cmd, args ->
        # a result (or a coroutine of one); an exception's text goes back as the error.
        self.answer_with: Callable[[str, dict], Any] | None = None
        self._asks: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self.relay.on_undeliverable = self._undeliverable
        self.routes = ClusterRoutes(self)
        self.sessions.displaced = self._displaced
        liveness = self.liveness
        liveness.on_joined = self.relay.peers.add
        liveness.on_dead = self._on_dead
        liveness.on_reaped = self.sessions.lost  # by another node: what was kept aside goes
        liveness.reap = self.reap
        liveness.on_lost = lambda: self.suspend("this node lost its place in the cluster")
        liveness.on_regained = self._regained
        liveness.on_redis_emptied = self._redis_emptied

    def attach(self, router: Any, local: Any) -> None:
        """The node's router and its own sessions (routing.router.LocalSessions)."""
        self.router = router
        self.local = local

    # --- joining and leaving ----------------------------------------------------------------

    async def join(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
        await load_scripts(self.client)
        await self.liveness.join()
        await self.relay.ensure_group()
        await self.routes.load()
        self.relay.run_id = self.liveness.run_id
        self.relay.may_take = self.liveness.fresh
        self.relay.on_stale = lambda: self.liveness.lose("the lease went stale while reading")
        self.relay.peers = set(self.liveness.alive)
        self.relay.start()
        await self._hello()
        self.liveness.start()
        self._confirmer = asyncio.get_running_loop().create_task(self._confirm_forever())
        log.info("joined the cluster as %s (boot %s); other live nodes: %s", self.node, self.boot,
                 ", ".join(sorted(self.relay.peers)) or "none")  # fmt: skip

    async def leave(self) -> None:
        """After the node closed its sessions: what was relayed to them is routed again from
        here, their entries leave Redis, and nothing is left for a reaper."""
        if self._confirmer is not None:
            self._confirmer.cancel()
        try:
            await self.sessions.flush(3.0)
            await self.relay.stop_reading()
            self.relay.peers.clear()  # nobody needs news of sessions that are gone
            await self._drain(self.node)
            await self._unbind_all(self.node)
            await self.routes.release_node(self.node)
            await self.relay.drain(3.0)
            self.liveness.stop()  # (renewing until here: no survivor reaps a node leaving)
            await self.liveness.leave()
        except (RedisError, OSError) as exc:
            log.warning("leaving the cluster: %s (the others will reap this node)", exc)
        self.relay.stop()
        self.sessions.stop()
        await self.client.aclose()

    async def _confirm_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.relay.confirm()
            except (RedisError, OSError) as exc:
                if asyncio.current_task().cancelling():
                    raise  # stopping: redis-py turned the cancellation into an error
                log.debug("relay confirmation: %s", exc)

    async def _regained(self) -> None:
        await self.relay.ensure_group()
        self.sessions.forget_others()
        self.routes.forget_others()
        await self.routes.load()
        self.relay.peers = set(self.liveness.alive)
        await self._hello()
        self.resume()

    async def _redis_emptied(self, run_id: str) -> None:
        await load_scripts(self.client)
        await self.relay.ensure_group()
        await self.sessions.restore()
        await self.routes.restore()
        self.relay.run_id = run_id
        self.relay.resend_all()

    # --- packets from other nodes -------------------------------------------------------------

    def _on_session(self, _source: str, _hops: int, body: list) -> None:
        jid, address, xml = body
        self.router.relayed_to_session(JID.parse(jid), address, etree.fromstring(xml, _parser))

    def _on_route(self, _source: str, _hops: int, body: list) -> None:
        self.router.route(etree.fromstring(body[0], _parser))

    def _on_tell(self, _source: str, _hops: int, body: list) -> None:
        address, event, args = body
        self.local.tell_named(address, event, tuple(args))

    def _displaced(self, address: str) -> None:
        """A newer bind elsewhere took the full JID of this node's session at `address`."""
        if self.local is not None:
            self.local.tell_named(address, "SessionReplaced", ())

    async def _hello(self, timeout: float = 3.0) -> None:
        """Tell every other node this node is here, and wait (a while) for their snapshots of
        their sessions: a node that routed before it knew them would store messages offline
        for users who are online."""
        self._waiting_for = set(self.relay.peers)
        self._synced.clear()
        self.relay.broadcast("hello", [])
        if self._waiting_for:
            try:
                await asyncio.wait_for(self._synced.wait(), timeout)
            except TimeoutError:
                log.warning("cluster: no snapshot from %s within %g s; serving anyway",
                            ", ".join(sorted(self._waiting_for)), timeout)  # fmt: skip

    def _on_hello(self, source: str, _hops: int, _body: list) -> None:
        self.relay.peers.add(source)
        self.sessions.lost(source)  # it came back: another node reaped its last run
        self.sessions.snapshot_to(source)
        self.relay.send(source, "synced", [], hops=1)

    def _on_synced(self, source: str, _hops: int, _body: list) -> None:
        self._waiting_for.discard(source)
        if not self._waiting_for:
            self._synced.set()

    def _undeliverable(self, target: str, packet: bytes) -> None:
        """A packet for a node whose stream is gone (reaped): route what it carried from here."""
        self._on_dead(target)
        self._reroute(packet)

    def _reroute(self, packet: bytes, own: bool = False) -> None:
        if own and self.relay.seen_before(packet):
            return  # handed on already; only its acknowledgement was missing
        _source, _boot, _seq, hops, kind, body = msgpack.unpackb(packet, raw=False)
        if kind not in ("session", "route"):
            return  # session news and events for a dead node's sessions have no one to reach
        stanza = etree.fromstring(body[-1], _parser)
        self.relay.hops = hops
        try:
            self.router.route(stanza)
        finally:
            self.relay.hops = 0

    # --- dead nodes -----------------------------------------------------------------------------

    def _on_dead(self, node: str) -> None:
        self.relay.peers.discard(node)
        self.sessions.forget_node(node)
        self.routes.forget_node(node)

    async def reap(self, node: str) -> None:
        """Clean up after a dead node (this node won its reaper key): what its relay stream
        held goes where it can (other resources, offline storage, a bounce), its sessions leave
        Redis, and their contacts hear they left."""
        self._on_dead(node)
        known = {(e.jid, e.address): e for e in self.sessions.lost(node)}
        rerouted = await self._drain(node)
        gone = await self._unbind_all(node)
        await self.routes.release_node(node)
        log.warning("cluster: node %s: %d relayed stanzas routed again, %d sessions removed",
                    node, rerouted, len(gone))  # fmt: skip
        for key in gone:  # (also of this node's previous run: its contacts must hear too)
            known.setdefault(key, SessionEntry(key[0], node, key[1]))
        if known:
            self.lost_sessions(list(known.values()))

    async def _drain(self, node: str) -> int:
        key = keys.relay(node)
        consumer = f"reaper-{self.node}"
        count = 0
        while True:
            try:
                _, entries, *_ = await self.client.xautoclaim(key, keys.GROUP, consumer, 0,
                                                              "0-0", count=BATCH)  # fmt: skip
                if not entries:
                    reply = await self.client.xreadgroup(keys.GROUP, consumer, {key: ">"},
                                                         count=BATCH)  # fmt: skip
                    entries = reply[0][1] if reply else []
            except ResponseError:  # no stream or no group: nothing was relayed to it
                entries = []
            if entries:
                for _entry_id, fields in entries:
                    for packet in packets_of(fields):
                        self._reroute(packet, own=node == self.node)
                        count += 1
                await self.client.xack(key, keys.GROUP, *[i for i, _ in entries])
                continue
            if await self._drop_if_done(keys=[key], args=[keys.GROUP]):
                return count

    async def _unbind_all(self, node: str) -> list[tuple[JID, str]]:
        """Remove the node's sessions from Redis: (full JID, address) of each one removed."""
        members = [msgpack.unpackb(m, raw=False)
                   for m in await self.client.smembers(keys.index(node))]  # fmt: skip
        await load_scripts(self.client)
        pipe = self.client.pipeline(transaction=False)
        for bare, resource, address in members:
            value = f"{node} {address}"
            await self.sessions._unbind(keys=[keys.sessions(bare)], args=[resource, value],
                                        client=pipe)  # fmt: skip
        removed = await pipe.execute() if members else []
        await self.client.delete(keys.index(node))
        return [(JID.parse(bare).with_resource(resource), address)
                for (bare, resource, address), done in zip(members, removed, strict=True)
                if done]  # fmt: skip

    # --- questions to other nodes (xmppctl from any node) ---------------------------------------

    def alive(self) -> list[str]:
        """This node and every node it relays to (those that said hello or held a lease)."""
        return [self.node, *sorted(self.relay.peers)]

    def node_of_session(self, jid: JID) -> str | None:
        entry = self.sessions.get(jid)
        return entry.node if entry is not None else None

    async def ask(self, node: str, cmd: str, args: dict, timeout: float = 5.0) -> tuple[bool, Any]:
        """(True, result) or (False, error text) from `node`'s admin server."""
        if node == self.node:
            return await self._answer(cmd, args)
        rid = secrets.token_hex(8)
        future = asyncio.get_running_loop().create_future()
        self._asks[rid] = future
        self.relay.send(node, "ask", [rid, cmd, args], hops=1)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False, f"node {node} did not answer within {timeout:g} s (is it down?)"
        finally:
            self._asks.pop(rid, None)

    async def _answer(self, cmd: str, args: dict) -> tuple[bool, Any]:
        if self.answer_with is None:
            return False, "this node answers no questions yet"
        try:
            result = self.answer_with(cmd, args)
            if asyncio.iscoroutine(result):
                result = await result
            return True, result
        except Exception as exc:  # noqa: BLE001 - the asker shows what went wrong
            return False, str(exc)

    def _on_ask(self, source: str, _hops: int, body: list) -> None:
        rid, cmd, args = body

        async def answer() -> None:
            ok, result = await self._answer(cmd, args)
            self.relay.send(source, "answer", [rid, ok, result], hops=1)

        task = asyncio.get_running_loop().create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_answer(self, _source: str, _hops: int, body: list) -> None:
        rid, ok, result = body
        future = self._asks.get(rid)
        if future is not None and not future.done():
            future.set_result((ok, result))

    # --- what xmppctl shows ---------------------------------------------------------------------

    async def nodes(self) -> list[dict]:
        found = await self.liveness.nodes()
        rows = []
        for name, entry in sorted(found.items()):
            rows.append({
                "node": name,
                "alive": entry["lease_ms"] > 0,
                "lease_left_s": round(max(entry["lease_ms"], 0) / 1000, 1),
                "started": entry.get("started"),
                "version": entry.get("version"),
                "sessions": self.sessions.count_of(name),
                "relay_backlog": self.relay.backlog() if name == self.node else None,
                "this": name == self.node,
                "peer": name in self.relay.peers,  # this node relays to it
            })  # fmt: skip
        return rows
