"""A raw XMPP client over a real blocking socket, for tests that send what no library would."""

from __future__ import annotations

import base64
import itertools
import re
import socket
import ssl
import time

from lxml import etree

from tests.support.server import Server

STREAM_NS = "http://etherx.jabber.org/streams"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
PING_NS = "urn:xmpp:ping"

FEATURES_END = re.compile(rb"</stream:features>|<stream:features[^>]*/>")
_HEADER = re.compile(rb"\s*(?:<\?xml[^>]*\?>)?\s*<stream:stream[\s>]")
_READ = 65536


def header(
    domain: str | None = "localhost",
    *,
    xmlns: str = "jabber:client",
    stream_ns: str = STREAM_NS,
    version: str = "1.0",
    prolog: str = "<?xml version='1.0'?>",
) -> bytes:
    """A client stream header; every part can be made wrong on purpose."""
    to = f" to='{domain}'" if domain is not None else ""
    return (
        f"{prolog}<stream:stream{to} version='{version}' xmlns='{xmlns}'"
        f" xmlns:stream='{stream_ns}'>"
    ).encode()


class RawClient:
    """One connection: `send` bytes, `read_until` a pattern, look at what came back.

    `received` holds every byte read since the last stream (re)start (our header, STARTTLS or
    SASL success), so `stream_error(client.received)` looks at the current stream only;
    `transcript` holds every byte read on the connection."""

    def __init__(self, server: Server, *, direct: bool = False, timeout: float = 10) -> None:
        self.server = server
        self.timeout = timeout
        port = server.direct_port if direct else server.starttls_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = sock
        self.received = b""
        self.transcript = b""
        self._pos = 0  # where the next read_until starts looking in `received`
        self.eof = False
        self.tls = False
        self._ids = itertools.count(1)
        if direct:
            self._wrap_tls()

    # --- bytes -------------------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Send bytes; a server that already hung up is not an error here (`closed()` tells)."""
        try:
            self.sock.sendall(data.encode() if isinstance(data, str) else data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def dribble(self, data: bytes) -> None:
        """Send one byte at a time, so the server sees the input cut everywhere."""
        for i in range(len(data)):
            self.send(data[i : i + 1])

    def _recv(self, deadline: float) -> bool:
        """Read once; False when the server closed the connection or the deadline passed."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(_READ)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            chunk = b""
        except ssl.SSLError as exc:
            raise AssertionError(f"TLS error after {self.transcript!r}") from exc
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            self.eof = True
            return False
        self.received += chunk
        self.transcript += chunk
        return True

    def read_until(self, pattern: bytes | re.Pattern[bytes], timeout: float | None = None) -> bytes:
        """Read until `pattern` shows up in new input (returns the bytes up to and including
        it) or the server closes the connection (returns what is left). Fails on a timeout."""
        regex = re.compile(re.escape(pattern)) if isinstance(pattern, bytes) else pattern
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            match = regex.search(self.received, self._pos)
            if match is not None:
                start, self._pos = self._pos, match.end()
                return self.received[start : match.end()]
            if not self._recv(deadline):
                if self.eof:
                    start, self._pos = self._pos, len(self.received)
                    return self.received[start:]
                raise AssertionError(
                    f"no {regex.pattern!r} within the time limit; got {self.received!r}"
                )

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything until the server closes the connection (fails if it does not)."""
        if not self.closed(timeout):
            raise AssertionError(f"the server kept the connection open; got {self.received!r}")
        start, self._pos = self._pos, len(self.received)
        return self.received[start:]

    def closed(self, timeout: float | None = None) -> bool:
        """Whether the server closes the connection (within `timeout`, default the client's)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._recv(deadline):
            pass
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what came back ----------------------------------------------------------------------

    def stream_error(self) -> str | None:
        return stream_error(self.received)

    def header_first(self) -> bool:
        return starts_with_header(self.received)

    # --- protocol steps ----------------------------------------------------------------------

    def new_stream(self) -> None:
        """Forget the previous stream's bytes: the server's next ones start a new stream."""
        self.received, self._pos = b"", 0

    def open_stream(self, domain: str | None = None, **header_options) -> bytes:
        """Send a stream header and read the server's, up to its features (or its close)."""
        self.new_stream()
        self.send(header(domain or self.server.domain, **header_options))
        return self.read_until(FEATURES_END)

    def starttls(self, reopen: bool = True) -> bytes:
        """<starttls/>, <proceed/>, the TLS handshake, and (unless not `reopen`) a new stream."""
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        answer = self.read_until(re.compile(rb"<proceed[^>]*/>|<failure[^>]*/>"))
        assert b"<proceed" in answer, f"STARTTLS refused: {self.received!r}"
        self._wrap_tls()
        return self.open_stream() if reopen else b""

    def _wrap_tls(self) -> None:
        context = ssl.create_default_context(cafile=str(self.server.cert_path))
        self.sock = context.wrap_socket(self.sock, server_hostname=self.server.domain)
        self.tls = True
        self.new_stream()

    def auth_plain(self, user: str, password: str) -> bytes:
        """One SASL PLAIN attempt; returns the <success/> or <failure>...</failure> read."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        return self.read_until(re.compile(rb"<success[^>]*?(?:/>|>.*?</success>)|</failure>", re.S))

    def bind(self, resource: str) -> bytes:
        return self.iq(
            "set", f"<bind xmlns='{BIND_NS}'><resource>{resource}</resource></bind>", to=None
        )

    def iq(self, kind: str, payload: str, *, to: str | None = None) -> bytes:
        """Send an IQ and read until its answer (matched by id) or the server's close."""
        iq_id = f"raw{next(self._ids)}"
        address = f" to='{to}'" if to else ""
        self.send(f"<iq type='{kind}' id='{iq_id}'{address}>{payload}</iq>")
        answer = rf"<(\w+:)?iq\b[^>]*\bid=['\"]{iq_id}['\"][^>]*?(?:/>|>.*?</(\w+:)?iq>)"
        return self.read_until(re.compile(answer.encode(), re.S))

    def ping(self, to: str | None = None) -> bytes:
        return self.iq("get", f"<ping xmlns='{PING_NS}'/>", to=to or self.server.domain)

    def authenticate(self, user: str, password: str | None = None) -> None:
        """Up to an authenticated stream: header, STARTTLS (unless direct TLS), PLAIN, restart."""
        if not self.tls:
            self.open_stream()
            self.starttls()
        elif not self.received:
            self.open_stream()
        answer = self.auth_plain(user, password or self.server.passwords[user])
        assert b"<success" in answer, f"{user} could not authenticate: {answer!r}"
        self.open_stream()

    def login(self, user: str, password: str | None = None, resource: str = "raw") -> str:
        """Up to session_established; returns the bound full JID."""
        self.authenticate(user, password)
        bound = self.bind(resource)
        jid = re.search(rb"<jid>([^<]+)</jid>", bound)
        assert jid is not None, f"bind failed: {bound!r}"
        answer = self.iq("set", f"<session xmlns='{SESSION_NS}'/>")
        assert iq_type(answer) == "result", f"session failed: {answer!r}"
        return jid.group(1).decode()


# --- parsing what the server sent ------------------------------------------------------------


def starts_with_header(data: bytes) -> bool:
    """Whether `data` opens with the server's stream header (an XML declaration may come first)."""
    return _HEADER.match(data) is not None


def stream_error(data: bytes) -> str | None:
    """The condition of the <stream:error> in `data` (one stream's bytes), or None."""
    root = _parse(data)
    if root is None:
        return None
    for el in root.iter():
        if _is(el, STREAM_NS, "error", "stream:error"):
            for child in el:
                name = etree.QName(child).localname if isinstance(child.tag, str) else ""
                if name and name != "text":
                    return name
    return None


def stanza_error(data: bytes) -> str | None:
    """The condition of the first stanza error (<error><condition/></error>) in `data`."""
    root = _parse(data)
    if root is None:
        return None
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == "error":
            for child in el:
                if isinstance(child.tag, str) and etree.QName(child).namespace == STANZAS_NS:
                    if etree.QName(child).localname != "text":
                        return etree.QName(child).localname
    return None


def iq_type(data: bytes) -> str | None:
    """The type of the first <iq> in `data`."""
    match = re.search(rb"<(?:\w+:)?iq\b[^>]*\btype=['\"]([a-z]+)['\"]", data)
    return match.group(1).decode() if match else None


def count(data: bytes, name: bytes) -> int:
    """How many elements named `name` (a local name, any prefix) start in `data`."""
    return len(re.findall(rb"<(?:\w+:)?" + re.escape(name) + rb"[\s/>]", data))


def _parse(data: bytes) -> etree._Element | None:
    # The server's stream is an unfinished document; recover mode closes what is still open.
    parser = etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    text = data.strip()
    if not text:
        return None
    if not starts_with_header(text):
        # A bare error with no header around it: give its prefix a declaration to parse.
        text = f"<stream:stream xmlns:stream='{STREAM_NS}'>".encode() + text
    try:
        return etree.fromstring(text, parser)
    except etree.XMLSyntaxError:
        return None


def _is(el: etree._Element, namespace: str, name: str, raw_tag: str) -> bool:
    if not isinstance(el.tag, str):
        return False
    if el.tag == raw_tag:
        return True
    qname = etree.QName(el)
    return qname.namespace == namespace and qname.localname == name
