"""Test-only: record traces of real slixmpp, Profanity and raw-socket sessions against xmppd,
for tests/replays/. Run from the project root:

    .venv/bin/python tests/replays/record.py [--out tests/replays] [SCENARIO ...]

For each scenario it starts a fresh xmppd with `serve --trace DIR --trace-secrets` on free
loopback ports, runs the scenario, and writes each session's trace as <scenario>.<n>.trace with
a header saying what it is, which client played it, and which states the machine went through
(the replay test checks both). Profanity scenarios need Debian's profanity and tmux."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import raw  # noqa: E402
from tests.support.profanity import Profanity  # noqa: E402
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


def scenario(*, limits: str = "", clients: dict[str, str] | None = None):
    """Marks what a scenario needs: `limits` (TOML lines for [limits] of its own server) and
    `clients` (user -> which client played that user, for the header of each trace)."""

    def mark(fn):
        fn.limits = limits
        fn.clients = clients or {}
        return fn

    return mark


def manual(*clients) -> None:
    """slixmpp answers subscription requests by itself by default (False would refuse them):
    these clients leave them to the scenario."""
    for client in clients:
        client.roster.auto_authorize = None
        client.roster.auto_subscribe = False


async def screen(profanity: Profanity, text: str, timeout: float = 20) -> str:
    """Wait for Profanity's screen without blocking the slixmpp clients on this loop."""
    return await asyncio.to_thread(profanity.wait_for, text, timeout)


async def profanity_login(s: Server, user: str = "alice") -> Profanity:
    profanity = Profanity(s.data_dir.parent / f"profanity-{user}")
    await screen(profanity, "Profanity")
    profanity.connect(f"{user}@localhost", s.passwords[user], s.starttls_port)
    await screen(profanity, "logged in successfully")
    return profanity


async def profanity_quit(profanity: Profanity) -> None:
    profanity.type("/quit")
    await asyncio.sleep(1.0)
    profanity.close()


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


# --- Profanity (Debian's package, driven in tmux) ---------------------------------------------

PROFANITY_ALICE = {"alice": "Profanity", "bob": "slixmpp"}


@scenario(clients=PROFANITY_ALICE)
async def profanity_login_chat(s: Server) -> None:
    """Profanity logs in as alice (roster fetch, initial presence, its disco and caps), chats
    with bob on slixmpp and quits"""
    bob = await login(s, "bob", resource="slix")
    await bob.get_roster()
    bob.send_presence()
    profanity = await profanity_login(s)
    await asyncio.sleep(0.5)
    profanity.type("/msg bob@localhost/slix Hello from Profanity")
    got = await bob.next_message(timeout=20)
    assert got["body"] == "Hello from Profanity", got
    bob.send_message(mto=got["from"], mbody="Hello back from slixmpp", mtype="chat")
    await asyncio.to_thread(profanity.find_in_windows, "Hello back from slixmpp")
    await profanity_quit(profanity)
    await asyncio.sleep(0.3)
    await bob.close()


@scenario(clients=PROFANITY_ALICE)
async def profanity_subscription(s: Server) -> None:
    """Profanity (alice) adds bob and asks for his presence; bob (slixmpp) approves and asks
    back; Profanity allows it, sets itself away, then removes bob from its roster"""
    bob = await login(s, "bob", resource="slix")
    manual(bob)
    await bob.get_roster()
    bob.send_presence()
    profanity = await profanity_login(s)
    profanity.type("/roster add bob@localhost Bob")
    await screen(profanity, "Roster item added")
    profanity.type("/sub request bob@localhost")
    await screen(profanity, "Sent subscription request")
    await asyncio.sleep(0.5)
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await asyncio.sleep(0.5)
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    await asyncio.sleep(1.0)
    profanity.type("/sub allow bob@localhost")
    await asyncio.sleep(1.0)
    assert bob.client_roster["alice@localhost"]["subscription"] == "both", bob.client_roster
    profanity.type('/status set away "back soon"')
    await asyncio.sleep(0.5)
    profanity.type("/roster remove bob@localhost")
    await asyncio.sleep(1.0)
    await profanity_quit(profanity)
    await asyncio.sleep(0.3)
    await bob.close()


