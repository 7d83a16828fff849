"""A c2s machine in session_established with every feature the node wires, whose storage
queries run at once against memory stores: one IQ in, the stanzas the client gets out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lxml import etree

from features.im import Settings
from features.registry import Registry
from fsm import c2s
from fsm.core import Query, QueryDone, Send
from storage.open import Storage, memory_storage
from tests.unit.fsm_helpers import FakeClock, element, session_data
from xmpp import ns
from xmpp.jid import JID
from xmppd.node import feature_modules

HOST = "localhost"
STARTED = 1_000_000.0


class Session:
    """alice@localhost/phone, bound and established; bob and carol have accounts too."""

    def __init__(self, storage: Storage | None = None, user: str = "alice", **settings: Any):
        self.storage = storage or accounts("alice", "bob", "carol")
        self.clock = FakeClock(STARTED + 100)
        values = {"started": STARTED, "version": "1.2.3", **settings}
        features = Registry.from_modules(feature_modules(), Settings(**values))
        data = session_data()
        self.data = replace(
            data,
            env=replace(data.env, clock=self.clock),
            features=features,
            domain=HOST,
            user=user,
            jid=JID(user, HOST, "phone"),
            available=True,
        )
        self.state = "session_established"
        self.queries: list[Query] = []

    def step(self, event: Any) -> list:
        self.state, self.data, actions = c2s.step(self.state, event, self.data)
        return actions

    def ask(self, xml: str) -> list[etree._Element]:
        """Feed one stanza; run every storage query it leads to; what was sent to the client."""
        pending = self.step(element(xml))
        sent: list[etree._Element] = []
        while pending:
            action, pending = pending[0], pending[1:]
            if isinstance(action, Send):
                sent.append(action.element)
            elif isinstance(action, Query):
                self.queries.append(action)
                pending = self.step(QueryDone(action.then, self._run(action))) + pending
        return sent

    def answer(self, xml: str) -> etree._Element:
        (reply,) = self.ask(xml)
        return reply

    def _run(self, query: Query) -> Any:
        try:
            return query.call(self.storage, *query.args)
        except Exception as e:  # the actor hands exceptions back as results too
            return e


def accounts(*users: str) -> Storage:
    storage = memory_storage()
    for user in users:
        storage.accounts.create(user, HOST, {})
    return storage


def condition(reply: etree._Element) -> str:
    """The stanza error condition of an error reply."""
    assert reply.get("type") == "error", etree.tostring(reply)
    error = reply.find(ns.q(ns.CLIENT, "error"))
    (name,) = [c for c in error if etree.QName(c).localname != "text"]
    return etree.QName(name).localname


def payload(reply: etree._Element) -> etree._Element:
    assert reply.get("type") == "result", etree.tostring(reply)
    (child,) = reply
    return child


class Broken:
    """Storage whose every store raises: handlers must answer internal-server-error."""

    def __getattr__(self, name: str) -> Any:
        raise OSError("database is down")
