"""Issue 7 acceptance: a live session traced by `xmppd serve --trace` replays byte for byte with
`xmppctl replay`, SCRAM included; a changed machine makes the replay fail with a readable diff;
`xmppctl trace start|stop` traces a running session from a snapshot."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import ROOT, Server, make_server
from tests.support.xmpp_client import login
from xmppd import ctl

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


class TracedServer(Server):
    trace_args: list[str] = []

    def start(self, env=None, wait=True, open_files=None) -> None:
        self.log_path = self.data_dir / "server.log"
        cmd = [sys.executable, "-m", "xmppd.cli", "serve", "--config", str(self.config_path)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            cmd + self.trace_args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=dict(__import__("os").environ),
        )  # fmt: skip
        if wait:
            self.wait_ready()


def traced_server(tmp: Path, *args: str) -> TracedServer:
    server = make_server(tmp)
    server.__class__ = TracedServer
    server.trace_args = list(args)
    server.add_users(**USERS)
    server.start()
    return server


async def conversation(server: Server) -> None:
    """SCRAM-SHA-256 logins, a roster item set, presence both ways, messages both ways."""
    alice = await login(server, "alice", resource="home", mechanism="SCRAM-SHA-256")
    bob = await login(server, "bob", resource="work", mechanism="SCRAM-SHA-256")
    await alice.get_roster()
    await bob.get_roster()
    await alice.update_roster("bob@localhost", name="Bob", groups=["Work"])
    alice.send_presence()
    bob.send_presence()
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await asyncio.sleep(0.3)
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await asyncio.sleep(0.3)
    alice.send_message(mto="bob@localhost/work", mbody="Hello Bob", mtype="chat")
    assert (await bob.next_message())["body"] == "Hello Bob"
    bob.send_message(mto="alice@localhost/home", mbody="Hi Alice", mtype="chat")
    assert (await alice.next_message())["body"] == "Hi Alice"
    await asyncio.sleep(0.2)
    await alice.close()
    await bob.close()


def wait_for_traces(directory: Path, count: int, timeout: float = 10) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(directory.glob("*.trace"))
        texts = [f.read_text() for f in files]
        if len(files) >= count and all(
            " end " in t.rstrip("\n").rsplit("\n", 1)[-1] for t in texts
        ):
            return files
        time.sleep(0.1)
    raise AssertionError(f"traces in {directory} did not end: {list(directory.iterdir())}")


def xmppctl(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "xmppd.ctl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def alice_trace(files: list[Path]) -> Path:
    return next(f for f in files if "alice@localhost/home" in f.read_text())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("traced")
    server = traced_server(tmp, "--trace", str(tmp / "traces"), "--trace-secrets")
    try:
        asyncio.run(asyncio.wait_for(conversation(server), 60))
        return wait_for_traces(tmp / "traces", 2)
    finally:
        server.stop()


def test_a_traced_session_replays_byte_for_byte(recorded):
    trace = alice_trace(recorded)
    text = trace.read_text()
    assert "ev CredentialsLoaded" in text and "random nonce" in text  # SCRAM, with secrets
    assert "<challenge" in text and "<success" in text and "jabber:iq:roster" in text
    for path in recorded:
        result = xmppctl("replay", str(path), "--show", "xml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verdict: MATCH (0 difference(s)" in result.stdout
        assert "!!" not in result.stdout  # every output the same, byte for byte
    states = xmppctl("replay", str(trace), "--show", "states").stdout
    for state in ("wait_for_sasl_response", "wait_for_bind", "session_established", "closed"):
        assert state in states


def test_a_changed_machine_fails_the_replay_with_a_diff(recorded, monkeypatch, capsys):
    from fsm import c2s

    original = c2s.step

    def changed(state, event, data):
        transition = original(state, event, data)
        if state == "session_established" and type(event).__name__ == "Deliver":
            # The patched transition stamps every delivered stanza with a wrong 'to'.
            for action in transition.actions:
                if type(action).__name__ == "Send":
                    action.element.set("to", "mallory@localhost/evil")
        return transition

    monkeypatch.setattr(c2s, "step", changed)
    code = ctl.main(["replay", str(alice_trace(recorded))])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "verdict: MISMATCH" in out
    assert "difference at output" in out and "bytes differ" in out
    assert "mallory@localhost/evil" in out  # the diff shows what changed


def test_a_trace_without_secrets_replays_on_the_recorded_outcome(tmp_path):
    server = traced_server(tmp_path, "--trace", str(tmp_path / "traces"))
    try:
        asyncio.run(asyncio.wait_for(conversation(server), 60))
        files = wait_for_traces(tmp_path / "traces", 2)
    finally:
        server.stop()
    text = alice_trace(files).read_text()
    assert "alice-secret" not in text and "[redacted]" in text
    assert '"salt"' not in text and "stored_key" not in text
    result = xmppctl("replay", str(alice_trace(files)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "authentication runs on the recorded outcome" in result.stdout


def test_trace_start_and_stop_on_a_running_session(tmp_path):
    server = traced_server(tmp_path)
    config = str(server.config_path)

    async def session() -> None:
        alice = await login(server, "alice", resource="desk", mechanism="SCRAM-SHA-256")
        started = await asyncio.to_thread(xmppctl, "--config", config, "trace", "start",
                                          "alice@localhost/desk")  # fmt: skip
        assert started.returncode == 0, started.stderr
        await alice.get_roster()
        alice.send_presence()
        alice.send_message(mto="alice@localhost/desk", mbody="note to self")
        await alice.next_message()
        stopped = await asyncio.to_thread(xmppctl, "--config", config, "trace", "stop",
                                          "alice@localhost/desk")  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        await alice.close()

    try:
        asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        server.stop()
    (trace,) = (server.data_dir / "traces").glob("*.trace")
    text = trace.read_text()
    assert " snapshot session_established " in text or " snapshot wait_for_session " in text
    result = xmppctl("replay", str(trace))
    assert result.returncode == 0, result.stdout + result.stderr


def test_unusable_input_exits_2_without_a_traceback(tmp_path):
    broken = tmp_path / "broken.trace"
    broken.write_text('# xmppd trace 1\n@ {"conn": "x"\n')
    result = xmppctl("replay", str(broken))
    assert result.returncode == 2
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    missing = xmppctl("replay", str(tmp_path / "nothing.trace"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_live_replay_of_a_recorded_trace_against_a_running_server(server):
    trace = ROOT / "tests" / "replays" / "roster_set.1.trace"
    result = xmppctl(
        "replay", str(trace), "--live", f"127.0.0.1:{server.starttls_port}", "--insecure",
        "--account", f"alice@localhost={server.passwords['alice']}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logged in live with PLAIN" in result.stdout