@scenario(clients={"alice": "Profanity"})
async def profanity_disco_ping(s: Server) -> None:
    """Profanity (alice): disco#info and #items of the server, disco#info of her own account,
    ping, server software version and uptime (last activity)"""
    profanity = await profanity_login(s)
    profanity.type("/disco info localhost")
    await screen(profanity, "Service discovery info for localhost")
    profanity.type("/disco info alice@localhost")
    await screen(profanity, "Service discovery info for alice@localhost")
    profanity.type("/disco items localhost")
    await asyncio.sleep(0.5)
    profanity.type("/ping")
    await screen(profanity, "Ping response from server")
    profanity.type("/serversoftware localhost")
    await screen(profanity, "Version : ")
    profanity.type("/lastactivity get localhost")
    await screen(profanity, "up since")
    await profanity_quit(profanity)


VCARD = (
    "<iq type='set' id='vc1'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN>"
    "<NICKNAME>alice</NICKNAME><URL>https://example.org/alice</URL></vCard></iq>"
)


@scenario(clients={"alice": "Profanity"})
async def profanity_xml_console(s: Server) -> None:
    """Profanity (alice) types stanzas into its XML console: vCard set and get (her own and
    bob's, who has none), and IQs of a namespace nobody serves (server: service-unavailable)"""
    profanity = await profanity_login(s)
    profanity.type("/xmlconsole")
    await asyncio.sleep(0.5)
    stanzas = {
        "vc1": VCARD,
        "vc2": "<iq type='get' id='vc2'><vCard xmlns='vcard-temp'/></iq>",
        "vc3": "<iq type='get' id='vc3' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>",
        "un1": "<iq type='get' id='un1' to='localhost'><query xmlns='urn:example:unknown'/></iq>",
        "un2": "<iq type='set' id='un2'><query xmlns='urn:example:unknown'/></iq>",
    }
    for iq_id, stanza in stanzas.items():
        profanity.type_literally(stanza)
        await screen(profanity, f'id="{iq_id}"')  # the answer (the console shows ours as id='')
    await profanity_quit(profanity)


@scenario(clients={"alice": "Profanity"})
async def profanity_wrong_password(s: Server) -> None:
    """Profanity tries to log in as alice with a wrong password"""
    profanity = Profanity(s.data_dir.parent / "profanity-wrong")
    await screen(profanity, "Profanity")
    profanity.connect("alice@localhost", "not-her-password", s.starttls_port)
    await screen(profanity, "Login failed")
    await profanity_quit(profanity)


