"""A minimal XMPP client for load generation: raw asyncio sockets, TLS as an SSLObject over
MemoryBIOs, regular expressions instead of an XML parser. It speaks exactly what the scenarios
need (STARTTLS, SASL PLAIN and SCRAM-SHA-1, bind, presence, messages, ping answers) and nothing
else; it is not a conforming client and never should be used as one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import ssl
import time
from collections.abc import Callable

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"

FEATURES_END = re.compile(rb"</stream:features>|<stream:features[^>]*/>")
PROCEED = re.compile(rb"<proceed[^>]*/>|<proceed[^>]*>\s*</proceed>|<failure[^>]*/>")
SASL_ANSWER = re.compile(
    rb"<challenge[^>]*>([^<]*)</challenge>|<challenge[^>]*/>"
    rb"|<success[^>]*>([^<]*)</success>|<success[^>]*/>|</failure>|<failure[^>]*/>"
)
STREAM_END = re.compile(rb"</stream:stream>|</stream:error>")
PING_GET = re.compile(rb"<iq\b([^>]*)>\s*<ping xmlns=['\"]urn:xmpp:ping['\"]\s*/>\s*</iq>", re.S)
ATTR_ID = re.compile(rb"\bid=['\"]([^'\"]+)['\"]")
ATTR_FROM = re.compile(rb"\bfrom=['\"]([^'\"]+)['\"]")

# SCRAM's SaltedPassword, and so its ClientKey and StoredKey, depend only on (password, salt,
# iterations): real clients keep them, and so does the generator, so that its PBKDF2 and two of
# its HMACs run once per account, not once per login. What is left per login is the signature
# over the exchange (one HMAC) and the proof: the figure measures the server, not the client.
_KEYS: dict[tuple[bytes, bytes, int], tuple[int, bytes]] = {}


def client_tls_context() -> ssl.SSLContext:
    """The servers use self-signed certificates made for the run: no verification (the
    benchmark measures the servers' cost of TLS, not a client's trust decisions)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class XMPPError(Exception):
    pass


def header(domain: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    ).encode()


