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


def watching(node, *args):
    """xmppctl ARGS --watch on `node`, its output read line by line."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "xmppd.ctl", "--config", str(node.config_path), *args, "--watch"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def line_with(proc, text: str, timeout: float = 10) -> str:
    import asyncio

    async def read() -> str:
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line or text in line:
                return line

    line = await asyncio.wait_for(read(), timeout)
    assert text in line, f"xmppctl --watch ended without {text!r}: {proc.stderr.read()}"
    return line


def test_watching_a_session_on_another_node_shows_its_transitions_live(cluster, run):
    n1, _, n3 = cluster.nodes

    async def scenario():
        victor = await online(n1, "victor", "watched")
        watch = watching(n3, "session", "victor@localhost/watched")
        try:
            head = await line_with(watch, "watching session")
            assert "on node n1" in head and "session_established" in head
            victor.send_message(mto="walter@localhost", mbody="seen live", mtype="chat")
            line = await line_with(watch, "<message")
            assert "session_established --<message type='chat'>" in line
            assert line.rstrip().endswith("--> session_established")
            await victor.close()
            await line_with(watch, "</stream:stream>")  # the client's close, as it happens
            assert watch.wait(10) == 0, "the watch ends with the session"
            assert "ended" in watch.stdout.read()
        finally:
            watch.kill()

    run(scenario())


def test_watching_the_counts_by_state_of_every_node(cluster, run):
    n1, n2, _ = cluster.nodes

    async def scenario():
        walter = await online(n1, "walter", "counted")
        lurker = RawClient(n2)  # connected, never authenticated
        lurker.send(b"<?xml version='1.0'?>")
        watch = watching(n2, "sessions", "--interval", "0.3")
        try:
            header = await line_with(watch, "STATE")
            assert header.split()[1:] == ["n1", "n2", "n3", "TOTAL"]
            established = await line_with(watch, "session_established")
            assert int(established.split()[1]) >= 1  # walter, on n1
            waiting = await line_with(watch, "wait_for_stream")
            assert int(waiting.split()[2]) >= 1  # the lurker, on n2
            await line_with(watch, "connections by c2s state")  # and again, refreshed
        finally:
            watch.send_signal(signal.SIGINT)
            assert watch.wait(10) == 0
            lurker.close()
            await close_all(walter)

    run(scenario())
