"""Private Redis and PostgreSQL instances for the tests, on free loopback ports in temporary
directories: Debian's packages, installed here when missing (apt, as root), never a server the
machine happens to run."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.server import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def ensure_packages(*packages: str) -> None:
    """Install Debian packages that are missing; without root or apt, fail saying what to run."""
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"the cluster tests need Debian's {' '.join(missing)}: "
                           f"apt-get install {' '.join(missing)}")  # fmt: skip
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True,
                   check=True)  # fmt: skip


def _installed(package: str) -> bool:
    if package == "redis-server":
        return shutil.which("redis-server") is not None
    if package == "postgresql":
        return (PG_BIN / "initdb").exists()
    raise ValueError(package)


class RedisServer:
    """`redis-server` on a free port, nothing saved to disk: a restart comes back empty."""

    def __init__(self) -> None:
        ensure_packages("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
             "--logfile", str(self.dir / "redis.log")],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {self.log()}")

    def cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                                text=True, timeout=10)  # fmt: skip
        return result.stdout

    def client(self, db: int = 0):
        import redis

        return redis.Redis(port=self.port, db=db)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def restart_empty(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServer:
    """Three `redis-server` masters in cluster mode (no replicas), slots spread by
    `redis-cli --cluster create`; the tests share it, wiping it between clusters (DB 0 only)."""

    SIZE = 3

    def __init__(self) -> None:
        ensure_packages("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-redis-cluster-"))
        self.ports = [_cluster_port() for _ in range(self.SIZE)]
        self.procs = [self._start(port) for port in self.ports]
        for port in self.ports:
            self._wait(lambda p=port: self.cli(p, "PING").strip() == "PONG")
        hosts = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(["redis-cli", "--cluster", "create", *hosts, "--cluster-replicas",
                                  "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if created.returncode:
            raise RuntimeError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")
        self._wait(lambda: all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO")
                               for p in self.ports))  # fmt: skip

    def _start(self, port: int) -> subprocess.Popen:
        home = self.dir / str(port)
        home.mkdir()
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(home), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
             "--logfile", str(home / "redis.log")],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _wait(ready, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not come up")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def cli(self, port: int, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                                text=True, timeout=10)  # fmt: skip
        return result.stdout

    def wipe(self) -> None:
        for port in self.ports:
            self.cli(port, "FLUSHALL")

    def client(self, db: int = 0):
        from redis.cluster import ClusterNode, RedisCluster

        assert db == 0
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelSet:
    """One master, one replica and three sentinels watching them (quorum 2, a master silent for
    a second is failed over): private `redis-server` processes, for one test that kills the
    master."""

    MASTER = "xmppd"

    def __init__(self) -> None:
        ensure_packages("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-sentinel-"))
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen] = {}
        self._redis(self.master_port)
        self._redis(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        self._wait(lambda: "master_link_status:up" in self.cli(self.replica_port, "INFO",
                                                                 "replication"))  # fmt: skip
        for port in self.sentinel_ports:
            home = self.dir / f"s{port}"
            home.mkdir()
            conf = home / "sentinel.conf"
            conf.write_text(f"""port {port}
bind 127.0.0.1
dir {home}
logfile {home}/sentinel.log
sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 2
sentinel down-after-milliseconds {self.MASTER} 1000
sentinel failover-timeout {self.MASTER} 5000
sentinel parallel-syncs {self.MASTER} 1
""")
            self.procs[port] = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)  # fmt: skip
        # Every sentinel knows the replica and the other sentinels before anything fails.
        self._wait(lambda: all(self._sentinel_sees(p) for p in self.sentinel_ports))

    def _redis(self, port: int, *args: str) -> None:
        home = self.dir / str(port)
        home.mkdir()
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(home), "--logfile", str(home / "redis.log"),
             *args],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self.cli(port, "PING").strip() == "PONG")

    def _sentinel_sees(self, port: int) -> bool:
        info = self.cli(port, "SENTINEL", "MASTER", self.MASTER)
        fields = dict(zip(info.split("\n")[::2], info.split("\n")[1::2], strict=False))
        return fields.get("num-slaves") == "1" and fields.get("num-other-sentinels") == "2"

    @staticmethod
    def _wait(ready, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Sentinel set did not come up")

    @property
    def url(self) -> str:
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{sentinels}/{self.MASTER}/0"

    def cli(self, port: int, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                                text=True, timeout=10)  # fmt: skip
        return result.stdout

    def master(self) -> int:
        """The port the sentinels name as master now."""
        reply = self.cli(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                         self.MASTER).split()  # fmt: skip
        return int(reply[1]) if len(reply) == 2 else 0

    def kill_master(self) -> int:
        """kill -9 the master; its port."""
        port = self.master()
        self.procs[port].kill()
        self.procs[port].wait(10)
        return port

    def wait_failover(self, old: int, timeout: float = 30) -> int:
        """Until the sentinels have promoted another master and it takes writes; its port."""
        self._wait(lambda: self.master() not in (0, old)
                   and "role:master" in self.cli(self.master(), "INFO", "replication"),
                   timeout)  # fmt: skip
        return self.master()

    def wipe(self) -> None:
        self.cli(self.master(), "FLUSHALL")

    def client(self, db: int = 0):
        import redis

        return redis.Redis(port=self.master(), db=db)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too."""
    import random
    import socket

    while True:
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class PostgresServer:
    """A PostgreSQL 15 cluster of its own (initdb, trust on loopback), run as the `postgres`
    user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        ensure_packages("postgresql")
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = _run_as()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "xmppd", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.start()
        self._run(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "xmppd", "xmppd")
        self._databases = 0

    @property
    def url(self) -> str:
        return self.database_url("xmppd")

    def database_url(self, name: str) -> str:
        return f"postgresql://xmppd@127.0.0.1:{self.port}/{name}"

    def wiped_url(self) -> str:
        """The shared test database, emptied (its public schema dropped and made again)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        return self.url

    def new_database(self) -> str:
        """A fresh empty database, for one test."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        self._run(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "xmppd", name)
        return self.database_url(name)

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "pg.log", "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=300",
                  "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, *cmd: object, check: bool = True) -> None:
        argv = [str(c) for c in cmd]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr or result.stdout}")


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"
