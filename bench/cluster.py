"""`python -m bench cluster`: what clustering costs, on private Redis and PostgreSQL instances.

- the message flood on one node (in-process session manager) and on a two-node cluster with
  both users of each pair on one node, and with senders on one node and receivers on the other:
  msgs/s, p50/p99 and server CPU per message (summed over the nodes and Redis);
- whole client sessions (STARTTLS, SCRAM-SHA-1, bind, roster, presence, logout) on one node and
  on a clustered node (Redis session manager), both on PostgreSQL;
- bytes of Redis memory per bound session;
- seconds from kill -9 of a node to its user's contact hearing unavailable.
Writes bench/results/cluster/latest.json and latest.md after every figure."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import BENCH, ROOT, Xmppd, accounts, make_certificate


class Node(Xmppd):
    """An xmppd process on PostgreSQL, clustered when `redis` is given."""

    def __init__(self, workdir: Path, cert: Path, key: Path, core: int, label: str,
                 database: str, redis: str | None = None) -> None:  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, workdir, cert, key, core)
        self.name = label
        self.database = database
        self.redis = redis

    def configure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = (BENCH / "xmppd.bench.toml").read_text()
        text = (text.replace("@DATA@", str(self.data_dir)).replace("@PORT@", str(self.port))
                .replace("@CERT@", str(self.cert)).replace("@KEY@", str(self.key)))  # fmt: skip
        text = text.replace('log_level = "warning"',
                            f'log_level = "warning"\nstorage = "{self.database}"')  # fmt: skip
        if self.redis:
            text += f'\n[cluster]\nnode = "{self.name}"\nredis = "{self.redis}"\n'
        self.config_path.write_text(text)


class Together:
    """Several nodes and their Redis measured as one server: their CPU summed."""

    def __init__(self, *nodes: Node, redis_pid: int) -> None:
        self.nodes = nodes
        self.name = "+".join(n.name for n in nodes) + "+redis"
        self.port = nodes[0].port
        self.proc = nodes[0].proc
        self.redis_pid = redis_pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.redis_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        redis = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return redis + sum(n.cpu_seconds() for n in self.nodes)

    def log_tail(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import Run
    from tests.support.services import PostgresServer, RedisServer

    redis, postgres = RedisServer(), PostgresServer()
    bench = Run(args)
    bench.result["scenario_set"] = "cluster"

    def save() -> None:
        bench.result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        (bench.out / "latest.json").write_text(json.dumps(bench.result, indent=2) + "\n")
        (bench.out / "latest.md").write_text(markdown(bench.result) + "\n")

    bench.save = save
    cert, key = make_certificate(bench.tmp)
    database = postgres.url
    try:
        single = Node(bench.tmp / "single", cert, key, args.server_core, "single", database)
        n1 = Node(bench.tmp / "n1", cert, key, 0, "n1", database, redis.url)
        n2 = Node(bench.tmp / "n2", cert, key, 1, "n2", database, redis.url)
        for node in (single, n1, n2):
            node.configure()
        bench.log(f"provisioning {args.login_accounts} accounts in PostgreSQL")
        provision(single, max(args.login_accounts, 2 * args.pairs))

        def flood(server, receiver_port=None) -> None:
            job = {
                "scenario": "flood", "host": "127.0.0.1", "port": server.port,
                "receiver_port": receiver_port or server.port, "domain": "localhost",
                "users": accounts(2 * args.pairs), "pairs": args.pairs, "window": args.window,
                "duration": args.duration, "warmup": 3, "drain": 20,
                "sources": ["127.0.0.6", "127.0.0.7"],
            }  # fmt: skip
            result = bench.measured(server, job)
            cpu_s = result["server_cpu_pct"] / 100 * result["seconds"]
            result["server_cpu_us_per_msg"] = round(1e6 * cpu_s / max(1, result["delivered"]), 1)
            bench.add(server.name, result)

        def session(server) -> None:
            bench.login(server, "SCRAM-SHA-1", session=True)

        for label, fn in (("flood", flood), ("session", session)):
            bench.log(f"single node: {label}")
            with running(single):
                fn(single)
            with running(n1, n2):
                bench.log(f"cluster, one node's users: {label}")
                fn(Together(n1, n2, redis_pid=redis.proc.pid))
                if label == "flood":
                    bench.log("cluster, senders on n1 and receivers on n2: flood")
                    flood(Together(n1, n2, redis_pid=redis.proc.pid), receiver_port=n2.port)
        bench.add("redis", {"scenario": "redis-bytes-per-session",
                            **asyncio.run(redis_bytes(redis.url, 10_000))})  # fmt: skip
        bench.log("kill -9 to the contact's unavailable")
        bench.add("cluster", {"scenario": "kill-to-unavailable", **kill_to_unavailable(
            bench.tmp / "kill", redis, postgres)})  # fmt: skip
    finally:
        redis.close()
        postgres.close()
    save()
    print(markdown(bench.result))


class running:
    def __init__(self, *nodes: Node) -> None:
        self.nodes = nodes

    def __enter__(self) -> None:
        for node in self.nodes:
            node.start()

    def __exit__(self, *_exc: object) -> None:
        for node in self.nodes:
            node.stop()


def provision(node: Node, count: int) -> None:
    lines = "".join(f"{u}@localhost {p}\n" for u, p in accounts(count))
    done = subprocess.run([sys.executable, "-m", "xmppd.ctl", "--config", str(node.config_path),
                           "user", "import", "-"], input=lines, capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"xmppctl user import failed: {done.stderr}")


async def redis_bytes(url: str, count: int) -> dict:
    """Bind `count` sessions through the cluster's session manager and read Redis's memory."""
    from redis.asyncio import Redis

    from cluster.relay import Relay
    from cluster.sessions import ClusterSessions
    from xmpp.jid import JID

    client = Redis.from_url(url.rsplit("/", 1)[0] + "/13")
    await client.flushdb()
    before = (await client.info("memory"))["used_memory"]
    manager = ClusterSessions(client, Relay(client, "n1", "boot"), "n1")
    for start in range(0, count, 500):
        answers = []
        for i in range(start, min(count, start + 500)):
            done = asyncio.get_running_loop().create_future()
            jid = JID.parse(f"user{i}@localhost/resource-{i:08x}")
            manager.open(jid, "n1", f"{i:010x}", 10, done.set_result)
            answers.append(done)
        await asyncio.gather(*answers)
    after = (await client.info("memory"))["used_memory"]
    manager.stop()
    await client.flushdb()
    await client.aclose()
    return {"sessions": count, "bytes_per_session": round((after - before) / count, 1)}


def kill_to_unavailable(tmp: Path, redis, postgres) -> dict:
    """Two nodes with the default lease; bob on n2 is alice's contact; n2 is killed."""
    from tests.support.cluster import Cluster
    from tests.support.im import befriend_both, close_all, online, presence

    cluster = Cluster(tmp, redis, postgres, size=2, lease=8.0)
    cluster.add_users(alice="a-secret", bob="b-secret")
    cluster.start()
    n1, n2 = cluster.nodes

    async def scenario() -> float:
        alice = await online(n1, "alice", "desk")
        bob = await online(n2, "bob", "phone")
        await befriend_both(alice, bob)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        cluster.kill(1)
        await alice.inbox.expect(presence("unavailable", "bob@localhost/phone"), timeout=60)
        took = time.monotonic() - started
        await close_all(alice)
        del bob
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        cluster.stop()
    return {"lease_s": 8.0, "seconds": round(took, 2)}


