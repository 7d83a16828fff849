"""`xmppctl replay FILE --live HOST:PORT`: play a log's client side over real sockets against a
running server (xmppd or another) and compare what it answers the same way as an in-memory replay.

A live server has its own random values, so the comparison is by meaning with every documented
tolerance. Authentication cannot replay a log's SASL bytes (nonces): each client logs in with
PLAIN instead, with the password from --account, from the log, or "any-password" (for servers in
a test mode where any password logs in), and the log's own SASL steps are skipped."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
from typing import Any

from lxml import etree

from fsm import tracefmt as tf
from xmpp.stream import StreamElement, StreamOpen, StreamParser
from xmppd.replay import compare as cmp
from xmppd.replay.report import ClientReport, Pair, Report
from xmppd.replay.script import Script, UnusableLog

QUIET = 0.3  # seconds of silence that end a read
SASL_STEP = re.compile(r"<(?:\w+:)?(auth|response|abort)\b")


class LiveClient:
    def __init__(self, name: str, address: tuple[str, int], insecure: bool) -> None:
        self.name = name
        self.sock = socket.create_connection(address, timeout=10)
        self.host = address[0]
        self.insecure = insecure
        self.parser = StreamParser()
        self.items: list[cmp.Item] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        if not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def read(self, quiet: float = QUIET, until: str | None = None) -> None:
        """Read until the server has been quiet for `quiet` s, or sent a `until` element."""
        deadline = time.monotonic() + 10
        self.sock.settimeout(quiet)
        while not self.closed and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                return
            for event in self.parser.feed(data):
                self._take(event)
            if until and self.items and self.items[-1].el is not None and \
                    etree.QName(self.items[-1].el).localname == until:  # fmt: skip
                return

    def _take(self, event: Any) -> None:
        if isinstance(event, StreamOpen):
            el = etree.Element(f"{{{cmp.STREAM_NS}}}stream", nsmap={"stream": cmp.STREAM_NS})
            for key in ("from", "to", "id", "version", "lang"):
                if key in event.attrs:
                    name = "{http://www.w3.org/XML/1998/namespace}lang" if key == "lang" else key
                    el.set(name, event.attrs[key])
            self.items.append(cmp.Item("header", el, "<stream:stream>"))
        elif isinstance(event, StreamElement):
            raw = etree.tostring(event.element, encoding="unicode")
            self.items.append(cmp.Item("element", event.element, raw))
        else:
            self.items.append(cmp.Item("close", None, "</stream:stream>"))

    def starttls(self) -> None:
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.parser = StreamParser()

    def restart(self) -> None:
        self.parser = StreamParser()


def replay_live(script: Script, target: str, options: Any, *, insecure: bool) -> Report:
    from xmppd.replay.run import _bind_known_jids, _mapped, pair_up

    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UnusableLog(f"--live wants HOST:PORT, got {target!r}")
    script = _mapped(script, options.domain_map)
    declared = script.header.get("policy") or {}
    mode = script.header.get("compare") or declared.get("match", "xml")
    policy = cmp.Policy("subset" if mode == "subset" else "xml",
                        frozenset(script.header.get("tolerate", cmp.TOLERANCES)))  # fmt: skip
    _bind_known_jids(script, policy)
    report = Report(script.source, script.format, f"{policy.mode} (live {target})",
                    notes=list(script.notes))  # fmt: skip
    clients: dict[str, LiveClient] = {}
    lines: dict[str, _LiveLine] = {}
    skipping: set[str] = set()  # clients inside the log's SASL exchange
    address = (host, int(port))
    try:
        for step in script.steps[: options.until] if options.until else script.steps:
            line = lines.setdefault(step.client, _LiveLine())
            c = clients.get(step.client)
            if step.direction == "connect" or c is None:
                if c is None or c.closed:  # a client connects again: a new connection
                    c = clients[step.client] = LiveClient(step.client, address, insecure)
                    line.attach(c)
                    if step.client in script.implied_login:
                        _implied_login(c, script, step.client, options, report, policy)
                        line.skip = len(c.items)
                if step.direction == "connect":
                    continue
            text = _text(step.xml, script)
            if step.direction == "recv":
                kept = [i for i in cmp.items(text, step.line) if not _sasl_item(i, skipping, step)]
                line.expect(kept, policy, pair_up)
                continue
            if step.direction == "disconnect":
                c.send(b"</stream:stream>")
                c.read(quiet=0.1)
                c.closed = True  # whatever comes next for this client comes after a connect
                continue
            if SASL_STEP.match(text.strip()):
                if text.strip().startswith(("<auth", "<sasl:auth")):
                    _login(c, script, step, options, report)
                    skipping.add(step.client)
                continue
            c.send(_fill(text, policy).encode())
            if "<starttls" in text:
                c.read(until="proceed")
                c.starttls()
            c.read(quiet=0.05)
    except OSError as exc:
        raise UnusableLog(f"cannot talk to {target}: {exc}") from exc
    for name, line in lines.items():
        client = ClientReport(name)
        client.pairs = line.finish(policy)
        report.clients.append(client)
    for c in clients.values():
        c.sock.close()
    return report


class _LiveLine:
    """What one client of the log received over its connections (logins left out), and how
    far the log's expectations have consumed it."""

    def __init__(self) -> None:
        self.sources: list[LiveClient] = []
        self.skip = 0  # items of the current connection that an implied login produced
        self.taken = 0  # items of the current connection already moved to `items`
        self.items: list[cmp.Item] = []
        self.cursor = 0
        self.pairs: list = []

    def attach(self, c: LiveClient) -> None:
        """A new connection: what the previous one left unread is not looked at again."""
        self.take()
        self.cursor = len(self.items)
        self.sources.append(c)
        self.skip = self.taken = 0

    def take(self) -> None:
        if not self.sources:
            return
        c = self.sources[-1]
        start = max(self.skip, self.taken)
        self.items += c.items[start:]
        self.taken = len(c.items)

    def expect(self, wanted: list[cmp.Item], policy: cmp.Policy, pair_up: Any) -> None:
        """Wait (briefly) until what the log expects can be paired, then pair it. Once this
        client has missed something the verdict is made: later receives wait only a moment."""
        missed = any(not p.outcome.ok for p in self.pairs)
        deadline = time.monotonic() + (AFTER_A_MISS if missed else WAIT)
        while True:
            self.take()
            trial = cmp.Policy(policy.mode, policy.tolerate, dict(policy.bindings))
            pairs, _ = pair_up(wanted, self.items, trial, start=self.cursor)
            if all(p.outcome.ok for p in pairs) or time.monotonic() > deadline:
                break
            if self.sources:
                self.sources[-1].read(quiet=0.1)
        pairs, self.cursor = pair_up(wanted, self.items, policy, start=self.cursor)
        self.pairs += pairs

    def finish(self, policy: cmp.Policy) -> list:
        if self.sources:
            self.sources[-1].read(quiet=0.1)
            self.take()
        if policy.mode != "subset":
            for extra in self.items[self.cursor :]:
                self.pairs.append(
                    Pair(None, extra, cmp.Outcome(["xmppd sent this; the log has nothing"]))
                )
        return self.pairs


