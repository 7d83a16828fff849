"""slixmpp clients for end-to-end tests: log in, collect messages and stream errors."""

from __future__ import annotations

import asyncio
import logging
import ssl

import slixmpp

from tests.support.server import Server

logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, mechanism: str | None = None) -> None:
        config = {"feature_mechanisms": {"use_mech": mechanism}} if mechanism else {}
        super().__init__(jid, password, plugin_config=config)
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0203")
        self.messages: asyncio.Queue = asyncio.Queue()
        self.stream_errors: list[str] = []
        self.started = asyncio.get_event_loop().create_future()
        self.gone = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_all_auth", self._failed)
        self.add_event_handler("disconnected", self._disconnected)
        self.add_event_handler("stream_error", self._stream_error)
        self.add_event_handler("message", self.messages.put_nowait)

    def _started(self, _event) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, _event) -> None:
        if not self.started.done():
            self.started.set_result(False)

    def _disconnected(self, _event) -> None:
        if not self.started.done():
            self.started.set_result(False)
        if not self.gone.done():
            self.gone.set_result(True)

    def _stream_error(self, error) -> None:
        self.stream_errors.append(error["condition"])

    async def next_message(self, timeout: float = 10) -> slixmpp.Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def close(self) -> None:
        if not self.gone.done():
            self.disconnect()
            try:
                await asyncio.wait_for(asyncio.shield(self.gone), 5)
            except TimeoutError:
                self.abort()


def client_context(server: Server, tls12: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.cert_path))
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


async def connect(
    server: Server,
    user: str,
    *,
    password: str | None = None,
    resource: str | None = None,
    direct: bool = False,
    mechanism: str | None = None,
    tls12: bool = False,
    timeout: float = 15,
    plugins: tuple[str, ...] = (),
) -> Client:
    """A client that tried to log in: `await client.started` is True once the session is up.
    `plugins` are slixmpp plugins registered before connecting (those that read the stream
    features, like xep_0115, must be)."""
    jid = f"{user}@{server.domain}" + (f"/{resource}" if resource else "")
    client = Client(jid, password if password is not None else server.passwords[user], mechanism)
    for plugin in plugins:
        client.register_plugin(plugin)
    client.ssl_context = client_context(server, tls12)
    client.enable_direct_tls = direct
    client.enable_starttls = not direct
    client.enable_plaintext = False
    client.reconnect_max_attempts = 0
    client.connect("127.0.0.1", server.direct_port if direct else server.starttls_port)
    try:
        await asyncio.wait_for(asyncio.shield(client.started), timeout)
    except TimeoutError:
        client.abort()
        raise
    return client


async def login(server: Server, user: str, **options) -> Client:
    client = await connect(server, user, **options)
    assert client.started.result(), f"{user} could not log in"
    return client
