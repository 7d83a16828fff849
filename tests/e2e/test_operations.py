"""Running a node as an operator does: signals, start-up refusals, sessions seen and kicked
through xmppctl, a crashed session, silent clients dropped."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.support.server import Server, make_server
from tests.support.xmpp_client import login
from xmppd.certs import ensure_self_signed

HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams'>"
)
SESSION_KEYS = {"id", "stream_id", "jid", "state", "state_since", "peer", "tls", "sasl", "idle_s"}


# --- a raw client: just enough XMPP by hand to park or silence a connection ------------------


class Raw:
    """A blocking socket speaking XMPP by hand; it only reads when told to."""

    def __init__(self, server: Server, *, direct: bool = False) -> None:
        port = server.direct_port if direct else server.starttls_port
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=10
        )
        if direct:
            self.sock = _no_verify().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed while waiting for {marker!r}: {self.buffer!r}")
            self.buffer += chunk
        got, _, self.buffer = self.buffer.partition(marker)
        return got + marker

    def open_stream(self) -> None:
        self.send(HEADER)
        self.read_until(b"</stream:features>")

    def login(self, user: str, password: str, resource: str) -> None:
        """STARTTLS, SASL PLAIN, bind, initial presence: a session, by hand."""
        self.open_stream()
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed")
        self.read_until(b"/>")
        self.sock = _no_verify().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""
        self.open_stream()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        self.read_until(b"<success")
        self.buffer = b""
        self.open_stream()
        self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        self.read_until(b"</bind>")  # the server may write the iq with a prefix
        self.send("<presence/>")

    def closed_by_server(self, timeout: float) -> bool:
        """Read (and drop) everything until the server closes the socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not chunk:
                return True
            self.buffer += chunk
        return False

    def close(self) -> None:
        self.sock.close()


def _no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- helpers ---------------------------------------------------------------------------------


def sessions(server: Server, **filters) -> list[dict]:
    return json.loads(server.ctl("sessions", "--json", *_flags(filters)).stdout)


def _flags(filters: dict) -> list[str]:
    return [part for key, value in filters.items() for part in (f"--{key}", value)]


def session_ids(server: Server) -> set[str]:
    return {row["id"] for row in server.admin("sessions")["result"]}


