"""A raw XMPP client over a blocking socket, for tests that need every byte of a login in hand:
it opens streams, runs STARTTLS or direct TLS, sends XML as written and reads back whole
top-level elements (lxml), without interpreting anything on its own."""

from __future__ import annotations

import base64
import socket
import ssl
from collections import deque

from lxml import etree

from tests.support.scram_client import ScramClient
from tests.support.server import Server

STREAM = "http://etherx.jabber.org/streams"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL_CB = "urn:xmpp:sasl-cb:0"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
CLIENT = "jabber:client"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class StreamEnded(Exception):
    """The server closed the stream (</stream:stream>) or the socket."""


def tls_context(server: Server, version: str | None = None) -> ssl.SSLContext:
    """A context trusting the node's certificate; version "1.2" or "1.3" pins the protocol."""
    context = ssl.create_default_context(cafile=str(server.cert_path))
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


class Wire:
    """One client connection. `features` holds the <stream:features/> of the current stream."""

    def __init__(
        self,
        server: Server,
        *,
        direct: bool = False,
        tls: str | None = None,
        port: int | None = None,
        timeout: float = 10,
    ) -> None:
        """`tls` pins the TLS version ("1.2", "1.3"); `port` picks another listener."""
        self.server = server
        self.context = tls_context(server, tls)
        port = port or (server.direct_port if direct else server.starttls_port)
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout)
        if direct:
            self._wrap()
        self.features: etree._Element | None = None
        self.header: dict[str, str] = {}
        self._new_parser()

    # --- bytes and elements ----------------------------------------------------------------

    def _wrap(self) -> None:
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.server.domain)

    def _new_parser(self) -> None:
        self._parser = etree.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._ready: deque = deque()
        self._ended = False

    def send(self, xml: str | bytes) -> None:
        self.sock.sendall(xml.encode() if isinstance(xml, str) else xml)

    def _fill(self) -> None:
        while not self._ready:
            if self._ended:
                raise StreamEnded("the stream is over")
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError) as exc:
                raise StreamEnded(str(exc)) from exc
            if not data:
                self._ended = True
                raise StreamEnded("the server closed the socket")
            self._parser.feed(data)
            for kind, el in self._parser.read_events():
                if kind == "start":
                    self._depth += 1
                    if self._depth == 1:
                        self._ready.append(("header", el))
                else:
                    self._depth -= 1
                    if self._depth == 1:
                        self._ready.append(("element", el))
                    elif self._depth == 0:
                        self._ready.append(("close", el))

    def next(self) -> etree._Element:
        """The next top-level element; raises StreamEnded at </stream:stream> or EOF."""
        self._fill()
        kind, el = self._ready.popleft()
        if kind == "close":
            self._ended = True
            raise StreamEnded("</stream:stream>")
        if kind == "header":
            self.header = dict(el.attrib)
            return self.next()
        return el

    def stream_error(self) -> str | None:
        """Read until the server closes the socket; the condition of the <stream:error/> seen,
        if any. Once this returns, the server has let go of the connection."""
        condition = None
        try:
            while True:
                el = self.next()
                if el.tag == f"{{{STREAM}}}error":
                    condition = _condition(el, STREAMS_ERR)
        except StreamEnded:
            self._wait_eof()
            return condition

    def _wait_eof(self) -> None:
        """Read until TCP end of file (under TLS: past the close_notify, on the raw socket)."""
        sock = self.sock
        try:
            while sock.recv(65536):
                pass
            if isinstance(sock, ssl.SSLSocket):
                sock = sock.unwrap()
                while sock.recv(65536):
                    pass
        except (OSError, ValueError):
            pass

    # --- stream steps ------------------------------------------------------------------------

    def open(self) -> etree._Element:
        """Send a stream header; returns the features the server offers."""
        self.send(
            f"<?xml version='1.0'?><stream:stream to='{self.server.domain}' version='1.0' "
            f"xmlns='{CLIENT}' xmlns:stream='{STREAM}'>"
        )
        self.features = self.next()
        assert self.features.tag == f"{{{STREAM}}}features", etree.tostring(self.features)
        return self.features

    def restart(self) -> etree._Element:
        self._new_parser()
        return self.open()

    def starttls(self) -> etree._Element:
        self.send(f"<starttls xmlns='{TLS}'/>")
        proceed = self.next()
        assert proceed.tag == f"{{{TLS}}}proceed", etree.tostring(proceed)
        self._wrap()
        return self.restart()

    def secure(self) -> etree._Element:
        """Open the stream and, on the STARTTLS port, run STARTTLS: the features under TLS."""
        features = self.open()
        if not isinstance(self.sock, ssl.SSLSocket):
            features = self.starttls()
        return features

    def close(self) -> None:
        """Close the stream and wait until the server has closed the socket too."""
        try:
            if not self._ended:
                self.send("</stream:stream>")
            while True:
                self.next()
        except (StreamEnded, OSError, etree.XMLSyntaxError):  # e.g. mid-restart after <success/>
            self._wait_eof()
        finally:
            self.sock.close()

    # --- what the features say ---------------------------------------------------------------

    def mechanisms(self) -> list[str]:
        found = self.features.find(f"{{{SASL}}}mechanisms")
        return [] if found is None else [m.text for m in found.findall(f"{{{SASL}}}mechanism")]

    def channel_binding_types(self) -> list[str] | None:
        found = self.features.find(f"{{{SASL_CB}}}sasl-channel-binding")
        if found is None:
            return None
        return [cb.get("type") for cb in found.findall(f"{{{SASL_CB}}}channel-binding")]

    # --- TLS facts for channel binding -------------------------------------------------------

    def server_certificate(self) -> bytes:
        return self.sock.getpeercert(binary_form=True)

    def tls_unique(self) -> bytes:
        return self.sock.get_channel_binding("tls-unique")

    def tls_version(self) -> str:
        return self.sock.version()

    # --- SASL --------------------------------------------------------------------------------

    def auth(self, mechanism: str, initial: bytes | None) -> etree._Element:
        payload = "" if initial is None else (base64.b64encode(initial).decode() or "=")
        self.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{payload}</auth>")
        return self.next()

    def respond(self, data: bytes) -> etree._Element:
        self.send(f"<response xmlns='{SASL}'>{base64.b64encode(data).decode() or '='}</response>")
        return self.next()

    def scram(self, mechanism: str, client: ScramClient) -> tuple[etree._Element, bool]:
        """Run a SCRAM exchange: the last element the server sent (<success/> or <failure/>)
        and whether a <success/> carried the server signature the client expected."""
        answer = self.auth(mechanism, client.first())
        if answer.tag != f"{{{SASL}}}challenge":
            return answer, False
        answer = self.respond(client.final(base64.b64decode(answer.text)))
        if answer.tag != f"{{{SASL}}}success":
            return answer, False
        return answer, client.verify(base64.b64decode(answer.text or ""))

    def plain(self, user: str, password: str) -> etree._Element:
        return self.auth("PLAIN", f"\0{user}\0{password}".encode())

    def bind(self, resource: str | None = None) -> etree._Element:
        """Send a bind request on the current (restarted) stream; the <iq/> answering it."""
        inner = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind-1'><bind xmlns='{BIND}'>{inner}</bind></iq>")
        return self.next()

    def login(self, user: str, password: str, resource: str | None = None) -> str:
        """TLS, PLAIN, bind: the bound full JID."""
        self.secure()
        answer = self.plain(user, password)
        assert answer.tag == f"{{{SASL}}}success", etree.tostring(answer)
        self.restart()
        reply = self.bind(resource)
        assert reply.get("type") == "result", etree.tostring(reply)
        return bound_jid(reply)


def bound_jid(iq: etree._Element) -> str:
    return iq.findtext(f"{{{BIND}}}bind/{{{BIND}}}jid")


def failure_condition(el: etree._Element) -> str | None:
    """The condition of a SASL <failure/>, or None when `el` is not one."""
    return _condition(el, SASL) if el.tag == f"{{{SASL}}}failure" else None


def stanza_error(el: etree._Element) -> tuple[str | None, str | None]:
    """(type, condition) of a stanza's <error/>."""
    error = el.find(f"{{{CLIENT}}}error")
    if error is None:
        return None, None
    return error.get("type"), _condition(error, STANZAS)


def _condition(el: etree._Element, namespace: str) -> str | None:
    for child in el:
        if isinstance(child.tag, str) and child.tag.startswith(f"{{{namespace}}}"):
            name = etree.QName(child).localname
            if name != "text":
                return name
    return None
