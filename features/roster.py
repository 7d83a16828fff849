"""RFC 6121 §2: the roster: get (with versioning, §2.6), set, remove, pushes to every session."""

from __future__ import annotations

from functools import partial
from typing import Any

from lxml import etree

from features import roster_xml as rx
from features import subscription
from features.hooks import HookResult, Stop, hook
from features.im import im, with_im
from features.registry import handles_iq
from features.replies import error, result
from fsm.core import DeliverToUser, Query, Route, RoutePresencesOf, Send, replace
from storage.im import RosterItem
from xmpp import ns
from xmpp.jid import JID, JIDMalformed
from xmpp.ns import q

NS = rx.NS
PRESENCE = q(ns.CLIENT, "presence")
ROSTERVER = "urn:xmpp:features:rosterver"
PREAPPROVAL = "urn:xmpp:features:pre-approval"


def stream_features(data: Any) -> list[etree._Element]:
    """Roster versioning (§2.6.1) and subscription pre-approval (§3.4.1, which a server that
    supports pre-approvals MUST advertise)."""
    return [
        etree.Element(f"{{{ROSTERVER}}}ver", nsmap={None: ROSTERVER}),
        etree.Element(f"{{{PREAPPROVAL}}}sub", nsmap={None: PREAPPROVAL}),
    ]


def _own_roster(iq: etree._Element, data: Any) -> bool:
    """Only the account itself may read or change its roster (RFC 6121 §2.1.5)."""
    to = iq.get("to")
    return to is None or JID.parse(to) == data.jid.bare or JID.parse(to).local is None


# --- get -------------------------------------------------------------------------------------


@handles_iq("get", NS, to="any")
def roster_get(iq: etree._Element, data: Any) -> list:
    if not _own_roster(iq, data):
        return [error(iq, data, "forbidden")]
    load = Query(load_roster, (data.user, data.domain), partial(roster_result, iq))
    return [load]


def load_roster(storage: Any, username: str, domain: str) -> tuple[str, list[RosterItem]]:
    return storage.rosters.items(username, domain)


def roster_result(iq: etree._Element, loaded: Any, data: Any) -> tuple[Any, list]:
    if isinstance(loaded, Exception):
        return data, [error(iq, data, "internal-server-error")]
    version, items = loaded
    from features.presence import roster_known

    data, released = roster_known(with_im(data, interested=True), items)
    client_version = iq[0].get("ver")
    if client_version is not None and client_version == version:
        answer = result(iq, data)  # RFC 6121 §2.6.3: the client's copy is current
    else:
        shown = [i for i in items if subscription.visible(i)]
        answer = result(iq, data, rx.query(version, shown))
    return data, [answer, *released]


# --- set and remove --------------------------------------------------------------------------


@handles_iq("set", NS, to="any")
def roster_set(iq: etree._Element, data: Any) -> list:
    if not _own_roster(iq, data):
        return [error(iq, data, "forbidden")]
    items = iq[0].findall(rx.ITEM)
    if len(items) != 1 or len(iq[0]) != 1:
        return [error(iq, data, "bad-request", "a roster set carries exactly one item")]
    item = items[0]
    try:
        contact = str(JID.parse(item.get("jid") or ""))
    except JIDMalformed:
        return [error(iq, data, "jid-malformed", "the item's jid is not a JID")]
    settings = data.features.settings
    if item.get("subscription") == "remove":
        then = partial(after_remove, iq)
        return [Query(remove_item, (data.user, data.domain, contact), then)]
    name = item.get("name") or None
    groups = tuple(g.text or "" for g in item.findall(rx.GROUP))
    problem = _check(name, groups, settings.max_roster_name)
    if problem:
        return [error(iq, data, *problem)]
    # Any 'subscription' other than remove is ignored (RFC 6121 §2.1.2.5).
    args = (data.user, data.domain, contact, name, groups, settings.max_roster_items)
    return [Query(set_item, args, partial(after_set, iq))]


def _check(name: str | None, groups: tuple[str, ...], limit: int) -> tuple[str, str] | None:
    if name is not None and len(name.encode()) > limit:
        return "not-acceptable", f"the name is over {limit} bytes"
    if any(not g for g in groups):
        return "not-acceptable", "a group name is empty"
    if any(len(g.encode()) > limit for g in groups):
        return "not-acceptable", f"a group name is over {limit} bytes"
    if len(set(groups)) != len(groups):
        return "bad-request", "a group is named twice"
    return None


def set_item(
    storage: Any, username: str, domain: str, contact: str, name: Any, groups: Any, limit: int
) -> tuple[str, RosterItem] | None:
    old = storage.rosters.get(username, domain, contact)
    if old is None and storage.rosters.count(username, domain) >= limit:
        return None
    new = replace(old or RosterItem(jid=contact), name=name, groups=groups)
    return storage.rosters.put(username, domain, new), new


def after_set(iq: etree._Element, stored: Any, data: Any) -> tuple[Any, list]:
    if isinstance(stored, Exception):
        return data, [error(iq, data, "internal-server-error")]
    if stored is None:
        return data, [error(iq, data, "policy-violation", "the roster is full")]
    version, item = stored
    push = rx.push(item, version, data.env.random.iq_id())
    return data, [result(iq, data), DeliverToUser(data.jid.bare, push)]


def remove_item(
    storage: Any, username: str, domain: str, contact: str
) -> tuple[str, RosterItem] | None:
    old = storage.rosters.get(username, domain, contact)
    if old is None:
        return None
    return storage.rosters.delete(username, domain, contact), old


def after_remove(iq: etree._Element, removed: Any, data: Any) -> tuple[Any, list]:
    """RFC 6121 §2.5.2: removing a contact also cancels the subscriptions both ways."""
    if isinstance(removed, Exception):
        return data, [error(iq, data, "internal-server-error")]
    if removed is None:
        return data, [error(iq, data, "item-not-found")]
    version, old = removed
    bare = data.jid.bare
    actions: list = [result(iq, data)]
    if old.subscription in ("to", "both") or old.ask:
        actions.append(Route(_subscription(bare, old.jid, "unsubscribe")))
    if old.subscription in ("from", "both") or old.pending_in:
        actions.append(RoutePresencesOf(bare, old.jid, unavailable=True))
        actions.append(Route(_subscription(bare, old.jid, "unsubscribed")))
    push = rx.push(old, version, data.env.random.iq_id(), remove=True)
    actions.append(DeliverToUser(bare, push))
    return data, actions


def _subscription(sender: JID, to: str, kind: str) -> etree._Element:
    presence = etree.Element(PRESENCE, type=kind, to=to, nsmap={None: ns.CLIENT})
    presence.set("from", str(sender))
    return presence


# --- pushes reaching a session -----------------------------------------------------------------


@hook("deliver", order=20)
def roster_push(stanza: etree._Element, data: Any) -> HookResult:
    """A push reaches every session, so that the roster_changed subscribers keep the session's
    bookkeeping right; only those that asked for the roster see it (RFC 6121 §2.1.6)."""
    if not rx.is_push(stanza):
        return None
    data, told, _ = data.features.run("roster_changed", stanza, data)
    return Stop([*told, Send(stanza)] if im(data).interested else told, data)
