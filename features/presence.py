"""RFC 6121 §3–4: presence broadcast, probes, directed presence, and the subscription
handshakes on both sides (the table itself is features/subscription.py)."""

from __future__ import annotations

import copy
import secrets
from functools import partial
from typing import Any

from lxml import etree

from features import roster_xml as rx
from features import subscription
from features.hooks import Continue, HookResult, ServerContext, Stop, hook
from features.im import im, with_im
from features.offline import delay
from fsm.core import (
    DeliverToUser,
    Query,
    Route,
    RoutePresencesOf,
    Send,
    SetPresence,
    SetSessionInfo,
    Work,
    replace,
)
from storage.im import RosterItem
from xmpp import ns
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q
from xmpp.stream import serialize

PRESENCE = q(ns.CLIENT, "presence")
SUBSCRIPTIONS = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))


# --- presence the client sends -----------------------------------------------------------------


@hook("client_presence")
def client_presence(presence: etree._Element, data: Any) -> HookResult:
    """Every presence a client sends is this module's: nothing after it handles presence."""
    data, actions = handle_client_presence(presence, data)
    return Stop(actions, data)


def handle_client_presence(presence: etree._Element, data: Any) -> tuple[Any, list]:
    kind = presence.get("type")
    to = presence.get("to")
    if kind in SUBSCRIPTIONS:
        return outbound_subscription(presence, data)
    if kind == "probe":
        return data, []  # probes are the server's business (RFC 6121 §4.3)
    if to is not None:
        return directed(presence, data)
    if kind not in (None, "unavailable"):
        return data, []  # a type='error' presence with no 'to' goes nowhere
    if not im(data).roster_loaded:
        # The broadcast needs the roster: hold the presence until it is loaded.
        state = im(data)
        held = (*state.held, presence)
        actions = [] if state.held else [Query(load_roster, (data.user, data.domain), roster_in)]
        return with_im(data, held=held), actions
    return broadcast(presence, data)


def load_roster(storage: Any, username: str, domain: str) -> tuple[str, list[RosterItem]]:
    return storage.rosters.items(username, domain)


def roster_in(loaded: Any, data: Any) -> tuple[Any, list]:
    if isinstance(loaded, Exception):
        # Broadcast to nobody rather than hold presence for ever; probes of this account
        # are still answered from storage.
        return roster_known(data, [], known=False)
    return roster_known(data, loaded[1])


def roster_known(data: Any, items: list[RosterItem], known: bool = True) -> tuple[Any, list]:
    """The roster arrived: who gets our presence, whose we get, requests still unanswered;
    presence held meanwhile is broadcast now."""
    state = im(data)
    data = with_im(
        data,
        roster_loaded=True,
        pres_from=frozenset(i.jid for i in items if i.subscription in ("from", "both")),
        pres_to=frozenset(i.jid for i in items if i.subscription in ("to", "both")),
        pending_requests=tuple(i.pending_in_stanza for i in items if i.pending_in_stanza),
        held=(),
    )
    actions: list = [SetSessionInfo(data.jid, pres_from=im(data).pres_from)] if known else []
    for presence in state.held:
        data, more = broadcast(presence, data)
        actions += more
    return data, actions


def broadcast(presence: etree._Element, data: Any) -> tuple[Any, list]:
    """RFC 6121 §4.2 (initial), §4.4 (subsequent) and §4.5 (unavailable)."""
    state = im(data)
    available = presence.get("type") is None
    initial = available and not data.available
    priority = _priority(presence)
    bare = data.jid.bare
    actions: list = [SetPresence(data.jid, available, priority)]
    forget = None if available or not state.directed else frozenset()  # §4.5.2: told, forgotten
    actions.append(SetSessionInfo(data.jid, presence=presence if available else None,
                                  directed=forget))  # fmt: skip
    recipients = state.pres_from | (state.directed if not available else frozenset())
    actions += [Route(_to(presence, contact)) for contact in sorted(recipients)]
    actions.append(DeliverToUser(bare, presence, available_only=True))
    if not available and data.available:
        # The session is no longer available, so the delivery above passes it by; Prosody
        # tells the resource that went unavailable too, and clients rely on the echo.
        actions.append(Send(_to(presence, str(data.jid))))
    if initial:
        actions += [Route(_probe(bare, contact)) for contact in sorted(state.pres_to)]
        actions.append(RoutePresencesOf(bare, str(data.jid), except_jid=data.jid))
        # §3.1.3: requests still unanswered, read now: the copy taken with the roster may
        # miss one that came since, or hold one answered since.
        actions.append(Query(load_requests, (data.user, data.domain), requests_in))
    if available and priority >= 0 and (initial or data.priority < 0):
        # XEP-0160 §3: stored messages go to the resource that next sends non-negative
        # available presence, initial or raised from a negative priority.
        actions.append(Query(take_offline, (data.user, data.domain), offline_in))
    if not available:
        status = presence.findtext(q(ns.CLIENT, "status")) or ""
        actions.append(
            Query(record_last, (data.user, data.domain, data.env.clock(), status), ignore_result)
        )
    return _with_presence(data, available, priority, presence), actions


