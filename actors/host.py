"""The host of a state machine: steps it with each event and carries out the actions it returns,
through one table of action handlers. An actor on a node (actors/actor.py) and a machine in a
replay world (xmppd/replay/world.py) are both hosts; they differ only in the services and the
transport they are given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fsm.core import (
    CancelTimer,
    CheckPassword,
    CloseSession,
    CredentialsLoaded,
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
    Timeout,
)
from routing.actions import ROUTING_ACTIONS, Route
from routing.sessions import Opened
from xmpp.stream import serialize


class LoginCounts:
    """Logins and failed attempts by SASL mechanism, since the node started (metrics)."""

    def __init__(self) -> None:
        self.succeeded: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def observe(self, before: Any, after: Any) -> None:
        """Count what one step of a c2s machine did to its login."""
        if after.user is not None and before.user is None:
            name = after.sasl_mechanism or "unknown"
            self.succeeded[name] = self.succeeded.get(name, 0) + 1
        elif after.sasl_failures > before.sasl_failures:
            name = before.sasl_mechanism or "none"  # (none: the client named none on offer)
            self.failed[name] = self.failed.get(name, 0) + 1


class Services(Protocol):
    """What a host needs from its node (or its replay world), handed in as one object."""

    node: str  # this node's id
    router: Any  # routing.router.Router
    sessions: Any  # routing.sessions.SessionManager
    max_sessions: int

    def query(self, account: str, query: Query, reply: Callable[[Any], None]) -> None:
        """Run `query.call(storage, *query.args)` on the account's lane; then `reply(result)`
        (the exception, if it raised)."""

    def credentials(self, username: str, domain: str, hash_name: str,
                    reply: Callable[[Any], None]) -> None:  # fmt: skip
        """The stored SCRAM credentials (or None), off the scheduler."""

    def check_password(self, username: str, domain: str, password: str, peer: str,
                       reply: Callable[[bool], None]) -> None:  # fmt: skip
        """The authentication backend's verdict on a PLAIN password, off the scheduler."""

    def tell_session(self, node: str, address: str, event: Any) -> None:
        """Give an event to the session at (node, address), wherever it lives."""

    def call_later(self, seconds: float, fn: Callable[[], None]) -> Any:
        """A timer: something with cancel(), or None where timers come from elsewhere."""

    # Optional: `query_all(account, queries, replies)` runs several queries as one job on the
    # account's lane, in order, and gives each its reply. A host uses it for queries a step
    # returned one after the other (nothing else can reach the lane between them).


class Outbox:
    """Routing actions leave in the order the machine returned them, also when a storage query
    returned before them has not answered yet: they wait behind it, and what the query's answer
    routes goes out first, in its place. (A subscription request, worked out with the roster
    first, then a message: the contact gets the request first.)"""

    __slots__ = ("items", "perform", "at")

    def __init__(self, perform: Callable[[list], None]) -> None:
        self.items: list = []  # routing actions, and barriers: ("query", then)
        self.perform = perform
        self.at: int | None = None  # where this step's actions go; None: at the end

    def put(self, action: Any) -> None:
        if not self.items:
            self.perform([action])
        elif self.at is None:
            self.items.append(action)
        else:
            self.items.insert(self.at, action)
            self.at += 1

    def barrier(self, then: Any) -> None:
        """A query was issued: routing actions after it wait for its answer."""
        if self.at is None:
            self.items.append(("query", then))
        else:
            self.items.insert(self.at, ("query", then))
            self.at += 1

    def answering(self, then: Any) -> None:
        """A query's answer is being handled: its actions take the barrier's place."""
        for i, item in enumerate(self.items):
            if type(item) is tuple and item[1] is then:
                del self.items[i]
                self.at = i
                return
        self.at = None

    def release(self) -> None:
        """After a step: what no barrier holds back goes out."""
        self.at = None
        ready = []
        while self.items and type(self.items[0]) is not tuple:
            ready.append(self.items.pop(0))
        if ready:
            self.perform(ready)

    def flush_all(self) -> None:
        """The session ends: answers will not come, so nothing waits for them."""
        ready = [item for item in self.items if type(item) is not tuple]
        self.items.clear()
        self.at = None
        if ready:
            self.perform(ready)


