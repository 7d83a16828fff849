"""Each node's /metrics in a cluster: its own sessions by state, what it relayed and took from
the relay, its lease and its round trips to Redis."""

from __future__ import annotations

from tests.support.im import close_all, message, online
from tests.support.metrics import scrape, value


def test_each_node_reports_its_sessions_relay_lease_and_redis(cluster, run):
    n1, n2, n3 = cluster.nodes
    before = [scrape(n.metrics_port) for n in (n1, n2)]

    async def scenario():
        alice = await online(n1, "alice", "metered")
        bob = await online(n2, "bob", "metered")
        for i in range(5):
            alice.send_message(mto="bob@localhost/metered", mbody=f"m{i}", mtype="chat")
        for i in range(5):
            await bob.inbox.expect(message(f"m{i}"))
        one, two, three = (scrape(n.metrics_port) for n in (n1, n2, n3))
        assert value(one, "xmppd_sessions", node="n1", state="session_established") == 1
        assert value(two, "xmppd_sessions", node="n2", state="session_established") == 1
        assert value(three, "xmppd_sessions", state="session_established") == 0
        relayed = (value(one, "xmppd_stanzas_total", outcome="relayed")
                   - value(before[0], "xmppd_stanzas_total", outcome="relayed"))  # fmt: skip
        assert relayed >= 5
        taken = value(two, "xmppd_relay_received_total") - value(
            before[1], "xmppd_relay_received_total")
        assert taken >= 5
        for samples, node in ((one, "n1"), (two, "n2"), (three, "n3")):
            assert value(samples, "xmppd_cluster_peers", node=node) == 2
            assert value(samples, "xmppd_lease_held", node=node) == 1
            assert 0 <= value(samples, "xmppd_lease_age_seconds") < cluster.lease
            assert value(samples, "xmppd_redis_round_trip_seconds_count") > 0
            assert value(samples, "xmppd_redis_round_trip_seconds_bucket", le="+Inf") == value(
                samples, "xmppd_redis_round_trip_seconds_count")
            assert value(samples, "xmppd_relay_backlog") >= 0
        await close_all(alice, bob)

    run(scenario())
