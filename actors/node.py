"""A node's runtime: listeners, the host actors by session address, the storage lanes, idle sweeps
and shutdown, on one event loop. What runs here (machines, features, storage, authentication,
certificates) is chosen by xmppd/ and handed in."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pykka import ActorDeadError

from actors.actor import Ended, HostActor
from actors.connection import Connection
from actors.host import LoginCounts
from actors.lanes import StorageLanes
from actors.randomness import ENTROPY
from actors.runtime import Scheduler
from features.hooks import ServerContext
from fsm.core import AUTH_UNAVAILABLE, Deliver, Kick, SessionReplaced, Timeout
from routing.router import Router
from routing.routes import RouteTable
from routing.work import AccountWork

log = logging.getLogger("xmppd.node")

LANES = 4
ENDED_KEPT = 200  # ended sessions whose last transitions `xmppctl session ID` can still show

# Events one node may give a session on another (routing.routes.RouteTable.tell), by name.
REMOTE_EVENTS: dict[str, type] = {"SessionReplaced": SessionReplaced, "Kick": Kick}


@dataclass(frozen=True)
class Limits:
    """The per-connection limits the runtime enforces itself."""

    max_stanza_bytes: int
    max_bytes_per_second: int
    burst_bytes: int
    max_send_buffer_bytes: int
    max_connections_per_ip: int
    exempt_loopback: bool
    idle_timeout: float
    max_sessions_per_account: int


@dataclass(frozen=True)
class Listener:
    """A socket to listen on and the machine each accepted connection runs: `new_data(conn_id,
    peer)` makes the machine's first data."""

    kind: str  # "c2s"
    address: str
    port: int
    tls: str  # "starttls", "starttls-optional" or "direct"
    machine: Any
    new_data: Callable[[str, str], Any]


