"""XEP-0030: the server's disco#info lists exactly the features the registry wires."""

from __future__ import annotations

from typing import Any

from lxml import etree

from features.registry import handles_iq
from features.replies import result
from xmpp import ns
from xmpp.ns import q

DISCO_FEATURES = (ns.DISCO_INFO, ns.DISCO_ITEMS)


@handles_iq("get", ns.DISCO_INFO, to="server")
def server_info(iq: etree._Element, data: Any) -> list:
    query = etree.Element(q(ns.DISCO_INFO, "query"), nsmap={None: ns.DISCO_INFO})
    if iq[0].get("node"):
        query.set("node", iq[0].get("node"))
    identity = q(ns.DISCO_INFO, "identity")
    etree.SubElement(query, identity, category="server", type="im", name="xmppd")
    for feature in sorted(data.features.disco_features):
        etree.SubElement(query, q(ns.DISCO_INFO, "feature"), var=feature)
    return [result(iq, data, query)]


@handles_iq("get", ns.DISCO_ITEMS, to="server")
def server_items(iq: etree._Element, data: Any) -> list:
    query = etree.Element(q(ns.DISCO_ITEMS, "query"), nsmap={None: ns.DISCO_ITEMS})
    return [result(iq, data, query)]