async def eventually(predicate, timeout: float = 10, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(step)


def wait_for(predicate, timeout: float = 10, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def row_of(server: Server, jid: str) -> dict | None:
    rows = server.admin("sessions")["result"]
    return next((r for r in rows if r["jid"] == jid), None)


def serve(config: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`xmppd serve` expected to refuse: its exit status and what it said."""
    return subprocess.run(
        [sys.executable, "-m", "xmppd.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused start; logging before it is allowed, a traceback not."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("xmppd: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def der_certificate(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with _no_verify().wrap_socket(sock, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


# --- signals -------------------------------------------------------------------------------


def test_sigterm_tells_every_client_system_shutdown_and_exits_0(fresh_server, run):
    fresh_server.start()

    async def scenario():
        alice = await login(fresh_server, "alice", resource="desk")
        bob = await login(fresh_server, "bob", resource="desk", direct=True)
        parked = Raw(fresh_server)
        parked.open_stream()  # not logged in yet: told all the same
        started = time.monotonic()
        fresh_server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(alice.gone, bob.gone), 10)
        assert alice.stream_errors == ["system-shutdown"]
        assert bob.stream_errors == ["system-shutdown"]
        assert await asyncio.to_thread(parked.closed_by_server, 10)
        assert b"<system-shutdown" in parked.buffer
        code = await asyncio.to_thread(fresh_server.proc.wait, 10)
        assert code == 0, fresh_server.log()
        assert time.monotonic() - started < 10

    run(scenario())


def test_sighup_reloads_a_changed_certificate(fresh_server, run):
    cert, key = fresh_server.cert_path, fresh_server.cert_path.with_suffix(".key")
    ensure_self_signed(cert, key, ["localhost"])
    text = fresh_server.config_path.read_text()
    fresh_server.config_path.write_text(
        text.replace(
            "[hosts.localhost]\n", f'[hosts.localhost]\ncertificate = "{cert}"\nkey = "{key}"\n'
        )
    )
    fresh_server.start()
    before = der_certificate(fresh_server.direct_port)
    assert before == ssl.PEM_cert_to_DER_cert(cert.read_text())

    async def scenario():
        old_alice = await login(fresh_server, "alice", resource="before", direct=True)

        spare = cert.parent / "new"
        ensure_self_signed(spare / "localhost.crt", spare / "localhost.key", ["localhost"])
        shutil.copy(spare / "localhost.key", key)
        shutil.copy(spare / "localhost.crt", cert)
        fresh_server.proc.send_signal(signal.SIGHUP)
        after = ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert after != before
        shown = await eventually(
            lambda: der_certificate(fresh_server.direct_port) == after, timeout=10
        )
        assert shown, "a new connection still sees the old certificate after SIGHUP"

        # The new certificate verifies (login trusts the file now on disk), over both ports,
        # and the connection made before the reload still carries messages.
        bob = await login(fresh_server, "bob", resource="after")
        carol = await login(fresh_server, "carol", resource="after", direct=True)
        old_alice.send_message(mto="bob@localhost/after", mbody="still here", mtype="chat")
        assert (await bob.next_message())["body"] == "still here"
        bob.send_message(mto="alice@localhost/before", mbody="so I see", mtype="chat")
        assert (await old_alice.next_message())["body"] == "so I see"
        assert await old_alice.plugin["xep_0199"].ping("localhost", timeout=5) is not None
        for client in (old_alice, bob, carol):
            await client.close()

    run(scenario())
    assert fresh_server.proc.poll() is None, fresh_server.log()


def test_sighup_with_a_broken_certificate_keeps_the_old_one(fresh_server, run):
    cert, key = fresh_server.cert_path, fresh_server.cert_path.with_suffix(".key")
    ensure_self_signed(cert, key, ["localhost"])
    fresh_server.start()
    before = der_certificate(fresh_server.direct_port)
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    fresh_server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "certificates not reloaded" in fresh_server.log(), timeout=10), (
        fresh_server.log()
    )
    assert fresh_server.proc.poll() is None, "a bad certificate must not stop the server"
    assert der_certificate(fresh_server.direct_port) == before

    async def scenario():
        alice = await login(fresh_server, "alice", resource="still", direct=True)
        await alice.close()

    cert.write_bytes(ssl.DER_cert_to_PEM_cert(before).encode())  # what login() trusts
    run(scenario())


# --- start-up refusals -----------------------------------------------------------------------


def test_refuses_to_start_on_a_port_already_taken(tmp_path):
    node = make_server(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", node.direct_port))
    squatter.listen()
    with squatter:
        line = refusal(serve(node.config_path))
    assert f"127.0.0.1:{node.direct_port}" in line
    assert str(node.starttls_port) not in line, "only the port at fault is named"
    assert "address already in use" in line


def test_refuses_an_unknown_config_key_naming_it(tmp_path):
    node = make_server(tmp_path, limits="idle_timout = 30")
    line = refusal(serve(node.config_path))
    assert "limits.idle_timout" in line
    assert "unknown key" in line


def test_refuses_a_bad_value_naming_its_key(tmp_path):
    node = make_server(tmp_path, limits="idle_timeout = -5")
    line = refusal(serve(node.config_path))
    assert "limits.idle_timeout" in line


def test_refuses_a_second_server_on_the_same_data_directory(fresh_server, tmp_path):
    fresh_server.start()
    other = make_server(tmp_path / "second")
    config = other.config_path.read_text().replace(str(other.data_dir), str(fresh_server.data_dir))
    other.config_path.write_text(config)
    line = refusal(serve(other.config_path))
    assert str(fresh_server.admin_socket) in line
    assert "another xmppd is running" in line
    assert fresh_server.admin("status")["ok"], "the first server must keep running"


# --- the admin socket ------------------------------------------------------------------------


def test_admin_socket_is_owner_only_in_the_data_directory(server):
    mode = server.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert server.admin_socket.parent == server.data_dir
    assert server.admin_socket.stat().st_uid == os.getuid()


def test_production_xmppd_has_no_crash_command(fresh_server, run):
    """The crash that the supervision tests use is an admin command of the tests' plugin."""
    fresh_server.start(test_plugins=False)

    async def scenario():
        alice = await login(fresh_server, "alice", resource="safe")
        conn_id = row_of(fresh_server, "alice@localhost/safe")["id"]
        answer = fresh_server.admin("crash", id=conn_id)
        assert answer["ok"] is False and "unknown command 'crash'" in answer["error"]
        assert await alice.plugin["xep_0199"].ping("localhost", timeout=5) is not None
        await alice.close()

    run(scenario())


# --- sessions, session, kick -----------------------------------------------------------------


def test_sessions_lists_a_parked_stream_and_an_established_session(server, run):
    async def scenario():
        parked = Raw(server)
        parked.open_stream()
        alice = await login(server, "alice", resource="listed")
        alice.send_presence()
        full = "alice@localhost/listed"
        assert await eventually(
            lambda: (row_of(server, full) or {}).get("state") == "session_established"
        )

        rows = sessions(server)
        host, port = parked.sock.getsockname()
        address = f"{host}:{port}"
        raw_row = next(r for r in rows if r["peer"] == address)
        assert raw_row["state"] == "wait_for_feature_request"
        assert raw_row["jid"] is None
        assert raw_row["tls"] is None
        assert raw_row["sasl"] is None
        assert SESSION_KEYS <= set(raw_row)
        mine = next(r for r in rows if r["jid"] == full)
        assert SESSION_KEYS <= set(mine)
        assert mine["state"] == "session_established"
        assert mine["tls"] in ("TLSv1.2", "TLSv1.3")
        assert mine["sasl"]
        assert mine["stream_id"]
        assert mine["peer"].startswith("127.0.0.1:")
        assert isinstance(mine["idle_s"], int | float) and mine["idle_s"] >= 0
        assert isinstance(mine["state_since"], int | float)

        by_state = sessions(server, state="wait_for_feature_request")
        assert raw_row["id"] in {r["id"] for r in by_state}
        assert all(r["state"] == "wait_for_feature_request" for r in by_state)
        by_user = sessions(server, user="alice@localhost")
        assert mine["id"] in {r["id"] for r in by_user}
        assert all(r["jid"].startswith("alice@localhost/") for r in by_user)
        assert [r["id"] for r in sessions(server, user=full)] == [mine["id"]]

        table = server.ctl("sessions").stdout
        head, *lines = table.splitlines()
        assert "ID" in head and "STATE" in head and "JID" in head
        assert any(
            raw_row["id"] in line and "wait_for_feature_request" in line for line in lines
        ), table
        assert any(
            mine["id"] in line and full in line and "session_established" in line for line in lines
        ), table

        parked.close()
        await alice.close()

    run(scenario())


def test_session_shows_transitions_by_id_and_by_full_jid(server, run):
    async def scenario():
        bob = await login(server, "bob", resource="traced")
        bob.send_presence()
        full = "bob@localhost/traced"
        assert await eventually(
            lambda: (row_of(server, full) or {}).get("state") == "session_established"
        )
        conn_id = row_of(server, full)["id"]
        for ident in (conn_id, full):
            info = json.loads(server.ctl("session", ident, "--json").stdout)
            assert info["id"] == conn_id
            assert info["jid"] == full
            steps = info["transitions"]
            assert steps and all(set(s) == {"n", "from", "event", "to", "at"} for s in steps)
            assert steps[0]["from"] == "wait_for_stream"
            assert steps[-1]["to"] == "session_established"
            assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
            visited = {s["to"] for s in steps}
            assert {"wait_for_feature_request", "wait_for_bind"} <= visited
            # Events say what happened, not which class carried it.
            events = [s["event"] for s in steps]
            assert any(e.startswith("<auth mechanism='SCRAM-SHA-") for e in events), events
            assert "<iq type='set'> bind" in events, events
            assert "<stream:stream to='localhost'>" in events, events
        readable = server.ctl("session", full).stdout
        assert conn_id in readable and "session_established" in readable
        # A reader that leaves early (head) is no error of xmppctl's.
        shell = subprocess.run(
            f"{sys.executable} -m xmppd.ctl --config {server.config_path} session {full} | head -1",
            shell=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shell.returncode == 0 and "Traceback" not in shell.stderr, shell.stderr
        assert shell.stdout.count("\n") == 1
        missing = server.ctl("session", "nobody@localhost/nowhere", check=False)
        assert missing.returncode != 0
        assert len(missing.stderr.strip().splitlines()) == 1
        await bob.close()

    run(scenario())


def test_kick_closes_that_client_with_a_stream_error_only(server, run):
    async def scenario():
        alice = await login(server, "alice", resource="kicked")
        bob = await login(server, "bob", resource="stays")
        carol = await login(server, "carol", resource="stays")
        conn_id = row_of(server, "alice@localhost/kicked")["id"]
        said = server.ctl("kick", conn_id).stdout
        assert conn_id in said
        await asyncio.wait_for(asyncio.shield(alice.gone), 10)
        assert alice.stream_errors == ["policy-violation"]
        assert await eventually(lambda: conn_id not in session_ids(server))

        bob.send_message(mto="carol@localhost/stays", mbody="still on?", mtype="chat")
        assert (await carol.next_message())["body"] == "still on?"

        again = await login(server, "alice", resource="kicked-by-jid")
        said = server.ctl("kick", "alice@localhost/kicked-by-jid").stdout
        await asyncio.wait_for(asyncio.shield(again.gone), 10)
        assert again.stream_errors == ["policy-violation"]
        assert "alice@localhost/kicked-by-jid" not in {r["jid"] for r in sessions(server)}
        assert said.startswith("kicked ")

        for client in (bob, carol):
            await client.close()

    run(scenario())


# --- a crashed session -----------------------------------------------------------------------


def test_crashed_session_is_closed_cleanly_and_others_carry_on(server, run):
    async def scenario():
        victim = await login(server, "alice", resource="crashing")
        bob = await login(server, "bob", resource="chat")
        carol = await login(server, "carol", resource="chat")
        victim.send_presence()
        full = "alice@localhost/crashing"
        conn_id = row_of(server, full)["id"]

        assert server.admin("crash", id=conn_id)["ok"]
        await asyncio.wait_for(asyncio.shield(victim.gone), 10)
        assert victim.stream_errors == ["internal-server-error"]
        assert await eventually(lambda: conn_id not in session_ids(server))
        assert not any(r["jid"] == full for r in sessions(server))

        bob.send_message(mto="carol@localhost/chat", mbody="did you see that?", mtype="chat")
        assert (await carol.next_message())["body"] == "did you see that?"
        carol.send_message(mto="bob@localhost/chat", mbody="see what?", mtype="chat")
        assert (await bob.next_message())["body"] == "see what?"

        # Nothing is lost: what is sent to the crashed session waits offline for alice.
        bob.send_message(mto=full, mbody="are you there?", mtype="chat")
        await asyncio.sleep(0.5)
        assert bob.messages.empty(), "kept for alice, not bounced"
        back = await login(server, "alice", resource="back")
        back.send_presence()
        kept = await back.next_message()
        assert kept["body"] == "are you there?"
        assert kept["delay"]["stamp"] is not None
        for client in (bob, carol, back):
            await client.close()

    run(scenario())


# --- silent clients --------------------------------------------------------------------------

QUICK_TIMEOUTS = "idle_timeout = 2\nping_timeout = 2"


def test_silent_client_is_dropped(tmp_path):
    node = make_server(tmp_path, limits=QUICK_TIMEOUTS)
    node.add_users(alice="alice-secret")
    node.start()
    try:
        silent = Raw(node)
        silent.login("alice", "alice-secret", "silent")
        assert wait_for(lambda: row_of(node, "alice@localhost/silent") is not None)
        # From here on the client neither reads nor writes: the server's ping goes unanswered.
        assert wait_for(lambda: row_of(node, "alice@localhost/silent") is None, timeout=15), (
            node.admin("sessions")
        )
        assert silent.closed_by_server(timeout=5)
        silent.close()
    finally:
        node.stop()


def test_silent_client_is_dropped_even_with_unread_messages_piled_up(tmp_path, run):
    """asyncio only closes a socket once its buffer is written: a client that stopped reading
    must not keep its connection open for ever."""
    node = make_server(
        tmp_path,
        limits=f"{QUICK_TIMEOUTS}\nmax_bytes_per_second = 100000000\nburst_bytes = 100000000",
    )
    node.add_users(alice="alice-secret", bob="bob-secret")
    node.start()
    try:
        silent = Raw(node)
        silent.login("alice", "alice-secret", "silent")
        silent.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        async def flood():
            bob = await login(node, "bob", resource="flood")
            body = "x" * 100_000
            for i in range(300):
                bob.send_message(mto="alice@localhost/silent", mbody=body, mtype="chat")
                if i % 20 == 0:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1)
            await bob.close()

        run(flood())
        assert wait_for(lambda: node.admin("status")["result"]["connections"] == 0, timeout=30), (
            node.admin("sessions")
        )
        silent.close()
    finally:
        node.stop()


def test_client_that_does_not_read_is_dropped_past_the_send_buffer_limit(tmp_path, run):
    """Idle detection is minutes away here: only the send-buffer cap can drop it, and what is
    sent to it afterwards is kept offline instead of piling up."""
    node = make_server(
        tmp_path,
        limits="max_send_buffer_bytes = 65536\nmax_bytes_per_second = 100000000\n"
        "burst_bytes = 100000000",
    )
    node.add_users(alice="alice-secret", bob="bob-secret")
    node.start()
    try:
        silent = Raw(node)
        silent.login("alice", "alice-secret", "silent")
        silent.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        async def flood():
            bob = await login(node, "bob", resource="flood")
            body = "x" * 50_000
            for i in range(100):
                bob.send_message(mto="alice@localhost/silent", mbody=body, mtype="chat")
                if i % 10 == 0:
                    await asyncio.sleep(0.05)
            assert await eventually(lambda: row_of(node, "alice@localhost/silent") is None)
            bob.send_message(mto="alice@localhost/silent", mbody="after", mtype="chat")
            await asyncio.sleep(0.5)
            # Kept offline for alice's next session rather than written to a dead socket.
            alice = await login(node, "alice", password="alice-secret", resource="again")
            alice.send_presence()
            while (await alice.next_message())["body"] != "after":
                pass
            await alice.close()
            await bob.close()

        run(flood())
        assert "client does not read" in node.log()
        silent.close()
    finally:
        node.stop()


def test_client_that_answers_pings_is_kept(tmp_path, run):
    node = make_server(tmp_path, limits=QUICK_TIMEOUTS)
    node.add_users(alice="alice-secret")
    node.start()

    async def scenario():
        alice = await login(node, "alice", resource="awake")
        alice.send_presence()
        await asyncio.sleep(10)  # several idle periods, each with a ping answered
        assert not alice.gone.done(), alice.stream_errors
        row = row_of(node, "alice@localhost/awake")
        assert row is not None and row["state"] == "session_established"
        await alice.close()

    try:
        run(scenario())
    finally:
        node.stop()
