"""The servers under test: provisioning accounts, starting each pinned to one core, reading its
RSS and CPU time from /proc, stopping it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ITERATIONS = 4096  # xmppd's default; Prosody's accounts are written with the same count
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accounts(count: int) -> list[tuple[str, str]]:
    return [(f"b{i}", f"pw-{i}-bench") for i in range(count)]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """One EC P-256 self-signed pair for both servers (xmppd makes the same kind)."""
    from xmppd.certs import ensure_self_signed

    cert, key = directory / "localhost.crt", directory / "localhost.key"
    ensure_self_signed(cert, key, ["localhost"])
    os.chmod(key, 0o644)  # Prosody may read it as another user
    return cert, key


class Server(ABC):
    name = "?"

    def __init__(self, workdir: Path, cache: Path, cert: Path, key: Path, core: int) -> None:
        self.workdir = workdir
        self.cache = cache
        self.cert, self.key = cert, key
        self.core = core
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    # --- /proc -------------------------------------------------------------------------------

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (every thread), from /proc/PID/stat."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    # --- life --------------------------------------------------------------------------------

    @abstractmethod
    def command(self) -> list[str]:
        """How this server starts in the foreground (Xmppd and Prosody each say)."""

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.core), *self.command()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not open its port:\n{self.log_tail()}")
        time.sleep(1.0)  # let it finish starting before anything is measured

    def env(self) -> dict:
        return dict(os.environ)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def version(self) -> str:
        return "?"


# --- xmppd -------------------------------------------------------------------------------------


class Xmppd(Server):
    name = "xmppd"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "xmppd-data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "xmppd.toml"

    def provision(self, count: int) -> float:
        """Write the config; import `count` accounts with `xmppctl user import` (a copy of the
        database from the cache when an earlier run imported the same accounts)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = (BENCH / "xmppd.bench.toml").read_text()
        self.config_path.write_text(
            template.replace("@DATA@", str(self.data_dir))
            .replace("@PORT@", str(self.port))
            .replace("@CERT@", str(self.cert))
            .replace("@KEY@", str(self.key))
        )
        cached = self.cache / f"xmppd-{count}-{ITERATIONS}.sqlite3"
        target = self.data_dir / "xmppd.sqlite3"
        started = time.monotonic()
        if cached.is_file():
            shutil.copyfile(cached, target)
            return 0.0
        lines = "".join(f"{u}@localhost {p}\n" for u, p in accounts(count))
        result = subprocess.run(
            [sys.executable, "-m", "xmppd.ctl", "--config", str(self.config_path),
             "user", "import", "-"],
            input=lines, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"xmppctl user import failed: {result.stderr}")
        elapsed = time.monotonic() - started
        self.cache.mkdir(parents=True, exist_ok=True)
        # a consistent single-file copy (the live file may have a WAL beside it)
        import sqlite3

        source = sqlite3.connect(target)
        dest = sqlite3.connect(cached)
        with dest:
            source.backup(dest)
        source.close()
        dest.close()
        return elapsed

    def write_rosters(self, rosters: dict[str, list[str]]) -> None:
        from bench.rosters import write_xmppd

        write_xmppd(self.data_dir / "xmppd.sqlite3", rosters)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "xmppd.cli", "serve", "--config", str(self.config_path)]

    def env(self) -> dict:
        # The server runs in a work directory: without this it would import whatever copy of
        # xmppd was last pip-installed into the environment, not this checkout.
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}

    def version(self) -> str:
        try:
            loop = "uvloop" if _has("uvloop") else "asyncio"
            from importlib.metadata import version

            return f"xmppd {version('xmppd')} (Python {sys.version.split()[0]}, {loop})"
        except Exception:  # noqa: BLE001
            return "xmppd"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --- Prosody -----------------------------------------------------------------------------------


def _prosody_account(job: tuple[str, str]) -> tuple[str, str]:
    user, password = job
    salt = str(uuid.uuid4())
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), ITERATIONS)
    stored = hashlib.sha1(hmac.digest(salted, b"Client Key", "sha1")).hexdigest()
    server = hmac.digest(salted, b"Server Key", "sha1").hex()
    return user, (
        "return {\n"
        f'\t["iteration_count"] = {ITERATIONS};\n'
        f'\t["salt"] = "{salt}";\n'
        f'\t["server_key"] = "{server}";\n'
        f'\t["stored_key"] = "{stored}";\n'
        "};\n"
    )


