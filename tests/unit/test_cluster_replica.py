"""The pieces of cluster/ that need no Redis: the relay's de-duplication and the session
replica's ordering of news from several nodes."""

from __future__ import annotations

from redis.asyncio import Redis

from cluster.relay import Relay, Seen
from cluster.sessions import ClusterSessions
from xmpp.jid import JID


def test_seen_takes_each_sequence_once_even_out_of_order():
    seen = Seen()
    assert [seen.first(n) for n in (1, 2, 5, 3, 5, 4, 2, 6)] == [
        True, True, True, True, False, True, False, True,
    ]  # fmt: skip
    assert seen.upto == 6 and not seen.above


def test_seen_gives_up_a_gap_that_never_fills():
    seen = Seen()
    seen.first(1)
    for n in range(3, 3 + Seen.LIMIT + 1):
        assert seen.first(n)
    assert seen.upto >= 3 and len(seen.above) <= Seen.LIMIT


def replica() -> ClusterSessions:
    client = Redis(port=1)  # never connected: only the replica's handlers run here
    return ClusterSessions(client, Relay(client, "n3", "boot"), "n3")


def test_late_news_of_an_older_bind_does_not_bring_it_back():
    sessions = replica()
    alice = JID.parse("alice@example.org/r")
    # n2's newer bind and its end arrive before n1's older bind (another node's stream).
    sessions._on_bound("n2", 1, [str(alice), "n2", "b1", 200])
    sessions._on_unbound("n2", 1, [str(alice), "b1", 200])
    sessions._on_bound("n1", 1, [str(alice), "n1", "a1", 100])
    assert sessions.get(alice) is None
    # An unbind that arrives before its bind leaves a tombstone too.
    bob = JID.parse("bob@example.org/r")
    sessions._on_unbound("n1", 1, [str(bob), "a2", 300])
    sessions._on_bound("n1", 1, [str(bob), "n1", "a2", 300])
    assert sessions.get(bob) is None
    # A newer bind of the same resource is taken.
    sessions._on_bound("n1", 1, [str(alice), "n1", "a3", 201])
    assert sessions.get(alice).address == "a3"


def test_a_forgotten_node_s_sessions_come_back_with_its_snapshot():
    sessions = replica()
    alice = JID.parse("alice@example.org/r")
    sessions._on_bound("n1", 1, [str(alice), "n1", "a1", 100])
    sessions.forget_node("n1")
    assert sessions.get(alice) is None and [e.jid for e in sessions.lost("n1")] == [alice]
    sessions._on_bound("n1", 1, [str(alice), "n1", "a1", 100])  # its snapshot after a hello
    assert sessions.get(alice).address == "a1"
