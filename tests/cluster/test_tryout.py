"""deploy/: the try-out script brings up three nodes that slixmpp clients can use and takes them
down leaving nothing running; the systemd unit passes systemd-analyze, and a node runs under
seccomp rules copied from the unit's sandbox."""

from __future__ import annotations

import configparser
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.im import close_all, message, online
from tests.support.server import ROOT, Server
from tests.support.services import ensure_packages

SCRIPT = ROOT / "deploy" / "tryout.sh"
UNIT = ROOT / "deploy" / "systemd" / "xmppd@.service"
BIN = Path(sys.executable).parent  # the xmppd and xmppctl of the Python running the tests
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


class Tryout:
    """One `deploy/tryout.sh` directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "XMPPD_BIN": str(BIN)}
        try:
            command = ["bash", str(SCRIPT), args[0], str(self.dir), *args[1:]]
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired as exc:
            out = subprocess.CompletedProcess(exc.cmd, -1, str(exc.stdout), str(exc.stderr))
            raise AssertionError(f"tryout.sh {args[0]} took over 90 s\n{self.logs(out)}") from exc
        if check and result.returncode != 0:
            raise AssertionError(f"tryout.sh {args[0]}: {result.returncode}\n{self.logs(result)}")
        return result

    def logs(self, result: subprocess.CompletedProcess) -> str:
        logs = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in sorted(self.dir.glob("n*.log"))]  # fmt: skip
        return "\n".join([result.stdout, result.stderr, *logs])

    def node(self, name: str) -> Server:
        """A handle on a running node, for the tests' slixmpp helpers."""
        config = tomllib.loads((self.dir / f"{name}.toml").read_text())
        ports = {lst["tls"]: lst["port"] for lst in config["listeners"]}
        node = Server(self.dir / name, self.dir / f"{name}.toml", ports["starttls"],
                      ports["direct"], log_path=self.dir / f"{name}.log")  # fmt: skip
        node.passwords.update(PASSWORDS)
        return node

    def ctl(self, *args: str, node: str = "n1") -> str:
        config = str(self.dir / f"{node}.toml")
        result = subprocess.run([str(BIN / "xmppctl"), "--config", config, *args],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, f"xmppctl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text().split()[0]) for p in self.dir.glob("*.pid")}

    def ports(self) -> list[int]:
        state = (self.dir / "tryout.env").read_text()
        values = state.replace("NODE_PORTS=(", "").replace(")", "").replace("=", " ").split()
        return [int(v) for v in values if v.isdigit()]


@pytest.fixture
def tryout() -> Iterator[Tryout]:
    """A try-out directory; whatever the test leaves running is stopped, then killed."""
    try:
        ensure_packages("redis-server", "postgresql")  # installs them as root
    except RuntimeError as exc:
        pytest.skip(str(exc))
    # pytest's tmp_path sits in a private directory, which PostgreSQL, run as `postgres`
    # when the tests run as root, could not enter.
    directory = Path(tempfile.mkdtemp(prefix="xmppd-tryout-"))
    directory.chmod(0o755)
    made = Tryout(directory)
    try:
        yield made
    finally:
        # Shown by pytest when the test failed.
        print(made.logs(subprocess.CompletedProcess([], 0, "", "")))
        pids = made.pids()
        made.run("stop", check=False)
        for pid in pids.values():
            if running(pid) and str(directory) in cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan that nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def alive_nodes(tryout: Tryout, node: str = "n1") -> set[str]:
    return {row["node"] for row in json.loads(tryout.ctl("nodes", "--json", node=node))
            if row["alive"]}  # fmt: skip


def test_tryout_starts_three_nodes_clients_use_and_stops_them(tryout, run):
    started = tryout.run("start")
    assert "n3" in started.stdout and "user add alice@localhost" in started.stdout
    pids = tryout.pids()
    assert set(pids) == {"n1", "n2", "n3", "redis", "postgres"}, pids
    assert all(running(pid) for pid in pids.values()), pids
    ports = tryout.ports()
    assert len(ports) == 8 and all(port_open(p) for p in ports), ports
    # One certificate for the domain, served by every node.
    certs = {(tryout.dir / n / "certs" / "localhost.crt").read_bytes() for n in ("n1", "n2", "n3")}
    assert len(certs) == 1

    tryout.ctl("user", "add", "alice@localhost", "--password", PASSWORDS["alice"])
    tryout.ctl("user", "add", "bob@localhost", "--password", PASSWORDS["bob"], node="n2")
    n1, n3 = tryout.node("n1"), tryout.node("n3")

    async def scenario():
        alice = await online(n1, "alice", "desk")
        bob = await online(n3, "bob", "phone")
        # To the full JID: a message to the bare JID sent before n1 learnt of bob's initial
        # presence on n3 goes to offline storage (it then waits for bob's next login).
        alice.send_message(mto="bob@localhost/phone", mbody="hello across the try-out",
                           mtype="chat")  # fmt: skip
        got = await bob.inbox.expect(message("hello across the try-out"))
        assert got.get("from") == "alice@localhost/desk"
        await close_all(alice, bob)

    run(scenario())
    rows = json.loads(tryout.ctl("nodes", "--json"))
    assert sorted(r["node"] for r in rows if r["alive"]) == ["n1", "n2", "n3"], rows
    status = tryout.run("status")
    assert status.stdout.count(" runs (pid ") == 5, status.stdout
    # A rolling restart of one node: the others keep running; `start` starts only n2 again.
    assert tryout.run("stop", "n2").stdout.strip() == f"stopped n2 (pid {pids['n2']})"
    assert not running(pids["n2"]) and all(running(pids[n]) for n in ("n1", "n3"))
    assert alive_nodes(tryout) == {"n1", "n3"}
    assert "n2 " in tryout.run("start").stdout
    after = tryout.pids()
    assert after["n2"] != pids["n2"] and {**after, "n2": pids["n2"]} == pids
    deadline = time.monotonic() + 20
    while alive_nodes(tryout) != {"n1", "n2", "n3"}:
        assert time.monotonic() < deadline, tryout.ctl("nodes")
        time.sleep(0.2)
    pids = after
    for name in ("n1", "n2", "n3"):
        assert not tryout.node(name).unexpected_tracebacks(), tryout.node(name).log()

    stopped = tryout.run("stop")
    assert stopped.stdout.count("stopped ") == 5, stopped.stdout
    assert not [name for name, pid in pids.items() if running(pid)], tryout.logs(stopped)
    assert not [p for p in ports if port_open(p)]
    assert not list(tryout.dir.glob("*.pid"))
    assert tryout.run("status", check=False).returncode == 3


# Rules systemd installs for the unit's SystemCallFilter=@system-service (with
# SystemCallErrorNumber=EPERM), MemoryDenyWriteExecute=yes and RestrictAddressFamilies=AF_INET
# AF_INET6 AF_UNIX, made with libseccomp (Debian's python3-seccomp), then the command is run.
SANDBOX = r"""
import errno, os, socket, subprocess, sys
import seccomp

def expand(group, seen):
    out = set()
    text = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                          text=True, check=True).stdout
    for line in text.splitlines()[1:]:
        name = line.strip()
        if name.startswith("@") and name not in seen:
            seen.add(name)
            out |= expand(name, seen)
        elif name and not name.startswith(("#", "@")):
            out.add(name)
    return out

PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
WX = PROT_WRITE | PROT_EXEC
rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for name in sorted(expand("@system-service", set()) - {"mmap", "mprotect", "pkey_mprotect",
                                                       "shmat", "socket"}):
    try:
        rules.add_rule(seccomp.ALLOW, name)
    except Exception:
        pass  # not a system call of this architecture
for prot in (0, PROT_WRITE, PROT_EXEC):  # never writable and executable at once
    rules.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, WX, prot))
for name in ("mprotect", "pkey_mprotect"):  # never made executable later
    rules.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
rules.add_rule(seccomp.ALLOW, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, 0))
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
rules.load()
os.execv(sys.argv[1], sys.argv[1:])
"""

SYSTEM_PYTHON = "/usr/bin/python3"


def seccomp_missing() -> str | None:
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed (apt-get install systemd)"
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if found.returncode != 0:
        return "Debian's python3-seccomp is not installed (apt-get install python3-seccomp)"
    return None


@pytest.mark.skipif(seccomp_missing() is not None, reason=str(seccomp_missing()))
def test_a_node_added_under_the_units_seccomp_rules_serves_and_leaves(tryout, run, tmp_path):
    tryout.run("start")
    for user in ("alice", "carol"):
        tryout.ctl("user", "add", f"{user}@localhost", "--password", PASSWORDS[user])
    # The sandbox's own check: a writable and executable mapping and a netlink socket fail.
    sandbox = tmp_path / "sandbox.py"
    sandbox.write_text(SANDBOX)
    probe = subprocess.run([SYSTEM_PYTHON, str(sandbox), sys.executable, "-c", """
import mmap, socket
for attempt in (lambda: mmap.mmap(-1, 4096, prot=7), lambda: socket.socket(16, 3)):
    try:
        attempt()
        print("allowed")
    except OSError as exc:
        print(exc.errno)
"""], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.stdout.split() == [str(errno.EPERM)] * 2, probe.stdout + probe.stderr

    # n4: a new name, its own ports and data directory, the same database and Redis.
    config = (tryout.dir / "n1.toml").read_text().replace('"n1"', '"n4"')
    config = config.replace(f'{tryout.dir}/n1"', f'{tryout.dir}/n4"')
    n1 = tryout.node("n1")
    for old in (n1.starttls_port, n1.direct_port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            config = config.replace(f"port = {old}\n", f"port = {s.getsockname()[1]}\n")
    (tryout.dir / "n4.toml").write_text(config)
    shutil.copytree(tryout.dir / "n1" / "certs", tryout.dir / "n4" / "certs")
    log = open(tryout.dir / "n4.log", "wb")  # noqa: SIM115 - handed to the child process
    command = [SYSTEM_PYTHON, str(sandbox), str(BIN / "xmppd"), "serve", "--config",
               str(tryout.dir / "n4.toml"), "--data-dir", str(tryout.dir / "n4")]  # fmt: skip
    n4_proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        n4 = tryout.node("n4")
        n4.proc = n4_proc
        n4.wait_ready()
        deadline = time.monotonic() + 20
        while alive_nodes(tryout) != {"n1", "n2", "n3", "n4"}:
            assert time.monotonic() < deadline, tryout.ctl("nodes")
            time.sleep(0.2)

        async def scenario():
            alice = await online(n4, "alice", "sandboxed")
            carol = await online(tryout.node("n2"), "carol", "plain")
            alice.send_message(mto="carol@localhost/plain", mbody="from the sandbox",
                               mtype="chat")  # fmt: skip
            await carol.inbox.expect(message("from the sandbox"))
            carol.send_message(mto="alice@localhost/sandboxed", mbody="into the sandbox",
                               mtype="chat")  # fmt: skip
            await alice.inbox.expect(message("into the sandbox"))
            await close_all(alice, carol)

        run(scenario())
        n4_proc.send_signal(signal.SIGHUP)  # ExecReload
        deadline = time.monotonic() + 10
        while "certificates reloaded" not in n4.log():
            assert time.monotonic() < deadline, n4.log()
            time.sleep(0.1)
        # systemctl stop: SIGTERM, exit 0, and the others see it gone at once (it left).
        n4_proc.send_signal(signal.SIGTERM)
        assert n4_proc.wait(20) == 0, n4.log()
        assert alive_nodes(tryout) == {"n1", "n2", "n3"}
        assert not n4.unexpected_tracebacks(), n4.log()
    finally:
        if n4_proc.poll() is None:
            n4_proc.kill()
            n4_proc.wait()
        log.close()
    tryout.run("stop")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_says_what_the_deployment_needs():
    service = unit()["Service"]
    assert service["ExecStart"] == ("/opt/xmppd/.venv/bin/xmppd serve --config /etc/xmppd/%i.toml "
                                    "--data-dir /var/lib/xmppd/%i")  # fmt: skip
    expected = {
        "User": "xmppd",
        "StateDirectory": "xmppd/%i",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "LimitNOFILE": "65536",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallFilter": "@system-service",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze(tmp_path):
    """`verify` with the xmppd of this venv in ExecStart (it checks that the program exists),
    and `security`'s exposure at most 2.0 of 10 (it is 1.8)."""
    instance = tmp_path / "xmppd@n1.service"
    instance.write_text(UNIT.read_text().replace("/opt/xmppd/.venv/bin/xmppd", str(BIN / "xmppd")))
    verify = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stderr
    command = ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(instance)]
    security = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert security.returncode == 0, security.stdout[-2000:]
