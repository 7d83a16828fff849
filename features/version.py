"""XEP-0092: the server's software name and version (not its operating system)."""

from __future__ import annotations

from typing import Any

from lxml import etree

from features.registry import handles_iq
from features.replies import result
from xmpp.ns import q

NS = "jabber:iq:version"
NAME = "xmppd"


@handles_iq("get", NS, to="server")
def version(iq: etree._Element, data: Any) -> list:
    query = etree.Element(q(NS, "query"), nsmap={None: NS})
    etree.SubElement(query, q(NS, "name")).text = NAME
    etree.SubElement(query, q(NS, "version")).text = data.features.settings.version or "unknown"
    # <os/> is optional (XEP-0092 §2) and tells an attacker more than it tells a user.
    return [result(iq, data, query)]
