"""xmppctl against any node shows and acts on every session of the cluster."""

from __future__ import annotations

import json
import signal

from tests.support.im import close_all, online
from tests.support.raw import RawClient


def ctl_json(node, *args):
    return json.loads(node.ctl(*args, "--json").stdout)


def test_sessions_of_every_node_from_any_node(cluster, run):
    n1, n2, n3 = cluster.nodes

    async def scenario():
        sybil = await online(n1, "sybil", "one")
        trent = await online(n2, "trent", "two")
        lurker = RawClient(n3)  # connected, never authenticated
        lurker.send(b"<?xml version='1.0'?>")
        try:
            rows = ctl_json(n3, "sessions")
            by_jid = {r["jid"]: r for r in rows}
            assert by_jid["sybil@localhost/one"]["node"] == "n1"
            assert by_jid["trent@localhost/two"]["node"] == "n2"
            assert by_jid["sybil@localhost/one"]["state"] == "session_established"
            unauthenticated = [r for r in rows if r["jid"] is None]
            assert [r["node"] for r in unauthenticated] == ["n3"]
            assert unauthenticated[0]["state"] == "wait_for_stream"
            assert {"id", "state", "state_since", "peer"} <= set(rows[0])
            only_n2 = ctl_json(n1, "sessions", "--node", "n2")
            assert [r["jid"] for r in only_n2] == ["trent@localhost/two"]
            text = n1.ctl("sessions").stdout
            assert "NODE" in text and "n2" in text and "trent@localhost/two" in text

            one = ctl_json(n2, "session", "sybil@localhost/one")
            assert one["node"] == "n1"
            assert one["transitions"][-1]["to"] == "session_established"

            said = n3.ctl("kick", "trent@localhost/two").stdout
            assert "on node n2" in said
            await trent.gone
            assert "policy-violation" in trent.stream_errors
        finally:
            lurker.close()
            await close_all(sybil)

    run(scenario())


def test_nodes_lists_every_node_with_its_lease(cluster):
    rows = ctl_json(cluster.nodes[1], "nodes")
    assert [r["node"] for r in rows] == ["n1", "n2", "n3"]
    assert all(r["alive"] and r["lease_left_s"] > 0 for r in rows)
    assert [r["this"] for r in rows] == [False, True, False]
    assert "n2 (this)" in cluster.nodes[1].ctl("nodes").stdout


def test_a_node_that_does_not_answer_is_named(fresh_cluster):
    cluster = fresh_cluster(size=2, lease=15.0)  # paused, but not yet taken for dead
    n1, n2 = cluster.nodes
    n2.proc.send_signal(signal.SIGSTOP)
    try:
        result = n1.ctl("sessions", check=False)
        assert result.returncode == 1
        assert "node n2 did not answer" in result.stderr
        missing = n1.ctl("session", "nobody@localhost/x", check=False)
        assert missing.returncode == 1
    finally:
        n2.proc.send_signal(signal.SIGCONT)
    cluster.wait_joined()
