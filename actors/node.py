"""A node: listeners, the connection actors and their supervision, on one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pykka import ActorDeadError

from actors.c2s import C2SActor
from actors.connection import Connection
from actors.randomness import ENTROPY, SystemRandom
from actors.runtime import Scheduler, run_blocking
from fsm.core import Deliver, DeliverToUser, Kick, Route, RoutePresencesOf, Timeout
from fsm.session import C2S, C2SConfig, Env
from routing.router import Router
from routing.sessions import LocalSessionManager
from storage.accounts import AccountExists
from xmpp import sasl
from xmpp.jid import JID, JIDMalformed

log = logging.getLogger("xmppd.node")


@dataclass
class TLSCertificates:
    """One SSLContext per host, chosen by SNI; the channel-binding digest follows the choice."""

    contexts: dict[str, ssl.SSLContext]
    digests: dict[int, bytes] = field(default_factory=dict)
    default: ssl.SSLContext | None = None

    @classmethod
    def load(cls, pairs: dict[str, tuple[str, str]]) -> TLSCertificates:
        from xmppd.certs import certificate_der, load_tls_context

        contexts, digests = {}, {}
        for host, (cert, key) in pairs.items():
            context = load_tls_context(cert, key)
            contexts[host] = context
            digests[id(context)] = sasl.tls_server_end_point(certificate_der(cert))
        certs = cls(contexts, digests)
        certs.default = next(iter(contexts.values()))
        certs.default.sni_callback = certs._choose
        return certs

    def _choose(self, sslobj: Any, server_name: str | None, _context: Any) -> None:
        context = self.contexts.get((server_name or "").lower())
        if context is not None:
            sslobj.context = context

    def digest(self, context: ssl.SSLContext) -> bytes:
        return self.digests.get(id(context), b"")


class Node:
    def __init__(
        self,
        config: Any,
        storage: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        trace_dir: Any = None,
        trace_secrets: bool = False,
    ) -> None:
        from features.registry import Registry

        self.config = config
        self.storage = storage
        self.loop = loop
        self.scheduler = Scheduler(loop)
        self.sessions = LocalSessionManager()
        self.hosts = {host.name: host for host in config.hosts}
        self.router = Router(self.sessions, self.hosts, deliver=_deliver)
        self.features = Registry.from_modules(feature_modules(), self._settings())
        inbound = self._hook(self.features.inbound_presence)
        self.router.inbound_presence = inbound and partial(self._inbound_presence, inbound)
        self.router.undeliverable = self._hook(self.features.undeliverable_message)
        self.actors: dict[str, C2SActor] = {}
        self.per_ip: Counter[str] = Counter()
        self.servers: list[asyncio.base_events.Server] = []
        self.fake_salt_secret = secrets.token_bytes(32)
        self.started = time.time()
        self.test_hooks = os.environ.get("XMPPD_TEST_HOOKS") == "1"
        self.tls = self._load_tls()
        self._sweeper: asyncio.TimerHandle | None = None
        self.max_connections = connection_room()
        # Server-side work for one account runs in order (offline messages keep theirs):
        # each account's stanzas go to one single-thread lane, chosen by its bare JID.
        self._lanes = [
            ThreadPoolExecutor(1, thread_name_prefix=f"xmppd-lane{i}") for i in range(LANES)
        ]
        self._refused = 0
        # `xmppd serve --trace DIR`: every session writes DIR/<connection id>.trace.
        self.trace_dir = trace_dir
        self.trace_secrets = trace_secrets

    def _settings(self) -> Any:
        from features.im import Settings
        from xmppd import __version__

        limits = self.config.limits
        return Settings(
            max_roster_items=limits.max_roster_items,
            max_offline_messages=limits.max_offline_messages,
            max_vcard_bytes=limits.max_vcard_bytes,
            max_private_bytes=limits.max_private_bytes,
            started=time.time(),
            version=__version__,
        )

    def _hook(self, hook: Callable | None) -> Callable | None:
        if hook is None:
            return None
        bound = partial(hook, settings=self.features.settings)
        return lambda stanza: self.offload(bound, stanza)

    def _inbound_presence(self, offload: Callable, stanza: Any) -> None:
        if stanza.get("type") != "probe" or not self._probe_answered_here(stanza):
            offload(stanza)

    def _probe_answered_here(self, probe: Any) -> bool:
        """A probe of an account with an available session is answered from what its sessions
        know of its subscriptions, the answer inbound_probe reads from storage (RFC 6121
        §4.3.2), without a storage read or a lane hop: every login probes every contact."""
        try:
            contact = JID.parse(probe.get("to") or "").bare
            prober = JID.parse(probe.get("from") or "")
        except JIDMalformed:
            return False
        known = [
            entry.pres_from
            for entry in self.sessions.resources(contact)
            if entry.available and entry.pres_from is not None
        ]
        if not known:
            return False  # offline, or not told yet: storage answers (with the last logout)
        if prober.bare == contact or str(prober.bare) in known[0]:
            self.perform([RoutePresencesOf(contact, str(prober))])
        return True

    def _load_tls(self) -> TLSCertificates:
        return TLSCertificates.load(
            {name: (h.certificate, h.key) for name, h in self.hosts.items()}
        )

    def reload_tls(self) -> None:
        """SIGHUP: new connections get the certificates now on disk."""
        self.tls = self._load_tls()
        log.info("certificates reloaded for %s", ", ".join(self.hosts))

    # --- listeners -------------------------------------------------------------------------

    async def start(self) -> None:
        for listener in self.config.listeners:
            factory = self._connection_factory(listener)
            try:
                server = await self.loop.create_server(
                    factory, listener.address, listener.port, reuse_address=True, backlog=1024
                )
            except OSError as exc:
                exc.filename = f"{listener.address}:{listener.port}"  # which one, for the user
                raise
            self.servers.append(server)
            log.info("c2s listening on %s:%d (%s)", listener.address, listener.port, listener.tls)
        self._schedule_sweep()

    def _connection_factory(self, listener: Any) -> Callable[[], Connection]:
        limits = self.config.limits
        c2s_config = self._c2s_config(listener)

        def tls_context() -> TLSCertificates:
            return self.tls

        def factory() -> Connection:
            conn_id = ENTROPY.hex(5)
            return Connection(
                conn_id,
                tls_context,
                listener.tls == "direct",
                limits.max_stanza_bytes,
                limits.max_bytes_per_second,
                limits.burst_bytes,
                limits.max_send_buffer_bytes,
                on_made=lambda conn: self._accept(conn, c2s_config),
                on_close=self._forget,
            )

        return factory

    def _c2s_config(self, listener: Any) -> C2SConfig:
        limits = self.config.limits
        return C2SConfig(
            hosts=tuple(self.hosts),
            mechanisms={n: tuple(h.sasl_mechanisms) for n, h in self.hosts.items()},
            anonymous_hosts=frozenset(n for n, h in self.hosts.items() if h.anonymous),
            tls_mode=listener.tls,
            tls_available=True,
            max_auth_failures=limits.max_auth_failures,
            header_timeout=limits.stream_header_timeout,
            auth_timeout=limits.auth_timeout,
            ping_timeout=limits.ping_timeout,
            fake_salt_secret=self.fake_salt_secret,
            insecure_any_password=self.config.testing.any_password,  # loopback only (config)
        )

    def _accept(self, conn: Connection, c2s_config: C2SConfig) -> Any:
        if len(self.actors) >= self.max_connections:
            self._refused += 1
            if self._refused % 1000 == 1:
                log.warning(
                    "out of file descriptors: refusing connections (%d so far); raise LimitNOFILE",
                    self._refused,
                )
            return None
        data = C2S(
            conn_id=conn.conn_id,
            config=c2s_config,
            env=Env(time.time, SystemRandom()),
            features=self.features,
            peer=conn.peer,
            tls=None,
        )
        trace = self.tracer(data) if self.trace_dir is not None else None
        ref = self.scheduler.start(C2SActor, self, conn, data, trace)
        ip = conn.peer.rsplit(":", 1)[0]
        self.per_ip[ip] += 1
        limits = self.config.limits
        exempt = limits.exempt_loopback and ip.startswith(("127.", "::1"))
        if self.per_ip[ip] > limits.max_connections_per_ip and not exempt:
            ref.tell(Kick("policy-violation", "too many connections from your address"))
        log.debug("[%s] accepted from %s", conn.conn_id, conn.peer)
        return ref

    def tracer(self, data: C2S, directory: Any = None, secrets: bool | None = None) -> Any:
        """A trace file for the session whose data this is (docs/traces.md)."""
        from pathlib import Path

        from actors.trace import Tracer

        directory = Path(directory or self.trace_dir)
        directory.mkdir(parents=True, exist_ok=True)
        secrets = self.trace_secrets if secrets is None else secrets
        path, n = directory / f"{data.conn_id}.trace", 1
        while path.exists():  # traced again after `trace stop`: a new file
            n += 1
            path = directory / f"{data.conn_id}.{n}.trace"
        limits = {"max_stanza_bytes": self.config.limits.max_stanza_bytes}
        return Tracer(path, data, secrets=secrets, settings=self.features.settings, limits=limits)

    def _forget(self, conn: Connection) -> None:
        if self.actors.pop(conn.conn_id, None) is not None:
            ip = conn.peer.rsplit(":", 1)[0]
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    # --- services the actors use -----------------------------------------------------------

    def blocking(self, ref: Any, fn: Callable, args: tuple, reply: Callable[[Any], Any]) -> None:
        """Run `fn(*args)` on the thread pool; its result comes back to `ref` as a message."""
        run_blocking(ref, fn, *args, reply=lambda r: reply(_value(r, fn)))

    def check_password(self, username: str, domain: str, password: str) -> bool:
        creds = self.storage.accounts.credentials(username, domain, "SHA-256")
        if creds is None:
            creds = self.storage.accounts.credentials(username, domain, "SHA-1")
        return creds is not None and sasl.verify_plain(password, creds)

    def ensure_account(self, username: str, domain: str) -> None:
        """Test mode: an account for a user any password let in, created on the account's lane
        so that its session's first queries find it."""
        self.lane(f"{username}@{domain}").submit(_ensure_account, self.storage, username, domain)

    def close_session(self, jid: Any, ref: Any) -> None:
        self.sessions.close(jid, ref)

    def set_session_info(
        self, jid: Any, ref: Any, presence: Any, interested: Any, pres_from: Any = None
    ) -> None:
        entry = self.sessions.get(jid)
        if entry is None or entry.handle is not ref:
            return
        if presence is not None:
            entry.presence = presence
        if interested is not None:
            entry.interested = interested
        if pres_from is not None:
            entry.pres_from = pres_from

    # --- server-side work: what features return outside any session ------------------------

    def offload(self, hook: Callable, stanza: Any) -> None:
        """Run a feature's server-side `hook(storage, stanza)` on the thread pool; carry out
        the actions it returns back on the loop."""

        def done(future: Any) -> None:
            try:
                actions = future.result()
            except Exception:  # noqa: BLE001 - one stanza's failure must not stop the node
                log.exception("%s failed on %s", getattr(hook, "__name__", hook), stanza.tag)
                return
            self.loop.call_soon_threadsafe(self.perform, actions)

        self.lane(_bare_to(stanza)).submit(hook, self.storage, stanza).add_done_callback(done)

    def lane(self, bare_jid: str) -> ThreadPoolExecutor:
        """The single thread that runs every storage change of one account, in order: its
        sessions' queries and what the server does on its behalf never race each other."""
        return self._lanes[hash(bare_jid) % len(self._lanes)]

    def perform(self, actions: list) -> None:
        for action in actions:
            match action:
                case Route(stanza):
                    self.router.route(stanza)
                case DeliverToUser(bare, stanza, interested_only, available_only, except_jid, keep):
                    for entry in self.sessions.resources(bare):
                        if interested_only and not entry.interested:
                            continue
                        if available_only and not entry.available or entry.jid == except_jid:
                            continue
                        copy = deepcopy(stanza)
                        if not keep:
                            copy.set("to", str(entry.jid))
                        _deliver(entry.handle, copy)
                case RoutePresencesOf(bare, to, unavailable, otherwise, except_jid):
                    sent = False
                    for entry in self.sessions.resources(bare):
                        if entry.jid == except_jid:
                            continue
                        if entry.available and entry.presence is not None:
                            self.router.route(_presence_copy(entry, to, unavailable))
                            sent = True
                    if not sent and otherwise is not None:
                        self.router.route(otherwise)
                case _:
                    raise TypeError(f"the node cannot perform {action!r}")

    # --- idle connections --------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        interval = max(1.0, min(30.0, self.config.limits.idle_timeout / 4))
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Tell connections that said nothing for idle_timeout: the machine pings them."""
        limit = time.monotonic() - self.config.limits.idle_timeout
        for actor in list(self.actors.values()):
            if actor.conn.last_input < limit:
                actor.actor_ref.tell(Timeout("idle"))
        self._schedule_sweep()

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
            actor.conn.abort()
        for lane in self._lanes:
            lane.shutdown(wait=True)
        self.scheduler.close()
        log.info("stopped")


def feature_modules() -> list:
    """Every feature this node serves; disco#info lists what they register."""
    from features import disco, last, offline, ping, presence, private, roster, vcard, version
    from features import time as entity_time

    return [ping, disco, roster, presence, offline, vcard, private, version, entity_time, last]


