"""The router: hands each stanza to local sessions by RFC 6121 §8.5, or bounces it with an error."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from routing.sessions import SessionEntry, SessionManager
from xmpp import ns
from xmpp.errors import error_reply
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q

log = logging.getLogger("xmppd.router")

MESSAGE = q(ns.CLIENT, "message")
PRESENCE = q(ns.CLIENT, "presence")
IQ = q(ns.CLIENT, "iq")

# Hands a stanza to a session's handle; False when the session died meanwhile.
Deliver = Callable[[Any, etree._Element], bool]
# Server-side handling the node plugs in from features/: it runs off the scheduler and does
# the delivering, storing or bouncing itself.
Hook = Callable[[etree._Element], None]
SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))
SERVER_PRESENCE = SUBSCRIPTION_TYPES | {"probe"}


class Router:
    def __init__(
        self,
        sessions: SessionManager,
        hosts: Iterable[str],
        deliver: Deliver,
    ) -> None:
        self.sessions = sessions
        self.hosts = frozenset(hosts)
        self._deliver = deliver
        # Presence subscriptions and probes to a local account (roster work), and messages
        # that no session can take (offline storage). Without them: ignored / bounced.
        self.inbound_presence: Hook | None = None
        self.undeliverable: Hook | None = None

    def route(self, stanza: etree._Element) -> None:
        """Deliver `stanza` (whose `from` is already stamped) or answer it with an error."""
        try:
            to = JID.parse(stanza.get("to") or "")
        except JIDMalformed:
            return self.bounce(stanza, "jid-malformed")
        if to.domain not in self.hosts:
            # Server-to-server comes with a later issue: until then nothing leaves the node.
            return self.bounce(stanza, "remote-server-not-found", "no route to remote domains")
        if to.local is None:
            return self.bounce(stanza, "service-unavailable")
        if stanza.tag == PRESENCE and stanza.get("type") in SERVER_PRESENCE:
            # Subscriptions and probes are the account's business, whatever the resource.
            if self.inbound_presence is not None:
                self.inbound_presence(stanza)
            return None
        if to.resource is not None:
            return self._to_full(to, stanza)
        return self._to_bare(to, stanza)

    def _to_full(self, to: JID, stanza: etree._Element) -> None:
        entry = self.sessions.get(to)
        if entry is not None:
            return self._hand(entry, stanza)
        if stanza.tag == MESSAGE:
            if stanza.get("type") == "groupchat":
                return self.bounce(stanza, "service-unavailable")
            return self._to_bare(to.bare, stanza)  # RFC 6121 §8.5.3.2.1
        if stanza.tag == IQ:
            return self.bounce(stanza, "service-unavailable")
        # Presence to a session that is not there is ignored (RFC 6121 §8.5.3.2.3).

    def _to_bare(self, to: JID, stanza: etree._Element) -> None:
        available = [e for e in self.sessions.resources(to) if e.available]
        if stanza.tag == MESSAGE:
            return self._message_to_bare(to, stanza, available)
        if stanza.tag == PRESENCE:
            return self._fan_out(available, stanza)
        # IQs to a bare JID are the server's to answer, on the account's behalf.
        return self.bounce(stanza, "service-unavailable")

    def _message_to_bare(self, to: JID, stanza: etree._Element, available: list) -> None:
        kind = stanza.get("type") or "normal"
        if kind == "error":
            return None  # errors to a bare JID are never bounced back (no loops)
        if kind == "groupchat":
            return self.bounce(stanza, "service-unavailable")  # RFC 6121 §8.5.2.1.2
        eligible = [e for e in available if e.priority >= 0]
        if kind == "headline":
            return self._fan_out(eligible, stanza)  # none available: ignored (§8.5.2.2.1)
        if eligible:
            top = max(e.priority for e in eligible)
            return self._fan_out([e for e in eligible if e.priority == top], stanza)
        if self.undeliverable is not None:
            return self.undeliverable(stanza)
        return self.bounce(stanza, "service-unavailable")

    def _fan_out(self, entries: list[SessionEntry], stanza: etree._Element) -> None:
        for i, entry in enumerate(entries):
            last = i == len(entries) - 1
            self._hand(entry, stanza if last else copy.deepcopy(stanza))

    def _hand(self, entry: SessionEntry, stanza: etree._Element) -> None:
        if not self._deliver(entry.handle, stanza):
            # The session died without releasing itself: forget it and route again.
            self.sessions.close(entry.jid, entry.handle)
            self.route(stanza)

    def bounce(self, stanza: etree._Element, condition: str, text: str | None = None) -> None:
        """Answer an undeliverable stanza with an error to its sender; never bounce an error
        or an IQ result, and never let a bounce bounce."""
        kind = stanza.get("type")
        if kind in ("error", "result") or stanza.get("from") is None:
            log.debug("dropping undeliverable %s of type %s", etree.QName(stanza).localname, kind)
            return
        reply = error_reply(stanza, condition, text)
        if condition == "jid-malformed":
            reply.attrib.pop("from", None)  # the reply comes from the server, not a bad JID
        self.route(reply)
