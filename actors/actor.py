"""The host actor: one Pykka actor on the run queue per connection, hosting its state machine."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pykka import ActorDeadError

from actors.host import Host
from actors.runtime import RunQueueActor
from fsm.core import Deliver, StreamElement
from fsm.tracefmt import brief, describe

log = logging.getLogger("xmppd.c2s")

RING = 50  # transitions kept per session for `xmppctl session ID`
LABELS_MAX = 4096
# What histories say of events, shared: the few kinds of events a session sees come back all
# the time, so a history holds references to these strings, not a copy each.
_labels: dict[tuple, str] = {}
# Elements whose label says more than tag and type (the IQ's payload, the SASL mechanism).
DETAILED = ("}iq", "}auth")


def label(event: Any) -> str:
    """How `xmppctl session ID` shows an event: `<auth mechanism='SCRAM-SHA-256'/>`."""
    kind = type(event)
    if kind is StreamElement or kind is Deliver:
        # The hot path (every stanza): messages and presence are told apart by tag and type.
        element = event.element if kind is StreamElement else event.stanza
        key = (kind, element.tag, element.get("type"))
        text = _labels.get(key)
        if text is not None:
            return text
        if not key[1].endswith(DETAILED):
            return _remember(key, describe(brief(event)))
    summary = brief(event)
    text = _labels.get(summary)
    return text if text is not None else _remember(summary, describe(summary))


def _remember(key: tuple, text: str) -> str:
    if len(_labels) < LABELS_MAX:
        _labels[key] = text
    return text


@dataclass(frozen=True, slots=True)
class Ended:
    """What is kept of a session that ended: its last facts and transitions."""

    at: float
    info: dict
    transitions: tuple
    count: int

    def history(self, since: int = 0) -> list[dict]:
        return _numbered(self.transitions, self.count, since)


def _numbered(transitions: Any, count: int, since: int) -> list[dict]:
    """Kept transitions numbered from 1 (the session's first), those after `since`."""
    first = count - len(transitions) + 1
    return [
        {"n": n, "from": before, "event": event, "to": after, "at": at}
        for n, (before, event, after, at) in enumerate(transitions, first)
        if n > since
    ]


class HostActor(RunQueueActor, Host):
    """No protocol decisions here: every `if` about XMPP belongs to fsm/ or features/."""

    def __init__(self, machine: Any, data: Any, services: Any, transport: Any, address: str,
                 trace: Any = None) -> None:  # fmt: skip
        RunQueueActor.__init__(self)
        Host.__init__(self, machine, data, services, transport, address)
        self.state_since = time.time()
        self.transitions: deque = deque(maxlen=RING)
        self.transition_count = 0  # numbers the transitions, for a watcher (`--watch`)
        services.attach(address, self)
        if trace is not None:
            self.start_trace(trace, snapshot=False)

    @property
    def id(self) -> str:
        return self.address

    # --- the host's side ---------------------------------------------------------------------

    def on_start(self) -> None:
        self.start_machine()

    on_receive = Host.handle  # (one call less per event)

    def tell(self, event: Any) -> None:
        try:
            self.actor_ref.tell(event)
        except ActorDeadError:
            log.debug("[%s] ended before %s reached it", self.id, type(event).__name__)

    def record(self, before: str, event: Any, after: str) -> None:
        now = time.time()
        kind = type(event)
        if kind is Deliver or kind is StreamElement:  # label()'s hot path, inline: every stanza
            element = event.stanza if kind is Deliver else event.element
            text = _labels.get((kind, element.tag, element.get("type")))
            if text is None:
                text = label(event)
        else:
            text = label(event)
        self.transitions.append((before, text, after, now))
        self.transition_count += 1
        if after != before:
            self.state_since = now
        if log.isEnabledFor(logging.DEBUG):
            who = self.data.jid or self.data.user or "-"
            log.debug("[%s] %s %s --%s--> %s", self.id, who, before, text, after)

    def finish(self, condition: str | None, text: str | None) -> None:
        if condition:
            log.info("[%s] %s closing: %s %s", self.id, self.data.jid or "-", condition, text or "")
        else:
            log.debug("[%s] %s closed", self.id, self.data.jid or "-")
        try:
            self.stop()
        except ActorDeadError:
            pass  # a crash ended the actor already (on_failure carries out the machine's Stop)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """The supervisor's clean end for a crashed session: the machine says what a crash
        owes (the stream error, contacts told we left, the resource freed); other sessions
        carry on."""
        log.error("[%s] session %s crashed in %s: %s", self.id, self.data.jid, self.state, exc)
        self.state = "closed"
        try:
            self.perform(self.machine.crashed(self.data))
        except Exception:  # noqa: BLE001 - the session is already broken; free it anyway
            log.exception("[%s] clean-up after the crash failed", self.id)
            self.cancel_timers()
            self.transport.abort()
            if self.data.jid is not None:
                self.services.sessions.close(self.data.jid, self.address)
        if self.trace is not None:
            self.trace.close(f"crashed: {exc!r}")

    def on_stop(self) -> None:
        self.cancel_timers()
        if self.trace is not None:
            self.trace.close(self.state)

    # --- tracing -----------------------------------------------------------------------------

    def start_trace(self, tracer: Any, snapshot: bool) -> None:
        """Trace from now on; `snapshot` first records where the machine stands."""
        self.stop_trace("replaced")
        if snapshot:
            tracer.snapshot(self.state, self.data)
        self.data = tracer.wrap(self.data)
        self.trace = self.transport.trace = tracer

    def stop_trace(self, reason: str = "stopped") -> None:
        if self.trace is not None:
            self.data = self.trace.unwrap(self.data)
            self.trace.close(reason)
            self.trace = self.transport.trace = None

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
            "peer": self.transport.peer,
            "tls": data.tls.version if data.tls else None,
            "sasl": data.sasl_mechanism,
            "idle_s": round(time.monotonic() - self.transport.last_input, 1),
            "available": data.available,
            "priority": data.priority,
        }

    def history(self, since: int = 0) -> list[dict]:
        return _numbered(self.transitions, self.transition_count, since)

    def ended(self) -> Ended:
        return Ended(time.time(), self.info(), tuple(self.transitions), self.transition_count)