# Descriptors kept back from connections: listeners, the database, the admin socket, log files,
# the thread pool's work. Running out would make accept() fail for everything, admin included.
FD_RESERVE = 64


def connection_room() -> int:
    """How many connections fit under the open-file limit, with FD_RESERVE kept back."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(1, soft - FD_RESERVE)


LANES = 4


def _ensure_account(storage: Any, username: str, domain: str) -> None:
    try:
        if not storage.accounts.exists(username, domain):
            storage.accounts.create(username, domain, {})  # no credentials: test mode only
    except AccountExists:
        return  # another session of the same user created it first: what we wanted
    except Exception:  # noqa: BLE001 - the login goes on; the account's features will say
        log.exception("test mode: could not create %s@%s", username, domain)


def _bare_to(stanza: Any) -> str:
    return (stanza.get("to") or "").partition("/")[0]


def _presence_copy(entry: Any, to: str, unavailable: bool) -> Any:
    presence = deepcopy(entry.presence)
    presence.set("from", str(entry.jid))
    presence.set("to", to)
    if unavailable:
        for child in list(presence):
            presence.remove(child)
        presence.set("type", "unavailable")
    return presence


def _deliver(handle: Any, stanza: Any) -> bool:
    try:
        handle.tell(Deliver(stanza))
    except ActorDeadError:
        return False
    return True


def _value(result: Any, fn: Callable) -> Any:
    if isinstance(result, BaseException):
        log.error("%s failed: %r", getattr(fn, "__name__", fn), result)
        return None
    return result
