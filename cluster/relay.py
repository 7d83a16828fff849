"""Packets between nodes, at least once and de-duplicated: one Redis Stream per node, read with a
consumer group and acknowledged once the packet has been handed on; msgpack packets carrying
(source node, its boot, sequence) so that a packet sent twice is taken once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
from redis.exceptions import RedisError, ResponseError

from cluster import keys
from cluster.connect import run_of_key, same_run

log = logging.getLogger("xmppd.cluster.relay")

BATCH = 500  # stream entries per XADD pipeline and per XREADGROUP
MAX_HOPS = 3  # a stanza re-routed by stale views stops travelling after this many relays

# kind -> handler(source node, hops, body); a handler must not block.
Handler = Callable[[str, int, list], None]


def stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Relay:
    """This node's end of the relay. `send` never blocks and never loses a packet while the
    node lives: a packet stays in `_unconfirmed` until the receiver's group shows it handled,
    and is sent again if Redis comes back empty."""

    def __init__(self, client: Any, node: str, boot: str) -> None:
        self.client = client
        self.node = node
        self.boot = boot
        self.key = keys.relay(node)
        self.peers: set[str] = set()  # live nodes other than this one
        self.handlers: dict[str, Handler] = {}
        self.hops = 0  # hops of the packet being handled now (0 outside a handler)
        self.on_undeliverable: Callable[[str, bytes], None] = lambda _target, _packet: None
        # Whether this node may take packets now (it holds a fresh lease); set by the member.
        self.may_take: Callable[[], bool] = lambda: True
        self.on_stale: Callable[[], None] = lambda: None
        self.run_id: str | None = None  # Redis's run id, as liveness last saw it
        self._out: deque[tuple[str, bytes]] = deque()
        self._seq: dict[str, int] = {}
        # target -> (Redis run id, stream id, packets) written but not confirmed handled
        self._unconfirmed: dict[str, deque[tuple[str | None, tuple[int, int], list[bytes]]]] = {}
        self._seen: dict[tuple[str, str], Seen] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._reading = True
        self._failing: set[str] = set()  # "read", "write": failing since it was said
        self.received = 0
        self.duplicates = 0

    # --- sending ----------------------------------------------------------------------------

    def send(self, target: str, kind: str, body: list, hops: int | None = None) -> None:
        seq = self._seq.get(target, 0) + 1
        self._seq[target] = seq
        hop = self.hops + 1 if hops is None else hops
        packet = msgpack.packb([self.node, self.boot, seq, hop, kind, body], use_bin_type=True)
        self._out.append((target, packet))
        self._wake.set()

    def broadcast(self, kind: str, body: list) -> None:
        for peer in self.peers:
            self.send(peer, kind, body, hops=1)

    def backlog(self) -> int:
        """Packets sent but not yet confirmed handled by their receivers (or not yet written)."""
        unconfirmed = sum(len(ps) for q in self._unconfirmed.values() for _, _, ps in q)
        return len(self._out) + unconfirmed

    def lag(self) -> float:
        """Seconds the oldest packet written but not confirmed handled has waited (0: none)."""
        oldest = min((q[0][1][0] for q in self._unconfirmed.values() if q), default=None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._out:
                try:
                    await self._flush(min(len(self._out), BATCH))
                    self._trouble("write", None)
                except (RedisError, OSError) as exc:
                    if asyncio.current_task().cancelling():
                        raise  # stopping: redis-py turned the cancellation into an error
                    self._trouble("write", exc)
                    await asyncio.sleep(0.5)

    async def _flush(self, count: int) -> None:
        """Write up to `count` queued packets: one stream entry per target, holding all of
        that target's packets in order (one XADD, not one per stanza)."""
        batch = [self._out.popleft() for _ in range(count)]
        groups: dict[str, list[bytes]] = {}
        for target, packet in batch:
            groups.setdefault(target, []).append(packet)
        run = self.run_id
        try:
            pipe = self.client.pipeline(transaction=False)
            for target, packets in groups.items():
                # NOMKSTREAM: a stream that is gone belongs to a node that was reaped; its
                # packets must not wait in a stream nobody will read.
                pipe.xadd(keys.relay(target), {b"b": msgpack.packb(packets)}, nomkstream=True)
            ids = await pipe.execute()
        except BaseException:
            self._out.extendleft(reversed(batch))  # in front of what was queued meanwhile
            raise
        retry = []
        for (target, packets), raw in zip(groups.items(), ids, strict=True):
            if raw is not None:
                entry = (run, stream_id(raw), packets)
                self._unconfirmed.setdefault(target, deque()).append(entry)
            elif target in self.peers:
                retry += [(target, p) for p in packets]  # Redis restarted: its node makes it again
            else:
                for packet in packets:
                    try:
                        self.on_undeliverable(target, packet)
                    except Exception:  # noqa: BLE001 - the next packet must still go
                        log.exception("relay: routing a packet for %s again failed", target)
        if retry:
            self._out.extendleft(reversed(retry))
            await asyncio.sleep(0.2)

    async def confirm(self) -> None:
        """Forget what receivers have handled: entries at or below the oldest one their group
        has pending (or, with none pending, the last one it read)."""
        for target in list(self._unconfirmed):
            sent = self._unconfirmed[target]
            if not sent:
                del self._unconfirmed[target]
                continue
            if sent[0][0] != self.run_id:
                self._send_again(target, sent)
                continue
            key = keys.relay(target)
            try:
                # Asked of the Redis run the packets went to, before and after (after a failover
                # the new master's group may say nothing of what the old one was given).
                before = await run_of_key(self.client, key)
                groups = await self.client.xinfo_groups(key)
                pending = await self.client.xpending(key, keys.GROUP)
                after = await run_of_key(self.client, key)
            except ResponseError:  # no such stream or group
                if target not in self.peers:  # its node left or was reaped with its stream
                    log.info("relay: %d packets to %s are beyond confirming (node gone)",
                             len(sent), target)  # fmt: skip
                    del self._unconfirmed[target]
                continue  # (else Redis restarted empty: resend_all comes)
            group = next((g for g in groups if _text(g["name"]) == keys.GROUP), None)
            if group is None or before != after or not same_run(after, self.run_id):
                continue
            if pending["pending"]:
                handled = _before(stream_id(pending["min"]))
            else:
                handled = stream_id(group["last-delivered-id"])
            # Ids of another Redis run mean nothing here: resend_all takes those.
            while sent and sent[0][0] == self.run_id and sent[0][1] <= handled:
                sent.popleft()

    def _send_again(self, target: str, sent: deque) -> None:
        """Packets written to a Redis run that is gone (a flush that was under way when the run
        changed): they go again, first, in order."""
        again = []
        while sent and sent[0][0] != self.run_id:
            again += [(target, p) for p in sent.popleft()[2]]
        self._out.extendleft(reversed(again))
        self._wake.set()

    def resend_all(self) -> None:
        """Redis came back empty: everything not yet confirmed goes again, first, in order."""
        again = [(t, p) for t, q in self._unconfirmed.items() for _, _, ps in q for p in ps]
        self._unconfirmed.clear()
        self._out.extendleft(reversed(again))
        self._wake.set()
        log.warning("relay: a new Redis run (restarted or failed over); sending %d unconfirmed "
                    "packets again", len(again))  # fmt: skip

    def _trouble(self, what: str, exc: BaseException | None) -> None:
        """Say once that reading or writing fails (retried every fraction of a second, for as
        long as a failover takes), and once that it works again."""
        if exc is not None and what not in self._failing:
            self._failing.add(what)
            log.warning("relay: cannot %s Redis (%s); retrying", what, exc)
        elif exc is None and what in self._failing:
            self._failing.discard(what)
            log.warning("relay: can %s Redis again", what)

    # --- receiving --------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.key, keys.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_forever(self) -> None:
        start = "0"  # first what this node's previous run read but never acknowledged
        while self._reading:
            try:
                reply = await self.client.xreadgroup(
                    keys.GROUP, self.node, {self.key: start}, count=BATCH, block=1000
                )
            except (RedisError, OSError) as exc:
                if asyncio.current_task().cancelling():
                    raise  # stopping: redis-py turned the cancellation into an error
                # What Redis gave this consumer in a reply we lost is pending: read it again.
                start = "0"
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    log.warning("relay: the stream's group is gone (Redis restarted empty)")
                else:
                    self._trouble("read", exc)
                await asyncio.sleep(0.2)
                try:
                    await self.ensure_group()
                except (RedisError, OSError):
                    pass
                continue
            self._trouble("read", None)
            entries = reply[0][1] if reply else []
            if not entries:
                start = ">"
                continue
            if not self.may_take():
                # Paused past the lease: a reaper may have routed these already. Leave them
                # pending (the reaper, or this node's next run, takes them).
                self.on_stale()
                start = "0"
                await asyncio.sleep(0.2)  # (until the lease is held again)
                continue
            ids = [entry_id for entry_id, _ in entries]
            for _entry_id, fields in entries:
                for packet in packets_of(fields):
                    self.take(packet)
            await self._acknowledge(ids)

    async def _acknowledge(self, ids: list) -> None:
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.xack(self.key, keys.GROUP, *ids)
                pipe.xtrim(self.key, minid=ids[-1], approximate=False)
                await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                if asyncio.current_task().cancelling():
                    raise  # stopping: redis-py turned the cancellation into an error
                log.warning("relay: cannot acknowledge (%s); retrying", exc)
                await asyncio.sleep(0.5)

    def take(self, packet: bytes, check_duplicate: bool = True) -> None:
        """Hand one packet to its kind's handler, unless it was taken before."""
        source, boot, seq, hops, kind, body = msgpack.unpackb(packet, raw=False)
        if check_duplicate:
            seen = self._seen.get((source, boot))
            if seen is None:  # the first packet of that run to this node's run
                seen = self._seen[(source, boot)] = Seen(seq - 1)
            if not seen.first(seq):
                self.duplicates += 1
                return
        self.received += 1
        handler = self.handlers.get(kind)
        if handler is None:
            log.error("relay: packet of unknown kind %r from %s", kind, source)
            return
        self.hops = hops
        try:
            handler(source, hops, body)
        except Exception:  # noqa: BLE001 - one bad packet must not stop the relay
            log.exception("relay: handling %s from %s failed", kind, source)
        finally:
            self.hops = 0

    # --- lifetime ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flush_forever()),
            loop.create_task(self._read_forever()),
        ]

    async def drain(self, timeout: float) -> None:
        """Let what is queued reach Redis (at shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._out and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def seen_before(self, packet: bytes) -> bool:
        """Whether this node took `packet` already (its own stream, drained at leave)."""
        source, boot, seq, *_ = msgpack.unpackb(packet, raw=False)
        seen = self._seen.get((source, boot))
        return seen is not None and seen.has(seq)

    async def stop_reading(self) -> None:
        """Stop after the batch in hand is acknowledged."""
        self._reading = False
        if len(self._tasks) == 2:
            reader = self._tasks.pop()
            try:
                await asyncio.wait_for(reader, 3.0)
            except (TimeoutError, asyncio.CancelledError, RedisError, OSError):
                reader.cancel()

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


class Seen:
    """The sequence numbers taken from one sender's run: all up to `upto`, and those above it
    that came early (after a Redis restart, resent packets may follow newer ones)."""

    __slots__ = ("upto", "above")
    LIMIT = 10_000  # sequences kept above a gap; past it the gap is given up

    def __init__(self, upto: int = 0) -> None:
        self.upto = upto
        self.above: set[int] = set()

    def has(self, seq: int) -> bool:
        return seq <= self.upto or seq in self.above

    def first(self, seq: int) -> bool:
        """Record `seq`; False when it was taken before."""
        if self.has(seq):
            return False
        if seq == self.upto + 1:
            self.upto = seq
            above = self.above
            while self.upto + 1 in above:
                self.upto += 1
                above.discard(self.upto)
        else:
            self.above.add(seq)
            if len(self.above) > self.LIMIT:
                self.upto = min(self.above)
                self.above.discard(self.upto)
                while self.upto + 1 in self.above:
                    self.upto += 1
                    self.above.discard(self.upto)
        return True


def packets_of(fields: dict) -> list[bytes]:
    """The packets one stream entry holds, in order."""
    return msgpack.unpackb(fields[b"b"])


def _before(entry: tuple[int, int]) -> tuple[int, int]:
    ms, seq = entry
    return (ms, seq - 1) if seq else (ms - 1, 2**64 - 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