def markdown(result: dict) -> str:
    rows = ["| what | server | msgs/s or sessions/s | p50 ms | p99 ms | server CPU |",
            "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for r in result["results"]:
        kind = r.get("scenario")
        if kind == "flood":
            rows.append(f"| flood | {r['server']} | {r['msgs_per_s']} | {r['p50_ms']} | "
                        f"{r['p99_ms']} | {r['server_cpu_us_per_msg']} µs/msg, "
                        f"{r['server_cpu_pct']}% |")  # fmt: skip
        elif kind == "session":
            rate = r.get("logins_per_s") or r.get("sessions_per_s")
            rows.append(f"| client sessions | {r['server']} | {rate} | {r.get('p50_ms')} | "
                        f"{r.get('p99_ms')} | {r.get('server_cpu_pct')}% |")  # fmt: skip
        elif kind == "redis-bytes-per-session":
            rows.append(f"| Redis memory | {r['sessions']} sessions | "
                        f"{r['bytes_per_session']} bytes each | | | |")  # fmt: skip
        elif kind == "kill-to-unavailable":
            rows.append(f"| kill -9 to contact's unavailable | lease {r['lease_s']} s | "
                        f"{r['seconds']} s | | | |")  # fmt: skip
        elif kind == "error":
            rows.append(f"| error | {r['server']} | {r['error']} | | | |")
    return "\n".join(rows)
