"""The feature registry: IQ handlers found by (type, namespace, addressee), the hooks' subscribers
in order, and disco's list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from lxml import etree

from features.hooks import DEFAULT_ORDER, SERVER_HOOKS, SESSION_HOOKS, ServerContext, Stop
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
        self._subscribers: dict[str, list[tuple[int, int, Callable]]] = {}
        self._memo: dict[tuple, Any] = {}
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
            for name, order in getattr(value, "xmppd_hooks", ()):
                self.subscribe(name, value, order)
        self.disco_features.update(getattr(module, "DISCO_FEATURES", ()))
        if hasattr(module, "stream_features"):
            self._stream_features.append(module.stream_features)
        self.modules.append(module)
        self._memo.clear()

    def subscribe(self, name: str, fn: Callable, order: int = DEFAULT_ORDER) -> None:
        """Add `fn` to the hook `name`: subscribers run by order, then by when they came."""
        if name not in SESSION_HOOKS | SERVER_HOOKS:
            raise ValueError(f"no hook named {name!r}")
        subscribers = self._subscribers.setdefault(name, [])
        subscribers.append((order, len(subscribers), fn))
        subscribers.sort(key=lambda entry: entry[:2])

    def subscribers(self, name: str) -> list[Callable]:
        return [fn for _order, _n, fn in self._subscribers.get(name, ())]

    # --- the port fsm/ sees (fsm.session.Features) -------------------------------------------

    def run(self, hook: str, stanza: etree._Element | None, data: Any) -> tuple[Any, list, bool]:
        """Run a session hook: (data, actions, whether a subscriber stopped the chain)."""
        subscribers = self._subscribers.get(hook)
        if not subscribers:
            return data, [], False
        actions: list = []
        for _order, _n, fn in subscribers:
            outcome = fn(stanza, data)
            if outcome is None:
                continue
            if outcome.data is not None:
                data = outcome.data
            actions += outcome.actions
            if isinstance(outcome, Stop):
                return data, actions, True
        return data, actions, False

    def run_server(self, hook: str, stanza: etree._Element, context: ServerContext) -> list | None:
        """Run a server hook: the actions its subscribers return; None when it has none."""
        subscribers = self._subscribers.get(hook)
        if not subscribers:
            return None
        actions: list = []
        for _order, _n, fn in subscribers:
            outcome = fn(stanza, context)
            if outcome is None:
                continue
            actions += outcome.actions
            if isinstance(outcome, Stop):
                break
        return actions

    def memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = build()
        return value

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
