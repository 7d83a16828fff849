"""The feature registry: IQ handlers found by (type, namespace, addressee), and disco's list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from lxml import etree

from fsm.core import Send
from xmpp.jid import JID, JIDMalformed

Handler = Callable[[etree._Element, Any], list]
ADDRESSEES = ("server", "account", "any")


def handles_iq(kind: str, namespace: str, to: str = "server") -> Callable[[Handler], Handler]:
    """Mark a function as the handler of IQs of `kind` ('get'/'set') whose payload is in
    `namespace`, addressed to the server, to an account's bare JID, or to either."""
    if kind not in ("get", "set") or to not in ADDRESSEES:
        raise ValueError(f"bad IQ handler declaration: {kind!r} to {to!r}")

    def mark(handler: Handler) -> Handler:
        handler.__dict__.setdefault("xmppd_iq", []).append((kind, namespace, to))
        return handler

    return mark


class Registry:
    def __init__(self, settings: Any = None) -> None:
        from features.im import Settings

        self.settings = settings if settings is not None else Settings()
        self._iq: dict[tuple[str, str, str], Handler] = {}
        self.disco_features: set[str] = set()  # the server's disco#info features
        self.account_features: set[str] = set()  # what it answers for an account's bare JID
        self._stream_features: list[Callable[[Any], list[etree._Element]]] = []
        self._on_deliver: list[Callable] = []
        self._session_end: list[Callable] = []
        self._client_presence: Callable | None = None
        # Server-side hooks the node hands the router (they run on the thread pool, with the
        # storage, and return actions for the node): presence to a local account (probes,
        # subscriptions), and a message no session can take (offline storage).
        self.inbound_presence: Callable | None = None
        self.undeliverable_message: Callable | None = None
        self.modules: list[ModuleType] = []

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType], settings: Any = None) -> Registry:
        registry = cls(settings)
        for module in modules:
            registry.add_module(module)
        return registry

    def add_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            for kind, namespace, to in getattr(value, "xmppd_iq", ()):
                self._iq[(kind, namespace, to)] = value
                if to in ("server", "any"):
                    self.disco_features.add(namespace)
                if to in ("account", "any"):
                    self.account_features.add(namespace)
        self.disco_features.update(getattr(module, "DISCO_FEATURES", ()))
        if hasattr(module, "stream_features"):
            self._stream_features.append(module.stream_features)
        if hasattr(module, "on_deliver"):
            self._on_deliver.append(module.on_deliver)
        if hasattr(module, "session_end"):
            self._session_end.append(module.session_end)
        self._client_presence = getattr(module, "client_presence", self._client_presence)
        self.inbound_presence = getattr(module, "inbound_presence", self.inbound_presence)
        self.undeliverable_message = getattr(
            module, "undeliverable_message", self.undeliverable_message
        )
        self.modules.append(module)

    def client_presence(self, presence: etree._Element, data: Any) -> tuple[Any, list] | None:
        if self._client_presence is None:
            return None
        return self._client_presence(presence, data)

    def deliver(self, stanza: etree._Element, data: Any) -> tuple[Any, list]:
        """The first feature that claims a routed stanza decides; else it is written as is."""
        for hook in self._on_deliver:
            handled = hook(stanza, data)
            if handled is not None:
                return handled
        return data, [Send(stanza)]

    def session_end(self, data: Any) -> list:
        return [action for hook in self._session_end for action in hook(data)]

    def stream_features(self, data: Any) -> list[etree._Element]:
        return [el for provide in self._stream_features for el in provide(data)]

    def handle_iq(self, iq: etree._Element, data: Any) -> list | None:
        payload = iq[0] if len(iq) else None
        if payload is None or not isinstance(payload.tag, str):
            return None
        namespace = etree.QName(payload).namespace or ""
        addressee = _addressee(iq, data)
        kind = iq.get("type") or ""
        handler = self._iq.get((kind, namespace, addressee)) or self._iq.get(
            (kind, namespace, "any")
        )
        return None if handler is None else handler(iq, data)


def _addressee(iq: etree._Element, data: Any) -> str:
    to = iq.get("to")
    if to is None:
        return "server"
    try:
        jid = JID.parse(to)
    except JIDMalformed:
        return "none"
    return "server" if jid.local is None else "account"
