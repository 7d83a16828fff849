"""One TCP connection (STARTTLS or direct TLS), the first implementation of actors/transport.py:
TLS as an SSLObject over MemoryBIOs, the stream parser, shaping, batched writes. It turns bytes
into FSM events for its actor and writes what the actor sends."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from pykka import ActorDeadError

from fsm.core import ConnectionLost, TLSEstablished
from xmpp.stream import STREAM_CLOSE, StreamBroken, StreamParser, stream_header

log = logging.getLogger("xmppd.c2s")

READ_CHUNK = 16384
HANDSHAKE_GRACE = 10.0  # how long a close waits for a direct-TLS handshake to finish
CLOSE_GRACE = 10.0  # how long a close waits for the client to read what is still queued
LINGER = 1.0  # how long a closed connection still reads (and drops) what the client sends


class Connection(asyncio.Protocol):
    """Bytes in and out for one connection; no XMPP decisions are taken here."""

    __slots__ = (
        "conn_id", "peer", "transport", "actor", "tls_context", "certs", "direct_tls",
        "max_stanza_bytes", "rate", "tokens", "last_refill", "last_input", "parser", "_ssl",
        "_in", "_out", "_handshaking", "_pending", "_flush_scheduled", "_closing", "paused",
        "_on_close", "_loop", "tls_version", "_close_after_handshake", "burst", "_held",
        "max_send_bytes", "trace",
    )  # fmt: skip

    def __init__(
        self,
        conn_id: str,
        tls_context: Callable[[], Any] | None,
        direct_tls: bool,
        max_stanza_bytes: int,
        bytes_per_second: int,
        burst_bytes: int,
        max_send_bytes: int,
        on_made: Callable[[Connection], Any],
        on_close: Callable[[Connection], None],
    ) -> None:
        self.conn_id = conn_id
        self.tls_context = tls_context
        self.direct_tls = direct_tls
        self.max_stanza_bytes = max_stanza_bytes
        self.rate = bytes_per_second
        self.burst = max(burst_bytes, 1)
        self.max_send_bytes = max_send_bytes
        self.tokens = float(self.burst)
        self._held = b""
        self.last_refill = time.monotonic()
        self.last_input = time.monotonic()
        self.parser = StreamParser(max_stanza_bytes)
        self.transport: asyncio.Transport | None = None
        self.actor: Any = on_made  # replaced by the actor ref in connection_made
        self._on_close = on_close
        self._ssl: ssl.SSLObject | None = None
        self._in: ssl.MemoryBIO | None = None
        self._out: ssl.MemoryBIO | None = None
        self._handshaking = False
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._closing = False
        self._close_after_handshake = False
        self.paused = False
        self.peer = ""
        self.certs: Any = None  # xmppd.certs.TLSCertificates, taken when TLS starts
        self.tls_version: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.trace: Any = None  # the session's actors.trace.Tracer while it is traced

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        make_actor = self.actor
        self.actor = make_actor(self)
        if self.actor is None:  # refused: the node is out of room
            self._closing = True
            transport.abort()
            return
        if self.direct_tls:
            self.start_tls()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_input = time.monotonic()
        if self._ssl is None:
            self._admit(data)
            return
        self._in.write(data)
        if self._handshaking and not self._handshake():
            return
        self._read_tls()

    def eof_received(self) -> bool:
        return False  # close our side too; the actor hears ConnectionLost

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.actor is not None:
            try:
                self.actor.tell(ConnectionLost(str(exc) if exc else ""))
            except ActorDeadError:
                pass  # the actor ended first (it closed us)
        self._on_close(self)

    # --- input -------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        if self.trace is not None:
            self.trace.input(data)
        tell = self.actor.tell
        try:
            for event in self.parser.feed(data):
                tell(event)
                if isinstance(event, StreamBroken):
                    self.transport.pause_reading()
                    return
        except ActorDeadError:
            self.abort()  # input for a session that has ended

    def _read_tls(self) -> None:
        chunks = []
        try:
            while True:
                chunk = self._ssl.read(READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            log.info("[%s] TLS error: %s", self.conn_id, exc)
            self.abort()
            return
        self._flush_tls()
        if chunks:
            self._admit(b"".join(chunks))

    def _admit(self, data: bytes) -> None:
        """A token bucket of `rate` bytes/s holding up to `burst`: the parser gets what the
        bucket covers; the rest waits, with reading paused, as ejabberd's shapers do, so a
        flooding client slows itself down and nobody else."""
        if self._held:
            self._held += data
            return
        self._refill()
        if len(data) <= self.tokens:
            self.tokens -= len(data)
            self._parse(data)
            return
        allowed = max(int(self.tokens), 0)
        self.tokens -= allowed
        self._held = data[allowed:]
        if self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        if allowed:
            self._parse(data[:allowed])
        self._wait_for_tokens()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last_refill) * self.rate)
        self.last_refill = now

    def _wait_for_tokens(self) -> None:
        wanted = min(len(self._held), self.burst) - self.tokens
        self._loop.call_later(max(wanted / self.rate, 0.01), self._release)

    def _release(self) -> None:
        if self._closing:
            return
        self._refill()
        allowed = min(len(self._held), max(int(self.tokens), 0))
        chunk, self._held = self._held[:allowed], self._held[allowed:]
        self.tokens -= allowed
        if chunk:
            self._parse(chunk)
        if self._held:
            self._wait_for_tokens()
        elif not self._closing and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def restart(self) -> None:
        self.parser = StreamParser(self.max_stanza_bytes)

    # --- TLS ---------------------------------------------------------------------------------

    def start_tls(self) -> None:
        """Begin the server side of the handshake; bytes already written go out first."""
        self._flush()
        self.certs = self.tls_context()
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = self.certs.default.wrap_bio(self._in, self._out, server_side=True)
        self._handshaking = True
        self.parser = StreamParser(self.max_stanza_bytes)

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return False
        except (ssl.SSLError, OSError) as exc:
            log.info("[%s] TLS handshake failed: %s", self.conn_id, exc)
            self._flush_tls()
            self.abort()
            return False
        self._handshaking = False
        self.tls_version = self._ssl.version()
        self._flush_tls()
        if self._close_after_handshake:
            self.close()  # what was written during the handshake goes out now
            return False
        self.actor.tell(TLSEstablished(self.tls_version, self.channel_bindings()))
        if self._pending:
            self._schedule_flush()
        return True

    def channel_bindings(self) -> dict[str, bytes]:
        # After SNI the object's context is the chosen host's: bind to the certificate shown.
        bindings = {"tls-server-end-point": self.certs.digest(self._ssl.context)}
        if self.tls_version != "TLSv1.3":  # RFC 9266: tls-unique is undefined on TLS 1.3
            unique = self._ssl.get_channel_binding("tls-unique")
            if unique:
                bindings["tls-unique"] = unique
        return bindings

    def _flush_tls(self) -> None:
        data = self._out.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- output ------------------------------------------------------------------------------

    def send_header(self, attrs: dict[str, str]) -> None:
        self.write(stream_header(attrs))

    def send_close(self) -> None:
        self.write(STREAM_CLOSE)

    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one write."""
        if self._closing:
            return
        if self.trace is not None:
            self.trace.output(data)
        self._pending.append(data)
        self._schedule_flush()

    send = write  # the transport interface's name for it (no extra call per stanza)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self.transport is None or self.transport.is_closing():
            return
        if self._ssl is not None and self._handshaking:
            return  # sent once the handshake completes
        data = b"".join(self._pending)
        self._pending.clear()
        if self._ssl is None:
            self.transport.write(data)
            self._check_backlog()
            return
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            log.info("[%s] TLS write failed: %s", self.conn_id, exc)
            self.abort()
            return
        self._flush_tls()
        self._check_backlog()

    def _check_backlog(self) -> None:
        """A client that stops reading must not make the node hold its output without bound."""
        backlog = self.transport.get_write_buffer_size()
        if backlog > self.max_send_bytes:
            log.info(
                "[%s] client does not read: %d bytes waiting, dropping it", self.conn_id, backlog
            )
            self.abort()

    def close(self) -> None:
        """Flush what is queued, then close the socket. During a TLS handshake (a direct-TLS
        client refused at once, e.g. over the connection limit) the close waits for it, so the
        client can read its stream error, but no longer than HANDSHAKE_GRACE."""
        if self.transport is None or self._closing:
            return
        if self._ssl is not None and self._handshaking:
            if not self._close_after_handshake:
                self._close_after_handshake = True
                self._loop.call_later(HANDSHAKE_GRACE, self._handshake_overdue)
            return
        self._flush()
        self._closing = True
        if self._ssl is not None and not self._handshaking:
            try:
                self._ssl.unwrap()
            except (ssl.SSLError, ssl.SSLWantReadError):
                pass
            self._flush_tls()
        if self.transport.can_write_eof():
            # Half-close and read on, discarding, for a moment: closing with unread input
            # (a flood cut short by a stream error) makes the kernel reset the connection,
            # and the client may lose the stream error it has not read yet.
            try:
                self.transport.write_eof()
            except OSError:  # the client is gone already (reset): nothing left to tell it
                self.transport.abort()
                return
            self.transport.resume_reading()
            self._loop.call_later(LINGER, self.transport.close)
            self._on_close(self)  # a lingering socket is no session and no address's slot
        else:
            self.transport.close()
        if self.transport.get_write_buffer_size():
            # asyncio closes once the buffer is written: a client that stopped reading would
            # hold the socket (and its row in `xmppctl sessions`) for ever.
            self._loop.call_later(CLOSE_GRACE, self.transport.abort)

    def _handshake_overdue(self) -> None:
        if self._handshaking and not self._closing:
            self.abort()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()
