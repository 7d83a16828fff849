"""A cluster of xmppd node processes for the tests: each node its own data directory and ports,
all on one private Redis (or the tests' Redis Cluster) and one private PostgreSQL database."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.support.server import Server, free_port, make_server
from tests.support.services import (
    PostgresServer,
    RedisClusterServer,
    RedisSentinelSet,
    RedisServer,
)

LEASE = 2.0  # seconds: a dead node is reaped within about LEASE + 1 s


class Cluster:
    made = 0  # clusters made so far: each gets a Redis database of its own (two may run at once)

    def __init__(self, tmp: Path, redis: RedisServer | RedisClusterServer | RedisSentinelSet,
                 postgres: PostgresServer, size: int = 3, lease: float = LEASE) -> None:
        self.redis = redis
        self.database = postgres.new_database()
        if not isinstance(redis, RedisServer):  # Redis Cluster or Sentinel: database 0
            self.db = 0  # (one cluster on it at a time)
            self.redis_url = redis.url
            redis.wipe()
        else:
            self.db = Cluster.made % 16
            self.redis_url = f"{redis.url.rsplit('/', 1)[0]}/{self.db}"
            redis.cli("-n", str(self.db), "FLUSHDB")
        Cluster.made += 1
        self.lease = lease
        self.nodes: list[Server] = [self._make(tmp, i) for i in range(size)]

    def _make(self, tmp: Path, i: int) -> Server:
        metrics_port = free_port()
        node = make_server(tmp / f"n{i + 1}", extra_config=f"""
[cluster]
node = "n{i + 1}"
redis = "{self.redis_url}"
lease = {self.lease}

[metrics]
port = {metrics_port}
""", server=f'storage = "{self.database}"')  # fmt: skip
        node.metrics_port = metrics_port
        return node

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        self.wait_joined()
        return self

    def wait_joined(self, timeout: float = 20) -> None:
        """Until every running node lists every other running node as alive."""
        running = {f"n{i + 1}" for i, n in enumerate(self.nodes) if n.proc.poll() is None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.alive_seen_by(node) >= running for node in self.running()):
                return
            time.sleep(0.1)
        raise AssertionError(f"the nodes did not see each other: {self.state()}")

    def alive_seen_by(self, node: Server) -> set[str]:
        rows = node.admin("nodes")["result"]
        return {r["node"] for r in rows if r["alive"] and (r["this"] or r["peer"])}

    def running(self) -> list[Server]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def state(self) -> str:
        return json.dumps({str(n.data_dir): n.admin("nodes") for n in self.running()})

    def session_keys(self) -> list[bytes]:
        return self.redis.client(self.db).keys("xmppd:s:*")

    def indexed(self, node: str) -> list[list]:
        """What the node's index in Redis lists: [bare, resource, address] per session."""
        import msgpack

        members = self.redis.client(self.db).smembers(f"xmppd:n:{{{node}}}:index")
        return [msgpack.unpackb(m) for m in members]

    def add_users(self, **passwords: str) -> None:
        self.nodes[0].add_users(**passwords)
        for node in self.nodes[1:]:
            node.passwords.update(passwords)

    def kill(self, i: int) -> None:
        self.nodes[i].proc.send_signal(signal.SIGKILL)
        self.nodes[i].proc.wait(10)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def tracebacks(self) -> list[str]:
        return [t for node in self.nodes for t in node.unexpected_tracebacks()]
