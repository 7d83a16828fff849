"""What session tracing costs per event: the c2s actor's on_receive for a delivered message
(FSM step, feature hook, serialization, connection write), with tracing off, with the tracing
check removed (the code before tracing existed), and with tracing on (secrets or not).
Run: .venv/bin/python bench/trace_bench.py"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.c2s import C2SActor, TestCrash  # noqa: E402
from lxml import etree  # noqa: E402

from actors.randomness import SystemRandom  # noqa: E402
from actors.trace import Tracer  # noqa: E402
from features.registry import Registry  # noqa: E402
from fsm import c2s  # noqa: E402
from fsm.core import Deliver  # noqa: E402
from fsm.session import C2S, C2SConfig, Env  # noqa: E402
from xmpp.jid import JID  # noqa: E402
from xmppd.node import feature_modules  # noqa: E402

N = 20_000
LOG = logging.getLogger("xmppd.c2s")
MESSAGE = b"<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a' \
type='chat' id='m1'><body>Hello, this is a message of ordinary length.</body></message>"


class Conn:
    trace = None
    peer = "127.0.0.1:1"

    def write(self, data: bytes) -> None:
        if self.trace is not None:
            self.trace.output(data)


def actor() -> C2SActor:
    a = C2SActor.__new__(C2SActor)
    jid = JID("alice", "localhost", "a")
    features = Registry.from_modules(feature_modules())
    a.data = C2S("bench", C2SConfig(), Env(time.time, SystemRandom()), features, user="alice",
                 domain="localhost", jid=jid, available=True)  # fmt: skip
    a.state, a.state_since, a.transitions = "session_established", 0.0, deque(maxlen=50)
    a.conn, a.trace, a.timers, a.node = Conn(), None, {}, SimpleNamespace()
    return a


def before_tracing(self: C2SActor, event) -> None:
    """on_receive as it was before tracing (no tracing check)."""
    if isinstance(event, TestCrash):
        raise RuntimeError
    before = self.state
    state, self.data, actions = c2s.step(before, event, self.data)
    now = time.time()
    self.transitions.append((before, type(event).__name__, state, now))
    if state != before:
        self.state, self.state_since = state, now
    if LOG.isEnabledFor(logging.DEBUG):
        pass
    self._perform(actions)


def run(receive, a: C2SActor) -> float:
    events = [Deliver(etree.fromstring(MESSAGE)) for _ in range(N)]
    start = time.perf_counter()
    for event in events:
        receive(a, event)
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(15):
            results.setdefault("no tracing code", []).append(run(before_tracing, actor()))
            results.setdefault("tracing off", []).append(run(C2SActor.on_receive, actor()))
            for secrets in (False, True):
                a = actor()
                tracer = Tracer(Path(tmp) / f"t{secrets}.trace", a.data, secrets=secrets)
                a.start_trace(tracer, snapshot=False)
                name = f"tracing on{' (secrets)' if secrets else ''}"
                results.setdefault(name, []).append(run(C2SActor.on_receive, a))
                a.stop_trace()
    base = min(results["no tracing code"])
    for name, times in results.items():
        best = min(times)
        print(f"{name:22s} {best:6.2f} µs/event  ({(best / base - 1) * 100:+5.1f}%)")


if __name__ == "__main__":
    main()
