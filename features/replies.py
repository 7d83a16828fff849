"""Replies a feature sends back to the asking client."""

from __future__ import annotations

from typing import Any

from lxml import etree

from fsm.core import Send
from xmpp import ns
from xmpp.ns import q


def result(iq: etree._Element, data: Any, *children: etree._Element) -> Send:
    """An IQ result from whoever the IQ was addressed to, back to the asking session."""
    reply = etree.Element(q(ns.CLIENT, "iq"), type="result", nsmap={None: ns.CLIENT})
    if iq.get("id") is not None:
        reply.set("id", iq.get("id"))
    if iq.get("to"):
        reply.set("from", iq.get("to"))
    reply.set("to", str(data.jid) if data.jid else iq.get("from", ""))
    if not reply.get("to"):
        del reply.attrib["to"]
    reply.extend(children)
    return Send(reply)
