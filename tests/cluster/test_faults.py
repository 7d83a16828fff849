"""A node that dies costs its own connections and nothing else: kill -9, a node paused past its
lease, Redis restarted empty, Redis connections cut, the database restarted."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from tests.support.im import (
    befriend_both,
    close_all,
    message,
    online,
    presence,
    send_presence,
)

BOUND = 15.0  # seconds: the documented bound for contacts to hear a dead node's users left


async def alice_and_bob(alice_node, bob_node):
    """alice@localhost/desk and bob@localhost/phone online on two nodes, each known to all."""
    alice = await online(alice_node, "alice", "desk")
    bob = await online(bob_node, "bob", "phone")
    await asyncio.sleep(0.3)  # what each session tells reaches the other nodes
    return alice, bob


@pytest.mark.parametrize("redis", ["redis", "redis-cluster"])
def test_kill_9_contacts_hear_unavailable_and_messages_go_offline(fresh_cluster, run, redis):
    cluster = fresh_cluster(redis=redis)
    n1, n2, n3 = cluster.nodes

    async def scenario():
        alice = await online(n1, "alice", "desk")
        bob = await online(n2, "bob", "phone")
        carol = await online(n3, "carol", "tablet")  # no subscription: directed presence only
        await befriend_both(alice, bob)
        send_presence(bob, to="carol@localhost/tablet", status="just for you")
        await carol.inbox.expect(presence("available", "bob@localhost/phone", "just for you"))
        await asyncio.sleep(0.3)  # what bob's session knows reaches the other nodes
        cluster.kill(1)  # bob's node
        started = time.monotonic()
        await alice.inbox.expect(presence("unavailable", "bob@localhost/phone"),
                                 "bob's contacts hear he left", timeout=BOUND)  # fmt: skip
        await carol.inbox.expect(presence("unavailable", "bob@localhost/phone"),
                                 "whom he sent presence hears", timeout=BOUND)  # fmt: skip
        took = time.monotonic() - started
        assert took < BOUND
        await alice.inbox.expect_none(presence("unavailable", "bob@localhost/phone"), "once")
        # Nothing of n2 is left in Redis, and a message to bob is kept for him.
        assert cluster.indexed("n2") == []
        assert cluster.session_keys() == [] or all(
            b"n2" not in v for k in cluster.session_keys()
            for v in cluster.redis.client(cluster.db).hvals(k)
        )  # fmt: skip
        alice.send_message(mto="bob@localhost/phone", mbody="are you there?", mtype="chat")
        await asyncio.sleep(0.5)
        back = await online(n3, "bob", "phone")
        await back.inbox.expect(message("are you there?"), "kept offline, delivered on n3")
        await close_all(alice, back, carol)

    run(scenario())


@pytest.mark.parametrize("redis", ["redis", "redis-cluster"])
def test_messages_relayed_to_a_node_that_dies_are_stored_or_delivered_not_lost(fresh_cluster, run,
                                                                              redis):  # fmt: skip
    cluster = fresh_cluster(redis=redis)
    n1, n2, n3 = cluster.nodes

    async def scenario():
        alice, bob = await alice_and_bob(n1, n2)
        cluster.nodes[1].proc.send_signal(signal.SIGSTOP)  # n2 takes nothing from its stream
        for i in range(20):
            alice.send_message(mto="bob@localhost", mbody=f"m{i}", mtype="chat")
        await asyncio.sleep(0.5)
        cluster.kill(1)
        await asyncio.sleep(cluster.lease + 3)  # reaped: its stream's stanzas routed again
        back = await online(n3, "bob", "again")
        for i in range(20):
            await back.inbox.expect(message(f"m{i}"), f"message {i} kept offline")
        await back.inbox.expect_none(message(), "no message twice")
        await close_all(alice, back)
        del bob

    run(scenario())


def test_a_node_paused_past_its_lease_stops_serving_its_stale_sessions(fresh_cluster, run):
    cluster = fresh_cluster()
    n1, n2, n3 = cluster.nodes

    async def scenario():
        alice = await online(n1, "alice", "desk")
        bob = await online(n2, "bob", "phone")
        await befriend_both(alice, bob)
        n2.proc.send_signal(signal.SIGSTOP)
        await alice.inbox.expect(presence("unavailable", "bob@localhost/phone"),
                                 "reaped while paused", timeout=BOUND)  # fmt: skip
        n2.proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(bob.gone, 10)
        assert "system-shutdown" in bob.stream_errors
        # It rejoins and serves again: a new login on n2 reaches alice.
        for _ in range(50):
            try:
                again = await online(n2, "bob", "phone2")
                break
            except AssertionError:
                await asyncio.sleep(0.2)
        again.send_message(mto="alice@localhost/desk", mbody="back", mtype="chat")
        await alice.inbox.expect(message("back"))
        await close_all(alice, again)

    run(scenario())
    cluster.wait_joined()


def test_redis_restarted_empty_sessions_are_written_back(fresh_cluster, run):
    cluster = fresh_cluster()
    n1, n2, _ = cluster.nodes

    async def scenario():
        alice, bob = await alice_and_bob(n1, n2)
        cluster.redis.restart_empty()
        await asyncio.sleep(cluster.lease + 1)
        assert len(cluster.session_keys()) == 2, "each node wrote its sessions back"
        alice.send_message(mto="bob@localhost/phone", mbody="after the restart", mtype="chat")
        await bob.inbox.expect(message("after the restart"))
        bob.send_message(mto="alice@localhost", mbody="got it", mtype="chat")
        await alice.inbox.expect(message("got it"))
        await close_all(alice, bob)

    run(scenario())


def test_redis_connections_killed_relay_carries_on(fresh_cluster, run):
    cluster = fresh_cluster()
    n1, n2, _ = cluster.nodes

    async def scenario():
        alice, bob = await alice_and_bob(n1, n2)
        for i in range(10):
            alice.send_message(mto="bob@localhost/phone", mbody=f"before {i}", mtype="chat")
        cluster.redis.cli("CLIENT", "KILL", "TYPE", "normal")
        for i in range(10):
            alice.send_message(mto="bob@localhost/phone", mbody=f"after {i}", mtype="chat")
        for i in range(10):
            await bob.inbox.expect(message(f"before {i}"))
        for i in range(10):
            await bob.inbox.expect(message(f"after {i}"))
        await bob.inbox.expect_none(message(), "none twice")
        await close_all(alice, bob)

    run(scenario())


def test_database_restarted_offline_storage_still_works(fresh_cluster, postgres_server, run):
    cluster = fresh_cluster(size=2)
    n1, n2 = cluster.nodes

    async def scenario():
        alice = await online(n1, "alice", "desk")
        postgres_server.restart()
        alice.send_message(mto="carol@localhost", mbody="kept across the restart", mtype="chat")
        await asyncio.sleep(1.0)
        carol = await online(n2, "carol", "phone")
        await carol.inbox.expect(message("kept across the restart"))
        await close_all(alice, carol)

    run(scenario())


def test_kill_9_under_traffic_loses_nothing_of_the_survivors(fresh_cluster, run):
    """Senders on n1 and n3 write to receivers on every node while n2 is killed: every message
    to a survivor arrives once; every message to n2's user arrives live, from offline storage
    after a new login, or (only what n2 had taken from its stream or its sockets) not at all."""
    cluster = fresh_cluster()
    n1, n2, n3 = cluster.nodes
    count = 60

    async def scenario():
        senders = [await online(n1, "alice", "s"), await online(n3, "carol", "s")]
        receivers = {
            "bob": await online(n1, "bob", "r"),
            "dave": await online(n2, "dave", "r"),
            "erin": await online(n3, "erin", "r"),
        }
        await asyncio.sleep(0.3)
        for i in range(count):
            for sender in senders:
                for name in receivers:
                    sender.send_message(mto=f"{name}@localhost", mbody=f"{sender.boundjid.user}"
                                        f" {i}", mtype="chat")  # fmt: skip
            if i == count // 2:
                cluster.kill(1)
            await asyncio.sleep(0.02)
        await asyncio.sleep(cluster.lease + 4)  # reaped: n2's stream and sessions are gone
        back = await online(n3, "dave", "again")
        await asyncio.sleep(1.0)
        expected = {f"{s.boundjid.user} {i}" for s in senders for i in range(count)}

        def bodies(client) -> list[str]:
            found = [el.findtext("{jabber:client}body") for el in client.inbox.stanzas]
            return [b for b in found if b]

        for name in ("bob", "erin"):
            got = bodies(receivers[name])
            assert sorted(got) == sorted(expected), f"{name}: each message exactly once"
        live, stored = bodies(receivers["dave"]), bodies(back)
        bounced = [el for s in senders for el in s.inbox.stanzas if el.get("type") == "error"]
        assert not bounced, "nothing needed to bounce: dave's messages had offline storage"
        seen = live + stored
        lost = expected - set(seen)
        twice = len(seen) - len(set(seen))
        # What n2 had taken from its stream or its sockets when it died: a few at most.
        assert len(lost) + twice <= 6, (sorted(lost), twice)
        print(f"kill -9 under traffic: dave got {len(live)} live, {len(stored)} from offline "
              f"storage, {len(lost)} lost, {twice} twice, of {len(expected)}")  # fmt: skip
        rows = json.loads(n1.ctl("sessions", "--json").stdout)
        jids = [r["jid"] for r in rows if r["jid"]]
        assert len(jids) == len(set(jids)), "no full JID twice"
        assert all(r["node"] != "n2" for r in rows)
        assert cluster.indexed("n2") == []
        for key in cluster.session_keys():
            assert all(b" n2 " not in v for v in cluster.redis.client(cluster.db).hvals(key))
        await close_all(back, *senders, receivers["bob"], receivers["erin"])

    run(scenario(), timeout=90)