def _with_presence(data: Any, available: bool, priority: int, presence: Any) -> Any:
    data = replace(data, available=available, priority=priority)
    directed = im(data).directed if available else frozenset()
    return with_im(data, presence=presence if available else None, directed=directed)


def directed(presence: etree._Element, data: Any) -> tuple[Any, list]:
    """Presence to one entity (RFC 6121 §4.6): remembered, so it hears when we leave."""
    try:
        target = str(JID.parse(presence.get("to")))
    except JIDMalformed:
        return data, []  # the FSM has already answered a malformed 'to'
    state = im(data)
    if presence.get("type") is None and target not in state.pres_from:
        data = with_im(data, directed=state.directed | {target})
    elif presence.get("type") == "unavailable":
        data = with_im(data, directed=state.directed - {target})
    actions: list = [Route(presence)]
    if im(data).directed != state.directed:
        actions.insert(0, SetSessionInfo(data.jid, directed=im(data).directed))
    return data, actions


@hook("session_closed")
def session_closed(_stanza: None, data: Any) -> HookResult:
    return Continue(session_end(data))


def session_end(data: Any) -> list:
    """The session ends without saying goodbye: whoever saw us available hears we left."""
    state = im(data)
    if not data.available and not state.directed:
        return []
    gone = etree.Element(PRESENCE, type="unavailable", nsmap={None: ns.CLIENT})
    gone.set("from", str(data.jid))
    recipients = state.directed | (state.pres_from if data.available else frozenset())
    actions: list = [Route(_to(gone, contact)) for contact in sorted(recipients)]
    if data.available:
        actions.append(DeliverToUser(data.jid.bare, gone, available_only=True, except_jid=data.jid))
        actions.append(
            Query(record_last, (data.user, data.domain, data.env.clock(), ""), ignore_result)
        )
    return actions


def lost_session_work(storage: Any, jid: str, stamp: float, directed: tuple = ()) -> list:
    """A session vanished with its node (the cluster's reaper calls this on the account's
    lane): contacts subscribed to its presence, whom it sent directed presence and its other
    resources hear it left, once each, and its last activity is recorded, as at a logout."""
    full = JID.parse(jid)
    gone = etree.Element(PRESENCE, type="unavailable", nsmap={None: ns.CLIENT})
    gone.set("from", jid)
    _, items = storage.rosters.items(full.local, full.domain)
    told = {item.jid for item in items if item.subscription in ("from", "both")} | set(directed)
    actions: list = [Route(_to(gone, contact)) for contact in sorted(told)]
    actions.append(DeliverToUser(full.bare, gone, available_only=True, except_jid=full))
    storage.last_activity.set(full.local, full.domain, stamp, "")
    return actions


# --- subscriptions the user sends -----------------------------------------------------------------


def outbound_subscription(presence: etree._Element, data: Any) -> tuple[Any, list]:
    try:
        contact = JID.parse(presence.get("to") or "").bare
    except JIDMalformed:
        return data, []
    kind = presence.get("type")
    args = (data.user, data.domain, str(contact), kind)
    return data, [Query(apply_outbound, args, partial(after_outbound, presence))]


def apply_outbound(storage: Any, username: str, domain: str, contact: str, kind: str) -> Any:
    old = storage.rosters.get(username, domain, contact)
    outcome = subscription.outbound(old, kind, contact)
    return outcome, _store(storage, username, domain, contact, old, outcome)


def _store(storage: Any, username: str, domain: str, contact: str, old: Any, outcome: Any):
    """Write what a subscription outcome changed; the roster's new version, or None."""
    if outcome.remove and old is not None:
        return storage.rosters.delete(username, domain, contact)
    if outcome.item is not None and outcome.item != old:
        return storage.rosters.put(username, domain, outcome.item)
    return None