class Host:
    """Runs one machine of fsm/ (a module with `init(data)` and `step(state, event, data)`)."""

    def __init__(self, machine: Any, data: Any, services: Services, transport: Any,
                 address: str) -> None:  # fmt: skip
        self.machine = machine
        self.step: Callable = machine.step
        self.state = "(not started)"
        self.data = data
        self.services = services
        self.router = services.router
        self.transport = transport
        self.address = address
        self.timers: dict[str, Any] = {}
        self.outbox = Outbox(services.router.perform)
        self.handlers = handlers_for(machine)
        self.query_all: Callable | None = getattr(services, "query_all", None)
        self.trace: Any = None  # an actors.trace.Tracer while the session is traced
        self.logins: LoginCounts | None = getattr(services, "logins", None)

    # --- what a host of a kind provides ------------------------------------------------------

    def tell(self, event: Any) -> None:
        """Put an event in this host's mailbox (it is handled later, never inside this call).
        Each kind of host has its own: HostActor's is Pykka's, a replay Machine's a deque."""
        raise NotImplementedError(f"{type(self).__name__} must say where its events go (tell)")

    def record(self, before: str, event: Any, after: str) -> None:
        """Keep the transition for whoever looks (xmppctl, a replay's report)."""

    def finish(self, condition: str | None, text: str | None) -> None:
        """The machine stopped: the host ends (the transport is closed already)."""

    # --- the machine -------------------------------------------------------------------------

    def start_machine(self) -> None:
        transition = self.machine.init(self.data)
        self.state, self.data = transition.state, transition.data
        if self.trace is not None:
            self.trace.init(transition.state, transition.actions)
        self.perform(transition.actions)

    def handle(self, event: Any) -> None:
        trace = self.trace
        if trace is not None:
            trace.event(event)
        before, data = self.state, self.data
        self.state, self.data, actions = self.step(before, event, data)
        if before != "session_established" and self.logins is not None:
            self.logins.observe(data, self.data)
        self.record(before, event, self.state)
        if trace is not None:
            trace.transition(before, event, self.state, self.data, actions)
        if type(event) is QueryDone:
            self.outbox.answering(event.then)
        self.perform(actions)
        if self.outbox.items:
            self.outbox.release()

    def perform(self, actions: list) -> None:
        handlers = self.handlers
        queries = None  # consecutive queries: one trip to the lane, where services allow
        for action in actions:
            if type(action) is Query and self.query_all is not None:
                if queries is None:
                    queries = [action]
                else:
                    queries.append(action)
                continue
            if queries is not None:
                _queries(self, queries)
                queries = None
            handler = handlers.get(type(action))
            if handler is None:
                raise TypeError(f"no handler for the action {action!r}")
            handler(self, action)
        if queries is not None:
            _queries(self, queries)

    @property
    def account(self) -> str:
        """The key of the account's lane: its bare JID, or the connection before bind."""
        jid = self.data.jid
        return str(jid.bare) if jid is not None else self.address

    # --- pieces the handlers share -----------------------------------------------------------

    def set_timer(self, name: str, seconds: float) -> None:
        self.cancel_timer(name)
        timer = self.services.call_later(seconds, lambda: self._fire(name))
        if timer is not None:
            self.timers[name] = timer

    def _fire(self, name: str) -> None:
        self.timers.pop(name, None)
        self.tell(Timeout(name))

    def cancel_timer(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def cancel_timers(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def opened(self, opened: Opened) -> None:
        replaced = opened.replaced
        if replaced is not None and replaced.address != self.address:
            self.services.tell_session(replaced.node, replaced.address, SessionReplaced())
        self.tell(SessionOpened(opened.jid, opened.error))


# --- the action table: every action of fsm/ is carried out here, and only here ---------------

_tables: dict[Any, dict] = {}  # machine -> its handlers: one table per machine, not per host


def handlers_for(machine: Any) -> dict[type, Callable[[Host, Any], None]]:
    """ACTIONS, extended by the machine's own ACTIONS if it has any."""
    table = _tables.get(machine)
    if table is None:
        table = _tables[machine] = {**ACTIONS, **getattr(machine, "ACTIONS", {})}
    return table


def _send(host: Host, action: Send) -> None:
    host.transport.send(serialize(action.element))


def _send_header(host: Host, action: SendHeader) -> None:
    host.transport.send_header(action.attrs)


def _send_close(host: Host, _action: SendClose) -> None:
    host.transport.send_close()


def _start_tls(host: Host, _action: StartTLS) -> None:
    host.transport.start_tls()


def _restart(host: Host, _action: RestartStream) -> None:
    host.transport.restart()


def _set_timer(host: Host, action: SetTimer) -> None:
    host.set_timer(action.name, action.seconds)


def _cancel_timer(host: Host, action: CancelTimer) -> None:
    host.cancel_timer(action.name)


def _query(host: Host, action: Query) -> None:
    host.services.query(host.account, action, _issued(host, action))


def _queries(host: Host, queries: list[Query]) -> None:
    if len(queries) == 1:
        _query(host, queries[0])
    else:
        host.query_all(host.account, queries, [_issued(host, query) for query in queries])


def _issued(host: Host, query: Query) -> Callable[[Any], None]:
    """A query goes out: routing after it waits for its answer, which comes back as QueryDone."""
    then = query.then
    host.outbox.barrier(then)
    return lambda result: host.tell(QueryDone(then, result))


def _load_credentials(host: Host, action: LoadCredentials) -> None:
    username = action.username

    def loaded(credentials: Any) -> None:
        host.tell(CredentialsLoaded(username, credentials))

    host.services.credentials(username, action.domain, action.hash_name, loaded)


def _check_password(host: Host, action: CheckPassword) -> None:
    username = action.username
    host.services.check_password(
        username, action.domain, action.password, host.transport.peer,
        lambda ok: host.tell(PasswordChecked(username, bool(ok))),
    )  # fmt: skip


def _open_session(host: Host, action: OpenSession) -> None:
    services = host.services
    services.sessions.open(action.jid, services.node, host.address, services.max_sessions,
                           host.opened)  # fmt: skip


def _close_session(host: Host, action: CloseSession) -> None:
    host.services.sessions.close(action.jid, host.address)


def _set_presence(host: Host, action: SetPresence) -> None:
    host.services.sessions.set_presence(action.jid, host.address, action.available,
                                        action.priority)  # fmt: skip


def _set_session_info(host: Host, action: SetSessionInfo) -> None:
    host.services.sessions.set_info(action.jid, host.address, action.presence, action.interested,
                                    action.pres_from, action.directed)  # fmt: skip


def _stop(host: Host, action: Stop) -> None:
    host.outbox.flush_all()
    host.cancel_timers()
    host.transport.close()
    host.finish(action.condition, action.text)


def _route(host: Host, action: Any) -> None:
    if host.outbox.items:
        host.outbox.put(action)
    elif type(action) is Route:
        host.router.route(action.stanza)  # the common case: nothing waits
    else:
        host.router.perform_one(action)


ACTIONS: dict[type, Callable[[Host, Any], None]] = {
    Send: _send,
    SendHeader: _send_header,
    SendClose: _send_close,
    StartTLS: _start_tls,
    RestartStream: _restart,
    SetTimer: _set_timer,
    CancelTimer: _cancel_timer,
    Query: _query,
    LoadCredentials: _load_credentials,
    CheckPassword: _check_password,
    OpenSession: _open_session,
    CloseSession: _close_session,
    SetPresence: _set_presence,
    SetSessionInfo: _set_session_info,
    Stop: _stop,
    **{kind: _route for kind in ROUTING_ACTIONS},
}