@scenario(clients={"bob": "slixmpp", "alice": "Profanity"})
async def profanity_offline_message(s: Server) -> None:
    """bob (slixmpp) writes to alice while she is offline; Profanity logs in as alice and gets
    the stored message with its delay stamp"""
    bob = await login(s, "bob", resource="slix")
    bob.send_message(mto="alice@localhost", mbody="Written while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    await bob.close()
    await asyncio.sleep(0.5)
    profanity = await profanity_login(s)
    await asyncio.to_thread(profanity.find_in_windows, "Written while you were away")
    await profanity_quit(profanity)


# --- slixmpp: roster and presence flows ---------------------------------------------------------


async def pair(s: Server):
    alice = await login(s, "alice", resource="home")
    bob = await login(s, "bob", resource="work")
    manual(alice, bob)
    await alice.get_roster()
    await bob.get_roster()
    alice.send_presence()
    bob.send_presence()
    await asyncio.sleep(0.3)
    return alice, bob


async def handshake(alice, bob) -> None:
    """Subscriptions both ways, one step at a time."""
    for sender, receiver, kind in [
        (alice, bob, "subscribe"), (bob, alice, "subscribed"),
        (bob, alice, "subscribe"), (alice, bob, "subscribed"),
    ]:  # fmt: skip
        sender.send_presence(pto=receiver.boundjid.bare, ptype=kind)
        await asyncio.sleep(0.4)


async def close_all(*clients) -> None:
    for client in clients:
        await asyncio.sleep(0.3)
        await client.close()


@scenario()
async def subscription_handshake(s: Server) -> None:
    """alice and bob (slixmpp) subscribe to each other: subscribe/subscribed both ways, with
    the roster pushes and presence that follow"""
    alice, bob = await pair(s)
    await handshake(alice, bob)
    assert alice.client_roster["bob@localhost"]["subscription"] == "both", (
        alice.client_roster["bob@localhost"],
        bob.client_roster["alice@localhost"],
    )
    await close_all(alice, bob)


@scenario()
async def roster_remove(s: Server) -> None:
    """alice and bob (slixmpp) subscribe both ways, then alice removes bob from her roster
    (the server cancels both subscriptions and tells bob)"""
    alice, bob = await pair(s)
    await handshake(alice, bob)
    await alice.del_roster_item("bob@localhost")
    await asyncio.sleep(0.6)
    assert bob.client_roster["alice@localhost"]["subscription"] == "none"
    await close_all(alice, bob)


@scenario()
async def directed_presence(s: Server) -> None:
    """alice sends directed presence to bob without a subscription; bob answers likewise; when
    alice goes offline bob gets her unavailable presence"""
    alice, bob = await pair(s)
    alice.send_presence(pto="bob@localhost/work", pstatus="just for you")
    await asyncio.sleep(0.4)
    bob.send_presence(pto="alice@localhost/home", pshow="dnd")
    await asyncio.sleep(0.4)
    await close_all(alice, bob)


@scenario()
async def resource_conflict(s: Server) -> None:
    """alice logs in twice with the same resource: the older session ends with a conflict
    stream error"""
    first = await login(s, "alice", resource="phone")
    first.send_presence()
    await asyncio.sleep(0.3)
    second = await login(s, "alice", resource="phone")
    await asyncio.wait_for(asyncio.shield(first.gone), 10)
    assert first.stream_errors == ["conflict"], first.stream_errors
    second.send_presence()
    await asyncio.sleep(0.3)
    await second.close()


# --- raw sockets: stream errors and SASL abort -----------------------------------------------


@scenario(limits="max_stanza_bytes = 10000")
def stanza_too_big(s: Server) -> None:
    """a logged-in client sends a stanza over max_stanza_bytes (10000): policy-violation"""
    with raw.RawClient(s) as c:
        c.login("alice")
        c.send(b"<message to='bob@localhost'><body>" + b"x" * 12_000 + b"</body></message>")
        c.read_until_closed()
        assert c.stream_error() == "policy-violation", c.received


def invalid_namespace(s: Server) -> None:
    """a stream header in the wrong streams namespace: invalid-namespace"""
    with raw.RawClient(s) as c:
        c.send(raw.header(stream_ns="urn:example:streams"))
        c.read_until_closed()
        assert c.stream_error() == "invalid-namespace", c.received


def bad_content_namespace(s: Server) -> None:
    """a client stream whose content namespace is jabber:server: invalid-namespace"""
    with raw.RawClient(s) as c:
        c.send(raw.header(xmlns="jabber:server"))
        c.read_until_closed()
        assert c.stream_error() == "invalid-namespace", c.received


def sasl_abort(s: Server) -> None:
    """SCRAM-SHA-256 started, then <abort/> (failure aborted), then a PLAIN login that works
    and a clean close"""
    first = base64.b64encode(b"n,,n=alice,r=fixedclientnonce0123").decode()
    with raw.RawClient(s) as c:
        c.open_stream()
        c.starttls()
        c.send(f"<auth xmlns='{raw.SASL_NS}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        c.read_until(b"</challenge>")
        c.send(f"<abort xmlns='{raw.SASL_NS}'/>")
        assert b"<aborted/>" in c.read_until(b"</failure>"), c.received
        assert b"<success" in c.auth_plain("alice", s.passwords["alice"])
        c.open_stream()
        c.bind("raw")
        c.send(b"</stream:stream>")
        c.read_until_closed()


SCENARIOS = [
    scram_sha256_login, plain_login, scram_sha1_direct_tls, roster_set, presence_and_messages,
    wrong_password, unknown_user, not_well_formed, restricted_xml, host_unknown,
    stanza_before_auth, unsupported_version, profanity_login_chat, profanity_subscription,
    profanity_disco_ping, profanity_xml_console, profanity_wrong_password,
    profanity_offline_message, subscription_handshake, roster_remove, directed_presence,
    resource_conflict, stanza_too_big, invalid_namespace, bad_content_namespace, sasl_abort,
]  # fmt: skip


def run(scenario, server: Server) -> None:
    if asyncio.iscoroutinefunction(scenario):
        asyncio.run(asyncio.wait_for(scenario(server), 90))
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
    raise AssertionError(f"sessions still running after {timeout}s: {trace_dir}")


def started(path: Path) -> float:
    for line in path.read_text().split("\n", 5):
        if line.startswith("@ "):
            return json.loads(line[2:])["started"]
    return path.stat().st_mtime


def client_of(scenario, user: str | None) -> str:
    clients = getattr(scenario, "clients", {})
    if user in clients:
        return clients[user]
    if len(set(clients.values())) == 1:
        return next(iter(clients.values()))
    return "raw socket" if not asyncio.iscoroutinefunction(scenario) else "slixmpp"


def collect(trace_dir: Path, out: Path, scenario) -> list[Path]:
    """Each session's trace as <scenario>.<n>.trace: Profanity's sessions first (so that
    profanity_*.1.trace is Profanity's), then in the order the sessions started."""
    from xmppd.replay import tracefile

    name = scenario.__name__
    doc = " ".join((scenario.__doc__ or name.replace("_", " ")).split())
    sessions = []
    for path in trace_dir.glob("*.trace"):
        rec = next(iter(tracefile.load([path]).recorded.values()))
        states = [rec["transitions"][0][0]] if rec["transitions"] else []
        for _, _, after in rec["transitions"]:
            if after != states[-1]:
                states.append(after)
        user = rec.get("user") or _sasl_user(path)
        client = client_of(scenario, user)
        sessions.append((client != "Profanity", started(path), path, client, user, states))
    sessions.sort(key=lambda s: s[:2])
    for stale in out.glob(f"{name}.*.trace"):  # an older recording of this scenario
        stale.unlink()
    written = []
    for n, (_, _, path, client, user, states) in enumerate(sessions, 1):
        who = client + (f" as {user}" if user else "")
        lines = path.read_text().split("\n")
        header = [f"# scenario: {name} (session {n} of {len(sessions)}, {who}): {doc}",
                  f"# expect-states: {' -> '.join(states)}", "# compare: exact"]  # fmt: skip
        target = out / f"{name}.{n}.trace"
        target.write_text("\n".join([lines[0], *header, *lines[1:]]))
        path.unlink()
        written.append(target)
    return written


def _sasl_user(path: Path) -> str | None:
    """Who a session that never authenticated tried to be (SCRAM's n=, PLAIN's authcid)."""
    for line in path.read_text().split("\n"):
        found = re.search(r" in <auth\b[^>]*>([A-Za-z0-9+/=]+)</auth>", line)
        if found:
            text = base64.b64decode(found.group(1))
            scram = re.search(rb"n=([^,]+)", text)
            return (scram.group(1) if scram else text.split(b"\0")[1]).decode()
    return None


def record(scenario, out: Path) -> list[Path]:
    """One scenario on a node of its own (so scenarios never see each other's rosters)."""
    tmp = Path(tempfile.mkdtemp(prefix="xmppd-record-"))
    server = make_server(tmp, limits=getattr(scenario, "limits", ""))
    server.__class__ = TracedServer
    server.trace_dir = tmp / "traces"
    server.add_users(**USERS)
    server.start()
    try:
        run(scenario, server)
        settle(server.trace_dir)
        return collect(server.trace_dir, out, scenario)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "replays")
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - {s.__name__ for s in SCENARIOS}
    if unknown:
        parser.error(f"no such scenario: {', '.join(sorted(unknown))}")
    chosen = [s for s in SCENARIOS if not args.scenarios or s.__name__ in args.scenarios]
    for scenario in chosen:
        for path in record(scenario, args.out):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