def after_outbound(presence: etree._Element, applied: Any, data: Any) -> tuple[Any, list]:
    if isinstance(applied, Exception):
        return data, []
    outcome, version = applied
    bare = data.jid.bare
    kind = presence.get("type")
    contact = str(JID.parse(presence.get("to")).bare)
    actions: list = []
    if outcome.route:
        presence.set("from", str(bare))  # subscriptions come from the bare JID (§3.1.2)
        presence.set("to", contact)
        actions.append(Route(presence))
    if outcome.send_presence and not (kind == "subscribed" and _served_here(contact, data)):
        # §3.1.5, §3.2.2. A local contact gets our presence from inbound_subscription,
        # after the approval and its roster push, which it would otherwise overtake.
        unavailable = outcome.send_presence == "unavailable"
        actions.append(RoutePresencesOf(bare, contact, unavailable=unavailable))
    if outcome.push and version is not None and outcome.item and subscription.visible(outcome.item):
        actions.append(DeliverToUser(bare, rx.push(outcome.item, version, data.env.random.iq_id())))
    if outcome.route and kind == "subscribed" and outcome.item is not None and \
            outcome.item.subscription in ("to", "both"):  # fmt: skip
        # As Prosody does: the user who just approved a contact it is subscribed to asks
        # for the contact's presence again (probes are the server's business, §4.3).
        actions.append(Route(_probe(bare, contact)))
    return data, actions


# --- what the user's sessions learn of the roster -----------------------------------------------


@hook("roster_changed")
def roster_changed(push: etree._Element, data: Any) -> HookResult:
    """Every session hears every push, so that who gets its presence, and whose it asks for,
    stays right whether or not it asked for the roster."""
    pushed = rx.pushed_item(push)
    if pushed is None:
        return None
    contact, kind = pushed
    state = im(data)
    pres_from = state.pres_from - {contact}
    pres_to = state.pres_to - {contact}
    if kind in ("from", "both"):
        pres_from |= {contact}
    if kind in ("to", "both"):
        pres_to |= {contact}
    data = with_im(data, pres_from=pres_from, pres_to=pres_to)
    # Probes of the account are answered from what its sessions know (inbound_presence).
    told = [SetSessionInfo(data.jid, pres_from=pres_from)] if state.roster_loaded else []
    return Continue(told, data)


# --- presence reaching a local account ------------------------------------------------------------


@hook("inbound_presence")
def inbound_presence(stanza: etree._Element, context: ServerContext) -> HookResult:
    """Subscriptions and probes to a local account are worked out on its lane, with its
    roster; a probe of an account with an available session is answered at once."""
    if stanza.get("type") == "probe":
        answer = probe_answered_by_sessions(stanza, context.sessions)
        if answer is not None:
            return Stop(answer)
    try:
        account = str(JID.parse(stanza.get("to") or "").bare)
    except JIDMalformed:
        return Stop()
    return Stop([Work(account, inbound_presence_work, (stanza,))])


def probe_answered_by_sessions(probe: etree._Element, sessions: Any) -> list | None:
    """A probe of an account with an available session is answered from what its sessions
    know of its subscriptions, the answer inbound_probe reads from storage (RFC 6121 §4.3.2),
    without a storage read or a lane hop: every login probes every contact. None when the
    sessions cannot tell (offline, or not told yet: storage answers, with the last logout)."""
    try:
        contact = JID.parse(probe.get("to") or "").bare
        prober = JID.parse(probe.get("from") or "")
    except JIDMalformed:
        return None
    known = [
        entry.pres_from
        for entry in sessions.resources(contact)
        if entry.available and entry.pres_from is not None
    ]
    if not known:
        return None
    if prober.bare == contact or str(prober.bare) in known[0]:
        return [RoutePresencesOf(contact, str(prober))]
    return []


def inbound_presence_work(storage: Any, stanza: etree._Element) -> list:
    """On the account's lane, with the storage."""
    try:
        user = JID.parse(stanza.get("to") or "").bare
        sender = JID.parse(stanza.get("from") or "")
    except JIDMalformed:
        return []
    if not storage.accounts.exists(user.local, user.domain):
        return []  # presence to an account that does not exist is ignored (RFC 6121 §8.5.1)
    if stanza.get("type") == "probe":
        return inbound_probe(storage, user, sender)
    return inbound_subscription(storage, user, sender, stanza)


