"""The transport interface: all a host knows of its connection. TCP with STARTTLS and direct TLS
(actors/connection.py) implement it; BOSH, WebSocket and sessions carried by a connection
manager will, and a replay world has one in memory."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    peer: str  # "address:port" of the other end
    tls_version: str | None  # e.g. "TLSv1.3" once TLS is up
    last_input: float  # time.monotonic() of the last bytes received

    def send_header(self, attrs: dict[str, str]) -> None:
        """Our stream header with these attributes (TCP writes the XML declaration and
        <stream:stream>; WebSocket will write <open/>, BOSH the session's <body/>)."""

    def send(self, data: bytes) -> None:
        """One serialized top-level element."""

    def send_close(self) -> None:
        """Our end of the stream (</stream:stream> on TCP)."""

    def start_tls(self) -> None:
        """Begin the server-side handshake after what was sent; TLSEstablished follows."""

    def restart(self) -> None:
        """The next bytes begin a new stream: a fresh parser (after SASL success)."""

    def close(self) -> None:
        """Flush what was sent, then close."""

    def abort(self) -> None:
        """Close at once, dropping what is unsent."""

    def channel_bindings(self) -> dict[str, bytes]:
        """RFC 5929/9266 channel-binding data by type, once TLS is up."""