class Node:
    def __init__(
        self,
        *,
        node_id: str,
        loop: asyncio.AbstractEventLoop,
        storage: Any,
        hosts: tuple[str, ...],
        sessions: Any,
        routes: RouteTable,
        features: Any,
        auth: Any,
        certificates: Callable[[], Any],
        limits: Limits,
        listeners: list[Listener],
        tracing: Any,
    ) -> None:
        self.node_id = node_id
        self.loop = loop
        self.storage = storage
        self.hosts = hosts
        self.sessions = sessions
        self.features = features
        self.auth = auth
        self.certificates = certificates  # SIGHUP makes xmppd/ hand in a fresh set
        self.limits = limits
        self.listeners = listeners
        self.tracing = tracing  # actors.trace.Tracing
        self.scheduler = Scheduler(loop)
        self.actors: dict[str, HostActor] = {}  # session address -> its actor
        # The last sessions that ended, for `xmppctl session ID` (and a watcher) to show how.
        self.ended: OrderedDict[str, Ended] = OrderedDict()
        self.logins = LoginCounts()
        self.per_ip: Counter[str] = Counter()
        self.servers: list[asyncio.base_events.Server] = []
        self.started = time.time()
        self.max_connections = connection_room()
        self._refused = 0
        self.serving = True  # False while the cluster says this node must not serve
        self.leaving: Callable[[], Awaitable[None]] | None = None  # run before the runtime stops
        self.cluster: Any = None  # a clustered node's cluster.member.ClusterMember (xmppd/ sets it)
        self._sweeper: asyncio.TimerHandle | None = None
        # Everything that changes one account's storage runs on one single-thread lane, chosen
        # by its bare JID: its sessions' queries and the server's work for it never race.
        self.lanes = StorageLanes(self.storage, loop, LANES)
        self.router = Router(node_id, hosts, sessions, self, AccountWork(self.lanes), routes)
        context = ServerContext(sessions, features.settings)
        self.router.hooks = lambda name, stanza: features.run_server(name, stanza, context)
        self.services = NodeServices(self)

    # --- listeners -------------------------------------------------------------------------

    async def start(self) -> None:
        for listener in self.listeners:
            try:
                server = await self.loop.create_server(
                    lambda listener=listener: self._connection(listener),
                    listener.address,
                    listener.port,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as exc:
                exc.filename = f"{listener.address}:{listener.port}"  # which one, for the user
                raise
            self.servers.append(server)
            log.info(
                "%s listening on %s:%d (%s)",
                listener.kind, listener.address, listener.port, listener.tls,
            )  # fmt: skip
        self._schedule_sweep()

    def _connection(self, listener: Listener) -> Connection:
        limits = self.limits
        return Connection(
            ENTROPY.hex(5),
            self.certificates,
            listener.tls == "direct",
            limits.max_stanza_bytes,
            limits.max_bytes_per_second,
            limits.burst_bytes,
            limits.max_send_buffer_bytes,
            on_made=lambda conn: self._accept(conn, listener),
            on_close=self._forget,
        )

    def _accept(self, conn: Connection, listener: Listener) -> Any:
        if len(self.actors) >= self.max_connections:
            self._refused += 1
            if self._refused % 1000 == 1:
                log.warning(
                    "out of file descriptors: refusing connections (%d so far); raise LimitNOFILE",
                    self._refused,
                )
            return None
        data = listener.new_data(conn.conn_id, conn.peer)
        if not self.serving:
            ref = self.scheduler.start(
                HostActor, listener.machine, data, self.services, conn, conn.conn_id, None
            )
            ref.tell(Kick("system-shutdown", "this node is not serving (cluster lease lost)"))
            return ref
        trace = self.tracing.new(data) if self.tracing.every_session else None
        ref = self.scheduler.start(
            HostActor, listener.machine, data, self.services, conn, conn.conn_id, trace
        )
        ip = conn.peer.rsplit(":", 1)[0]
        self.per_ip[ip] += 1
        limits = self.limits
        exempt = limits.exempt_loopback and ip.startswith(("127.", "::1"))
        if self.per_ip[ip] > limits.max_connections_per_ip and not exempt:
            ref.tell(Kick("policy-violation", "too many connections from your address"))
        log.debug("[%s] accepted from %s", conn.conn_id, conn.peer)
        return ref

    def _forget(self, conn: Connection) -> None:
        actor = self.actors.pop(conn.conn_id, None)
        if actor is not None:
            self.ended[conn.conn_id] = actor.ended()
            if len(self.ended) > ENDED_KEPT:
                self.ended.popitem(last=False)
            ip = conn.peer.rsplit(":", 1)[0]
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    # --- this node's sessions (routing.router.LocalSessions) -------------------------------

    def deliver(self, address: str, stanza: Any) -> bool:
        actor = self.actors.get(address)
        if actor is None:
            return False
        try:
            actor.actor_ref.tell(Deliver(stanza))
        except ActorDeadError:
            return False
        return True

    def tell_named(self, address: str, event: str, args: tuple) -> bool:
        kind = REMOTE_EVENTS.get(event)
        actor = self.actors.get(address)
        if kind is None or actor is None:
            return False
        actor.tell(kind(*args))
        return True

    # --- idle connections --------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        interval = max(1.0, min(30.0, self.limits.idle_timeout / 4))
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Tell connections that said nothing for idle_timeout: the machine pings them."""
        limit = time.monotonic() - self.limits.idle_timeout
        for actor in list(self.actors.values()):
            if actor.transport.last_input < limit:
                actor.actor_ref.tell(Timeout("idle"))
        self._schedule_sweep()

    # --- serving, as the cluster allows --------------------------------------------------------

    def suspend(self, why: str) -> None:
        """Close every client stream with <system-shutdown/> and take no logins until resumed."""
        self.serving = False
        for actor in list(self.actors.values()):
            actor.actor_ref.tell(Kick("system-shutdown", why))

    def resume(self) -> None:
        self.serving = True
        log.warning("serving again")

    # --- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, grace: float = 5.0) -> None:
        """Close every stream with <system-shutdown/>, wait for them to flush, stop listening."""
        for server in self.servers:
            server.close()
        if self._sweeper:
            self._sweeper.cancel()
        for actor in list(self.actors.values()):
            actor.actor_ref.tell(Kick("system-shutdown", "the server is shutting down"))
        deadline = time.monotonic() + grace
        while self.actors and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for actor in list(self.actors.values()):
            actor.transport.abort()
        if self.leaving is not None:
            await self.leaving()
        self.lanes.shutdown()
        self.scheduler.close()
        log.info("stopped")


class NodeServices:
    """What the node gives its host actors (actors.host.Services)."""

    def __init__(self, node: Node) -> None:
        self.node_ref = node
        self.node = node.node_id
        self.router = node.router
        self.sessions = node.sessions
        self.max_sessions = node.limits.max_sessions_per_account
        self.auth = node.auth
        self.logins = node.logins

    def query(self, account: str, query: Any, reply: Callable[[Any], None]) -> None:
        self.node_ref.lanes.submit(account, query.call, query.args, reply)

    def query_all(self, account: str, queries: list, replies: list) -> None:
        """Several queries as one job on the account's lane: one trip there and back."""

        def answer(outcomes: Any) -> None:
            if isinstance(outcomes, BaseException):
                outcomes = [outcomes] * len(replies)
            for reply, outcome in zip(replies, outcomes, strict=True):
                reply(outcome)

        self.node_ref.lanes.submit(account, _run_all, (queries,), answer)

    def credentials(self, username: str, domain: str, hash_name: str,
                    reply: Callable[[Any], None]) -> None:  # fmt: skip
        self._auth(f"{username}@{domain}", self.auth.credentials, (username, domain, hash_name),
                   reply)  # fmt: skip

    def check_password(self, username: str, domain: str, password: str, peer: str,
                       reply: Callable[[bool], None]) -> None:  # fmt: skip
        self._auth(f"{username}@{domain}", self.auth.check_password,
                   (username, domain, password, peer), reply)  # fmt: skip

    def _auth(self, account: str, fn: Callable, args: tuple, reply: Callable) -> None:
        """On the account's lane, so that an account the backend creates (test mode) is there
        before the session's first query."""

        def call(_storage: Any, *args: Any) -> Any:
            return fn(*args)

        def answer(outcome: Any) -> None:
            if isinstance(outcome, BaseException):
                log.error("authentication backend failed for %s: %r", account, outcome)
                outcome = AUTH_UNAVAILABLE
            reply(outcome)

        self.node_ref.lanes.submit(account, call, args, answer)

    def attach(self, address: str, actor: HostActor) -> None:
        """A host actor is starting: sessions are found by its address from now on."""
        self.node_ref.actors[address] = actor

    def tell_session(self, node: str, address: str, event: Any) -> None:
        if node != self.node:
            args = tuple(getattr(event, name) for name in getattr(event, "__slots__", ()))
            self.router.routes.tell(node, address, type(event).__name__, args)
            return
        actor = self.node_ref.actors.get(address)
        if actor is not None:
            actor.tell(event)

    def call_later(self, seconds: float, fn: Callable[[], None]) -> Any:
        return self.node_ref.loop.call_later(seconds, fn)


def _run_all(storage: Any, queries: list) -> list:
    """Each query's value, or the exception it raised: one failing does not stop the next."""
    outcomes = []
    for query in queries:
        try:
            outcomes.append(query.call(storage, *query.args))
        except Exception as exc:  # noqa: BLE001 - the machine's `then` decides what it means
            outcomes.append(exc)
    return outcomes


# Descriptors kept back from connections: listeners, the database, the admin socket, log files,
# the storage lanes' work. Running out would make accept() fail for everything, admin included.
FD_RESERVE = 64


def connection_room() -> int:
    """How many connections fit under the open-file limit, with FD_RESERVE kept back."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(1, soft - FD_RESERVE)
