"""The in-memory world a replay runs in: fresh c2s machines with no sockets, sharing memory
storage, a Router and a LocalSessionManager, the node's feature registry, and server-side hooks
run after the step that called them, as a node's storage lanes answer. Actions are carried out
at once; answers go to the machine's inbox.

`isolated` machines (replays of xmppd traces) get every answer and delivery from the recording
instead: their Route/DeliverToUser/... actions are noted, not carried out."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actors.node import Node, feature_modules
from features.registry import Registry
from fsm import c2s
from fsm.core import (
    CancelTimer,
    CheckPassword,
    CloseSession,
    CredentialsLoaded,
    EnsureAccount,
    LoadCredentials,
    OpenSession,
    PasswordChecked,
    Query,
    QueryDone,
    RestartStream,
    Send,
    SendClose,
    SendHeader,
    SessionOpened,
    SessionReplaced,
    SetPresence,
    SetSessionInfo,
    SetTimer,
    StartTLS,
    Stop,
    TLSEstablished,
)
from fsm.session import C2S, C2SConfig, Env
from routing.router import Router
from routing.sessions import LocalSessionManager, TooManySessions
from storage.open import memory_storage
from xmpp import sasl
from xmpp.stream import STREAM_CLOSE, StreamParser, serialize, stream_header

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


@dataclass
class Machine:
    """One client's c2s machine in the world, and everything it did."""

    name: str
    state: str
    data: C2S
    parser: StreamParser = field(default_factory=StreamParser)
    inbox: deque = field(default_factory=deque)
    out: list[bytes] = field(default_factory=list)
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    acts: list[str] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)  # waiting for a recorded answer
    stopped: bool = False
    isolated: bool = False

    def tell(self, event: Any) -> None:
        self.inbox.append(event)


