"""The servers under test: provisioning accounts, starting each pinned to one core, reading its
RSS and CPU time from /proc, stopping it."""

from __future__ import annotations

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


SERVERS = {"xmppd": Xmppd, "prosody": Prosody}
