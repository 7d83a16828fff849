"""Replies a feature sends back to the asking client."""

from __future__ import annotations

from typing import Any

from lxml import etree

from fsm.core import Send
from xmpp import ns
from xmpp.errors import error_reply
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


def error(iq: etree._Element, data: Any, condition: str, text: str | None = None) -> Send:
    """A stanza error back to the asking session, from whoever the IQ was addressed to."""
    reply = error_reply(iq, condition, text)
    if data.jid is not None:
        reply.set("to", str(data.jid))
    else:
        reply.attrib.pop("to", None)
    if not iq.get("to"):
        reply.attrib.pop("from", None)
    return Send(reply)