class World:
    def __init__(self, hosts: tuple[str, ...], settings: Any = None) -> None:
        self.storage = memory_storage()
        self.sessions = LocalSessionManager()
        self.hosts = hosts
        self.router = Router(self.sessions, hosts, deliver=_deliver)
        self.features = Registry.from_modules(feature_modules(), settings)
        hooks = self.features
        # On a node the hooks run on a storage lane and their actions come back after the
        # actor's step: here they wait until the step's own actions are carried out.
        self.hooks_due: deque = deque()
        if hooks.inbound_presence is not None:
            self.router.inbound_presence = lambda s: self.hooks_due.append(
                (hooks.inbound_presence, s)
            )
        if hooks.undeliverable_message is not None:
            self.router.undeliverable = lambda s: self.hooks_due.append(
                (hooks.undeliverable_message, s)
            )
        self.machines: dict[str, Machine] = {}
        self.max_sessions = 10
        self.patch: Any = None  # a test's stand-in for fsm.c2s.step

    # --- accounts --------------------------------------------------------------------------

    def add_account(self, user: str, domain: str, password: str) -> None:
        if not self.storage.accounts.exists(user, domain):
            self.storage.accounts.create(user, domain, sasl.new_credentials(password))

    # --- machines --------------------------------------------------------------------------

    def machine(self, name: str, config: C2SConfig, env: Env, *, isolated: bool = False,
                snapshot: tuple[str, dict] | None = None) -> Machine:  # fmt: skip
        data = C2S(conn_id=name, config=config, env=env, features=self.features, peer="replay")
        m = Machine(name, "wait_for_stream", data, isolated=isolated)
        self.machines[name] = m
        if snapshot is not None:
            m.state, fields = snapshot
            m.data = C2S(**{**fields, "conn_id": name, "config": config, "env": env,
                            "features": self.features})  # fmt: skip
            if m.data.jid is not None and not isolated:
                self.sessions.open(m.data.jid, m, name, self.max_sessions)
            if m.data.header_sent:  # the client's stream is open: so must the parser's be
                m.parser.feed(OPEN_STREAM)
            return m
        transition = c2s.init(m.data)
        m.data = transition.data
        self.execute(m, transition.actions)
        return m

    def step(self, m: Machine, event: Any) -> None:
        before = m.state
        step = self.patch or c2s.step
        m.state, m.data, actions = step(before, event, m.data)
        m.transitions.append((before, type(event).__name__, m.state))
        self.execute(m, actions)
        self.run_hooks()

    def run_hooks(self) -> None:
        while self.hooks_due:
            hook, stanza = self.hooks_due.popleft()
            self.perform(hook(self.storage, stanza, settings=self.features.settings))

    def feed(self, m: Machine, data: bytes) -> None:
        for event in m.parser.feed(data):
            m.tell(event)

    def run(self, limit: int = 100_000) -> None:
        """Step every machine until no inbox holds anything."""
        for _ in range(limit):
            busy = next((m for m in self.machines.values() if m.inbox), None)
            if busy is None and self.hooks_due:
                self.run_hooks()
                continue
            if busy is None:
                return
            self.step(busy, busy.inbox.popleft())
        raise RuntimeError("the replay does not settle (a delivery loop?)")

    # --- actions -----------------------------------------------------------------------------

    def execute(self, m: Machine, actions: list) -> None:
        for action in actions:
            match action:
                case Send(element):
                    m.out.append(serialize(element))
                case SendHeader(attrs):
                    m.out.append(stream_header(attrs))
                case SendClose():
                    m.out.append(STREAM_CLOSE)
                case RestartStream():
                    m.parser = StreamParser()
                case StartTLS():
                    m.parser = StreamParser()
                    if not m.isolated:
                        m.tell(TLSEstablished("TLSv1.3", dict(FIXED_BINDINGS)))
                case Stop():
                    m.stopped = True
                case SetTimer() | CancelTimer():
                    m.acts.append(type(action).__name__)  # timeouts come from the log, if any
                case Query() if m.isolated:
                    m.queries.append(action)
                case _ if m.isolated:
                    m.acts.append(type(action).__name__)
                case Query(call, args, then):
                    m.tell(QueryDone(then, _call(call, self.storage, *args)))
                case LoadCredentials(username, domain, hash_name):
                    creds = self.storage.accounts.credentials(username, domain, hash_name)
                    m.tell(CredentialsLoaded(username, creds))
                case EnsureAccount(username, domain):
                    if not self.storage.accounts.exists(username, domain):
                        self.storage.accounts.create(username, domain, {})
                case CheckPassword(username, domain, password):
                    creds = self.storage.accounts.credentials(username, domain, "SHA-256")
                    ok = creds is not None and sasl.verify_plain(password, creds)
                    m.tell(PasswordChecked(username, ok))
                case OpenSession(jid):
                    m.tell(self._open(m, jid))
                case CloseSession(jid):
                    self.sessions.close(jid, m)
                case SetPresence(jid, available, priority):
                    self.sessions.set_presence(jid, available, priority)
                case SetSessionInfo(jid, presence, interested, pres_from):
                    Node.set_session_info(self, jid, m, presence, interested, pres_from)  # type: ignore[arg-type]
                case _:
                    m.acts.append(type(action).__name__)
                    self.perform([action])

    def perform(self, actions: list) -> None:
        """Server-side actions (Route, DeliverToUser, RoutePresencesOf), as the node does."""
        Node.perform(self, actions)  # type: ignore[arg-type] - needs .router and .sessions

    def _open(self, m: Machine, jid: Any) -> SessionOpened:
        try:
            old = self.sessions.open(jid, m, m.name, self.max_sessions)
        except TooManySessions:
            return SessionOpened(jid, "resource-constraint")
        if old is not None and old is not m:
            old.tell(SessionReplaced())
        return SessionOpened(jid)


def _call(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - the machine gets the exception as the result
        return exc


def _deliver(handle: Machine, stanza: Any) -> bool:
    if handle.stopped:
        return False
    from fsm.core import Deliver

    handle.tell(Deliver(stanza))
    return True
