"""The cluster's Redis from its URL: one server (`redis://`, `rediss://`, `unix://`), a master
found through Sentinel (`redis+sentinel://h1:26379,h2:26379/MASTER/DB`) or Redis Cluster
(`redis+cluster://h1:7000,h2:7001`), and the identity of the Redis run that holds a key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
DEFAULT_PORT = {"redis+sentinel": 26379, "redis+cluster": 6379}
OPTIONS = {"socket_connect_timeout": 3, "socket_timeout": 10}


@dataclass(frozen=True)
class RedisTarget:
    scheme: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels or cluster seeds
    master: str = ""  # the Sentinel service name
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse(url: str) -> RedisTarget:
    """What `url` names; ValueError saying what is wrong with it."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError("must be a redis://, rediss://, unix://, redis+sentinel:// or "
                         f"redis+cluster:// URL, got {url!r}")  # fmt: skip
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget(scheme, url)
    parts = urlsplit(url)
    credentials, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    hosts = tuple(_host(h, DEFAULT_PORT[scheme], url) for h in hostlist.split(","))
    path = [p for p in parts.path.split("/") if p]
    if scheme == "redis+sentinel":
        if not path or len(path) > 2:
            raise ValueError(f"names the sentinels, then /MASTER and an optional /DB: {url!r}")
        master, db = path[0], _db(path[1] if len(path) > 1 else "0", url)
    else:
        if len(path) > 1 or (path and _db(path[0], url) != 0):
            raise ValueError(f"Redis Cluster has only database 0: {url!r}")
        master, db = "", 0
    return RedisTarget(scheme, url, hosts, master, db, unquote(username) or None,
                       unquote(password) or None)  # fmt: skip


def _host(text: str, default: int, url: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = port, str(default)
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"host:port expected, got {text!r} in {url!r}")
    return host, int(port)


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the database must be a number, got {text!r} in {url!r}")
    return int(text)


def connect(url: str) -> Any:
    """An asyncio client of redis-py for `url` (Redis, Sentinel-managed Redis or RedisCluster)."""
    target = parse(url)
    auth = {"username": target.username, "password": target.password}
    if target.scheme == "redis+sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=dict(OPTIONS), **OPTIONS)
        return sentinel.master_for(target.master, db=target.db, health_check_interval=15,
                                   **auth)  # fmt: skip
    if target.scheme == "redis+cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        return RedisCluster(startup_nodes=nodes, **auth, **OPTIONS)
    from redis.asyncio import Redis

    return Redis.from_url(url, health_check_interval=15, **OPTIONS)


def is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


async def run_id(client: Any) -> str:
    """Which Redis run holds the data: its run id (on Redis Cluster: every master's, sorted),
    so that a restart that emptied it, or a failover to a replica, shows as a change."""
    if is_cluster(client):
        found = await client.info("server", target_nodes=client.PRIMARIES)
        return ",".join(sorted(info["run_id"] for info in found.values()))
    return (await client.info("server"))["run_id"]


async def run_of_key(client: Any, key: str) -> str:
    """The run id of the Redis that holds `key` now."""
    if is_cluster(client):
        node = client.get_node_from_key(key)
        return (await client.info("server", target_nodes=node))["run_id"]
    return (await client.info("server"))["run_id"]


def same_run(current: str | None, identity: str | None) -> bool:
    """Whether the server of one key (run id `current`) is part of the run `identity`."""
    return current is not None and identity is not None and current in identity.split(",")


def script(client: Any, source: str) -> Any:
    """`client.register_script(source)`, remembered so that `load_scripts` can load it: a Redis
    Cluster pipeline runs EVALSHA without loading what a master lacks."""
    registered = client.__dict__.setdefault("_xmppd_scripts", {})
    registered[source] = client.register_script(source)
    return registered[source]


async def load_scripts(client: Any) -> None:
    """Load every script of `script` into the Redis (on Redis Cluster: into every master), so
    that pipelines may run them; needed again after a restart or a failover."""
    if not is_cluster(client):
        return  # a plain pipeline loads its scripts itself
    for registered in client.__dict__.get("_xmppd_scripts", {}).values():
        await client.script_load(registered.script)


def missing_script(exc: BaseException) -> bool:
    return "NOSCRIPT" in str(exc)
