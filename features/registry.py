"""The feature registry: IQ handlers found by (type, namespace, addressee), and disco's list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from lxml import etree

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
    def __init__(self) -> None:
        self._iq: dict[tuple[str, str, str], Handler] = {}
        self.disco_features: set[str] = set()
        self._stream_features: list[Callable[[Any], list[etree._Element]]] = []

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        registry = cls()
        for module in modules:
            registry.add_module(module)
        return registry

    def add_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            for kind, namespace, to in getattr(value, "xmppd_iq", ()):
                self._iq[(kind, namespace, to)] = value
                self.disco_features.add(namespace)
        self.disco_features.update(getattr(module, "DISCO_FEATURES", ()))
        if hasattr(module, "stream_features"):
            self._stream_features.append(module.stream_features)

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
