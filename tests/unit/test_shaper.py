"""The per-connection read shaper: input over the budget waits, reading pauses, nothing is lost."""

from __future__ import annotations

import actors.connection as connection_module
from actors.connection import Connection
from xmpp.stream import StreamElement, StreamOpen

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='localhost' version='1.0'>"
)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loop:
    def __init__(self) -> None:
        self.later: list = []

    def call_later(self, delay, callback, *args):
        self.later.append((delay, callback, args))

    def call_soon(self, callback, *args):
        callback(*args)


class Transport:
    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Actor:
    def __init__(self) -> None:
        self.events: list = []

    def tell(self, event) -> None:
        self.events.append(event)


def shaped(rate: int, burst: int, monkeypatch) -> tuple[Connection, Actor, Loop, Clock]:
    clock = Clock()
    monkeypatch.setattr(connection_module.time, "monotonic", clock)
    actor, loop = Actor(), Loop()
    conn = Connection(
        "c1", None, False, 262144, rate, burst, 1 << 22, lambda c: actor, lambda c: None
    )
    conn.transport, conn._loop, conn.actor = Transport(), loop, actor
    return conn, actor, loop, clock


def messages(count: int, size: int) -> bytes:
    body = b"x" * size
    return b"".join(
        b"<message to='b@localhost'><body>%s</body></message>" % body for _ in range(count)
    )


def test_input_within_the_budget_is_parsed_at_once(monkeypatch):
    conn, actor, loop, _ = shaped(rate=10_000, burst=10_000, monkeypatch=monkeypatch)
    conn.data_received(HEADER + messages(3, 100))
    assert [type(e) for e in actor.events] == [StreamOpen] + [StreamElement] * 3
    assert conn.transport.reading and not loop.later


def test_a_flood_waits_for_tokens_and_arrives_whole_and_in_order(monkeypatch):
    conn, actor, loop, clock = shaped(rate=1000, burst=1000, monkeypatch=monkeypatch)
    flood = HEADER + messages(10, 900)  # about 10 KB against 1 KB/s
    conn.data_received(flood)
    parsed_at_once = len(actor.events)
    assert parsed_at_once < 3, "most of the flood must wait"
    assert not conn.transport.reading, "reading pauses while input is held"
    waits = 0
    while loop.later:
        delay, callback, args = loop.later.pop(0)
        clock.now += delay
        callback(*args)
        waits += 1
    assert waits >= 9, "the flood is released over about ten seconds of token refills"
    bodies = [e for e in actor.events if isinstance(e, StreamElement)]
    assert len(bodies) == 10
    assert conn.transport.reading, "reading resumes once the held input is parsed"
