"""The XML of rosters (RFC 6121 §2): items, results and pushes."""

from __future__ import annotations

from lxml import etree

from storage.im import RosterItem
from xmpp import ns
from xmpp.ns import q

NS = "jabber:iq:roster"
QUERY = q(NS, "query")
ITEM = q(NS, "item")
GROUP = q(NS, "group")
IQ = q(ns.CLIENT, "iq")


def item_element(item: RosterItem, remove: bool = False) -> etree._Element:
    element = etree.Element(ITEM, jid=item.jid)
    if item.name:
        element.set("name", item.name)
    element.set("subscription", "remove" if remove else item.subscription)
    if item.ask and not remove:
        element.set("ask", "subscribe")
    if item.approved and not remove:
        element.set("approved", "true")
    for group in () if remove else item.groups:
        etree.SubElement(element, GROUP).text = group
    return element


def query(version: str | None, items: list[RosterItem]) -> etree._Element:
    element = etree.Element(QUERY, nsmap={None: NS})
    if version is not None:
        element.set("ver", version)
    element.extend(item_element(item) for item in items)
    return element


def push(item: RosterItem, version: str, iq_id: str, remove: bool = False) -> etree._Element:
    """A roster push (RFC 6121 §2.1.6): the node sets 'to' for each session."""
    iq = etree.Element(IQ, type="set", id=iq_id, nsmap={None: ns.CLIENT})
    pushed = query(version, [])
    pushed.append(item_element(item, remove))
    iq.append(pushed)
    return iq


def is_push(stanza: etree._Element) -> bool:
    return (
        stanza.tag == IQ
        and stanza.get("type") == "set"
        and len(stanza) == 1
        and stanza[0].tag == QUERY
        and stanza.get("from") is None
    )


def pushed_item(stanza: etree._Element) -> tuple[str, str] | None:
    """(jid, subscription) of the item a push carries."""
    item = stanza[0].find(ITEM)
    if item is None:
        return None
    return item.get("jid", ""), item.get("subscription", "none")
