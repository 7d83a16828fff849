"""The in-memory world a replay runs in: c2s machines hosted by actors/host.py's Host (the same
action handlers as a node's actors) on in-memory transports, sharing memory storage, a Router
and a LocalSessionManager, the node's feature registry; server-side work runs after the step
that started it, as a node's storage lanes answer. Answers go to the machine's inbox.

`isolated` machines (replays of xmppd traces) get every answer and delivery from the recording
instead: their services carry nothing out."""

from __future__ import annotations

from collections import deque
from typing import Any

from actors.host import Host
from features.hooks import ServerContext
from features.registry import Registry
from fsm import c2s
from fsm.core import Deliver, Query, TLSEstablished
from fsm.session import C2S, C2SConfig, Env
from routing.router import Router
from routing.sessions import LocalSessionManager
from routing.work import AccountWork
from storage.auth import AnyPassword
from storage.open import memory_storage
from xmpp import sasl
from xmpp.stream import STREAM_CLOSE, StreamParser, stream_header
from xmppd.node import feature_modules

OPEN_STREAM = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
# A fixed channel binding for logs that do STARTTLS without recording theirs.
FIXED_BINDINGS = {"tls-server-end-point": b"\x00" * 32}


class ReplayRandom:
    """Values recorded by a trace, per kind, in order; made-up stable ones when they run out."""

    def __init__(self, recorded: dict[str, list[str]] | None = None) -> None:
        self.queues = {k: deque(v) for k, v in (recorded or {}).items()}
        self.made_up: list[str] = []
        self.count = 0

    def _take(self, kind: str, fallback: str) -> str:
        queue = self.queues.get(kind)
        if queue:
            return queue.popleft()
        self.count += 1
        if kind in self.queues:
            self.made_up.append(kind)  # the recording had fewer: the replay went another way
        return fallback.format(n=self.count)

    def stream_id(self) -> str:
        return self._take("stream_id", "replay-stream-{n}")

    def nonce(self) -> str:
        return self._take("nonce", "replaynonce{n}")

    def resource(self) -> str:
        return self._take("resource", "replay-{n}")

    def iq_id(self) -> str:
        return self._take("iq_id", "replay-iq-{n}")


class ReplayClock:
    def __init__(self, recorded: list[float] | None = None, start: float = 1_700_000_000.0):
        self.queue = deque(recorded or [])
        self.last = self.queue[0] if self.queue else start

    def __call__(self) -> float:
        if self.queue:
            self.last = self.queue.popleft()
        return self.last


class ScriptedSasl:
    """A SASL mechanism that answers with outcomes given in advance (a log without secrets:
    the replay runs on the recorded authentication outcome). `outcomes` is a deque of
    xmpp.sasl step results, consumed one per call."""

    def __init__(self, name: str, outcomes: deque) -> None:
        self.name = name
        self.outcomes = outcomes

    def _next(self) -> Any:
        if not self.outcomes:
            return sasl.Failure("temporary-auth-failure", "the log has no more SASL outcomes")
        return self.outcomes.popleft()

    def step(self, data: bytes | None) -> Any:
        return self._next()

    def credentials(self, creds: Any) -> Any:
        return self._next()

    def password_checked(self, ok: bool) -> Any:
        return self._next()


class MemoryTransport:
    """actors/transport.py in memory: what the machine sends is kept, in order."""

    peer = "127.0.0.1:0"  # a replay is a local client (the test-mode backend lets it in)
    tls_version: str | None = None
    last_input = 0.0

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.out: list[bytes] = []
        self.parser = StreamParser()
        self.trace = None

    def send_header(self, attrs: dict[str, str]) -> None:
        self.out.append(stream_header(attrs))

    def send(self, data: bytes) -> None:
        self.out.append(data)

    def send_close(self) -> None:
        self.out.append(STREAM_CLOSE)

    def start_tls(self) -> None:
        self.parser = StreamParser()
        if not self.machine.isolated:
            self.tls_version = "TLSv1.3"
            self.machine.tell(TLSEstablished("TLSv1.3", self.channel_bindings()))

    def restart(self) -> None:
        self.parser = StreamParser()

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def channel_bindings(self) -> dict[str, bytes]:
        return dict(FIXED_BINDINGS)


class Machine(Host):
    """One client's c2s machine in the world, and everything it did."""

    def __init__(self, name: str, data: C2S, services: Any, *, isolated: bool) -> None:
        self.name = name
        self.isolated = isolated
        self.inbox: deque = deque()
        self.transitions: list[tuple[str, str, str]] = []
        self.queries: list[Query] = []  # waiting for a recorded answer (isolated)
        self.stopped = False
        super().__init__(c2s, data, services, MemoryTransport(self), name)
        self.state = "wait_for_stream"

    @property
    def out(self) -> list[bytes]:
        return self.transport.out

    @property
    def parser(self) -> StreamParser:
        return self.transport.parser

    @parser.setter
    def parser(self, parser: StreamParser) -> None:
        self.transport.parser = parser

    def tell(self, event: Any) -> None:
        self.inbox.append(event)

    def record(self, before: str, event: Any, after: str) -> None:
        self.transitions.append((before, type(event).__name__, after))

    def finish(self, condition: str | None, text: str | None) -> None:
        self.stopped = True