WAIT = 3.0  # seconds a receive waits for what the log expects
AFTER_A_MISS = 0.3  # the same, once the client has missed something already


def _implied_login(
    c: LiveClient, script: Script, name: str, options: Any, report: Report, policy: cmp.Policy
) -> None:
    """Log a client in that the log shows logged in already (every scansion client): header,
    STARTTLS when offered, PLAIN, restart, bind with the client's resource; its JID
    placeholders take the bound JID."""
    client = script.clients.get(name)
    jid = client.jid if client and client.jid else f"{name.lower()}@{_domain(script, name)}"
    bare, _, resource = jid.partition("/")
    local, _, domain = bare.partition("@")
    header = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              f"xmlns:stream='{cmp.STREAM_NS}' to='{domain}' version='1.0'>").encode()  # fmt: skip
    c.send(header)
    c.read(until="features")
    features = c.items[-1].el if c.items else None
    offered = [] if features is None else [ch for ch in features if isinstance(ch.tag, str)]
    if any(etree.QName(ch).localname == "starttls" for ch in offered):
        c.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.read(until="proceed")
        c.starttls()
        c.send(header)
        c.read(until="features")
    password = options.accounts.get(bare) or (client.password if client else None)
    password = password or "any-password"
    payload = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
    c.send(f"<auth xmlns='{cmp.SASL_NS}' mechanism='PLAIN'>{payload}</auth>".encode())
    c.read(until="success")
    last = c.items[-1].el if c.items else None
    if last is None or etree.QName(last).localname != "success":
        raise UnusableLog(f"{name} could not log in live as {bare} (PLAIN with the log's "
                          "password or --account; a server in a test mode takes any)")  # fmt: skip
    c.restart()
    c.send(header)
    c.read(until="features")
    c.send(f"<iq type='set' id='replay-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           f"<resource>{resource or name}</resource></bind></iq>".encode())  # fmt: skip
    c.read(until="iq")
    bound = c.items[-1].el.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}jid") or jid
    for token, spec in (script.header.get("placeholders") or {}).items():
        if isinstance(spec, dict) and spec.get("client") == name:
            policy.bindings[token] = bound if spec.get("kind") == "full" else bound.split("/")[0]
    note = f"{name}: logged in live with PLAIN as {bound} (the log starts after login)"
    report.notes.append(note)


