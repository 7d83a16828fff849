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
from xmppd.replay.report import ClientReport, Report
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
    from xmppd.replay.run import _mapped, pair_up

    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UnusableLog(f"--live wants HOST:PORT, got {target!r}")
    script = _mapped(script, options.domain_map)
    policy = cmp.Policy("subset" if script.header.get("compare") == "subset" else "xml",
                        frozenset(cmp.TOLERANCES))  # fmt: skip
    report = Report(script.source, script.format, f"{policy.mode} (live {target})",
                    notes=list(script.notes))  # fmt: skip
    clients: dict[str, LiveClient] = {}
    expected: dict[str, list[cmp.Item]] = {}
    skipping: set[str] = set()  # clients inside the log's SASL exchange
    try:
        for step in script.steps[: options.until] if options.until else script.steps:
            c = clients.get(step.client)
            if c is None:
                c = clients[step.client] = LiveClient(step.client, (host, int(port)), insecure)
                if step.client in script.implied_login:
                    raise UnusableLog("--live cannot yet log in for logs that start after login",
                                      step.line)  # fmt: skip
            text = _text(step.xml, script)
            if step.direction == "recv":
                kept = [i for i in cmp.items(text, step.line) if not _sasl_item(i, skipping, step)]
                expected.setdefault(step.client, []).extend(kept)
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
            c.read()
    except OSError as exc:
        raise UnusableLog(f"cannot talk to {target}: {exc}") from exc
    for c in clients.values():
        c.read()
    for name, c in clients.items():
        client = ClientReport(name)
        client.pairs = pair_up(expected.get(name, []), c.items, policy)[0]
        report.clients.append(client)
        c.sock.close()
    return report


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
