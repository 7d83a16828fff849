"""What session tracing costs per event: the host's handle() for a delivered message (FSM
step, feature hook, serialization, transport write), with tracing off, with the tracing
check removed (the code before tracing existed), and with tracing on (secrets or not).
Run: .venv/bin/python bench/trace_bench.py"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lxml import etree  # noqa: E402

from actors.actor import HostActor  # noqa: E402
from actors.host import Host  # noqa: E402
from actors.randomness import SystemRandom  # noqa: E402
from actors.trace import Tracer  # noqa: E402
from features.registry import Registry  # noqa: E402
from fsm import c2s  # noqa: E402
from fsm.core import Deliver, QueryDone  # noqa: E402
from fsm.session import C2S, C2SConfig, Env  # noqa: E402
from xmpp.jid import JID  # noqa: E402
from xmppd.node import feature_modules  # noqa: E402

N = 20_000
MESSAGE = b"<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a' \
type='chat' id='m1'><body>Hello, this is a message of ordinary length.</body></message>"


class Conn:
    trace = None
    peer = "127.0.0.1:1"

    def send(self, data: bytes) -> None:
        if self.trace is not None:
            self.trace.output(data)


class BenchHost(Host):
    """The host as the node's actor runs it (its history ring included), without Pykka."""

    record = HostActor.record
    start_trace = HostActor.start_trace
    stop_trace = HostActor.stop_trace
    id = "bench"


def actor() -> BenchHost:
    jid = JID("alice", "localhost", "a")
    features = Registry.from_modules(feature_modules())
    data = C2S("bench", C2SConfig(), Env(time.time, SystemRandom()), features, user="alice",
               domain="localhost", jid=jid, available=True)  # fmt: skip
    services = SimpleNamespace(router=SimpleNamespace(perform=lambda actions: None))
    a = BenchHost(c2s, data, services, Conn(), "bench")
    a.state, a.state_since, a.transitions = "session_established", 0.0, deque(maxlen=50)
    return a


def before_tracing(self: BenchHost, event) -> None:
    """handle() without the tracing checks (the code before tracing existed)."""
    before = self.state
    self.state, self.data, actions = self.step(before, event, self.data)
    self.record(before, event, self.state)
    if type(event) is QueryDone:
        self.outbox.answering(event.then)
    self.perform(actions)
    if self.outbox.items:
        self.outbox.release()


def run(receive, a: BenchHost) -> float:
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
            results.setdefault("tracing off", []).append(run(BenchHost.handle, actor()))
            for secrets in (False, True):
                a = actor()
                tracer = Tracer(Path(tmp) / f"t{secrets}.trace", a.data, secrets=secrets)
                a.start_trace(tracer, snapshot=False)
                name = f"tracing on{' (secrets)' if secrets else ''}"
                results.setdefault(name, []).append(run(BenchHost.handle, a))
                a.stop_trace()
    base = min(results["no tracing code"])
    for name, times in results.items():
        best = min(times)
        print(f"{name:22s} {best:6.2f} µs/event  ({(best / base - 1) * 100:+5.1f}%)")


if __name__ == "__main__":
    main()
