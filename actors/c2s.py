"""The c2s actor: hosts one connection's c2s machine and carries out the actions it returns."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from actors.runtime import RunQueueActor, run_blocking
from fsm import c2s
from fsm.core import (
    CancelTimer,
    CheckPassword,
    CloseSession,
    CredentialsLoaded,
    DeliverToUser,
    EnsureAccount,
    LoadCredentials,
    OpenSession,
    PasswordChecked,
    Query,
    QueryDone,
    RestartStream,
    Route,
    RoutePresencesOf,
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
from fsm.session import C2S
from routing.sessions import TooManySessions
from xmpp.errors import stream_error
from xmpp.stream import STREAM_CLOSE, serialize, stream_header

if TYPE_CHECKING:
    from actors.connection import Connection
    from actors.node import Node

log = logging.getLogger("xmppd.c2s")

RING = 50


class C2SActor(RunQueueActor):
    """No protocol decisions here: every `if` about XMPP belongs to fsm/c2s.py."""

    def __init__(self, node: Node, conn: Connection, data: C2S, trace: Any = None) -> None:
        super().__init__()
        self.node = node
        self.conn = conn
        self.data = data
        self.state = "wait_for_stream"
        self.state_since = time.time()
        self.transitions: deque = deque(maxlen=RING)
        self.timers: dict[str, Any] = {}
        self.trace: Any = None  # an actors.trace.Tracer while the session is traced
        if trace is not None:
            self.data = trace.wrap(data)
            self.trace = conn.trace = trace
        node.actors[data.conn_id] = self

    # --- the machine -------------------------------------------------------------------------

    def on_start(self) -> None:
        transition = c2s.init(self.data)
        self.data = transition.data
        if self.trace is not None:
            self.trace.init(transition.state, transition.actions)
        self._perform(transition.actions)

    def on_receive(self, event: Any) -> None:
        if isinstance(event, TestCrash):
            raise RuntimeError("test-only crash requested through the admin socket")
        if self.trace is not None:
            return self._traced(event)
        before = self.state
        state, self.data, actions = c2s.step(before, event, self.data)
        now = time.time()
        self.transitions.append((before, type(event).__name__, state, now))
        if state != before:
            self.state, self.state_since = state, now
        if log.isEnabledFor(logging.DEBUG):
            who = self.data.jid or self.data.user or "-"
            log.debug("[%s] %s %s --%s--> %s", self.id, who, before, type(event).__name__, state)
        self._perform(actions)

    def _traced(self, event: Any) -> None:
        """on_receive, writing the event, the transition and its actions to the trace."""
        before, trace = self.state, self.trace
        trace.event(event)
        state, self.data, actions = c2s.step(before, event, self.data)
        now = time.time()
        self.transitions.append((before, type(event).__name__, state, now))
        if state != before:
            self.state, self.state_since = state, now
        trace.transition(before, event, state, self.data, actions)
        self._perform(actions)

    def start_trace(self, tracer: Any, snapshot: bool) -> None:
        """Trace from now on; `snapshot` first records where the machine stands."""
        self.stop_trace("replaced")  # (the caller normally did, before making `tracer`)
        if snapshot:
            tracer.snapshot(self.state, self.data)
        self.data = tracer.wrap(self.data)
        self.trace = self.conn.trace = tracer

    def stop_trace(self, reason: str = "stopped") -> None:
        if self.trace is not None:
            self.data = self.trace.unwrap(self.data)
            self.trace.close(reason)
            self.trace = self.conn.trace = None

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """The supervisor's clean end for a crashed session: tell the client, free the
        resource, so contacts see it leave and other sessions carry on."""
        log.error("[%s] session %s crashed in %s: %s", self.id, self.data.jid, self.state, exc)
        self.state = "closed"
        self._cancel_timers()
        if self.data.jid is not None:
            try:
                self.node.perform(self.data.features.session_end(self.data))
            except Exception:  # noqa: BLE001 - the session is already broken; free it anyway
                log.exception("[%s] presence clean-up after the crash failed", self.id)
            self.node.close_session(self.data.jid, self.actor_ref)
        self.conn.write(serialize_error("internal-server-error"))
        self.conn.write(STREAM_CLOSE)
        self.conn.close()
        if self.trace is not None:
            self.trace.close(f"crashed: {exc!r}")

    def on_stop(self) -> None:
        self._cancel_timers()
        if self.trace is not None:
            self.trace.close(self.state)

    @property
    def id(self) -> str:
        return self.data.conn_id

    def _account_key(self) -> str:
        jid = self.data.jid
        return str(jid.bare) if jid is not None else self.data.conn_id

    # --- carrying out actions ----------------------------------------------------------------

    def _perform(self, actions: list) -> None:
        for action in actions:
            match action:
                case Send(element):
                    self.conn.write(serialize(element))
                case Route(stanza):
                    self.node.router.route(stanza)
                case Query(call, args, then):
                    run_blocking(
                        self.actor_ref,
                        call,
                        self.node.storage,
                        *args,
                        reply=lambda result, then=then: QueryDone(then, result),
                        executor=self.node.lane(self._account_key()),
                    )
                case DeliverToUser() | RoutePresencesOf():
                    self.node.perform([action])
                case SetSessionInfo(jid, presence, interested, pres_from):
                    self.node.set_session_info(jid, self.actor_ref, presence, interested, pres_from)
                case SendHeader(attrs):
                    self.conn.write(stream_header(attrs))
                case SendClose():
                    self.conn.write(STREAM_CLOSE)
                case SetTimer(name, seconds):
                    self._set_timer(name, seconds)
                case CancelTimer(name):
                    timer = self.timers.pop(name, None)
                    if timer is not None:
                        timer.cancel()
                case StartTLS():
                    self.conn.start_tls()
                case RestartStream():
                    self.conn.restart_stream()
                case LoadCredentials(username, domain, hash_name):
                    self.node.blocking(
                        self.actor_ref,
                        self.node.storage.accounts.credentials,
                        (username, domain, hash_name),
                        lambda creds, u=username: CredentialsLoaded(u, creds),
                    )
                case EnsureAccount(username, domain):
                    self.node.ensure_account(username, domain)
                case CheckPassword(username, domain, password):
                    self.node.blocking(
                        self.actor_ref,
                        self.node.check_password,
                        (username, domain, password),
                        lambda ok, u=username: PasswordChecked(u, bool(ok)),
                    )
                case OpenSession(jid):
                    self.actor_ref.tell(self._open_session(jid))
                case CloseSession(jid):
                    self.node.close_session(jid, self.actor_ref)
                case SetPresence(jid, available, priority):
                    self.node.sessions.set_presence(jid, available, priority)
                case Stop(condition, text):
                    self._close(condition, text)
                case _:
                    raise TypeError(f"c2s actor cannot perform {action!r}")

    def _open_session(self, jid: Any) -> SessionOpened:
        try:
            old = self.node.sessions.open(
                jid, self.actor_ref, self.id, self.node.config.limits.max_sessions_per_account
            )
        except TooManySessions:
            return SessionOpened(jid, "resource-constraint")
        if old is not None and old is not self.actor_ref:
            old.tell(SessionReplaced())
        log.info("[%s] bound %s", self.id, jid)
        return SessionOpened(jid)

    def _set_timer(self, name: str, seconds: float) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        self.timers[name] = self.node.loop.call_later(seconds, self._fire, name)

    def _fire(self, name: str) -> None:
        self.timers.pop(name, None)
        self.actor_ref.tell(Timeout(name))

    def _cancel_timers(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def _close(self, condition: str | None, text: str | None) -> None:
        if condition:
            log.info("[%s] %s closing: %s %s", self.id, self.data.jid or "-", condition, text or "")
        else:
            log.debug("[%s] %s closed", self.id, self.data.jid or "-")
        self._cancel_timers()
        self.conn.close()
        self.stop()

    # --- what xmppctl shows ------------------------------------------------------------------

    def info(self) -> dict:
        data = self.data
        return {
            "id": self.id,
            "stream_id": data.stream_id,
            "jid": str(data.jid) if data.jid else None,
            "user": f"{data.user}@{data.domain}" if data.user else None,
            "state": self.state,
            "state_since": self.state_since,
            "peer": self.conn.peer,
            "tls": data.tls.version if data.tls else None,
            "sasl": data.sasl_mechanism,
            "idle_s": round(time.monotonic() - self.conn.last_input, 1),
            "available": data.available,
            "priority": data.priority,
        }


class TestCrash:
    """Test-only: makes the actor raise, to exercise the supervisor's clean end. Only the admin
    socket sends it, and only when the node runs with XMPPD_TEST_HOOKS=1."""


def serialize_error(condition: str) -> bytes:
    return serialize(stream_error(condition))
