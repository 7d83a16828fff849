"""The router: the branches of Openfire's routePacket (local session, local service, another
node, remote domain), RFC 6121 §8.5 for a local account's sessions, and the routing actions."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from lxml import etree

from routing.actions import DeliverToUser, Route, RoutePresencesOf, Work
from routing.routes import RouteTable, SingleNodeRoutes
from routing.sessions import SessionEntry, SessionManager
from routing.work import AccountWork
from xmpp import ns
from xmpp.errors import error_reply
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q

log = logging.getLogger("xmppd.router")

MESSAGE = q(ns.CLIENT, "message")
PRESENCE = q(ns.CLIENT, "presence")
IQ = q(ns.CLIENT, "iq")
SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))
SERVER_PRESENCE = SUBSCRIPTION_TYPES | {"probe"}


class LocalSessions(Protocol):
    """This node's own sessions, by address: `deliver` hands a stanza to one and says False
    when it is gone."""

    def deliver(self, address: str, stanza: etree._Element) -> bool: ...

    def tell_named(self, address: str, event: str, args: tuple) -> bool:
        """Give a session an event another node named (SessionReplaced, Kick)."""
        ...


# Server-side hooks of features/ (inbound_presence, undeliverable_message): the actions the
# subscribers return, or None when nobody subscribes to the hook.
ServerHooks = Callable[[str, etree._Element], list | None]


class RouterCounts:
    """What the router did, since the node started (exported as metrics)."""

    __slots__ = ("routed", "relayed", "bounced", "offline")

    def __init__(self) -> None:
        self.routed = self.relayed = self.bounced = self.offline = 0


class Router:
    def __init__(
        self,
        node: str,
        hosts: Iterable[str],
        sessions: SessionManager,
        local: LocalSessions,
        work: AccountWork,
        routes: RouteTable | None = None,
    ) -> None:
        self.node = node
        self.hosts = frozenset(hosts)
        self.sessions = sessions
        self.local = local
        self.work = work
        self.routes = routes if routes is not None else SingleNodeRoutes()
        self.hooks: ServerHooks = lambda _name, _stanza: None
        self.counts = RouterCounts()

    # --- routePacket -----------------------------------------------------------------------

    def route(self, stanza: etree._Element) -> None:
        """Deliver `stanza` (whose `from` is already stamped) or answer it with an error."""
        self.counts.routed += 1
        try:
            to = JID.parse(stanza.get("to") or "")
        except JIDMalformed:
            return self.bounce(stanza, "jid-malformed")
        if to.domain not in self.hosts:
            return self.remote_domain(to, stanza)
        if to.local is None:
            return self.local_service(to, stanza)
        if stanza.tag == PRESENCE and stanza.get("type") in SERVER_PRESENCE:
            # Subscriptions and probes are the account's business, whatever the resource.
            self._hook("inbound_presence", stanza)
            return None
        if to.resource is not None:
            return self._to_full(to, stanza)
        return self._to_bare(to, stanza)

    def remote_domain(self, to: JID, stanza: etree._Element) -> None:
        node = self.routes.remote_route(to.domain)
        if node is None:
            # Server-to-server comes with a later issue: until then nothing leaves the node.
            return self.bounce(stanza, "remote-server-not-found", "no route to remote domains")
        return self.other_node(node, stanza)

    def local_service(self, to: JID, stanza: etree._Element) -> None:
        """The server's own address (components and rooms come later): what the session did
        not answer itself has no service behind it."""
        node = self.routes.node_of(str(to))
        if node is not None and node != self.node:
            return self.other_node(node, stanza)
        return self.bounce(stanza, "service-unavailable")

    def other_node(self, node: str, stanza: etree._Element) -> None:
        self.counts.relayed += 1
        self.routes.relay(node, stanza)

    def local_session(self, entry: SessionEntry, stanza: etree._Element) -> None:
        """Hand the stanza to a session (of this node, or relayed to its node), behind the work
        started here for its account, so that it does not overtake a stanza sent before it."""
        account = str(entry.jid.bare)
        if self.work.must_wait(account):
            self.work.after(account, lambda: self._hand(entry, stanza))
        else:
            self._hand(entry, stanza)

    def _session(self, entry: SessionEntry, stanza: etree._Element) -> None:
        if self.work.pending:  # the common case has no work in flight at all
            self.local_session(entry, stanza)
        elif entry.node != self.node:
            self.counts.relayed += 1
            self.routes.relay_session(entry, stanza)
        elif not self.local.deliver(entry.address, stanza):  # (_hand, inlined: hot)
            self._gone(entry, stanza)

    def _hand(self, entry: SessionEntry, stanza: etree._Element) -> None:
        if entry.node != self.node:
            self.counts.relayed += 1
            self.routes.relay_session(entry, stanza)
        elif not self.local.deliver(entry.address, stanza):
            self._gone(entry, stanza)

    def _gone(self, entry: SessionEntry, stanza: etree._Element) -> None:
        """The session died without releasing itself: forget it and route again."""
        self.sessions.close(entry.jid, entry.address)
        self.route(stanza)

    def relayed_to_session(self, jid: JID, address: str, stanza: etree._Element) -> None:
        """Another node sent `stanza` to our session at `address`. If it has gone (the other
        node's view was stale), the stanza is routed again from here, as if it had never been
        delivered; the relay's hop limit keeps two stale views from passing it back and forth."""
        entry = self.sessions.get(jid)
        if entry is not None and entry.address == address and entry.node == self.node:
            return self._session(entry, stanza)
        if self.local.deliver(address, stanza):
            return None
        try:
            to = JID.parse(stanza.get("to") or "")
        except JIDMalformed:
            return None
        if to.resource is None and stanza.tag != PRESENCE:
            # One copy of a fan-out to a bare JID: the other resources had theirs. Only when
            # none is left is it undeliverable (offline storage), never sent to them twice.
            if not any(e.available for e in self.sessions.resources(to)):
                self.undeliverable(stanza)
            return None
        return self.route(stanza)

    # --- RFC 6121 §8.5 for a local account -------------------------------------------------

    def _to_full(self, to: JID, stanza: etree._Element) -> None:
        entry = self.sessions.get(to)
        if entry is not None:
            return self._session(entry, stanza)
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
        # A session on another node that this node does not know as available yet: its initial
        # presence may be on its way through the relay. Its node knows; it decides (the relay's
        # hop limit ends any back and forth in offline storage).
        waiting = next((e for e in self.sessions.resources(to) if e.node != self.node), None)
        if waiting is not None:
            return self.other_node(waiting.node, stanza)
        self._store_or_bounce(stanza)
        return None

    def undeliverable(self, stanza: etree._Element) -> None:
        """No session can take `stanza` and it must not travel further: a message goes to
        offline storage (or bounces), an IQ bounces, a presence is dropped."""
        if stanza.tag == MESSAGE and stanza.get("type") not in ("error", "groupchat"):
            self._store_or_bounce(stanza)
        elif stanza.tag != PRESENCE:
            self.bounce(stanza, "service-unavailable")

    def _store_or_bounce(self, stanza: etree._Element) -> None:
        """Offline storage takes a message no session can (its feature bounces what is over
        the account's limit); without that feature, it bounces."""
        if self._hook("undeliverable_message", stanza):
            self.counts.offline += 1
        else:
            self.bounce(stanza, "service-unavailable")

    def _hook(self, name: str, stanza: etree._Element) -> bool:
        """Run a server hook and carry out what its subscribers return; False: it has none."""
        actions = self.hooks(name, stanza)
        if actions is None:
            return False
        self.perform(actions)
        return True

    def _fan_out(self, entries: list[SessionEntry], stanza: etree._Element) -> None:
        for i, entry in enumerate(entries):
            last = i == len(entries) - 1
            self._session(entry, stanza if last else copy.deepcopy(stanza))

    def bounce(self, stanza: etree._Element, condition: str, text: str | None = None) -> None:
        """Answer an undeliverable stanza with an error to its sender; never bounce an error
        or an IQ result, and never let a bounce bounce."""
        kind = stanza.get("type")
        if kind in ("error", "result") or stanza.get("from") is None:
            log.debug("dropping undeliverable %s of type %s", etree.QName(stanza).localname, kind)
            return
        self.counts.bounced += 1
        reply = error_reply(stanza, condition, text)
        if condition == "jid-malformed":
            reply.attrib.pop("from", None)  # the reply comes from the server, not a bad JID
        self.route(reply)

    # --- the routing actions ---------------------------------------------------------------

    def perform(self, actions: Iterable[Any]) -> None:
        for action in actions:
            self.perform_one(action)

    def perform_one(self, action: Any) -> None:
        if type(action) is Route:
            self.route(action.stanza)
        elif type(action) is DeliverToUser:
            self.deliver_to_user(action)
        elif type(action) is RoutePresencesOf:
            self.route_presences_of(action)
        elif type(action) is Work:
            self.work.run(action.account, action.call, action.args, self._work_done)
        else:
            raise TypeError(f"the router cannot perform {action!r}")

    def _work_done(self, result: Any) -> None:
        if isinstance(result, BaseException):
            # One stanza's failure must not stop the node; the stanza's sender was not answered.
            log.error("server-side work failed: %r", result, exc_info=result)
            return
        self.perform(result or ())

    def deliver_to_user(self, action: DeliverToUser) -> None:
        for entry in self.sessions.resources(action.bare):
            if action.interested_only and not entry.interested:
                continue
            if action.available_only and not entry.available or entry.jid == action.except_jid:
                continue
            stanza = copy.deepcopy(action.stanza)
            if not action.keep_to:
                stanza.set("to", str(entry.jid))
            self._session(entry, stanza)

    def route_presences_of(self, action: RoutePresencesOf) -> None:
        sent = False
        for entry in self.sessions.resources(action.bare):
            if entry.jid == action.except_jid:
                continue
            if entry.available and entry.presence is not None:
                self.route(_presence_copy(entry, action.to, action.unavailable))
                sent = True
        if not sent and action.otherwise is not None:
            self.route(action.otherwise)


def _presence_copy(entry: SessionEntry, to: str, unavailable: bool) -> etree._Element:
    presence = copy.deepcopy(entry.presence)
    presence.set("from", str(entry.jid))
    presence.set("to", to)
    if unavailable:
        for child in list(presence):
            presence.remove(child)
        presence.set("type", "unavailable")
    return presence
