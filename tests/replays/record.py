"""Test-only: record traces of real slixmpp (and raw socket) sessions against xmppd, for
tests/replays/. Run from the project root:

    .venv/bin/python tests/replays/record.py [--out tests/replays] [SCENARIO ...]

It starts xmppd with `serve --trace DIR --trace-secrets` on free loopback ports, runs each
scenario, and writes each session's trace as <scenario>.<n>.trace with a header saying what it is
and which states the machine went through (the replay test checks both)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import raw  # noqa: E402
from tests.support.server import Server, make_server  # noqa: E402
from tests.support.xmpp_client import connect, login  # noqa: E402

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


class TracedServer(Server):
    trace_dir: Path

    def start(self, env: dict | None = None, wait: bool = True, open_files=None) -> None:
        self.log_path = self.data_dir / "server.log"
        cmd = [sys.executable, "-m", "xmppd.cli", "serve", "--config", str(self.config_path),
               "--trace", str(self.trace_dir), "--trace-secrets"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "ab"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
        if wait:
            self.wait_ready()


# --- scenarios: each one a coroutine (slixmpp) or a function (raw socket) ---------------------


async def scram_sha256_login(s: Server) -> None:
    client = await login(s, "alice", resource="home", mechanism="SCRAM-SHA-256")
    await client.close()


async def plain_login(s: Server) -> None:
    client = await login(s, "alice", resource="plain", mechanism="PLAIN")
    client.send_presence()
    await asyncio.sleep(0.2)
    await client.close()


async def scram_sha1_direct_tls(s: Server) -> None:
    client = await login(s, "bob", resource="direct", mechanism="SCRAM-SHA-1", direct=True)
    await client.close()


async def roster_set(s: Server) -> None:
    client = await login(s, "alice", resource="roster", mechanism="SCRAM-SHA-256")
    await client.get_roster()
    await client.update_roster("carol@localhost", name="Carol", groups=["Friends"])
    await asyncio.sleep(0.2)
    await client.del_roster_item("carol@localhost")
    await asyncio.sleep(0.2)
    await client.close()


async def presence_and_messages(s: Server) -> None:
    alice = await login(s, "alice", resource="home", mechanism="SCRAM-SHA-256")
    bob = await login(s, "bob", resource="work", mechanism="SCRAM-SHA-256")
    await alice.get_roster()
    await bob.get_roster()
    alice.send_presence()
    bob.send_presence()
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await asyncio.sleep(0.3)
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await asyncio.sleep(0.3)
    alice.send_message(mto="bob@localhost/work", mbody="Hello Bob", mtype="chat")
    await bob.next_message()
    bob.send_message(mto="alice@localhost/home", mbody="Hi Alice", mtype="chat")
    await alice.next_message()
    await asyncio.sleep(0.2)
    await alice.close()
    await asyncio.sleep(0.2)
    await bob.close()


async def wrong_password(s: Server) -> None:
    client = await connect(s, "alice", password="not-her-password", mechanism="SCRAM-SHA-256")
    assert not client.started.result()
    await client.close()


async def unknown_user(s: Server) -> None:
    client = await connect(s, "mallory", password="guess", mechanism="SCRAM-SHA-256")
    assert not client.started.result()
    await client.close()


def not_well_formed(s: Server) -> None:
    with raw.RawClient(s) as c:
        c.open_stream()
        c.starttls()
        c.send(b"<message><body>unclosed</message>")
        c.read_until_closed()


def restricted_xml(s: Server) -> None:
    with raw.RawClient(s) as c:
        c.open_stream()
        c.send(b"<!-- a comment -->")
        c.read_until_closed()


def host_unknown(s: Server) -> None:
    with raw.RawClient(s) as c:
        c.send(raw.header("example.net"))
        c.read_until_closed()


def stanza_before_auth(s: Server) -> None:
    with raw.RawClient(s) as c:
        c.open_stream()
        c.starttls()
        c.send(b"<message to='bob@localhost'><body>too early</body></message>")
        c.read_until_closed()


def unsupported_version(s: Server) -> None:
    with raw.RawClient(s) as c:
        c.send(raw.header(version="2.0-beta"))
        c.read_until_closed()


SCENARIOS = [
    scram_sha256_login, plain_login, scram_sha1_direct_tls, roster_set, presence_and_messages,
    wrong_password, unknown_user, not_well_formed, restricted_xml, host_unknown,
    stanza_before_auth, unsupported_version,
]  # fmt: skip


def run(scenario, server: Server) -> None:
    if asyncio.iscoroutinefunction(scenario):
        asyncio.run(asyncio.wait_for(scenario(server), 60))
    else:
        scenario(server)


def settle(trace_dir: Path, timeout: float = 10) -> None:
    """Wait until every trace file has its `end` line (its session is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [f.read_text() for f in trace_dir.glob("*.trace")]
        if all(t.endswith("\n") and " end " in t.rsplit("\n", 2)[-2] for t in texts):
            return
        time.sleep(0.1)


def collect(trace_dir: Path, out: Path, name: str, doc: str) -> list[Path]:
    from xmppd.replay import tracefile

    written = []
    files = sorted(trace_dir.glob("*.trace"), key=lambda p: p.stat().st_mtime)
    for n, path in enumerate(files, 1):
        script = tracefile.load([path])
        rec = next(iter(script.recorded.values()))
        states = [rec["transitions"][0][0]] if rec["transitions"] else []
        for _, _, after in rec["transitions"]:
            if after != states[-1]:
                states.append(after)
        lines = path.read_text().split("\n")
        header = [f"# scenario: {name} (session {n} of {len(files)}): {doc}",
                  f"# expect-states: {' -> '.join(states)}", "# compare: exact"]  # fmt: skip
        target = out / f"{name}.{n}.trace"
        target.write_text("\n".join([lines[0], *header, *lines[1:]]))
        path.unlink()
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "replays")
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenarios or s.__name__ in args.scenarios]
    tmp = Path(tempfile.mkdtemp(prefix="xmppd-record-"))
    server = make_server(tmp)
    server.__class__ = TracedServer
    server.trace_dir = tmp / "traces"
    server.add_users(**USERS)
    server.start()
    try:
        for scenario in chosen:
            run(scenario, server)
            settle(server.trace_dir)
            doc = (scenario.__doc__ or scenario.__name__.replace("_", " ")).strip()
            for path in collect(server.trace_dir, args.out, scenario.__name__, doc):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