def _sasl_item(item: cmp.Item, skipping: set[str], step: Any) -> bool:
    """The log's challenges are not expected live; its success ends the skipped exchange."""
    if step.client not in skipping or item.el is None:
        return False
    local = etree.QName(item.el).localname
    if local in ("success", "failure"):
        skipping.discard(step.client)
        return False
    return local == "challenge"


def _login(c: LiveClient, script: Script, step: Any, options: Any, report: Report) -> None:
    client = script.clients.get(step.client)
    user = _user(step.xml, script, step.client)
    jid = client.jid if client and client.jid else user
    if "@" not in jid:
        jid = f"{jid}@{_domain(script, step.client)}"
    password = options.accounts.get(jid.partition("/")[0]) or (client and client.password)
    password = password or _plain_password(step.xml) or "any-password"
    local = jid.partition("@")[0]
    payload = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
    c.send(f"<auth xmlns='{cmp.SASL_NS}' mechanism='PLAIN'>{payload}</auth>".encode())
    c.read(until="success")
    c.restart()
    report.notes.append(f"{step.client}: logged in live with PLAIN as {local} (the log's SASL "
                        "exchange cannot be replayed against another server's nonces)")  # fmt: skip


def _user(xml: str, script: Script, name: str) -> str:
    rec = script.recorded.get(name) or {}
    if rec.get("user"):
        return rec["user"]
    text = re.sub(r"<[^>]*>", "", xml).strip()
    try:
        decoded = base64.b64decode(text).decode()
    except ValueError:
        return name.lower()
    if "\0" in decoded:
        return decoded.split("\0")[1] or name.lower()
    found = re.search(r"n=([^,]+)", decoded)
    return found.group(1) if found else name.lower()


def _domain(script: Script, name: str) -> str:
    for step in script.steps:
        if step.client == name and step.direction == "send":
            found = re.search(
                r"<(?:stream:)?stream\b[^>]*\sto=['\"]([^'\"]+)", _text(step.xml, script)
            )
            if found:
                return found.group(1)
    return "localhost"


def _plain_password(xml: str) -> str | None:
    if "PLAIN" not in xml:
        return None
    try:
        parts = base64.b64decode(re.sub(r"<[^>]*>", "", xml).strip()).decode().split("\0")
    except ValueError:
        return None
    return parts[2] if len(parts) == 3 else None


def _text(xml: str, script: Script) -> str:
    return tf.unescape(xml).decode("utf-8", "replace") if script.format == "xmppd-trace" else xml


def _fill(text: str, policy: cmp.Policy) -> str:
    return cmp.substitute(text, policy.bindings)
