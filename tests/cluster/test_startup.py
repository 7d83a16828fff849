"""A clustered node refuses to start, with one line saying why, when it cannot work as one; a
node killed and started again rejoins cleanly."""

from __future__ import annotations

import asyncio

from tests.support.cluster import Cluster
from tests.support.im import close_all, message, online
from tests.support.server import free_port, make_server


def refused(server, timeout: float = 30) -> tuple[int, str]:
    """Start `server`, expect it to exit: its exit status and the last line it wrote."""
    server.start(wait=False)
    code = server.proc.wait(timeout)
    lines = [line for line in server.log().splitlines() if line.startswith("xmppd: error:")]
    return code, lines[-1] if lines else server.log()


def clustered(tmp, redis_url: str, storage: str, name: str = "n1"):
    return make_server(tmp, extra_config=f'[cluster]\nnode = "{name}"\nredis = "{redis_url}"\n'
                       "lease = 2.0\n", server=f'storage = "{storage}"')  # fmt: skip


def test_redis_unreachable(tmp_path, postgres_server):
    node = clustered(tmp_path, f"redis://127.0.0.1:{free_port()}/0", postgres_server.url)
    code, line = refused(node)
    assert code == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in line


def test_database_unreachable(tmp_path, redis_server):
    node = clustered(tmp_path, redis_server.url, f"postgresql://xmppd@127.0.0.1:{free_port()}/x")
    code, line = refused(node)
    assert code == 1
    assert "cannot open the database postgresql://xmppd@127.0.0.1:" in line


def test_storage_that_is_not_shared(tmp_path, redis_server):
    node = clustered(tmp_path, redis_server.url, f"sqlite:///{tmp_path}/own.sqlite3")
    code, line = refused(node)
    assert code == 2
    assert "server.storage: a clustered node needs the cluster's shared database" in line


def test_another_live_node_with_the_same_name(tmp_path, redis_server, postgres_server):
    cluster = Cluster(tmp_path / "c", redis_server, postgres_server, size=1).start()
    try:
        url = cluster.redis_url
        twin = clustered(tmp_path / "twin", url, cluster.database, name="n1")
        code, line = refused(twin)
        assert code == 1
        assert "another live node is named 'n1'" in line
        assert cluster.nodes[0].proc.poll() is None, "the first n1 serves on"
    finally:
        cluster.stop()


def test_a_killed_node_started_again_rejoins(fresh_cluster, run):
    cluster = fresh_cluster(size=2)
    n1, n2 = cluster.nodes
    cluster.kill(1)
    n2.start()  # waits out its previous run's lease, reaps it, serves
    cluster.wait_joined()

    async def scenario():
        alice = await online(n1, "alice", "a")
        bob = await online(n2, "bob", "b")
        await asyncio.sleep(0.3)
        alice.send_message(mto="bob@localhost/b", mbody="welcome back", mtype="chat")
        await bob.inbox.expect(message("welcome back"))
        await close_all(alice, bob)

    run(scenario())