class Prosody(Server):
    name = "prosody"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "prosody-data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prosody.cfg.lua"

    def provision(self, count: int) -> float:
        """Write the config; write the accounts as Prosody's internal storage files
        (data/localhost/accounts/USER.dat with SCRAM-SHA-1 keys, as mod_auth_internal_hashed
        stores them), from the cache when an earlier run made the same accounts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = (BENCH / "prosody.cfg.lua").read_text()
        self.config_path.write_text(
            template.replace("@DATA@", str(self.data_dir))
            .replace("@PORT@", str(self.port))
            .replace("@CERT@", str(self.cert))
            .replace("@KEY@", str(self.key))
        )
        cached = self.cache / f"prosody-{count}-{ITERATIONS}"
        target = self.data_dir / "localhost" / "accounts"
        started = time.monotonic()
        if not cached.is_dir():
            partial = self.cache / f"prosody-{count}-{ITERATIONS}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            with ProcessPoolExecutor() as pool:
                for user, text in pool.map(_prosody_account, accounts(count), chunksize=256):
                    (partial / f"{user}.dat").write_text(text)
            partial.rename(cached)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(cached, target)
        return time.monotonic() - started

    def write_rosters(self, rosters: dict[str, list[str]]) -> None:
        from bench.rosters import write_prosody

        write_prosody(self.data_dir, rosters)

    def command(self) -> list[str]:
        return ["prosody", "-F", "--config", str(self.config_path)]

    def version(self) -> str:
        try:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", "prosody"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            backend = "epoll"
            return f"Prosody {out} (Debian package, {backend})"
        except OSError:
            return "Prosody"


# --- ejabberd ----------------------------------------------------------------------------------


def _ejabberd_account(job: tuple[str, str]) -> tuple[str, str, str, str, int]:
    """A row of ejabberd's `users` table as ejabberd_auth:password_to_scram/3 makes it for
    SCRAM-SHA-1: StoredKey (in the password column), ServerKey and a 16-byte salt, base64."""
    user, password = job
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, ITERATIONS)
    stored = hashlib.sha1(hmac.digest(salted, b"Client Key", "sha1")).digest()
    server = hmac.digest(salted, b"Server Key", "sha1")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return user, b64(stored), b64(server), b64(salt), ITERATIONS


def _ejabberd_lib() -> Path:
    """Debian's ejabberd application directory (/usr/lib/<triplet>/ejabberd-<version>)."""
    found = sorted(p for p in Path("/usr/lib").glob("*/ejabberd-*") if (p / "ebin").is_dir())
    if not found:
        raise RuntimeError("ejabberd is not installed (apt-get install ejabberd erlang-p1-sqlite3)")
    return found[-1]


class Ejabberd(Server):
    """Debian's ejabberd, started as ejabberdctl would start it (`erl ... -s ejabberd`) but
    called directly: no `su` to the ejabberd user and no shell in between, so that the process
    the harness watches is beam.smp itself, and no Erlang distribution (no node name), so that
    no epmd is started. The VM is told it has the one core taskset gives it."""

    name = "ejabberd"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "ejabberd-data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "ejabberd.yml"

    @property
    def database(self) -> Path:
        return self.data_dir / "ejabberd.db"

    def provision(self, count: int) -> float:
        """Write the config; write the accounts into ejabberd's SQLite database (the schema of
        its lite.sql, the `users` rows with SCRAM-SHA-1 keys as ejabberd_auth_sql stores them),
        from the cache when an earlier run made the same accounts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "mnesia").mkdir(exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        template = (BENCH / "ejabberd.yml").read_text()
        self.config_path.write_text(
            template.replace("@DATA@", str(self.data_dir))
            .replace("@PORT@", str(self.port))
            .replace("@CERT@", str(self.cert))
            .replace("@KEY@", str(self.key))
        )
        cached = self.cache / f"ejabberd-{count}-{ITERATIONS}.db"
        started = time.monotonic()
        if not cached.is_file():
            import sqlite3

            self.cache.mkdir(parents=True, exist_ok=True)
            partial = self.cache / f"ejabberd-{count}-{ITERATIONS}.db.partial"
            partial.unlink(missing_ok=True)
            with ProcessPoolExecutor() as pool:
                rows = list(pool.map(_ejabberd_account, accounts(count), chunksize=256))
            db = sqlite3.connect(partial)
            try:
                db.executescript((_ejabberd_lib() / "priv" / "sql" / "lite.sql").read_text())
                with db:
                    db.executemany(
                        "INSERT INTO users (username, password, serverkey, salt, iterationcount)"
                        " VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
            finally:
                db.close()
            partial.rename(cached)
        shutil.copyfile(cached, self.database)
        return time.monotonic() - started

    def write_rosters(self, rosters: dict[str, list[str]]) -> None:
        from bench.rosters import write_ejabberd

        write_ejabberd(self.database, rosters)

    def command(self) -> list[str]:
        return [
            "erl", "-noinput",
            "+K", "true", "+P", "250000",  # what ejabberdctl passes
            # one core (taskset): one scheduler, one dirty CPU scheduler, and no scheduler
            # spinning while it waits for work, so that the CPU time read is work done
            "+S", "1:1", "+SDcpu", "1:1",
            "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none",
            "-mnesia", "dir", f'"{self.data_dir / "mnesia"}"',
            "-s", "ejabberd",
        ]  # fmt: skip

    def env(self) -> dict:
        return {
            **os.environ,
            "EJABBERD_CONFIG_PATH": str(self.config_path),
            "EJABBERD_LOG_PATH": str(self.data_dir / "logs" / "ejabberd.log"),
            "ERL_LIBS": str(_ejabberd_lib().parent),
            "ERL_MAX_PORTS": "65536",
            "ERL_MAX_ETS_TABLES": "1400",
            "ERL_CRASH_DUMP": str(self.workdir / "erl_crash.dump"),
            "ERL_CRASH_DUMP_BYTES": "0",
        }

    def log_tail(self, lines: int = 30) -> str:
        """The VM's output, then ejabberd's own log (warnings and errors)."""
        own = self.data_dir / "logs" / "ejabberd.log"
        try:
            tail = "\n".join(own.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            tail = ""
        return super().log_tail(lines) + ("\n--- ejabberd.log:\n" + tail if tail else "")

    def version(self) -> str:
        try:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", "ejabberd"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            otp = sorted(Path("/usr/lib/erlang/releases").glob("*/OTP_VERSION"))
            erlang = otp[-1].read_text().strip() if otp else "?"
            return f"ejabberd {out.split('-')[0]} (Debian package, Erlang/OTP {erlang})"
        except OSError:
            return "ejabberd"


SERVERS = {"xmppd": Xmppd, "prosody": Prosody, "ejabberd": Ejabberd}