class Conn(asyncio.Protocol):
    """One client connection. `expect(regex)` waits for the pattern in the (decrypted) input;
    once logged in, `on_input` (if set) gets every decrypted chunk instead."""

    def __init__(self, context: ssl.SSLContext, domain: str) -> None:
        self.context = context
        self.domain = domain
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pos = 0
        self._want: re.Pattern[bytes] | None = None
        self._waiter: asyncio.Future | None = None
        self._ssl: ssl.SSLObject | None = None
        self._in: ssl.MemoryBIO | None = None
        self._out: ssl.MemoryBIO | None = None
        self._handshake: asyncio.Future | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.on_input: Callable[[bytes], None] | None = None
        self.closed = False
        self.jid = ""

    # --- asyncio -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.disarm()
        self._fail(XMPPError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self._ssl is None:
            self._plain(data)
            return
        self._in.write(data)
        if self._handshake is not None and not self._handshake.done():
            self._do_handshake()
            if not self._handshake.done():
                return
        chunks = []
        read = self._ssl.read
        try:
            while True:
                chunk = read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._fail(XMPPError(f"TLS: {exc}"))
            self.abort()
            return
        if self._out.pending:
            self.transport.write(self._out.read())
        if chunks:
            self._plain(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    # --- input -------------------------------------------------------------------------------

    def _plain(self, data: bytes) -> None:
        if self.on_input is not None:
            self.on_input(data)
            return
        self.buf += data
        self._check()

    def _check(self) -> None:
        if self._want is None or self._waiter is None or self._waiter.done():
            return
        match = self._want.search(self.buf, self.pos)
        if match is not None:
            self.pos = match.end()
            self._want = None
            self._waiter.set_result(match)
        elif STREAM_END.search(self.buf, self.pos):
            self._fail(XMPPError(f"stream ended: {self.buf[self.pos :][:400]!r}"))

    def _fail(self, exc: Exception) -> None:
        for fut in (self._waiter, self._handshake):
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    async def expect(self, pattern: re.Pattern[bytes]) -> re.Match:
        """The next match of `pattern`; the deadline set by `arm` bounds the wait."""
        if self.closed:
            raise XMPPError("connection closed")
        self._want = pattern
        self._waiter = asyncio.get_running_loop().create_future()
        self._check()
        return await self._waiter

    # One timer per login rather than asyncio.wait_for around every step: wait_for costs the
    # generator a task wrapper and a timer per exchange, CPU the server would not be measured on.

    def arm(self, timeout: float) -> None:
        """Fail whatever is awaited (and drop the connection) if `disarm` is not called in time."""
        self.disarm()
        self._deadline = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        self._fail(TimeoutError("no answer in time"))
        self.abort()

    # --- output ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self._ssl is None:
            self.transport.write(data)
            return
        self._ssl.write(data)
        self.transport.write(self._out.read())

    # --- TLS ---------------------------------------------------------------------------------

    async def start_tls(self) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = self.context.wrap_bio(self._in, self._out, server_hostname=self.domain)
        self._handshake = asyncio.get_running_loop().create_future()
        self.buf, self.pos = b"", 0
        self._do_handshake()
        await self._handshake

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            if self._out.pending:
                self.transport.write(self._out.read())
            self._fail(XMPPError(f"TLS handshake: {exc}"))
            return
        else:
            self._handshake.set_result(True)
        if self._out.pending:
            self.transport.write(self._out.read())

    # --- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            try:
                self.send(b"</stream:stream>")
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


# --- SASL --------------------------------------------------------------------------------------


def _client_keys(password: bytes, salt: bytes, iterations: int) -> tuple[int, bytes]:
    """(ClientKey as an integer, StoredKey) of SCRAM-SHA-1 (RFC 5802 §3), kept per account."""
    key = (password, salt, iterations)
    value = _KEYS.get(key)
    if value is None:
        salted = hashlib.pbkdf2_hmac("sha1", password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha1")
        stored = hashlib.sha1(client_key).digest()
        value = _KEYS[key] = (int.from_bytes(client_key, "big"), stored)
    return value


async def _scram_sha1(conn: Conn, user: str, password: str) -> None:
    nonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={nonce}"
    first = base64.b64encode(("n,," + bare).encode()).decode()
    conn.send(f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-1'>{first}</auth>".encode())
    answer = await conn.expect(SASL_ANSWER)
    if answer.group(1) is None:
        raise XMPPError(f"SCRAM: no challenge: {answer.group(0)!r}")
    server_first = base64.b64decode(answer.group(1))
    fields = dict(part.split(b"=", 1) for part in server_first.split(b","))
    salt, iterations = base64.b64decode(fields[b"s"]), int(fields[b"i"])
    without_proof = b"c=biws,r=" + fields[b"r"]
    client_key, stored = _client_keys(password.encode(), salt, iterations)
    message = bare.encode() + b"," + server_first + b"," + without_proof
    signature = hmac.digest(stored, message, "sha1")
    proof = (client_key ^ int.from_bytes(signature, "big")).to_bytes(20, "big")
    final = without_proof + b",p=" + base64.b64encode(proof)
    conn.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(final).decode()}</response>".encode())
    answer = await conn.expect(SASL_ANSWER)
    if not answer.group(0).startswith(b"<success"):
        raise XMPPError(f"SCRAM failed: {answer.group(0)!r}")


async def _plain(conn: Conn, user: str, password: str) -> None:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    conn.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>".encode())
    answer = await conn.expect(SASL_ANSWER)
    if not answer.group(0).startswith(b"<success"):
        raise XMPPError(f"PLAIN failed: {answer.group(0)!r}")


BIND_RESULT = re.compile(rb"<jid>([^<]+)</jid>")


async def login(
    host: str,
    port: int,
    domain: str,
    user: str,
    password: str,
    mechanism: str = "SCRAM-SHA-1",
    resource: str = "bench",
    context: ssl.SSLContext | None = None,
    local_addr: str | None = None,
    presence: bool = False,
    timeout: float = 60,
) -> Conn:
    """Connect, STARTTLS, authenticate, bind, all within `timeout`; returns the logged-in
    connection."""
    loop = asyncio.get_running_loop()
    context = context or client_tls_context()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: Conn(context, domain),
            host,
            port,
            local_addr=(local_addr, 0) if local_addr else None,
        ),
        timeout,
    )
    try:
        conn.arm(timeout)
        conn.send(header(domain))
        await conn.expect(FEATURES_END)
        conn.send(f"<starttls xmlns='{TLS_NS}'/>".encode())
        answer = await conn.expect(PROCEED)
        if not answer.group(0).startswith(b"<proceed"):
            raise XMPPError("STARTTLS refused")
        await conn.start_tls()
        conn.send(header(domain))
        await conn.expect(FEATURES_END)
        if mechanism == "PLAIN":
            await _plain(conn, user, password)
        else:
            await _scram_sha1(conn, user, password)
        conn.buf, conn.pos = b"", 0
        conn.send(header(domain))
        await conn.expect(FEATURES_END)
        conn.send(
            f"<iq type='set' id='b1'><bind xmlns='{BIND_NS}'><resource>{resource}</resource>"
            "</bind></iq>".encode()
        )
        bound = await conn.expect(BIND_RESULT)
        conn.disarm()
        conn.jid = bound.group(1).decode()
        if presence:
            conn.send(b"<presence/>")
        conn.buf, conn.pos = conn.buf[conn.pos :], 0
    except BaseException:
        conn.disarm()
        conn.abort()
        raise
    return conn


ROSTER_RESULT = re.compile(rb"<iq\b[^>]*\bid=['\"]roster1['\"][^>]*>")
STREAM_CLOSE = re.compile(rb"</stream:stream>")


async def client_session(conn: Conn, timeout: float = 60) -> None:
    """What a client does after bind, then its logout: get the roster, send initial presence
    and wait for its echo from the server (RFC 6121 §4.2.2), end the stream and wait for the
    server's end of stream, then close the socket (abort it on failure)."""
    try:
        conn.arm(timeout)
        conn.send(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        answer = await conn.expect(ROSTER_RESULT)
        if b"type='error'" in answer.group(0) or b'type="error"' in answer.group(0):
            raise XMPPError(f"roster get failed: {answer.group(0)!r}")
        conn.send(b"<presence/>")
        own = re.escape(conn.jid.encode())
        await conn.expect(re.compile(rb"<presence\b[^>]*\bfrom=['\"]" + own + rb"['\"]"))
        conn.send(b"</stream:stream>")
        await conn.expect(STREAM_CLOSE)
    except BaseException:
        conn.disarm()
        conn.abort()
        raise
    conn.disarm()
    conn.closed = True
    conn.transport.close()


def answer_pings(conn: Conn) -> Callable[[bytes], None]:
    """An `on_input` for idle connections: answers XEP-0199 pings (servers ping idle
    clients), ignores everything else, keeps no more than an unfinished stanza."""
    pending = [b""]

    def on_input(data: bytes) -> None:
        text = pending[0] + data
        end = 0
        for match in PING_GET.finditer(text):
            attrs = match.group(1)
            iq_id = ATTR_ID.search(attrs)
            sender = ATTR_FROM.search(attrs)
            if iq_id:
                to = f" to='{sender.group(1).decode()}'" if sender else ""
                conn.send(f"<iq type='result' id='{iq_id.group(1).decode()}'{to}/>".encode())
            end = match.end()
        rest = text[end:]
        pending[0] = rest[-4096:] if b"<" in rest else b""

    return on_input


def now() -> float:
    return time.perf_counter()