def inbound_probe(storage: Any, user: JID, sender: JID) -> list:
    """RFC 6121 §4.3.2: answer for subscribed contacts only, with every available resource's
    presence, or with unavailable (stamped with the last logout) when there is none."""
    item = storage.rosters.get(user.local, user.domain, str(sender.bare))
    if sender.bare != user and (item is None or item.subscription not in ("from", "both")):
        return []
    gone = etree.Element(PRESENCE, type="unavailable", to=str(sender), nsmap={None: ns.CLIENT})
    gone.set("from", str(user))
    last = storage.last_activity.get(user.local, user.domain)
    if last is not None:
        stamp, status = last
        if status:
            etree.SubElement(gone, q(ns.CLIENT, "status")).text = status
        gone.append(delay(user.domain, stamp))
    return [RoutePresencesOf(user, str(sender), otherwise=gone)]


def inbound_subscription(storage: Any, user: JID, sender: JID, stanza: etree._Element) -> list:
    kind = stanza.get("type")
    contact = str(sender.bare)
    stanza.set("from", contact)
    stanza.set("to", str(user))
    old = storage.rosters.get(user.local, user.domain, contact)
    outcome = subscription.inbound(old, kind, contact, serialize(stanza).decode())
    version = _store(storage, user.local, user.domain, contact, old, outcome)
    actions: list = []
    if outcome.deliver:  # to the bare JID it was sent to (§3.1.3), as Prosody delivers it
        actions.append(DeliverToUser(user, stanza, available_only=True, keep_to=True))
    if kind == "subscribe" and outcome.auto_reply is None:
        # Prosody acknowledges a request it does not answer at once with the user's
        # unavailable presence; the contact learns nothing a subscription would tell.
        ack = etree.Element(PRESENCE, type="unavailable", to=contact, nsmap={None: ns.CLIENT})
        ack.set("from", str(user))
        actions.append(Route(ack))
    if outcome.push and version is not None and not outcome.hidden:
        item = outcome.item or old
        push = rx.push(item, version, secrets.token_hex(6), remove=outcome.item is None)
        actions.append(DeliverToUser(user, push))
    if outcome.auto_reply:
        reply = etree.Element(
            PRESENCE, type=outcome.auto_reply, to=contact, nsmap={None: ns.CLIENT}
        )
        reply.set("from", str(user))
        actions.append(Route(reply))
    if outcome.send_presence:  # §3.1.5 (pre-approved), §3.3.3
        unavailable = outcome.send_presence == "unavailable"
        actions.append(RoutePresencesOf(user, contact, unavailable=unavailable))
    if kind == "subscribed" and outcome.deliver:
        # §3.1.5: the approver's presence follows its approval. A local approver's is sent
        # from here, in order; a remote one has no session here and its server sends it.
        actions.append(RoutePresencesOf(sender.bare, str(user)))
    return actions


# --- small helpers -------------------------------------------------------------------------------


def _served_here(contact: str, data: Any) -> bool:
    return contact.rpartition("@")[2] in data.config.hosts


def load_requests(storage: Any, username: str, domain: str) -> list[str]:
    return storage.rosters.pending_requests(username, domain)


def requests_in(stored: Any, data: Any) -> tuple[Any, list]:
    if isinstance(stored, Exception):
        return data, []
    return data, [Send(etree.fromstring(xml)) for xml in stored]


def take_offline(storage: Any, username: str, domain: str) -> list[str]:
    return storage.offline.pop_all(username, domain)


def offline_in(stored: Any, data: Any) -> tuple[Any, list]:
    if isinstance(stored, Exception):
        return data, []
    return data, [Send(_addressed(etree.fromstring(xml), data)) for xml in stored]


def _addressed(message: etree._Element, data: Any) -> etree._Element:
    message.set("to", str(data.jid))
    return message


def record_last(storage: Any, username: str, domain: str, stamp: float, status: str) -> None:
    storage.last_activity.set(username, domain, stamp, status)


def ignore_result(_result: Any, data: Any) -> tuple[Any, list]:
    return data, []


def _priority(presence: etree._Element) -> int:
    try:
        return max(-128, min(127, int(presence.findtext(q(ns.CLIENT, "priority")) or 0)))
    except ValueError:
        return 0


def _to(presence: etree._Element, contact: str) -> etree._Element:
    sent = copy.deepcopy(presence)
    sent.set("to", contact)
    return sent


def _probe(sender: JID, contact: str) -> etree._Element:
    probe = etree.Element(PRESENCE, type="probe", to=contact, nsmap={None: ns.CLIENT})
    probe.set("from", str(sender))
    return probe