class WorldServices:
    """actors.host.Services for the world's machines: everything at once, in memory."""

    node = "replay"

    def __init__(self, world: World) -> None:
        self.world = world
        self.router = world.router
        self.sessions = world.sessions
        self.max_sessions = world.max_sessions
        self.auth = AnyPassword(world.storage.accounts)  # a log's users log in as they did

    def query(self, account: str, query: Query, reply: Any) -> None:
        reply(_call(query.call, self.world.storage, *query.args))

    def credentials(self, username: str, domain: str, hash_name: str, reply: Any) -> None:
        reply(self.auth.credentials(username, domain, hash_name))

    def check_password(self, username: str, domain: str, password: str, peer: str,
                       reply: Any) -> None:  # fmt: skip
        reply(self.auth.check_password(username, domain, password, peer))

    def tell_session(self, node: str, address: str, event: Any) -> None:
        machine = self.world.machines.get(address)
        if machine is not None:
            machine.tell(event)

    def call_later(self, seconds: float, fn: Any) -> None:
        return None  # timeouts come from the log, if any


class IsolatedServices:
    """For a machine replayed from its own trace: every answer and delivery comes from the
    recording, so nothing is carried out; queries wait for their recorded answers."""

    node = "replay"
    max_sessions = 10

    def __init__(self, machine_of: Any) -> None:
        self.machine_of = machine_of  # () -> the machine (made after its services)
        self.router = _Nowhere()
        self.sessions = _Nowhere()

    def query(self, account: str, query: Query, reply: Any) -> None:
        self.machine_of().queries.append(query)

    def credentials(self, *args: Any) -> None:
        return None

    def check_password(self, *args: Any) -> None:
        return None

    def tell_session(self, *args: Any) -> None:
        return None

    def call_later(self, seconds: float, fn: Any) -> None:
        return None


class _Nowhere:
    """Takes any call and does nothing: an isolated machine's router and session manager."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class World:
    def __init__(self, hosts: tuple[str, ...], settings: Any = None) -> None:
        self.storage = memory_storage()
        self.sessions = LocalSessionManager()
        self.hosts = hosts
        self.features = Registry.from_modules(feature_modules(), settings)
        self.due: deque = deque()  # server-side work: run when the step that started it is done
        self.router = Router("replay", hosts, self.sessions, self, AccountWork(self))
        context = ServerContext(self.sessions, self.features.settings)
        self.router.hooks = lambda name, stanza: self.features.run_server(name, stanza, context)
        self.machines: dict[str, Machine] = {}
        self.max_sessions = 10
        self.services = WorldServices(self)
        self.patch: Any = None  # a test's stand-in for fsm.c2s.step

    # --- accounts --------------------------------------------------------------------------

    def add_account(self, user: str, domain: str, password: str) -> None:
        if not self.storage.accounts.exists(user, domain):
            self.storage.accounts.create(user, domain, sasl.new_credentials(password))

    # --- machines --------------------------------------------------------------------------

    def machine(self, name: str, config: C2SConfig, env: Env, *, isolated: bool = False,
                snapshot: tuple[str, dict] | None = None) -> Machine:  # fmt: skip
        data = C2S(conn_id=name, config=config, env=env, features=self.features, peer="replay")
        services = IsolatedServices(lambda: m) if isolated else self.services
        m = Machine(name, data, services, isolated=isolated)
        if self.patch is not None:
            m.step = self.patch
        self.machines[name] = m
        if snapshot is not None:
            m.state, fields = snapshot
            m.data = C2S(**{**fields, "conn_id": name, "config": config, "env": env,
                            "features": self.features})  # fmt: skip
            if m.data.jid is not None and not isolated:
                self.sessions.open(m.data.jid, "replay", name, self.max_sessions, _ignore)
            if m.data.header_sent:  # the client's stream is open: so must the parser's be
                m.parser.feed(OPEN_STREAM)
            return m
        m.start_machine()
        return m

    def step(self, m: Machine, event: Any) -> None:
        m.handle(event)
        self.run_due()

    def run_due(self) -> None:
        while self.due:
            call, args, done = self.due.popleft()
            done(_call(call, self.storage, *args))

    def feed(self, m: Machine, data: bytes) -> None:
        for event in m.parser.feed(data):
            m.tell(event)

    def run(self, limit: int = 100_000) -> None:
        """Step every machine until no inbox holds anything."""
        for _ in range(limit):
            busy = next((m for m in self.machines.values() if m.inbox), None)
            if busy is None and self.due:
                self.run_due()
                continue
            if busy is None:
                return
            self.step(busy, busy.inbox.popleft())
        raise RuntimeError("the replay does not settle (a delivery loop?)")

    # --- what the router needs (routing.router.LocalSessions, routing.work.Lanes) ----------

    def deliver(self, address: str, stanza: Any) -> bool:
        m = self.machines.get(address)
        if m is None or m.stopped:
            return False
        m.tell(Deliver(stanza))
        return True

    def submit(self, account: str, call: Any, args: tuple, done: Any) -> None:
        self.due.append((call, args, done))


def _ignore(_answer: Any) -> None:
    return None


def _call(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - the machine gets the exception as the result
        return exc
