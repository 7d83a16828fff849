"""Start a real xmppd node in a subprocess on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cap_files(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    config_path: Path
    starttls_port: int
    direct_port: int
    domain: str = "localhost"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def admin_socket(self) -> Path:
        return self.data_dir / "admin.sock"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "certs" / f"{self.domain}.crt"

    def ctl(self, *args: str, input: str | None = None, check: bool = True):
        cmd = [sys.executable, "-m", "xmppd.ctl", "--config", str(self.config_path), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"xmppctl {' '.join(args)} failed: {result.stderr}")
        return result

    def admin(self, cmd: str, **args):
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(10)
        client.connect(str(self.admin_socket))
        with client:
            client.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return json.loads(reply)

    def add_users(self, **passwords: str) -> None:
        lines = "".join(f"{u}@{self.domain} {p}\n" for u, p in passwords.items())
        self.ctl("user", "import", "-", input=lines)
        self.passwords.update(passwords)

    def start(
        self,
        env: dict | None = None,
        wait: bool = True,
        open_files: int | None = None,
        test_plugins: bool = True,
    ) -> None:
        """Run the node; `open_files` caps its descriptor limit (soft and hard) as a small
        host would; `test_plugins` adds the tests' admin commands (crash)."""
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        environment = {**os.environ, **(env or {})}
        module = "tests.support.test_node" if test_plugins else "xmppd.cli"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=ROOT,
            preexec_fn=(lambda: _cap_files(open_files)) if open_files else None,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"xmppd exited early:\n{self.log()}")
            try:
                if self.admin("status")["ok"]:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"xmppd did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def unexpected_tracebacks(self) -> list[str]:
        """Tracebacks in the node's log other than the tests' own crash command's: an operator
        reading the log would take each for a bug."""
        found, block = [], None
        for line in self.log().splitlines():
            if line.startswith("Traceback"):
                block = [line]
            elif block is not None:
                block.append(line)
                if line and not line.startswith((" ", "Traceback", "During handling")):
                    text = "\n".join(block)
                    if "test-only crash" not in text:
                        found.append(text)
                    block = None
        return found

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"xmppd ignored SIGTERM:\n{self.log()}") from None


def make_server(tmp: Path, extra_config: str = "", limits: str = "", host: str = "",
                server: str = "") -> Server:  # fmt: skip
    """`server`, `limits` and `host` are TOML lines for the [server], [limits] and
    [hosts.localhost] tables;
    `extra_config` is TOML appended after them (more tables, e.g. [[listeners]])."""
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    node = Server(data_dir, tmp / "xmppd.toml", free_port(), free_port())
    node.config_path.write_text(
        f"""
[server]
data_dir = "{data_dir}"
log_level = "debug"
{server}

[hosts.localhost]
{host}

[[listeners]]
address = "127.0.0.1"
port = {node.starttls_port}
tls = "starttls"

[[listeners]]
address = "127.0.0.1"
port = {node.direct_port}
tls = "direct"

[limits]
{"" if "stream_header_timeout" in limits else "stream_header_timeout = 5"}
{limits}
{extra_config}
"""
    )
    return node
